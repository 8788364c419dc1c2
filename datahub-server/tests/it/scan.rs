//! Saving connections is no port scanner (SECURITY.md S31): the monitor's first check of a
//! connection an editor saved draws on the editor's test budget, and waits for its normal
//! interval when the budget is spent.

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use datahub_core::hub::RateLimit;
use datahub_core::monitor::MonitorConfig;
use datahub_core::rbac::Role;
use datahub_server::{AppState, HttpOptions, app};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::{Backend, Fixture, on_both_stores};

const LIMIT: RateLimit = RateLimit {
    burst: 5,
    per_second: 0.5,
};

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

on_both_stores!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    s31_saving_connections_learns_at_most_the_test_budget
);

/// S31: an editor saves 40 connections to 40 closed loopback ports in a few seconds; within the
/// window, at most the burst plus what refills learn `connection_refused`, the rest stay
/// unknown until their normal interval.
async fn s31_saving_connections_learns_at_most_the_test_budget(backend: Backend) {
    let f = Fixture::on(backend, |hub| hub.with_test_rate_limit(LIMIT)).await;
    let (_, editor) = f.user("scanner", Role::Editor).await;
    let state = AppState::new(f.hub.clone(), HttpOptions::default())
        .with_monitor(f.hub.start_monitor(MonitorConfig::default()));
    let app = app(state.clone());
    // Forty loopback ports with nothing listening.
    let ports: Vec<u16> = (0..40)
        .map(|_| {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            listener.local_addr().unwrap().port()
        })
        .collect();
    let started = Instant::now();
    let mut ids = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let body = json!({
            "name": format!("scan-{i}"),
            "host": "127.0.0.1",
            "port": port,
            "database": "app",
            "username": "app",
            "password": "scan-password-1",
            "tls": {"mode": "require"},
            "monitoring": {"enabled": true, "interval_s": 600},
        });
        let (status, created) =
            call(&app, "POST", "/api/v1/connections", &editor, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    // Every first check is due within 5 s of its save.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let window = started.elapsed().as_secs_f64();
    let mut learned = 0;
    let mut unknown = 0;
    for id in &ids {
        let (status, health) = call(
            &app,
            "GET",
            &format!("/api/v1/connections/{id}/health"),
            &editor,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{health}");
        match health["checks"][0]["error_kind"].as_str() {
            Some("connection_refused") => learned += 1,
            Some(other) => panic!("unexpected {other}"),
            None => {
                assert_eq!(health["health"]["status"], "unknown", "{health}");
                unknown += 1;
            }
        }
    }
    let budget = f64::from(LIMIT.burst) + LIMIT.per_second * window;
    assert!(learned >= 1, "no first check ran");
    assert!(
        f64::from(learned) <= budget.ceil(),
        "{learned} learned within {window:.1} s, budget {budget:.1}"
    );
    assert_eq!(learned + unknown, 40);
    // The checks not made were counted as deferred.
    assert!(state.monitor_stats().unwrap().deferred >= 1);
    state.shutdown_monitor().await;
}
