//! Shared fixture: the app over a Hub on a temporary SQLite store, a bootstrap admin with a
//! bearer token, users of other roles, and a `send` that records every answer (status, headers,
//! body) so a test can check that no secret ever left the server.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use datahub_core::audit::RequestInfo;
use datahub_core::crypto::Keyring;
use datahub_core::hub::Hub;
use datahub_core::rbac::{Principal, Role};
use datahub_core::secret::Password;
use datahub_core::store::SqliteStore;
use datahub_server::{AppState, HttpOptions, app};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

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
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// The app over a fresh store, the hub changed by `customize` (e.g. another dialer).
    pub async fn with(customize: impl FnOnce(Hub) -> Hub) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let hub = Hub::open(Arc::new(store), Keyring::parse(KEYRING).unwrap())
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
            _dir: dir,
        }
    }

    /// The app over a fresh store.
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
