//! End-to-end tests of the web UI in a real browser: Debian's `chromium` driven through
//! `chromium-driver` (WebDriver) with `fantoccini`, against the app served on a loopback port
//! over a temporary SQLite store, with a fast monitor, and kit PostgreSQL clusters as targets.
//!
//! Harness:
//! - [`Site`] (this file): the hub, the app on `127.0.0.1:<free port>` (as `main` serves it,
//!   with the client address), a monitor with `fall = rise = 1` (one check changes a status), the
//!   bootstrap admin and an `api` helper that speaks to the public API with the admin's token.
//! - [`Target`] (this file): a kit cluster with TLS (the kit's CA), one SCRAM user and its
//!   database, and the JSON of a connection to it.
//! - [`browser`]: one chromedriver per test ([`Driver`], killed with its browsers when dropped,
//!   even when the test fails), sessions ([`Browser`]) with a fresh profile, the console captured,
//!   finders by accessible name, polling waits, keyboard actions, CDP colour scheme, screenshots.
//! - [`axe`]: axe-core fetched at test time from the npm registry (integrity-checked, cached
//!   under the target folder, never committed) and run on the page.
//!
//! Chromium and chromedriver missing is a failure with a clear message, never a skip: the test
//! command installs them (`./scripts/test`).

mod axe;
mod browser;

mod conflict;
mod create;
mod keyboard;
mod live;
mod pages;
mod reload;
mod secrets;
mod sign_in;
mod viewer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use datahub_core::audit::RequestInfo;
use datahub_core::crypto::Keyring;
use datahub_core::hub::Hub;
use datahub_core::monitor::{HysteresisConfig, MonitorConfig};
use datahub_core::rbac::{Principal, Role};
use datahub_core::secret::Password;
use datahub_core::store::SqliteStore;
use datahub_server::{AppState, HttpOptions};
use datahub_testkit::{PgCluster, ServerCert, User};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

pub(crate) use browser::{Browser, Driver, Scheme};

use crate::fixture::{ADMIN_PW, K1, USER_PW, token};

/// How long a page may take to show what a test waits for (API answers, navigation).
pub(crate) const WAIT: Duration = Duration::from_secs(15);
/// How long the monitor may take to report a change: the shortest interval (10 s) plus its
/// jitter (10 %), a check, and the event's way to the page.
pub(crate) const MONITOR_WAIT: Duration = Duration::from_secs(35);

/// The cargo target folder: `CARGO_TARGET_DIR` when set, else `<workspace>/target`.
pub(crate) fn target_dir() -> PathBuf {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// The app served on a loopback port, over a fresh store, with a fast monitor.
pub(crate) struct Site {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub hub: Hub,
    pub state: AppState,
    pub admin: Principal,
    admin_token: String,
    server: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

impl Drop for Site {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Site {
    /// Starts the app with the bootstrap admin (`admin`, [`ADMIN_PW`]) and a monitor whose
    /// one failed check makes a connection `down` and one success makes it `healthy` again.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
        let hub = Hub::open(store, Keyring::parse(K1).unwrap()).await.unwrap();
        hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
            .await
            .unwrap()
            .unwrap();
        let admin = hub
            .login("admin", Password::from(ADMIN_PW), &RequestInfo::default())
            .await
            .unwrap();
        let admin_token = token(&hub, &admin).await;
        let monitor = hub.start_monitor(MonitorConfig {
            hysteresis: HysteresisConfig::new(1, 1).unwrap(),
            ..MonitorConfig::default()
        });
        let state = AppState::new(hub.clone(), HttpOptions::default()).with_monitor(monitor);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service =
            datahub_server::app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move {
            axum::serve(listener, service).await.unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            hub,
            state,
            admin,
            admin_token,
            server,
            _dir: dir,
        }
    }

    /// A new account with `role` and the password [`USER_PW`]; returns its id.
    pub async fn user(&self, name: &str, role: Role) -> String {
        self.hub
            .create_user(&self.admin, name, Password::from(USER_PW), role)
            .await
            .unwrap()
            .id
            .to_string()
    }

    /// Sends a request to the public API as the admin (bearer token); `if_match` is a version.
    /// Returns the status, headers and JSON body (`Null` when empty).
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<u64>,
    ) -> (StatusCode, HeaderMap, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.admin_token),
            );
        if let Some(version) = if_match {
            request = request.header(header::IF_MATCH, format!("\"{version}\""));
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = datahub_server::app(self.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Saves `connection` (the API's JSON) as the admin; returns its id.
    pub async fn create(&self, connection: &Value) -> String {
        let (status, _, body) = self
            .api(Method::POST, "/connections", Some(connection), None)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// The connection `id` as the API answers it to the admin.
    pub async fn connection(&self, id: &str) -> Value {
        let (status, _, body) = self
            .api(Method::GET, &format!("/connections/{id}"), None, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Every connection the admin sees (first page of 100).
    pub async fn connections(&self) -> Vec<Value> {
        let (status, _, body) = self
            .api(Method::GET, "/connections?per_page=100", None, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().unwrap().clone()
    }

    /// Gives `user` (an id) the grant `level` on connection `id`.
    pub async fn grant(&self, id: &str, user: &str, level: &str) {
        let path = format!("/connections/{id}/grants");
        let version = self.connection(id).await["version"].as_u64().unwrap();
        let body = json!({"grants": [{"user_id": user, "level": level}]});
        let (status, _, answer) = self
            .api(Method::PUT, &path, Some(&body), Some(version))
            .await;
        assert!(status.is_success(), "{status} {answer}");
    }

    /// Waits until the API reports connection `id` with health `status`.
    pub async fn wait_health(&self, id: &str, status: &str) {
        let deadline = tokio::time::Instant::now() + MONITOR_WAIT;
        loop {
            let now = self.connection(id).await;
            if now["health"]["status"] == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "connection {id} not {status} in time: {}",
                now["health"]
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A kit cluster with TLS (certificate of the kit's CA for `localhost`/`127.0.0.1`), a SCRAM
/// user `app` with `password` and its database `app`.
pub(crate) struct Target {
    pub cluster: PgCluster,
    pub password: String,
}

impl Target {
    pub async fn start(password: &str) -> Self {
        let owned = password.to_owned();
        let cluster = tokio::task::spawn_blocking(move || {
            PgCluster::builder()
                .tls(ServerCert::Valid)
                .user(User::new("app").password(&owned))
                .database("app", "app")
                .start()
                .unwrap()
        })
        .await
        .unwrap();
        Self {
            cluster,
            password: password.to_owned(),
        }
    }

    pub fn port(&self) -> u16 {
        self.cluster.port()
    }

    /// The kit's CA certificate (PEM), which `verify-full` needs.
    pub fn ca_pem(&self) -> String {
        self.cluster.ca_pem().unwrap().to_owned()
    }

    /// The URL a user pastes: `postgresql://app:<password>@127.0.0.1:<port>/app?sslmode=…`.
    pub fn url(&self, password: &str) -> String {
        format!(
            "postgresql://app:{password}@127.0.0.1:{}/app?sslmode=verify-full",
            self.port()
        )
    }

    /// The API's JSON of a connection named `name` to this cluster, checked every 10 s.
    pub fn connection(&self, name: &str) -> Value {
        json!({
            "name": name,
            "host": "127.0.0.1",
            "port": self.port(),
            "database": "app",
            "username": "app",
            "password": self.password,
            "tls": {"mode": "verify-full", "ca_cert_pem": self.ca_pem()},
            "monitoring": {"enabled": true, "interval_s": 10},
        })
    }

    /// Stops the cluster (keeping its port and data).
    pub async fn stop(&mut self) {
        tokio::task::block_in_place(|| self.cluster.stop().unwrap());
    }

    /// Starts it again.
    pub async fn restart(&mut self) {
        tokio::task::block_in_place(|| self.cluster.start().unwrap());
    }
}

/// A connection's JSON to a closed loopback port (its checks fail at once); for tests that
/// never need the target to answer.
pub(crate) fn dead_connection(name: &str) -> Value {
    json!({
        "name": name,
        "host": "127.0.0.1",
        "port": 1,
        "database": "app",
        "username": "app",
        "password": "dead-target-password-1",
        "tls": {"mode": "require"},
        "monitoring": {"enabled": true, "interval_s": 3600},
    })
}
