//! The OpenAPI document is one a generated client can trust: schemathesis (a third-party API
//! fuzzer, 4.32.x) reads the server's own `/api/v1/openapi.json` and sends what it allows and
//! what it forbids, with an admin's API token, through every phase (the document's examples,
//! its boundaries, random fuzzing, and stateful sequences following the document's links), and
//! every answer must be one the document describes: its status, content type, headers and
//! schema, no 5xx, a request the schema calls valid accepted and one it calls invalid refused.
//!
//! The built binary serves the embedded SQLite store over a fresh data folder, inside a new
//! network namespace (`unshare -n`) where only loopback exists: whatever host the fuzzer puts in
//! a connection, the server can dial only this namespace's loopback, where nothing else listens.
//! The fuzzer runs in the same namespace. Every process started here is in one process group,
//! killed at the end whatever happened.
//!
//! `scripts/test` installs schemathesis in a virtual environment and names its `st` in
//! `DATAHUB_SCHEMATHESIS`; without it, `target/schemathesis-venv/bin/st` is tried, and the test
//! fails naming what is missing.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_datahub-server");
/// The version `scripts/test` installs.
const VERSION: &str = "4.32.";
/// The namespace is new and empty: any port is free in it.
const PORT: u16 = 18080;
/// A run takes well under this; a hung fuzzer fails the test instead of the CI run.
const DEADLINE: Duration = Duration::from_secs(600);
/// The password of the admin the fuzzer acts as (it signs in with an API token, never with this).
const ADMIN_PW: &str = "schemathesis-admin-pw-7Tq2";

/// The `st` of schemathesis 4.32.x: `DATAHUB_SCHEMATHESIS`, else the virtual environment
/// `scripts/test` makes under the workspace's `target/`.
fn schemathesis() -> PathBuf {
    let st = match std::env::var_os("DATAHUB_SCHEMATHESIS") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/schemathesis-venv/bin/st"),
    };
    let version = Command::new(&st)
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        version.contains(&format!("version {VERSION}")),
        "schemathesis {VERSION}x not found at {} (it says {version:?}): run ./scripts/test, which \
         installs it, or set DATAHUB_SCHEMATHESIS to the `st` of schemathesis {VERSION}x",
        st.display()
    );
    st
}

/// Whether `tool` runs (with `arg`).
fn runs(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a CLI command of the server over `data` (outside any `DATAHUB_*` environment of the
/// test runner) with `stdin`, and returns its JSON output.
fn cli(data: &Path, args: &[&str], stdin: &str) -> Value {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DATAHUB_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .env("USER", "schemathesis")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The process group of the namespace's shell: killed, with all it started, when dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        // The shell leads its own group (`process_group(0)`): its id is the group's.
        let pgid = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &pgid])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.wait();
    }
}

/// The last `max` bytes of `text`, on a character boundary.
fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// What the namespace runs: loopback up (and nothing else there), the server in the
/// background, then schemathesis, whose exit code is the script's.
const SCRIPT: &str = r#"
set -eu
ip link set lo up
links=$(ip -o link show | wc -l)
if [ "$links" -ne 1 ]; then
    echo "the namespace has $links network links, not loopback alone" >&2
    exit 97
fi
"$DH_BIN" --listen "127.0.0.1:$DH_PORT" --data-dir "$DH_DATA" >"$DH_SERVER_LOG" 2>&1 &
exec "$DH_ST" "$@"
"#;

#[test]
fn schemathesis_finds_the_server_exactly_as_its_openapi_document_says() {
    let st = schemathesis();
    assert!(
        runs("unshare", "--version") && runs("ip", "-V"),
        "`unshare` (util-linux) and `ip` (iproute2) are needed to confine the server to \
         loopback in a network namespace (Debian: apt-get install util-linux iproute2)"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // An admin and an API token of theirs, made through the CLI before the server starts.
    cli(
        &data,
        &[
            "users",
            "add",
            "fuzzer",
            "--role",
            "admin",
            "--password-stdin",
            "-o",
            "json",
        ],
        &format!("{ADMIN_PW}\n"),
    );
    let token = cli(
        &data,
        &[
            "tokens",
            "create",
            "--user",
            "fuzzer",
            "--name",
            "schemathesis",
            "-o",
            "json",
        ],
        "",
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let base = format!("http://127.0.0.1:{PORT}");
    let schema = format!("{base}/api/v1/openapi.json");
    let auth = format!("Authorization: Bearer {token}");
    let st_args: Vec<&str> = vec![
        "run",
        &schema,
        "--header",
        &auth,
        "--checks",
        "all",
        // A missing `If-Match` is answered 428 Precondition Required, the status RFC 6585 made
        // for exactly this; the check expects a 400 or 422 for any missing required header.
        "--exclude-checks",
        "missing_required_header",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--seed",
        "1",
        "--max-examples",
        "20",
        "--workers",
        "2",
        // The event stream never ends: a fuzzer reads that as a request that timed out. Its
        // answers to bad credentials are checked by `routes.rs` like every other route's.
        "--exclude-path",
        "/api/v1/events",
        "--generation-database",
        "none",
        "--wait-for-schema",
        "30",
        "--request-timeout",
        "20",
        "--no-color",
    ];

    let out_path = dir.path().join("schemathesis.out");
    let server_log = dir.path().join("server.log");
    let out = std::fs::File::create(&out_path).unwrap();
    // As root a network namespace is made directly; otherwise inside a user namespace.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut command = Command::new("unshare");
    command.arg("--net");
    if !root {
        command.arg("--map-root-user");
    }
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DATAHUB_") {
            command.env_remove(key);
        }
    }
    command
        .args(["sh", "-c", SCRIPT, "sh"])
        .args(&st_args)
        .env("DH_BIN", BIN)
        .env("DH_PORT", PORT.to_string())
        .env("DH_DATA", &data)
        .env("DH_SERVER_LOG", &server_log)
        .env("DH_ST", &st)
        .env("DATAHUB_LOG", "warn")
        .env("NO_COLOR", "1")
        // What no schema can state (rules between fields or on the server's state).
        .env(
            "SCHEMATHESIS_HOOKS",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/hooks.py"),
        )
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .process_group(0);
    let started = Instant::now();
    let mut group = Group(command.spawn().unwrap());
    let status = loop {
        if let Some(status) = group.0.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(group);
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let log = std::fs::read_to_string(&server_log).unwrap_or_default();
    match status {
        Some(status) if status.success() => {}
        Some(status) => panic!(
            "schemathesis found the server and its OpenAPI document disagree ({status}):\n{}\n\
             --- the server's log (tail):\n{}",
            tail(&output, 24_000),
            tail(&log, 4_000)
        ),
        None => panic!(
            "schemathesis did not finish in {DEADLINE:?}:\n{}\n--- the server's log (tail):\n{}",
            tail(&output, 24_000),
            tail(&log, 4_000)
        ),
    }
    println!(
        "schemathesis passed in {:.0?}:\n{}",
        started.elapsed(),
        tail(&output, 4_000)
    );
}
