//! What the Hub lets a principal see of health: check history (`view`, 404 for the invisible,
//! bounded limit) and the view checks a live event stream filters with (S19: a connection the
//! caller may not view is absent from events; revocation applies on the next call; a deletion
//! reaches those who were shown the connection).

use crate::GrantsNow;
use std::sync::Arc;

use datahub_core::audit::RequestInfo;
use datahub_core::crypto::Keyring;
use datahub_core::hub::{Hub, MAX_HISTORY_LIMIT};
use datahub_core::model::{Check, FailureKind, Health, HealthStatus, StepName};
use datahub_core::monitor::MonitorEvent;
use datahub_core::rbac::{Grant, GrantLevel, Grantee, Principal, Role};
use datahub_core::secret::Password;
use datahub_core::store::{SqliteStore, Store};
use datahub_core::{ConnectionId, ErrorKind};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

use crate::hub::{ADMIN_PW, K1, draft, login};

const USER_PW: &str = "user-password-1234";

struct Fixture {
    hub: Hub,
    store: Arc<dyn Store>,
    admin: Principal,
    editor: Principal,
    viewer: Principal,
    _dir: TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    let hub = Hub::open(store.clone(), Keyring::parse(K1).unwrap())
        .await
        .unwrap();
    hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
        .await
        .unwrap();
    let admin = login(&hub, "admin", ADMIN_PW).await;
    for (name, role) in [("eddie", Role::Editor), ("vera", Role::Viewer)] {
        hub.create_user(&admin, name, Password::from(USER_PW), role)
            .await
            .unwrap();
    }
    let editor = login(&hub, "eddie", USER_PW).await;
    let viewer = login(&hub, "vera", USER_PW).await;
    Fixture {
        hub,
        store,
        admin,
        editor,
        viewer,
        _dir: dir,
    }
}

impl Fixture {
    async fn conn(&self, name: &str) -> ConnectionId {
        self.hub
            .create_connection(&self.editor, draft(name, "pw-1"))
            .await
            .unwrap()
            .id
    }

    async fn grant_viewer(&self, id: ConnectionId, grant: bool) {
        let grants = if grant {
            vec![Grant {
                grantee: Grantee::User(self.viewer.user()),
                level: GrantLevel::View,
            }]
        } else {
            Vec::new()
        };
        self.hub
            .set_grants_now(&self.editor, id, &grants)
            .await
            .unwrap();
    }

    /// The viewer, reloaded as an adapter does per request.
    async fn viewer_now(&self) -> Principal {
        self.hub
            .principal_for(self.viewer.user(), &RequestInfo::default())
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn health_history_needs_view_and_bounds_its_limit() {
    let f = fixture().await;
    let id = f.conn("orders").await;
    let t0 = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::hours(1);
    for i in 0..5 {
        let ok = i != 3;
        let check = Check {
            connection: id,
            at: t0 + Duration::minutes(i),
            ok,
            latency_ms: 10 + i as u32,
            error_kind: (!ok).then_some(FailureKind::Timeout),
            step: (!ok).then_some(StepName::Tcp),
            status: HealthStatus::Healthy,
        };
        let health = Health {
            status: HealthStatus::Healthy,
            checked_at: Some(check.at),
            latency_ms: Some(check.latency_ms),
            error_kind: check.error_kind,
            uptime_24h: Some(0.8),
            facts: None,
        };
        f.store.record_check(&check, &health).await.unwrap();
    }

    // The viewer without a grant: not found, exactly as for a connection that does not exist.
    for target in [id, ConnectionId::new()] {
        let e = f
            .hub
            .health_history(&f.viewer, target, t0, 10)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            f.hub
                .connection(&f.viewer, target)
                .await
                .unwrap_err()
                .to_string()
        );
    }

    f.grant_viewer(id, true).await;
    let viewer = f.viewer_now().await;
    let h = f.hub.health_history(&viewer, id, t0, 10).await.unwrap();
    let minutes: Vec<i64> = h
        .checks
        .iter()
        .map(|c| (c.at - t0).whole_minutes())
        .collect();
    assert_eq!(minutes, [4, 3, 2, 1, 0], "newest first");
    assert!(!h.checks[1].ok);
    assert_eq!(h.health.uptime_24h, Some(0.8));
    assert_eq!(h.health.latency_ms, Some(14));
    // `since` and `limit` narrow it.
    let h = f
        .hub
        .health_history(&viewer, id, t0 + Duration::minutes(2), 10)
        .await
        .unwrap();
    assert_eq!(h.checks.len(), 3);
    let h = f.hub.health_history(&f.admin, id, t0, 2).await.unwrap();
    assert_eq!(h.checks.len(), 2);
    assert_eq!((h.checks[0].at - t0).whole_minutes(), 4);
    f.hub
        .health_history(&f.admin, id, t0, MAX_HISTORY_LIMIT)
        .await
        .unwrap();
    for bad in [0, MAX_HISTORY_LIMIT + 1, u32::MAX] {
        let e = f
            .hub
            .health_history(&viewer, id, t0, bad)
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind(), e.field()),
            (ErrorKind::InvalidInput, Some("limit"))
        );
    }
}

#[tokio::test]
async fn may_view_follows_grants_on_every_call() {
    let f = fixture().await;
    let id = f.conn("orders").await;
    let other = f.conn("billing").await;
    // Admins: always, without a store call (an unknown id too).
    assert!(f.hub.may_view(&f.admin, id).await.unwrap());
    assert!(f.hub.may_view(&f.admin, ConnectionId::new()).await.unwrap());
    // The owner, yes; a viewer with no grant never.
    assert!(f.hub.may_view(&f.editor, id).await.unwrap());
    for c in [id, other, ConnectionId::new()] {
        assert!(!f.hub.may_view(&f.viewer, c).await.unwrap());
    }
    // A grant applies on the next call, and so does its revocation (same principal value: the
    // grants are read afresh).
    f.grant_viewer(id, true).await;
    assert!(f.hub.may_view(&f.viewer, id).await.unwrap());
    assert!(!f.hub.may_view(&f.viewer, other).await.unwrap());
    f.grant_viewer(id, false).await;
    assert!(!f.hub.may_view(&f.viewer, id).await.unwrap());
    // Through a team as well.
    let team = f
        .hub
        .save_team(&f.admin, None, "ops", &[f.viewer.user()])
        .await
        .unwrap();
    f.hub
        .set_grants_now(
            &f.editor,
            other,
            &[Grant {
                grantee: Grantee::Team(team.id),
                level: GrantLevel::View,
            }],
        )
        .await
        .unwrap();
    assert!(f.hub.may_view(&f.viewer_now().await, other).await.unwrap());
}

#[tokio::test]
async fn event_filter_shows_only_viewable_connections_and_their_deletion() {
    let f = fixture().await;
    let seen = f.conn("seen").await;
    let hidden = f.conn("hidden").await;
    f.grant_viewer(seen, true).await;
    let viewer = f.viewer_now().await;
    let mut filter = f.hub.event_filter(&viewer).await.unwrap();
    assert_eq!(filter.remembered(), 1);
    let mut admin_filter = f.hub.event_filter(&f.admin).await.unwrap();

    let status = |id| MonitorEvent::StatusChanged {
        id,
        from: HealthStatus::Unknown,
        to: HealthStatus::Down,
        at: OffsetDateTime::now_utc(),
    };
    let changed = |id| MonitorEvent::ConnectionChanged { id };
    let deleted = |id| MonitorEvent::ConnectionDeleted { id };

    assert!(
        f.hub
            .event_visible(&viewer, &mut filter, &status(seen))
            .await
            .unwrap()
    );
    assert!(
        !f.hub
            .event_visible(&viewer, &mut filter, &status(hidden))
            .await
            .unwrap()
    );
    assert!(
        !f.hub
            .event_visible(&viewer, &mut filter, &changed(hidden))
            .await
            .unwrap()
    );
    assert!(
        f.hub
            .event_visible(&f.admin, &mut admin_filter, &status(hidden))
            .await
            .unwrap()
    );

    // A deletion reaches the viewer who was shown the connection, after its grants are gone.
    let version = f.hub.connection(&f.editor, seen).await.unwrap().version;
    f.hub
        .delete_connection(&f.editor, seen, version)
        .await
        .unwrap();
    assert!(!f.hub.may_view(&viewer, seen).await.unwrap());
    assert!(
        f.hub
            .event_visible(&viewer, &mut filter, &deleted(seen))
            .await
            .unwrap()
    );
    // Once: the filter forgot it.
    assert!(
        !f.hub
            .event_visible(&viewer, &mut filter, &deleted(seen))
            .await
            .unwrap()
    );
    // A deletion of one never shown does not.
    f.hub.delete_connection(&f.editor, hidden, 1).await.unwrap();
    assert!(
        !f.hub
            .event_visible(&viewer, &mut filter, &deleted(hidden))
            .await
            .unwrap()
    );
    assert!(
        f.hub
            .event_visible(&f.admin, &mut admin_filter, &deleted(hidden))
            .await
            .unwrap()
    );

    // A connection granted after the filter was made is shown from its next event on; a
    // revocation hides the next event and the later deletion.
    let late = f.conn("late").await;
    assert!(
        !f.hub
            .event_visible(&viewer, &mut filter, &changed(late))
            .await
            .unwrap()
    );
    f.grant_viewer(late, true).await;
    assert!(
        f.hub
            .event_visible(&viewer, &mut filter, &status(late))
            .await
            .unwrap()
    );
    f.grant_viewer(late, false).await;
    assert!(
        !f.hub
            .event_visible(&viewer, &mut filter, &status(late))
            .await
            .unwrap()
    );
    let version = f.hub.connection(&f.editor, late).await.unwrap().version;
    f.hub
        .delete_connection(&f.editor, late, version)
        .await
        .unwrap();
    assert!(
        !f.hub
            .event_visible(&viewer, &mut filter, &deleted(late))
            .await
            .unwrap()
    );
}

/// A viewer with no grant is never told of any connection, across many connections and every
/// kind of event, whatever order they come in.
#[tokio::test]
async fn a_viewer_without_grants_never_sees_an_event() {
    let f = fixture().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(f.conn(&format!("c{i}")).await);
    }
    let viewer = f.viewer_now().await;
    let mut filter = f.hub.event_filter(&viewer).await.unwrap();
    assert_eq!(filter.remembered(), 0);
    for (n, id) in ids.iter().enumerate() {
        let event = match n % 3 {
            0 => MonitorEvent::ConnectionChanged { id: *id },
            1 => MonitorEvent::StatusChanged {
                id: *id,
                from: HealthStatus::Healthy,
                to: HealthStatus::Degraded,
                at: OffsetDateTime::now_utc(),
            },
            _ => MonitorEvent::ConnectionDeleted { id: *id },
        };
        assert!(!f.hub.may_view(&viewer, *id).await.unwrap());
        assert!(
            !f.hub
                .event_visible(&viewer, &mut filter, &event)
                .await
                .unwrap()
        );
    }
}
