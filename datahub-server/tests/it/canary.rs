//! The canary through every endpoint (SECURITY.md S8): a unique password (with its URL-encoded,
//! base64 and hex forms) and a real TLS client key are driven through create (plain and
//! `test_first`), edits, draft tests that fail every way issue 5 names (closed loopback port,
//! wrong password against a kit cluster, TLS failure, timeout against a kit `FaultProxy` that
//! never answers) and succeed, saved tests, reveal, grants, list, get, health, a failed login
//! with the canary as password, and the canary typed into fields that are not secret. Neither
//! shows in any response body or header (except the reveal bodies), any log line the process
//! emits at TRACE, the `/metrics` text, or any audit row.
//!
//! How the logs are captured without touching the rest of the test binary (`tests/it` is one
//! binary; a global subscriber would capture, or be refused by, the other tests): the test
//! builds its own runtime. A scoped dispatcher (`tracing::dispatcher::set_default`) holds the
//! capture on the thread that drives the runtime (a current-thread runtime, so every handler,
//! hub call and spawned task is polled there), and `on_thread_start` sets the same dispatcher on
//! each of the runtime's blocking threads (where the SQLite store and argon2 run), so nothing the
//! server does escapes it. Metrics likewise go to a local Prometheus recorder set per thread
//! (`metrics::set_default_local_recorder`), rendered by the app's own `/metrics` through
//! `AppState::with_metrics`. A second, idle dispatch is kept alive so that tracing's callsite
//! cache consults this one even for callsites another test's thread hits first. No `log` bridge: `log`'s logger is process-global by construction
//! (one `set_logger` per process), so it cannot be scoped to this test; the records it would
//! bring are tokio-postgres's, which the core's own trace canary (its own binary, with the
//! bridge) already checks with a canary password.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode};
use datahub_core::hub::RateLimit;
use datahub_core::model::AuditQuery;
use datahub_core::net::{Dialer, StaticResolver};
use datahub_core::rbac::Role;
use datahub_server::{AppState, HttpOptions, app};
use datahub_testkit::canary::{Capture, forms, leak};
use datahub_testkit::{Fault, FaultProxy, PgCluster, ServerCert, User};
use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt;

use crate::common::Fixture;

/// The password: unique to this test, with characters that URL-encode.
const CANARY: &str = "cnry-S8-http-7Kq+/w=z&y%v";
/// The real password of the kit cluster's `other` user, so the canary is wrong there.
const OTHER_PW: &str = "other-pw-1739";
const URL: &str = "/api/v1/connections";

// ---------------------------------------------------------------------------------------------
// What must never show.

/// Percent-encodes every byte but ASCII letters and digits (as `NON_ALPHANUMERIC` does).
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every form of the password canary that must never show.
fn password_forms() -> Vec<String> {
    forms(CANARY)
}

/// Every form of the client key that must never show: the PEM (raw and JSON-escaped) and each
/// line of its base64 body.
fn key_forms(key: &str) -> Vec<String> {
    let mut forms = vec![
        key.trim().to_owned(),
        serde_json::to_string(key.trim()).unwrap(),
    ];
    forms.extend(
        key.lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 40)
            .map(str::to_owned),
    );
    assert!(forms.len() >= 3, "the key has no body: {key}");
    forms
}

fn headers_text(headers: &HeaderMap) -> String {
    headers
        .iter()
        .map(|(k, v)| format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())))
        .collect()
}

fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn the_canary_leaves_the_server_only_by_reveal() {
    let capture = Capture::default();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(capture.clone()));
    // tracing-core caches each callsite's interest; while exactly one `Dispatch` exists it asks
    // only the *registering thread's* default, so a callsite first hit by another test's thread
    // (no subscriber) would be cached as "never" and vanish from this capture. A second live
    // dispatch makes it ask every dispatch, ours included.
    let _every_dispatch_asked = tracing::Dispatch::new(tracing_subscriber::registry());
    // `'static`, so the blocking threads can hold it for their whole life.
    let recorder: &'static metrics_exporter_prometheus::PrometheusRecorder =
        Box::leak(Box::new(PrometheusBuilder::new().build_recorder()));
    let on_start = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_start(move || {
            // These threads belong to this runtime only and end with it.
            std::mem::forget(tracing::dispatcher::set_default(&on_start));
            std::mem::forget(metrics::set_default_local_recorder(recorder));
        })
        .build()
        .unwrap();
    let _logs = tracing::dispatcher::set_default(&dispatch);
    let _metrics = metrics::set_default_local_recorder(recorder);
    runtime.block_on(drive(capture, recorder.handle()));
}

async fn drive(capture: Capture, metrics: metrics_exporter_prometheus::PrometheusHandle) {
    let cluster = tokio::task::spawn_blocking(|| {
        PgCluster::builder()
            .tls(ServerCert::Valid)
            .user(User::new("app").password(CANARY))
            .user(User::new("other").password(OTHER_PW))
            .database("app", "app")
            .start()
            .unwrap()
    })
    .await
    .unwrap();
    let (client_cert, client_key) = cluster.client_cert("app").unwrap();
    let ca = cluster.ca_pem().unwrap().to_owned();
    let other_ca = cluster.other_ca_pem().unwrap().to_owned();
    let stall = FaultProxy::start(Fault::AcceptAndStall).await.unwrap();
    let closed = closed_port();
    let resolver = StaticResolver::new().with("localhost", &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let mut f = Fixture::with(|hub| {
        hub.with_connector(Arc::new(Dialer::new(Arc::new(resolver))))
            .with_test_rate_limit(RateLimit {
                burst: 10_000,
                per_second: 1_000.0,
            })
    })
    .await;
    f.app = app(AppState::new(f.hub.clone(), HttpOptions::default()).with_metrics(metrics));
    let (viewer_id, viewer) = f.user("canary-vic", Role::Viewer).await;

    let mut forbidden = password_forms();
    forbidden.extend(key_forms(&client_key));
    // The detector finds every form, so the checks below cannot pass by not looking.
    for form in &forbidden {
        assert!(leak(&forbidden, &format!("x{form}y")).is_some());
    }

    let port = cluster.port();
    let settings = |user: &str, port: u16, ca: &str| {
        json!({
            "host": "localhost", "port": port, "database": "app", "username": user,
            "password": CANARY,
            "tls": {"mode": "verify-full", "ca_cert_pem": ca, "channel_binding": "require"},
            "options": {"connect_timeout_ms": 1500},
            "monitoring": {"enabled": false},
        })
    };
    let named = |mut v: Value, name: &str| {
        v["name"] = json!(name);
        v
    };
    let mut with_key = named(settings("app", port, &ca), "s8-key");
    with_key["tls"]["client_cert_pem"] = json!(client_cert);
    with_key["tls"]["client_key_pem"] = json!(client_key);
    let mut reveals: Vec<(StatusCode, HeaderMap, String)> = Vec::new();
    let mut requests = 0;

    // ---- Create: plain, with a client key, test_first passing and failing. ----
    let mut ids = Vec::new();
    for (uri, body, status) in [
        (
            URL.to_owned(),
            named(settings("app", port, &ca), "s8-plain"),
            StatusCode::CREATED,
        ),
        (URL.to_owned(), with_key.clone(), StatusCode::CREATED),
        (
            format!("{URL}?test_first=true"),
            named(settings("app", port, &ca), "s8-tested"),
            StatusCode::CREATED,
        ),
        (
            URL.to_owned(),
            named(settings("other", port, &ca), "s8-wrong-pw"),
            StatusCode::CREATED,
        ),
        (
            format!("{URL}?test_first=true"),
            named(settings("other", port, &ca), "s8-never"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("{URL}?test_first=true"),
            named(settings("app", stall.port(), &ca), "s8-stalled"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let r = f.admin(Method::POST, &uri, Some(&body)).await;
        requests += 1;
        assert_eq!(r.status, status, "{}", r.text);
        if status == StatusCode::CREATED {
            assert_eq!(r.json["password_set"], true);
            ids.push(r.json["id"].as_str().unwrap().to_owned());
        }
    }
    let (plain, keyed, _tested, wrong_pw) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    let one = |id: &str| format!("{URL}/{id}");

    // ---- Draft tests: every failure issue 5 names, and successes. ----
    let mut other_ca_draft = settings("app", port, &other_ca);
    other_ca_draft["name"] = json!("s8-tls");
    let mut reuse = settings("app", port, &ca);
    reuse["id"] = json!(keyed);
    reuse["password"] = json!("");
    reuse["tls"]["client_cert_pem"] = json!(client_cert);
    for (draft, kind) in [
        (settings("app", closed, &ca), Some("connection_refused")),
        (settings("other", port, &ca), Some("auth_failed")),
        (other_ca_draft, Some("tls_certificate_invalid")),
        (settings("app", stall.port(), &ca), Some("timeout")),
        (settings("app", port, &ca), None),
        (with_key.clone(), None),
        (reuse, None),
    ] {
        let r = f
            .admin(Method::POST, &format!("{URL}/test"), Some(&draft))
            .await;
        requests += 1;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        match kind {
            Some(kind) => assert_eq!(r.json["error_kind"], kind, "{}", r.text),
            None => assert_eq!(r.json["ok"], true, "{}", r.text),
        }
    }

    // ---- Saved tests. ----
    for (id, ok) in [(plain, true), (keyed, true), (wrong_pw, false)] {
        let r = f
            .admin(Method::POST, &format!("{}/test", one(id)), None)
            .await;
        requests += 1;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json["ok"], ok, "{}", r.text);
    }

    // ---- Edits: the password again, a move that needs it, refusals with it in the body. ----
    let r = f
        .send(
            Method::PATCH,
            &one(plain),
            Some(&f.admin_token),
            &[("if-match", "\"1\"")],
            Some(&json!({"password": CANARY, "description": "rotated"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = f
        .send(
            Method::PATCH,
            &one(plain),
            Some(&f.admin_token),
            &[("if-match", "\"2\"")],
            Some(&json!({"password": CANARY, "host": "127.0.0.1", "tls": {"mode": "require"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = f
        .send(
            Method::PATCH,
            &one(keyed),
            Some(&f.admin_token),
            &[("if-match", "\"1\"")],
            Some(&json!({"tls": {"client_key_pem": client_key, "client_cert_pem": client_cert}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    requests += 3;
    // Refused edits and creations carrying the secrets, and the canary typed into fields that
    // are not secret: the error names the field and never echoes the value.
    let refusals = [
        (
            Method::PATCH,
            one(plain),
            json!({"password": CANARY, "port": 0}),
        ),
        (Method::PATCH, one(plain), json!({"port": CANARY})),
        (
            Method::PATCH,
            one(plain),
            json!({"tls": {"mode": CANARY}, "password": CANARY}),
        ),
        (
            Method::PATCH,
            one(plain),
            json!({"tls": {"client_key_pem": client_key}}),
        ),
        (Method::PATCH, one(plain), json!({"password": [CANARY]})),
        (
            Method::POST,
            URL.to_owned(),
            named(settings("app", port, &ca), "s8-plain"),
        ),
        (Method::POST, URL.to_owned(), {
            let mut b = named(settings("app", port, &ca), "s8-bad");
            b["engine"] = json!(CANARY);
            b
        }),
        (Method::POST, URL.to_owned(), {
            let mut b = named(settings("app", port, &ca), "s8-bad");
            b["tls"]["ca_cert_pem"] = json!(client_key);
            b
        }),
        (Method::POST, URL.to_owned(), {
            let mut b = named(settings("app", port, &ca), "s8-bad");
            b["tls"]["client_cert_pem"] = json!(client_key);
            b["tls"]["client_key_pem"] = json!(client_key);
            b
        }),
        (Method::POST, URL.to_owned(), {
            let mut b = named(settings("app", port, &ca), "s8-bad");
            b["options"]["application_name"] = json!(CANARY.replace('%', "\u{1}"));
            b
        }),
        (Method::POST, format!("{URL}/test"), {
            let mut b = settings("app", port, &ca);
            b["monitoring"]["interval_s"] = json!(CANARY);
            b
        }),
    ];
    for (method, uri, body) in refusals {
        let r = f
            .send(
                method.clone(),
                &uri,
                Some(&f.admin_token),
                &[("if-match", "\"3\"")],
                Some(&body),
            )
            .await;
        requests += 1;
        assert!(
            r.status.is_client_error(),
            "{method} {uri} {body}: {} {}",
            r.status,
            r.text
        );
    }

    // ---- Grants, reads, health, list, search. ----
    // The keyed connection is at version 2 (one edit); the grants change names it.
    let grants = json!({"grants": [{"user_id": viewer_id, "level": "use"}]});
    let r = f
        .send(
            Method::PUT,
            &format!("{}/grants", one(keyed)),
            Some(&f.admin_token),
            &[("if-match", "\"2\"")],
            Some(&grants),
        )
        .await;
    requests += 1;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let granted = r.headers["etag"].to_str().unwrap().to_owned();
    for (method, uri, body) in [
        (Method::GET, format!("{}/grants", one(keyed)), None),
        (Method::GET, one(keyed), None),
        (Method::GET, one(plain), None),
        (Method::GET, format!("{}/health", one(keyed)), None),
        (Method::GET, URL.to_owned(), None),
        (Method::GET, format!("{URL}?search=s8&sort=updated"), None),
        (
            Method::GET,
            format!("{URL}?search={}", percent(CANARY)),
            None,
        ),
    ] {
        let r = f.admin(method, &uri, body.as_ref()).await;
        requests += 1;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text);
    }
    let r = f
        .send(Method::GET, &one(keyed), Some(&viewer), &[], None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = f.send(Method::GET, URL, Some(&viewer), &[], None).await;
    assert_eq!(r.json["total"], 1);
    requests += 2;

    // ---- Reveal: the one place the secrets show (recorded apart). ----
    for (token, id) in [
        (f.admin_token.clone(), keyed),
        (viewer.clone(), keyed),
        (f.admin_token.clone(), plain),
    ] {
        let r = f
            .send(
                Method::POST,
                &format!("{}/reveal", one(id)),
                Some(&token),
                &[],
                None,
            )
            .await;
        requests += 1;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json["password"], CANARY);
        reveals.push((r.status, r.headers.clone(), r.text.clone()));
    }
    let revealed: Value = serde_json::from_str(&reveals[0].2).unwrap();
    assert_eq!(
        revealed["client_key_pem"].as_str().unwrap().trim(),
        client_key.trim()
    );
    assert!(
        reveals
            .iter()
            .all(|(_, _, body)| leak(&forbidden, body).is_some()),
        "the reveal bodies carry the secrets (the detector works on them)"
    );
    let r = f
        .send(
            Method::DELETE,
            &format!("{}/grants", one(keyed)),
            Some(&f.admin_token),
            &[("if-match", &granted)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    // The revoked viewer's reveal: 404, nothing shown.
    let r = f
        .send(
            Method::POST,
            &format!("{}/reveal", one(keyed)),
            Some(&viewer),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(leak(&forbidden, &r.text), None, "{}", r.text);
    requests += 2;

    // ---- Failed logins with the canary as the password. ----
    for username in ["admin", "canary-vic", "nobody"] {
        let r = f
            .send(
                Method::POST,
                "/api/v1/auth/login",
                None,
                &[],
                Some(&json!({"username": username, "password": CANARY})),
            )
            .await;
        requests += 1;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
    }

    // ---- Delete, then the metrics and the API description. ----
    let r = f
        .send(
            Method::DELETE,
            &one(wrong_pw),
            Some(&f.admin_token),
            &[("if-match", "\"1\"")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let metrics_text = f
        .send(Method::GET, "/metrics", Some(&f.admin_token), &[], None)
        .await;
    assert_eq!(metrics_text.status, StatusCode::OK);
    let spec = f
        .send(Method::GET, "/api/v1/openapi.json", None, &[], None)
        .await;
    assert_eq!(spec.status, StatusCode::OK);
    requests += 3;
    drop(stall);

    // ---- The audit log, read through the Hub. ----
    let mut audit = Vec::new();
    for page in 1.. {
        let rows = f
            .hub
            .audit_log(
                &f.admin,
                &AuditQuery {
                    actor: None,
                    action: None,
                    target: None,
                    since: None,
                    until: None,
                    page,
                    per_page: 200,
                },
            )
            .await
            .unwrap();
        if rows.items.is_empty() {
            break;
        }
        for record in &rows.items {
            let e = &record.event;
            audit.push(format!(
                "{record:?} {} {} {:?} {:?} {:?}",
                e.actor_name, e.action, e.target, e.changed_fields, e.request_id
            ));
        }
    }

    // ---- The captures are real. ----
    let lines = capture.lines();
    let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(lines.len() > 200, "only {} log lines captured", lines.len());
    for needle in [
        // The server's request span, with its request id and route.
        "span INFO datahub_server request: request_id=",
        "route=/api/v1/connections/{id}/reveal",
        // tower-http's trace events, the core's prober and audit.
        "tower_http::trace",
        "event TRACE datahub_core::probe",
        "kind=connection_refused",
        "kind=auth_failed",
        "kind=tls_certificate_invalid",
        "kind=timeout",
        "ok=true",
    ] {
        assert!(has(needle), "nothing captured with {needle:?}");
    }
    let text = &metrics_text.text;
    for needle in [
        "datahub_http_requests_total{",
        r#"route="/api/v1/connections/{id}/reveal""#,
        r#"datahub_tests_total{kind="draft",outcome="auth_failed"}"#,
        r#"datahub_tests_total{kind="draft",outcome="timeout"}"#,
        r#"datahub_tests_total{kind="saved",outcome="ok"}"#,
    ] {
        assert!(text.contains(needle), "{needle} not in /metrics:\n{text}");
    }
    let transcript = f.transcript.lock().unwrap().clone();
    // Every answer but the reveals (three, and the revoked viewer's, checked apart) is recorded.
    assert_eq!(transcript.len(), requests - reveals.len() - 1);
    let audited = |action: &str| audit.iter().any(|row| row.contains(action));
    assert!(audit.len() > 20, "{} audit rows", audit.len());
    for action in [
        "connection.create",
        "connection.update",
        "connection.reveal",
        "connection.test",
        "grants.write",
        "connection.delete",
    ] {
        assert!(audited(action), "no {action} audit row");
    }
    assert!(
        audit.iter().any(|row| row.contains("login")),
        "no login audit row"
    );

    // ---- The canary never shows. ----
    for record in &transcript {
        assert_eq!(leak(&forbidden, record), None, "in an answer:\n{record}");
    }
    for (_, headers, _) in &reveals {
        assert_eq!(leak(&forbidden, &headers_text(headers)), None);
    }
    for line in &lines {
        assert_eq!(leak(&forbidden, line), None, "in a log line: {line}");
    }
    assert_eq!(leak(&forbidden, text), None, "in /metrics");
    for row in &audit {
        assert_eq!(leak(&forbidden, row), None, "in an audit row: {row}");
    }
    eprintln!(
        "S8 canary: {requests} requests ({} answers checked, {} reveals), {} log lines, \
         {} metric bytes, {} audit rows, {} forms",
        transcript.len(),
        reveals.len(),
        lines.len(),
        text.len(),
        audit.len(),
        forbidden.len()
    );
}
