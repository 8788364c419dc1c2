//! The audit log and the target policy over HTTP: who may read and change them, filters and
//! pages, the chain verification, CIDR normalisation, and bad input (S18, S19, S21, S27).

use axum::http::{Method, StatusCode};
use datahub_core::rbac::Role;
use serde_json::json;

use crate::common::TestApp;

#[tokio::test]
async fn admins_and_auditors_read_the_audit_log_others_are_refused() {
    let t = TestApp::new().await;
    let auditor = t.account("au", Role::Auditor).await;
    let editor = t.account("ed", Role::Editor).await;
    let viewer = t.account("vi", Role::Viewer).await;

    for token in [&t.admin_token, &auditor.token] {
        let page = t
            .send(Method::GET, "/api/v1/audit", Some(token), None)
            .await;
        page.assert_status(StatusCode::OK);
        assert_eq!(page.body["page"], 1);
        assert_eq!(page.body["per_page"], 50);
        let items = page.body["items"].as_array().unwrap();
        assert!(!items.is_empty());
        assert_eq!(page.body["total"].as_u64().unwrap() as usize, items.len());
        // Newest first, every entry complete.
        let seqs: Vec<u64> = items.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
        for entry in items {
            assert!(entry["at"].is_string() && entry["action"].is_string());
            assert!(["ok", "denied", "error"].contains(&entry["outcome"].as_str().unwrap()));
            assert_eq!(entry["hash"].as_str().unwrap().len(), 64);
        }
    }
    for token in [&editor.token, &viewer.token] {
        let before = t.audit_count().await;
        for path in ["/api/v1/audit", "/api/v1/audit/verify"] {
            let reply = t.send(Method::GET, path, Some(token), None).await;
            assert_eq!(
                reply.assert_error(StatusCode::FORBIDDEN, None),
                "permission_denied"
            );
        }
        // Each refusal is itself audited.
        assert_eq!(t.audit_count().await, before + 2);
    }
}

#[tokio::test]
async fn the_audit_log_filters_by_actor_action_and_target_and_pages() {
    let t = TestApp::new().await;
    let admin = Some(t.admin_token.as_str());
    let admin_id = t.admin().await.user().to_string();
    for name in ["u1", "u2", "u3"] {
        t.send(
            Method::POST,
            "/api/v1/users",
            admin,
            Some(json!({"username": name, "password": "pw-long-enough-1", "role": "viewer"})),
        )
        .await
        .assert_status(StatusCode::CREATED);
    }
    let created = t
        .send(
            Method::GET,
            &format!("/api/v1/audit?action=user.create&actor={admin_id}&per_page=2"),
            admin,
            None,
        )
        .await;
    created.assert_status(StatusCode::OK);
    assert_eq!(created.body["total"], 3);
    assert_eq!(created.body["items"].as_array().unwrap().len(), 2);
    let second = t
        .send(
            Method::GET,
            &format!("/api/v1/audit?action=user.create&actor={admin_id}&per_page=2&page=2"),
            admin,
            None,
        )
        .await;
    assert_eq!(second.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(second.body["page"], 2);
    let entry = &second.body["items"][0];
    assert_eq!(entry["actor"], admin_id.as_str());
    assert_eq!(entry["actor_name"], "admin");
    assert_eq!(entry["outcome"], "ok");
    // A change made over HTTP carries the request's id.
    assert!(entry["request_id"].is_string(), "{entry}");
    assert!(
        entry["changed_fields"]
            .as_array()
            .unwrap()
            .contains(&json!("password"))
    );

    let target = entry["target"].as_str().unwrap().to_owned();
    let one = t
        .send(
            Method::GET,
            &format!("/api/v1/audit?target={target}"),
            admin,
            None,
        )
        .await;
    assert_eq!(one.body["total"], 1);
    let none = t
        .send(
            Method::GET,
            &format!("/api/v1/audit?actor={}", uuid::Uuid::now_v7()),
            admin,
            None,
        )
        .await;
    assert_eq!(none.body["total"], 0);
    // Empty values are no filter.
    let all = t
        .send(
            Method::GET,
            "/api/v1/audit?actor=&action=&target=",
            admin,
            None,
        )
        .await;
    all.assert_status(StatusCode::OK);
    assert!(all.body["total"].as_u64().unwrap() >= 4);
    // A time window: `since` inclusive, `until` exclusive, in RFC 3339 (an offset is honoured).
    let items = all.body["items"].as_array().unwrap();
    let newest = items[0]["at"].as_str().unwrap();
    async fn count(t: &TestApp, token: Option<&str>, query: &str) -> u64 {
        let path = format!("/api/v1/audit?{query}");
        let reply = t.send(Method::GET, &path, token, None).await;
        reply.assert_status(StatusCode::OK);
        reply.body["total"].as_u64().unwrap()
    }
    let total = all.body["total"].as_u64().unwrap();
    let encoded = newest.replace('+', "%2B");
    assert!(count(&t, admin, &format!("since={encoded}")).await >= 1);
    assert!(count(&t, admin, &format!("until={encoded}")).await < total);
    assert_eq!(
        count(&t, admin, "since=2000-01-01T00:00:00%2B02:00").await,
        total
    );
    assert_eq!(count(&t, admin, "until=2000-01-01T00:00:00Z").await, 0);
    assert_eq!(count(&t, admin, "since=&until=").await, total);
}

#[tokio::test]
async fn the_audit_chain_verifies_and_the_verification_is_audited() {
    let t = TestApp::new().await;
    let auditor = t.account("au", Role::Auditor).await;
    let before = t.audit_count().await;
    let report = t
        .send(
            Method::GET,
            "/api/v1/audit/verify",
            Some(&auditor.token),
            None,
        )
        .await;
    report.assert_status(StatusCode::OK);
    assert_eq!(report.body["ok"], true);
    assert_eq!(report.body["checked"].as_u64().unwrap(), before);
    assert!(report.body["first_break"].is_null());
    let verified = t
        .send(
            Method::GET,
            "/api/v1/audit?action=audit.verify",
            Some(&t.admin_token),
            None,
        )
        .await;
    assert_eq!(verified.body["total"], 1);
    assert_eq!(verified.body["items"][0]["actor_name"], "au");
}

#[tokio::test]
async fn bad_audit_query_parameters_are_a_400_naming_the_parameter() {
    let t = TestApp::new().await;
    let long = format!("/api/v1/audit?action={}", "a".repeat(600));
    let cases: Vec<(String, &str)> = vec![
        ("/api/v1/audit?page=abc".into(), "page"),
        ("/api/v1/audit?page=0".into(), "page"),
        ("/api/v1/audit?page=-1".into(), "page"),
        ("/api/v1/audit?page=99999999999".into(), "page"),
        ("/api/v1/audit?per_page=0".into(), "per_page"),
        ("/api/v1/audit?per_page=201".into(), "per_page"),
        ("/api/v1/audit?per_page=1e3".into(), "per_page"),
        ("/api/v1/audit?actor=bob".into(), "actor"),
        (
            "/api/v1/audit?actor=00000000-0000-0000-0000".into(),
            "actor",
        ),
        ("/api/v1/audit?sort=seq".into(), "sort"),
        (long, "action"),
        ("/api/v1/audit?since=yesterday".into(), "since"),
        ("/api/v1/audit?until=2026-12-07".into(), "until"),
        (
            "/api/v1/audit?since=2026-12-07T10:00:00Z&until=2026-12-07T09:00:00Z".into(),
            "until",
        ),
    ];
    for (path, field) in cases {
        let reply = t.send(Method::GET, &path, Some(&t.admin_token), None).await;
        reply.assert_error(StatusCode::BAD_REQUEST, Some(field));
    }
}

#[tokio::test]
async fn everyone_reads_the_policy_only_admins_change_it() {
    let t = TestApp::new().await;
    let editor = t.account("ed", Role::Editor).await;
    let viewer = t.account("vi", Role::Viewer).await;
    let auditor = t.account("au", Role::Auditor).await;

    for token in [&t.admin_token, &editor.token, &viewer.token, &auditor.token] {
        let policy = t
            .send(Method::GET, "/api/v1/policy", Some(token), None)
            .await;
        policy.assert_status(StatusCode::OK);
        assert_eq!(
            policy.body,
            json!({"allow_cidrs": [], "deny_cidrs": [], "min_tls_mode": "require"})
        );
    }
    let wanted = json!({
        "allow_cidrs": ["127.1.2.3/8", "::1"],
        "deny_cidrs": ["127.0.0.99"],
        "min_tls_mode": "verify-full"
    });
    for token in [&editor.token, &viewer.token, &auditor.token] {
        let reply = t
            .send(
                Method::PUT,
                "/api/v1/policy",
                Some(token),
                Some(wanted.clone()),
            )
            .await;
        assert_eq!(
            reply.assert_error(StatusCode::FORBIDDEN, None),
            "permission_denied"
        );
    }
    let stored = t
        .send(
            Method::PUT,
            "/api/v1/policy",
            Some(&t.admin_token),
            Some(wanted),
        )
        .await;
    stored.assert_status(StatusCode::OK);
    let normalised = json!({
        "allow_cidrs": ["127.0.0.0/8", "::1/128"],
        "deny_cidrs": ["127.0.0.99/32"],
        "min_tls_mode": "verify-full"
    });
    assert_eq!(stored.body, normalised);
    let read = t
        .send(Method::GET, "/api/v1/policy", Some(&viewer.token), None)
        .await;
    assert_eq!(read.body, normalised);

    let audit = t
        .send(
            Method::GET,
            "/api/v1/audit?target=policy",
            Some(&t.admin_token),
            None,
        )
        .await;
    let outcomes: Vec<_> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].clone(), e["outcome"].clone()))
        .collect();
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");
    assert_eq!(outcomes[0], (json!("policy.write"), json!("ok")));
    assert!(outcomes[1..].iter().all(|o| o.1 == "denied"));
}

#[tokio::test]
async fn bad_policy_input_is_a_400_naming_the_field_and_changes_nothing() {
    let t = TestApp::new().await;
    let many: Vec<String> = (0..1001)
        .map(|i| format!("127.0.{}.{}/32", i / 256, i % 256))
        .collect();
    let long_cidr = format!("127.0.0.1/{}", "8".repeat(300));
    let cases = [
        (
            json!({"allow_cidrs": ["x"], "deny_cidrs": [], "min_tls_mode": "require"}),
            "allow_cidrs[0]",
        ),
        (
            json!({"allow_cidrs": [], "deny_cidrs": ["::1", "127.0.0.0/33"], "min_tls_mode": "require"}),
            "deny_cidrs[1]",
        ),
        (
            json!({"allow_cidrs": [], "deny_cidrs": [long_cidr], "min_tls_mode": "require"}),
            "deny_cidrs[0]",
        ),
        (
            json!({"allow_cidrs": [], "deny_cidrs": [], "min_tls_mode": "none"}),
            "min_tls_mode",
        ),
        (
            json!({"allow_cidrs": [], "deny_cidrs": [], "min_tls_mode": 3}),
            "min_tls_mode",
        ),
        (
            json!({"allow_cidrs": [], "min_tls_mode": "require"}),
            "deny_cidrs",
        ),
        (
            json!({"allow_cidrs": "127.0.0.0/8", "deny_cidrs": [], "min_tls_mode": "require"}),
            "allow_cidrs",
        ),
        (
            json!({"allow_cidrs": [1], "deny_cidrs": [], "min_tls_mode": "require"}),
            "allow_cidrs[0]",
        ),
        (
            json!({"allow_cidrs": [], "deny_cidrs": [], "min_tls_mode": "require", "allow_cleartext": true}),
            "allow_cleartext",
        ),
        (
            json!({"allow_cidrs": many, "deny_cidrs": [], "min_tls_mode": "require"}),
            "allow_cidrs",
        ),
    ];
    for (body, field) in cases {
        let reply = t
            .send(
                Method::PUT,
                "/api/v1/policy",
                Some(&t.admin_token),
                Some(body),
            )
            .await;
        reply.assert_error(StatusCode::BAD_REQUEST, Some(field));
    }
    let reply = t
        .send_raw(
            Method::PUT,
            "/api/v1/policy",
            Some(&t.admin_token),
            Some("application/json"),
            "{\"allow_cidrs\": [",
        )
        .await;
    reply.assert_error(StatusCode::BAD_REQUEST, Some("body"));
    let policy = t
        .send(Method::GET, "/api/v1/policy", Some(&t.admin_token), None)
        .await;
    assert_eq!(
        policy.body,
        json!({"allow_cidrs": [], "deny_cidrs": [], "min_tls_mode": "require"})
    );
}
