//! Throttling under concurrency (SECURITY.md S29): sign-in attempts take their token before any
//! password work, so a flood reaches argon2 at most a burst's worth of times per account and
//! per address; the limiter stays bounded under a spray of names; the API keeps answering.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode, header};
use datahub_core::limit::LoginLimit;
use datahub_server::{AppState, HttpOptions, app};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tower::ServiceExt;

use crate::common::{ADMIN_PW, Backend, Fixture, PG_STORE, on_both_stores, pg_cluster};

/// The default login burst.
const BURST: usize = 10;

/// `state` with the default burst and a refill far slower than any test here runs: the bounds
/// these tests check hold within one refill, however slowly a loaded machine runs the flood.
fn no_refill(state: AppState) -> AppState {
    state.with_login_limit(LoginLimit {
        burst: BURST as u32,
        refill: Duration::from_secs(3600),
    })
}

/// The app of `f` served on a loopback socket, with client addresses.
async fn serve(state: AppState) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    addr
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn post_login(client: &HttpClient, addr: SocketAddr, user: &str, pw: &str) -> StatusCode {
    let body = json!({"username": user, "password": pw}).to_string();
    let request = Request::post(format!("http://{addr}/api/v1/auth/login"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

fn login_request(user: &str, pw: &str) -> Request<Body> {
    Request::post("/api/v1/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"username": user, "password": pw}).to_string(),
        ))
        .unwrap()
}

on_both_stores!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    s29_a_concurrent_flood_reaches_the_password_check_at_most_the_burst
);

/// S29: 64 wrong passwords for `admin` at once: at most the burst reach the password check
/// (401), every other one is refused before it (429); the right password is then refused too.
async fn s29_a_concurrent_flood_reaches_the_password_check_at_most_the_burst(backend: Backend) {
    let f = Fixture::on(backend, |hub| hub).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let app = f.app.clone();
        tasks.push(tokio::spawn(async move {
            let request = login_request("admin", &format!("wrong-password-{i}"));
            app.oneshot(request).await.unwrap().status()
        }));
    }
    let mut unauthorized = 0;
    let mut limited = 0;
    for task in tasks {
        match task.await.unwrap() {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(unauthorized <= BURST, "{unauthorized} reached argon2");
    assert_eq!(unauthorized + limited, 64);
    let status = f
        .app
        .clone()
        .oneshot(login_request("admin", ADMIN_PW))
        .await;
    assert_eq!(status.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
}

on_both_stores!(
    #[tokio::test]
    s29_successful_sign_ins_do_not_count
);

/// S29: a successful sign-in gives its attempt back, so signing in often never runs out.
async fn s29_successful_sign_ins_do_not_count(backend: Backend) {
    let f = Fixture::on(backend, |hub| hub).await;
    for _ in 0..BURST + 3 {
        let response = f
            .app
            .clone()
            .oneshot(login_request("admin", ADMIN_PW))
            .await;
        assert_eq!(response.unwrap().status(), StatusCode::OK);
    }
}

on_both_stores!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    s29_per_address_limit_over_a_real_socket
);

/// S29: the per-address limit over a real socket: wrong passwords for 32 different names at
/// once from one address reach the password check at most the burst's worth of times.
async fn s29_per_address_limit_over_a_real_socket(backend: Backend) {
    let f = Fixture::on(backend, |hub| hub).await;
    let addr = serve(no_refill(AppState::new(
        f.hub.clone(),
        HttpOptions::default(),
    )))
    .await;
    let client = client();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            post_login(&client, addr, &format!("name-{i}"), "wrong-password-x").await
        }));
    }
    let mut unauthorized = 0;
    for task in tasks {
        let status = task.await.unwrap();
        assert!(
            matches!(
                status,
                StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
            ),
            "{status}"
        );
        unauthorized += usize::from(status == StatusCode::UNAUTHORIZED);
    }
    assert!(unauthorized <= BURST, "{unauthorized} reached argon2");
    // A fresh name from the same address: refused by the address's limit.
    assert_eq!(
        post_login(&client, addr, "fresh-name", "wrong-password-x").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

on_both_stores!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    s29_a_name_spray_stays_bounded_and_the_api_answers
);

/// S29: a spray of 10,000 names from one address keeps the limiter's map bounded (no bucket is
/// made for a refused attempt), reaches argon2 at most the burst's worth of times, and the API
/// answers a list meanwhile.
async fn s29_a_name_spray_stays_bounded_and_the_api_answers(backend: Backend) {
    let f = Fixture::on(backend, |hub| hub).await;
    let state = no_refill(AppState::new(f.hub.clone(), HttpOptions::default()));
    // Buckets the hub holds already (none after a new limit; counted all the same).
    let before = state.hub().login_buckets();
    let addr = serve(state.clone()).await;
    let client = client();
    let mut sprayers = Vec::new();
    for worker in 0..8 {
        let client = client.clone();
        sprayers.push(tokio::spawn(async move {
            let mut unauthorized = 0;
            for i in 0..1_250 {
                let name = format!("spray-{worker}-{i}");
                let status = post_login(&client, addr, &name, "wrong-password-y").await;
                unauthorized += usize::from(status == StatusCode::UNAUTHORIZED);
            }
            unauthorized
        }));
    }
    // Meanwhile the API answers lists.
    for _ in 0..5 {
        let request = Request::get(format!("http://{addr}/api/v1/connections"))
            .header(header::AUTHORIZATION, format!("Bearer {}", f.admin_token))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
            .await
            .expect("the list stalled behind the spray")
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut unauthorized = 0;
    for sprayer in sprayers {
        unauthorized += sprayer.await.unwrap();
    }
    assert!(unauthorized <= BURST, "{unauthorized} reached argon2");
    // The names that reached the check (the hub's buckets), and the address (the server's).
    let kept = state.hub().login_buckets() - before + state.logins().len();
    assert!(kept <= BURST + 1, "{kept}");
}

on_both_stores!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    s29_concurrent_wrong_current_passwords_are_bounded
);

/// S29: wrong current passwords take their attempt before the check as well.
async fn s29_concurrent_wrong_current_passwords_are_bounded(backend: Backend) {
    let f = Fixture::on(backend, |hub| hub).await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let app = f.app.clone();
        let token = f.admin_token.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({
                "current_password": format!("not-it-{i}"),
                "new_password": "a-new-password-123",
            });
            let request = Request::builder()
                .method(Method::POST)
                .uri("/api/v1/users/me/password")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap();
            app.oneshot(request).await.unwrap().status()
        }));
    }
    let mut checked = 0;
    for task in tasks {
        let status = task.await.unwrap();
        assert!(
            matches!(
                status,
                StatusCode::BAD_REQUEST | StatusCode::TOO_MANY_REQUESTS
            ),
            "{status}"
        );
        checked += usize::from(status == StatusCode::BAD_REQUEST);
    }
    assert!(checked <= BURST, "{checked} reached argon2");
}

on_both_stores!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    the_login_burst_setting_takes_effect
);

/// The sign-in limit is a setting: the binary started with `--login-burst 2` refuses the third
/// wrong password at once (the default would allow ten), and `DATAHUB_LOGIN_BURST` works alike.
async fn the_login_burst_setting_takes_effect(backend: Backend) {
    for (args, env) in [(&["--login-burst", "2"][..], None), (&[][..], Some("2"))] {
        let dir = tempfile::tempdir().unwrap();
        // Each server its own store: a key file belongs to the store it first sealed.
        let cluster = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(pg_cluster().await),
        };
        let url = cluster.as_ref().map(|c| c.url(PG_STORE, PG_STORE));
        let mut all = vec!["--no-monitor"];
        if let Some(url) = &url {
            all.extend(["--store", url.as_str()]);
        }
        all.extend_from_slice(args);
        let mut server = match env {
            None => crate::e2e::Server::start(dir.path(), &all),
            Some(burst) => crate::e2e::Server::start_with_env(
                dir.path(),
                &all,
                &[("DATAHUB_LOGIN_BURST", burst)],
            ),
        };
        server.ready(None).await;
        let wrong = json!({"username": "admin", "password": "not-the-password-9"});
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let answer = server
                .send_json("POST", "/api/v1/auth/login", &[], &wrong)
                .await;
            statuses.push(answer.status);
        }
        assert_eq!(statuses, [401, 401, 429], "{args:?} {env:?}");
    }
}
