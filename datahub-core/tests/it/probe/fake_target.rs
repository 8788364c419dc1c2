//! The test kit's cheap loopback target (`FakeTarget`, used by the scale bench) passes for a
//! PostgreSQL server with the real prober: a test without TLS is ok with the facts the target
//! states, `prefer` goes on in plaintext after its `N`, a database made down fails with the
//! server's SQLSTATE and answers again once up, and many tests at once all pass and close
//! their sessions.

use std::time::{Duration, Instant};

use datahub_core::model::TlsMode;
use datahub_core::probe::StepName;
use datahub_testkit::{FAKE_MAX_CONNECTIONS, FAKE_SERVER_VERSION, FakeTarget};

use super::{Target, any_mode, run};

const BUDGET: Duration = Duration::from_secs(5);

fn target(fake: &FakeTarget, database: &str, mode: TlsMode) -> Target {
    let mut target = Target::new(fake.port(), "app", "fake-target-pw", mode);
    target.database = database.to_owned();
    target
}

#[tokio::test]
async fn a_plaintext_test_is_ok_with_the_targets_facts() {
    let fake = FakeTarget::start().await.unwrap();
    let report = run(
        &target(&fake, "appdb", TlsMode::Disable),
        &any_mode(),
        BUDGET,
    )
    .await;
    assert!(report.ok, "{report:?}");
    let server = report.server.as_ref().unwrap();
    assert_eq!(server.version, FAKE_SERVER_VERSION);
    assert_eq!(server.database, "appdb");
    assert_eq!(server.user, "app");
    assert!(!server.in_recovery);
    assert_eq!(server.connections_used, Some(1), "this test's own session");
    assert_eq!(server.max_connections, Some(FAKE_MAX_CONNECTIONS));
    assert!(report.tls.is_none());
    let steps: Vec<StepName> = report.steps.iter().map(|s| s.name).collect();
    assert!(steps.contains(&StepName::Query), "{steps:?}");
    assert!(!steps.contains(&StepName::Tls), "{steps:?}");
    assert_eq!(fake.sessions(), 1);
    assert_eq!(fake.facts_answered(), 1);
}

/// A server whose start-up leaves out a fact (PostgreSQL 13 and older report no
/// `in_hot_standby`) is asked for it: the same facts, one statement more.
#[tokio::test]
async fn facts_the_start_up_left_out_are_asked_for() {
    let fake = FakeTarget::start().await.unwrap();
    fake.act_as_pre_14();
    let report = run(
        &target(&fake, "appdb", TlsMode::Disable),
        &any_mode(),
        BUDGET,
    )
    .await;
    assert!(report.ok, "{report:?}");
    let server = report.server.as_ref().unwrap();
    assert_eq!(server.version, FAKE_SERVER_VERSION);
    assert_eq!(server.database, "appdb");
    assert_eq!(server.user, "app");
    assert!(!server.in_recovery);
    assert_eq!(server.connections_used, Some(1));
    assert_eq!(server.max_connections, Some(FAKE_MAX_CONNECTIONS));
}

#[tokio::test]
async fn prefer_goes_on_in_plaintext_after_the_targets_no() {
    let fake = FakeTarget::start().await.unwrap();
    let report = run(
        &target(&fake, "appdb", TlsMode::Prefer),
        &any_mode(),
        BUDGET,
    )
    .await;
    assert!(report.ok, "{report:?}");
    assert!(report.tls.is_none());
    let tls = report.steps.iter().find(|s| s.name == StepName::Tls);
    assert!(tls.is_some_and(|s| !s.ok), "{report:?}");
}

#[tokio::test]
async fn a_database_made_down_fails_and_answers_again_once_up() {
    let fake = FakeTarget::start().await.unwrap();
    fake.set_down("flip", true);
    let down = run(
        &target(&fake, "flip", TlsMode::Disable),
        &any_mode(),
        BUDGET,
    )
    .await;
    assert!(!down.ok, "{down:?}");
    let failure = down.failure.as_ref().unwrap();
    assert_eq!(failure.sqlstate.as_deref(), Some("57P03"), "{down:?}");
    assert_eq!(fake.refused(), 1);
    let other = run(
        &target(&fake, "other", TlsMode::Disable),
        &any_mode(),
        BUDGET,
    )
    .await;
    assert!(other.ok, "only the database made down refuses: {other:?}");
    fake.set_down("flip", false);
    let up = run(
        &target(&fake, "flip", TlsMode::Disable),
        &any_mode(),
        BUDGET,
    )
    .await;
    assert!(up.ok, "{up:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tests_at_once_all_pass_and_close_their_sessions() {
    const TESTS: usize = 400;
    const AT_ONCE: usize = 40;
    let fake = FakeTarget::start().await.unwrap();
    let target = target(&fake, "appdb", TlsMode::Disable);
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TESTS {
        let target = target.clone();
        let gate = gate.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            run(&target, &any_mode(), BUDGET).await
        });
    }
    while let Some(report) = tasks.join_next().await {
        let report = report.unwrap();
        assert!(report.ok, "{report:?}");
        let used = report.server.unwrap().connections_used.unwrap();
        assert!(used >= 1, "{used} sessions open");
    }
    assert_eq!(fake.sessions(), TESTS as u64);
    // Each test says goodbye (Terminate) before it returns, but the target may read it a moment
    // later.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.open_sessions() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} still open",
            fake.open_sessions()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
