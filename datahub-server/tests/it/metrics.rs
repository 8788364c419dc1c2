//! `/metrics` through `app()` with a recorder local to the test's thread: requests by route,
//! method and status with latency buckets, the monitor's checks by outcome, connections by
//! status, tests by outcome, and every label value from a closed set (never a name or a
//! secret, S8).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use datahub_core::model::FailureKind;
use datahub_core::monitor::{MonitorConfig, MonitorEvent};
use datahub_core::rbac::Role;
use datahub_server::HttpOptions;
use datahub_server::telemetry;

use crate::common::{Backend, on_both_stores};
use crate::fixture::{Fixture, get, send};

/// One sample: the metric's name, its labels, its value.
type Sample = (String, BTreeMap<String, String>, f64);

fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap();
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let rest = rest.strip_suffix('}').unwrap();
                    let labels = rest
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").unwrap();
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
            };
            (name, labels, value)
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels.len() == l.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
}

on_both_stores!(
    #[tokio::test]
    metrics_are_for_admins_only
);

/// S34: `/metrics` answers 401 to anonymous callers and 403 to anyone but admins.
async fn metrics_are_for_admins_only(backend: Backend) {
    let recorder = telemetry::builder().unwrap().build_recorder();
    let f = Fixture::on(backend, HttpOptions::default(), |state, _| {
        state.with_metrics(recorder.handle())
    })
    .await;
    let (_, editor_token) = f.user("metrics-editor", Role::Editor).await;
    let (status, _, _) = send(f.app(), get("/metrics", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(f.app(), get("/metrics", Some(&editor_token))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, headers, _) = send(f.app(), get("/metrics", Some(&f.admin_token))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
}

#[tokio::test]
async fn metrics_count_requests_checks_statuses_and_tests_with_closed_labels() {
    let recorder = telemetry::builder().unwrap().build_recorder();
    let handle = recorder.handle();
    let _local = metrics::set_default_local_recorder(&recorder);
    let f = Fixture::with(HttpOptions::default(), |state, hub| {
        state
            .with_metrics(handle.clone())
            .with_monitor(hub.start_monitor(MonitorConfig::default()))
    })
    .await;
    let (editor, editor_token) = f.user("metrics-editor-name", Role::Editor).await;

    // A checked connection (refused: degraded), and one the monitor does not check (monitoring
    // off: unknown).
    let mut events = f.state.subscribe();
    let checked = f.connection(&editor, "canary-conn-name-1").await;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(MonitorEvent::StatusChanged { id, .. }) = events.recv().await
                && id == checked
            {
                break;
            }
        }
    })
    .await
    .unwrap();
    let mut unchecked = crate::fixture::draft("canary-conn-name-2");
    unchecked.monitoring.enabled = Some(false);
    f.hub.create_connection(&editor, unchecked).await.unwrap();
    telemetry::record_test(telemetry::DRAFT, None);
    telemetry::record_test(telemetry::SAVED, Some(FailureKind::AuthFailed));

    // Requests: two fine, one unknown path, one made-up method, one with a token.
    for _ in 0..2 {
        assert_eq!(send(f.app(), get("/healthz", None)).await.0, StatusCode::OK);
    }
    let probe = format!("/api/v1/connections/{checked}/canary-path");
    assert_eq!(
        send(f.app(), get(&probe, Some(&editor_token))).await.0,
        StatusCode::NOT_FOUND
    );
    let odd = Request::builder()
        .method("BREW")
        .uri("/healthz")
        .body(Body::empty())
        .unwrap();
    send(f.app(), odd).await;

    telemetry::refresh(&f.state).await;
    // S34: not for anonymous callers, nor for anyone but admins.
    let (status, _, _) = send(f.app(), get("/metrics", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = send(f.app(), get("/metrics", Some(&editor_token))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, headers, body) = send(f.app(), get("/metrics", Some(&f.admin_token))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    let all = samples(&text);

    let requests = "datahub_http_requests_total";
    assert_eq!(
        value(
            &all,
            requests,
            &[("method", "GET"), ("route", "/healthz"), ("status", "200")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            &all,
            requests,
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        Some(1.0)
    );
    assert!(
        all.iter()
            .any(|(n, l, _)| n == requests && l.get("method").map(String::as_str) == Some("other")),
        "{text}"
    );
    // Latency as a histogram with buckets.
    let buckets: Vec<_> = all
        .iter()
        .filter(|(n, l, _)| {
            n == "datahub_http_request_duration_seconds_bucket"
                && l.get("route").map(String::as_str) == Some("/healthz")
                && l.get("method").map(String::as_str) == Some("GET")
        })
        .collect();
    assert_eq!(
        buckets.len(),
        telemetry::REQUEST_BUCKETS.len() + 1,
        "{text}"
    );
    assert!(
        buckets
            .iter()
            .any(|(_, l, v)| l["le"] == "+Inf" && *v == 2.0)
    );

    // Checks by outcome: the one refused check failed.
    let checks = |outcome| value(&all, "datahub_checks_total", &[("outcome", outcome)]);
    assert_eq!(checks("failed"), Some(1.0), "{text}");
    assert_eq!(checks("ok"), Some(0.0));
    assert_eq!(checks("timeout"), Some(0.0));
    // The monitor alone on its SQLite store: it sees itself, every due check is its own, no
    // claim is lost to another process and no store call failed.
    let one = |name| value(&all, name, &[]);
    assert_eq!(one("datahub_monitor_live_replicas"), Some(1.0), "{text}");
    assert_eq!(one("datahub_checks_not_home_total"), Some(0.0), "{text}");
    assert_eq!(one("datahub_checks_lease_lost_total"), Some(0.0));
    assert_eq!(one("datahub_checks_deferred_total"), Some(0.0));
    assert_eq!(one("datahub_monitor_store_errors_total"), Some(0.0));
    // Connections by status.
    let connections = |status| value(&all, "datahub_connections", &[("status", status)]);
    assert_eq!(connections("degraded"), Some(1.0), "{text}");
    assert_eq!(connections("unknown"), Some(1.0));
    assert_eq!(connections("healthy"), Some(0.0));
    assert_eq!(connections("down"), Some(0.0));
    // Tests by outcome.
    let tests = |kind, outcome| {
        value(
            &all,
            "datahub_tests_total",
            &[("kind", kind), ("outcome", outcome)],
        )
    };
    assert_eq!(tests("draft", "ok"), Some(1.0));
    assert_eq!(tests("saved", "auth_failed"), Some(1.0));

    // No name, path value or secret; every label value from a closed set.
    for needle in [
        "canary",
        "metrics-editor-name",
        "connection-password-1",
        editor_token.as_str(),
        f.admin_token.as_str(),
        &checked.to_string(),
    ] {
        assert!(!text.contains(needle), "{needle} in metrics");
    }
    let routes: Vec<&str> = datahub_server::routes::ROUTES
        .iter()
        .map(|r| r.path)
        .collect();
    for (name, labels, _) in &all {
        for (key, v) in labels {
            let allowed = match key.as_str() {
                "method" => [
                    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
                ]
                .contains(&v.as_str()),
                "route" => v == "unmatched" || routes.contains(&v.as_str()),
                "status" if name == "datahub_connections" => {
                    ["unknown", "healthy", "degraded", "down"].contains(&v.as_str())
                }
                "status" => v.len() == 3 && v.bytes().all(|b| b.is_ascii_digit()),
                "outcome" => {
                    ["ok", "failed", "timeout"].contains(&v.as_str())
                        || FailureKind::ALL.iter().any(|k| k.as_str() == v)
                }
                "kind" => ["draft", "saved"].contains(&v.as_str()),
                "le" | "quantile" => v.parse::<f64>().is_ok() || v == "+Inf",
                _ => false,
            };
            assert!(allowed, "{name}: {key}={v}");
        }
    }
    f.state.shutdown_monitor().await;
}
