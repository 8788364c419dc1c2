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
    Engine, FailureKind, Health, HealthStatus, ListQuery, MAX_PER_PAGE, MonitoringDraft,
    OptionsDraft, ServerInfo, SortKey, StepName, Tag, TargetPolicy, Team, TlsDraft, TlsInfo,
    TlsMode, TokenInfo, User, Visibility,
};
use datahub_core::rbac::{Grant, GrantLevel, Grantee, Role};
use datahub_core::secret::{Password, PrivateKeyPem};
use datahub_core::store::{
    SealedSecrets, Store, StoredConnection, StoredSession, StoredToken, StoredUser,
};
use datahub_core::{ConnectionId, ErrorKind, SessionId, TeamId, TokenId, UserId};
use time::{Duration, OffsetDateTime};

/// A store under test.
pub type Handle = Arc<dyn Store>;

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
pub fn keyring(id: &str, byte: u8) -> Keyring {
    Keyring::parse(&format!("{id}:{}", STANDARD.encode([byte; 32]))).unwrap()
}

/// Now, at the microsecond precision stores keep.
pub fn now() -> OffsetDateTime {
    truncate_to_micros(OffsetDateTime::now_utc())
}

/// An audit event with `action`, by no one in particular.
pub fn ev(action: &str) -> AuditEvent {
    AuditEvent::now(None, "system", action, Some("test"), Outcome::Ok)
}

/// A spec with every field set away from its default.
pub fn full_spec(name: &str) -> ConnectionSpec {
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
pub fn spec(name: &str, host: &str, description: Option<&str>, tags: &[&str]) -> ConnectionSpec {
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
pub fn sealed(keyring: &Keyring, id: ConnectionId, password: &str, key: bool) -> SealedSecrets {
    let (dek, wrapped) = keyring.new_dek(id).unwrap();
    SealedSecrets {
        dek: wrapped,
        password: dek.seal(id, "password", password.as_bytes()).unwrap(),
        client_key_pem: key.then(|| dek.seal(id, "tls.client_key_pem", KEY.as_bytes()).unwrap()),
    }
}

/// A new connection row (version 1) owned by `owner`.
pub fn row(spec: ConnectionSpec, owner: UserId) -> StoredConnection {
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
pub fn user_row(name: &str, role: Role) -> StoredUser {
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
pub async fn user(store: &Handle, name: &str) -> UserId {
    let u = user_row(name, Role::Editor);
    store.insert_user(&u, &ev("user.create")).await.unwrap();
    u.user.id
}

/// Stores a new connection (simple spec) owned by `owner` and returns its row.
pub async fn conn(store: &Handle, name: &str, owner: UserId) -> StoredConnection {
    let r = row(spec(name, "db.example.com", None, &[]), owner);
    store
        .insert_connection(&r, &ev("connection.create"))
        .await
        .unwrap();
    r
}

/// Every audit record, in order, read in pages of `page`.
pub async fn audit_all(store: &Handle, page: u32) -> Vec<AuditRecord> {
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
pub async fn verify_chain(store: &Handle) -> u64 {
    let mut verifier = ChainVerifier::new();
    for r in audit_all(store, 7).await {
        verifier
            .push(&r)
            .unwrap_or_else(|b| panic!("chain broken: {b}"));
    }
    verifier.checked()
}

async fn audit_count(store: &Handle) -> usize {
    audit_all(store, MAX_PER_PAGE).await.len()
}

async fn last_action(store: &Handle) -> String {
    audit_all(store, MAX_PER_PAGE)
        .await
        .pop()
        .unwrap()
        .event
        .action
}

fn q() -> ListQuery {
    ListQuery::default()
}

async fn names(store: &Handle, query: &ListQuery, vis: &Visibility) -> (Vec<String>, u64) {
    let page = store.list_connections(query, vis).await.unwrap();
    let names = page
        .items
        .iter()
        .map(|s| s.spec.name.as_str().to_owned())
        .collect();
    (names, page.total)
}

fn health(status: HealthStatus, at: OffsetDateTime) -> Health {
    Health {
        status,
        checked_at: Some(at),
        latency_ms: Some(12),
        error_kind: (status == HealthStatus::Down).then_some(FailureKind::Timeout),
        uptime_24h: Some(0.75),
        facts: None,
    }
}

fn check(id: ConnectionId, at: OffsetDateTime, status: HealthStatus) -> Check {
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

/// Declares one `#[tokio::test]` per conformance case. `$make` is an expression of a future
/// resolving to `(Arc<dyn Store>, guard)`; it is evaluated afresh for every test.
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::store::conformance::conformance_suite!(@cases $make;
            round_trip_of_every_field,
            name_taken_is_a_conflict,
            update_bumps_the_version,
            stale_update_is_a_conflict_and_changes_nothing,
            delete_checks_the_version_and_cascades,
            search_is_case_insensitive_over_every_field,
            search_takes_wildcards_literally,
            search_stays_inside_one_field_at_any_length,
            search_follows_updates_and_deletes,
            search_combines_with_filters_sorts_paging_and_visibility,
            filters_narrow_the_list,
            sorts,
            pagination_and_bounds,
            visibility_hides_rows_and_counts,
            grants_set_replace_read,
            named_grants_and_the_directory,
            users,
            teams,
            tokens,
            tokens_record_their_last_use_once_a_minute,
            sessions_round_trip_touch_and_logout,
            sessions_end_with_their_user_and_are_pruned,
            every_write_appends_one_audit_record,
            audit_page_filters_and_pages_newest_first,
            health_checks_and_summary,
            check_facts_are_kept_until_a_check_brings_new_ones,
            check_leases_one_winner_per_interval,
            policy_default_then_set,
            key_usage_and_rotation_batches,
            key_checks_and_samples,
            concurrent_updates_one_wins,
            concurrent_audited_writes_keep_the_chain,
            concurrent_writes_fail_alone,
        );
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make.await;
                $crate::store::conformance::$case(store).await;
            }
        )+
    };
}
pub(crate) use conformance_suite;

// ------------------------------------------------------------------------------------------
// Cases: connections
// ------------------------------------------------------------------------------------------

pub async fn round_trip_of_every_field(store: Handle) {
    let owner = user(&store, "owner").await;
    let mut r = row(full_spec("orders-primary"), owner);
    r.secrets = sealed(&keyring("k1", 1), r.id, "canary-pw", true);
    store
        .insert_connection(&r, &ev("connection.create"))
        .await
        .unwrap();

    let got = store.connection(r.id).await.unwrap().unwrap();
    assert_eq!(got, r);
    assert_eq!(
        got.secrets.password.as_bytes(),
        r.secrets.password.as_bytes()
    );
    assert_eq!(got.secrets.dek.to_bytes(), r.secrets.dek.to_bytes());
    assert_eq!(
        got.secrets.client_key_pem.as_ref().unwrap().as_bytes(),
        r.secrets.client_key_pem.as_ref().unwrap().as_bytes()
    );
    // The sealed bytes still open with the key.
    let dek = keyring("k1", 1).unwrap_dek(r.id, &got.secrets.dek).unwrap();
    let pw = dek.open(r.id, "password", &got.secrets.password).unwrap();
    assert_eq!(pw.expose_secret(), b"canary-pw");

    let by_name = store
        .connection_by_name(&r.spec.name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_name, r);

    let s = store.connection_summary(r.id).await.unwrap().unwrap();
    assert_eq!(s.id, r.id);
    assert_eq!(s.spec, r.spec);
    assert_eq!(s.owner, owner);
    assert_eq!(s.version, 1);
    assert_eq!((s.created_at, s.updated_at), (r.created_at, r.updated_at));
    assert_eq!(s.health, Health::default());

    // Minimal spec: the optional fields come back absent.
    let m = row(spec("minimal", "10.0.0.1", None, &[]), owner);
    store
        .insert_connection(&m, &ev("connection.create"))
        .await
        .unwrap();
    assert_eq!(store.connection(m.id).await.unwrap().unwrap(), m);

    assert!(
        store
            .connection(ConnectionId::new())
            .await
            .unwrap()
            .is_none()
    );
    let nobody = ConnectionName::parse("nobody").unwrap();
    assert!(store.connection_by_name(&nobody).await.unwrap().is_none());
    assert!(
        store
            .connection_summary(ConnectionId::new())
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn name_taken_is_a_conflict(store: Handle) {
    let owner = user(&store, "owner").await;
    let a = conn(&store, "orders", owner).await;
    let before = audit_count(&store).await;
    let b = row(spec("orders", "other.example.com", None, &[]), owner);
    let err = store
        .insert_connection(&b, &ev("connection.create"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.field(), Some("name"));
    // Nothing written, not even the audit record.
    assert_eq!(audit_count(&store).await, before);
    assert!(store.connection(b.id).await.unwrap().is_none());
    assert_eq!(
        store
            .connection_by_name(&a.spec.name)
            .await
            .unwrap()
            .unwrap()
            .id,
        a.id
    );
    // Renaming onto a taken name is a conflict too.
    let c = conn(&store, "other", owner).await;
    let mut renamed = c.clone();
    renamed.spec.name = ConnectionName::parse("orders").unwrap();
    let err = store
        .update_connection(&renamed, 1, &ev("connection.update"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.field(), Some("name"));
}

pub async fn update_bumps_the_version(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let mut changed = r.clone();
    changed.spec = full_spec("orders-renamed");
    changed.updated_at = r.updated_at + Duration::seconds(5);
    changed.secrets = sealed(&keyring("k2", 2), r.id, "new-pw", true);
    let v = store
        .update_connection(&changed, 1, &ev("connection.update"))
        .await
        .unwrap();
    assert_eq!(v, 2);
    let got = store.connection(r.id).await.unwrap().unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(got.spec, changed.spec);
    assert_eq!(got.secrets, changed.secrets);
    assert_eq!(got.created_at, r.created_at);
    assert_eq!(got.updated_at, changed.updated_at);
    assert_eq!(got.owner, owner);
    // Found under its new name only.
    assert!(
        store
            .connection_by_name(&r.spec.name)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .connection_by_name(&changed.spec.name)
            .await
            .unwrap()
            .is_some()
    );
    // Tags were replaced, not appended: the list filters see the new ones only.
    let mut tq = q();
    tq.tag = Some(Tag::parse("prod").unwrap());
    assert_eq!(names(&store, &tq, &Visibility::All).await.1, 1);
    let v = store
        .update_connection(&r, 2, &ev("connection.update"))
        .await
        .unwrap();
    assert_eq!(v, 3);
    assert_eq!(names(&store, &tq, &Visibility::All).await.1, 0);
}

pub async fn stale_update_is_a_conflict_and_changes_nothing(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let mut first = r.clone();
    first.spec.port = datahub_core::model::Port::new(1111).unwrap();
    store
        .update_connection(&first, 1, &ev("connection.update"))
        .await
        .unwrap();
    let before = audit_count(&store).await;
    let mut second = r.clone();
    second.spec.port = datahub_core::model::Port::new(2222).unwrap();
    let err = store
        .update_connection(&second, 1, &ev("connection.update"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let got = store.connection(r.id).await.unwrap().unwrap();
    assert_eq!(got.spec.port.get(), 1111);
    assert_eq!(got.version, 2);
    assert_eq!(audit_count(&store).await, before);
    // A version from the future is stale too.
    let err = store
        .update_connection(&second, 9, &ev("connection.update"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    // An unknown id is NotFound, not Conflict.
    let ghost = row(spec("ghost", "db.example.com", None, &[]), owner);
    let err = store
        .update_connection(&ghost, 1, &ev("connection.update"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

pub async fn delete_checks_the_version_and_cascades(store: Handle) {
    let owner = user(&store, "owner").await;
    let viewer = user(&store, "viewer").await;
    let r = conn(&store, "orders", owner).await;
    let grant = Grant {
        grantee: Grantee::User(viewer),
        level: GrantLevel::View,
    };
    crate::store_set_grants(store.as_ref(), r.id, &[grant], &ev("grant.set"))
        .await
        .unwrap();
    let at = now();
    store
        .record_check(
            &check(r.id, at, HealthStatus::Healthy),
            &health(HealthStatus::Healthy, at),
        )
        .await
        .unwrap();

    // The grants moved the version on: the one the row was inserted with is stale now.
    let version = store
        .connection_summary(r.id)
        .await
        .unwrap()
        .unwrap()
        .version;
    assert_eq!(version, r.version + 1);
    let err = store
        .delete_connection(r.id, r.version, &ev("connection.delete"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(store.connection(r.id).await.unwrap().is_some());
    let err = store
        .delete_connection(ConnectionId::new(), 1, &ev("connection.delete"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    store
        .delete_connection(r.id, version, &ev("connection.delete"))
        .await
        .unwrap();
    assert!(store.connection(r.id).await.unwrap().is_none());
    assert!(store.connection_summary(r.id).await.unwrap().is_none());
    assert!(store.grants(r.id).await.unwrap().is_empty());
    let since = at - Duration::days(1);
    assert!(store.checks(r.id, since, 10).await.unwrap().is_empty());
    // The name is free again, and the new connection has no leftover health or grants.
    let again = conn(&store, "orders", owner).await;
    assert_eq!(
        store
            .connection_summary(again.id)
            .await
            .unwrap()
            .unwrap()
            .health,
        Health::default()
    );
    let vis = Visibility::Member {
        user: viewer,
        teams: vec![],
    };
    assert_eq!(names(&store, &q(), &vis).await.1, 0);
    let err = store
        .delete_connection(r.id, 1, &ev("connection.delete"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

// ------------------------------------------------------------------------------------------
// Cases: listing
// ------------------------------------------------------------------------------------------

pub async fn search_is_case_insensitive_over_every_field(store: Handle) {
    let owner = user(&store, "owner").await;
    for r in [
        row(spec("alpha-name", "h1.example.com", None, &[]), owner),
        row(
            spec("beta", "h2.example.com", Some("Has a ZEBRA Inside"), &[]),
            owner,
        ),
        row(spec("gamma", "pg-kangaroo.internal", None, &[]), owner),
        row(
            spec("delta", "h4.example.com", None, &["Wombat-tag"]),
            owner,
        ),
        row(
            spec("epsilon", "h5.example.com", Some("Ärger über Öl"), &[]),
            owner,
        ),
    ] {
        store
            .insert_connection(&r, &ev("connection.create"))
            .await
            .unwrap();
    }
    let cases = [
        ("ALPHA", "alpha-name"),
        ("zebra", "beta"),
        ("a zeBRa i", "beta"),
        ("KANGAROO", "gamma"),
        ("wombat", "delta"),
        ("WOMBAT-T", "delta"),
        ("ärger", "epsilon"),
        ("ÜBER", "epsilon"),
    ];
    for (search, expected) in cases {
        let mut query = q();
        query.search = Some(search.into());
        let (found, total) = names(&store, &query, &Visibility::All).await;
        assert_eq!(found, [expected], "search {search:?}");
        assert_eq!(total, 1, "search {search:?}");
    }
    let mut query = q();
    query.search = Some("no-such-thing".into());
    assert_eq!(names(&store, &query, &Visibility::All).await.1, 0);
    // An empty search matches everything.
    query.search = Some(String::new());
    assert_eq!(names(&store, &query, &Visibility::All).await.1, 5);
}

pub async fn search_takes_wildcards_literally(store: Handle) {
    let owner = user(&store, "owner").await;
    for r in [
        row(spec("a_b", "h1.example.com", None, &[]), owner),
        row(spec("axb", "h2.example.com", None, &[]), owner),
        row(spec("pct", "h3.example.com", Some("100% sure"), &[]), owner),
        row(
            spec("nopct", "h4.example.com", Some("1000 sure"), &[]),
            owner,
        ),
        row(
            spec("slash", "h5.example.com", Some("C:\\data"), &[]),
            owner,
        ),
        row(
            spec("noslash", "h6.example.com", Some("C:data"), &[]),
            owner,
        ),
    ] {
        store
            .insert_connection(&r, &ev("connection.create"))
            .await
            .unwrap();
    }
    for (search, expected) in [
        ("a_b", vec!["a_b"]),
        ("_", vec!["a_b"]),
        ("0%", vec!["pct"]),
        ("%", vec!["pct"]),
        ("\\", vec!["slash"]),
        ("c:\\d", vec!["slash"]),
        ("%%", vec![]),
    ] {
        let mut query = q();
        query.search = Some(search.into());
        let (found, total) = names(&store, &query, &Visibility::All).await;
        assert_eq!(found, expected, "search {search:?}");
        assert_eq!(total as usize, expected.len(), "search {search:?}");
    }
}

/// Searches of one and two characters (too short for a trigram index), non-ASCII text, quotes
/// and characters with a meaning in full-text query syntax, and matches that would span two
/// fields (name and description, description and host, host and a tag, two tags).
pub async fn search_stays_inside_one_field_at_any_length(store: Handle) {
    let owner = user(&store, "owner").await;
    for r in [
        row(
            spec("span-x", "h1.example.com", Some("yz tail"), &["t1", "t2"]),
            owner,
        ),
        row(
            spec("other", "h2.example.com", Some("Ça ÉTÉ ΣΊΣΥΦΟΣ"), &["k"]),
            owner,
        ),
        row(
            spec(
                "quoted",
                "h3.example.com",
                Some("say \"hi\" NEAR(x) *"),
                &[],
            ),
            owner,
        ),
    ] {
        store
            .insert_connection(&r, &ev("connection.create"))
            .await
            .unwrap();
    }
    for (search, expected) in [
        ("-", vec!["span-x"]),
        ("K", vec!["other"]),
        ("Ç", vec!["other"]),
        ("ÇA", vec!["other"]),
        ("yz", vec!["span-x"]),
        ("été", vec!["other"]),
        ("ΣΥΦ", vec!["other"]),
        ("σίσυφος", vec!["other"]),
        ("\"hi\"", vec!["quoted"]),
        ("y \"h", vec!["quoted"]),
        ("near(x)", vec!["quoted"]),
        ("*", vec!["quoted"]),
        (") *", vec!["quoted"]),
        ("h1.example", vec!["span-x"]),
        (".example.com", vec!["other", "quoted", "span-x"]),
        // Across fields: name|description, description|host, host|tag, tag|tag.
        ("xy", vec![]),
        ("-xyz", vec![]),
        ("tailh", vec![]),
        ("comt", vec![]),
        ("t1t2", vec![]),
        ("x\u{1f}y", vec![]),
        ("\u{1f}", vec![]),
        // Query syntax is literal.
        ("h1 OR h2", vec![]),
        ("ex*", vec![]),
        ("\"", vec!["quoted"]),
    ] {
        let mut query = q();
        query.search = Some(search.into());
        let (found, total) = names(&store, &query, &Visibility::All).await;
        assert_eq!(found, expected, "search {search:?}");
        assert_eq!(total as usize, expected.len(), "search {search:?}");
    }
}

/// A search sees the latest version of a connection, and never a deleted one.
pub async fn search_follows_updates_and_deletes(store: Handle) {
    let owner = user(&store, "owner").await;
    let mut r = row(
        spec("alpha", "h1.example.com", Some("old words"), &["red"]),
        owner,
    );
    store
        .insert_connection(&r, &ev("connection.create"))
        .await
        .unwrap();
    let search = |s: &str| {
        let mut query = q();
        query.search = Some(s.into());
        query
    };
    assert_eq!(
        names(&store, &search("old wo"), &Visibility::All).await.1,
        1
    );
    r.spec = spec("renamed", "h9.example.com", Some("new words"), &["blue"]);
    store
        .update_connection(&r, 1, &ev("connection.update"))
        .await
        .unwrap();
    for gone in ["old wo", "alpha", "h1.ex", "red"] {
        assert_eq!(
            names(&store, &search(gone), &Visibility::All).await,
            (vec![], 0),
            "{gone:?}"
        );
    }
    for now_there in ["new wo", "renamed", "h9.ex", "blue", "ue"] {
        assert_eq!(
            names(&store, &search(now_there), &Visibility::All).await,
            (vec!["renamed".into()], 1),
            "{now_there:?}"
        );
    }
    // A stale delete leaves the connection findable.
    assert!(
        store
            .delete_connection(r.id, 1, &ev("connection.delete"))
            .await
            .is_err()
    );
    assert_eq!(
        names(&store, &search("renamed"), &Visibility::All).await.1,
        1
    );
    store
        .delete_connection(r.id, 2, &ev("connection.delete"))
        .await
        .unwrap();
    assert_eq!(
        names(&store, &search("renamed"), &Visibility::All).await.1,
        0
    );
    assert_eq!(names(&store, &search("ue"), &Visibility::All).await.1, 0);
    // The name is free again, and a new connection under it is found.
    conn(&store, "renamed", owner).await;
    assert_eq!(
        names(&store, &search("renamed"), &Visibility::All).await.1,
        1
    );
}

/// A search narrows the same list the filters, sorts, pages and visibility apply to.
pub async fn search_combines_with_filters_sorts_paging_and_visibility(store: Handle) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let team = Team {
        id: TeamId::new(),
        name: "payments".into(),
        members: vec![bob],
    };
    store.upsert_team(&team, &ev("team.create")).await.unwrap();
    let base = now();
    let mut ids = Vec::new();
    // Names and update times run in opposite orders; "zz-other" never matches the search.
    for (i, (name, owner, tags)) in [
        ("d-match", alice, &["prod"][..]),
        ("c-match", bob, &["prod"][..]),
        ("b-match", alice, &[][..]),
        ("a-match", alice, &["dev"][..]),
        ("zz-other", alice, &["prod"][..]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut r = row(spec(name, "h.example.com", None, tags), owner);
        r.updated_at = base + Duration::seconds(i as i64);
        store
            .insert_connection(&r, &ev("connection.create"))
            .await
            .unwrap();
        ids.push((name, r.id));
    }
    let id = |n: &str| ids.iter().find(|(name, _)| *name == n).unwrap().1;
    for (name, status) in [
        ("a-match", HealthStatus::Healthy),
        ("b-match", HealthStatus::Down),
        ("d-match", HealthStatus::Down),
        ("zz-other", HealthStatus::Down),
    ] {
        store
            .record_check(&check(id(name), base, status), &health(status, base))
            .await
            .unwrap();
    }
    crate::store_set_grants(
        store.as_ref(),
        id("a-match"),
        &[Grant {
            grantee: Grantee::Team(team.id),
            level: GrantLevel::View,
        }],
        &ev("grant.set"),
    )
    .await
    .unwrap();
    crate::store_set_grants(
        store.as_ref(),
        id("d-match"),
        &[Grant {
            grantee: Grantee::User(bob),
            level: GrantLevel::View,
        }],
        &ev("grant.set"),
    )
    .await
    .unwrap();
    let all = Visibility::All;
    // Three characters or more (indexed) and two (scanned) must agree.
    for term in ["-MATCH", "ch"] {
        let mut query = q();
        query.search = Some(term.into());
        assert_eq!(
            names(&store, &query, &all).await,
            (
                vec![
                    "a-match".into(),
                    "b-match".into(),
                    "c-match".into(),
                    "d-match".into()
                ],
                4
            ),
            "{term}"
        );
        query.sort = SortKey::Updated;
        assert_eq!(
            names(&store, &query, &all).await.0,
            ["a-match", "b-match", "c-match", "d-match"],
            "{term}"
        );
        query.sort = SortKey::Status;
        // down (b, d), unknown (c), healthy (a).
        assert_eq!(
            names(&store, &query, &all).await.0,
            ["b-match", "d-match", "c-match", "a-match"],
            "{term}"
        );
        query.sort = SortKey::Name;
        query.tag = Some(Tag::parse("prod").unwrap());
        assert_eq!(
            names(&store, &query, &all).await,
            (vec!["c-match".into(), "d-match".into()], 2),
            "{term}"
        );
        query.status = Some(HealthStatus::Down);
        assert_eq!(
            names(&store, &query, &all).await,
            (vec!["d-match".into()], 1),
            "{term}"
        );
        query.tag = None;
        query.status = None;
        query.engine = Some(Engine::Postgres);
        query.owner = Some(alice);
        assert_eq!(
            names(&store, &query, &all).await,
            (
                vec!["a-match".into(), "b-match".into(), "d-match".into()],
                3
            ),
            "{term}"
        );
        query.engine = None;
        query.owner = None;
        // Bob sees his own, the one granted to him and the one granted to his team.
        let bob_vis = Visibility::Member {
            user: bob,
            teams: vec![team.id],
        };
        assert_eq!(
            names(&store, &query, &bob_vis).await,
            (
                vec!["a-match".into(), "c-match".into(), "d-match".into()],
                3
            ),
            "{term}"
        );
        let bob_alone = Visibility::Member {
            user: bob,
            teams: vec![],
        };
        assert_eq!(
            names(&store, &query, &bob_alone).await,
            (vec!["c-match".into(), "d-match".into()], 2),
            "{term}"
        );
        // Pages, and a page past the end still counts.
        query.per_page = 3;
        for (page, expected) in [
            (1, vec!["a-match", "b-match", "c-match"]),
            (2, vec!["d-match"]),
            (3, vec![]),
        ] {
            query.page = page;
            let (found, total) = names(&store, &query, &all).await;
            assert_eq!(found, expected, "{term} page {page}");
            assert_eq!(total, 4, "{term} page {page}");
        }
        query.page = 2;
        query.per_page = 1;
        assert_eq!(
            names(&store, &query, &bob_vis).await,
            (vec!["c-match".into()], 3),
            "{term}"
        );
    }
}

pub async fn filters_narrow_the_list(store: Handle) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let a = row(spec("a", "h1.example.com", None, &["prod", "eu"]), alice);
    let b = row(spec("b", "h2.example.com", None, &["staging"]), bob);
    let c = row(spec("c", "h3.example.com", None, &["prod-like"]), alice);
    for r in [&a, &b, &c] {
        store
            .insert_connection(r, &ev("connection.create"))
            .await
            .unwrap();
    }
    let at = now();
    store
        .record_check(
            &check(a.id, at, HealthStatus::Down),
            &health(HealthStatus::Down, at),
        )
        .await
        .unwrap();
    store
        .record_check(
            &check(b.id, at, HealthStatus::Healthy),
            &health(HealthStatus::Healthy, at),
        )
        .await
        .unwrap();
    let all = Visibility::All;

    let mut query = q();
    query.tag = Some(Tag::parse("prod").unwrap());
    assert_eq!(names(&store, &query, &all).await, (vec!["a".into()], 1));
    query.tag = Some(Tag::parse("PROD-LIKE").unwrap());
    assert_eq!(names(&store, &query, &all).await, (vec!["c".into()], 1));

    let mut query = q();
    query.status = Some(HealthStatus::Down);
    assert_eq!(names(&store, &query, &all).await, (vec!["a".into()], 1));
    query.status = Some(HealthStatus::Healthy);
    assert_eq!(names(&store, &query, &all).await, (vec!["b".into()], 1));
    query.status = Some(HealthStatus::Unknown);
    assert_eq!(names(&store, &query, &all).await, (vec!["c".into()], 1));
    query.status = Some(HealthStatus::Degraded);
    assert_eq!(names(&store, &query, &all).await, (vec![], 0));

    let mut query = q();
    query.engine = Some(Engine::Postgres);
    assert_eq!(names(&store, &query, &all).await.1, 3);

    let mut query = q();
    query.owner = Some(alice);
    assert_eq!(
        names(&store, &query, &all).await,
        (vec!["a".into(), "c".into()], 2)
    );
    query.owner = Some(bob);
    query.tag = Some(Tag::parse("prod").unwrap());
    assert_eq!(names(&store, &query, &all).await, (vec![], 0));
}

pub async fn sorts(store: Handle) {
    let owner = user(&store, "owner").await;
    let base = now();
    let mut ids = Vec::new();
    // Names and update times run in opposite orders.
    for (i, name) in ["d", "c", "b", "a", "e"].into_iter().enumerate() {
        let mut r = row(spec(name, "h.example.com", None, &[]), owner);
        r.updated_at = base + Duration::seconds(i as i64);
        store
            .insert_connection(&r, &ev("connection.create"))
            .await
            .unwrap();
        ids.push((name, r.id));
    }
    let id = |n: &str| ids.iter().find(|(name, _)| *name == n).unwrap().1;
    // Last checks and latencies in yet other orders; `d` was never checked.
    for (name, status, after, latency) in [
        ("a", HealthStatus::Healthy, 1, Some(30)),
        ("b", HealthStatus::Degraded, 3, Some(5)),
        ("c", HealthStatus::Down, 2, None),
        ("e", HealthStatus::Down, 0, Some(30)),
    ] {
        let at = base + Duration::seconds(after);
        let summary = Health {
            latency_ms: latency,
            ..health(status, at)
        };
        store
            .record_check(&check(id(name), at, status), &summary)
            .await
            .unwrap();
    }
    let all = Visibility::All;
    let mut query = q();
    assert_eq!(
        names(&store, &query, &all).await.0,
        ["a", "b", "c", "d", "e"]
    );
    query.sort = SortKey::Updated;
    assert_eq!(
        names(&store, &query, &all).await.0,
        ["e", "a", "b", "c", "d"]
    );
    query.sort = SortKey::Status;
    // down (c, e), degraded (b), unknown (d), healthy (a); ties by name.
    assert_eq!(
        names(&store, &query, &all).await.0,
        ["c", "e", "b", "d", "a"]
    );
    query.sort = SortKey::Checked;
    // Most recent check first, never checked last.
    assert_eq!(
        names(&store, &query, &all).await.0,
        ["b", "c", "a", "e", "d"]
    );
    query.sort = SortKey::Latency;
    // Slowest first (ties by name), no latency last.
    assert_eq!(
        names(&store, &query, &all).await.0,
        ["a", "e", "b", "c", "d"]
    );
    // The same orders through a search (the narrow search rows join the health).
    query.search = Some("h.example".into());
    assert_eq!(
        names(&store, &query, &all).await.0,
        ["a", "e", "b", "c", "d"]
    );
    query.sort = SortKey::Checked;
    assert_eq!(
        names(&store, &query, &all).await.0,
        ["b", "c", "a", "e", "d"]
    );
}

pub async fn pagination_and_bounds(store: Handle) {
    let owner = user(&store, "owner").await;
    for name in ["a", "b", "c", "d", "e"] {
        conn(&store, name, owner).await;
    }
    let all = Visibility::All;
    let mut query = q();
    query.per_page = 2;
    let mut seen = Vec::new();
    for (page, expected) in [(1, 2), (2, 2), (3, 1), (4, 0)] {
        query.page = page;
        let p = store.list_connections(&query, &all).await.unwrap();
        assert_eq!(p.items.len(), expected, "page {page}");
        assert_eq!((p.total, p.page, p.per_page), (5, page, 2));
        seen.extend(p.items.into_iter().map(|s| s.spec.name.into_string()));
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);

    for (page, per_page, field) in [
        (0, 10, "page"),
        (1, 0, "per_page"),
        (1, MAX_PER_PAGE + 1, "per_page"),
    ] {
        query.page = page;
        query.per_page = per_page;
        let err = store.list_connections(&query, &all).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.field(), Some(field));
    }
    query.page = 1;
    query.per_page = MAX_PER_PAGE;
    assert_eq!(
        store
            .list_connections(&query, &all)
            .await
            .unwrap()
            .items
            .len(),
        5
    );
}

pub async fn visibility_hides_rows_and_counts(store: Handle) {
    let alice = user(&store, "alice").await;
    let bob = user(&store, "bob").await;
    let carol = user(&store, "carol").await;
    let team = Team {
        id: TeamId::new(),
        name: "payments".into(),
        members: vec![carol],
    };
    store.upsert_team(&team, &ev("team.create")).await.unwrap();
    let own = conn(&store, "own", alice).await;
    let direct = conn(&store, "direct", bob).await;
    let via_team = conn(&store, "via-team", bob).await;
    let _hidden = conn(&store, "hidden", bob).await;
    crate::store_set_grants(
        store.as_ref(),
        direct.id,
        &[Grant {
            grantee: Grantee::User(alice),
            level: GrantLevel::View,
        }],
        &ev("grant.set"),
    )
    .await
    .unwrap();
    crate::store_set_grants(
        store.as_ref(),
        via_team.id,
        &[Grant {
            grantee: Grantee::Team(team.id),
            level: GrantLevel::Use,
        }],
        &ev("grant.set"),
    )
    .await
    .unwrap();
    let _ = own;

    let alice_alone = Visibility::Member {
        user: alice,
        teams: vec![],
    };
    assert_eq!(
        names(&store, &q(), &alice_alone).await,
        (vec!["direct".into(), "own".into()], 2)
    );
    let alice_in_team = Visibility::Member {
        user: alice,
        teams: vec![team.id, TeamId::new()],
    };
    assert_eq!(
        names(&store, &q(), &alice_in_team).await,
        (vec!["direct".into(), "own".into(), "via-team".into()], 3)
    );
    let carol_vis = Visibility::Member {
        user: carol,
        teams: vec![team.id],
    };
    assert_eq!(
        names(&store, &q(), &carol_vis).await,
        (vec!["via-team".into()], 1)
    );
    let stranger = Visibility::Member {
        user: UserId::new(),
        teams: vec![TeamId::new()],
    };
    assert_eq!(names(&store, &q(), &stranger).await, (vec![], 0));
    // Search, filters and paging stay inside what is visible.
    let mut query = q();
    query.search = Some("hidden".into());
    assert_eq!(names(&store, &query, &alice_in_team).await, (vec![], 0));
    let mut query = q();
    query.per_page = 1;
    query.page = 2;
    let p = store.list_connections(&query, &alice_alone).await.unwrap();
    assert_eq!(p.total, 2);
    assert_eq!(p.items[0].spec.name.as_str(), "own");
    assert_eq!(names(&store, &q(), &Visibility::All).await.1, 4);
    // Revoking takes effect on the next call.
    crate::store_set_grants(store.as_ref(), direct.id, &[], &ev("grant.set"))
        .await
        .unwrap();
    assert_eq!(names(&store, &q(), &alice_alone).await.1, 1);
}

// ------------------------------------------------------------------------------------------
// Cases: grants, users, teams, tokens
// ------------------------------------------------------------------------------------------

fn sorted(mut g: Vec<Grant>) -> Vec<Grant> {
    g.sort_by_key(|g| (g.grantee, g.level));
    g
}

pub async fn grants_set_replace_read(store: Handle) {
    let owner = user(&store, "owner").await;
    let u = user(&store, "viewer").await;
    let team = Team {
        id: TeamId::new(),
        name: "ops".into(),
        members: vec![],
    };
    store.upsert_team(&team, &ev("team.create")).await.unwrap();
    let r = conn(&store, "orders", owner).await;
    assert!(store.grants(r.id).await.unwrap().is_empty());
    let set = vec![
        Grant {
            grantee: Grantee::User(u),
            level: GrantLevel::View,
        },
        Grant {
            grantee: Grantee::Team(team.id),
            level: GrantLevel::Use,
        },
    ];
    crate::store_set_grants(store.as_ref(), r.id, &set, &ev("grant.set"))
        .await
        .unwrap();
    assert_eq!(sorted(store.grants(r.id).await.unwrap()), sorted(set));
    let replaced = vec![Grant {
        grantee: Grantee::User(u),
        level: GrantLevel::Manage,
    }];
    crate::store_set_grants(store.as_ref(), r.id, &replaced, &ev("grant.set"))
        .await
        .unwrap();
    assert_eq!(store.grants(r.id).await.unwrap(), replaced);

    // S26: every replacement names the version read and bumps it; a stale one changes nothing.
    let v = store
        .connection_summary(r.id)
        .await
        .unwrap()
        .unwrap()
        .version;
    assert_eq!(v, r.version + 2, "each replacement bumped the version");
    let before = audit_count(&store).await;
    let err = store
        .set_grants(r.id, v - 1, &[], &ev("grant.set"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.field(), Some("version"));
    assert_eq!(store.grants(r.id).await.unwrap(), replaced);
    assert_eq!(audit_count(&store).await, before);
    assert_eq!(
        store
            .set_grants(r.id, v, &replaced, &ev("grant.set"))
            .await
            .unwrap(),
        v + 1
    );
    assert_eq!(
        store
            .connection_summary(r.id)
            .await
            .unwrap()
            .unwrap()
            .version,
        v + 1
    );

    let before = audit_count(&store).await;
    for (id, grantee) in [
        (ConnectionId::new(), Grantee::User(u)),
        (r.id, Grantee::User(UserId::new())),
        (r.id, Grantee::Team(TeamId::new())),
    ] {
        let g = [Grant {
            grantee,
            level: GrantLevel::View,
        }];
        let err = crate::store_set_grants(store.as_ref(), id, &g, &ev("grant.set"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{grantee:?}");
    }
    // A failed replacement leaves the old set and no audit record.
    assert_eq!(store.grants(r.id).await.unwrap(), replaced);
    assert_eq!(audit_count(&store).await, before);
}

pub async fn named_grants_and_the_directory(store: Handle) {
    let owner = user(&store, "owner").await;
    let zed = user(&store, "zed.ops").await;
    let amy = user(&store, "amy-ops").await;
    let mut gone = user_row("opsgone", Role::Viewer);
    gone.user.disabled = true;
    store.insert_user(&gone, &ev("user.create")).await.unwrap();
    let ops = Team {
        id: TeamId::new(),
        name: "ops".into(),
        members: vec![],
    };
    let dev = Team {
        id: TeamId::new(),
        name: "dev_ops%".into(),
        members: vec![],
    };
    store.upsert_team(&ops, &ev("team.create")).await.unwrap();
    store.upsert_team(&dev, &ev("team.create")).await.unwrap();
    let r = conn(&store, "orders", owner).await;
    assert!(store.named_grants(r.id).await.unwrap().is_empty());
    let set = vec![
        Grant {
            grantee: Grantee::Team(ops.id),
            level: GrantLevel::Use,
        },
        Grant {
            grantee: Grantee::User(zed),
            level: GrantLevel::View,
        },
        Grant {
            grantee: Grantee::User(amy),
            level: GrantLevel::Manage,
        },
    ];
    crate::store_set_grants(store.as_ref(), r.id, &set, &ev("grant.set"))
        .await
        .unwrap();
    // The same grants in the same order as `grants`, each with its grantee's name.
    let named = store.named_grants(r.id).await.unwrap();
    let plain: Vec<Grant> = named.iter().map(|g| g.grant).collect();
    assert_eq!(plain, store.grants(r.id).await.unwrap());
    let names: Vec<(Grantee, &str)> = named
        .iter()
        .map(|g| (g.grant.grantee, g.name.as_str()))
        .collect();
    let expected_user = |id: UserId| match id {
        x if x == zed => "zed.ops",
        x if x == amy => "amy-ops",
        _ => panic!("unexpected grantee"),
    };
    for (grantee, name) in &names {
        match grantee {
            Grantee::User(u) => assert_eq!(*name, expected_user(*u)),
            Grantee::Team(t) => {
                assert_eq!(*t, ops.id);
                assert_eq!(*name, "ops");
            }
        }
    }
    assert!(
        matches!(names.last(), Some((Grantee::Team(_), _))),
        "users' grants first"
    );

    // The directory: enabled users and teams whose name contains the needle, by name.
    let dir = store.directory("ops", 20).await.unwrap();
    let users: Vec<&str> = dir.users.iter().map(|u| u.username.as_str()).collect();
    let teams: Vec<&str> = dir.teams.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        users,
        ["amy-ops", "zed.ops"],
        "the disabled user is not listed"
    );
    assert_eq!(teams, ["dev_ops%", "ops"]);
    assert_eq!(dir.users[0].id, amy);
    assert_eq!(dir.teams[1].id, ops.id);
    // Every name for the empty needle; the limit applies to each list.
    let all = store.directory("", 20).await.unwrap();
    let users: Vec<&str> = all.users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(users, ["amy-ops", "owner", "zed.ops"]);
    assert_eq!(all.teams.len(), 2);
    let one = store.directory("", 1).await.unwrap();
    assert_eq!((one.users.len(), one.teams.len()), (1, 1));
    assert_eq!(one.users[0].username, "amy-ops");
    // Plain text: no wildcard, and the needle is compared in lowercase.
    for (needle, users, teams) in [
        ("%", 0, 1),
        ("_", 0, 1),
        (".", 1, 0),
        ("OPS", 2, 2),
        ("zzz", 0, 0),
    ] {
        let got = store.directory(needle, 20).await.unwrap();
        assert_eq!(
            (got.users.len(), got.teams.len()),
            (users, teams),
            "{needle}"
        );
    }
}

pub async fn users(store: Handle) {
    assert_eq!(store.user_count().await.unwrap(), 0);
    let bob = user_row("bob", Role::Viewer);
    let alice = user_row("alice", Role::Admin);
    store.insert_user(&bob, &ev("user.create")).await.unwrap();
    store.insert_user(&alice, &ev("user.create")).await.unwrap();
    assert_eq!(store.user_count().await.unwrap(), 2);
    assert_eq!(store.user(bob.user.id).await.unwrap().unwrap(), bob);
    assert_eq!(store.user_by_name("alice").await.unwrap().unwrap(), alice);
    assert!(store.user_by_name("ALICE").await.unwrap().is_none());
    assert!(store.user(UserId::new()).await.unwrap().is_none());
    let all = store.users().await.unwrap();
    assert_eq!(all, [alice.clone(), bob.clone()]);

    let mut dup = user_row("bob", Role::Editor);
    dup.user.id = UserId::new();
    let err = store
        .insert_user(&dup, &ev("user.create"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.field(), Some("username"));
    assert_eq!(store.user_count().await.unwrap(), 2);

    let mut changed = bob.clone();
    changed.user.role = Role::Auditor;
    changed.user.disabled = true;
    changed.password_hash = "$argon2id$new".into();
    changed.user.updated_at = bob.user.updated_at + Duration::seconds(3);
    store
        .update_user(&changed, &ev("user.update"))
        .await
        .unwrap();
    assert_eq!(store.user(bob.user.id).await.unwrap().unwrap(), changed);

    let ghost = user_row("ghost", Role::Viewer);
    let err = store
        .update_user(&ghost, &ev("user.update"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

pub async fn teams(store: Handle) {
    let a = user(&store, "a").await;
    let b = user(&store, "b").await;
    let owner = user(&store, "owner").await;
    let mut t1 = Team {
        id: TeamId::new(),
        name: "zeta".into(),
        members: vec![a, b],
    };
    let t2 = Team {
        id: TeamId::new(),
        name: "alpha".into(),
        members: vec![b],
    };
    store.upsert_team(&t1, &ev("team.create")).await.unwrap();
    store.upsert_team(&t2, &ev("team.create")).await.unwrap();
    let norm = |mut t: Team| {
        t.members.sort();
        t
    };
    let got: Vec<Team> = store.teams().await.unwrap().into_iter().map(norm).collect();
    assert_eq!(got, [norm(t2.clone()), norm(t1.clone())]);
    assert_eq!(store.teams_of(a).await.unwrap(), [t1.id]);
    let mut of_b = store.teams_of(b).await.unwrap();
    of_b.sort();
    let mut expected = vec![t1.id, t2.id];
    expected.sort();
    assert_eq!(of_b, expected);

    // Upsert replaces the name and the members.
    t1.name = "omega".into();
    t1.members = vec![a];
    store.upsert_team(&t1, &ev("team.update")).await.unwrap();
    assert!(store.teams_of(b).await.unwrap() == [t2.id]);
    let names: Vec<String> = store
        .teams()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["alpha", "omega"]);

    let clash = Team {
        id: TeamId::new(),
        name: "alpha".into(),
        members: vec![],
    };
    let err = store
        .upsert_team(&clash, &ev("team.create"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.field(), Some("name"));
    let bad_member = Team {
        id: TeamId::new(),
        name: "beta".into(),
        members: vec![UserId::new()],
    };
    let err = store
        .upsert_team(&bad_member, &ev("team.create"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(store.teams().await.unwrap().len(), 2);

    // Deleting a team removes its memberships and its grants.
    let r = conn(&store, "orders", owner).await;
    let g = [
        Grant {
            grantee: Grantee::Team(t1.id),
            level: GrantLevel::Use,
        },
        Grant {
            grantee: Grantee::User(a),
            level: GrantLevel::View,
        },
    ];
    crate::store_set_grants(store.as_ref(), r.id, &g, &ev("grant.set"))
        .await
        .unwrap();
    store.delete_team(t1.id, &ev("team.delete")).await.unwrap();
    assert_eq!(store.grants(r.id).await.unwrap(), [g[1]]);
    assert!(store.teams_of(a).await.unwrap().is_empty());
    assert_eq!(store.teams().await.unwrap().len(), 1);
    let err = store
        .delete_team(t1.id, &ev("team.delete"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

pub async fn tokens(store: Handle) {
    let u = user(&store, "alice").await;
    let at = now();
    let t1 = StoredToken {
        info: TokenInfo {
            id: TokenId::new(),
            user: u,
            name: "ci".into(),
            read_only: true,
            created_at: at,
            expires_at: Some(at + Duration::days(30)),
            revoked_at: None,
            last_used_at: None,
        },
        hash: [1; 32],
    };
    let t2 = StoredToken {
        info: TokenInfo {
            id: TokenId::new(),
            user: u,
            name: "notebook".into(),
            read_only: false,
            created_at: at + Duration::seconds(1),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        },
        hash: [2; 32],
    };
    store.insert_token(&t1, &ev("token.create")).await.unwrap();
    store.insert_token(&t2, &ev("token.create")).await.unwrap();
    assert_eq!(store.token_by_hash(&[1; 32]).await.unwrap().unwrap(), t1);
    assert_eq!(store.token_by_hash(&[2; 32]).await.unwrap().unwrap(), t2);
    assert!(store.token_by_hash(&[3; 32]).await.unwrap().is_none());
    let mut of = store.tokens_of(u).await.unwrap();
    of.sort_by_key(|t| t.info.created_at);
    assert_eq!(of, [t1.clone(), t2.clone()]);
    assert!(store.tokens_of(UserId::new()).await.unwrap().is_empty());

    let revoked_at = at + Duration::minutes(5);
    store
        .revoke_token(t1.info.id, revoked_at, &ev("token.revoke"))
        .await
        .unwrap();
    let got = store.token_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(got.info.revoked_at, Some(revoked_at));
    assert_eq!(
        store
            .token_by_hash(&[2; 32])
            .await
            .unwrap()
            .unwrap()
            .info
            .revoked_at,
        None
    );
    let err = store
        .revoke_token(TokenId::new(), revoked_at, &ev("token.revoke"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

pub async fn tokens_record_their_last_use_once_a_minute(store: Handle) {
    let u = user(&store, "alice").await;
    let at = now();
    let token = |n: u8| StoredToken {
        info: TokenInfo {
            id: TokenId::new(),
            user: u,
            name: format!("t{n}"),
            read_only: false,
            created_at: at,
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        },
        hash: [n; 32],
    };
    let (live, revoked) = (token(51), token(52));
    for t in [&live, &revoked] {
        store.insert_token(t, &ev("token.create")).await.unwrap();
    }
    let last_used = |n: u8| {
        let store = store.clone();
        async move {
            store
                .token_by_hash(&[n; 32])
                .await
                .unwrap()
                .unwrap()
                .info
                .last_used_at
        }
    };
    assert_eq!(last_used(51).await, None, "unused until the first use");
    let audited = store.audit_after(0, 1000).await.unwrap().len();

    // The first use is recorded; another within the minute writes nothing.
    let first = at + Duration::seconds(1);
    assert!(store.touch_token(live.info.id, first).await.unwrap());
    assert_eq!(last_used(51).await, Some(first));
    for later in [Duration::seconds(2), Duration::seconds(59)] {
        assert!(
            !store
                .touch_token(live.info.id, first + later)
                .await
                .unwrap()
        );
        assert_eq!(last_used(51).await, Some(first));
    }
    // A use stamped before the recorded one (a slow replica) never moves it back.
    assert!(
        !store
            .touch_token(live.info.id, first - Duration::minutes(5))
            .await
            .unwrap()
    );
    assert_eq!(last_used(51).await, Some(first));
    // A minute on, the next use is recorded.
    let next = first + Duration::seconds(60);
    assert!(store.touch_token(live.info.id, next).await.unwrap());
    assert_eq!(last_used(51).await, Some(next));
    assert_eq!(
        store.tokens_of(u).await.unwrap()[0].info.last_used_at,
        Some(next),
        "the list carries it"
    );

    // A revoked token's use is never recorded; an unknown token changes nothing.
    store
        .revoke_token(revoked.info.id, at, &ev("token.revoke"))
        .await
        .unwrap();
    assert!(!store.touch_token(revoked.info.id, next).await.unwrap());
    assert_eq!(last_used(52).await, None);
    assert!(!store.touch_token(TokenId::new(), next).await.unwrap());
    // Never audited: the one record since is the revocation.
    assert_eq!(store.audit_after(0, 1000).await.unwrap().len(), audited + 1);
}

// ------------------------------------------------------------------------------------------
// Cases: sessions
// ------------------------------------------------------------------------------------------

fn session(user: UserId, hash: u8, at: OffsetDateTime) -> StoredSession {
    StoredSession {
        id: SessionId::new(),
        user,
        hash: [hash; 32],
        created_at: at,
        expires_at: at + Duration::hours(12),
        last_seen_at: at,
        client_addr: Some("127.0.0.7".into()),
        user_agent: None,
    }
}

pub async fn sessions_round_trip_touch_and_logout(store: Handle) {
    let u = user(&store, "alice").await;
    let at = now();
    let s1 = StoredSession {
        user_agent: Some("Mozilla/5.0 (X11)".into()),
        ..session(u, 1, at)
    };
    let s2 = StoredSession {
        client_addr: None,
        ..session(u, 2, at + Duration::seconds(1))
    };
    let audits = audit_count(&store).await;
    store.insert_session(&s1).await.unwrap();
    store.insert_session(&s2).await.unwrap();
    // Starting a session is not audited on its own (the login is).
    assert_eq!(audit_count(&store).await, audits);
    assert_eq!(store.session_by_hash(&[1; 32]).await.unwrap().unwrap(), s1);
    assert_eq!(store.session_by_hash(&[2; 32]).await.unwrap().unwrap(), s2);
    assert!(store.session_by_hash(&[3; 32]).await.unwrap().is_none());
    assert_eq!(
        store.sessions_of(u).await.unwrap(),
        [s1.clone(), s2.clone()]
    );
    assert!(store.sessions_of(UserId::new()).await.unwrap().is_empty());

    // The same id or hash twice is a conflict; an unknown user is not found.
    let again = StoredSession {
        id: SessionId::new(),
        ..s1.clone()
    };
    assert_eq!(
        store.insert_session(&again).await.unwrap_err().kind(),
        ErrorKind::Conflict
    );
    let orphan = session(UserId::new(), 9, at);
    let err = store.insert_session(&orphan).await.unwrap_err();
    assert_eq!(
        (err.kind(), err.field()),
        (ErrorKind::NotFound, Some("user_id"))
    );

    // A touch moves the last use forward only.
    let later = at + Duration::minutes(2);
    assert!(store.touch_session(s1.id, later).await.unwrap());
    assert!(!store.touch_session(s1.id, later).await.unwrap());
    assert!(!store.touch_session(s1.id, at).await.unwrap());
    assert!(!store.touch_session(SessionId::new(), later).await.unwrap());
    let got = store.session_by_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(got.last_seen_at, later);
    assert_eq!(
        (got.created_at, got.expires_at),
        (s1.created_at, s1.expires_at)
    );
    assert_eq!(audit_count(&store).await, audits);

    // A logout deletes one session with its audit row; a second one changes nothing.
    assert!(
        store
            .delete_session(s1.id, &ev("auth.logout"))
            .await
            .unwrap()
    );
    assert_eq!(audit_count(&store).await, audits + 1);
    assert_eq!(last_action(&store).await, "auth.logout");
    assert!(store.session_by_hash(&[1; 32]).await.unwrap().is_none());
    assert!(
        !store
            .delete_session(s1.id, &ev("auth.logout"))
            .await
            .unwrap()
    );
    assert_eq!(audit_count(&store).await, audits + 1);
    assert_eq!(store.sessions_of(u).await.unwrap(), [s2]);
    verify_chain(&store).await;
}

pub async fn sessions_end_with_their_user_and_are_pruned(store: Handle) {
    let at = now();
    let mut alice = user_row("alice", Role::Editor);
    store.insert_user(&alice, &ev("user.create")).await.unwrap();
    let bob = user(&store, "bob").await;
    for (i, u) in [(1, alice.user.id), (2, alice.user.id), (3, bob)] {
        store.insert_session(&session(u, i, at)).await.unwrap();
    }
    // Tokens: alice's live one, alice's revoked one, bob's.
    let token = |user, n: u8, revoked_at| StoredToken {
        info: TokenInfo {
            id: TokenId::new(),
            user,
            name: format!("t{n}"),
            read_only: false,
            created_at: at,
            expires_at: None,
            revoked_at,
            last_used_at: None,
        },
        hash: [n; 32],
    };
    let earlier = Some(at - Duration::seconds(5));
    for t in [
        token(alice.user.id, 41, None),
        token(alice.user.id, 42, earlier),
        token(bob, 43, None),
    ] {
        store.insert_token(&t, &ev("token.create")).await.unwrap();
    }
    let revoked = |n: u8| {
        let store = &store;
        async move {
            store
                .token_by_hash(&[n; 32])
                .await
                .unwrap()
                .unwrap()
                .info
                .revoked_at
        }
    };
    let audits = audit_count(&store).await;

    // Disabling alice ends her sessions, in the one transaction with the change and its row,
    // and revokes her tokens for good (S33), keeping an earlier revocation's time.
    alice.user.disabled = true;
    alice.user.updated_at = at + Duration::seconds(1);
    let ended = store
        .update_user_ending_sessions(&alice, &ev("user.update"))
        .await
        .unwrap();
    assert_eq!(ended, 2);
    assert_eq!(revoked(41).await, Some(alice.user.updated_at));
    assert_eq!(revoked(42).await, earlier);
    assert_eq!(revoked(43).await, None);
    // Enabling her again (with a new password) brings none back.
    alice.user.disabled = false;
    store
        .update_user_ending_sessions(&alice, &ev("user.update"))
        .await
        .unwrap();
    assert_eq!(revoked(41).await, Some(alice.user.updated_at));
    alice.user.disabled = true;
    store.update_user(&alice, &ev("user.update")).await.unwrap();
    let audits = audits + 2;
    assert!(
        store
            .user(alice.user.id)
            .await
            .unwrap()
            .unwrap()
            .user
            .disabled
    );
    assert!(store.sessions_of(alice.user.id).await.unwrap().is_empty());
    assert_eq!(store.sessions_of(bob).await.unwrap().len(), 1);
    assert_eq!(audit_count(&store).await, audits + 1);
    assert_eq!(last_action(&store).await, "user.update");
    // Nothing left to end is fine; an unknown user is not found and appends nothing.
    assert_eq!(
        store
            .update_user_ending_sessions(&alice, &ev("user.update"))
            .await
            .unwrap(),
        0
    );
    let ghost = user_row("ghost", Role::Viewer);
    let err = store
        .update_user_ending_sessions(&ghost, &ev("user.update"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(audit_count(&store).await, audits + 2);

    // Ending every session of a user is audited even when there were none.
    assert_eq!(
        store
            .delete_sessions_of_user(bob, &ev("auth.logout_all"))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .delete_sessions_of_user(bob, &ev("auth.logout_all"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(audit_count(&store).await, audits + 4);

    // Pruning: expired at or before now, or last used before the idle cutoff.
    let now_ = at + Duration::hours(1);
    let idle_before = now_ - Duration::minutes(30);
    let expired = StoredSession {
        expires_at: now_,
        last_seen_at: now_ - Duration::minutes(1),
        ..session(bob, 10, at)
    };
    let idle = StoredSession {
        last_seen_at: idle_before - Duration::microseconds(1),
        ..session(bob, 11, at)
    };
    let edge = StoredSession {
        last_seen_at: idle_before,
        ..session(bob, 12, at)
    };
    let live = StoredSession {
        expires_at: now_ + Duration::microseconds(1),
        last_seen_at: now_,
        ..session(bob, 13, at)
    };
    for s in [&expired, &idle, &edge, &live] {
        store.insert_session(s).await.unwrap();
    }
    assert_eq!(store.prune_sessions(now_, idle_before).await.unwrap(), 2);
    let mut left: Vec<[u8; 32]> = store
        .sessions_of(bob)
        .await
        .unwrap()
        .iter()
        .map(|s| s.hash)
        .collect();
    left.sort_unstable();
    assert_eq!(left, [[12; 32], [13; 32]]);
    assert_eq!(store.prune_sessions(now_, idle_before).await.unwrap(), 0);
    // Housekeeping is not audited.
    assert_eq!(audit_count(&store).await, audits + 4);
    verify_chain(&store).await;
}

// ------------------------------------------------------------------------------------------
// Cases: audit
// ------------------------------------------------------------------------------------------

pub async fn every_write_appends_one_audit_record(store: Handle) {
    let mut expected = 0usize;
    macro_rules! step {
        ($action:literal, $call:expr) => {{
            let out = $call.await.unwrap();
            expected += 1;
            assert_eq!(audit_count(&store).await, expected, $action);
            assert_eq!(last_action(&store).await, $action);
            out
        }};
    }
    let owner = user_row("owner", Role::Editor);
    step!(
        "a.user.create",
        store.insert_user(&owner, &ev("a.user.create"))
    );
    let mut o2 = owner.clone();
    o2.user.role = Role::Admin;
    step!(
        "a.user.update",
        store.update_user(&o2, &ev("a.user.update"))
    );
    let r = row(full_spec("orders"), owner.user.id);
    step!(
        "a.conn.create",
        store.insert_connection(&r, &ev("a.conn.create"))
    );
    step!(
        "a.conn.update",
        store.update_connection(&r, 1, &ev("a.conn.update"))
    );
    let team = Team {
        id: TeamId::new(),
        name: "t".into(),
        members: vec![owner.user.id],
    };
    step!(
        "a.team.upsert",
        store.upsert_team(&team, &ev("a.team.upsert"))
    );
    let g = [Grant {
        grantee: Grantee::Team(team.id),
        level: GrantLevel::View,
    }];
    step!(
        "a.grant.set",
        crate::store_set_grants(store.as_ref(), r.id, &g, &ev("a.grant.set"))
    );
    step!(
        "a.team.delete",
        store.delete_team(team.id, &ev("a.team.delete"))
    );
    let token = StoredToken {
        info: TokenInfo {
            id: TokenId::new(),
            user: owner.user.id,
            name: "t".into(),
            read_only: false,
            created_at: now(),
            expires_at: None,
            revoked_at: None,
            last_used_at: None,
        },
        hash: [9; 32],
    };
    step!(
        "a.token.create",
        store.insert_token(&token, &ev("a.token.create"))
    );
    step!(
        "a.token.revoke",
        store.revoke_token(token.info.id, now(), &ev("a.token.revoke"))
    );
    step!(
        "a.policy.set",
        store.set_policy(&TargetPolicy::default(), &ev("a.policy.set"))
    );
    let rec = step!("a.login", store.append_audit(&ev("a.login")));
    assert_eq!(rec.seq as usize, expected);
    step!(
        "a.conn.delete",
        store.delete_connection(r.id, 3, &ev("a.conn.delete"))
    );
    // Health checks and key re-wraps are not audited by the store.
    let before = audit_count(&store).await;
    let at = now();
    store
        .record_check(
            &check(ConnectionId::new(), at, HealthStatus::Healthy),
            &health(HealthStatus::Healthy, at),
        )
        .await
        .unwrap();
    assert_eq!(audit_count(&store).await, before);

    assert_eq!(verify_chain(&store).await as usize, expected);
    // The stored event reads back exactly as given, every field.
    let full = AuditEvent::now(
        Some(owner.user.id),
        "al\nice",
        "connection.update",
        Some("connection:x"),
        Outcome::Denied,
    )
    .with_changed_fields(&["host", "", "1:x", "tls.mode"])
    .with_request(Some("127.0.0.1:5000"), Some("req-1"));
    let rec = store.append_audit(&full).await.unwrap();
    assert_eq!(rec.event, full);
    let back = store.audit_after(rec.seq - 1, 10).await.unwrap();
    assert_eq!(back, [rec]);
    verify_chain(&store).await;
}

pub async fn audit_page_filters_and_pages_newest_first(store: Handle) {
    let alice = UserId::new();
    let bob = UserId::new();
    for i in 0..10u32 {
        let actor = if i % 2 == 0 { alice } else { bob };
        let action = if i < 5 {
            "connection.create"
        } else {
            "auth.login"
        };
        let target = format!("connection:{}", i % 3);
        let e = AuditEvent::now(Some(actor), "x", action, Some(&target), Outcome::Ok);
        store.append_audit(&e).await.unwrap();
    }
    let query = |actor, action: Option<&str>, target: Option<&str>, page, per_page| AuditQuery {
        actor,
        action: action.map(Into::into),
        target: target.map(Into::into),
        since: None,
        until: None,
        page,
        per_page,
    };
    let seqs = |p: &datahub_core::model::Page<AuditRecord>| {
        p.items.iter().map(|r| r.seq).collect::<Vec<_>>()
    };
    let p = store
        .audit_page(&query(None, None, None, 1, 4))
        .await
        .unwrap();
    assert_eq!((seqs(&p), p.total), (vec![10, 9, 8, 7], 10));
    let p = store
        .audit_page(&query(None, None, None, 3, 4))
        .await
        .unwrap();
    assert_eq!((seqs(&p), p.total), (vec![2, 1], 10));
    let p = store
        .audit_page(&query(Some(alice), None, None, 1, 50))
        .await
        .unwrap();
    assert_eq!((seqs(&p), p.total), (vec![9, 7, 5, 3, 1], 5));
    let p = store
        .audit_page(&query(None, Some("auth.login"), None, 1, 50))
        .await
        .unwrap();
    assert_eq!((seqs(&p), p.total), (vec![10, 9, 8, 7, 6], 5));
    let p = store
        .audit_page(&query(
            Some(bob),
            Some("connection.create"),
            Some("connection:1"),
            1,
            50,
        ))
        .await
        .unwrap();
    assert_eq!((seqs(&p), p.total), (vec![2], 1));
    let p = store
        .audit_page(&query(None, Some("connection"), None, 1, 50))
        .await
        .unwrap();
    assert_eq!(p.total, 0, "action is matched exactly");
    // A time window: since is inclusive, until exclusive, both with the others.
    let all = store
        .audit_page(&query(None, None, None, 1, 50))
        .await
        .unwrap();
    let mut times: Vec<(u64, time::OffsetDateTime)> =
        all.items.iter().map(|r| (r.seq, r.event.at)).collect();
    times.sort();
    let (since, until) = (times[3].1, times[7].1);
    let expected = |pick: &dyn Fn(time::OffsetDateTime) -> bool| {
        let mut seqs: Vec<u64> = times
            .iter()
            .filter(|(_, at)| pick(*at))
            .map(|(seq, _)| *seq)
            .collect();
        seqs.reverse();
        seqs
    };
    let window = |since, until| AuditQuery {
        since,
        until,
        ..query(None, None, None, 1, 50)
    };
    let p = store.audit_page(&window(Some(since), None)).await.unwrap();
    assert_eq!(seqs(&p), expected(&|at| at >= since));
    assert!(seqs(&p).contains(&4));
    let p = store.audit_page(&window(None, Some(until))).await.unwrap();
    assert_eq!(seqs(&p), expected(&|at| at < until));
    assert!(!seqs(&p).contains(&8));
    let p = store
        .audit_page(&window(Some(since), Some(until)))
        .await
        .unwrap();
    assert_eq!(seqs(&p), expected(&|at| at >= since && at < until));
    assert_eq!(p.total, seqs(&p).len() as u64);
    let p = store
        .audit_page(&AuditQuery {
            actor: Some(alice),
            ..window(Some(since), None)
        })
        .await
        .unwrap();
    assert!(
        p.items
            .iter()
            .all(|r| r.event.at >= since && r.seq % 2 == 1)
    );
    for (page, per_page, field) in [(0, 5, "page"), (1, 0, "per_page"), (1, 201, "per_page")] {
        let err = store
            .audit_page(&query(None, None, None, page, per_page))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(err.field(), Some(field));
    }
    // audit_after pages forward.
    let after = store.audit_after(3, 4).await.unwrap();
    assert_eq!(
        after.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [4, 5, 6, 7]
    );
    assert!(store.audit_after(10, 4).await.unwrap().is_empty());
}

// ------------------------------------------------------------------------------------------
// Cases: health, policy, keys
// ------------------------------------------------------------------------------------------

pub async fn health_checks_and_summary(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let other = conn(&store, "other", owner).await;
    let base = now() - Duration::hours(10);
    for i in 0..5 {
        let at = base + Duration::hours(i);
        let status = if i == 4 {
            HealthStatus::Down
        } else {
            HealthStatus::Healthy
        };
        store
            .record_check(&check(r.id, at, status), &health(status, at))
            .await
            .unwrap();
    }
    store
        .record_check(
            &check(other.id, base, HealthStatus::Healthy),
            &health(HealthStatus::Healthy, base),
        )
        .await
        .unwrap();
    let got = store.checks(r.id, base, 100).await.unwrap();
    assert_eq!(got.len(), 5);
    assert!(got.windows(2).all(|w| w[0].at > w[1].at), "newest first");
    assert_eq!(
        got[0],
        check(r.id, base + Duration::hours(4), HealthStatus::Down)
    );
    let got = store
        .checks(r.id, base + Duration::hours(2), 100)
        .await
        .unwrap();
    assert_eq!(got.len(), 3, "since is inclusive");
    let got = store.checks(r.id, base, 2).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].at, base + Duration::hours(3));

    let s = store.connection_summary(r.id).await.unwrap().unwrap();
    assert_eq!(
        s.health,
        health(HealthStatus::Down, base + Duration::hours(4))
    );

    let pruned = store.prune_checks(base + Duration::hours(2)).await.unwrap();
    assert_eq!(pruned, 3, "two of orders and one of other");
    assert_eq!(store.checks(r.id, base, 100).await.unwrap().len(), 3);
    assert!(store.checks(other.id, base, 100).await.unwrap().is_empty());
    // Pruning history keeps the current health.
    let s = store.connection_summary(other.id).await.unwrap().unwrap();
    assert_eq!(s.health.status, HealthStatus::Healthy);

    // A check of an unknown (deleted) connection is dropped without error.
    let ghost = ConnectionId::new();
    store
        .record_check(
            &check(ghost, base, HealthStatus::Healthy),
            &health(HealthStatus::Healthy, base),
        )
        .await
        .unwrap();
    assert!(store.checks(ghost, base, 10).await.unwrap().is_empty());
}

pub async fn check_facts_are_kept_until_a_check_brings_new_ones(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let plain = conn(&store, "plain", owner).await;
    let t0 = now() - Duration::minutes(10);
    let facts = |at: OffsetDateTime, version: &str, tls: bool| CheckFacts {
        at,
        server: Some(ServerInfo {
            version: version.into(),
            in_recovery: true,
            connections_used: Some(7),
            max_connections: Some(100),
        }),
        tls: tls.then(|| TlsInfo {
            protocol: Some("TLSv1.3".into()),
            cipher: Some("TLS_AES_256_GCM_SHA384".into()),
            peer_subject: Some("CN=db.example.com".into()),
            peer_not_after: Some(t0 + Duration::days(90)),
        }),
    };
    let with = |status: HealthStatus, at: OffsetDateTime, f: Option<CheckFacts>| Health {
        facts: f,
        ..health(status, at)
    };
    // Never checked, and checked without reaching the server: no facts.
    assert_eq!(
        store
            .connection_summary(r.id)
            .await
            .unwrap()
            .unwrap()
            .health
            .facts,
        None
    );
    store
        .record_check(
            &check(r.id, t0, HealthStatus::Down),
            &with(HealthStatus::Down, t0, None),
        )
        .await
        .unwrap();
    let s = store.connection_summary(r.id).await.unwrap().unwrap();
    assert_eq!(s.health.facts, None);
    assert_eq!(s.health.status, HealthStatus::Down);

    // A check that reached the server stores its facts with the health.
    let t1 = t0 + Duration::minutes(1);
    let first = facts(t1, "16.4", true);
    store
        .record_check(
            &check(r.id, t1, HealthStatus::Healthy),
            &with(HealthStatus::Healthy, t1, Some(first.clone())),
        )
        .await
        .unwrap();
    let s = store.connection_summary(r.id).await.unwrap().unwrap();
    assert_eq!(
        s.health,
        with(HealthStatus::Healthy, t1, Some(first.clone()))
    );

    // A failed check updates the health and keeps the facts.
    let t2 = t1 + Duration::minutes(1);
    store
        .record_check(
            &check(r.id, t2, HealthStatus::Down),
            &with(HealthStatus::Down, t2, None),
        )
        .await
        .unwrap();
    let s = store.connection_summary(r.id).await.unwrap().unwrap();
    assert_eq!(s.health, with(HealthStatus::Down, t2, Some(first)));

    // New facts replace the old ones whole: without TLS this time, nothing of the old TLS
    // facts stays.
    let t3 = t2 + Duration::minutes(1);
    let second = facts(t3, "17.0", false);
    store
        .record_check(
            &check(r.id, t3, HealthStatus::Healthy),
            &with(HealthStatus::Healthy, t3, Some(second.clone())),
        )
        .await
        .unwrap();
    let s = store.connection_summary(r.id).await.unwrap().unwrap();
    assert_eq!(s.health.facts, Some(second.clone()));

    // A list shows the same facts; another connection's are its own.
    store
        .record_check(
            &check(plain.id, t3, HealthStatus::Healthy),
            &with(HealthStatus::Healthy, t3, None),
        )
        .await
        .unwrap();
    let page = store
        .list_connections(&q(), &Visibility::All)
        .await
        .unwrap();
    let facts_of = |id: ConnectionId| {
        page.items
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.health.facts.clone())
            .unwrap()
    };
    assert_eq!(facts_of(r.id), Some(second));
    assert_eq!(facts_of(plain.id), None);

    // The step of each check round-trips; a success has none.
    let history = store.checks(r.id, t0, 10).await.unwrap();
    let steps: Vec<Option<StepName>> = history.iter().map(|c| c.step).collect();
    assert_eq!(
        steps,
        [None, Some(StepName::Tcp), None, Some(StepName::Tcp)],
        "newest first"
    );
}

pub async fn check_leases_one_winner_per_interval(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let (a, b) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let hold = std::time::Duration::from_secs(8);
    let t0 = now();
    // Two holders racing for the same check: exactly one wins.
    let (x, y) = tokio::join!(
        store.lease_check(r.id, a, t0, hold),
        store.lease_check(r.id, b, t0, hold)
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(
        u8::from(x.is_some()) + u8::from(y.is_some()),
        1,
        "{x:?} {y:?}"
    );
    let (winner, loser) = if x.is_some() { (a, b) } else { (b, a) };
    let won = x.or(y).unwrap();
    assert_eq!(won.previous_holder, None, "first claim ever");
    // The claim carries the connection as stored (sealed secrets included): a check reads
    // nothing more.
    assert_eq!(Some(won.connection), store.connection(r.id).await.unwrap());
    // Within the hold the other holder loses; the winner may claim again (its own recheck).
    let t1 = t0 + Duration::seconds(5);
    assert_eq!(
        store.lease_check(r.id, loser, t1, hold).await.unwrap(),
        None
    );
    let again = store.lease_check(r.id, winner, t1, hold).await.unwrap();
    assert_eq!(again.unwrap().previous_holder, Some(winner));
    // A later interval can be won by the other holder, who learns who held it before.
    let t2 = t1 + Duration::seconds(8);
    let later = store.lease_check(r.id, loser, t2, hold).await.unwrap();
    assert_eq!(later.unwrap().previous_holder, Some(winner));
    assert_eq!(
        store
            .lease_check(r.id, winner, t2 + Duration::seconds(1), hold)
            .await
            .unwrap(),
        None
    );
    // Many racing at once for a fresh connection: one winner.
    let other = conn(&store, "other", owner).await;
    let t3 = now();
    let claims = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .lease_check(other.id, uuid::Uuid::now_v7(), t3, hold)
                .await
        })
    });
    let mut won = 0;
    for claim in claims.collect::<Vec<_>>() {
        won += usize::from(claim.await.unwrap().unwrap().is_some());
    }
    assert_eq!(won, 1);
    // An unknown (deleted) connection cannot be claimed.
    assert_eq!(
        store
            .lease_check(ConnectionId::new(), a, t3, hold)
            .await
            .unwrap(),
        None
    );
}

pub async fn policy_default_then_set(store: Handle) {
    assert_eq!(store.policy().await.unwrap(), TargetPolicy::default());
    let p = TargetPolicy {
        allow_cidrs: vec!["10.0.0.0/8".into(), "192.168.0.0/16".into()],
        deny_cidrs: vec!["10.1.0.0/16".into()],
        min_tls_mode: TlsMode::VerifyFull,
    };
    store.set_policy(&p, &ev("policy.set")).await.unwrap();
    assert_eq!(store.policy().await.unwrap(), p);
    let empty = TargetPolicy {
        allow_cidrs: vec![],
        deny_cidrs: vec![],
        min_tls_mode: TlsMode::Disable,
    };
    store.set_policy(&empty, &ev("policy.set")).await.unwrap();
    assert_eq!(store.policy().await.unwrap(), empty);
    assert_eq!(last_action(&store).await, "policy.set");
}

/// S28: the store keeps one key check per KEK id (the first recorded stays), lists them in id
/// order, deletes one with its audit row, and hands one row's data key per KEK for the start-up
/// check.
pub async fn key_checks_and_samples(store: Handle) {
    assert!(store.key_checks().await.unwrap().is_empty());
    let (k1, k2) = (keyring("k1", 1), keyring("k2", 2));
    let id1 = KekId::new("k1").unwrap();
    let id2 = KekId::new("k2").unwrap();
    let first = k2.key_check(&id2).unwrap();
    assert!(store.insert_key_check(&first).await.unwrap());
    assert!(
        !store
            .insert_key_check(&k2.key_check(&id2).unwrap())
            .await
            .unwrap(),
        "the first check of an id stays"
    );
    assert!(
        store
            .insert_key_check(&k1.key_check(&id1).unwrap())
            .await
            .unwrap()
    );
    let checks = store.key_checks().await.unwrap();
    let ids: Vec<&str> = checks.iter().map(|c| c.kek_id().as_str()).collect();
    assert_eq!(ids, ["k1", "k2"]);
    assert_eq!(checks[1], first);
    k1.verify_check(&checks[0]).unwrap();
    k2.verify_check(&checks[1]).unwrap();
    // Another key under the same id does not open the stored check.
    let err = keyring("k2", 9).verify_check(&checks[1]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);

    let before = audit_count(&store).await;
    store
        .delete_key_check(&id1, &ev("keys.retire"))
        .await
        .unwrap();
    assert_eq!(audit_count(&store).await, before + 1);
    let ids: Vec<String> = store
        .key_checks()
        .await
        .unwrap()
        .iter()
        .map(|c| c.kek_id().as_str().to_owned())
        .collect();
    assert_eq!(ids, ["k2"]);

    // The sample is the lowest id under the key, and none for a key wrapping nothing.
    let owner = user(&store, "owner").await;
    let mut rows = Vec::new();
    for i in 0..3 {
        let mut r = row(spec(&format!("s{i}"), "h.example.com", None, &[]), owner);
        r.secrets = sealed(&k1, r.id, "pw", false);
        store
            .insert_connection(&r, &ev("connection.create"))
            .await
            .unwrap();
        rows.push(r);
    }
    rows.sort_by_key(|r| r.id);
    let (id, dek) = store.dek_sample(&id1).await.unwrap().unwrap();
    assert_eq!(id, rows[0].id);
    assert_eq!(dek, rows[0].secrets.dek);
    k1.unwrap_dek(id, &dek).unwrap();
    assert!(store.dek_sample(&id2).await.unwrap().is_none());
}

pub async fn key_usage_and_rotation_batches(store: Handle) {
    let owner = user(&store, "owner").await;
    assert!(store.kek_usage().await.unwrap().is_empty());
    let (k1, k2) = (keyring("k1", 1), keyring("k2", 2));
    let mut under_k1 = Vec::new();
    for i in 0..5 {
        let mut r = row(spec(&format!("c{i}"), "h.example.com", None, &[]), owner);
        let kr = if i < 3 { &k1 } else { &k2 };
        r.secrets = sealed(kr, r.id, "pw", false);
        store
            .insert_connection(&r, &ev("connection.create"))
            .await
            .unwrap();
        if i < 3 {
            under_k1.push(r);
        }
    }
    let mut usage = store.kek_usage().await.unwrap();
    usage.sort_by(|a, b| a.kek.cmp(&b.kek));
    let usage: Vec<(String, u64)> = usage
        .into_iter()
        .map(|u| (u.kek.as_str().to_owned(), u.rows))
        .collect();
    assert_eq!(usage, [("k1".to_owned(), 3), ("k2".to_owned(), 2)]);

    // Batches of 2 in id order, resumable from the last id.
    let active = KekId::new("k2").unwrap();
    let mut expected_ids: Vec<ConnectionId> = under_k1.iter().map(|r| r.id).collect();
    expected_ids.sort();
    let first = store.deks_not_under(&active, None, 2).await.unwrap();
    let second = store
        .deks_not_under(&active, Some(first[1].0), 2)
        .await
        .unwrap();
    let third = store
        .deks_not_under(&active, Some(second[0].0), 2)
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(second.len(), 1);
    assert!(third.is_empty());
    let got: Vec<ConnectionId> = first.iter().chain(&second).map(|(id, _)| *id).collect();
    assert_eq!(got, expected_ids);
    for (id, dek) in first.iter().chain(&second) {
        let r = under_k1.iter().find(|r| r.id == *id).unwrap();
        assert_eq!(dek, &r.secrets.dek);
    }

    // Compare and swap.
    let target = &under_k1[0];
    let rewrapped: WrappedDek = match keyring_both()
        .rewrap(target.id, &target.secrets.dek)
        .unwrap()
    {
        datahub_core::crypto::Rewrap::Rewrapped(w) => w,
        other => panic!("expected a rewrap, got {other:?}"),
    };
    assert!(
        store
            .replace_dek(target.id, &target.secrets.dek, &rewrapped)
            .await
            .unwrap()
    );
    assert!(
        !store
            .replace_dek(target.id, &target.secrets.dek, &rewrapped)
            .await
            .unwrap(),
        "a stale old key is not replaced"
    );
    assert!(
        !store
            .replace_dek(ConnectionId::new(), &target.secrets.dek, &rewrapped)
            .await
            .unwrap()
    );
    let got = store.connection(target.id).await.unwrap().unwrap();
    assert_eq!(got.secrets.dek, rewrapped);
    assert_eq!(got.version, 1, "a re-wrap does not bump the version");
    assert_eq!(got.secrets.password, target.secrets.password);
    let mut usage = store.kek_usage().await.unwrap();
    usage.sort_by(|a, b| a.kek.cmp(&b.kek));
    assert_eq!(usage[0].rows, 2);
    assert_eq!(usage[1].rows, 3);
    assert_eq!(
        store.deks_not_under(&active, None, 10).await.unwrap().len(),
        2
    );
}

/// `k2` active, `k1` still known: what a rotation from k1 to k2 runs with.
fn keyring_both() -> Keyring {
    Keyring::parse(&format!(
        "k2:{},k1:{}",
        STANDARD.encode([2u8; 32]),
        STANDARD.encode([1u8; 32])
    ))
    .unwrap()
}

// ------------------------------------------------------------------------------------------
// Cases: concurrency
// ------------------------------------------------------------------------------------------

pub async fn concurrent_updates_one_wins(store: Handle) {
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let mut tasks = Vec::new();
    for i in 0..20u16 {
        let store = Arc::clone(&store);
        let mut changed = r.clone();
        changed.spec.port = datahub_core::model::Port::new(i64::from(1000 + i)).unwrap();
        tasks.push(tokio::spawn(async move {
            store
                .update_connection(&changed, 1, &ev("connection.update"))
                .await
                .map(|_| i)
        }));
    }
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(i) => winners.push(i),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
                conflicts += 1;
            }
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(conflicts, 19);
    let got = store.connection(r.id).await.unwrap().unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(got.spec.port.get(), 1000 + winners[0]);
    // user + create + one update.
    assert_eq!(verify_chain(&store).await, 3);
}

pub async fn concurrent_audited_writes_keep_the_chain(store: Handle) {
    let owner = user(&store, "owner").await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                store.append_audit(&ev("auth.login")).await.map(|_| ())
            } else {
                let r = row(spec(&format!("c{i}"), "h.example.com", None, &[]), owner);
                store.insert_connection(&r, &ev("connection.create")).await
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let records = audit_all(&store, 9).await;
    assert_eq!(records.len(), 51);
    assert!(
        records
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq == i as u64 + 1)
    );
    assert_eq!(verify_chain(&store).await, 51);
    assert_eq!(names(&store, &q(), &Visibility::All).await.1, 25);
}

/// Writes made at the same time succeed or fail each on its own (SQLite commits concurrent
/// writes together, each in its own savepoint): a refused write leaves neither its row nor its
/// audit record, the others keep both, and the chain has no gap.
pub async fn concurrent_writes_fail_alone(store: Handle) {
    let owner = user(&store, "owner").await;
    let taken = row(spec("taken", "h.example.com", None, &[]), owner);
    store
        .insert_connection(&taken, &ev("connection.create"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                // Refused: the name is taken.
                0 => {
                    let r = row(spec("taken", "h.example.com", None, &[]), owner);
                    store.insert_connection(&r, &ev("connection.create")).await
                }
                1 => {
                    let r = row(spec(&format!("c{i}"), "h.example.com", None, &[]), owner);
                    store.insert_connection(&r, &ev("connection.create")).await
                }
                _ => store.append_audit(&ev("auth.login")).await.map(|_| ()),
            }
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let result = t.await.unwrap();
        if i % 3 == 0 {
            assert_eq!(result.unwrap_err().kind(), ErrorKind::Conflict, "{i}");
        } else {
            result.unwrap();
        }
    }
    // The user, the first row, 20 rows and 20 logins.
    let records = audit_all(&store, 9).await;
    assert_eq!(records.len(), 42);
    assert!(
        records
            .iter()
            .enumerate()
            .all(|(i, r)| r.seq == i as u64 + 1)
    );
    assert_eq!(verify_chain(&store).await, 42);
    assert_eq!(names(&store, &q(), &Visibility::All).await.1, 21);
}
