//! The operator CLI, run as the built binary against temporary data folders: migrate, users,
//! tokens, policy, audit (verify, then a tampered row) in [`accounts`]; keys (generate, rotate,
//! retire), a lost or foreign master key and the PostgreSQL store over TLS in [`keys`];
//! connections against a kit PostgreSQL cluster on loopback and grants in [`conn`]; and the
//! CLI's `--output json` against the HTTP API's answer for the same thing in [`api_json`]. A
//! canary password, given only on stdin, appears in no argument and no output except `conn
//! reveal`'s.

mod accounts;
mod api_json;
mod conn;
mod keys;

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

/// One GET through the app as the bearer of `token`: the status and the JSON body.
async fn api_get(app: &axum::Router, uri: &str, token: &str) -> (axum::http::StatusCode, Value) {
    api_send(app, axum::http::Method::GET, uri, token, None).await
}

/// One request through the app as the bearer of `token`, with a JSON `body` if any: the status
/// and the JSON body of the answer.
async fn api_send(
    app: &axum::Router,
    method: axum::http::Method,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (axum::http::StatusCode, Value) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"));
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string())),
        None => request.body(axum::body::Body::empty()),
    }
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
