//! Fixture of the event, metrics and end-to-end tests: a hub on a temporary store (SQLite, or
//! PostgreSQL on a kit cluster), an admin with a token, users, connections, and `get`/`send`
//! helpers.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode, header};
use datahub_core::ConnectionId;
use datahub_core::audit::RequestInfo;
use datahub_core::crypto::Keyring;
use datahub_core::hub::Hub;
use datahub_core::model::ConnectionDraft;
use datahub_core::rbac::{Principal, Role};
use datahub_core::secret::Password;
use datahub_server::{AppState, HttpOptions, app};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::common::{Backend, StoreGuard};

/// A fixed test keyring.
pub const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The bootstrap admin's password.
pub const ADMIN_PW: &str = "admin-password-1234";
/// Every other test user's password.
pub const USER_PW: &str = "user-password-1234";

pub struct Fixture {
    pub hub: Hub,
    pub state: AppState,
    pub admin: Principal,
    pub admin_token: String,
    pub _store: StoreGuard,
}

impl Fixture {
    /// Default options, no monitor, no metrics.
    pub async fn new() -> Self {
        Self::with(HttpOptions::default(), |state, _| state).await
    }

    /// `options`, and the state as `build` completes it (a monitor, metrics, ...), on SQLite.
    pub async fn with(
        options: HttpOptions,
        build: impl FnOnce(AppState, &Hub) -> AppState,
    ) -> Self {
        Self::on(Backend::Sqlite, options, build).await
    }

    /// As [`Fixture::with`], on a fresh store of `backend`.
    pub async fn on(
        backend: Backend,
        options: HttpOptions,
        build: impl FnOnce(AppState, &Hub) -> AppState,
    ) -> Self {
        let (store, guard) = backend.store().await;
        let hub = Hub::open(store, Keyring::parse(K1).unwrap()).await.unwrap();
        hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
            .await
            .unwrap()
            .unwrap();
        let admin = login(&hub, "admin", ADMIN_PW).await;
        let admin_token = token(&hub, &admin).await;
        let state = build(AppState::new(hub.clone(), options), &hub);
        Self {
            hub,
            state,
            admin,
            admin_token,
            _store: guard,
        }
    }

    /// The app over this fixture's state.
    pub fn app(&self) -> Router {
        app(self.state.clone())
    }

    /// A new user with `role`, signed in, and an API token of theirs.
    pub async fn user(&self, name: &str, role: Role) -> (Principal, String) {
        self.hub
            .create_user(&self.admin, name, Password::from(USER_PW), role)
            .await
            .unwrap();
        let principal = login(&self.hub, name, USER_PW).await;
        let token = token(&self.hub, &principal).await;
        (principal, token)
    }

    /// A saved connection to a closed loopback port, owned by `owner`.
    pub async fn connection(&self, owner: &Principal, name: &str) -> ConnectionId {
        self.hub
            .create_connection(owner, draft(name))
            .await
            .unwrap()
            .id
    }
}

/// A connection draft to 127.0.0.1:1 (nothing listens: a check is refused at once).
pub fn draft(name: &str) -> ConnectionDraft {
    ConnectionDraft {
        name: name.into(),
        host: "127.0.0.1".into(),
        port: Some(1),
        database: "app".into(),
        username: "app".into(),
        password: Some(Password::from("connection-password-1")),
        ..ConnectionDraft::default()
    }
}

pub async fn login(hub: &Hub, user: &str, password: &str) -> Principal {
    hub.login(user, Password::from(password), &RequestInfo::default())
        .await
        .unwrap()
}

/// A new API token of `principal`, as the bearer text.
pub async fn token(hub: &Hub, principal: &Principal) -> String {
    hub.create_token(principal, "tests", None, false)
        .await
        .unwrap()
        .token
        .expose_secret()
        .to_owned()
}

/// A GET of `path`, with a bearer token when given.
pub fn get(path: &str, token: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.body(Body::empty()).unwrap()
}

/// Sends `request` through `app` and reads the whole answer.
pub async fn send(app: Router, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}
