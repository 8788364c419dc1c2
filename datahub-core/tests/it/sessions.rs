//! Browser sessions through the Hub on a real store: round trip, logout (audited), absolute and
//! idle expiry (the clock is injected by writing session rows with chosen times, plus one
//! real-time run through a short `SessionConfig`), disabled users and new passwords ending
//! sessions, session and API tokens never standing in for each other, password guesses
//! throttled per account name by the Hub itself, and a canary: no session token in any audit row
//! or `Debug` output.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use datahub_core::audit::{Outcome, RequestInfo, truncate_to_micros};
use datahub_core::auth::{SESSION_REFUSED, SessionConfig, TOKEN_REFUSED, new_session_token};
use datahub_core::crypto::Keyring;
use datahub_core::hub::{Hub, UserUpdate};
use datahub_core::rbac::{AuthMethod, Principal, Role};
use datahub_core::secret::Password;
use datahub_core::store::{SqliteStore, Store, StoredSession};
use datahub_core::{ErrorKind, SessionId, UserId};
use tempfile::TempDir;
use time::{Duration, OffsetDateTime};

use crate::hub::{ADMIN_PW, K1, login};

const USER_PW: &str = "user-password-1234";

struct Fixture {
    hub: Hub,
    store: Arc<dyn Store>,
    admin: Principal,
    _dir: TempDir,
}

async fn fixture(config: SessionConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    let hub = Hub::open(store.clone(), Keyring::parse(K1).unwrap())
        .await
        .unwrap()
        .with_session_config(config)
        .unwrap();
    hub.bootstrap_admin(Some(Password::from(ADMIN_PW)))
        .await
        .unwrap();
    let admin = login(&hub, "admin", ADMIN_PW).await;
    Fixture {
        hub,
        store,
        admin,
        _dir: dir,
    }
}

fn req() -> RequestInfo {
    RequestInfo {
        client_addr: Some("127.0.0.1".into()),
        request_id: Some("req-1".into()),
    }
}

fn refused(result: datahub_core::Result<Principal>) {
    let e = result.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    assert_eq!(e.to_string(), SESSION_REFUSED);
}

async fn user(f: &Fixture, name: &str, role: Role) -> UserId {
    f.hub
        .create_user(&f.admin, name, Password::from(USER_PW), role)
        .await
        .unwrap()
        .id
}

async fn session_of(f: &Fixture, name: &str, password: &str) -> String {
    let p = login(&f.hub, name, password).await;
    let s = f.hub.start_session(&p, &req()).await.unwrap();
    s.token.expose_secret().to_owned()
}

#[tokio::test]
async fn round_trip_and_audited_logout() {
    let f = fixture(SessionConfig::default()).await;
    let before = OffsetDateTime::now_utc();
    let new = f
        .hub
        .start_session_for_client(&f.admin, &req(), Some("Mozilla/5.0\n(evil)"))
        .await
        .unwrap();
    let token = new.token.expose_secret().to_owned();
    assert!(token.starts_with("dhs_"));
    assert_eq!(token.len(), 47);
    let lifetime = new.expires_at - before;
    assert!(
        lifetime > Duration::hours(12) - Duration::milliseconds(1)
            && lifetime < Duration::hours(12) + Duration::minutes(1),
        "{lifetime}"
    );
    assert_eq!(new.idle_timeout, StdDuration::from_secs(30 * 60));

    // Only the hash is stored, with the client's address and its escaped user agent.
    let stored = f.store.sessions_of(f.admin.user()).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, new.id);
    assert_eq!(stored[0].hash, datahub_core::auth::token_hash(&token));
    assert_eq!(stored[0].client_addr.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        stored[0].user_agent.as_deref(),
        Some("Mozilla/5.0\\u{a}(evil)")
    );

    let p = f.hub.authenticate_session(&token, &req()).await.unwrap();
    assert_eq!(p.user(), f.admin.user());
    assert_eq!(p.role(), Role::Admin);
    assert_eq!(p.auth_method(), AuthMethod::Session);
    assert_eq!(p.request(), &req());

    assert!(f.hub.end_session(&token, &req()).await.unwrap());
    let audit = f.store.audit_after(0, 10_000).await.unwrap();
    let last = &audit.last().unwrap().event;
    assert_eq!(last.action, "auth.logout");
    assert_eq!(last.actor, Some(f.admin.user()));
    assert_eq!(
        last.target.as_deref(),
        Some(&*format!("session:{}", new.id))
    );
    assert_eq!(last.outcome, Outcome::Ok);
    assert_eq!(last.request_id.as_deref(), Some("req-1"));
    refused(f.hub.authenticate_session(&token, &req()).await);
    // Logging out twice, or with garbage, ends nothing and writes nothing.
    assert!(!f.hub.end_session(&token, &req()).await.unwrap());
    assert!(!f.hub.end_session("dhs_nonsense", &req()).await.unwrap());
    assert_eq!(
        f.store.audit_after(0, 10_000).await.unwrap().len(),
        audit.len()
    );
}

#[tokio::test]
async fn session_and_api_tokens_never_stand_in_for_each_other() {
    let f = fixture(SessionConfig::default()).await;
    let session = f.hub.start_session(&f.admin, &req()).await.unwrap();
    let session = session.token.expose_secret().to_owned();
    let api = f
        .hub
        .create_token(&f.admin, "ci", None, false)
        .await
        .unwrap();
    let api = api.token.expose_secret().to_owned();

    let e = f
        .hub
        .authenticate_token(&session, &req())
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.to_string().as_str()),
        (ErrorKind::Unauthenticated, TOKEN_REFUSED)
    );
    refused(f.hub.authenticate_session(&api, &req()).await);
    // Even the right body under the other prefix is refused.
    refused(
        f.hub
            .authenticate_session(&format!("dhs_{}", &api[3..]), &req())
            .await,
    );
    for bad in ["", "dhs_", "garbage", &format!("{session}x"), &session[1..]] {
        refused(f.hub.authenticate_session(bad, &req()).await);
    }
    // An API token is not a logout either.
    assert!(!f.hub.end_session(&api, &req()).await.unwrap());
    f.hub.authenticate_session(&session, &req()).await.unwrap();

    // A session starts only from a password login: not from a token, nor from a session.
    let by_token = f.hub.authenticate_token(&api, &req()).await.unwrap();
    assert_eq!(by_token.auth_method(), AuthMethod::Token);
    let by_session = f.hub.authenticate_session(&session, &req()).await.unwrap();
    for p in [&by_token, &by_session] {
        let e = f.hub.start_session(p, &req()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    }
    assert_eq!(f.admin.auth_method(), AuthMethod::Password);
}

/// Absolute and idle expiry with the clock injected: session rows written with chosen times.
#[tokio::test]
async fn absolute_and_idle_expiry_at_their_boundaries() {
    let f = fixture(SessionConfig::default()).await;
    let now = truncate_to_micros(OffsetDateTime::now_utc());
    let put = |created: Duration, expires: Duration, seen: Duration| {
        let store = f.store.clone();
        let user = f.admin.user();
        async move {
            let new = new_session_token().unwrap();
            let row = StoredSession {
                id: SessionId::new(),
                user,
                hash: new.hash,
                created_at: now - created,
                expires_at: now + expires,
                last_seen_at: now - seen,
                client_addr: None,
                user_agent: None,
            };
            store.insert_session(&row).await.unwrap();
            (new.token.expose_secret().to_owned(), row)
        }
    };
    // Past its absolute expiry, however recently used.
    let (expired, _) = put(Duration::hours(13), -Duration::seconds(1), Duration::ZERO).await;
    refused(f.hub.authenticate_session(&expired, &req()).await);
    // Unused for longer than 30 minutes.
    let (idle, _) = put(
        Duration::hours(1),
        Duration::hours(11),
        Duration::minutes(31),
    )
    .await;
    refused(f.hub.authenticate_session(&idle, &req()).await);
    // Used 29 minutes ago: accepted, and the use is recorded.
    let (stale, row) = put(
        Duration::hours(1),
        Duration::hours(11),
        Duration::minutes(29),
    )
    .await;
    f.hub.authenticate_session(&stale, &req()).await.unwrap();
    let seen = f
        .store
        .session_by_hash(&row.hash)
        .await
        .unwrap()
        .unwrap()
        .last_seen_at;
    assert!(seen > now - Duration::seconds(5), "{seen}");
    // Used 20 s ago: accepted without a write (at most one a minute).
    let (busy, row) = put(
        Duration::hours(1),
        Duration::hours(11),
        Duration::seconds(20),
    )
    .await;
    f.hub.authenticate_session(&busy, &req()).await.unwrap();
    let stored = f.store.session_by_hash(&row.hash).await.unwrap().unwrap();
    assert_eq!(stored, row);

    // Pruning removes exactly the two that are over.
    assert_eq!(f.hub.prune_sessions().await.unwrap(), 2);
    assert_eq!(f.store.sessions_of(f.admin.user()).await.unwrap().len(), 2);
}

/// The configured lifetimes are the ones applied, in real time (margins of 0.5 s or more, for
/// a loaded machine).
#[tokio::test]
async fn short_configured_lifetimes_apply() {
    let config = SessionConfig {
        lifetime: StdDuration::from_secs(4),
        idle_timeout: StdDuration::from_millis(1_500),
        touch_interval: StdDuration::ZERO,
    };
    let f = fixture(config).await;
    assert_eq!(f.hub.session_config(), &config);
    let idle = session_of(&f, "admin", ADMIN_PW).await;
    let busy = session_of(&f, "admin", ADMIN_PW).await;
    for _ in 0..6 {
        tokio::time::sleep(StdDuration::from_millis(500)).await;
        f.hub.authenticate_session(&busy, &req()).await.unwrap();
    }
    // 3 s without use: idle; the busy one was used every 0.5 s.
    refused(f.hub.authenticate_session(&idle, &req()).await);
    tokio::time::sleep(StdDuration::from_millis(1_100)).await;
    // Over 4 s after the start and 1.1 s after its last use: past the absolute lifetime.
    refused(f.hub.authenticate_session(&busy, &req()).await);

    let bad = SessionConfig {
        touch_interval: StdDuration::from_secs(3_600),
        ..SessionConfig::default()
    };
    let e = Hub::open(f.store.clone(), Keyring::parse(K1).unwrap())
        .await
        .unwrap()
        .with_session_config(bad)
        .unwrap_err();
    assert_eq!(e.field(), Some("touch_interval"));
}

#[tokio::test]
async fn disabling_or_a_new_password_ends_sessions_and_roles_apply_at_once() {
    let f = fixture(SessionConfig::default()).await;
    let eddie = user(&f, "eddie", Role::Editor).await;
    let s1 = session_of(&f, "eddie", USER_PW).await;
    let s2 = session_of(&f, "eddie", USER_PW).await;
    let admin_session = session_of(&f, "admin", ADMIN_PW).await;

    // A role change ends nothing and applies on the next request.
    let update = |u: UserUpdate| f.hub.update_user(&f.admin, eddie, u);
    update(UserUpdate {
        role: Some(Role::Viewer),
        ..UserUpdate::default()
    })
    .await
    .unwrap();
    let p = f.hub.authenticate_session(&s1, &req()).await.unwrap();
    assert_eq!(p.role(), Role::Viewer);

    // Disabling ends both sessions (deleted, so re-enabling revives none); others' remain.
    update(UserUpdate {
        disabled: Some(true),
        ..UserUpdate::default()
    })
    .await
    .unwrap();
    assert!(f.store.sessions_of(eddie).await.unwrap().is_empty());
    refused(f.hub.authenticate_session(&s1, &req()).await);
    update(UserUpdate {
        disabled: Some(false),
        ..UserUpdate::default()
    })
    .await
    .unwrap();
    refused(f.hub.authenticate_session(&s1, &req()).await);
    refused(f.hub.authenticate_session(&s2, &req()).await);
    f.hub
        .authenticate_session(&admin_session, &req())
        .await
        .unwrap();

    // An admin's password reset ends them.
    let s3 = session_of(&f, "eddie", USER_PW).await;
    update(UserUpdate {
        password: Some(Password::from("a-reset-password-77")),
        ..UserUpdate::default()
    })
    .await
    .unwrap();
    refused(f.hub.authenticate_session(&s3, &req()).await);

    // So does changing one's own password (the caller logs in again with the new one).
    let s4 = session_of(&f, "eddie", "a-reset-password-77").await;
    let p = f.hub.authenticate_session(&s4, &req()).await.unwrap();
    f.hub
        .change_own_password(
            &p,
            Password::from("a-reset-password-77"),
            Password::from("own-new-password-88"),
        )
        .await
        .unwrap();
    refused(f.hub.authenticate_session(&s4, &req()).await);
    session_of(&f, "eddie", "own-new-password-88").await;

    // A disabled user's session row, were one left, is refused too (defence in depth).
    let new = new_session_token().unwrap();
    let now = OffsetDateTime::now_utc();
    update(UserUpdate {
        disabled: Some(true),
        ..UserUpdate::default()
    })
    .await
    .unwrap();
    f.store
        .insert_session(&StoredSession {
            id: SessionId::new(),
            user: eddie,
            hash: new.hash,
            created_at: now,
            expires_at: now + Duration::hours(1),
            last_seen_at: now,
            client_addr: None,
            user_agent: None,
        })
        .await
        .unwrap();
    refused(
        f.hub
            .authenticate_session(new.token.expose_secret(), &req())
            .await,
    );
}

/// S8/S10: a session token never shows in an audit row, an error or a `Debug` output.
#[tokio::test]
async fn canary_no_session_token_in_audit_rows_or_debug() {
    let f = fixture(SessionConfig::default()).await;
    let new = f
        .hub
        .start_session_for_client(&f.admin, &req(), Some("agent"))
        .await
        .unwrap();
    let token = new.token.expose_secret().to_owned();
    let body = token[4..].to_owned();
    let mut shown = vec![format!("{new:?}"), format!("{:?}", new.token)];
    let p = f.hub.authenticate_session(&token, &req()).await.unwrap();
    shown.push(format!("{p:?}"));
    for bad in [format!("{token}x"), token.replace("dhs_", "dh_")] {
        let e = f.hub.authenticate_session(&bad, &req()).await.unwrap_err();
        shown.push(format!("{e:?}"));
        shown.push(e.to_string());
    }
    let e = f.hub.authenticate_token(&token, &req()).await.unwrap_err();
    shown.push(format!("{e:?}"));
    shown.push(format!(
        "{:?}",
        f.store.sessions_of(f.admin.user()).await.unwrap()
    ));
    f.hub.end_session(&token, &req()).await.unwrap();
    for r in f.store.audit_after(0, 10_000).await.unwrap() {
        shown.push(format!("{r:?}"));
    }
    for s in &shown {
        assert!(!s.contains(&body), "{s}");
    }
}

/// One sign-in through the hub from the test's address.
async fn guess(hub: &Hub, name: &str, password: &str) -> datahub_core::Result<Principal> {
    hub.login(name, Password::from(password), &req()).await
}

/// S20, S29 through the Hub alone, with no adapter: password guesses are throttled per account
/// name before any password work, unknown names alike and whatever the case; a success gives
/// its guess back; wrong current passwords draw on the same budget; a refused attempt is
/// neither checked nor audited, and says how long to wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_guesses_are_throttled_per_account_name() {
    use datahub_core::hub::LoginLimit;

    let f = fixture(SessionConfig::default()).await;
    let hub = f.hub.clone().with_login_limit(LoginLimit {
        burst: 3,
        refill: StdDuration::from_secs(1_000),
    });
    // Signing in often never runs out.
    for _ in 0..6 {
        guess(&hub, "admin", ADMIN_PW).await.unwrap();
    }
    // However many guesses arrive at once, at most the burst reach the password check.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            guess(&hub, "admin", &format!("wrong-{i}"))
                .await
                .unwrap_err()
                .kind()
        }));
    }
    let mut checked = 0;
    for task in tasks {
        match task.await.unwrap() {
            ErrorKind::Unauthenticated => checked += 1,
            ErrorKind::RateLimited => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(checked, 3);
    // Now even the right password is refused, under any case, before the check.
    let audited = f.store.audit_after(0, 100_000).await.unwrap().len();
    let refused = guess(&hub, "ADMIN", ADMIN_PW).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::RateLimited);
    let wait = refused.retry_after().unwrap();
    assert!(
        wait > StdDuration::from_secs(990) && wait <= StdDuration::from_secs(1_000),
        "{wait:?}"
    );
    assert!(
        refused.to_string().starts_with("too many attempts"),
        "{refused}"
    );
    // An adapter refusing by a limit of its own can name the account's wait too.
    assert!(hub.login_retry_after("admin") > StdDuration::from_secs(990));
    assert_eq!(hub.login_retry_after("someone-else"), StdDuration::ZERO);
    assert_eq!(
        f.store.audit_after(0, 100_000).await.unwrap().len(),
        audited,
        "a refused attempt is not audited"
    );

    // An unknown name is throttled exactly as a known one.
    for _ in 0..3 {
        let e = guess(&hub, "nobody", "wrong").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    }
    assert_eq!(
        guess(&hub, "nobody", "wrong").await.unwrap_err().kind(),
        ErrorKind::RateLimited
    );

    // Wrong current passwords share the account's budget with its sign-ins.
    user(&f, "edith", Role::Editor).await;
    let edith = guess(&hub, "edith", USER_PW).await.unwrap();
    let change = |current: &str| {
        hub.change_own_password(&edith, current.into(), "edith-new-password-5678".into())
    };
    for _ in 0..3 {
        assert_eq!(
            change("wrong").await.unwrap_err().kind(),
            ErrorKind::Unauthenticated
        );
    }
    assert_eq!(
        guess(&hub, "edith", USER_PW).await.unwrap_err().kind(),
        ErrorKind::RateLimited
    );
    assert_eq!(
        change(USER_PW).await.unwrap_err().kind(),
        ErrorKind::RateLimited
    );
    // The hub keeps a budget only for names that reached the check.
    assert_eq!(hub.login_buckets(), 3);
}
