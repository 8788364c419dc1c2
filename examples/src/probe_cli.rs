//! The `probe` example's logic: test one connection given as a libpq connection string and print
//! the report as one JSON object.
//!
//! [`run`] takes the arguments and the `PGPASSWORD` value and returns the exit code and the text
//! for stdout and stderr, so the example's `main` only prints and exits, and tests call it
//! directly. Nothing it prints ever contains the password or the client key: the report holds no
//! secret, and errors about the input name the field without repeating the value.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datahub_core::dsn;
use datahub_core::model::TlsMode;
use datahub_core::net::{Dialer, Policy};
use datahub_core::probe::{self, PolicyDial, ProbeRules, Report};
use datahub_core::secret::{Password, PrivateKeyPem};
use serde_json::{Value, json};

/// Exit code: the test passed.
pub const EXIT_OK: i32 = 0;
/// Exit code: the test ran and failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit code: the input was invalid; stderr has one line naming the field.
pub const EXIT_INVALID: i32 = 2;

/// The usage text printed by `--help`.
pub const USAGE: &str = "\
usage: probe '<libpq URL or key=value string>' [--budget-ms N]

Tests one PostgreSQL connection the way DataHub Connections does (resolve, policy, TCP, TLS,
authentication, probe query) and prints the report as one JSON object on stdout:
ok, error_kind, step, total_ms, steps, server, tls, hint, sqlstate.

  --budget-ms N   the time budget of the whole test, 1-5000 ms (default 5000)

The password comes from the string if it has one, else from PGPASSWORD; never pass it as a
separate argument. Honoured keys: host, port, dbname, user, password, sslmode (default
verify-full), sslrootcert, sslcert, sslkey (files, read here), channel_binding, connect_timeout,
application_name; any other key is refused.

Names are resolved by the system resolver. The target policy allows every address except the
always-denied ones (unspecified, multicast, broadcast and reserved, link-local, cloud metadata).
Any TLS mode is accepted; a cleartext or md5 password is never sent over an unencrypted
connection.

Exit status: 0 the test passed, 1 it failed, 2 invalid input (one line on stderr naming the
field).
";

/// What a run produced: the exit code and the text for stdout and stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// [`EXIT_OK`], [`EXIT_FAILED`] or [`EXIT_INVALID`].
    pub code: i32,
    /// The JSON report (one line and a newline), the usage text, or nothing.
    pub stdout: String,
    /// One line for invalid input, else nothing.
    pub stderr: String,
}

impl Outcome {
    fn invalid(field: &str, message: &str) -> Self {
        Self {
            code: EXIT_INVALID,
            stdout: String::new(),
            stderr: format!("invalid input: {field}: {message}\n"),
        }
    }
}

/// Runs the example: `args` are the command-line arguments without the program name,
/// `pgpassword` is the value of `PGPASSWORD` if set.
///
/// Dials through the one dialer with the system resolver and [`Policy::default`]; see [`USAGE`].
pub async fn run(args: &[String], pgpassword: Option<Password>) -> Outcome {
    let (input, budget) = match parse_args(args) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            return Outcome {
                code: EXIT_OK,
                stdout: USAGE.to_owned(),
                stderr: String::new(),
            };
        }
        Err(outcome) => return outcome,
    };
    let parsed = match dsn::parse(&input) {
        Ok(parsed) => parsed,
        Err(e) => return Outcome::invalid(e.field().unwrap_or("dsn"), e.message()),
    };
    let mut draft = parsed.draft;
    draft.name = "probe".to_owned();
    if draft.password.is_none() {
        draft.password = pgpassword;
    }
    if draft.password.is_none() {
        return Outcome::invalid(
            "password",
            "is required: put it in the string or set PGPASSWORD",
        );
    }
    if let Some(path) = &parsed.sslrootcert {
        match read(path) {
            Ok(pem) => draft.tls.ca_cert_pem = Some(pem),
            Err(()) => return Outcome::invalid("dsn.sslrootcert", "could not read the file"),
        }
    }
    if let Some(path) = &parsed.sslcert {
        match read(path) {
            Ok(pem) => draft.tls.client_cert_pem = Some(pem),
            Err(()) => return Outcome::invalid("dsn.sslcert", "could not read the file"),
        }
    }
    if let Some(path) = &parsed.sslkey {
        match read(path) {
            Ok(pem) => draft.tls.client_key_pem = Some(PrivateKeyPem::new(pem)),
            Err(()) => return Outcome::invalid("dsn.sslkey", "could not read the file"),
        }
    }
    let (spec, secrets) = match draft.validate() {
        Ok(pair) => pair,
        Err(e) => return Outcome::invalid(e.field().unwrap_or("dsn"), e.message()),
    };
    let dial = PolicyDial::new(Arc::new(Dialer::system()), Arc::new(Policy::default()));
    // The user chose the mode in the string: every mode is allowed, the guard stays on.
    let rules = ProbeRules {
        min_tls_mode: TlsMode::Disable,
        allow_cleartext_password: false,
    };
    let report = probe::test(&dial, &spec, &secrets, &rules, budget).await;
    Outcome {
        code: if report.ok { EXIT_OK } else { EXIT_FAILED },
        stdout: format!("{}\n", report_json(&report)),
        stderr: String::new(),
    }
}

/// The connection string and the budget, `None` for `--help`, or the invalid-input outcome.
fn parse_args(args: &[String]) -> Result<Option<(String, Duration)>, Outcome> {
    let mut input = None;
    let mut budget = probe::MAX_BUDGET;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        let budget_value = if arg == "--budget-ms" {
            i += 1;
            Some(args.get(i).map(String::as_str).unwrap_or_default())
        } else {
            arg.strip_prefix("--budget-ms=")
        };
        if let Some(value) = budget_value {
            budget = match value.parse::<u64>() {
                Ok(ms) if (1..=5_000).contains(&ms) => Duration::from_millis(ms),
                _ => {
                    return Err(Outcome::invalid(
                        "--budget-ms",
                        "must be a number of milliseconds between 1 and 5000",
                    ));
                }
            };
        } else if arg.starts_with("--") {
            // An unknown option is not repeated: it could be a misplaced secret.
            return Err(Outcome::invalid("arguments", "unknown option (see --help)"));
        } else if input.is_some() {
            return Err(Outcome::invalid(
                "arguments",
                "give exactly one connection string (see --help)",
            ));
        } else {
            input = Some(arg.to_owned());
        }
        i += 1;
    }
    match input {
        Some(input) => Ok(Some((input, budget))),
        None => Err(Outcome::invalid(
            "dsn",
            "a connection string is required (see --help)",
        )),
    }
}

/// A certificate or key file as text; the error does not repeat the path or the cause.
fn read(path: &Path) -> Result<String, ()> {
    std::fs::read_to_string(path).map_err(|_| ())
}

/// The report as one JSON object with the report shape of the HTTP API.
pub fn report_json(report: &Report) -> Value {
    let failure = report.failure.as_ref();
    let steps: Vec<Value> = report
        .steps
        .iter()
        .map(|s| json!({"name": s.name.as_str(), "ms": s.ms, "ok": s.ok}))
        .collect();
    let server = report.server.as_ref().map(|s| {
        json!({
            "version": s.version,
            "database": s.database,
            "user": s.user,
            "in_recovery": s.in_recovery,
            "connections_used": s.connections_used,
            "max_connections": s.max_connections,
        })
    });
    let tls = report.tls.as_ref().map(|t| {
        json!({
            "protocol": t.protocol,
            "cipher": t.cipher,
            "peer_subject": t.peer_subject,
            "peer_not_after": t.peer_not_after.map(|at| {
                format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                    at.year(),
                    u8::from(at.month()),
                    at.day(),
                    at.hour(),
                    at.minute(),
                    at.second()
                )
            }),
        })
    });
    json!({
        "ok": report.ok,
        "error_kind": failure.map(|f| f.kind.as_str()),
        "step": failure.map(|f| f.step.as_str()),
        "total_ms": report.total_ms,
        "steps": steps,
        "server": server,
        "tls": tls,
        "hint": failure.map(|f| f.hint.as_ref()),
        "sqlstate": failure.and_then(|f| f.sqlstate.as_deref()),
    })
}
