//! `GET /api/v1/events` through `app()`: the JSON of each event, filtering to what the caller
//! may view (S19: absent from events), deletions only for those who could view the connection,
//! status changes from a running monitor, resync after lagging, keep-alives beyond the request
//! timeout, and the stream ending at shutdown or when the account is disabled.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use datahub_core::ConnectionId;
use datahub_core::audit::RequestInfo;
use datahub_core::auth::SessionConfig;
use datahub_core::hub::UserUpdate;
use datahub_core::model::{ConnectionPatch, MonitoringPatch};
use datahub_core::monitor::{MonitorConfig, MonitorEvent};
use datahub_core::rbac::{Grant, GrantLevel, Grantee, Principal, Role};
use datahub_core::secret::Password;
use datahub_server::auth::SESSION_COOKIE;
use datahub_server::{AppState, HttpOptions};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tower::ServiceExt;

use crate::fixture::{Fixture, USER_PW, get, send};

const WAIT: Duration = Duration::from_secs(15);

/// One open event stream, read frame by frame.
struct Stream {
    body: Body,
    buf: String,
}

#[derive(Debug, PartialEq)]
enum Frame {
    Data(Value),
    Comment,
}

impl Stream {
    /// Opens the stream as the holder of `token`.
    async fn open(f: &Fixture, token: &str) -> Self {
        Self::open_with(f, get("/api/v1/events", Some(token))).await
    }

    /// Opens the stream signed in by the session cookie `session`.
    async fn open_by_cookie(f: &Fixture, session: &str) -> Self {
        let request = Request::get("/api/v1/events")
            .header(header::COOKIE, format!("{SESSION_COOKIE}={session}"))
            .body(Body::empty())
            .unwrap();
        Self::open_with(f, request).await
    }

    async fn open_with(f: &Fixture, request: Request<Body>) -> Self {
        let response = f.app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        assert!(response.headers().contains_key("x-request-id"));
        Self {
            body: response.into_body(),
            buf: String::new(),
        }
    }

    /// The next frame; `None` when the stream ended. Panics after `wait`.
    async fn frame(&mut self, wait: Duration) -> Option<Frame> {
        tokio::time::timeout(wait, async {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let block: String = self.buf.drain(..end + 2).collect();
                    let data: Vec<&str> = block
                        .lines()
                        .filter_map(|l| l.strip_prefix("data:"))
                        .map(str::trim_start)
                        .collect();
                    if data.is_empty() {
                        assert!(block.starts_with(':'), "{block:?}");
                        return Some(Frame::Comment);
                    }
                    assert_eq!(data.len(), 1, "one data line per event: {block:?}");
                    return Some(Frame::Data(serde_json::from_str(data[0]).unwrap()));
                }
                match self.body.frame().await {
                    Some(frame) => {
                        if let Ok(bytes) = frame.unwrap().into_data() {
                            self.buf.push_str(std::str::from_utf8(&bytes).unwrap());
                        }
                    }
                    None => return None,
                }
            }
        })
        .await
        .expect("no frame in time")
    }

    /// The next event, skipping keep-alives.
    async fn event(&mut self) -> Value {
        loop {
            match self.frame(WAIT).await {
                Some(Frame::Data(v)) => return v,
                Some(Frame::Comment) => continue,
                None => panic!("the stream ended"),
            }
        }
    }

    /// Whether the stream ends within `wait` (keep-alives skipped).
    async fn ends(&mut self, wait: Duration) -> bool {
        loop {
            match self.frame(wait).await {
                None => return true,
                Some(Frame::Comment) => continue,
                Some(Frame::Data(v)) => panic!("unexpected event {v}"),
            }
        }
    }
}

fn changed(id: ConnectionId) -> Value {
    json!({"type": "connection_changed", "id": id.to_string()})
}

fn deleted(id: ConnectionId) -> Value {
    json!({"type": "connection_deleted", "id": id.to_string()})
}

/// Deletes the connection through the hub, which tells the monitor (or its own channel).
async fn delete(f: &Fixture, by: &Principal, id: ConnectionId) {
    let version = f.hub.connection(&f.admin, id).await.unwrap().version;
    f.hub.delete_connection(by, id, version).await.unwrap();
}

/// Edits the connection (as the admin) through the hub, which tells the change.
async fn edit(f: &Fixture, id: ConnectionId, patch: ConnectionPatch) {
    let version = f.hub.connection(&f.admin, id).await.unwrap().version;
    f.hub
        .update_connection(&f.admin, id, version, patch)
        .await
        .unwrap();
}

/// Edits the connection's description: one `connection_changed` event.
async fn touch(f: &Fixture, id: ConnectionId) {
    let version = f.hub.connection(&f.admin, id).await.unwrap().version;
    let patch = ConnectionPatch {
        description: Some(Some(format!("edit {version}"))),
        ..ConnectionPatch::default()
    };
    edit(f, id, patch).await;
}

async fn grant_view(f: &Fixture, id: ConnectionId, to: &Principal) {
    let grant = Grant {
        grantee: Grantee::User(to.user()),
        level: GrantLevel::View,
    };
    let version = f.hub.grants(&f.admin, id).await.unwrap().version;
    f.hub
        .set_grants(&f.admin, id, version, &[grant])
        .await
        .unwrap();
}

#[tokio::test]
async fn anonymous_and_bad_tokens_get_401_in_the_error_shape() {
    let f = Fixture::new().await;
    for token in [None, Some("dh_not-a-token")] {
        let (status, _, body) = send(f.app(), get("/api/v1/events", token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "unauthenticated");
        assert!(body["error"]["request_id"].is_string());
    }
}

#[tokio::test]
async fn events_reach_only_those_who_may_view_and_deletions_only_those_who_could() {
    let f = Fixture::new().await;
    let (editor, _) = f.user("editor", Role::Editor).await;
    let (viewer, viewer_token) = f.user("viewer", Role::Viewer).await;
    let (outsider, outsider_token) = f.user("outsider", Role::Editor).await;
    let shown = f.connection(&editor, "shown").await;
    let hidden = f.connection(&editor, "hidden").await;
    let seeded = f.connection(&editor, "seeded").await;
    let revoked = f.connection(&editor, "revoked").await;
    let own = f.connection(&outsider, "outsiders-own").await;
    grant_view(&f, shown, &viewer).await;
    grant_view(&f, seeded, &viewer).await;
    grant_view(&f, revoked, &viewer).await;

    let mut admin = Stream::open(&f, &f.admin_token).await;
    let mut as_viewer = Stream::open(&f, &viewer_token).await;
    let mut as_outsider = Stream::open(&f, &outsider_token).await;

    // Each stream filters when it reads an event, against the state of that moment: read
    // after each step, as a live client does. An event a stream must not get is proven absent
    // by the next one it gets.
    // A connection the viewer may not see: neither its change nor its deletion.
    touch(&f, hidden).await;
    assert_eq!(admin.event().await, changed(hidden));
    delete(&f, &editor, hidden).await;
    assert_eq!(admin.event().await, deleted(hidden));
    // One it may see.
    touch(&f, shown).await;
    assert_eq!(admin.event().await, changed(shown));
    assert_eq!(as_viewer.event().await, changed(shown));
    // Visible when the stream opened, deleted without any event before: still told.
    delete(&f, &editor, seeded).await;
    assert_eq!(admin.event().await, deleted(seeded));
    assert_eq!(as_viewer.event().await, deleted(seeded));
    // Access revoked: one last "changed" (a reload finds it gone), then nothing more, not
    // even its deletion. The hub tells the grants' change, then an edit.
    let version = f.hub.grants(&f.admin, revoked).await.unwrap().version;
    f.hub
        .set_grants(&f.admin, revoked, version, &[])
        .await
        .unwrap();
    touch(&f, revoked).await;
    assert_eq!(admin.event().await, changed(revoked));
    assert_eq!(admin.event().await, changed(revoked));
    delete(&f, &editor, revoked).await;
    assert_eq!(admin.event().await, deleted(revoked));
    delete(&f, &editor, shown).await;
    assert_eq!(admin.event().await, deleted(shown));
    assert_eq!(as_viewer.event().await, changed(revoked));
    assert_eq!(as_viewer.event().await, deleted(shown));
    // Everything before was filtered out: the outsider's first event is its own connection's.
    touch(&f, own).await;
    assert_eq!(admin.event().await, changed(own));
    assert_eq!(as_outsider.event().await, changed(own));
    // And nothing else is pending for the viewer.
    f.state.shutdown().cancel();
    assert!(as_viewer.ends(WAIT).await);
}

#[tokio::test]
async fn status_changes_come_from_the_monitor_with_from_to_and_at() {
    let f = Fixture::with(HttpOptions::default(), |state, hub| {
        state.with_monitor(hub.start_monitor(MonitorConfig::default()))
    })
    .await;
    let mut stream = Stream::open(&f, &f.admin_token).await;
    // The hub tells its monitor of the new connection.
    let id = f.connection(&f.admin, "refused").await;
    assert_eq!(stream.event().await, changed(id));
    // Saved while the monitor runs: checked within 5 s; nothing listens on port 1, so the
    // first failure makes it degraded.
    let event = tokio::time::timeout(Duration::from_secs(10), stream.event())
        .await
        .unwrap();
    assert_eq!(event["type"], "status_changed");
    assert_eq!(event["id"], id.to_string());
    assert_eq!(event["from"], "unknown");
    assert_eq!(event["to"], "degraded");
    let at = event["at"].as_str().unwrap();
    time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(at.ends_with('Z'), "{at}");
    assert_eq!(event.as_object().unwrap().len(), 5, "{event}");
    // Then the check itself, at the same time.
    let checked = stream.event().await;
    let latency = checked["latency_ms"].as_u64().unwrap();
    assert_eq!(
        checked,
        json!({"type": "checked", "id": id.to_string(), "status": "degraded",
               "latency_ms": latency, "error_kind": "connection_refused", "at": at})
    );

    delete(&f, &f.admin, id).await;
    assert_eq!(stream.event().await, deleted(id));
    f.state.shutdown().cancel();
    assert!(stream.ends(WAIT).await);
    f.state.shutdown_monitor().await;
}

#[tokio::test]
async fn a_stream_that_falls_behind_is_told_to_resync() {
    let f = Fixture::with(HttpOptions::default(), |state, hub| {
        let config = MonitorConfig {
            event_capacity: 2,
            ..MonitorConfig::default()
        };
        state.with_monitor(hub.start_monitor(config))
    })
    .await;
    let mut stream = Stream::open(&f, &f.admin_token).await;
    let mut probe = f.state.subscribe();
    // Six changes: the creation and five edits (monitoring off, so no check adds events).
    let mut busy = crate::fixture::draft("busy");
    busy.monitoring.enabled = Some(false);
    let id = f.hub.create_connection(&f.admin, busy).await.unwrap().id;
    for _ in 0..5 {
        touch(&f, id).await;
    }
    // Wait until all six were published (the probe lags as the stream does).
    let mut seen = 0u64;
    while seen < 6 {
        match tokio::time::timeout(WAIT, probe.recv()).await.unwrap() {
            Ok(MonitorEvent::ConnectionChanged { .. }) => seen += 1,
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => seen += n,
            Err(RecvError::Closed) => panic!("closed"),
        }
    }
    assert_eq!(stream.event().await, json!({"type": "resync"}));
    // Then the stream goes on: first the two events the channel kept (read before the next
    // change, which the hub publishes while the edit is still running, would overflow them),
    // then a new one.
    for _ in 0..2 {
        assert_eq!(stream.event().await, changed(id));
    }
    touch(&f, id).await;
    loop {
        let event = stream.event().await;
        if event == changed(id) {
            break;
        }
        assert!(
            event["type"] == "connection_changed"
                || event["type"] == "status_changed"
                || event["type"] == "checked",
            "{event}"
        );
    }
    f.state.shutdown().cancel();
    assert!(stream.ends(WAIT).await);
    f.state.shutdown_monitor().await;
}

/// Every check the monitor records reaches the viewers of its connection as `checked`, and
/// nobody else.
#[tokio::test]
async fn checks_reach_a_viewer_with_a_grant_and_no_one_without() {
    let f = Fixture::with(HttpOptions::default(), |state, hub| {
        state.with_monitor(hub.start_monitor(MonitorConfig::default()))
    })
    .await;
    let (granted, granted_token) = f.user("granted", Role::Viewer).await;
    let (other, other_token) = f.user("other", Role::Viewer).await;
    // Not monitored until the streams are open, so its first check comes after.
    let mut watched = crate::fixture::draft("watched");
    watched.monitoring.enabled = Some(false);
    let id = f.hub.create_connection(&f.admin, watched).await.unwrap().id;
    grant_view(&f, id, &granted).await;
    // A connection the other viewer may see, never checked (monitoring off): its change is
    // the marker proving that nothing about `id` came before it.
    let mut quiet = crate::fixture::draft("quiet");
    quiet.monitoring.enabled = Some(false);
    let marker = f.hub.create_connection(&f.admin, quiet).await.unwrap().id;
    grant_view(&f, marker, &other).await;

    let mut as_granted = Stream::open(&f, &granted_token).await;
    let mut as_other = Stream::open(&f, &other_token).await;
    // Monitoring turned on while the monitor runs: checked within 5 s (refused at once on
    // port 1).
    let on = ConnectionPatch {
        monitoring: MonitoringPatch {
            enabled: Some(true),
            ..MonitoringPatch::default()
        },
        ..ConnectionPatch::default()
    };
    edit(&f, id, on).await;
    assert_eq!(as_granted.event().await, changed(id));
    let status = tokio::time::timeout(Duration::from_secs(10), as_granted.event())
        .await
        .unwrap();
    assert_eq!(status["type"], "status_changed", "{status}");
    let checked = as_granted.event().await;
    assert_eq!(checked["type"], "checked", "{checked}");
    assert_eq!(checked["id"], id.to_string());
    assert_eq!(checked["status"], "degraded");
    assert_eq!(checked["error_kind"], "connection_refused");
    assert!(checked["latency_ms"].is_u64(), "{checked}");
    assert_eq!(checked["at"], status["at"]);

    // The other viewer's first event is the marker's: the check of `id` was filtered out.
    touch(&f, marker).await;
    assert_eq!(as_other.event().await, changed(marker));
    f.state.shutdown().cancel();
    assert!(as_other.ends(WAIT).await);
    f.state.shutdown_monitor().await;
}

#[tokio::test]
async fn keep_alives_flow_past_the_request_timeout_and_shutdown_ends_the_stream() {
    let options = HttpOptions {
        keep_alive: Duration::from_millis(50),
        request_timeout: Duration::from_millis(100),
        ..HttpOptions::default()
    };
    let f = Fixture::with(options, |state, _| state).await;
    let mut stream = Stream::open(&f, &f.admin_token).await;
    assert_eq!(stream.frame(WAIT).await, Some(Frame::Comment));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = f.connection(&f.admin, "late").await;
    assert_eq!(stream.event().await, changed(id));

    let started = std::time::Instant::now();
    f.state.shutdown().cancel();
    assert!(stream.ends(WAIT).await);
    assert!(started.elapsed() < Duration::from_secs(1));
    // A stream opened after shutdown ends at once.
    let mut late = Stream::open(&f, &f.admin_token).await;
    assert!(late.ends(WAIT).await);
}

#[tokio::test]
async fn a_disabled_accounts_stream_ends() {
    let options = HttpOptions {
        keep_alive: Duration::from_millis(50),
        ..HttpOptions::default()
    };
    let f = Fixture::with(options, |state, _| state).await;
    let (viewer, token) = f.user("viewer", Role::Viewer).await;
    let mut stream = Stream::open(&f, &token).await;
    f.hub
        .update_user(
            &f.admin,
            viewer.user(),
            UserUpdate {
                disabled: Some(true),
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap();
    assert!(stream.ends(WAIT).await);
}

/// Options re-checking the caller's credential every 50 ms.
fn quick_refresh() -> HttpOptions {
    HttpOptions {
        keep_alive: Duration::from_millis(50),
        ..HttpOptions::default()
    }
}

/// A session of `name` (password login), as its cookie value.
async fn session_of(f: &Fixture, name: &str) -> String {
    let request = RequestInfo::default();
    let principal = f
        .hub
        .login(name, Password::from(USER_PW), &request)
        .await
        .unwrap();
    let session = f.hub.start_session(&principal, &request).await.unwrap();
    session.token.expose_secret().to_owned()
}

#[tokio::test]
async fn a_revoked_tokens_stream_ends_and_another_token_of_the_user_goes_on() {
    let f = Fixture::with(quick_refresh(), |state, _| state).await;
    let (viewer, kept) = f.user("viewer", Role::Viewer).await;
    let revoked = f
        .hub
        .create_token(&viewer, "to revoke", None, false)
        .await
        .unwrap();
    let mut doomed = Stream::open(&f, revoked.token.expose_secret()).await;
    let mut other = Stream::open(&f, &kept).await;
    f.hub.revoke_token(&viewer, revoked.info.id).await.unwrap();
    assert!(doomed.ends(WAIT).await);
    // The user's other token is untouched: its stream still gets what the viewer may view.
    let id = f.connection(&f.admin, "still-streaming").await;
    grant_view(&f, id, &viewer).await;
    assert_eq!(other.event().await, changed(id));
}

#[tokio::test]
async fn a_sessions_stream_ends_at_logout() {
    let f = Fixture::with(quick_refresh(), |state, _| state).await;
    f.user("editor", Role::Editor).await;
    let session = session_of(&f, "editor").await;
    let mut stream = Stream::open_by_cookie(&f, &session).await;
    assert!(
        f.hub
            .end_session(&session, &RequestInfo::default())
            .await
            .unwrap()
    );
    assert!(stream.ends(WAIT).await);
}

#[tokio::test]
async fn an_open_stream_does_not_keep_its_session_from_going_idle() {
    let sessions = SessionConfig {
        idle_timeout: Duration::from_millis(1_500),
        touch_interval: Duration::ZERO,
        ..SessionConfig::default()
    };
    let f = Fixture::with(quick_refresh(), |_, hub| {
        AppState::new(
            hub.clone().with_session_config(sessions).unwrap(),
            quick_refresh(),
        )
    })
    .await;
    f.user("viewer", Role::Viewer).await;
    let session = session_of(&f, "viewer").await;
    let mut stream = Stream::open_by_cookie(&f, &session).await;
    // Re-checked 20 times a second, the session would stay alive if a check were a use of it;
    // it is not, so the stream ends once the session has been idle for 1.5 s.
    let started = std::time::Instant::now();
    assert!(stream.ends(WAIT).await);
    assert!(started.elapsed() >= Duration::from_millis(1_000));
    let (status, _, _) = send(
        f.app(),
        Request::get("/api/v1/auth/me")
            .header(header::COOKIE, format!("{SESSION_COOKIE}={session}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_route_is_documented_and_declared() {
    let f = Fixture::new().await;
    let (status, _, body) = send(f.app(), get("/api/v1/openapi.json", None)).await;
    assert_eq!(status, StatusCode::OK);
    let spec: Value = serde_json::from_slice(&body).unwrap();
    let op = &spec["paths"]["/api/v1/events"]["get"];
    assert!(
        op["responses"]["200"]["content"]["text/event-stream"].is_object(),
        "{op}"
    );
    assert!(spec["components"]["schemas"]["StreamEvent"].is_object());
    assert!(datahub_server::routes::ROUTES.iter().any(|r| {
        r.path == "/api/v1/events"
            && r.method == axum::http::Method::GET
            && r.permission
                == datahub_server::routes::Permission::Action(
                    datahub_core::rbac::Action::ConnectionList,
                )
    }));
}
