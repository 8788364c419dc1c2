//! The operator CLI, run as the built binary against temporary data folders: migrate, users,
//! tokens, policy, audit (verify, then a tampered row), keys (generate, rotate, retire) and
//! connections against a kit PostgreSQL cluster on loopback. A canary password, given only on
//! stdin, appears in no argument and no output except `conn reveal`'s.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use datahub_testkit::{PgCluster, ServerCert, User};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_datahub-server");
const CANARY: &str = "cli-canary-Pw-7f3e9c1a";
const USER_PW: &str = "cli-user-password-1234";
const OS_USER: &str = "cli-tester";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }

    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A data folder and everything printed by the commands run on it (for the canary check).
struct Cli {
    _dir: tempfile::TempDir,
    data: PathBuf,
    printed: std::cell::RefCell<String>,
}

impl Cli {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Self {
            _dir: dir,
            data,
            printed: Default::default(),
        }
    }

    /// Runs `datahub-server --data-dir <data> <args>` with `stdin`, outside any `DATAHUB_*`
    /// environment of the test runner.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let out = self.run_unchecked(args, stdin);
        self.printed.borrow_mut().push_str(&out.stdout);
        self.printed.borrow_mut().push_str(&out.stderr);
        out
    }

    fn run_unchecked(&self, args: &[&str], stdin: Option<&str>) -> Out {
        self.run_env(args, stdin, &[])
    }

    /// Runs a command with `env` added to the cleaned environment.
    fn run_env(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Out {
        assert!(
            args.iter().all(|a| !a.contains(CANARY)),
            "the canary must never be an argument"
        );
        let mut cmd = Command::new(BIN);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("DATAHUB_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("USER", OS_USER)
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).unwrap();
        }
        let output = child.wait_with_output().unwrap();
        Out {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }

    /// Runs a command whose output may hold the canary (`conn reveal`), kept apart.
    fn reveal(&self, args: &[&str]) -> Out {
        self.run_unchecked(args, None)
    }

    #[track_caller]
    fn assert_no_canary(&self) {
        let printed = self.printed.borrow();
        assert!(!printed.is_empty());
        assert!(!printed.contains(CANARY), "the canary was printed");
    }

    fn db(&self) -> PathBuf {
        self.data.join("datahub.sqlite3")
    }

    fn key_file(&self) -> PathBuf {
        self.data.join("master.key")
    }
}

fn stdin_line(password: &str) -> String {
    format!("{password}\n")
}

#[test]
fn users_tokens_policy_and_a_tampered_audit_log() {
    let cli = Cli::new();
    cli.run(&["migrate"], None).ok();
    assert!(cli.db().exists());

    // Users: the password only on stdin.
    let added = cli
        .run(
            &[
                "users",
                "add",
                "alice",
                "--role",
                "editor",
                "--password-stdin",
                "-o",
                "json",
            ],
            Some(&stdin_line(CANARY)),
        )
        .ok()
        .json();
    assert_eq!(added["username"], "alice");
    assert_eq!(added["role"], "editor");
    assert_eq!(added["disabled"], false);
    let table = cli.run(&["users", "list"], None).ok().stdout;
    assert!(
        table.contains("alice") && table.contains("editor"),
        "{table}"
    );
    let list = cli.run(&["users", "list", "-o", "json"], None).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], added["id"]);

    // Bad input: exit 2, and nothing is created.
    let bad_role = cli.run(
        &["users", "add", "bob", "--role", "root", "--password-stdin"],
        Some(&stdin_line(USER_PW)),
    );
    assert_eq!(bad_role.code, 2, "{}", bad_role.stderr);
    assert!(bad_role.stderr.contains("role"), "{}", bad_role.stderr);
    let no_terminal = cli.run(&["users", "add", "bob"], None);
    assert_eq!(no_terminal.code, 2);
    assert!(no_terminal.stderr.contains("--password-stdin"));
    let unknown_flag = cli.run(&["users", "add", "bob", "--password", "x"], None);
    assert_eq!(unknown_flag.code, 2, "passwords are never arguments");
    let list = cli.run(&["users", "list", "-o", "json"], None).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1);

    cli.run(
        &["users", "passwd", "alice", "--password-stdin"],
        Some(&stdin_line(USER_PW)),
    )
    .ok();

    // Tokens: shown once, for a named user, revocable.
    let token = cli
        .run(
            &[
                "tokens",
                "create",
                "--user",
                "alice",
                "--name",
                "ci",
                "--read-only",
                "-o",
                "json",
            ],
            None,
        )
        .ok()
        .json();
    assert!(
        token["token"].as_str().unwrap().starts_with("dh_"),
        "{token}"
    );
    assert_eq!(token["user_id"], added["id"]);
    assert_eq!(token["read_only"], true);
    let token_id = token["id"].as_str().unwrap().to_owned();
    cli.run(&["tokens", "revoke", &token_id], None).ok();
    let nobody = cli.run(
        &["tokens", "create", "--user", "nobody", "--name", "x"],
        None,
    );
    assert_eq!(nobody.code, 2);
    assert_eq!(cli.run(&["tokens", "revoke", "not-a-uuid"], None).code, 2);

    cli.run(&["users", "disable", "alice"], None).ok();
    let list = cli.run(&["users", "list", "-o", "json"], None).ok().json();
    assert_eq!(list[0]["disabled"], true);

    // Policy.
    let policy = cli.run(&["policy", "show", "-o", "json"], None).ok().json();
    assert_eq!(policy["min_tls_mode"], "require");
    assert_eq!(policy["allow_cidrs"], Value::Array(vec![]));
    let set = cli
        .run(
            &[
                "policy",
                "set",
                "--deny",
                "127.1.2.3/8",
                "--min-tls-mode",
                "verify-ca",
                "-o",
                "json",
            ],
            None,
        )
        .ok()
        .json();
    assert_eq!(set["deny_cidrs"][0], "127.0.0.0/8");
    assert_eq!(set["min_tls_mode"], "verify-ca");
    let shown = cli.run(&["policy", "show"], None).ok().stdout;
    assert!(
        shown.contains("127.0.0.0/8") && shown.contains("verify-ca"),
        "{shown}"
    );
    let bad = cli.run(&["policy", "set", "--allow", "not-a-network"], None);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("allow_cidrs[0]"), "{}", bad.stderr);
    assert_eq!(cli.run(&["policy", "set"], None).code, 2);
    cli.run(&["policy", "set", "--clear-deny"], None).ok();

    // Every change is audited as the operator.
    let tail = cli
        .run(&["audit", "tail", "-n", "50", "-o", "json"], None)
        .ok()
        .json();
    let rows = tail.as_array().unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "user.create",
            "user.update",
            "token.manage",
            "token.manage",
            "user.update",
            "policy.write",
            "policy.write",
        ]
    );
    for r in rows {
        assert_eq!(r["actor_name"], format!("operator:{OS_USER}"));
        assert_eq!(r["actor"], Value::Null);
        assert_eq!(r["outcome"], "ok");
        assert!(r["request_id"].as_str().unwrap().starts_with("cli-"));
    }
    let last2 = cli.run(&["audit", "tail", "-n", "2"], None).ok().stdout;
    assert!(last2.contains("policy.write") && !last2.contains("user.create"));

    let verified = cli
        .run(&["audit", "verify", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["checked"], 7);

    // Someone with the file edits entry 2 (the triggers only stop honest SQL).
    {
        let db = rusqlite::Connection::open(cli.db()).unwrap();
        db.execute_batch(
            "DROP TRIGGER audit_log_no_update;
             UPDATE audit_log SET actor_name = 'mallory' WHERE seq = 2;",
        )
        .unwrap();
    }
    let broken = cli.run(&["audit", "verify", "-o", "json"], None);
    assert_eq!(broken.code, 1, "{}", broken.stderr);
    let broken = broken.json();
    assert_eq!(broken["ok"], false);
    assert_eq!(broken["first_break"]["seq"], 2);
    assert_eq!(broken["first_break"]["kind"], "content");
    assert_eq!(broken["checked"], 1);
    let said = cli.run(&["audit", "verify"], None);
    assert_eq!(said.code, 1);
    assert!(said.stdout.contains("BROKEN at entry 2"), "{}", said.stdout);

    cli.assert_no_canary();
}

#[test]
fn keys_generate_rotate_and_retire() {
    let cli = Cli::new();
    add_conn(&cli, "keyed", &[]).ok();
    assert_key_file_private(&cli.key_file());
    let status = cli.run(&["keys", "status", "-o", "json"], None).ok().json();
    // A generated id, unique per key (S28), not `default`.
    let first = status[0]["id"].as_str().unwrap().to_owned();
    assert!(first.starts_with("k-"), "{first}");
    assert_eq!(status[0]["rows"], 1);

    // Printing a key touches nothing.
    let printed = cli
        .run(&["keys", "generate", "-o", "json"], None)
        .ok()
        .json();
    let entry = printed["entry"].as_str().unwrap();
    assert!(entry.starts_with(&format!("{}:", printed["id"].as_str().unwrap())));
    assert!(
        datahub_core::crypto::Keyring::parse(entry).is_ok(),
        "a valid keyring entry"
    );
    let before = std::fs::read_to_string(cli.key_file()).unwrap();
    assert!(!before.contains(entry));

    cli.run(&["keys", "generate", "--id", "k2", "--write"], None)
        .ok();
    assert_key_file_private(&cli.key_file());
    let again = cli.run(&["keys", "generate", "--id", "k2", "--write"], None);
    assert_eq!(again.code, 2, "a taken id is refused");
    let status = cli.run(&["keys", "status", "-o", "json"], None).ok().json();
    assert_eq!(status[0]["id"], "k2");
    assert_eq!(status[0]["active"], true);
    assert_eq!(status[0]["rows"], 0);
    assert_eq!(status[1]["id"], first.as_str());
    assert_eq!(status[1]["rows"], 1);

    let in_use = cli.run(&["keys", "retire", &first, "--write"], None);
    assert_eq!(in_use.code, 1, "{}", in_use.stderr);
    assert!(in_use.stderr.contains("still wraps 1"), "{}", in_use.stderr);
    assert!(
        std::fs::read_to_string(cli.key_file())
            .unwrap()
            .contains(&format!("{first}:"))
    );

    let rotated = cli.run(&["keys", "rotate", "-o", "json"], None).ok().json();
    assert_eq!(rotated["active"], "k2");
    assert_eq!(rotated["rewrapped"], 1);
    let rotated = cli.run(&["keys", "rotate", "-o", "json"], None).ok().json();
    assert_eq!(rotated["rewrapped"], 0);

    let active = cli.run(&["keys", "retire", "k2"], None);
    assert_eq!(active.code, 1);
    assert!(active.stderr.contains("active"), "{}", active.stderr);
    cli.run(&["keys", "retire", &first, "--write"], None).ok();
    assert_key_file_private(&cli.key_file());
    let text = std::fs::read_to_string(cli.key_file()).unwrap();
    assert!(
        !text.contains(&format!("{first}:")) && text.contains("k2:"),
        "{text}"
    );
    let status = cli.run(&["keys", "status", "-o", "json"], None).ok().json();
    assert_eq!(status.as_array().unwrap().len(), 1);
    assert_eq!(status[0]["rows"], 1);

    // The stored password still opens under the new key.
    let revealed = cli
        .reveal(&["conn", "reveal", "keyed", "-o", "json"])
        .ok()
        .json();
    assert_eq!(revealed["password"], CANARY);

    let tail = cli.run(&["audit", "tail", "-o", "json"], None).ok().json();
    let actions: Vec<&str> = tail
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "connection.create",
            "keys.retire",
            "keys.rotate",
            "keys.rotate",
            "keys.retire",
            "keys.retire",
            "connection.reveal",
        ]
    );
    cli.assert_no_canary();
}

#[cfg(unix)]
fn assert_key_file_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
}

#[cfg(not(unix))]
fn assert_key_file_private(path: &Path) {
    assert!(path.exists());
}

#[test]
fn connections_against_a_kit_cluster() {
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new("app").password(CANARY))
        .database("appdb", "app")
        .start()
        .unwrap();
    let cli = Cli::new();
    let ca = cli.data.with_file_name("ca.pem");
    std::fs::write(&ca, cluster.ca_pem().unwrap()).unwrap();
    let port = cluster.port().to_string();
    let add = |name: &str, password: &str| {
        cli.run(
            &[
                "conn",
                "add",
                name,
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--database",
                "appdb",
                "--username",
                "app",
                "--tls-mode",
                "verify-full",
                "--ca-cert",
                ca.to_str().unwrap(),
                "--tag",
                "kit",
                "--password-stdin",
                "-o",
                "json",
            ],
            Some(&stdin_line(password)),
        )
    };
    let saved = add("app-db", CANARY).ok().json();
    assert_eq!(saved["name"], "app-db");
    assert_eq!(saved["password_set"], true);
    assert_eq!(saved["tls"]["mode"], "verify-full");
    assert_eq!(saved["version"], 1);
    assert_eq!(saved["health"]["status"], "unknown");
    assert!(saved.get("password").is_none());
    assert_eq!(add("app-db", CANARY).code, 1, "the name is taken");
    add("wrong-pw", USER_PW).ok();
    let bad_port = cli.run(
        &[
            "conn",
            "add",
            "x",
            "--host",
            "127.0.0.1",
            "--port",
            "70000",
            "--database",
            "d",
            "--username",
            "u",
            "--password-stdin",
        ],
        Some(&stdin_line(USER_PW)),
    );
    assert_eq!(bad_port.code, 2);
    assert!(bad_port.stderr.contains("port"), "{}", bad_port.stderr);

    let table = cli.run(&["conn", "list"], None).ok().stdout;
    assert!(
        table.contains("app-db") && table.contains("wrong-pw"),
        "{table}"
    );
    let list = cli
        .run(&["conn", "list", "--search", "app", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["page"], 1);
    assert_eq!(list["items"][0]["id"], saved["id"]);

    let report = cli
        .run(&["conn", "test", "app-db", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["error_kind"], Value::Null);
    assert_eq!(report["server"]["user"], "app");
    assert_eq!(report["server"]["database"], "appdb");
    assert!(
        report["tls"]["protocol"]
            .as_str()
            .unwrap()
            .starts_with("TLS")
    );
    assert!(report["steps"].as_array().unwrap().len() >= 4);
    for key in ["step", "hint", "sqlstate", "total_ms"] {
        assert!(report.get(key).is_some(), "{key}");
    }
    let by_id = cli
        .run(&["conn", "test", saved["id"].as_str().unwrap()], None)
        .ok();
    assert!(by_id.stdout.contains("app-db"), "{}", by_id.stdout);

    let failed = cli.run(&["conn", "test", "wrong-pw", "-o", "json"], None);
    assert_eq!(failed.code, 1);
    let failed = failed.json();
    assert_eq!(failed["ok"], false);
    assert_eq!(failed["error_kind"], "auth_failed");

    let all = cli.run(&["conn", "test", "--all", "-o", "json"], None);
    assert_eq!(all.code, 1, "one of them fails");
    let all = all.json();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["name"], "app-db");
    assert_eq!(all[0]["report"]["ok"], true);
    assert_eq!(all[1]["report"]["error_kind"], "auth_failed");
    assert_eq!(cli.run(&["conn", "test", "missing"], None).code, 2);
    assert_eq!(cli.run(&["conn", "test"], None).code, 2);

    let revealed = cli.reveal(&["conn", "reveal", "app-db", "-o", "json"]).ok();
    let json = revealed.json();
    assert_eq!(json["password"], CANARY);
    assert_eq!(json["username"], "app");
    assert!(json["dsn"].as_str().unwrap().starts_with("postgres"));
    assert!(revealed.stderr.contains("audit"));

    let unconfirmed = cli.run(&["conn", "rm", "app-db"], None);
    assert_eq!(unconfirmed.code, 2, "no terminal and no --yes");
    cli.run(&["conn", "rm", "app-db", "--yes"], None).ok();
    let list = cli.run(&["conn", "list", "-o", "json"], None).ok().json();
    assert_eq!(list["total"], 1);
    assert_eq!(cli.run(&["conn", "reveal", "app-db"], None).code, 2);

    let tail = cli
        .run(&["audit", "tail", "-n", "200", "-o", "json"], None)
        .ok()
        .json();
    let actions: Vec<&str> = tail
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for expected in [
        "connection.create",
        "connection.test",
        "connection.reveal",
        "connection.delete",
    ] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    cli.run(&["audit", "verify"], None).ok();
    cli.assert_no_canary();
}

/// Adds a user with `USER_PW` from stdin and returns its JSON.
fn add_user(cli: &Cli, name: &str, role: &str) -> Value {
    cli.run(
        &[
            "users",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
            "-o",
            "json",
        ],
        Some(&stdin_line(USER_PW)),
    )
    .ok()
    .json()
}

#[test]
fn tokens_list_shows_every_field_but_the_token() {
    let cli = Cli::new();
    let alice = add_user(&cli, "alice", "editor");
    let bob = add_user(&cli, "bob", "viewer");
    let create = |user: &str, name: &str, extra: &[&str]| {
        let mut args = vec![
            "tokens", "create", "--user", user, "--name", name, "-o", "json",
        ];
        args.extend_from_slice(extra);
        cli.run(&args, None).ok().json()
    };
    let a1 = create("alice", "ci", &["--read-only", "--expires-in-days", "7"]);
    let b1 = create("bob", "laptop", &[]);
    let a2 = create("alice", "old", &[]);
    cli.run(&["tokens", "revoke", a2["id"].as_str().unwrap()], None)
        .ok();
    let secrets = [&a1, &b1, &a2].map(|t| t["token"].as_str().unwrap().to_owned());
    // A use recorded by a server sharing the store (2024-05-06T07:08:09.123456Z, in unix µs).
    {
        let db = rusqlite::Connection::open(cli.db()).unwrap();
        db.execute(
            "UPDATE tokens SET last_used_at = 1714979289123456 WHERE id = ?1",
            [b1["id"].as_str().unwrap()],
        )
        .unwrap();
    }

    let all = cli.run(&["tokens", "list", "-o", "json"], None).ok();
    let json = all.json();
    let items = json.as_array().unwrap();
    let ids: Vec<&Value> = items.iter().map(|t| &t["id"]).collect();
    assert_eq!(ids, [&a1["id"], &b1["id"], &a2["id"]], "oldest first");
    let first = &items[0];
    assert_eq!(first["name"], "ci");
    assert_eq!(first["user_id"], alice["id"]);
    assert_eq!(first["username"], "alice");
    assert_eq!(first["read_only"], true);
    assert_eq!(first["created_at"], a1["created_at"]);
    assert_eq!(first["expires_at"], a1["expires_at"]);
    assert_eq!(first["revoked_at"], Value::Null);
    assert_eq!(items[1]["username"], "bob");
    assert_eq!(items[1]["user_id"], bob["id"]);
    assert_eq!(items[1]["expires_at"], Value::Null);
    assert_eq!(first["last_used_at"], Value::Null, "never used");
    assert_eq!(items[1]["last_used_at"], "2024-05-06T07:08:09.123456Z");
    assert!(items[2]["revoked_at"].is_string(), "{json}");
    // Exactly these fields (serde_json's map lists them sorted): no token, no hash.
    let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "expires_at",
            "id",
            "last_used_at",
            "name",
            "read_only",
            "revoked_at",
            "user_id",
            "username"
        ]
    );

    let only_bob = cli
        .run(&["tokens", "list", "--user", "bob", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(only_bob.as_array().unwrap().len(), 1);
    assert_eq!(only_bob[0]["id"], b1["id"]);
    let table = cli.run(&["tokens", "list", "--user", "alice"], None).ok();
    for expected in ["ci", "old", "alice", "yes", a1["id"].as_str().unwrap()] {
        assert!(
            table.stdout.contains(expected),
            "{expected}: {}",
            table.stdout
        );
    }
    assert!(!table.stdout.contains("laptop"), "{}", table.stdout);
    let bobs = cli.run(&["tokens", "list", "--user", "bob"], None).ok();
    for expected in ["last used", "2024-05-06T07:08:09"] {
        assert!(
            bobs.stdout.contains(expected),
            "{expected}: {}",
            bobs.stdout
        );
    }
    let nobody = cli.run(&["tokens", "list", "--user", "nobody"], None);
    assert_eq!(nobody.code, 2);
    assert!(nobody.stderr.contains("username"), "{}", nobody.stderr);

    // Neither the token nor its hash is ever printed by a listing.
    let hashes: Vec<String> = {
        let db = rusqlite::Connection::open(cli.db()).unwrap();
        let mut stmt = db.prepare("SELECT hash FROM tokens").unwrap();
        stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|h| h.unwrap().iter().map(|b| format!("{b:02x}")).collect())
            .collect()
    };
    assert_eq!(hashes.len(), 3);
    for out in [&all.stdout, &table.stdout] {
        for secret in secrets.iter().chain(&hashes) {
            assert!(!out.contains(secret.as_str()), "printed {secret}");
        }
        assert!(!out.contains("dh_"), "{out}");
    }
    // Listing is a read: the audit log holds only the creations and the revocation.
    let tail = cli
        .run(&["audit", "tail", "-n", "50", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(tail.as_array().unwrap().len(), 6);
}

#[test]
fn users_enable_and_set_role_keep_an_enabled_admin() {
    let cli = Cli::new();
    let root = add_user(&cli, "root1", "admin");
    add_user(&cli, "ed", "editor");
    let user = |name: &str| -> Value {
        let list = cli.run(&["users", "list", "-o", "json"], None).ok().json();
        list.as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .unwrap()
            .clone()
    };

    // Roles: the core's four names; the answer is the user as stored.
    let set = cli
        .run(&["users", "set-role", "ed", "auditor", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(set["username"], "ed");
    assert_eq!(set["role"], "auditor");
    assert_eq!(user("ed")["role"], "auditor");
    let table = cli.run(&["users", "set-role", "ed", "viewer"], None).ok();
    assert!(table.stdout.contains("viewer"), "{}", table.stdout);
    assert!(
        table.stderr.contains("ed is now viewer"),
        "{}",
        table.stderr
    );
    let bad = cli.run(&["users", "set-role", "ed", "root"], None);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("role"), "{}", bad.stderr);
    let nobody = cli.run(&["users", "set-role", "nobody", "admin"], None);
    assert_eq!(nobody.code, 2);
    assert_eq!(cli.run(&["users", "enable", "nobody"], None).code, 2);
    assert_eq!(user("ed")["role"], "viewer");

    // Disable and enable again.
    cli.run(&["users", "disable", "ed"], None).ok();
    assert_eq!(user("ed")["disabled"], true);
    let enabled = cli.run(&["users", "enable", "ed"], None).ok();
    assert!(
        enabled.stderr.contains("ed is enabled"),
        "{}",
        enabled.stderr
    );
    assert_eq!(user("ed")["disabled"], false);

    // The last enabled admin can be neither demoted nor disabled (exit 1, nothing changes).
    for args in [
        &["users", "set-role", "root1", "editor"][..],
        &["users", "disable", "root1"][..],
    ] {
        let refused = cli.run(args, None);
        assert_eq!(refused.code, 1, "{args:?}: {}", refused.stderr);
        assert!(
            refused.stderr.contains("last enabled admin"),
            "{}",
            refused.stderr
        );
    }
    assert_eq!(user("root1")["role"], "admin");
    assert_eq!(user("root1")["disabled"], false);
    // With a second admin, one may go; then the other is the last, until the first is back.
    cli.run(&["users", "set-role", "ed", "admin"], None).ok();
    cli.run(&["users", "disable", "root1"], None).ok();
    assert_eq!(
        cli.run(&["users", "set-role", "ed", "editor"], None).code,
        1,
        "a disabled admin does not count"
    );
    cli.run(&["users", "enable", "root1"], None).ok();
    cli.run(&["users", "set-role", "ed", "editor"], None).ok();
    assert_eq!(user("ed")["role"], "editor");
    assert_eq!(user("root1")["id"], root["id"]);
    assert_eq!(user("root1")["disabled"], false);

    // Each change is one audited update naming the field; refusals change nothing.
    let tail = cli
        .run(&["audit", "tail", "-n", "50", "-o", "json"], None)
        .ok()
        .json();
    let updates: Vec<(String, Value)> = tail
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "user.update")
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_owned(),
                r["changed_fields"].clone(),
            )
        })
        .collect();
    let role = || ("ok".to_owned(), serde_json::json!(["role"]));
    let disabled = || ("ok".to_owned(), serde_json::json!(["disabled"]));
    assert_eq!(
        updates,
        [
            role(),
            role(),
            disabled(),
            disabled(),
            role(),
            disabled(),
            disabled(),
            role()
        ]
    );
}

/// One GET through the app as the bearer of `token`: the status and the JSON body.
async fn api_get(app: &axum::Router, uri: &str, token: &str) -> (axum::http::StatusCode, Value) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let request = axum::http::Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The core's Hub over the CLI's store and key file, in this process, with a runtime to drive
/// it: for what the CLI cannot do (teams) and to serve the HTTP API over the same store.
fn hub_of(cli: &Cli) -> (tokio::runtime::Runtime, datahub_core::hub::Hub) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let hub = runtime.block_on(async {
        let store = datahub_core::store::SqliteStore::open(&cli.data).unwrap();
        let keyring = datahub_core::crypto::Keyring::load_key_file(cli.key_file()).unwrap();
        datahub_core::hub::Hub::open(std::sync::Arc::new(store), keyring)
            .await
            .unwrap()
    });
    (runtime, hub)
}

/// The HTTP API over `hub`.
fn app_of(hub: datahub_core::hub::Hub) -> axum::Router {
    datahub_server::app(datahub_server::AppState::new(
        hub,
        datahub_server::HttpOptions::default(),
    ))
}

/// A new bearer token of `user`, made by the CLI.
fn token_of(cli: &Cli, user: &str) -> String {
    let t = cli
        .run(
            &[
                "tokens", "create", "--user", user, "--name", "t", "-o", "json",
            ],
            None,
        )
        .ok()
        .json();
    t["token"].as_str().unwrap().to_owned()
}

/// `conn add NAME` to a closed loopback port, the canary password on stdin, plus `extra`.
fn add_conn(cli: &Cli, name: &str, extra: &[&str]) -> Out {
    let mut args = vec![
        "conn",
        "add",
        name,
        "--host",
        "127.0.0.1",
        "--port",
        "1",
        "--database",
        "app",
        "--username",
        "app",
        "--tls-mode",
        "require",
        "--password-stdin",
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    cli.run(&args, Some(&stdin_line(CANARY)))
}

#[test]
fn conn_grants_in_the_cores_vocabulary() {
    let cli = Cli::new();
    add_user(&cli, "root", "admin");
    let bob = add_user(&cli, "bob", "viewer");
    add_user(&cli, "alice", "editor");
    let ops = add_conn(&cli, "ops-db", &[]).ok().json();

    // A team, made through the core on the same store (the CLI has no team commands).
    let (runtime, hub) = hub_of(&cli);
    let bob_id: datahub_core::UserId = bob["id"].as_str().unwrap().parse().unwrap();
    let team = runtime
        .block_on(hub.save_team(
            &datahub_core::rbac::Principal::operator("test"),
            None,
            "ops",
            &[bob_id],
        ))
        .unwrap();
    let team_id = team.id.to_string();

    // Grants in the core's vocabulary (view, use, manage), to a user or a team.
    let grants = |name: &str| {
        cli.run(&["conn", "grants", name, "-o", "json"], None)
            .ok()
            .json()
    };
    assert_eq!(grants("ops-db"), json!({"grants": []}));
    let set = cli
        .run(
            &[
                "conn", "grant", "ops-db", "--user", "bob", "--level", "use", "-o", "json",
            ],
            None,
        )
        .ok()
        .json();
    assert_eq!(
        set,
        json!({"grants": [{"user_id": bob["id"], "level": "use", "name": "bob"}]})
    );
    cli.run(
        &[
            "conn", "grant", "ops-db", "--team", "ops", "--level", "view",
        ],
        None,
    )
    .ok();
    // Granting again replaces the level.
    cli.run(
        &[
            "conn", "grant", "ops-db", "--user", "bob", "--level", "manage",
        ],
        None,
    )
    .ok();
    let now = grants("ops-db");
    let items = now["grants"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{now}");
    assert!(items.contains(&json!({"user_id": bob["id"], "level": "manage", "name": "bob"})));
    assert!(items.contains(&json!({"team_id": team_id, "level": "view", "name": "ops"})));
    let table = cli.run(&["conn", "grants", "ops-db"], None).ok().stdout;
    for expected in ["user", "bob", "manage", "team", "ops", "view", &team_id] {
        assert!(table.contains(expected), "{expected}: {table}");
    }

    // Bad input: exit 2, nothing changes.
    for args in [
        &[
            "conn", "grant", "ops-db", "--user", "bob", "--level", "edit",
        ][..],
        &[
            "conn", "grant", "ops-db", "--user", "nobody", "--level", "view",
        ][..],
        &[
            "conn", "grant", "ops-db", "--team", "nope", "--level", "view",
        ][..],
        &[
            "conn", "grant", "ops-db", "--user", "bob", "--team", "ops", "--level", "view",
        ][..],
        &["conn", "grant", "ops-db", "--level", "view"][..],
        &[
            "conn", "grant", "missing", "--user", "bob", "--level", "view",
        ][..],
        &["conn", "revoke-grant", "ops-db", "--user", "alice"][..],
    ] {
        let bad = cli.run(args, None);
        assert_eq!(bad.code, 2, "{args:?}: {}", bad.stderr);
    }
    let level = cli.run(
        &[
            "conn", "grant", "ops-db", "--user", "bob", "--level", "edit",
        ],
        None,
    );
    assert!(level.stderr.contains("level"), "{}", level.stderr);
    let none = cli.run(&["conn", "revoke-grant", "ops-db", "--user", "alice"], None);
    assert!(none.stderr.contains("holds no grant"), "{}", none.stderr);
    assert_eq!(grants("ops-db"), now);

    let revoked = cli
        .run(
            &[
                "conn",
                "revoke-grant",
                "ops-db",
                "--user",
                "bob",
                "-o",
                "json",
            ],
            None,
        )
        .ok()
        .json();
    assert_eq!(
        revoked,
        json!({"grants": [{"team_id": team_id, "level": "view", "name": "ops"}]})
    );

    // The HTTP API reads the same grants, and bob now sees the connection through his team.
    let (root_t, bob_t) = (token_of(&cli, "root"), token_of(&cli, "bob"));
    let app = app_of(hub);
    let ops_uri = format!("/api/v1/connections/{}", ops["id"].as_str().unwrap());
    runtime.block_on(async {
        let (status, api_grants) = api_get(&app, &format!("{ops_uri}/grants"), &root_t).await;
        assert_eq!(status, 200);
        assert_eq!(api_grants, revoked);
        let (status, seen) = api_get(&app, &ops_uri, &bob_t).await;
        assert_eq!(status, 200, "{seen}");
        let (_, bobs) = api_get(&app, "/api/v1/connections", &bob_t).await;
        assert_eq!(bobs["total"], 1);
    });

    // Four grant changes, each audited; refusals wrote nothing.
    let tail = cli
        .run(&["audit", "tail", "-n", "100", "-o", "json"], None)
        .ok()
        .json();
    let writes = tail
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "grants.write")
        .count();
    assert_eq!(writes, 4);
    cli.assert_no_canary();
}

#[test]
fn conn_add_owner_and_connections_no_user_owns() {
    let cli = Cli::new();
    add_user(&cli, "root", "admin");
    let alice = add_user(&cli, "alice", "editor");
    add_user(&cli, "carl", "viewer");
    cli.run(&["users", "disable", "carl"], None).ok();

    // Owners: no user by default, or an enabled user named with --owner.
    let ops = add_conn(&cli, "ops-db", &[]).ok().json();
    assert_eq!(ops["owner"], Value::Null, "no nil UUID posing as a user");
    assert_eq!(ops["client_key_set"], false, "the API's connection shape");
    let alices = add_conn(&cli, "alice-db", &["--owner", "alice"])
        .ok()
        .json();
    assert_eq!(alices["owner"], alice["id"]);
    for (owner, said) in [("nobody", "no user"), ("carl", "disabled")] {
        let refused = add_conn(&cli, "refused", &["--owner", owner]);
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert!(
            refused.stderr.contains("owner") && refused.stderr.contains(said),
            "{}",
            refused.stderr
        );
    }
    let list = cli.run(&["conn", "list", "-o", "json"], None).ok().json();
    assert_eq!(list["total"], 2, "nothing refused was saved");
    let owners: Vec<(&Value, &Value)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (&c["name"], &c["owner"]))
        .collect();
    assert!(owners.contains(&(&json!("ops-db"), &Value::Null)));
    assert!(owners.contains(&(&json!("alice-db"), &alice["id"])));
    let shown = cli.run(&["conn", "grants", "ops-db"], None).ok().stdout;
    assert!(shown.contains("owner no user"), "{shown}");
    let shown = cli.run(&["conn", "grants", "alice-db"], None).ok().stdout;
    assert!(shown.contains("owner alice"), "{shown}");

    // Over HTTP: owner null, GET and list work for admins; the owner manages its own.
    let (root_t, alice_t) = (token_of(&cli, "root"), token_of(&cli, "alice"));
    let (runtime, hub) = hub_of(&cli);
    let app = app_of(hub);
    let uri = |c: &Value| format!("/api/v1/connections/{}", c["id"].as_str().unwrap());
    runtime.block_on(async {
        let (status, one) = api_get(&app, &uri(&ops), &root_t).await;
        assert_eq!(status, 200, "{one}");
        assert_eq!(one["owner"], Value::Null);
        assert_eq!(one["name"], "ops-db");
        let (status, all) = api_get(&app, "/api/v1/connections", &root_t).await;
        assert_eq!(status, 200, "{all}");
        assert_eq!(all["total"], 2);
        let api_owners: Vec<(&Value, &Value)> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (&c["name"], &c["owner"]))
            .collect();
        assert!(api_owners.contains(&(&json!("ops-db"), &Value::Null)));
        assert!(api_owners.contains(&(&json!("alice-db"), &alice["id"])));
        // Alice sees only hers, and may manage it (read its grants).
        let (_, hers) = api_get(&app, "/api/v1/connections", &alice_t).await;
        assert_eq!(hers["total"], 1);
        assert_eq!(hers["items"][0]["owner"], alice["id"]);
        let (status, _) = api_get(&app, &format!("{}/grants", uri(&alices)), &alice_t).await;
        assert_eq!(status, 200);
        let (status, _) = api_get(&app, &uri(&ops), &alice_t).await;
        assert_eq!(status, 404);
    });

    // The creation for alice names the owner among the changed fields.
    let tail = cli
        .run(&["audit", "tail", "-n", "100", "-o", "json"], None)
        .ok()
        .json();
    let creates: Vec<&Value> = tail
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "connection.create")
        .map(|r| &r["changed_fields"])
        .collect();
    assert_eq!(creates, [&json!([]), &json!(["owner"])]);
    cli.assert_no_canary();
}

// ------------------------------------------------------------------------------------------
// S28: a lost or foreign master key is refused by every command and by `serve`
// ------------------------------------------------------------------------------------------

/// The right master key as bare base64 (id `default`), and a wrong one.
const RIGHT_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const WRONG_KEY: &str = "HxseHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

/// Commands that each open the store and the keyring, one of every group.
const EVERY_KIND: &[&[&str]] = &[
    &["migrate"],
    &["users", "list"],
    &["tokens", "list", "--user", "admin"],
    &["conn", "list"],
    &["conn", "reveal", "keyed"],
    &["keys", "status"],
    &["keys", "generate", "--write"],
    &["audit", "verify"],
    &["policy", "show"],
];

/// What the store holds that a refused start must not change: key checks, audit rows, users.
fn snapshot(env: &[(&str, &str)], data: &Path) -> (Vec<String>, usize, u64) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store: std::sync::Arc<dyn datahub_core::store::Store> =
            match env.iter().find(|(k, _)| *k == "DATAHUB_STORE") {
                Some((_, url)) => std::sync::Arc::new(
                    datahub_core::store::PostgresStore::connect_url(
                        url,
                        datahub_core::store::PostgresOptions::default(),
                    )
                    .await
                    .unwrap(),
                ),
                None => std::sync::Arc::new(datahub_core::store::SqliteStore::open(data).unwrap()),
            };
        let checks = store
            .key_checks()
            .await
            .unwrap()
            .iter()
            .map(|c| c.kek_id().as_str().to_owned())
            .collect();
        let audit = store.audit_after(0, 100_000).await.unwrap().len();
        let users = store.user_count().await.unwrap();
        (checks, audit, users)
    })
}

/// Runs the server binary, which must refuse to start: exits non-zero within 30 s. Returns
/// its stderr.
fn serve_refused(cli: &Cli, env: &[(&str, &str)]) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DATAHUB_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .args(["--data-dir", cli.data.to_str().unwrap()])
        .args([
            "serve",
            "--no-monitor",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("DATAHUB_BOOTSTRAP_ADMIN_PASSWORD", USER_PW)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            assert_eq!(status.code(), Some(1), "{err}");
            return err;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started with a lost or wrong key");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Saves the connection `keyed` (canary password) with `env` set; it must succeed.
fn add_keyed(cli: &Cli, env: &[(&str, &str)]) {
    let added = cli.run_env(
        &[
            "conn",
            "add",
            "keyed",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
            "--database",
            "app",
            "--username",
            "app",
            "--tls-mode",
            "require",
            "--password-stdin",
        ],
        Some(&stdin_line(CANARY)),
        env,
    );
    assert_eq!(added.code, 0, "{}", added.stderr);
}

/// Every command and `serve` refuse with exit code 1 and a message holding each of `expect`;
/// none writes a key file or anything in the store.
#[track_caller]
fn everything_refuses(cli: &Cli, env: &[(&str, &str)], expect: &[&str]) {
    let before = snapshot(env, &cli.data);
    let key_file_before = std::fs::read(cli.key_file()).ok();
    for args in EVERY_KIND {
        let out = cli.run_env(args, None, env);
        assert_eq!(out.code, 1, "{args:?} exit code\n{}", out.stderr);
        for needle in expect {
            assert!(
                out.stderr.contains(needle),
                "{args:?}: no {needle:?} in\n{}",
                out.stderr
            );
        }
        assert!(!out.stdout.contains(CANARY));
    }
    let said = serve_refused(cli, env);
    for needle in expect {
        assert!(said.contains(needle), "serve: no {needle:?} in\n{said}");
    }
    assert!(!said.contains("A new master key"), "{said}");
    assert_eq!(
        std::fs::read(cli.key_file()).ok(),
        key_file_before,
        "no key file written or changed"
    );
    assert_eq!(
        snapshot(env, &cli.data),
        before,
        "nothing written to the store"
    );
}

/// The key file's one key id.
fn key_id_of(path: &Path) -> String {
    let keyring = datahub_core::crypto::Keyring::load_key_file(path).unwrap();
    keyring.active_id().as_str().to_owned()
}

/// S28 on the embedded store: the key file gone, then another data folder's key file, then a
/// wrong bare `DATAHUB_MASTER_KEY`: the server and every command refuse, naming the key id and
/// the file or variable, exiting 1 and writing nothing; the right key back starts and reveals.
/// Generated key ids are unique (not `default`).
#[test]
fn a_lost_or_foreign_key_is_refused_by_every_command_on_sqlite() {
    let cli = Cli::new();
    add_conn(&cli, "keyed", &[]).ok();
    let id = key_id_of(&cli.key_file());
    assert!(id.starts_with("k-") && id != "default", "{id}");
    let other = Cli::new();
    add_conn(&other, "elsewhere", &[]).ok();
    let other_id = key_id_of(&other.key_file());
    assert_ne!(id, other_id, "generated ids are unique");

    // The key file gone.
    let backup = cli.data.with_file_name("master.key.backup");
    std::fs::rename(cli.key_file(), &backup).unwrap();
    let path = cli.key_file().display().to_string();
    everything_refuses(&cli, &[], &[&id, &path, "does not exist"]);
    assert!(!cli.key_file().exists());

    // Another data folder's key file in its place.
    std::fs::copy(other.key_file(), cli.key_file()).unwrap();
    everything_refuses(&cli, &[], &[&id, &path]);

    // The right key back: starts and reveals.
    std::fs::rename(&backup, cli.key_file()).unwrap();
    let revealed = cli
        .reveal(&["conn", "reveal", "keyed", "-o", "json"])
        .ok()
        .json();
    assert_eq!(revealed["password"], CANARY);

    // A bare DATAHUB_MASTER_KEY (id `default`) with a wrong value.
    let env_cli = Cli::new();
    let right = [("DATAHUB_MASTER_KEY", RIGHT_KEY)];
    let wrong = [("DATAHUB_MASTER_KEY", WRONG_KEY)];
    add_keyed(&env_cli, &right);
    assert!(!env_cli.key_file().exists(), "the variable, not a file");
    everything_refuses(
        &env_cli,
        &wrong,
        &["default", "DATAHUB_MASTER_KEY", "not the key"],
    );
    // Without the variable, and no key file: refused too, naming `default` and the file.
    let path = env_cli.key_file().display().to_string();
    everything_refuses(&env_cli, &[], &["default", &path]);
    let revealed = env_cli.run_env(&["conn", "reveal", "keyed", "-o", "json"], None, &right);
    assert_eq!(revealed.code, 0, "{}", revealed.stderr);
    assert_eq!(revealed.json()["password"], CANARY);
    cli.assert_no_canary();
}

/// S28 on the PostgreSQL store (a kit cluster): the key file gone, a wrong bare
/// `DATAHUB_MASTER_KEY`, then the right keys back.
#[test]
fn a_lost_or_foreign_key_is_refused_by_every_command_on_postgres() {
    let cluster = PgCluster::builder()
        .user(User::new("store").password("store-pw-S28-x1"))
        .database("filekey", "store")
        .database("envkey", "store")
        .start()
        .unwrap();
    let file_url = cluster.url("store", "filekey");
    let file_env = [("DATAHUB_STORE", file_url.as_str())];
    let cli = Cli::new();
    add_keyed(&cli, &file_env);
    let id = key_id_of(&cli.key_file());
    let backup = cli.data.with_file_name("master.key.backup");
    std::fs::rename(cli.key_file(), &backup).unwrap();
    let path = cli.key_file().display().to_string();
    everything_refuses(&cli, &file_env, &[&id, &path]);
    // A fresh data folder on the same store: no key file is made for a store with data.
    let fresh = Cli::new();
    everything_refuses(&fresh, &file_env, &[&id]);
    assert!(!fresh.key_file().exists());
    std::fs::rename(&backup, cli.key_file()).unwrap();
    let revealed = cli.run_env(&["conn", "reveal", "keyed", "-o", "json"], None, &file_env);
    assert_eq!(revealed.code, 0, "{}", revealed.stderr);
    assert_eq!(revealed.json()["password"], CANARY);

    let env_url = cluster.url("store", "envkey");
    let right = [
        ("DATAHUB_STORE", env_url.as_str()),
        ("DATAHUB_MASTER_KEY", RIGHT_KEY),
    ];
    let wrong = [
        ("DATAHUB_STORE", env_url.as_str()),
        ("DATAHUB_MASTER_KEY", WRONG_KEY),
    ];
    let env_cli = Cli::new();
    add_keyed(&env_cli, &right);
    everything_refuses(
        &env_cli,
        &wrong,
        &["default", "DATAHUB_MASTER_KEY", "not the key"],
    );
    let revealed = env_cli.run_env(&["conn", "reveal", "keyed", "-o", "json"], None, &right);
    assert_eq!(revealed.code, 0, "{}", revealed.stderr);
    assert_eq!(revealed.json()["password"], CANARY);
}

/// S32 through the binary: `--store postgres://…?sslmode=verify-full&sslrootcert=…` migrates,
/// stores and reveals over TLS; a CA that did not sign the server's certificate makes every
/// command and `serve` refuse to start, saying the PostgreSQL store's certificate is the problem.
#[test]
fn the_postgres_store_over_tls_and_a_wrong_ca() {
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(
            User::new("store")
                .password("store-pw-S32-tls")
                .transport(datahub_testkit::Transport::SslOnly),
        )
        .database("store", "store")
        .start()
        .unwrap();
    let cli = Cli::new();
    std::fs::create_dir_all(&cli.data).unwrap();
    let ca = cli.data.join("store-ca.pem");
    let other = cli.data.join("other-ca.pem");
    std::fs::write(&ca, cluster.ca_pem().unwrap()).unwrap();
    std::fs::write(&other, cluster.other_ca_pem().unwrap()).unwrap();
    let base = cluster.url("store", "store");
    let good = format!("{base}?sslmode=verify-full&sslrootcert={}", ca.display());
    let env = [("DATAHUB_STORE", good.as_str())];
    let migrated = cli.run_env(&["migrate"], None, &env);
    assert_eq!(migrated.code, 0, "{}", migrated.stderr);
    assert!(
        !migrated.stderr.contains("may be unencrypted"),
        "no warning under verify-full: {}",
        migrated.stderr
    );
    let added = cli.run_env(
        &[
            "conn",
            "add",
            "over-tls",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
            "--database",
            "app",
            "--username",
            "app",
            "--tls-mode",
            "require",
            "--password-stdin",
        ],
        Some(&stdin_line(CANARY)),
        &env,
    );
    assert_eq!(added.code, 0, "{}", added.stderr);
    let revealed = cli.run_env(&["conn", "reveal", "over-tls", "-o", "json"], None, &env);
    assert_eq!(revealed.code, 0, "{}", revealed.stderr);
    assert_eq!(revealed.json()["password"], CANARY);

    let wrong = format!("{base}?sslmode=verify-full&sslrootcert={}", other.display());
    let env = [("DATAHUB_STORE", wrong.as_str())];
    for args in [&["migrate"][..], &["conn", "list"], &["users", "list"]] {
        let out = cli.run_env(args, None, &env);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("PostgreSQL store"), "{}", out.stderr);
        assert!(
            out.stderr.contains("tls_certificate_invalid"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("store-pw-S32-tls"), "{}", out.stderr);
    }
    let said = serve_refused(&cli, &env);
    assert!(said.contains("tls_certificate_invalid"), "{said}");

    // No sslmode and no CA: prefer, with a warning at start.
    let env = [("DATAHUB_STORE", base.as_str())];
    let listed = cli.run_env(&["conn", "list"], None, &env);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.stderr.contains("may be unencrypted"),
        "{}",
        listed.stderr
    );
}
