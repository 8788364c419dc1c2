//! A connection test's report as JSON: the one conversion every route that answers with a
//! report uses, giving the same shape as the `probe` example prints (`examples/src/probe_cli.rs`).
//! A report never holds a secret (the prober's rule), so neither does this.

use datahub_core::probe::Report;
use serde::Serialize;
use time::OffsetDateTime;

/// The prober's report: `ok`, and on failure one `error_kind` with the `step`, a `hint` and
/// the server's `sqlstate`; the timed steps; the server's and the TLS session's facts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TestReport {
    /// Whether every step succeeded.
    pub ok: bool,
    /// On failure, the one stable kind, e.g. `auth_failed`, `timeout`.
    pub error_kind: Option<&'static str>,
    /// On failure, the step that failed, e.g. `tls`, `auth`.
    pub step: Option<&'static str>,
    /// The whole test's time, in milliseconds.
    pub total_ms: f64,
    /// Each step run, in order, with its time.
    pub steps: Vec<StepReport>,
    /// What the server said about itself, when the test got that far.
    pub server: Option<ServerReport>,
    /// The TLS session, when one was set up.
    pub tls: Option<TlsReport>,
    /// On failure, a human hint about what to check.
    pub hint: Option<String>,
    /// On failure, the SQLSTATE the server sent, if any.
    pub sqlstate: Option<String>,
}

/// One timed step of a test.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StepReport {
    /// `config`, `resolve`, `policy`, `tcp`, `tls`, `startup`, `auth` or `query`.
    pub name: &'static str,
    /// How long it took, in milliseconds.
    pub ms: f64,
    /// Whether it succeeded.
    pub ok: bool,
}

/// The server's facts read by the probe query.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServerReport {
    /// `server_version`.
    pub version: String,
    /// The database connected to.
    pub database: String,
    /// The user connected as.
    pub user: String,
    /// Whether the server is a standby.
    pub in_recovery: bool,
    /// Connections in use, when readable.
    pub connections_used: Option<u32>,
    /// `max_connections`, when readable.
    pub max_connections: Option<u32>,
}

/// The TLS session's facts.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TlsReport {
    /// e.g. `TLSv1.3`.
    pub protocol: Option<String>,
    /// e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: Option<String>,
    /// The server certificate's subject.
    pub peer_subject: Option<String>,
    /// When the server certificate expires (RFC 3339, UTC, whole seconds).
    pub peer_not_after: Option<String>,
}

impl From<&Report> for TestReport {
    fn from(report: &Report) -> Self {
        let failure = report.failure.as_ref();
        Self {
            ok: report.ok,
            error_kind: failure.map(|f| f.kind.as_str()),
            step: failure.map(|f| f.step.as_str()),
            total_ms: report.total_ms,
            steps: report
                .steps
                .iter()
                .map(|s| StepReport {
                    name: s.name.as_str(),
                    ms: s.ms,
                    ok: s.ok,
                })
                .collect(),
            server: report.server.as_ref().map(|s| ServerReport {
                version: s.version.clone(),
                database: s.database.clone(),
                user: s.user.clone(),
                in_recovery: s.in_recovery,
                connections_used: s.connections_used,
                max_connections: s.max_connections,
            }),
            tls: report.tls.as_ref().map(|t| TlsReport {
                protocol: t.protocol.clone(),
                cipher: t.cipher.clone(),
                peer_subject: t.peer_subject.clone(),
                peer_not_after: t.peer_not_after.map(whole_seconds),
            }),
            hint: failure.map(|f| f.hint.to_string()),
            sqlstate: failure.and_then(|f| f.sqlstate.clone()),
        }
    }
}

impl TestReport {
    /// The `outcome` label of the `datahub_tests_total` metric: `ok` or the failure kind.
    pub fn outcome(&self) -> &'static str {
        self.error_kind.unwrap_or("ok")
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, as the `probe` example prints it.
fn whole_seconds(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// The body of a 422 answer to `?test_first=true`: the error and the failed test's report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestFailedBody {
    /// `test_failed`.
    pub error: TestFailedDetail,
    /// The report of the failed test.
    pub report: TestReport,
}

/// The error part of [`TestFailedBody`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestFailedDetail {
    /// `test_failed`.
    pub code: &'static str,
    /// What happened.
    pub message: String,
    /// The request id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One connection's test among several (the CLI's `conn test --all`, or more than one
/// connection named): which connection, and its [`TestReport`].
#[derive(Debug, Serialize)]
pub struct NamedReport {
    /// The connection's id (empty for a draft).
    pub id: String,
    /// The connection's name (empty for a draft).
    pub name: String,
    /// The test's report.
    pub report: TestReport,
}
