//! Integration tests of the prober (`probe::test`) against kit clusters, fault proxies and tiny
//! fake servers on loopback: every TLS mode, every failure kind, the cleartext guard (S13), the
//! deadline (S22) and the canary (no secret in any report).

mod early;
mod fake_target;
mod faults;
mod guard;
mod kinds;
mod modes;
mod retry;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use datahub_core::model::{
    ChannelBinding, ConnectionDraft, ConnectionSecrets, ConnectionSpec, FailureKind, TlsDraft,
    TlsMode,
};
use datahub_core::net::{Dialer, Policy, StaticFailure, StaticResolver};
use datahub_core::probe::{self, Dial, PolicyDial, ProbeRules, Report, StepName};
use datahub_core::secret::{Password, PrivateKeyPem};

/// Every password in these tests starts with this, so one search finds any leak.
pub(crate) const CANARY: &str = "canary-probe-7d41e9";

/// A password carrying the canary.
pub(crate) fn pw(tag: &str) -> String {
    format!("{CANARY}-{tag}")
}

/// The one dialer with a static resolver (`localhost` and `db.test` are 127.0.0.1,
/// `nowhere.invalid` does not exist) and `policy`. Tests only ever dial 127.0.0.0/8.
pub(crate) fn dialer(policy: Policy) -> PolicyDial {
    let resolver = StaticResolver::new()
        .with("localhost", &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .with("db.test", &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
        .with_failure("nowhere.invalid", StaticFailure::NotFound);
    PolicyDial::new(Arc::new(Dialer::new(Arc::new(resolver))), Arc::new(policy))
}

/// A connection to test.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub host: &'static str,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub mode: TlsMode,
    pub ca: Option<String>,
    pub client: Option<(String, String)>,
    pub channel_binding: ChannelBinding,
}

impl Target {
    pub(crate) fn new(port: u16, user: &str, password: &str, mode: TlsMode) -> Self {
        Self {
            host: "127.0.0.1",
            port,
            user: user.to_owned(),
            password: password.to_owned(),
            database: "postgres".to_owned(),
            mode,
            ca: None,
            client: None,
            channel_binding: ChannelBinding::Prefer,
        }
    }

    pub(crate) fn ca(mut self, ca: &str) -> Self {
        self.ca = Some(ca.to_owned());
        self
    }

    pub(crate) fn spec(&self) -> (ConnectionSpec, ConnectionSecrets) {
        ConnectionDraft {
            name: "probe-test".to_owned(),
            host: self.host.to_owned(),
            port: Some(i64::from(self.port)),
            database: self.database.clone(),
            username: self.user.clone(),
            password: Some(Password::from(self.password.as_str())),
            tls: TlsDraft {
                mode: Some(self.mode),
                ca_cert_pem: self.ca.clone(),
                client_cert_pem: self.client.as_ref().map(|c| c.0.clone()),
                client_key_pem: self
                    .client
                    .as_ref()
                    .map(|c| PrivateKeyPem::from(c.1.as_str())),
                channel_binding: Some(self.channel_binding),
            },
            ..ConnectionDraft::default()
        }
        .validate()
        .unwrap()
    }
}

/// Rules allowing every mode, without cleartext passwords.
pub(crate) fn any_mode() -> ProbeRules {
    ProbeRules {
        min_tls_mode: TlsMode::Disable,
        allow_cleartext_password: false,
    }
}

/// Runs a test through the one dialer (default policy) and checks what holds for every report.
pub(crate) async fn run(target: &Target, rules: &ProbeRules, budget: Duration) -> Report {
    run_with(&dialer(Policy::default()), target, rules, budget).await
}

/// Runs a test through `dial` and checks what holds for every report.
pub(crate) async fn run_with(
    dial: &dyn Dial,
    target: &Target,
    rules: &ProbeRules,
    budget: Duration,
) -> Report {
    let (spec, secrets) = target.spec();
    let started = std::time::Instant::now();
    let report = probe::test(dial, &spec, &secrets, rules, budget).await;
    let took = started.elapsed();
    check_report(&report, budget, took);
    report
}

/// Invariants of every report: answered within budget + 50 ms, `ok` exactly without a failure,
/// and no canary anywhere.
pub(crate) fn check_report(report: &Report, budget: Duration, took: Duration) {
    let limit = budget.min(probe::MAX_BUDGET) + Duration::from_millis(50);
    assert!(
        took <= limit,
        "took {took:?} for a budget of {budget:?}: {report:?}"
    );
    assert_eq!(report.ok, report.failure.is_none(), "{report:?}");
    let shown = format!("{report:?} {report:#?}");
    assert!(!shown.contains(CANARY), "canary in report: {shown}");
    if let Some(f) = &report.failure {
        assert!(!f.hint.is_empty());
        assert!(!f.hint.contains(CANARY));
    }
}

/// The failure kind and step of a failed report.
pub(crate) fn failed(report: &Report) -> (FailureKind, StepName) {
    let f = report
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected a failure: {report:?}"));
    (f.kind, f.step)
}

/// The SQLSTATE of a failed report.
pub(crate) fn sqlstate(report: &Report) -> Option<&str> {
    report.failure.as_ref()?.sqlstate.as_deref()
}

/// A short budget for tests that expect a failure quickly or a timeout.
pub(crate) const SHORT: Duration = Duration::from_secs(1);
