//! Shared fixtures. `Fixture` (connections tests): the app over a Hub on a temporary store
//! (SQLite, or PostgreSQL on a kit cluster: [`Backend`]), a bootstrap admin with a bearer token,
//! users of other roles, and a `send` that records every answer so a test can check that no
//! secret ever left the server. `TestApp` (accounts, audit, policy and route tests): the same
//! app with accounts of each role on demand and helpers to read answers. [`on_both_stores!`]
//! runs one test body once per store.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use datahub_core::audit::RequestInfo;
use datahub_core::crypto::Keyring;
use datahub_core::hub::Hub;
use datahub_core::rbac::{Principal, Role};
use datahub_core::secret::Password;
use datahub_core::store::{PostgresOptions, PostgresStore, SqliteStore, Store};
use datahub_server::{AppState, HttpOptions, app};
use datahub_testkit::{PgCluster, User};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The store a fixture runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary folder.
    Sqlite,
    /// A PostgreSQL database on a fresh kit cluster of its own (stopped when the fixture drops).
    Postgres,
}

/// What keeps a fixture's store alive: its temporary folder, and its cluster on PostgreSQL.
pub struct StoreGuard {
    _dir: tempfile::TempDir,
    _cluster: Option<PgCluster>,
}

impl Backend {
    /// A fresh, empty store of this kind and what keeps it alive.
    pub async fn store(self) -> (Arc<dyn Store>, StoreGuard) {
        let dir = tempfile::tempdir().unwrap();
        match self {
            Self::Sqlite => {
                let store = SqliteStore::open(&dir.path().join("data")).unwrap();
                let guard = StoreGuard {
                    _dir: dir,
                    _cluster: None,
                };
                (Arc::new(store), guard)
            }
            Self::Postgres => {
                let cluster = pg_cluster().await;
                let config = cluster.config(PG_STORE, PG_STORE);
                let store = PostgresStore::connect(config, PostgresOptions::default())
                    .await
                    .unwrap();
                let guard = StoreGuard {
                    _dir: dir,
                    _cluster: Some(cluster),
                };
                (Arc::new(store), guard)
            }
        }
    }
}

/// The user owning the database of the same name on a [`pg_cluster`].
pub const PG_STORE: &str = "datahub";

/// A fresh kit cluster with a SCRAM user [`PG_STORE`] owning the database [`PG_STORE`]; the
/// served binary takes it as `--store` [`PgCluster::url`]`(PG_STORE, PG_STORE)`.
pub async fn pg_cluster() -> PgCluster {
    tokio::task::spawn_blocking(|| {
        PgCluster::builder()
            // The store's pool (16) and its event listener, with room to spare.
            .max_connections(40)
            .user(User::new(PG_STORE).password("fixture-store-pw-Zt58"))
            .database(PG_STORE, PG_STORE)
            .start()
            .unwrap()
    })
    .await
    .unwrap()
}

/// Runs an `async fn NAME(backend: Backend)` as two tests, `NAME::on_sqlite` and
/// `NAME::on_postgres`, each under the test attribute given (e.g. a multi-threaded runtime).
macro_rules! on_both_stores {
    ($(#[$attr:meta])* $name:ident) => {
        mod $name {
            $(#[$attr])*
            async fn on_sqlite() {
                super::$name($crate::common::Backend::Sqlite).await;
            }

            $(#[$attr])*
            async fn on_postgres() {
                super::$name($crate::common::Backend::Postgres).await;
            }
        }
    };
}
pub(crate) use on_both_stores;

/// A fixed test keyring.
pub const KEYRING: &str = "k1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
/// The bootstrap admin's password.
pub const ADMIN_PW: &str = "common-test-admin-pw-Qx72";
/// The password of every other test user.
pub const USER_PW: &str = "common-test-user-pw-Lm39";

/// One answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

pub struct Fixture {
    pub app: Router,
    pub hub: Hub,
    pub admin: Principal,
    pub admin_token: String,
    /// Every answer's headers and body, in order, except those to paths in `unrecorded`.
    pub transcript: Mutex<Vec<String>>,
    /// The store under the hub, for reading what a test cannot see through the API.
    pub store: Arc<dyn Store>,
    _store: StoreGuard,
}

impl Fixture {
    /// The app over a fresh SQLite store, the hub changed by `customize` (e.g. another dialer).
    pub async fn with(customize: impl FnOnce(Hub) -> Hub) -> Self {
        Self::on(Backend::Sqlite, customize).await
    }

    /// The app over a fresh store of `backend`, the hub changed by `customize`.
    pub async fn on(backend: Backend, customize: impl FnOnce(Hub) -> Hub) -> Self {
        let (store, guard) = backend.store().await;
        let hub = Hub::open(store.clone(), Keyring::parse(KEYRING).unwrap())
            .await
            .unwrap();
        let hub = customize(hub);
        hub.bootstrap_admin(Some(ADMIN_PW.into())).await.unwrap();
        let admin = hub
            .login("admin", Password::from(ADMIN_PW), &RequestInfo::default())
            .await
            .unwrap();
        let admin_token = token(&hub, &admin).await;
        Self {
            app: app(AppState::new(hub.clone(), HttpOptions::default())),
            hub,
            admin,
            admin_token,
            transcript: Mutex::new(Vec::new()),
            store,
            _store: guard,
        }
    }

    /// The app over a fresh SQLite store.
    pub async fn new() -> Self {
        Self::with(|hub| hub).await
    }

    /// A new user with `role`, and a bearer token of theirs.
    pub async fn user(&self, name: &str, role: Role) -> (String, String) {
        let user = self
            .hub
            .create_user(&self.admin, name, Password::from(USER_PW), role)
            .await
            .unwrap();
        let principal = self
            .hub
            .login(name, Password::from(USER_PW), &RequestInfo::default())
            .await
            .unwrap();
        (user.id.to_string(), token(&self.hub, &principal).await)
    }

    /// Sends a request with a bearer token (if any), extra headers and a JSON body (if any).
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        self.send_raw(request).await
    }

    /// Sends a prepared request and records the answer.
    pub async fn send_raw(&self, request: Request<Body>) -> Answer {
        let path = request.uri().path().to_owned();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !path.ends_with("/reveal") {
            let mut record = format!("{status} {path}\n");
            for (name, value) in &headers {
                record.push_str(&format!(
                    "{name}: {}\n",
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
            record.push_str(&text);
            self.transcript.lock().unwrap().push(record);
        }
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    /// Sends as the admin.
    pub async fn admin(&self, method: Method, uri: &str, body: Option<&Value>) -> Answer {
        self.send(method, uri, Some(&self.admin_token), &[], body)
            .await
    }

    /// The `ETag` of the grants on the connection at `connection` (its URI), read as the admin:
    /// the connection's version, `"<version>"`, which a change of the grants names in `If-Match`.
    pub async fn grants_etag(&self, connection: &str) -> String {
        let r = self
            .admin(Method::GET, &format!("{connection}/grants"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.headers[header::ETAG].to_str().unwrap().to_owned()
    }

    /// Replaces the grants on the connection at `connection` (its URI) with `body` (`{"grants":
    /// [...]}`) as the admin, naming in `If-Match` the version read just before.
    pub async fn put_grants(&self, connection: &str, body: &Value) -> Answer {
        let etag = self.grants_etag(connection).await;
        self.send(
            Method::PUT,
            &format!("{connection}/grants"),
            Some(&self.admin_token),
            &[("if-match", &etag)],
            Some(body),
        )
        .await
    }

    /// Asserts that no recorded answer (every one but reveals) contains `secret`.
    pub fn assert_never_answered(&self, secret: &str) {
        for record in self.transcript.lock().unwrap().iter() {
            assert!(
                !record.contains(secret),
                "a secret left the server:\n{record}"
            );
        }
    }
}

async fn token(hub: &Hub, principal: &Principal) -> String {
    hub.create_token(principal, "test", None, false)
        .await
        .unwrap()
        .token
        .expose_secret()
        .to_owned()
}

/// The test keyring: one key, `k1`.
pub const KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The bootstrap admin's password.
pub const ADMIN_PASSWORD: &str = "admin-password-for-the-tests";
/// The password of every account made by [`TestApp::account`].
pub const USER_PASSWORD: &str = "user-password-for-the-tests";

/// The app and what a test needs around it.
pub struct TestApp {
    pub app: Router,
    pub hub: Hub,
    /// A read-write bearer token of the bootstrap admin.
    pub admin_token: String,
    /// The store under the hub, for reading what a test cannot see through the API.
    pub store: Arc<dyn Store>,
    _store: StoreGuard,
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// The body as text.
    pub text: String,
}

/// An account made for a test.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub username: String,
    /// A read-write bearer token.
    pub token: String,
}

impl TestApp {
    /// The app over a fresh SQLite store.
    pub async fn new() -> Self {
        Self::on(Backend::Sqlite).await
    }

    /// The app over a fresh store of `backend`.
    pub async fn on(backend: Backend) -> Self {
        let (store, guard) = backend.store().await;
        let hub = Hub::open(store.clone(), Keyring::parse(KEY).unwrap())
            .await
            .unwrap();
        hub.bootstrap_admin(Some(Password::from(ADMIN_PASSWORD)))
            .await
            .unwrap()
            .unwrap();
        let app = datahub_server::app(AppState::new(hub.clone(), HttpOptions::default()));
        let mut this = Self {
            app,
            hub,
            admin_token: String::new(),
            store,
            _store: guard,
        };
        this.admin_token = this.token_for("admin", ADMIN_PASSWORD, false).await;
        this
    }

    /// The principal of a password sign-in.
    pub async fn login(&self, username: &str, password: &str) -> Principal {
        self.hub
            .login(username, Password::from(password), &RequestInfo::default())
            .await
            .unwrap()
    }

    /// The bootstrap admin, signed in.
    pub async fn admin(&self) -> Principal {
        self.login("admin", ADMIN_PASSWORD).await
    }

    /// A new bearer token of `username`.
    pub async fn token_for(&self, username: &str, password: &str, read_only: bool) -> String {
        let principal = self.login(username, password).await;
        let new = self
            .hub
            .create_token(&principal, "test", None, read_only)
            .await
            .unwrap();
        new.token.expose_secret().to_owned()
    }

    /// A new account with `role` (password [`USER_PASSWORD`]) and a bearer token.
    pub async fn account(&self, username: &str, role: Role) -> Account {
        let admin = self.admin().await;
        let user = self
            .hub
            .create_user(&admin, username, Password::from(USER_PASSWORD), role)
            .await
            .unwrap();
        let token = self.token_for(username, USER_PASSWORD, false).await;
        Account {
            id: user.id.to_string(),
            username: username.to_owned(),
            token,
        }
    }

    /// How many audit rows the store holds.
    pub async fn audit_count(&self) -> u64 {
        let query = datahub_core::model::AuditQuery {
            actor: None,
            action: None,
            target: None,
            since: None,
            until: None,
            page: 1,
            per_page: 1,
        };
        self.store.audit_page(&query).await.unwrap().total
    }

    /// Sends `request` through the app.
    pub async fn request(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// Sends `body` as raw bytes with `content_type` (if any) and `token` as bearer (if any).
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        self.request(builder.body(body.into()).unwrap()).await
    }

    /// Sends `body` (if any) as JSON, with `token` as bearer (if any).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        match body {
            Some(json) => {
                self.send_raw(
                    method,
                    path,
                    token,
                    Some("application/json"),
                    json.to_string(),
                )
                .await
            }
            None => {
                self.send_raw(method, path, token, None, Body::empty())
                    .await
            }
        }
    }
}

impl Reply {
    /// Asserts the API's error shape with `status`, naming `field` when given; returns the code.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, field: Option<&str>) -> &str {
        assert_eq!(self.status, status, "{}", self.text);
        let error = &self.body["error"];
        assert!(error["code"].is_string(), "no error code: {}", self.text);
        assert!(error["message"].is_string(), "no message: {}", self.text);
        if let Some(field) = field {
            assert_eq!(error["field"], field, "{}", self.text);
        }
        error["code"].as_str().unwrap_or_default()
    }

    /// Asserts `status`, printing the body otherwise.
    #[track_caller]
    pub fn assert_status(&self, status: StatusCode) -> &Self {
        assert_eq!(self.status, status, "{}", self.text);
        self
    }

    /// Asserts that `secret` appears in neither the body nor any header.
    #[track_caller]
    pub fn assert_hides(&self, secret: &str) {
        assert!(!self.text.contains(secret), "secret in body: {}", self.text);
        for (name, value) in &self.headers {
            assert!(
                !String::from_utf8_lossy(value.as_bytes()).contains(secret),
                "secret in header {name}"
            );
        }
    }
}
