//! SIGKILL tests on both backends: acknowledged writes survive the writer being killed (S25),
//! and a rotation killed part-way leaves every row openable and finishes when run again (S6).
//!
//! The process killed must be a separate OS process, so each test re-runs this test binary on
//! itself (`<test> --exact`) with [`CHILD_ENV`] set: the same function, seeing the variable,
//! becomes the child. The child reports on stdout, one whole line per `write` call (a pipe write
//! under `PIPE_BUF` is atomic, so a kill never leaves half a report); the parent reads it with a
//! deadline on every wait, sends SIGKILL, reaps the child, reopens the store and checks it.
//! Children are spawned `kill_on_drop`, and a PostgreSQL cluster is declared before its child,
//! so a failing test leaves neither behind.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datahub_core::ConnectionId;
use datahub_core::crypto::Keyring;
use datahub_core::hub::Hub;
use datahub_core::keys::KeyStatus;
use datahub_core::model::{ConnectionPatch, ListQuery, MAX_PER_PAGE};
use datahub_core::rbac::Principal;
use datahub_core::secret::Password;
use datahub_core::store::{PostgresOptions, PostgresStore, SqliteStore, Store};
use datahub_testkit::{PgCluster, User};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::hub::{ADMIN_PW, K0, K1, draft, login};

/// Set in a child: the store it opens (`sqlite:<folder>` or `postgres:<url>`).
const CHILD_ENV: &str = "DATAHUB_DURABILITY_CHILD";
/// Set in a child: its keyring text.
const CHILD_KEYRING_ENV: &str = "DATAHUB_DURABILITY_KEYRING";

/// Acknowledged writes the parent waits for before the kill, and the least time of writing.
const MIN_ACKS: usize = 200;
const MIN_WRITING: Duration = Duration::from_secs(1);
/// Connections the rotation tests store: rotating this many rows with batch 1 takes about 0.4 s
/// on SQLite and 1 s on PostgreSQL here, far longer than one poll of the parent.
const ROTATED_ROWS: usize = 1000;
/// The longest any test waits for its child, in all.
const CHILD_DEADLINE: Duration = Duration::from_secs(15);

const USER: &str = "datahub";
const PASSWORD: &str = "durability-pw-7Qz!";
const DATABASE: &str = "datahub";

// ---------------------------------------------------------------------------------------------
// The tests. Each begins by becoming the child when `CHILD_ENV` is set.

#[tokio::test]
async fn sqlite_acknowledged_writes_survive_sigkill() {
    const NAME: &str = "sqlite_acknowledged_writes_survive_sigkill";
    if let Some(child) = ChildRole::from_env() {
        return child.write_until_killed().await;
    }
    let dir = tempfile::tempdir().unwrap();
    acknowledged_writes_survive_sigkill(NAME, &Spec::sqlite(&dir)).await;
}

#[tokio::test]
async fn postgres_acknowledged_writes_survive_sigkill() {
    const NAME: &str = "postgres_acknowledged_writes_survive_sigkill";
    if let Some(child) = ChildRole::from_env() {
        return child.write_until_killed().await;
    }
    let cluster = cluster().await;
    acknowledged_writes_survive_sigkill(NAME, &Spec::postgres(&cluster)).await;
    drop(cluster);
}

#[tokio::test]
async fn sqlite_rotation_killed_midway_leaves_every_row_openable() {
    const NAME: &str = "sqlite_rotation_killed_midway_leaves_every_row_openable";
    if let Some(child) = ChildRole::from_env() {
        return child.rotate_until_killed().await;
    }
    let dir = tempfile::tempdir().unwrap();
    rotation_killed_midway(NAME, &Spec::sqlite(&dir), ROTATED_ROWS).await;
}

#[tokio::test]
async fn postgres_rotation_killed_midway_leaves_every_row_openable() {
    const NAME: &str = "postgres_rotation_killed_midway_leaves_every_row_openable";
    if let Some(child) = ChildRole::from_env() {
        return child.rotate_until_killed().await;
    }
    let cluster = cluster().await;
    rotation_killed_midway(NAME, &Spec::postgres(&cluster), ROTATED_ROWS).await;
    drop(cluster);
}

// ---------------------------------------------------------------------------------------------
// S25: acknowledged writes survive SIGKILL.

/// What the parent learnt from the writer's reports.
#[derive(Default)]
struct Acked {
    /// Each connection's last acknowledged password.
    passwords: HashMap<String, String>,
    /// An update the writer started but did not acknowledge: it may or may not have committed.
    pending: Option<(String, String)>,
    /// Acknowledged writes (creates and updates).
    writes: usize,
}

impl Acked {
    fn record(&mut self, line: &str) {
        let mut words = line.split(' ');
        let (Some(verb), Some(name), Some(password), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            panic!("malformed report {line:?}");
        };
        match verb {
            "try-update" => self.pending = Some((name.to_owned(), password.to_owned())),
            "created" | "updated" => {
                if verb == "updated" {
                    assert_eq!(
                        self.pending.take().as_ref().map(|(n, _)| n.as_str()),
                        Some(name)
                    );
                } else {
                    assert!(self.pending.is_none(), "create while an update is pending");
                }
                self.passwords.insert(name.to_owned(), password.to_owned());
                self.writes += 1;
            }
            other => panic!("unknown report {other:?}"),
        }
    }
}

async fn acknowledged_writes_survive_sigkill(test: &str, spec: &Spec) {
    // The admin exists before the child starts; the parent's store is closed while it writes.
    {
        let store = spec.open().await;
        let hub = Hub::open(store, keyring(K1)).await.unwrap();
        hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
            .await
            .unwrap()
            .unwrap();
    }
    let mut child = ChildProcess::spawn(test, spec, K1);
    let mut acked = Acked::default();
    let mut writing_since = None;
    while acked.writes < MIN_ACKS
        || writing_since.is_none_or(|t: Instant| t.elapsed() < MIN_WRITING)
    {
        let line = child
            .next_report()
            .await
            .unwrap_or_else(|| panic!("the writer stopped after {} writes", acked.writes));
        writing_since.get_or_insert_with(Instant::now);
        acked.record(&line);
    }
    let before_kill = acked.writes;
    // Reports already in the pipe are acknowledged writes too.
    for line in child.kill().await {
        acked.record(&line);
    }
    let writing = writing_since.unwrap().elapsed();

    let store = spec.open().await;
    let hub = Hub::open(store, keyring(K1)).await.unwrap();
    let admin = login(&hub, "admin", ADMIN_PW).await;
    let stored = reveal_all(&hub, &admin).await;
    for (name, password) in &acked.passwords {
        let got = stored
            .get(name)
            .unwrap_or_else(|| panic!("acknowledged connection {name} is missing"));
        let pending = acked
            .pending
            .as_ref()
            .filter(|(n, _)| n == name)
            .map(|(_, p)| p);
        assert!(
            got == password || Some(got) == pending,
            "{name}: stored password is not the acknowledged one"
        );
    }
    let verification = hub.verify_audit(&admin).await.unwrap();
    assert_eq!(verification.first_break, None);
    assert!(
        verification.checked >= acked.writes as u64,
        "{} audit records for {} acknowledged writes",
        verification.checked,
        acked.writes
    );
    eprintln!(
        "{test}: {} acknowledged writes ({before_kill} before the kill) in {writing:?}, \
         {} rows, {} audit records",
        acked.writes,
        stored.len(),
        verification.checked
    );
}

/// Every connection's name and revealed password, through list and reveal: a row that does not
/// open fails the test.
async fn reveal_all(hub: &Hub, admin: &Principal) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (name, id) in list_all(hub, admin).await {
        let revealed = hub
            .reveal(admin, id)
            .await
            .unwrap_or_else(|e| panic!("{name} does not open: {e}"));
        out.insert(name, revealed.password.expose_secret().to_owned());
    }
    out
}

async fn list_all(hub: &Hub, admin: &Principal) -> Vec<(String, ConnectionId)> {
    let mut out = Vec::new();
    for page in 1.. {
        let query = ListQuery {
            page,
            per_page: MAX_PER_PAGE,
            ..ListQuery::default()
        };
        let found = hub.list_connections(admin, &query).await.unwrap();
        let last = found.items.len() < MAX_PER_PAGE as usize;
        out.extend(
            found
                .items
                .into_iter()
                .map(|c| (c.spec.name.as_str().to_owned(), c.id)),
        );
        if last {
            assert_eq!(out.len() as u64, found.total);
            break;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// S6: a rotation killed part-way.

async fn rotation_killed_midway(test: &str, spec: &Spec, rows: usize) {
    let both = format!("{K0},{K1}");
    let store = spec.open().await;
    let hub = Hub::open(store.clone(), keyring(K1)).await.unwrap();
    hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
        .await
        .unwrap()
        .unwrap();
    let admin = login(&hub, "admin", ADMIN_PW).await;
    let mut passwords = HashMap::new();
    for i in 0..rows {
        let (name, password) = (format!("db-{i:04}"), format!("pw-{i}"));
        hub.create_connection(&admin, draft(&name, &password))
            .await
            .unwrap();
        passwords.insert(name, password);
    }

    // The parent watches the key status while the child rotates with batch 1, and kills it once
    // a tenth of the rows are under k0: nine tenths of the rotation (a few hundred milliseconds)
    // are still to do, so the kill lands mid-rotation even when this process is slow to be
    // scheduled.
    let watcher = Hub::open(store, keyring(&both)).await.unwrap();
    let watcher_admin = login(&watcher, "admin", ADMIN_PW).await;
    let mut child = ChildProcess::spawn(test, spec, &both);
    let report = child.next_report().await;
    assert_eq!(report.as_deref(), Some("rotating"));
    let rotating_since = Instant::now();
    let polls_until = Instant::now() + CHILD_DEADLINE;
    let mut polls = 0;
    loop {
        let (k0, _) = rows_per_key(&watcher.key_status(&watcher_admin).await.unwrap());
        polls += 1;
        if k0 >= rows as u64 / 10 {
            break;
        }
        assert!(Instant::now() < polls_until, "the rotation never started");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let after_kill = child.kill().await;
    let rotating = rotating_since.elapsed();
    assert!(
        after_kill.is_empty(),
        "the rotation finished before the kill ({after_kill:?}): use more rows"
    );
    drop((watcher, hub));

    // Every row opens with both keys, and the kill landed mid-rotation.
    let store = spec.open().await;
    let hub = Hub::open(store.clone(), keyring(&both)).await.unwrap();
    let admin = login(&hub, "admin", ADMIN_PW).await;
    assert_eq!(reveal_all(&hub, &admin).await, passwords);
    let (k0, k1) = rows_per_key(&hub.key_status(&admin).await.unwrap());
    assert!(k0 > 0 && k1 > 0, "not mid-rotation: k0 {k0}, k1 {k1}");
    assert_eq!(k0 + k1, rows as u64);

    // Running it again finishes the job, and a third run has nothing to do.
    let second = hub.rotate_keys(&admin, 5).await.unwrap();
    assert_eq!(
        (second.rewrapped, second.skipped, second.failed.len()),
        (k1, 0, 0)
    );
    let third = hub.rotate_keys(&admin, 5).await.unwrap();
    assert_eq!(
        (third.rewrapped, third.skipped, third.failed.len()),
        (0, 0, 0)
    );
    hub.retire_key(&admin, &"k1".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(
        rows_per_key(&hub.key_status(&admin).await.unwrap()),
        (rows as u64, 0)
    );
    let verification = hub.verify_audit(&admin).await.unwrap();
    assert_eq!(verification.first_break, None);
    drop(hub);

    // Without k1, every row still opens.
    let hub = Hub::open(store, keyring(K0)).await.unwrap();
    let admin = login(&hub, "admin", ADMIN_PW).await;
    assert_eq!(reveal_all(&hub, &admin).await, passwords);
    eprintln!(
        "{test}: killed after {polls} polls and {rotating:?} of rotation, with k0 {k0}, \
         k1 {k1} of {rows} rows"
    );
}

/// Rows under k0 and under k1.
fn rows_per_key(status: &[KeyStatus]) -> (u64, u64) {
    let rows = |id: &str| {
        status
            .iter()
            .filter(|s| s.id.as_str() == id)
            .map(|s| s.rows)
            .sum()
    };
    (rows("k0"), rows("k1"))
}

// ---------------------------------------------------------------------------------------------
// The child side.

/// This process is a child: the store and keyring its parent gave it.
struct ChildRole {
    spec: Spec,
    keyring: String,
}

impl ChildRole {
    fn from_env() -> Option<Self> {
        let spec = std::env::var(CHILD_ENV).ok()?;
        let keyring = std::env::var(CHILD_KEYRING_ENV).unwrap();
        Some(Self {
            spec: Spec(spec),
            keyring,
        })
    }

    async fn hub(&self) -> (Hub, Principal) {
        let hub = Hub::open(self.spec.open().await, keyring(&self.keyring))
            .await
            .unwrap();
        let admin = login(&hub, "admin", ADMIN_PW).await;
        // libtest may have printed `test <name> ... ` without a newline: end that line.
        report("");
        (hub, admin)
    }

    /// Creates connections through the Hub, updating an earlier one's password after every
    /// fourth, and reports each write once the Hub has acknowledged it. Never returns.
    async fn write_until_killed(self) {
        let (hub, admin) = self.hub().await;
        let mut created: Vec<(String, ConnectionId, u64)> = Vec::new();
        for i in 0_u64.. {
            let (name, password) = (format!("db-{i:06}"), format!("pw-{i}"));
            let c = hub
                .create_connection(&admin, draft(&name, &password))
                .await
                .unwrap();
            report(&format!("created {name} {password}"));
            created.push((name, c.id, c.version));
            if i % 4 == 3 {
                let (name, id, version) = &mut created[(i / 2) as usize];
                let password = format!("pw-{i}-updated");
                report(&format!("try-update {name} {password}"));
                let patch = ConnectionPatch {
                    password: Some(Password::from(password.as_str())),
                    ..ConnectionPatch::default()
                };
                let c = hub
                    .update_connection(&admin, *id, *version, patch)
                    .await
                    .unwrap();
                *version = c.version;
                report(&format!("updated {name} {password}"));
            }
        }
    }

    /// Rotates every data key with batch 1, then idles until killed.
    async fn rotate_until_killed(self) {
        let (hub, admin) = self.hub().await;
        report("rotating");
        let done = hub.rotate_keys(&admin, 1).await;
        report(&format!("done {done:?}"));
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    }
}

/// Writes one whole line to stdout in one call, so a kill never splits it.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("{line}\n").as_bytes()).unwrap();
    out.flush().unwrap();
}

// ---------------------------------------------------------------------------------------------
// The parent side.

/// A store a child can open: `sqlite:<folder>` or `postgres:<url>`.
struct Spec(String);

impl Spec {
    fn sqlite(dir: &TempDir) -> Self {
        let folder: PathBuf = dir.path().join("data");
        Self(format!("sqlite:{}", folder.to_str().unwrap()))
    }

    fn postgres(cluster: &PgCluster) -> Self {
        Self(format!("postgres:{}", cluster.url(USER, DATABASE)))
    }

    async fn open(&self) -> Arc<dyn Store> {
        if let Some(folder) = self.0.strip_prefix("sqlite:") {
            Arc::new(SqliteStore::open(folder.as_ref()).unwrap())
        } else if let Some(url) = self.0.strip_prefix("postgres:") {
            let config = tokio_postgres::Config::from_str(url).unwrap();
            Arc::new(
                PostgresStore::connect(config, PostgresOptions::default())
                    .await
                    .unwrap(),
            )
        } else {
            panic!("unknown store spec {:?}", self.0)
        }
    }
}

/// A child running one test of this binary in the child role.
struct ChildProcess {
    child: Child,
    stdout: BufReader<ChildStdout>,
    deadline: Instant,
}

impl ChildProcess {
    fn spawn(test: &str, spec: &Spec, keyring: &str) -> Self {
        let module = module_path!().split_once("::").unwrap().1;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("{module}::{test}"),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &spec.0)
            .env(CHILD_KEYRING_ENV, keyring)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // A failing child's panic shows in the test's output.
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdout,
            deadline: Instant::now() + CHILD_DEADLINE,
        }
    }

    /// The child's next report, or `None` at the end of its output. Panics at the deadline.
    async fn next_report(&mut self) -> Option<String> {
        loop {
            let mut line = String::new();
            let left = self.deadline.saturating_duration_since(Instant::now());
            let read = tokio::time::timeout(left, self.stdout.read_line(&mut line))
                .await
                .expect("the child did not report in time")
                .unwrap();
            // A line without its newline can only be the last: not a whole report.
            if read == 0 || !line.ends_with('\n') {
                return None;
            }
            let line = line.trim_end_matches('\n');
            // libtest's own lines (`running 1 test`, `test <name> ... `) are not reports.
            if !line.is_empty() && !line.starts_with("running ") && !line.starts_with("test ") {
                return Some(line.to_owned());
            }
        }
    }

    /// Sends SIGKILL, reaps the child, and returns the reports it made before dying that were
    /// not read yet.
    async fn kill(mut self) -> Vec<String> {
        self.child.start_kill().unwrap();
        let mut rest = Vec::new();
        while let Some(line) = self.next_report().await {
            rest.push(line);
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        let status = tokio::time::timeout(left.max(Duration::from_secs(5)), self.child.wait())
            .await
            .expect("the killed child did not exit")
            .unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "the child ended by itself: {status}"
        );
        rest
    }
}

fn keyring(text: &str) -> Keyring {
    Keyring::parse(text).unwrap()
}

/// A fresh cluster with a SCRAM user `datahub` owning the database `datahub`.
async fn cluster() -> PgCluster {
    tokio::task::spawn_blocking(|| {
        PgCluster::builder()
            .max_connections(80)
            .user(User::new(USER).password(PASSWORD))
            .database(DATABASE, USER)
            .start()
            .unwrap()
    })
    .await
    .unwrap()
}
