//! A stored secret is lent to a draft test only for the target it was saved for (SECURITY.md
//! S30, with S12): `POST /connections/test` with `id` and a blank password or client key.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use datahub_core::net::{Dialer, StaticResolver};
use datahub_testkit::{PgCluster, ServerCert, User};
use serde_json::{Value, json};

use crate::common::{Backend, Fixture, on_both_stores};

/// One change to a draft.
type Change = Box<dyn Fn(&mut Value)>;

const CANARY: &str = "canary-lending-Vw81q";
const URL: &str = "/api/v1/connections";

/// A self-signed certificate and its key (PEM), for a CA that is not the cluster's and a
/// client certificate.
fn other_cert() -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["other.example".to_owned()]).unwrap();
    (cert.cert.pem(), cert.key_pair.serialize_pem())
}

on_both_stores!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    s30_a_stored_password_is_lent_only_to_the_saved_target
);

/// S30: same target reuses the stored password (the test logs in); each changed field, a
/// weaker TLS mode or channel binding, or another CA is refused naming `password`, and nothing
/// is dialled; a blank client key follows the same rule, naming `tls.client_key_pem`.
async fn s30_a_stored_password_is_lent_only_to_the_saved_target(backend: Backend) {
    let cluster = tokio::task::spawn_blocking(|| {
        PgCluster::builder()
            .tls(ServerCert::Valid)
            .user(User::new("app").password(CANARY))
            .database("app", "app")
            .start()
            .unwrap()
    })
    .await
    .unwrap();
    let resolver = StaticResolver::new().with("localhost", &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    let f = Fixture::on(backend, |hub| {
        hub.with_connector(Arc::new(Dialer::new(Arc::new(resolver))))
    })
    .await;
    let ca = cluster.ca_pem().unwrap();
    let saved = json!({
        "name": "kit",
        "host": "localhost",
        "port": cluster.port(),
        "database": "app",
        "username": "app",
        "password": CANARY,
        "tls": {"mode": "verify-full", "ca_cert_pem": ca, "channel_binding": "require"},
        "monitoring": {"enabled": false},
    });
    let r = f.admin(Method::POST, URL, Some(&saved)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();
    let draft = |change: &dyn Fn(&mut Value)| {
        let mut d = saved.clone();
        d["id"] = json!(id);
        d.as_object_mut().unwrap().remove("password");
        change(&mut d);
        d
    };

    // The same target: the stored password logs in.
    let r = f
        .admin(Method::POST, &format!("{URL}/test"), Some(&draft(&|_| {})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["ok"], true, "{}", r.text);
    // A blank password is the same as none.
    let r = f
        .admin(
            Method::POST,
            &format!("{URL}/test"),
            Some(&draft(&|d| d["password"] = json!(""))),
        )
        .await;
    assert_eq!(r.json["ok"], true, "{}", r.text);

    let (other_ca, _) = other_cert();
    let changes: Vec<(&str, Change)> = vec![
        ("host", Box::new(|d| d["host"] = json!("127.0.0.2"))),
        ("port", Box::new(|d| d["port"] = json!(1))),
        ("database", Box::new(|d| d["database"] = json!("postgres"))),
        ("username", Box::new(|d| d["username"] = json!("postgres"))),
        (
            "tls.mode",
            Box::new(|d| d["tls"]["mode"] = json!("require")),
        ),
        (
            "tls.channel_binding",
            Box::new(|d| d["tls"]["channel_binding"] = json!("prefer")),
        ),
        (
            "tls.ca_cert_pem",
            Box::new(move |d| d["tls"]["ca_cert_pem"] = json!(other_ca.clone())),
        ),
    ];
    for (what, change) in &changes {
        let r = f
            .admin(
                Method::POST,
                &format!("{URL}/test"),
                Some(&draft(change.as_ref())),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text);
        assert_eq!(r.json["error"]["field"], "password", "{what}: {}", r.text);
        // With the password given, the same draft is tested (and fails or passes on its own).
        let mut given = draft(change.as_ref());
        given["password"] = json!(CANARY);
        let r = f
            .admin(Method::POST, &format!("{URL}/test"), Some(&given))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.text);
    }
    f.assert_never_answered(CANARY);
}

on_both_stores!(
    #[tokio::test]
    s30_a_stored_client_key_is_lent_only_to_the_saved_target
);

/// S30: a stored client key is lent under the same rule, naming `tls.client_key_pem`.
async fn s30_a_stored_client_key_is_lent_only_to_the_saved_target(backend: Backend) {
    let f = Fixture::on(backend, |hub| hub).await;
    let (cert, key) = other_cert();
    let saved = json!({
        "name": "with-key",
        "host": "127.0.0.1",
        "port": 1,
        "database": "app",
        "username": "app",
        "password": CANARY,
        "tls": {"mode": "require", "client_cert_pem": cert, "client_key_pem": key},
        "monitoring": {"enabled": false},
    });
    let r = f.admin(Method::POST, URL, Some(&saved)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap();
    let mut d = saved.clone();
    d["id"] = json!(id);
    d["tls"].as_object_mut().unwrap().remove("client_key_pem");
    // Same target: the key is lent (the test runs; nothing listens on port 1).
    let r = f
        .admin(Method::POST, &format!("{URL}/test"), Some(&d))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Another host, the password given, the key blank: refused naming the key.
    d["host"] = json!("127.0.0.2");
    let r = f
        .admin(Method::POST, &format!("{URL}/test"), Some(&d))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json["error"]["field"], "tls.client_key_pem", "{}", r.text);
}
