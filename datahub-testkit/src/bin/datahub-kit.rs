//! `datahub-kit`: throwaway PostgreSQL clusters for test suites written in other languages (the
//! Python package's pytest fixtures), from the same kit the Rust tests use.
//!
//! It starts a target cluster (TLS with a certificate from the kit's CA for `127.0.0.1`, one
//! SCRAM user owning one database) and, with `--store`, a plaintext cluster for a PostgreSQL
//! store; prints ONE JSON line on stdout with everything a client needs
//! (`{"host", "port", "database", "user", "password", "ca_pem", "other_ca_pem", "store_url",
//! "store_password"}`, `store_url` being `null` without `--store`); then waits until stdin
//! closes, or SIGTERM or SIGINT arrives, and stops the clusters (stop and delete their folders).
//!
//! Closing stdin is the way to stop it: a parent that dies closes the pipe too, so the clusters
//! never outlive the test run. Passwords are never arguments (they would show in `ps`): the
//! target user's comes from `DATAHUB_KIT_PASSWORD` when set, else it is random; the store's is
//! always random. Both are printed in the JSON line, which only the parent reads.
//!
//! Flags: `--store` (also start the store cluster), `--database NAME` (default `app`),
//! `--user NAME` (default `app`), `--max-connections N` (target, default the kit's).

use std::io::Read as _;
use std::process::ExitCode;

use datahub_testkit::{AuthMethod, PgCluster, ServerCert, User};

/// The store cluster's user and database.
const STORE_USER: &str = "datahub";
const STORE_DB: &str = "datahub";

/// What to start, from the command line.
#[derive(Debug)]
struct Options {
    store: bool,
    database: String,
    user: String,
    max_connections: Option<u32>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("datahub-kit: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let options = parse_args(std::env::args().skip(1))?;
    let password = match std::env::var("DATAHUB_KIT_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ => random_text()?,
    };
    let store_password = random_text()?;

    let mut target = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(
            User::new(&options.user)
                .password(&password)
                .auth(AuthMethod::ScramSha256),
        )
        .database(&options.database, &options.user);
    if let Some(n) = options.max_connections {
        target = target.max_connections(n);
    }
    let target = target
        .start()
        .map_err(|e| format!("starting the target cluster: {e}"))?;
    let store = if options.store {
        Some(
            PgCluster::builder()
                // A server's pool and its event listener, plus notebooks opening the store.
                .max_connections(100)
                .user(User::new(STORE_USER).password(&store_password))
                .database(STORE_DB, STORE_USER)
                .start()
                .map_err(|e| format!("starting the store cluster: {e}"))?,
        )
    } else {
        None
    };

    let line = serde_json::json!({
        "host": target.host(),
        "port": target.port(),
        "database": options.database,
        "user": options.user,
        "password": password,
        "ca_pem": target.ca_pem(),
        "other_ca_pem": target.other_ca_pem(),
        "store_url": store.as_ref().map(|s| s.url(STORE_USER, STORE_DB)),
        "store_password": store.as_ref().map(|_| store_password.as_str()),
    });
    println!("{line}");

    wait_for_stop()?;
    // Dropping the clusters stops their servers and deletes their folders.
    drop(store);
    drop(target);
    Ok(())
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        store: false,
        database: "app".to_owned(),
        user: "app".to_owned(),
        max_connections: None,
    };
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--store" => options.store = true,
            "--database" => options.database = value("--database")?,
            "--user" => options.user = value("--user")?,
            "--max-connections" => {
                let n = value("--max-connections")?;
                options.max_connections = Some(
                    n.parse()
                        .map_err(|_| "--max-connections needs a whole number".to_owned())?,
                );
            }
            "-h" | "--help" => {
                println!(
                    "usage: datahub-kit [--store] [--database NAME] [--user NAME] \
                     [--max-connections N]\n\
                     Prints one JSON line, then runs until stdin closes or SIGTERM."
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(options)
}

/// 24 random bytes from the OS as hex: letters and digits only, so the text needs no escaping
/// in a URL or `pg_hba.conf` and is unique enough to be a canary.
fn random_text() -> Result<String, String> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Returns when stdin reaches its end (or fails) or SIGTERM or SIGINT arrives.
fn wait_for_stop() -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a runtime: {e}"))?;
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    // A plain thread, not `spawn_blocking`: a runtime waits for its blocking tasks when it shuts
    // down, and this read may never end; the thread dies with the process.
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        let _ = closed_tx.send(());
    });
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| format!("watching SIGTERM: {e}"))?;
        let mut int =
            signal(SignalKind::interrupt()).map_err(|e| format!("watching SIGINT: {e}"))?;
        tokio::select! {
            _ = closed_rx => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    })
}
