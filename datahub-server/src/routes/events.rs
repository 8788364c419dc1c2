//! `GET /api/v1/events`: Server-Sent Events of status and connection changes, filtered to the
//! connections the caller may view (SECURITY.md S19: a connection the caller may not view never
//! appears in its events).
//!
//! Each event is one `data:` line holding a JSON [`StreamEvent`]: `status_changed`, `checked`
//! (every check the monitor records, with its status, latency and failure kind),
//! `connection_changed`, `connection_deleted` (each with the connection `id`), or `resync`
//! when the stream fell behind and lost events, so the client reloads what it shows instead of
//! silently missing changes. Idle streams get a keep-alive comment every
//! [`HttpOptions::keep_alive`](crate::HttpOptions::keep_alive); every stream ends cleanly when
//! the server shuts down.
//!
//! Filtering: each event's connection is checked with the caller's view permission when the
//! event arrives (so a grant given or revoked applies to the next event). A deleted connection
//! can no longer be checked, so each stream remembers the ids its caller could view (those
//! visible when it opened, and those of events it passed since) and passes a deletion only for
//! one of them. A connection the caller could view but no longer can gets one
//! `connection_changed` (the client's reload then finds it gone) and is forgotten. The check
//! is made when the stream reads the event: a stream that reads a change only after the
//! connection was deleted cannot tell that from a revoked grant, so it too gets that last
//! `connection_changed` instead of the deletion (the client's reload has the same outcome).
//! The caller's credential (token or session) is checked again at every keep-alive period, as on
//! a new request: a revoked or expired token, an ended or idle session, or a disabled account
//! ends the stream, and a changed role or team applies. Checking a session this way is not a
//! use of it, so an open stream alone never keeps a session from going idle.
//!
//! This route is outside the request timeout (see [`crate::app`]): a stream lasts as long as the
//! client keeps it open.
//!
//! It must never: send an event about a connection the caller may not view, nor anything but
//! ids, statuses, latencies, failure kinds and times (never a name, a host or a secret).

use std::collections::HashSet;
use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use datahub_core::hub::Hub;
use datahub_core::model::{ListQuery, MAX_PER_PAGE};
use datahub_core::monitor::MonitorEvent;
use datahub_core::rbac::{Action, Principal};
use datahub_core::{ConnectionId, ErrorKind};
use futures_util::Stream;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::event::StreamEvent;
use crate::auth::{Authed, Credential, credential};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// `GET /api/v1/events`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// Server-Sent Events of checks, status and connection changes the caller may view.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    responses(
        (status = 200, content_type = "text/event-stream", body = StreamEvent,
         description = "a stream of `data:` lines, each a JSON event, with keep-alive comments; \
                        it ends when the server shuts down"),
        (status = 403, description = "may not list connections", body = crate::error::ErrorBody),
        (status = 503, description = "the store is unavailable", body = crate::error::ErrorBody)
    )
)]
async fn events(
    State(state): State<AppState>,
    Authed(principal): Authed,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    // `Authed` accepted this request's credential, so it is there.
    let Some(credential) = credential(&headers)? else {
        return Err(ApiError::unauthenticated());
    };
    if !principal.may(Action::ConnectionList) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_denied",
            "you may not list connections",
        ));
    }
    // Subscribe before reading what is visible: nothing published meanwhile is missed.
    let events = state.subscribe();
    let visible = visible_ids(state.hub(), &principal).await?;
    let keep_alive = state.options().keep_alive;
    let mut refresh =
        tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let feed = Feed {
        hub: state.hub().clone(),
        principal,
        credential,
        events,
        shutdown: state.shutdown().clone(),
        refresh,
        visible,
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok(to_sse(&event)), feed))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive)))
}

fn to_sse(event: &StreamEvent) -> Event {
    // Serializing ids, fixed words and a formatted time cannot fail; an empty object would
    // still be valid JSON.
    Event::default().data(serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned()))
}

/// The ids of every connection `principal` may view now.
async fn visible_ids(hub: &Hub, principal: &Principal) -> ApiResult<HashSet<ConnectionId>> {
    let mut ids = HashSet::new();
    let mut page = 1u32;
    loop {
        let query = ListQuery {
            page,
            per_page: MAX_PER_PAGE,
            ..ListQuery::default()
        };
        let found = hub.list_connections(principal, &query).await?;
        let count = found.items.len();
        ids.extend(found.items.into_iter().map(|c| c.id));
        if count < MAX_PER_PAGE as usize || u64::from(page) * u64::from(MAX_PER_PAGE) >= found.total
        {
            return Ok(ids);
        }
        page = page.saturating_add(1);
    }
}

/// One subscriber's stream: its receiver, its caller, and the ids it may view.
struct Feed {
    hub: Hub,
    principal: Principal,
    /// What the caller signed in with: checked again at every refresh.
    credential: Credential,
    events: broadcast::Receiver<MonitorEvent>,
    shutdown: CancellationToken,
    /// When to load the principal afresh.
    refresh: Interval,
    /// Connections the caller could view when last checked: a deletion is passed only for them.
    visible: HashSet<ConnectionId>,
}

impl Feed {
    /// The next event for this caller; `None` ends the stream (shutdown, the caller may no
    /// longer sign in, or the event source closed).
    async fn next(&mut self) -> Option<StreamEvent> {
        loop {
            let received = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return None,
                _ = self.refresh.tick() => {
                    if !self.reload_principal().await {
                        return None;
                    }
                    continue;
                }
                received = self.events.recv() => received,
            };
            match received {
                Ok(event) => {
                    if let Some(event) = self.filter(&event).await {
                        return Some(event);
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "event stream fell behind; told to resync");
                    // The client reloads what it shows: what it may view is read again too.
                    if let Ok(ids) = visible_ids(&self.hub, &self.principal).await {
                        self.visible = ids;
                    }
                    return Some(StreamEvent::Resync);
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Checks the caller's credential again and loads the principal afresh; false when it no
    /// longer signs in.
    async fn reload_principal(&mut self) -> bool {
        match self
            .credential
            .recheck(&self.hub, self.principal.request())
            .await
        {
            Ok(principal) => {
                self.principal = principal;
                true
            }
            Err(e) if e.kind() == ErrorKind::Unauthenticated => false,
            // The store is failing: keep streaming with the principal as it was.
            Err(_) => true,
        }
    }

    /// The event as this caller may see it, if at all.
    async fn filter(&mut self, event: &MonitorEvent) -> Option<StreamEvent> {
        let id = event.id();
        if let MonitorEvent::ConnectionDeleted { .. } = event {
            return self
                .visible
                .remove(&id)
                .then(|| StreamEvent::from_monitor(event));
        }
        match self.may_view(id).await {
            Ok(true) => {
                self.visible.insert(id);
                Some(StreamEvent::from_monitor(event))
            }
            // It was visible and no longer is: one last "reload it", which finds it gone.
            Ok(false) if self.visible.remove(&id) => {
                Some(StreamEvent::ConnectionChanged { id: *id.as_uuid() })
            }
            Ok(false) => None,
            Err(e) => {
                tracing::warn!(
                    connection = %id,
                    kind = e.kind().as_str(),
                    "event stream could not check access; event not sent"
                );
                None
            }
        }
    }

    /// Whether the caller may view connection `id` now (a permission check, not a read of the
    /// connection: nothing is audited for the events a caller is not shown).
    async fn may_view(&self, id: ConnectionId) -> datahub_core::Result<bool> {
        self.hub.may_view(&self.principal, id).await
    }
}
