//! Integration tests: the `Hub` facade on a real store. The permission matrix through every
//! Hub method against the hand-written table of `rbac.rs` (S19), audit rows for every change and
//! denial, a failing audit write failing the operation (S21), S11/S12/S26 through the Hub, key
//! rotation and the start-up key check (S5, S6), and a canary password (S8).

use std::sync::Arc;

use datahub_core::audit::{AuditRecord, Outcome, RequestInfo};
use datahub_core::crypto::{KekId, Keyring};
use datahub_core::hub::{Hub, RateLimit, UserUpdate};
use datahub_core::model::{
    AuditQuery, ConnectionDraft, ConnectionPatch, ListQuery, TargetPolicy, TlsMode,
};
use datahub_core::rbac::{Grant, GrantLevel, Grantee, Principal, Role};
use datahub_core::secret::Password;
use datahub_core::store::{SqliteStore, Store};
use datahub_core::{ConnectionId, ErrorKind, Result};
use tempfile::TempDir;

use crate::rbac::{EXPECTED, READ_ONLY_ALLOWS};

pub(crate) const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub(crate) const K0: &str = "k0:HxseHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
pub(crate) const ADMIN_PW: &str = "admin-password-1234";
const USER_PW: &str = "user-password-1234";

struct Fixture {
    hub: Hub,
    store: Arc<dyn Store>,
    admin: Principal,
    dir: TempDir,
}

async fn fixture(keyring: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    let hub = Hub::open(store.clone(), Keyring::parse(keyring).unwrap())
        .await
        .unwrap()
        .with_test_rate_limit(RateLimit {
            burst: 100_000,
            per_second: 1_000.0,
        });
    let boot = hub
        .bootstrap_admin(Some(Password::from(ADMIN_PW)))
        .await
        .unwrap()
        .unwrap();
    assert!(boot.generated_password.is_none());
    assert!(hub.bootstrap_admin(None).await.unwrap().is_none());
    let admin = login(&hub, "admin", ADMIN_PW).await;
    Fixture {
        hub,
        store,
        admin,
        dir,
    }
}

pub(crate) async fn login(hub: &Hub, user: &str, password: &str) -> Principal {
    hub.login(user, Password::from(password), &RequestInfo::default())
        .await
        .unwrap()
}

pub(crate) fn draft(name: &str, password: &str) -> ConnectionDraft {
    ConnectionDraft {
        name: name.into(),
        host: "127.0.0.1".into(),
        // Nothing listens on port 1: a test of these connections is refused at once.
        port: Some(1),
        database: "app".into(),
        username: "app".into(),
        password: Some(Password::from(password)),
        ..ConnectionDraft::default()
    }
}

async fn audit(store: &Arc<dyn Store>) -> Vec<AuditRecord> {
    store.audit_after(0, 100_000).await.unwrap()
}

/// What happened, as a letter of the expected table.
fn letter<T>(result: &Result<T>) -> char {
    match result {
        Ok(_) => 'A',
        Err(e) if e.kind() == ErrorKind::PermissionDenied => 'D',
        Err(e) if e.kind() == ErrorKind::NotFound => 'H',
        Err(e) => panic!("unexpected error {e:?}"),
    }
}

fn expected(action: &str, role: Role, column: usize, read_only: bool) -> char {
    let (_, row) = EXPECTED
        .iter()
        .find(|(a, _)| *a == action)
        .unwrap_or_else(|| panic!("{action} missing from EXPECTED"));
    let index = Role::ALL.iter().position(|r| *r == role).unwrap();
    let session = row[index].as_bytes()[column] as char;
    if read_only && !READ_ONLY_ALLOWS.contains(&action) && session != 'H' {
        'D'
    } else {
        session
    }
}

const CONNECTION_ACTIONS: [&str; 8] = [
    "connection.view",
    "connection.pool",
    "connection.test",
    "connection.update",
    "connection.delete",
    "connection.reveal",
    "grants.read",
    "grants.write",
];

/// Does one connection action as `p` on `id`, at its current `version`.
async fn connection_action(
    f: &Fixture,
    p: &Principal,
    action: &str,
    id: ConnectionId,
    version: u64,
) -> char {
    let hub = &f.hub;
    match action {
        "connection.view" => letter(&hub.connection(p, id).await),
        "connection.update" => {
            let patch = ConnectionPatch {
                description: Some(Some("edited".into())),
                ..ConnectionPatch::default()
            };
            letter(&hub.update_connection(p, id, version, patch).await)
        }
        "connection.delete" => letter(&hub.delete_connection(p, id, version).await),
        "connection.reveal" => letter(&hub.reveal(p, id).await),
        "connection.test" => letter(&hub.test_connection(p, id, SHORT).await),
        "connection.pool" => {
            let row = f.store.connection(id).await.unwrap().unwrap();
            let name = row.spec.name;
            letter(
                &hub.pool(
                    p,
                    name.as_str(),
                    &datahub_core::probe::PoolOptions::default(),
                )
                .await,
            )
        }
        "grants.read" => letter(&hub.grants(p, id).await),
        "grants.write" => {
            // Without the right to read them, any version: the refusal comes first.
            let (version, same) = match hub.grants(p, id).await {
                Ok(g) => (g.version, g.plain()),
                Err(_) => (
                    0,
                    vec![Grant {
                        grantee: Grantee::User(p.user()),
                        level: GrantLevel::View,
                    }],
                ),
            };
            letter(&hub.set_grants(p, id, version, &same).await)
        }
        other => panic!("no Hub call for {other}"),
    }
}

/// Does one global action as `p`; `n` makes names unique.
async fn global_action(f: &Fixture, p: &Principal, action: &str, n: &str) -> char {
    let hub = &f.hub;
    match action {
        "connection.create" => letter(
            &hub.create_connection(p, draft(&format!("g-{n}"), "pw"))
                .await,
        ),
        "connection.list" => letter(&hub.list_connections(p, &ListQuery::default()).await),
        "connection.test_draft" => letter(
            &hub.test_draft(p, draft(&format!("d-{n}"), "pw"), None, SHORT)
                .await,
        ),
        "user.list" => letter(&hub.users(p).await),
        "user.create" => letter(
            &hub.create_user(p, &format!("u-{n}"), Password::from(USER_PW), Role::Viewer)
                .await,
        ),
        "user.update" => letter(
            &hub.update_user(p, f.admin.user(), UserUpdate::default())
                .await,
        ),
        "user.change_password" => letter(
            &hub.change_own_password(p, Password::from(USER_PW), Password::from(USER_PW))
                .await,
        ),
        "team.list" => letter(&hub.teams(p).await),
        "team.manage" => letter(&hub.save_team(p, None, &format!("t-{n}"), &[]).await),
        "directory.read" => letter(&hub.directory(p, Some("t")).await),
        "token.create" => letter(&hub.create_token(p, "t", None, false).await),
        "token.list" => letter(&hub.tokens(p).await),
        "token.revoke" => {
            // A token of the principal's own, made through the admin-independent path.
            let own = f
                .store
                .tokens_of(p.user())
                .await
                .unwrap()
                .into_iter()
                .find(|t| t.info.revoked_at.is_none())
                .expect("an own token");
            letter(&hub.revoke_token(p, own.info.id).await)
        }
        "token.manage" => {
            let other = hub
                .create_token(&f.admin, "victim", None, false)
                .await
                .unwrap();
            letter(&hub.revoke_token(p, other.info.id).await)
        }
        "policy.read" => letter(&hub.policy(p).await),
        "policy.write" => letter(&hub.set_policy(p, TargetPolicy::default()).await),
        "audit.read" => letter(
            &hub.audit_log(
                p,
                &AuditQuery {
                    actor: None,
                    action: None,
                    target: None,
                    since: None,
                    until: None,
                    page: 1,
                    per_page: 10,
                },
            )
            .await,
        ),
        "audit.verify" => letter(&hub.verify_audit(p).await),
        "keys.status" => letter(&hub.key_status(p).await),
        "keys.rotate" => letter(&hub.rotate_keys(p, 100).await),
        "keys.retire" => letter(&hub.retire_key(p, &"k0".parse::<KekId>().unwrap()).await),
        "metrics.read" => letter(&hub.authorize_metrics(p)),
        other => panic!("no Hub call for {other}"),
    }
}

/// Actions without a Hub method yet (none: every action of the table is walked here).
const NOT_IN_HUB_YET: [&str; 0] = [];

/// The budget of the tests the matrix runs (their targets refuse at once).
const SHORT: std::time::Duration = std::time::Duration::from_millis(500);

#[tokio::test]
async fn permission_matrix_through_the_hub() {
    let f = fixture(&format!("{K1},{K0}")).await;
    let hub = &f.hub;
    let admin = &f.admin;
    for role in Role::ALL {
        // The actor starts as an editor so it can own connections, then takes its role.
        let actor = hub
            .create_user(
                admin,
                &format!("actor-{role}"),
                Password::from(USER_PW),
                Role::Editor,
            )
            .await
            .unwrap();
        let as_editor = login(hub, &actor.username, USER_PW).await;
        let mut owned = Vec::new();
        for action in CONNECTION_ACTIONS {
            let c = hub
                .create_connection(&as_editor, draft(&format!("own-{role}-{action}"), "pw"))
                .await
                .unwrap();
            owned.push((action, c.id));
        }
        hub.update_user(
            admin,
            actor.id,
            UserUpdate {
                role: Some(role),
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap();
        let session = login(hub, &actor.username, USER_PW).await;
        assert_eq!(session.role(), role);
        let token = hub.create_token(&session, "ro", None, true).await.unwrap();
        let read_only = hub
            .authenticate_token(token.token.expose_secret(), &RequestInfo::default())
            .await
            .unwrap();
        assert!(read_only.is_read_only());
        // An own token for the token.revoke row.
        hub.create_token(&session, "own", None, false)
            .await
            .unwrap();

        for (p, ro) in [(&read_only, true), (&session, false)] {
            let tag = if ro { "ro" } else { "rw" };
            // Connection actions, for each standing on the connection.
            for (column, level) in [
                None,
                Some(GrantLevel::View),
                Some(GrantLevel::Use),
                Some(GrantLevel::Manage),
            ]
            .into_iter()
            .enumerate()
            {
                for action in CONNECTION_ACTIONS {
                    let name = format!("c-{role}-{tag}-{column}-{action}");
                    let c = hub
                        .create_connection(admin, draft(&name, "pw"))
                        .await
                        .unwrap();
                    let mut version = c.version;
                    if let Some(level) = level {
                        let g = Grant {
                            grantee: Grantee::User(actor.id),
                            level,
                        };
                        version = hub
                            .set_grants(admin, c.id, c.version, &[g])
                            .await
                            .unwrap()
                            .version;
                    }
                    // The level a client is told is the one the decisions below use.
                    let told = hub.connection_with_access(p, c.id).await.map(|(_, l)| l);
                    let level_now = if role == Role::Admin {
                        Some(GrantLevel::Manage)
                    } else {
                        level
                    };
                    match level_now {
                        Some(l) => assert_eq!(told.unwrap(), l, "{role} {tag} {column}"),
                        None => assert_eq!(told.unwrap_err().kind(), ErrorKind::NotFound),
                    }
                    let got = connection_action(&f, p, action, c.id, version).await;
                    let want = expected(action, role, column, ro);
                    assert_eq!(got, want, "{role} {tag} level {column} {action}");
                }
            }
            // The owner column.
            if !ro {
                for (action, id) in &owned {
                    // Created by the actor, never granted on: version 1.
                    let got = connection_action(&f, p, action, *id, 1).await;
                    assert_eq!(
                        got,
                        expected(action, role, 4, false),
                        "{role} owner {action}"
                    );
                }
            }
            // Global actions.
            for (action, _) in EXPECTED {
                if CONNECTION_ACTIONS.contains(action) || NOT_IN_HUB_YET.contains(action) {
                    continue;
                }
                let got = global_action(&f, p, action, &format!("{role}-{tag}")).await;
                let want = expected(action, role, 0, ro);
                assert_eq!(got, want, "{role} {tag} {action}");
            }
        }
    }
}

#[tokio::test]
async fn invisible_connections_are_absent_from_lists_and_totals() {
    let f = fixture(K1).await;
    let hub = &f.hub;
    let viewer = hub
        .create_user(&f.admin, "vera", Password::from(USER_PW), Role::Viewer)
        .await
        .unwrap();
    let team = hub
        .save_team(&f.admin, None, "analysts", &[viewer.id])
        .await
        .unwrap();
    let mut visible = Vec::new();
    for i in 0..12 {
        let c = hub
            .create_connection(&f.admin, draft(&format!("db-{i:02}"), "pw"))
            .await
            .unwrap();
        let grantee = match i % 4 {
            0 => Some(Grantee::User(viewer.id)),
            1 => Some(Grantee::Team(team.id)),
            _ => None,
        };
        if let Some(grantee) = grantee {
            hub.set_grants(
                &f.admin,
                c.id,
                c.version,
                &[Grant {
                    grantee,
                    level: GrantLevel::View,
                }],
            )
            .await
            .unwrap();
            visible.push(c.name_string());
        }
    }
    let p = login(hub, "vera", USER_PW).await;
    let query = ListQuery {
        per_page: 2,
        ..ListQuery::default()
    };
    let first = hub.list_connections(&p, &query).await.unwrap();
    assert_eq!(first.total, visible.len() as u64);
    let all = hub
        .list_connections(
            &p,
            &ListQuery {
                per_page: 200,
                ..ListQuery::default()
            },
        )
        .await
        .unwrap();
    let names: Vec<String> = all.items.iter().map(|c| c.name_string()).collect();
    assert_eq!(names, visible);
    // The admin sees all twelve.
    let everything = hub
        .list_connections(&f.admin, &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(everything.total, 12);

    // Revoking the team grant takes effect on the next request.
    hub.save_team(&f.admin, Some(team.id), "analysts", &[])
        .await
        .unwrap();
    let p = login(hub, "vera", USER_PW).await;
    let after = hub
        .list_connections(&p, &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(after.total, 3);
}

trait NameString {
    fn name_string(&self) -> String;
}

impl NameString for datahub_core::model::Connection {
    fn name_string(&self) -> String {
        self.spec.name.as_str().to_owned()
    }
}

#[tokio::test]
async fn every_change_and_denial_is_audited_and_the_chain_verifies() {
    let f = fixture(K1).await;
    let hub = &f.hub;
    let viewer = hub
        .create_user(&f.admin, "vic", Password::from(USER_PW), Role::Viewer)
        .await
        .unwrap();
    let c = hub
        .create_connection(&f.admin, draft("orders", "pw"))
        .await
        .unwrap();
    hub.set_grants(
        &f.admin,
        c.id,
        c.version,
        &[Grant {
            grantee: Grantee::User(viewer.id),
            level: GrantLevel::View,
        }],
    )
    .await
    .unwrap();
    let p = login(hub, "vic", USER_PW).await.with_request(RequestInfo {
        client_addr: Some("127.0.0.1:4000".into()),
        request_id: Some("req-\n42".into()),
    });
    assert_eq!(
        hub.reveal(&p, c.id).await.unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert!(
        hub.login(
            "vic",
            Password::from("wrong-password-x"),
            &RequestInfo::default()
        )
        .await
        .is_err()
    );
    assert!(
        hub.login(
            "nobody",
            Password::from("wrong-password-x"),
            &RequestInfo::default()
        )
        .await
        .is_err()
    );
    let patch = ConnectionPatch {
        description: Some(Some("orders db".into())),
        port: Some(6543),
        password: Some(Password::from("new-pw")),
        ..ConnectionPatch::default()
    };
    // The grants set above moved the version on.
    let version = hub.connection(&f.admin, c.id).await.unwrap().version;
    let updated = hub
        .update_connection(&f.admin, c.id, version, patch)
        .await
        .unwrap();
    hub.reveal(&f.admin, c.id).await.unwrap();
    hub.delete_connection(&f.admin, c.id, updated.version)
        .await
        .unwrap();

    let records = audit(&f.store).await;
    let actions: Vec<(&str, Outcome)> = records
        .iter()
        .map(|r| (r.event.action.as_str(), r.event.outcome))
        .collect();
    assert_eq!(
        actions,
        [
            ("user.bootstrap", Outcome::Ok),
            ("auth.login", Outcome::Ok),
            ("user.create", Outcome::Ok),
            ("connection.create", Outcome::Ok),
            ("grants.write", Outcome::Ok),
            ("auth.login", Outcome::Ok),
            ("connection.reveal", Outcome::Denied),
            ("auth.login", Outcome::Denied),
            ("auth.login", Outcome::Denied),
            ("connection.update", Outcome::Ok),
            ("connection.reveal", Outcome::Ok),
            ("connection.delete", Outcome::Ok),
        ]
    );
    let denied = &records[6].event;
    assert_eq!(denied.actor, Some(viewer.id));
    assert_eq!(
        denied.target.as_deref(),
        Some(format!("connection:{}", c.id).as_str())
    );
    assert_eq!(denied.client_addr.as_deref(), Some("127.0.0.1:4000"));
    assert_eq!(denied.request_id.as_deref(), Some("req-\\u{a}42"));
    // An unknown user name is not recorded: it may be a password typed into the wrong field.
    assert_eq!(records[8].event.actor_name, "unknown");
    assert_eq!(records[8].event.actor, None);
    assert_eq!(
        records[9].event.changed_fields,
        ["description", "port", "password"]
    );
    let report = hub.verify_audit(&f.admin).await.unwrap();
    assert_eq!(report.checked, records.len() as u64);
    assert_eq!(report.first_break, None);
}

#[tokio::test]
async fn a_failing_audit_write_fails_the_operation() {
    let f = fixture(K1).await;
    let raw = rusqlite::Connection::open(
        f.dir
            .path()
            .join("data")
            .join(datahub_core::store::sqlite::DATABASE_FILE),
    )
    .unwrap();
    raw.execute_batch(
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit full'); END;",
    )
    .unwrap();
    let err = f
        .hub
        .create_connection(&f.admin, draft("orders", "pw"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    let name = datahub_core::model::ConnectionName::parse("orders").unwrap();
    assert!(f.store.connection_by_name(&name).await.unwrap().is_none());
    // A reveal whose audit row cannot be written reveals nothing.
    raw.execute_batch("DROP TRIGGER no_audit").unwrap();
    let c = f
        .hub
        .create_connection(&f.admin, draft("orders", "pw"))
        .await
        .unwrap();
    raw.execute_batch(
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit full'); END;",
    )
    .unwrap();
    assert_eq!(
        f.hub.reveal(&f.admin, c.id).await.unwrap_err().kind(),
        ErrorKind::Store
    );
}

#[tokio::test]
async fn edits_keep_or_require_the_password_and_refuse_stale_versions() {
    let f = fixture(K1).await;
    let hub = &f.hub;
    let c = hub
        .create_connection(&f.admin, draft("orders", "first-pw"))
        .await
        .unwrap();

    // S11: no password keeps the stored one; an empty one is a field error.
    let tags = ConnectionPatch {
        tags: Some(vec!["prod".into()]),
        ..ConnectionPatch::default()
    };
    let c2 = hub
        .update_connection(&f.admin, c.id, 1, tags)
        .await
        .unwrap();
    assert_eq!(c2.version, 2);
    assert_eq!(
        hub.reveal(&f.admin, c.id)
            .await
            .unwrap()
            .password
            .expose_secret(),
        "first-pw"
    );
    let empty = ConnectionPatch {
        password: Some(Password::from("")),
        ..ConnectionPatch::default()
    };
    let err = hub
        .update_connection(&f.admin, c.id, 2, empty)
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("password"));

    // S12: retargeting needs the password again.
    for patch in [
        ConnectionPatch {
            host: Some("127.0.0.2".into()),
            ..ConnectionPatch::default()
        },
        ConnectionPatch {
            port: Some(5433),
            ..ConnectionPatch::default()
        },
        ConnectionPatch {
            database: Some("other".into()),
            ..ConnectionPatch::default()
        },
    ] {
        let err = hub
            .update_connection(&f.admin, c.id, 2, patch)
            .await
            .unwrap_err();
        assert_eq!(
            (err.kind(), err.field()),
            (ErrorKind::InvalidInput, Some("password"))
        );
    }
    let retarget = ConnectionPatch {
        host: Some("127.0.0.2".into()),
        password: Some(Password::from("second-pw")),
        ..ConnectionPatch::default()
    };
    let c3 = hub
        .update_connection(&f.admin, c.id, 2, retarget)
        .await
        .unwrap();
    assert_eq!(c3.version, 3);

    // S26: a stale version is a conflict and changes nothing.
    let stale = ConnectionPatch {
        description: Some(Some("late".into())),
        ..ConnectionPatch::default()
    };
    let err = hub
        .update_connection(&f.admin, c.id, 2, stale)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(hub.connection(&f.admin, c.id).await.unwrap().version, 3);
    assert_eq!(
        hub.delete_connection(&f.admin, c.id, 2)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );

    // The admin policy's TLS floor applies to creation.
    let mut weak = draft("weak", "pw");
    weak.tls.mode = Some(TlsMode::Prefer);
    let err = hub.create_connection(&f.admin, weak).await.unwrap_err();
    assert_eq!(err.field(), Some("tls.mode"));
}

#[tokio::test]
async fn rotation_through_the_hub_and_the_start_up_key_check() {
    let f = fixture(K1).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let c = f
            .hub
            .create_connection(&f.admin, draft(&format!("db-{i}"), &format!("pw-{i}")))
            .await
            .unwrap();
        ids.push(c.id);
    }
    // S5: a keyring without k1 refuses the store, naming k1.
    let err = Hub::open(f.store.clone(), Keyring::parse(K0).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);
    assert!(err.to_string().contains("k1"), "{err}");

    // S6: k0 becomes active; rotation rewraps all seven in batches of 3, then none.
    let hub = Hub::open(
        f.store.clone(),
        Keyring::parse(&format!("{K0},{K1}")).unwrap(),
    )
    .await
    .unwrap();
    let admin = login(&hub, "admin", ADMIN_PW).await;
    let err = hub
        .retire_key(&admin, &"k1".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let first = hub.rotate_keys(&admin, 3).await.unwrap();
    assert_eq!(
        (first.rewrapped, first.skipped, first.failed.len()),
        (7, 0, 0)
    );
    let second = hub.rotate_keys(&admin, 3).await.unwrap();
    assert_eq!(
        (second.rewrapped, second.skipped, second.failed.len()),
        (0, 0, 0)
    );
    hub.retire_key(&admin, &"k1".parse().unwrap())
        .await
        .unwrap();
    let status = hub.key_status(&admin).await.unwrap();
    assert_eq!(status[0].id.as_str(), "k0");
    assert_eq!(status[0].rows, 7);

    // With k1 gone, every secret still opens.
    let hub = Hub::open(f.store.clone(), Keyring::parse(K0).unwrap())
        .await
        .unwrap();
    let admin = login(&hub, "admin", ADMIN_PW).await;
    for (i, id) in ids.iter().enumerate() {
        let r = hub.reveal(&admin, *id).await.unwrap();
        assert_eq!(r.password.expose_secret(), format!("pw-{i}"));
    }
    let rotations: Vec<Vec<String>> = audit(&f.store)
        .await
        .into_iter()
        .filter(|r| r.event.action == "keys.rotate")
        .map(|r| r.event.changed_fields)
        .collect();
    assert_eq!(
        rotations,
        [
            vec!["rewrapped=7", "skipped=0", "failed=0"],
            vec!["rewrapped=0", "skipped=0", "failed=0"]
        ]
    );
}

/// S28: the store records the check of every key it uses; a keyring with another key under the
/// same id (a bare `DATAHUB_MASTER_KEY`, id `default`, with the wrong value; another
/// installation's key), or lacking a key the store's checks name, is refused naming the id and
/// the keyring's source, and nothing is written; the right key opens everything again.
#[tokio::test]
async fn a_lost_or_foreign_key_is_refused_naming_id_and_source_and_writes_nothing() {
    const RIGHT: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const WRONG: &str = "HxseHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";
    let f = fixture(RIGHT).await;
    let checks = f.store.key_checks().await.unwrap();
    assert_eq!(checks.len(), 1, "opening recorded the active key's check");
    assert_eq!(checks[0].kek_id().as_str(), "default");

    // Even with no connection saved, a wrong key under the same id is refused.
    let audit_before = audit(&f.store).await.len();
    let wrong = Keyring::parse(WRONG)
        .unwrap()
        .with_source("DATAHUB_MASTER_KEY".to_owned());
    let err = Hub::open(f.store.clone(), wrong).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);
    let text = err.to_string();
    assert!(text.contains("default"), "{text}");
    assert!(text.contains("DATAHUB_MASTER_KEY"), "{text}");
    assert!(text.contains("not the key"), "{text}");

    let c = f
        .hub
        .create_connection(&f.admin, draft("db", "pw-kept"))
        .await
        .unwrap();
    // Another installation's key under its own id: the store's id is missing.
    let foreign = Keyring::parse(&format!("k-20260101-0badf00d:{WRONG}"))
        .unwrap()
        .with_source("the key file /elsewhere/master.key".to_owned());
    let err = Hub::open(f.store.clone(), foreign).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);
    let text = err.to_string();
    assert!(text.contains("default"), "{text}");
    assert!(text.contains("/elsewhere/master.key"), "{text}");
    // A wrong key under the store's id, now also caught by the connection's data key.
    let err = Hub::open(f.store.clone(), Keyring::parse(WRONG).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);

    // Nothing was written by the refusals: no check for the foreign id, no audit row.
    let ids = key_check_ids(&f.store).await;
    assert_eq!(ids, ["default"]);
    assert_eq!(
        audit(&f.store).await.len(),
        audit_before + 1,
        "the create only"
    );

    // The right key back: opens, and reveals.
    let hub = Hub::open(f.store.clone(), Keyring::parse(RIGHT).unwrap())
        .await
        .unwrap();
    let admin = login(&hub, "admin", ADMIN_PW).await;
    assert_eq!(
        hub.reveal(&admin, c.id)
            .await
            .unwrap()
            .password
            .expose_secret(),
        "pw-kept"
    );
}

/// S28: a store written before key checks existed (rows, no check) is checked by unwrapping one
/// row's data key per key id; the right key then gets its check recorded.
#[tokio::test]
async fn rows_without_a_check_are_checked_by_their_data_keys() {
    let f = fixture(K1).await;
    f.hub
        .create_connection(&f.admin, draft("db", "pw"))
        .await
        .unwrap();
    let admin = audit_event_for_test();
    f.store
        .delete_key_check(&KekId::new("k1").unwrap(), &admin)
        .await
        .unwrap();
    assert!(f.store.key_checks().await.unwrap().is_empty());
    let other_k1 = K1.replace("AAEC", "AAED");
    let err = Hub::open(f.store.clone(), Keyring::parse(&other_k1).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Keyring);
    assert!(err.to_string().contains("k1"), "{err}");
    assert!(
        f.store.key_checks().await.unwrap().is_empty(),
        "nothing written"
    );
    Hub::open(f.store.clone(), Keyring::parse(K1).unwrap())
        .await
        .unwrap();
    let ids = key_check_ids(&f.store).await;
    assert_eq!(ids, ["k1"]);
}

/// The KEK ids of the store's recorded key checks, in id order.
async fn key_check_ids(store: &Arc<dyn Store>) -> Vec<String> {
    store
        .key_checks()
        .await
        .unwrap()
        .iter()
        .map(|c| c.kek_id().as_str().to_owned())
        .collect()
}

fn audit_event_for_test() -> datahub_core::audit::AuditEvent {
    datahub_core::audit::AuditEvent::now(None, "system", "keys.retire", Some("test"), Outcome::Ok)
}

#[tokio::test]
async fn users_tokens_and_the_last_admin() {
    let f = fixture(K1).await;
    let hub = &f.hub;
    let ed = hub
        .create_user(&f.admin, "eddie", Password::from(USER_PW), Role::Editor)
        .await
        .unwrap();
    let err = hub
        .create_user(&f.admin, "eddie", Password::from(USER_PW), Role::Editor)
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind(), err.field()),
        (ErrorKind::Conflict, Some("username"))
    );
    let err = hub
        .create_user(&f.admin, "Bad Name", Password::from(USER_PW), Role::Editor)
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("username"));
    let err = hub
        .create_user(&f.admin, "shorty", Password::from("short"), Role::Editor)
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("password"));

    // The last enabled admin can be neither demoted nor disabled.
    let demote = UserUpdate {
        role: Some(Role::Viewer),
        ..UserUpdate::default()
    };
    let err = hub
        .update_user(&f.admin, f.admin.user(), demote)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);

    // A disabled user cannot log in, and its tokens stop working on the next request.
    let p = login(hub, "eddie", USER_PW).await;
    let token = hub.create_token(&p, "ci", Some(30), false).await.unwrap();
    let text = token.token.expose_secret().to_owned();
    assert!(text.starts_with("dh_"));
    hub.authenticate_token(&text, &RequestInfo::default())
        .await
        .unwrap();
    hub.update_user(
        &f.admin,
        ed.id,
        UserUpdate {
            disabled: Some(true),
            ..UserUpdate::default()
        },
    )
    .await
    .unwrap();
    let err = hub
        .login("eddie", Password::from(USER_PW), &RequestInfo::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    assert_eq!(
        hub.authenticate_token(&text, &RequestInfo::default())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unauthenticated
    );
    assert_eq!(
        hub.principal_for(ed.id, &RequestInfo::default())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unauthenticated
    );

    // Revocation is effective on the next call.
    let t2 = hub
        .create_token(&f.admin, "ops", None, false)
        .await
        .unwrap();
    let t2_text = t2.token.expose_secret().to_owned();
    hub.authenticate_token(&t2_text, &RequestInfo::default())
        .await
        .unwrap();
    hub.revoke_token(&f.admin, t2.info.id).await.unwrap();
    assert!(
        hub.authenticate_token(&t2_text, &RequestInfo::default())
            .await
            .is_err()
    );
    // Only the hash is stored.
    let stored = f.store.tokens_of(f.admin.user()).await.unwrap();
    assert_eq!(stored[0].hash, datahub_core::auth::token_hash(&t2_text));

    // Changing one's own password needs the current one.
    let err = hub
        .change_own_password(
            &f.admin,
            Password::from("not-the-password"),
            Password::from("a-new-password-9"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    hub.change_own_password(
        &f.admin,
        Password::from(ADMIN_PW),
        Password::from("a-new-password-9"),
    )
    .await
    .unwrap();
    login(hub, "admin", "a-new-password-9").await;
}

#[tokio::test]
async fn a_canary_password_never_leaves_through_the_hub() {
    const CANARY: &str = "canary-hub-7c2e-pässwörd";
    let f = fixture(K1).await;
    let hub = &f.hub;
    let mut shown = Vec::new();
    let c = hub
        .create_connection(&f.admin, draft("orders", CANARY))
        .await
        .unwrap();
    shown.push(format!("{c:?}"));
    let patch = ConnectionPatch {
        password: Some(Password::from(CANARY)),
        host: Some("127.0.0.3".into()),
        ..ConnectionPatch::default()
    };
    shown.push(format!(
        "{:?}",
        hub.update_connection(&f.admin, c.id, 1, patch.clone())
            .await
    ));
    // Failed operations: stale version, a duplicate name, a denied reveal, a bad login.
    shown.push(format!(
        "{:?}",
        hub.update_connection(&f.admin, c.id, 1, patch).await
    ));
    let dup = hub
        .create_connection(&f.admin, draft("orders", CANARY))
        .await
        .unwrap_err();
    shown.push(format!("{dup:?} {dup}"));
    let viewer = hub
        .create_user(&f.admin, "vic", Password::from(USER_PW), Role::Viewer)
        .await
        .unwrap();
    let p = login(hub, "vic", USER_PW).await;
    let denied = hub.reveal(&p, c.id).await.unwrap_err();
    shown.push(format!("{denied:?} {denied}"));
    let bad = hub
        .login(CANARY, Password::from(CANARY), &RequestInfo::default())
        .await
        .unwrap_err();
    shown.push(format!("{bad:?} {bad}"));
    let bad = hub
        .login("vic", Password::from(CANARY), &RequestInfo::default())
        .await
        .unwrap_err();
    shown.push(format!("{bad:?} {bad}"));
    // The one place the password may appear is the reveal's exposed value.
    let revealed = hub.reveal(&f.admin, c.id).await.unwrap();
    assert_eq!(revealed.password.expose_secret(), CANARY);
    assert!(
        revealed
            .dsn
            .expose_secret()
            .contains("canary-hub-7c2e-p%C3%A4ssw%C3%B6rd")
    );
    shown.push(format!("{revealed:?}"));
    // Rotation.
    let hub2 = Hub::open(
        f.store.clone(),
        Keyring::parse(&format!("{K0},{K1}")).unwrap(),
    )
    .await
    .unwrap();
    let admin2 = login(&hub2, "admin", ADMIN_PW).await;
    shown.push(format!("{:?}", hub2.rotate_keys(&admin2, 10).await));
    shown.push(format!("{:?}", hub2.key_status(&admin2).await));
    shown.push(format!("{:?}", hub2.connection(&admin2, c.id).await));
    shown.push(format!("{:?}", f.store.connection(c.id).await));
    shown.push(format!(
        "{:?}",
        hub2.list_connections(&admin2, &ListQuery::default()).await
    ));
    shown.push(format!("{:?} {:?}", hub2, viewer));
    for r in audit(&f.store).await {
        shown.push(format!("{r:?}"));
    }

    let forms = crate::canary::forms(CANARY.as_bytes());
    for text in &shown {
        for form in &forms {
            assert!(!text.contains(form.as_str()), "{form} leaked in {text}");
        }
    }
    // Nor anywhere in the store's files.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(f.dir.path().join("data")).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    for form in &forms {
        assert!(
            !bytes.windows(form.len()).any(|w| w == form.as_bytes()),
            "{form} found in the store's files"
        );
    }
}
