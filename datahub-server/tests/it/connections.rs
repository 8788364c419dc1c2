//! Connections over HTTP: CRUD with ETag / If-Match, field errors (S27), grants and the 404 of
//! a connection the caller may not view (S19), reveal, tests of drafts and saved connections
//! (reusing stored secrets, S11), and a canary password that leaves the server only by reveal
//! (S8).

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::Arc;

use axum::http::{Method, StatusCode, header};
use base64::Engine as _;
use datahub_core::hub::RateLimit;
use datahub_core::model::AuditQuery;
use datahub_core::net::{Dialer, StaticResolver};
use datahub_core::rbac::Role;
use datahub_testkit::{PgCluster, ServerCert, User};
use serde_json::{Value, json};

use crate::common::Fixture;

const CANARY: &str = "canary-conn-http-7Rq4w";
const URL: &str = "/api/v1/connections";

/// A loopback port with nothing listening (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

fn body(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "description": "orders database",
        "host": "127.0.0.1",
        "port": port,
        "database": "app",
        "username": "app",
        "password": CANARY,
        "tls": {"mode": "require"},
        "tags": ["prod", "eu"],
        "monitoring": {"enabled": false},
    })
}

fn etag(answer: &crate::common::Answer) -> String {
    answer
        .headers
        .get(header::ETAG)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

fn assert_field(answer: &crate::common::Answer, status: StatusCode, field: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.json["error"]["field"], field, "{}", answer.text);
}

fn assert_no_canary(f: &Fixture) {
    f.assert_never_answered(CANARY);
    f.assert_never_answered(&base64::engine::general_purpose::STANDARD.encode(CANARY));
}

#[tokio::test]
async fn crud_round_trip_with_etag_and_if_match() {
    let f = Fixture::new().await;
    let created = f
        .admin(Method::POST, URL, Some(&body("orders", 5432)))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(etag(&created), "\"1\"");
    let id = created.json["id"].as_str().unwrap().to_owned();
    let one = format!("{URL}/{id}");
    assert_eq!(created.headers[header::LOCATION], one.as_str());
    let c = &created.json;
    assert_eq!(c["version"], 1);
    assert_eq!(c["password_set"], true);
    assert_eq!(c["client_key_set"], false);
    assert_eq!(c["tls"]["mode"], "require");
    assert_eq!(c["tls"]["channel_binding"], "prefer");
    assert_eq!(c["port"], 5432);
    assert_eq!(c["tags"], json!(["prod", "eu"]));
    assert_eq!(c["monitoring"]["enabled"], false);
    assert_eq!(c["monitoring"]["interval_s"], 60);
    assert_eq!(c["options"]["connect_timeout_ms"], 5000);
    assert_eq!(c["health"]["status"], "unknown");
    assert!(c["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(c.get("password").is_none());

    let got = f.admin(Method::GET, &one, None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(etag(&got), "\"1\"");
    assert_eq!(got.json["name"], "orders");

    // The same name again: 409.
    let taken = f
        .admin(Method::POST, URL, Some(&body("orders", 5432)))
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.text);
    assert_eq!(taken.json["error"]["field"], "name");

    // PATCH needs If-Match: missing 428, malformed 400, stale 412.
    let edit = json!({"description": "orders (primary)", "tags": ["prod"]});
    let token = Some(f.admin_token.as_str());
    let r = f.send(Method::PATCH, &one, token, &[], Some(&edit)).await;
    assert_field(&r, StatusCode::PRECONDITION_REQUIRED, "If-Match");
    for bad in [
        "*",
        "W/\"1\"",
        "\"1\", \"2\"",
        "\"x\"",
        "\"\"",
        "\"99999999999999999999\"",
    ] {
        let r = f
            .send(
                Method::PATCH,
                &one,
                token,
                &[("if-match", bad)],
                Some(&edit),
            )
            .await;
        assert_field(&r, StatusCode::BAD_REQUEST, "If-Match");
    }
    let r = f
        .send(
            Method::PATCH,
            &one,
            token,
            &[("if-match", "\"7\"")],
            Some(&edit),
        )
        .await;
    assert_field(&r, StatusCode::PRECONDITION_FAILED, "If-Match");

    // An omitted password keeps the stored one.
    let r = f
        .send(
            Method::PATCH,
            &one,
            token,
            &[("if-match", "\"1\"")],
            Some(&edit),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(etag(&r), "\"2\"");
    assert_eq!(r.json["description"], "orders (primary)");
    assert_eq!(r.json["tags"], json!(["prod"]));
    let revealed = f.admin(Method::POST, &format!("{one}/reveal"), None).await;
    assert_eq!(revealed.status, StatusCode::OK, "{}", revealed.text);
    assert_eq!(revealed.json["password"], CANARY);
    assert_eq!(revealed.json["username"], "app");
    assert!(revealed.json["dsn"].as_str().unwrap().contains(CANARY));
    assert_eq!(revealed.headers[header::CACHE_CONTROL], "no-store");

    // The version read is now stale.
    let r = f
        .send(
            Method::PATCH,
            &one,
            token,
            &[("if-match", "\"1\"")],
            Some(&edit),
        )
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    // An empty password is a field error, never "keep" (S11).
    let r = f
        .send(
            Method::PATCH,
            &one,
            token,
            &[("if-match", "\"2\"")],
            Some(&json!({"password": ""})),
        )
        .await;
    assert_field(&r, StatusCode::BAD_REQUEST, "password");
    // Pointing the stored password at another host needs the password again (S12).
    let r = f
        .send(
            Method::PATCH,
            &one,
            token,
            &[("if-match", "\"2\"")],
            Some(&json!({"host": "127.0.0.2"})),
        )
        .await;
    assert_field(&r, StatusCode::BAD_REQUEST, "password");
    let r = f
        .send(
            Method::PATCH,
            &one,
            token,
            &[("if-match", "2")],
            Some(&json!({"host": "127.0.0.2", "password": format!("{CANARY}-2"), "description": null})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["host"], "127.0.0.2");
    assert_eq!(r.json["description"], Value::Null);
    assert_eq!(r.json["version"], 3);

    // The list.
    let list = f.admin(Method::GET, URL, None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json["total"], 1);
    assert_eq!(list.json["page"], 1);
    assert_eq!(list.json["per_page"], 50);
    assert_eq!(list.json["items"][0]["id"], id.as_str());
    let filtered = f.admin(Method::GET, &format!("{URL}?tag=eu"), None).await;
    assert_eq!(filtered.json["total"], 0, "{}", filtered.text);
    let filtered = f
        .admin(
            Method::GET,
            &format!(
                "{URL}?search=ORDERS&status=unknown&engine=postgres&sort=updated&page=1&per_page=10"
            ),
            None,
        )
        .await;
    assert_eq!(filtered.json["total"], 1, "{}", filtered.text);
    for sort in ["name", "updated", "status", "checked", "latency"] {
        let sorted = f
            .admin(Method::GET, &format!("{URL}?sort={sort}"), None)
            .await;
        assert_eq!(sorted.json["total"], 1, "{sort}: {}", sorted.text);
    }

    // DELETE needs If-Match too.
    let r = f.send(Method::DELETE, &one, token, &[], None).await;
    assert_field(&r, StatusCode::PRECONDITION_REQUIRED, "If-Match");
    let r = f
        .send(Method::DELETE, &one, token, &[("if-match", "\"2\"")], None)
        .await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{}", r.text);
    let r = f
        .send(Method::DELETE, &one, token, &[("if-match", "\"3\"")], None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(
        f.admin(Method::GET, &one, None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(f.admin(Method::GET, URL, None).await.json["total"], 0);
    assert_no_canary(&f);
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field() {
    let f = Fixture::new().await;
    let with = |change: &dyn Fn(&mut Value)| {
        let mut b = body("orders", 5432);
        change(&mut b);
        b
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(&|b| b["port"] = json!(70000)), "port"),
        (with(&|b| b["port"] = json!(0)), "port"),
        (with(&|b| b["port"] = json!("5432x")), "port"),
        (with(&|b| b["tls"]["mode"] = json!("bogus")), "tls.mode"),
        (with(&|b| b["tls"]["mode"] = json!(3)), "tls.mode"),
        (
            with(&|b| b["tls"]["channel_binding"] = json!("always")),
            "tls.channel_binding",
        ),
        (
            with(&|b| b["tls"]["sslmode"] = json!("require")),
            "tls.sslmode",
        ),
        (with(&|b| b["extra"] = json!(1)), "extra"),
        (with(&|b| b["tags"] = json!("prod")), "tags"),
        (with(&|b| b["tags"] = json!(["ok", "NOT OK"])), "tags[1]"),
        (with(&|b| b["name"] = json!("x".repeat(65))), "name"),
        (with(&|b| b["name"] = json!("Bad Name")), "name"),
        (with(&|b| b["engine"] = json!("mysql")), "engine"),
        (with(&|b| b["host"] = json!("a b")), "host"),
        (
            with(&|b| b["description"] = json!("d".repeat(1001))),
            "description",
        ),
        (
            with(&|b| b["monitoring"]["interval_s"] = json!(5)),
            "monitoring.interval_s",
        ),
        (
            with(&|b| b["options"]["connect_timeout_ms"] = json!(60000)),
            "options.connect_timeout_ms",
        ),
        (with(&|b| b["password"] = json!(12345)), "password"),
        (with(&|b| b["password"] = json!("")), "password"),
        (
            with(&|b| {
                b.as_object_mut().unwrap().remove("password");
            }),
            "password",
        ),
        (
            with(&|b| {
                b.as_object_mut().unwrap().remove("host");
            }),
            "host",
        ),
        (with(&|b| b["tls"]["mode"] = json!("prefer")), "tls.mode"),
    ];
    for (input, field) in &cases {
        let r = f.admin(Method::POST, URL, Some(input)).await;
        assert_field(&r, StatusCode::BAD_REQUEST, field);
        assert!(
            !r.text.contains("NOT OK") && !r.text.contains("5432x"),
            "{}",
            r.text
        );
    }

    // Malformed JSON, and the wrong content type.
    let r = f
        .send_raw(
            axum::http::Request::post(URL)
                .header(header::AUTHORIZATION, format!("Bearer {}", f.admin_token))
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from("{\"name\": "))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let r = f
        .send_raw(
            axum::http::Request::post(URL)
                .header(header::AUTHORIZATION, format!("Bearer {}", f.admin_token))
                .body(axum::body::Body::from(body("x", 1).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.text);

    // Bad ids in the path: 400 on `id`, never 500, on every route with one.
    let token = Some(f.admin_token.as_str());
    let if_match = [("if-match", "\"1\"")];
    for (method, path, body) in [
        (Method::GET, "not-a-uuid", None),
        (Method::PATCH, "not-a-uuid", Some(json!({}))),
        (Method::DELETE, "not-a-uuid", None),
        (Method::POST, "123/test", None),
        (Method::GET, "123/health", None),
        (Method::POST, "123/reveal", None),
        (Method::GET, "123/grants", None),
        (Method::PUT, "123/grants", Some(json!({"grants": []}))),
        (Method::DELETE, "123/grants", None),
    ] {
        let r = f
            .send(
                method.clone(),
                &format!("{URL}/{path}"),
                token,
                &if_match,
                body.as_ref(),
            )
            .await;
        assert_field(&r, StatusCode::BAD_REQUEST, "id");
    }
    // A well-formed id that names nothing: 404.
    let r = f
        .admin(
            Method::GET,
            &format!("{URL}/0190f0a0-0000-7000-8000-000000000000"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Bad query parameters name the parameter.
    for (query, field) in [
        ("page=0", "page"),
        ("page=-1", "page"),
        ("per_page=abc", "per_page"),
        ("per_page=500", "per_page"),
        ("status=fine", "status"),
        ("engine=mysql", "engine"),
        ("sort=size", "sort"),
        ("tag=NOT%20OK", "tag"),
        ("bogus=1", "bogus"),
    ] {
        let r = f.admin(Method::GET, &format!("{URL}?{query}"), None).await;
        assert_field(&r, StatusCode::BAD_REQUEST, field);
    }
    let long = "x".repeat(201);
    let r = f
        .admin(Method::GET, &format!("{URL}?search={long}"), None)
        .await;
    assert_field(&r, StatusCode::BAD_REQUEST, "search");
    let r = f
        .admin(
            Method::POST,
            &format!("{URL}?test_first=yes"),
            Some(&body("a", 1)),
        )
        .await;
    assert_field(&r, StatusCode::BAD_REQUEST, "test_first");

    // Unauthenticated: 401 before anything is parsed.
    let r = f
        .send(Method::GET, &format!("{URL}/not-a-uuid"), None, &[], None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_no_canary(&f);
}

#[tokio::test]
async fn grants_decide_what_a_viewer_sees() {
    let f = Fixture::new().await;
    let (viewer_id, viewer) = f.user("vera", Role::Viewer).await;
    let created = f
        .admin(Method::POST, URL, Some(&body("orders", 5432)))
        .await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    f.admin(Method::POST, URL, Some(&body("other", 5432))).await;
    let one = format!("{URL}/{id}");
    let as_viewer = |method: Method, uri: String, body: Option<Value>| {
        let f = &f;
        let viewer = viewer.clone();
        async move {
            f.send(
                method,
                &uri,
                Some(&viewer),
                &[("if-match", "\"1\"")],
                body.as_ref(),
            )
            .await
        }
    };

    // Without a grant the connection does not exist for the viewer.
    for (method, path) in [
        (Method::GET, one.clone()),
        (Method::POST, format!("{one}/reveal")),
        (Method::POST, format!("{one}/test")),
        (Method::GET, format!("{one}/health")),
        (Method::GET, format!("{one}/grants")),
        (Method::DELETE, one.clone()),
    ] {
        let r = as_viewer(method, path, None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    }
    let list = as_viewer(Method::GET, URL.to_owned(), None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json["total"], 0);
    assert_eq!(list.json["items"], json!([]));
    // A viewer may neither create nor test drafts.
    let r = as_viewer(Method::POST, URL.to_owned(), Some(body("mine", 5432))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);

    // Grants round trip: PUT replaces, GET answers the same shape with each grantee's name
    // (output only: a PUT naming it is refused, the field named).
    let grants = json!({"grants": [{"user_id": viewer_id, "level": "view"}]});
    let named = json!({"grants": [{"user_id": viewer_id, "level": "view", "name": "vera"}]});
    let r = f.put_grants(&one, &grants).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json, named);
    let r = f.admin(Method::GET, &format!("{one}/grants"), None).await;
    assert_eq!(r.json, named);
    let r = f.put_grants(&one, &named).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json["error"]["field"], "grants[0].name", "{}", r.text);

    // `view`: seen and listed, but no secret, no test, no edit, no grants. The connection
    // tells each caller its own level (lists do not).
    let r = as_viewer(Method::GET, one.clone(), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["access"], "view");
    assert_eq!(
        f.admin(Method::GET, &one, None).await.json["access"],
        "manage"
    );
    let list = as_viewer(Method::GET, URL.to_owned(), None).await;
    assert_eq!(list.json["total"], 1);
    assert_eq!(list.json["items"][0]["id"], id.as_str());
    assert!(list.json["items"][0].get("access").is_none());
    let r = as_viewer(Method::GET, format!("{one}/health"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["checks"], json!([]));
    assert_eq!(r.json["health"]["status"], "unknown");
    for (method, path, body) in [
        (Method::POST, format!("{one}/reveal"), None),
        (
            Method::PATCH,
            one.clone(),
            Some(json!({"description": "x"})),
        ),
        (Method::GET, format!("{one}/grants"), None),
    ] {
        let r = as_viewer(method, path, body).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    }

    // `use`: reveal.
    let grants = json!({"grants": [{"user_id": viewer_id, "level": "use"}]});
    let r = f.put_grants(&one, &grants).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = as_viewer(Method::POST, format!("{one}/reveal"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["password"], CANARY);
    assert_eq!(
        as_viewer(Method::GET, one.clone(), None).await.json["access"],
        "use"
    );

    // Bad grants name the entry and field.
    let missing = "0190f0a0-0000-7000-8000-000000000000";
    for (grants, status, field) in [
        (
            json!([{"level": "use"}]),
            StatusCode::BAD_REQUEST,
            "grants[0].user_id",
        ),
        (
            json!([{"user_id": viewer_id, "team_id": viewer_id, "level": "use"}]),
            StatusCode::BAD_REQUEST,
            "grants[0].user_id",
        ),
        (
            json!([{"user_id": viewer_id, "level": "use"}, {"user_id": "x", "level": "use"}]),
            StatusCode::BAD_REQUEST,
            "grants[1].user_id",
        ),
        (
            json!([{"team_id": "x", "level": "use"}]),
            StatusCode::BAD_REQUEST,
            "grants[0].team_id",
        ),
        (
            json!([{"user_id": viewer_id, "level": "owner"}]),
            StatusCode::BAD_REQUEST,
            "grants[0].level",
        ),
        (
            json!([{"user_id": viewer_id, "level": "use", "extra": 1}]),
            StatusCode::BAD_REQUEST,
            "grants[0].extra",
        ),
        (
            json!([{"user_id": viewer_id, "level": "use"}, {"user_id": viewer_id, "level": "view"}]),
            StatusCode::BAD_REQUEST,
            "grants",
        ),
    ] {
        let r = f.put_grants(&one, &json!({"grants": grants})).await;
        assert_field(&r, status, field);
    }
    let r = f
        .put_grants(
            &one,
            &json!({"grants": [{"user_id": missing, "level": "use"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);

    // DELETE clears the set: the viewer loses the connection at once.
    let etag = f.grants_etag(&one).await;
    let r = f
        .send(
            Method::DELETE,
            &format!("{one}/grants"),
            Some(&f.admin_token),
            &[("if-match", &etag)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(
        f.admin(Method::GET, &format!("{one}/grants"), None)
            .await
            .json,
        json!({"grants": []})
    );
    assert_eq!(
        as_viewer(Method::GET, one.clone(), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        as_viewer(Method::GET, URL.to_owned(), None).await.json["total"],
        0
    );
    assert_no_canary(&f);
}

#[tokio::test]
async fn grants_need_if_match_and_refuse_a_stale_version() {
    let f = Fixture::new().await;
    let (viewer_id, _) = f.user("gina", Role::Viewer).await;
    let created = f
        .admin(Method::POST, URL, Some(&body("orders", 5432)))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let read = etag(&created);
    assert_eq!(read, "\"1\"");
    let one = format!("{URL}/{}", created.json["id"].as_str().unwrap());
    let uri = format!("{one}/grants");
    let token = Some(f.admin_token.as_str());
    // PUT of `body` naming `tag` in If-Match.
    let put_at = async |tag: &str, body: &Value| {
        f.send(Method::PUT, &uri, token, &[("if-match", tag)], Some(body))
            .await
    };

    // GET answers the connection's version as the grants' ETag: the connection's own ETag.
    let r = f.admin(Method::GET, &uri, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json, json!({"grants": []}));
    assert_eq!(etag(&r), read);
    assert_eq!(etag(&f.admin(Method::GET, &one, None).await), read);

    // PUT needs If-Match: missing 428, malformed 400; neither changes anything.
    let first = json!({"grants": [{"user_id": viewer_id, "level": "view"}]});
    // As answered: with the grantee's name.
    let first_named = json!({"grants": [{"user_id": viewer_id, "level": "view", "name": "gina"}]});
    let r = f.send(Method::PUT, &uri, token, &[], Some(&first)).await;
    assert_field(&r, StatusCode::PRECONDITION_REQUIRED, "If-Match");
    for bad in ["*", "W/\"1\"", "\"1\", \"2\"", "\"x\"", "\"\""] {
        let r = put_at(bad, &first).await;
        assert_field(&r, StatusCode::BAD_REQUEST, "If-Match");
    }
    let r = f.admin(Method::GET, &uri, None).await;
    assert_eq!(r.json, json!({"grants": []}));
    assert_eq!(etag(&r), read);

    // The version read: 200 with the new set and an ETag one higher, the connection's new one.
    let r = put_at(&read, &first).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json, first_named);
    let current = etag(&r);
    assert_eq!(current, "\"2\"");
    let got = f.admin(Method::GET, &one, None).await;
    assert_eq!(etag(&got), current);
    assert_eq!(got.json["version"], 2);

    // The version read before is stale now: 412, and the grants are still the first PUT's.
    let second = json!({"grants": [{"user_id": viewer_id, "level": "use"}]});
    let r = put_at(&read, &second).await;
    assert_field(&r, StatusCode::PRECONDITION_FAILED, "If-Match");
    let r = f.admin(Method::GET, &uri, None).await;
    assert_eq!(r.json, first_named);
    assert_eq!(etag(&r), current);

    // An edit of the connection read before its grants changed is stale too.
    let r = f
        .send(
            Method::PATCH,
            &one,
            token,
            &[("if-match", &read)],
            Some(&json!({"description": "edited on a stale read"})),
        )
        .await;
    assert_field(&r, StatusCode::PRECONDITION_FAILED, "If-Match");
    let got = f.admin(Method::GET, &one, None).await;
    assert_eq!(got.json["description"], "orders database");
    assert_eq!(etag(&got), current);

    // DELETE needs If-Match too: missing 428, stale 412, the current one 204 and the next ETag.
    let r = f.send(Method::DELETE, &uri, token, &[], None).await;
    assert_field(&r, StatusCode::PRECONDITION_REQUIRED, "If-Match");
    let r = f
        .send(Method::DELETE, &uri, token, &[("if-match", &read)], None)
        .await;
    assert_field(&r, StatusCode::PRECONDITION_FAILED, "If-Match");
    assert_eq!(f.admin(Method::GET, &uri, None).await.json, first_named);
    let r = f
        .send(Method::DELETE, &uri, token, &[("if-match", &current)], None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert_eq!(etag(&r), "\"3\"");
    let r = f.admin(Method::GET, &uri, None).await;
    assert_eq!(r.json, json!({"grants": []}));
    assert_eq!(etag(&r), "\"3\"");

    // Only the two changes were written (and audited); every refusal wrote nothing.
    let writes = f
        .store
        .audit_page(&AuditQuery {
            actor: None,
            action: Some("grants.write".to_owned()),
            target: None,
            since: None,
            until: None,
            page: 1,
            per_page: 50,
        })
        .await
        .unwrap()
        .total;
    assert_eq!(writes, 2);
    assert_no_canary(&f);
}

#[tokio::test]
async fn failed_tests_are_reports_and_tests_are_rate_limited() {
    let f = Fixture::with(|hub| {
        hub.with_test_rate_limit(RateLimit {
            burst: 3,
            per_second: 0.001,
        })
    })
    .await;
    let port = closed_port();
    let created = f.admin(Method::POST, URL, Some(&body("down", port))).await;
    let id = created.json["id"].as_str().unwrap().to_owned();

    // A saved connection whose server is gone: 200 with the report, ok false.
    let r = f
        .admin(Method::POST, &format!("{URL}/{id}/test"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let report = &r.json;
    assert_eq!(report["ok"], false);
    assert_eq!(report["error_kind"], "connection_refused");
    assert_eq!(report["step"], "tcp");
    assert!(report["hint"].as_str().is_some());
    assert!(report["total_ms"].as_f64().is_some());
    assert_eq!(report["sqlstate"], Value::Null);
    assert_eq!(report["server"], Value::Null);
    assert_eq!(report["tls"], Value::Null);
    let keys: Vec<&str> = report
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "ok",
        "error_kind",
        "step",
        "hint",
        "sqlstate",
        "total_ms",
        "steps",
        "server",
        "tls",
    ] {
        assert!(keys.contains(&key), "{key} missing from {report}");
    }
    let step = &report["steps"][0];
    assert!(step["name"].is_string() && step["ms"].is_number() && step["ok"].is_boolean());

    // A draft reusing the stored password (none given), then test_first refusing to save.
    let draft = json!({"id": id, "host": "127.0.0.1", "port": port, "database": "app",
                       "username": "app", "tls": {"mode": "require"}});
    let r = f
        .admin(Method::POST, &format!("{URL}/test"), Some(&draft))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["error_kind"], "connection_refused");
    let r = f
        .admin(
            Method::POST,
            &format!("{URL}?test_first=true"),
            Some(&body("never", port)),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "test_failed");
    assert_eq!(r.json["report"]["error_kind"], "connection_refused");
    assert_eq!(f.admin(Method::GET, URL, None).await.json["total"], 1);

    // The fourth test within the burst of three: 429, with `Retry-After` from the bucket's
    // refill (one test per 1,000 s here, so close to 1,000 s), the same in the message.
    let r = f
        .admin(Method::POST, &format!("{URL}/{id}/test"), None)
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    let retry: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((990..=1_000).contains(&retry), "Retry-After: {retry}");
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("try again in {retry} s")),
        "{message}"
    );
    // A draft test draws on the same bucket.
    let r = f
        .admin(Method::POST, &format!("{URL}/test"), Some(&draft))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    assert_no_canary(&f);
}

/// The saved test authenticates its caller while it reads the connection: the answers are
/// those of every other route all the same. 401 before anything else (a malformed id, an
/// unknown one or a real one alike, without a token or with a wrong one), then 400 on `id`,
/// 404; no audit row and no test spent for a refused caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saved_test_refuses_strangers_before_it_reads_anything() {
    let f = Fixture::with(|hub| {
        hub.with_test_rate_limit(RateLimit {
            burst: 1,
            per_second: 0.001,
        })
    })
    .await;
    let created = f
        .admin(Method::POST, URL, Some(&body("down", closed_port())))
        .await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let (_, token) = f.user("vic", Role::Viewer).await;
    let audit_before = f.store.audit_after(0, 10_000).await.unwrap().len();
    let unknown = uuid::Uuid::now_v7().to_string();
    for path in [&id, &unknown, &"not-a-uuid".to_owned()] {
        let uri = format!("{URL}/{path}/test");
        for token in [None, Some("dh_not-a-real-token"), Some("")] {
            let r = f.send(Method::POST, &uri, token, &[], None).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{uri} {token:?}: {}",
                r.text
            );
        }
    }
    assert_eq!(
        f.store.audit_after(0, 10_000).await.unwrap().len(),
        audit_before,
        "nothing audited for strangers"
    );
    let r = f
        .admin(Method::POST, &format!("{URL}/not-a-uuid/test"), None)
        .await;
    assert_field(&r, StatusCode::BAD_REQUEST, "id");
    let r = f
        .admin(Method::POST, &format!("{URL}/{unknown}/test"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    // A viewer without a grant: not found, as for any connection it may not view.
    let r = f
        .send(
            Method::POST,
            &format!("{URL}/{id}/test"),
            Some(&token),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    // The one test of the bucket is still there.
    let r = f
        .admin(Method::POST, &format!("{URL}/{id}/test"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["error_kind"], "connection_refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kit_cluster_is_created_tested_first_and_tested_again() {
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
    let f =
        Fixture::with(|hub| hub.with_connector(Arc::new(Dialer::new(Arc::new(resolver))))).await;
    let (_, editor) = f.user("eddie", Role::Editor).await;
    let input = json!({
        "name": "kit",
        "host": "localhost",
        "port": cluster.port(),
        "database": "app",
        "username": "app",
        "password": CANARY,
        "tls": {"mode": "verify-full", "ca_cert_pem": cluster.ca_pem().unwrap(), "channel_binding": "require"},
        "monitoring": {"enabled": false},
    });
    let r = f
        .send(
            Method::POST,
            &format!("{URL}?test_first=true"),
            Some(&editor),
            &[],
            Some(&input),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.json["id"].as_str().unwrap().to_owned();

    // The owner (an editor) tests it: every step ok, with the server's and TLS facts.
    let r = f
        .send(
            Method::POST,
            &format!("{URL}/{id}/test"),
            Some(&editor),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["ok"], true, "{}", r.text);
    assert_eq!(r.json["error_kind"], Value::Null);
    assert_eq!(r.json["server"]["user"], "app");
    assert_eq!(r.json["server"]["database"], "app");
    assert!(
        r.json["tls"]["protocol"]
            .as_str()
            .unwrap()
            .starts_with("TLS")
    );
    assert!(
        r.json["tls"]["peer_not_after"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert!(
        r.json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["ok"] == true)
    );

    // A draft with a blank password borrows the stored one (S11) ...
    let mut draft = input.clone();
    draft["id"] = json!(id);
    draft["password"] = json!("");
    let r = f
        .send(
            Method::POST,
            &format!("{URL}/test"),
            Some(&editor),
            &[],
            Some(&draft),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["ok"], true, "{}", r.text);
    // ... without `id` there is none to borrow ...
    draft.as_object_mut().unwrap().remove("id");
    let r = f
        .send(
            Method::POST,
            &format!("{URL}/test"),
            Some(&editor),
            &[],
            Some(&draft),
        )
        .await;
    assert_field(&r, StatusCode::BAD_REQUEST, "password");
    // ... and a wrong one given is used, and fails.
    draft["password"] = json!("wrong-password");
    let r = f
        .send(
            Method::POST,
            &format!("{URL}/test"),
            Some(&editor),
            &[],
            Some(&draft),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["error_kind"], "auth_failed", "{}", r.text);

    // A wrong password with test_first saves nothing.
    let mut wrong = input.clone();
    wrong["name"] = json!("kit-wrong");
    wrong["password"] = json!("wrong-password");
    let r = f
        .send(
            Method::POST,
            &format!("{URL}?test_first=true"),
            Some(&editor),
            &[],
            Some(&wrong),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.json["report"]["error_kind"], "auth_failed");
    let list = f.send(Method::GET, URL, Some(&editor), &[], None).await;
    assert_eq!(list.json["total"], 1);
    assert_no_canary(&f);
}

#[tokio::test]
async fn every_connection_route_is_declared_documented_and_closed_to_strangers() {
    let f = Fixture::new().await;
    let spec = f
        .send(Method::GET, "/api/v1/openapi.json", None, &[], None)
        .await;
    let some_id = "0190f0a0-0000-7000-8000-000000000000";
    let routes: Vec<_> = datahub_server::routes::ROUTES
        .iter()
        .filter(|r| r.path.starts_with(URL))
        .collect();
    assert_eq!(routes.len(), 12);
    for route in routes {
        assert!(
            matches!(
                route.permission,
                datahub_server::routes::Permission::Action(_)
            ),
            "{route:?}"
        );
        let method = route.method.as_str().to_ascii_lowercase();
        assert!(
            spec.json["paths"][route.path][&method].is_object(),
            "{} {} is not in the OpenAPI document",
            route.method,
            route.path
        );
        let uri = route.path.replace("{id}", some_id);
        let r = f
            .send(route.method.clone(), &uri, None, &[], Some(&json!({})))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{} {uri}", route.method);
    }
}

#[tokio::test]
async fn health_history_parameters() {
    let f = Fixture::new().await;
    let created = f
        .admin(Method::POST, URL, Some(&body("orders", 5432)))
        .await;
    let id = created.json["id"].as_str().unwrap();
    let url = format!("{URL}/{id}/health");
    let r = f
        .admin(
            Method::GET,
            &format!("{url}?since=2020-01-01T00:00:00Z&limit=10"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["checks"], json!([]));
    assert_eq!(r.json["buckets"], json!([]));
    assert_eq!(r.json["health"]["uptime_24h"], Value::Null);
    for (query, field) in [
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("until=now", "until"),
    ] {
        let r = f.admin(Method::GET, &format!("{url}?{query}"), None).await;
        assert_field(&r, StatusCode::BAD_REQUEST, field);
    }
}

/// Words of Rust that must never reach an API client in an error message.
const RUST_WORDS: &[&str] = &[
    "u8", "u16", "u32", "u64", "i32", "i64", "usize", "struct", "enum", "sequence", "borrowed",
];

#[tokio::test]
async fn a_wrong_typed_port_is_described_in_json_words() {
    let f = Fixture::new().await;
    for (port, said) in [
        (json!("5432"), "wrong type: expected an integer"),
        (json!(54.32), "wrong type: expected an integer"),
        (json!(true), "wrong type: expected an integer"),
        (json!([5432]), "wrong type: expected an integer"),
        (json!({"n": 5432}), "wrong type: expected an integer"),
        (
            json!(99_999_999_999_999_999_999.0),
            "wrong type: expected an integer",
        ),
    ] {
        let mut sent = body("typed", 5432);
        sent["port"] = port.clone();
        let r = f.admin(Method::POST, URL, Some(&sent)).await;
        assert_field(&r, StatusCode::BAD_REQUEST, "port");
        let message = r.json["error"]["message"].as_str().unwrap();
        assert_eq!(message, said, "{port}");
        let words: Vec<&str> = message
            .split(|c: char| !c.is_ascii_alphanumeric())
            .collect();
        for rust in RUST_WORDS {
            assert!(!words.contains(rust), "{port}: {message:?} names {rust}");
        }
    }
    // Nested objects and lists are named in JSON's words too.
    let mut sent = body("typed", 5432);
    sent["tags"] = json!("prod");
    let r = f.admin(Method::POST, URL, Some(&sent)).await;
    assert_field(&r, StatusCode::BAD_REQUEST, "tags");
    assert_eq!(r.json["error"]["message"], "wrong type: expected an array");
    let mut sent = body("typed", 5432);
    sent["tls"] = json!("require");
    let r = f.admin(Method::POST, URL, Some(&sent)).await;
    assert_field(&r, StatusCode::BAD_REQUEST, "tls");
    assert_eq!(
        r.json["error"]["message"],
        "wrong type: expected a JSON object"
    );
    let list = f.admin(Method::GET, URL, None).await;
    assert_eq!(list.json["total"], 0, "nothing was saved");
}

/// Recent checks carry the failed step and a fixed hint; a connection (one and in a list)
/// carries the facts of the last check that reached the server, `null` until one did.
#[tokio::test]
async fn checks_carry_step_and_hint_and_connections_the_last_facts() {
    use datahub_core::ConnectionId;
    use datahub_core::model::Check;
    use datahub_core::model::{
        CheckFacts, FailureKind, Health, HealthStatus, ServerInfo, StepName, TlsInfo,
    };
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    let f = Fixture::new().await;
    let created = f.admin(Method::POST, URL, Some(&body("facts", 5432))).await;
    let id_text = created.json["id"].as_str().unwrap().to_owned();
    let id: ConnectionId = id_text.parse().unwrap();
    let one = format!("{URL}/{id_text}");
    assert_eq!(created.json["facts"], Value::Null);
    assert_eq!(
        f.admin(Method::GET, &one, None).await.json["facts"],
        Value::Null
    );

    let t0 = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - time::Duration::minutes(5);
    let expires = OffsetDateTime::parse("2030-01-02T03:04:05Z", &Rfc3339).unwrap();
    let store = &f.store;
    let record = |at: OffsetDateTime, kind: Option<FailureKind>, step: Option<StepName>| {
        let facts = kind.is_none().then(|| CheckFacts {
            at,
            server: Some(ServerInfo {
                version: "16.4".into(),
                in_recovery: false,
                connections_used: Some(5),
                max_connections: Some(100),
            }),
            tls: Some(TlsInfo {
                protocol: Some("TLSv1.3".into()),
                cipher: Some("TLS_AES_256_GCM_SHA384".into()),
                peer_subject: Some("CN=db.example.com".into()),
                peer_not_after: Some(expires),
            }),
        });
        let status = if kind.is_some() {
            HealthStatus::Degraded
        } else {
            HealthStatus::Healthy
        };
        let check = Check {
            connection: id,
            at,
            ok: kind.is_none(),
            latency_ms: 12,
            error_kind: kind,
            step,
            status,
        };
        let health = Health {
            status,
            checked_at: Some(at),
            latency_ms: Some(12),
            error_kind: kind,
            uptime_24h: Some(0.5),
            facts,
        };
        async move { store.record_check(&check, &health).await.unwrap() }
    };
    record(t0, None, None).await;
    let t1 = t0 + time::Duration::minutes(1);
    record(t1, Some(FailureKind::Timeout), Some(StepName::Tls)).await;
    let t2 = t1 + time::Duration::minutes(1);
    // A check recorded before steps were: the hint of its kind alone.
    record(t2, Some(FailureKind::ConnectionRefused), None).await;

    let r = f.admin(Method::GET, &format!("{one}/health"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let checks = r.json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 3, "{}", r.text);
    let rfc = |at: OffsetDateTime| at.format(&Rfc3339).unwrap();
    assert_eq!(
        checks[0],
        json!({
            "at": rfc(t2), "ok": false, "latency_ms": 12, "error_kind": "connection_refused",
            "step": null, "hint": FailureKind::ConnectionRefused.hint(None), "status": "degraded",
        })
    );
    assert_eq!(checks[1]["step"], "tls");
    assert_eq!(
        checks[1]["hint"],
        FailureKind::Timeout.hint(Some(StepName::Tls))
    );
    assert!(
        checks[1]["hint"]
            .as_str()
            .unwrap()
            .contains("TLS handshake")
    );
    assert_eq!(checks[2]["step"], Value::Null);
    assert_eq!(checks[2]["hint"], Value::Null);
    assert_eq!(checks[2]["ok"], true);

    // The facts of the first check, kept through the two failures after it.
    let facts = json!({
        "at": rfc(t0),
        "server": {"version": "16.4", "in_recovery": false, "connections_used": 5,
                   "max_connections": 100},
        "tls": {"protocol": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384",
                "peer_subject": "CN=db.example.com", "peer_not_after": "2030-01-02T03:04:05Z"},
    });
    let shown = f.admin(Method::GET, &one, None).await;
    assert_eq!(shown.json["facts"], facts, "{}", shown.text);
    let listed = f.admin(Method::GET, URL, None).await;
    assert_eq!(listed.json["items"][0]["facts"], facts, "{}", listed.text);
}

/// Checks older than the detail window come back rolled up, as `buckets` beside `checks`.
#[tokio::test]
async fn rolled_up_checks_come_as_buckets() {
    use datahub_core::ConnectionId;
    use datahub_core::model::{Check, Health, HealthBucket, HealthStatus};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    let f = Fixture::new().await;
    let created = f
        .admin(Method::POST, URL, Some(&body("rolled", 5432)))
        .await;
    let id_text = created.json["id"].as_str().unwrap().to_owned();
    let id: ConnectionId = id_text.parse().unwrap();
    let start = HealthBucket::start_of(OffsetDateTime::now_utc() - time::Duration::hours(30));
    for (i, ok) in [(0, true), (1, false), (2, true)] {
        let at = start + time::Duration::minutes(i);
        let status = if ok {
            HealthStatus::Healthy
        } else {
            HealthStatus::Degraded
        };
        let check = Check {
            connection: id,
            at,
            ok,
            latency_ms: 10 * (i as u32 + 1),
            error_kind: None,
            step: None,
            status,
        };
        let health = Health {
            status,
            checked_at: Some(at),
            ..Health::default()
        };
        f.store.record_check(&check, &health).await.unwrap();
    }
    let now = OffsetDateTime::now_utc();
    let done = f
        .store
        .roll_up_checks(now - time::Duration::hours(24), None, 1_000)
        .await
        .unwrap();
    assert_eq!(done.rolled, 3);
    let since = (now - time::Duration::hours(48)).format(&Rfc3339).unwrap();
    let r = f
        .admin(
            Method::GET,
            &format!("{URL}/{id_text}/health?since={since}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["checks"], json!([]));
    assert_eq!(
        r.json["buckets"],
        json!([{
            "start": start.format(&Rfc3339).unwrap(), "checks": 3, "failures": 1,
            "latency_p50_ms": 10, "latency_max_ms": 30, "worst": "degraded",
        }])
    );
}
