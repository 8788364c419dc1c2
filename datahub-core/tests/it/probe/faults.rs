//! Every fault proxy mode answers within the budget + 50 ms and leaves no socket behind (S22,
//! S23).

use std::time::Duration;

use datahub_core::model::{FailureKind, TlsMode};
use datahub_core::probe::{MAX_BUDGET, Report};
use datahub_testkit::{Direction, Fault, FaultProxy, PgCluster, ServerCert, User};

use super::{SHORT, Target, any_mode, failed, pw, run};

async fn through(proxy: &FaultProxy, mode: TlsMode, password: &str, budget: Duration) -> Report {
    let target = Target::new(proxy.port(), "app", password, mode);
    let report = run(&target, &any_mode(), budget).await;
    assert!(
        proxy.wait_idle(Duration::from_secs(2)).await,
        "{:?}: {} sockets open, {} idle",
        proxy.fault(),
        proxy.open_sockets(),
        proxy.idle_sockets()
    );
    report
}

#[tokio::test]
async fn every_fault_is_cut_at_the_budget() {
    let password = pw("fault");
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new("app").password(&password))
        .start()
        .unwrap();
    let up = cluster.addr();
    let cases: Vec<(Fault, TlsMode, &[FailureKind])> = vec![
        (Fault::NoAnswer, TlsMode::Require, &[FailureKind::Timeout]),
        (
            Fault::AcceptAndStall,
            TlsMode::Require,
            &[FailureKind::Timeout],
        ),
        (
            Fault::AcceptAndStall,
            TlsMode::Disable,
            &[FailureKind::Timeout],
        ),
        // Stall during TLS: the `S` arrives, the handshake does not.
        (
            Fault::StallAfter {
                upstream: up,
                direction: Direction::ServerToClient,
                after_bytes: 1,
            },
            TlsMode::Require,
            &[FailureKind::Timeout],
        ),
        (
            Fault::StallAfter {
                upstream: up,
                direction: Direction::ClientToServer,
                after_bytes: 8,
            },
            TlsMode::Require,
            &[FailureKind::Timeout],
        ),
        // Stall during auth: the SASL request (24 bytes) arrives, nothing after it.
        (
            Fault::StallAfter {
                upstream: up,
                direction: Direction::ServerToClient,
                after_bytes: 24,
            },
            TlsMode::Disable,
            &[FailureKind::Timeout],
        ),
        (Fault::drip(up), TlsMode::Require, &[FailureKind::Timeout]),
        (Fault::drip(up), TlsMode::Disable, &[FailureKind::Timeout]),
        (
            Fault::ResetAfter {
                upstream: up,
                direction: Direction::ServerToClient,
                after_bytes: 1,
            },
            TlsMode::Require,
            &[FailureKind::TlsHandshakeFailed],
        ),
        (
            Fault::ResetAfter {
                upstream: up,
                direction: Direction::ServerToClient,
                after_bytes: 24,
            },
            TlsMode::Disable,
            &[FailureKind::ServerUnavailable],
        ),
    ];
    for (fault, mode, kinds) in cases {
        let proxy = FaultProxy::start(fault).await.unwrap();
        let report = through(&proxy, mode, &password, SHORT).await;
        let (kind, step) = failed(&report);
        assert!(kinds.contains(&kind), "{fault:?} {mode}: {report:?}");
        eprintln!(
            "{fault:?} {mode}: {kind} in {step} after {:.1} ms",
            report.total_ms
        );
    }
    // The control: a forwarding proxy works and closes everything afterwards.
    let proxy = FaultProxy::start(Fault::Forward { upstream: up })
        .await
        .unwrap();
    let report = through(&proxy, TlsMode::Require, &password, MAX_BUDGET).await;
    assert!(report.ok, "{report:?}");
}

#[tokio::test]
async fn no_answer_at_the_default_budget_returns_by_five_seconds() {
    let proxy = FaultProxy::start(Fault::NoAnswer).await.unwrap();
    let started = std::time::Instant::now();
    let report = through(&proxy, TlsMode::Require, &pw("noanswer"), MAX_BUDGET).await;
    let took = started.elapsed();
    eprintln!(
        "NoAnswer at 5 s: returned after {took:?} ({:.1} ms)",
        report.total_ms
    );
    assert_eq!(failed(&report).0, FailureKind::Timeout);
    assert!(report.total_ms <= 5_050.0, "{report:?}");
    // A caller may ask for more, but 5 s is the ceiling.
    let report = through(
        &proxy,
        TlsMode::Require,
        &pw("noanswer"),
        Duration::from_secs(30),
    )
    .await;
    assert!(report.total_ms <= 5_050.0, "{report:?}");
}
