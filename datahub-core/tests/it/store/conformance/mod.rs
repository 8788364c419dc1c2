//! The backend-independent conformance cases: every rule of the `Store` contract, as one async
//! function per case taking a fresh, empty store.
//!
//! Instantiate the whole suite for a backend with one macro call in its module:
//!
//! ```ignore
//! use crate::store::conformance::conformance_suite;
//! // `fresh()` is async and returns `(Arc<dyn Store>, guard)`; the guard (a temp folder, a
//! // throwaway database) lives until the test ends.
//! conformance_suite!(fresh());
//! ```
//!
//! The cases are split by area of the contract, as the store's traits are: `connections.rs`,
//! `listing.rs`, `accounts.rs`, `sessions.rs`, `audit.rs`, `health.rs`, `admin.rs`, and
//! `concurrency.rs` across them. Each file lists its own cases in its `cases!` macro, next to
//! the functions, and the suite runs every area's list in a module of that name (tests are
//! `store::<backend>::<area>::<case>`). This module holds the fixtures.
//!
//! Every case owns the store it is given (nothing else writes to it), so it may count rows and
//! audit entries exactly. Cases create the users they refer to (owners, grantees, members), so a
//! backend that enforces foreign keys on them passes too.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use datahub_core::audit::{AuditEvent, AuditRecord, ChainVerifier, Outcome, truncate_to_micros};
use datahub_core::crypto::{KekId, Keyring, WrappedDek};
use datahub_core::model::{
    AuditQuery, ChannelBinding, Check, CheckFacts, ConnectionDraft, ConnectionName, ConnectionSpec,
    Engine, FailureKind, Health, HealthBucket, HealthStatus, ListQuery, MAX_PER_PAGE,
    MonitoringDraft, OptionsDraft, ServerInfo, SortKey, StepName, Tag, TargetPolicy, Team,
    TlsDraft, TlsInfo, TlsMode, TokenInfo, User, Visibility,
};
use datahub_core::monitor::uptime;
use datahub_core::rbac::{Grant, GrantLevel, Grantee, Role};
use datahub_core::secret::{Password, PrivateKeyPem};
use datahub_core::store::{
    CheckLease, SealedSecrets, Store, StoredConnection, StoredSession, StoredToken, StoredUser,
};
use datahub_core::{ConnectionId, ErrorKind, SessionId, TeamId, TokenId, UserId};
use time::{Duration, OffsetDateTime};

/// A store under test.
pub type Handle = Arc<dyn Store>;

pub(crate) mod accounts;
pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod concurrency;
pub(crate) mod connections;
pub(crate) mod health;
pub(crate) mod listing;
pub(crate) mod sessions;

// ------------------------------------------------------------------------------------------
// Fixtures
// ------------------------------------------------------------------------------------------

pub const CERT: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2V4\nZmFrZQ==\n-----END CERTIFICATE-----";
pub const CA: &str =
    "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ0FD\nQUNB\n-----END CERTIFICATE-----";
pub const KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIKey\n-----END PRIVATE KEY-----\n";

/// A keyring with one key, `k1` (or another id).
pub(crate) fn keyring(id: &str, byte: u8) -> Keyring {
    Keyring::parse(&format!("{id}:{}", STANDARD.encode([byte; 32]))).unwrap()
}

/// Now, at the microsecond precision stores keep.
pub(crate) fn now() -> OffsetDateTime {
    truncate_to_micros(OffsetDateTime::now_utc())
}

/// An audit event with `action`, by no one in particular.
pub(crate) fn ev(action: &str) -> AuditEvent {
    AuditEvent::now(None, "system", action, Some("test"), Outcome::Ok)
}

/// A spec with every field set away from its default.
pub(crate) fn full_spec(name: &str) -> ConnectionSpec {
    ConnectionDraft {
        name: name.into(),
        description: Some("Orders DB, primary\nsecond line".into()),
        engine: Some(Engine::Postgres),
        host: "db1.example.com".into(),
        port: Some(6543),
        database: "orders".into(),
        username: "alice".into(),
        password: Some(Password::from("pw")),
        tls: TlsDraft {
            mode: Some(TlsMode::VerifyCa),
            ca_cert_pem: Some(CA.into()),
            client_cert_pem: Some(CERT.into()),
            client_key_pem: Some(PrivateKeyPem::from(KEY)),
            channel_binding: Some(ChannelBinding::Require),
        },
        options: OptionsDraft {
            connect_timeout_ms: Some(1234),
            application_name: Some("datahub-test".into()),
        },
        tags: vec!["prod".into(), "eu-west".into(), "team:payments".into()],
        monitoring: MonitoringDraft {
            enabled: Some(false),
            interval_s: Some(30),
            slow_ms: Some(250),
        },
    }
    .validate()
    .unwrap()
    .0
}

/// A spec with only the required fields.
pub(crate) fn spec(
    name: &str,
    host: &str,
    description: Option<&str>,
    tags: &[&str],
) -> ConnectionSpec {
    ConnectionDraft {
        name: name.into(),
        description: description.map(Into::into),
        host: host.into(),
        database: "app".into(),
        username: "app".into(),
        password: Some(Password::from("pw")),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        ..ConnectionDraft::default()
    }
    .validate()
    .unwrap()
    .0
}

/// Secrets sealed with the real crypto under `keyring`.
pub(crate) fn sealed(
    keyring: &Keyring,
    id: ConnectionId,
    password: &str,
    key: bool,
) -> SealedSecrets {
    let (dek, wrapped) = keyring.new_dek(id).unwrap();
    SealedSecrets {
        dek: wrapped,
        password: dek.seal(id, "password", password.as_bytes()).unwrap(),
        client_key_pem: key.then(|| dek.seal(id, "tls.client_key_pem", KEY.as_bytes()).unwrap()),
    }
}

/// A new connection row (version 1) owned by `owner`.
pub(crate) fn row(spec: ConnectionSpec, owner: UserId) -> StoredConnection {
    let id = ConnectionId::new();
    let at = now();
    StoredConnection {
        id,
        spec,
        owner,
        version: 1,
        created_at: at,
        updated_at: at,
        secrets: sealed(&keyring("k1", 1), id, "pw", false),
    }
}

/// A user row (not yet stored).
pub(crate) fn user_row(name: &str, role: Role) -> StoredUser {
    let at = now();
    StoredUser {
        user: User {
            id: UserId::new(),
            username: name.into(),
            role,
            disabled: false,
            created_at: at,
            updated_at: at,
        },
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${name}"),
    }
}

/// Stores a new user and returns its id.
pub(crate) async fn user(store: &Handle, name: &str) -> UserId {
    let u = user_row(name, Role::Editor);
    store.insert_user(&u, &ev("user.create")).await.unwrap();
    u.user.id
}

/// Stores a new connection (simple spec) owned by `owner` and returns its row.
pub(crate) async fn conn(store: &Handle, name: &str, owner: UserId) -> StoredConnection {
    let r = row(spec(name, "db.example.com", None, &[]), owner);
    store
        .insert_connection(&r, &ev("connection.create"))
        .await
        .unwrap();
    r
}

/// Every audit record, in order, read in pages of `page`.
pub(crate) async fn audit_all(store: &Handle, page: u32) -> Vec<AuditRecord> {
    let mut out: Vec<AuditRecord> = Vec::new();
    loop {
        let after = out.last().map_or(0, |r| r.seq);
        let batch = store.audit_after(after, page).await.unwrap();
        if batch.is_empty() {
            return out;
        }
        assert!(batch.len() <= page as usize);
        out.extend(batch);
    }
}

/// Verifies the whole chain through `audit_after` pages; returns how many entries it holds.
pub(crate) async fn verify_chain(store: &Handle) -> u64 {
    let mut verifier = ChainVerifier::new();
    for r in audit_all(store, 7).await {
        verifier
            .push(&r)
            .unwrap_or_else(|b| panic!("chain broken: {b}"));
    }
    verifier.checked()
}

pub(crate) async fn audit_count(store: &Handle) -> usize {
    audit_all(store, MAX_PER_PAGE).await.len()
}

pub(crate) async fn last_action(store: &Handle) -> String {
    audit_all(store, MAX_PER_PAGE)
        .await
        .pop()
        .unwrap()
        .event
        .action
}

pub(crate) fn q() -> ListQuery {
    ListQuery::default()
}

pub(crate) async fn names(
    store: &Handle,
    query: &ListQuery,
    vis: &Visibility,
) -> (Vec<String>, u64) {
    let page = store.list_connections(query, vis).await.unwrap();
    let names = page
        .items
        .iter()
        .map(|s| s.spec.name.as_str().to_owned())
        .collect();
    (names, page.total)
}

pub(crate) fn health(status: HealthStatus, at: OffsetDateTime) -> Health {
    Health {
        status,
        checked_at: Some(at),
        latency_ms: Some(12),
        error_kind: (status == HealthStatus::Down).then_some(FailureKind::Timeout),
        uptime_24h: Some(0.75),
        facts: None,
    }
}

pub(crate) fn check(id: ConnectionId, at: OffsetDateTime, status: HealthStatus) -> Check {
    Check {
        connection: id,
        at,
        ok: status == HealthStatus::Healthy,
        latency_ms: 12,
        error_kind: (status == HealthStatus::Down).then_some(FailureKind::Timeout),
        step: (status == HealthStatus::Down).then_some(StepName::Tcp),
        status,
    }
}

// ------------------------------------------------------------------------------------------
// The suite macro
// ------------------------------------------------------------------------------------------

/// Declares, in one module per area, one `#[tokio::test]` per conformance case. `$make` is an
/// expression of a future resolving to `(Arc<dyn Store>, guard)`; it is evaluated afresh for
/// every test. Each area's file lists its own cases (its `cases!` macro).
macro_rules! conformance_suite {
    ($make:expr) => {
        mod connections {
            use super::*;
            $crate::store::conformance::connections::cases!($make);
        }
        mod listing {
            use super::*;
            $crate::store::conformance::listing::cases!($make);
        }
        mod accounts {
            use super::*;
            $crate::store::conformance::accounts::cases!($make);
        }
        mod sessions {
            use super::*;
            $crate::store::conformance::sessions::cases!($make);
        }
        mod audit {
            use super::*;
            $crate::store::conformance::audit::cases!($make);
        }
        mod health {
            use super::*;
            $crate::store::conformance::health::cases!($make);
        }
        mod admin {
            use super::*;
            $crate::store::conformance::admin::cases!($make);
        }
        mod concurrency {
            use super::*;
            $crate::store::conformance::concurrency::cases!($make);
        }
    };
}
pub(crate) use conformance_suite;

/// One `#[tokio::test]` per case of `$area`, each on a fresh store from `$make`.
macro_rules! run_cases {
    ($make:expr; $area:ident; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make.await;
                $crate::store::conformance::$area::$case(store).await;
            }
        )+
    };
}
pub(crate) use run_cases;
