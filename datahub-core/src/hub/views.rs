//! What a principal may see of health: a connection's check history, and which monitor events
//! reach one subscriber of a live stream (S19: a connection the caller may not view is absent
//! from live events too).
//!
//! Deleted connections: once a connection is deleted its grants are gone with it, so nothing in
//! the store says any more who could see it. A [`ConnectionDeleted`](MonitorEvent::ConnectionDeleted)
//! event is therefore let through by the subscriber's [`EventFilter`], which remembers the ids
//! it let that subscriber know about: the connections it could view when the filter was made,
//! and every one an event was shown for since. This works across replicas (the event needs no
//! extra fields, so the cross-process `NOTIFY` payload stays as it is) and reveals nothing new:
//! a subscriber only hears of the deletion of a connection it was shown.

use std::collections::HashSet;

use super::Hub;
use crate::model::{Check, Health, HealthBucket, ListQuery, MAX_PER_PAGE};
use crate::monitor::MonitorEvent;
use crate::rbac::{Action, Decision, Principal, Role, Target, act};
use crate::{ConnectionId, Error, ErrorKind, Result};

/// The most checks one [`Hub::health_history`] call returns.
pub const MAX_HISTORY_LIMIT: u32 = 1_000;

/// A connection's check history with its current health.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthHistory {
    /// The checks asked for, newest first.
    pub checks: Vec<Check>,
    /// The 5-minute buckets starting at or after `since` of the checks already rolled up
    /// (older than the monitor's detail window), oldest first; not counted in `limit`. With
    /// `checks` they are the whole history since then: a check is in one or the other.
    pub buckets: Vec<HealthBucket>,
    /// The current derived health, with the uptime over the last 24 hours as the monitor last
    /// recorded it (`uptime_24h`; `None` without checks in that window).
    pub health: Health,
}

/// Which monitor events one subscriber of a live stream may see: make one per subscriber with
/// [`Hub::event_filter`] and ask [`Hub::event_visible`] for each event. It remembers the ids it
/// let through, so a later deletion of one of them still reaches the subscriber (see the
/// module docs).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    shown: HashSet<ConnectionId>,
}

impl EventFilter {
    /// How many connection ids the filter remembers showing.
    pub fn remembered(&self) -> usize {
        self.shown.len()
    }
}

impl Hub {
    /// The newest `limit` checks of a connection at or after `since`, newest first, and the
    /// buckets of the checks since then already rolled up, with its current health and 24 h
    /// uptime (`view`). `limit` is at most [`MAX_HISTORY_LIMIT`]
    /// (1,000): at the shortest interval (10 s) that is under three hours, so a chart of a
    /// longer window should thin out on the caller's side or ask for less. The uptime comes
    /// with the health the monitor records, so it costs no history query.
    ///
    /// # Errors
    /// `InvalidInput` on `limit` when it is 0 or above 1,000; `NotFound` when the connection
    /// does not exist or the principal may not view it (exactly as [`Hub::connection`]).
    pub async fn health_history(
        &self,
        principal: &Principal,
        id: ConnectionId,
        since: time::OffsetDateTime,
        limit: u32,
    ) -> Result<HealthHistory> {
        if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
            return Err(Error::invalid("limit", "must be between 1 and 1000"));
        }
        let summary = self
            .store
            .connection_summary(id)
            .await?
            .ok_or_else(not_found)?;
        let grants = self.store.grants(id).await?;
        let allowed = principal.check_on::<act::ConnectionView>(id, summary.owner, &grants)?;
        let checks = self
            .store
            .checks(allowed.connection(), since, limit)
            .await?;
        let buckets = self.store.buckets(allowed.connection(), since).await?;
        Ok(HealthHistory {
            checks,
            buckets,
            health: summary.health,
        })
    }

    /// Whether the principal may view the connection now: `true` for an admin without asking
    /// the store; otherwise as the permission table says for the owner and the current grants
    /// of the connection (the principal's user and teams), `false` for a connection that does
    /// not exist. Loaded afresh on every call, so a revoked grant applies on the next one.
    ///
    /// # Errors
    /// `Store` when the store fails.
    pub async fn may_view(&self, principal: &Principal, id: ConnectionId) -> Result<bool> {
        if principal.role() == Role::Admin {
            return Ok(true);
        }
        let Some(summary) = self.store.connection_summary(id).await? else {
            return Ok(false);
        };
        let grants = self.store.grants(id).await?;
        let target = Target {
            owner: summary.owner,
            grants: &grants,
        };
        Ok(principal.decide(Action::ConnectionView, Some(target)) == Decision::Allow)
    }

    /// A filter for one subscriber of live events, remembering the connections the principal
    /// may view now (for an admin: none needed, every event is shown). Costs one list query per
    /// 200 visible connections.
    ///
    /// # Errors
    /// `Store` when the store fails.
    pub async fn event_filter(&self, principal: &Principal) -> Result<EventFilter> {
        let mut filter = EventFilter::default();
        if principal.role() == Role::Admin {
            return Ok(filter);
        }
        let visibility = principal.visibility();
        let mut query = ListQuery {
            per_page: MAX_PER_PAGE,
            ..ListQuery::default()
        };
        loop {
            let page = self.store.list_connections(&query, &visibility).await?;
            let done = page.items.len() < MAX_PER_PAGE as usize;
            filter.shown.extend(page.items.iter().map(|c| c.id));
            if done || u64::try_from(filter.shown.len()).unwrap_or(u64::MAX) >= page.total {
                return Ok(filter);
            }
            query.page = query.page.saturating_add(1);
        }
    }

    /// Whether `event` may go to the subscriber acting as `principal` (pass the principal as
    /// reloaded for the stream, so a role change or a disabled account applies too):
    /// - a deletion: to an admin, or when `filter` showed that connection to the subscriber
    ///   (then it forgets it);
    /// - anything else: when [`Hub::may_view`] says so now (then `filter` remembers the id;
    ///   a refusal makes it forget it, so a revoked grant also hides the later deletion).
    ///
    /// # Errors
    /// `Store` when the store fails (the event should then not be sent).
    pub async fn event_visible(
        &self,
        principal: &Principal,
        filter: &mut EventFilter,
        event: &MonitorEvent,
    ) -> Result<bool> {
        let id = event.id();
        if let MonitorEvent::ConnectionDeleted { .. } = event {
            let shown = filter.shown.remove(&id);
            return Ok(shown || principal.role() == Role::Admin);
        }
        let visible = self.may_view(principal, id).await?;
        if principal.role() != Role::Admin {
            if visible {
                filter.shown.insert(id);
            } else {
                filter.shown.remove(&id);
            }
        }
        Ok(visible)
    }
}

fn not_found() -> Error {
    Error::new(ErrorKind::NotFound, "connection not found")
}
