//! Integration tests: the permission matrix (SECURITY.md S19) and the capability checks.
//!
//! The expected matrix below is written out by hand from DESIGN.md ("Access control"), not
//! derived from `rbac::RULES`: a change to the production table that is not also made here fails
//! the test. It walks every role × grant level (none, view, use, manage, owner) × action, with the
//! grant held directly and through a team, for sessions and for read-only tokens.

use datahub_core::model::{TokenInfo, User, Visibility};
use datahub_core::rbac::{
    Action, Decision, Grant, GrantLevel, Grantee, Principal, Role, Target, act,
};
use datahub_core::store::StoredUser;
use datahub_core::{ConnectionId, ErrorKind, TeamId, TokenId, UserId};
use time::{Duration, OffsetDateTime};

/// Columns: the principal's standing on the target connection.
const LEVELS: [&str; 5] = ["none", "view", "use", "manage", "owner"];

/// Per action, per role (admin, editor, viewer, auditor), one letter per column of [`LEVELS`]:
/// `A` allowed, `D` PermissionDenied, `H` NotFound (may not even view the connection).
pub(crate) const EXPECTED: &[(&str, [&str; 4])] = &[
    //                          admin    editor   viewer   auditor
    ("connection.create", ["AAAAA", "AAAAA", "DDDDD", "DDDDD"]),
    ("connection.list", ["AAAAA", "AAAAA", "AAAAA", "AAAAA"]),
    (
        "connection.test_draft",
        ["AAAAA", "AAAAA", "DDDDD", "DDDDD"],
    ),
    ("user.list", ["AAAAA", "DDDDD", "DDDDD", "DDDDD"]),
    ("user.create", ["AAAAA", "DDDDD", "DDDDD", "DDDDD"]),
    ("user.update", ["AAAAA", "DDDDD", "DDDDD", "DDDDD"]),
    ("user.change_password", ["AAAAA", "AAAAA", "AAAAA", "AAAAA"]),
    ("team.list", ["AAAAA", "AAAAA", "AAAAA", "AAAAA"]),
    ("team.manage", ["AAAAA", "DDDDD", "DDDDD", "DDDDD"]),
    ("directory.read", ["AAAAA", "AAAAA", "AAAAA", "AAAAA"]),
    ("token.create", ["AAAAA", "AAAAA", "AAAAA", "AAAAA"]),
    ("token.list", ["AAAAA", "AAAAA", "AAAAA", "AAAAA"]),
    ("token.revoke", ["AAAAA", "AAAAA", "AAAAA", "AAAAA"]),
    ("token.manage", ["AAAAA", "DDDDD", "DDDDD", "DDDDD"]),
    ("policy.read", ["AAAAA", "AAAAA", "AAAAA", "AAAAA"]),
    ("policy.write", ["AAAAA", "DDDDD", "DDDDD", "DDDDD"]),
    ("audit.read", ["AAAAA", "DDDDD", "DDDDD", "AAAAA"]),
    ("audit.verify", ["AAAAA", "DDDDD", "DDDDD", "AAAAA"]),
    ("keys.status", ["AAAAA", "DDDDD", "DDDDD", "DDDDD"]),
    ("keys.rotate", ["AAAAA", "DDDDD", "DDDDD", "DDDDD"]),
    ("keys.retire", ["AAAAA", "DDDDD", "DDDDD", "DDDDD"]),
    ("metrics.read", ["AAAAA", "DDDDD", "DDDDD", "DDDDD"]),
    //                          admin    editor   viewer   auditor
    ("connection.view", ["AAAAA", "HAAAA", "HAAAA", "HAAAA"]),
    ("connection.update", ["AAAAA", "HDDAA", "HDDAA", "HDDAA"]),
    ("connection.delete", ["AAAAA", "HDDAA", "HDDAA", "HDDAA"]),
    ("connection.test", ["AAAAA", "HDAAA", "HDAAA", "HDAAA"]),
    ("connection.reveal", ["AAAAA", "HDAAA", "HDAAA", "HDAAA"]),
    ("connection.pool", ["AAAAA", "HDAAA", "HDAAA", "HDAAA"]),
    ("grants.read", ["AAAAA", "HDDAA", "HDDAA", "HDDAA"]),
    ("grants.write", ["AAAAA", "HDDAA", "HDDAA", "HDDAA"]),
];

/// What a read-only token may still do (everything else it is denied, while a connection it may
/// not view stays NotFound).
pub(crate) const READ_ONLY_ALLOWS: &[&str] = &[
    "connection.list",
    "connection.test_draft",
    "user.list",
    "team.list",
    "directory.read",
    "token.list",
    "policy.read",
    "audit.read",
    "audit.verify",
    "keys.status",
    "metrics.read",
    "connection.view",
    "connection.test",
    "connection.reveal",
    "connection.pool",
    "grants.read",
];

const ROLES: [Role; 4] = [Role::Admin, Role::Editor, Role::Viewer, Role::Auditor];

fn user_row(role: Role, disabled: bool) -> StoredUser {
    StoredUser {
        user: User {
            id: UserId::new(),
            username: format!("{role}-user"),
            role,
            disabled,
            created_at: OffsetDateTime::UNIX_EPOCH,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        },
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$canary-hash-a81c".into(),
    }
}

fn token_row(user: UserId, read_only: bool) -> TokenInfo {
    TokenInfo {
        id: TokenId::new(),
        user,
        name: "notebook".into(),
        read_only,
        created_at: OffsetDateTime::UNIX_EPOCH,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
    }
}

fn letter(d: Decision) -> char {
    match d {
        Decision::Allow => 'A',
        Decision::Deny => 'D',
        Decision::Hide => 'H',
    }
}

/// How a grant is held.
#[derive(Debug, Clone, Copy)]
enum Via {
    User,
    Team,
}

/// The owner and grants for one column, with the grant held directly or through `my_team`,
/// plus grants for other users and teams that must never count.
fn target_for(column: &str, me: UserId, my_team: TeamId, via: Via) -> (UserId, Vec<Grant>) {
    let mut grants = vec![
        Grant {
            grantee: Grantee::User(UserId::new()),
            level: GrantLevel::Manage,
        },
        Grant {
            grantee: Grantee::Team(TeamId::new()),
            level: GrantLevel::Manage,
        },
    ];
    let someone_else = UserId::new();
    let (owner, level) = match column {
        "none" => (someone_else, None),
        "view" => (someone_else, Some(GrantLevel::View)),
        "use" => (someone_else, Some(GrantLevel::Use)),
        "manage" => (someone_else, Some(GrantLevel::Manage)),
        "owner" => (me, None),
        other => panic!("unknown column {other}"),
    };
    if let Some(level) = level {
        let grantee = match via {
            Via::User => Grantee::User(me),
            Via::Team => Grantee::Team(my_team),
        };
        grants.push(Grant { grantee, level });
    }
    (owner, grants)
}

fn error_kind(d: Decision) -> Option<ErrorKind> {
    match d {
        Decision::Allow => None,
        Decision::Deny => Some(ErrorKind::PermissionDenied),
        Decision::Hide => Some(ErrorKind::NotFound),
    }
}

fn expected_row(action: Action) -> [&'static str; 4] {
    EXPECTED
        .iter()
        .find(|(name, _)| *name == action.as_str())
        .unwrap_or_else(|| panic!("{action} is missing from the expected table"))
        .1
}

#[test]
fn expected_table_names_every_action_once() {
    assert_eq!(EXPECTED.len(), Action::ALL.len());
    for (name, _) in EXPECTED {
        assert!(
            Action::ALL.iter().any(|a| a.as_str() == *name),
            "{name} is not an action"
        );
    }
    for a in Action::ALL {
        expected_row(*a);
    }
    for name in READ_ONLY_ALLOWS {
        assert!(EXPECTED.iter().any(|(n, _)| n == name), "{name}");
    }
}

/// S19: every role × grant column × action, grant held directly and through a team, by session
/// and by read-only token.
#[test]
fn permission_matrix() {
    let mut checked = 0;
    for (r, role) in ROLES.into_iter().enumerate() {
        let row = user_row(role, false);
        let my_team = TeamId::new();
        let other_team = TeamId::new();
        let session = Principal::from_user(&row.user, vec![other_team, my_team]).unwrap();
        let ro_token = Principal::from_token(
            &row.user,
            &token_row(row.user.id, true),
            vec![my_team, other_team],
            OffsetDateTime::now_utc(),
        )
        .unwrap();
        assert!(!session.is_read_only() && ro_token.is_read_only());
        for (c, column) in LEVELS.iter().enumerate() {
            for via in [Via::User, Via::Team] {
                let (owner, grants) = target_for(column, row.user.id, my_team, via);
                let target = Target {
                    owner,
                    grants: &grants,
                };
                for action in Action::ALL {
                    let expected = expected_row(*action)[r].as_bytes()[c] as char;
                    let expected_ro = match expected {
                        'A' if !READ_ONLY_ALLOWS.contains(&action.as_str()) => 'D',
                        other => other,
                    };
                    for (principal, want) in [(&session, expected), (&ro_token, expected_ro)] {
                        let got = principal.decide(*action, Some(target));
                        let ctx = format!(
                            "{role} {column} via {via:?} {action} read_only={}",
                            principal.is_read_only()
                        );
                        assert_eq!(letter(got), want, "{ctx}");
                        // The error a decision maps to.
                        let result = got.into_result(*action);
                        assert_eq!(result.err().map(|e| e.kind()), error_kind(got), "{ctx}");
                        // Global actions: `may` agrees and ignores the target.
                        if !action.is_connection_scoped() {
                            assert_eq!(principal.may(*action), want == 'A', "{ctx}");
                            assert_eq!(principal.decide(*action, None), got, "{ctx}");
                        } else {
                            assert!(!principal.may(*action), "{ctx}");
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 4 * 5 * 2 * Action::ALL.len() * 2);
}

#[test]
fn effective_level_is_the_max_of_owner_user_and_team_grants() {
    let row = user_row(Role::Viewer, false);
    let (t1, t2, stranger_team) = (TeamId::new(), TeamId::new(), TeamId::new());
    let p = Principal::from_user(&row.user, vec![t2, t1, t1]).unwrap();
    assert_eq!(p.teams().len(), 2);
    let other = UserId::new();
    let g = |grantee, level| Grant { grantee, level };
    let grants = [
        g(Grantee::User(row.user.id), GrantLevel::View),
        g(Grantee::Team(t1), GrantLevel::Use),
        g(Grantee::Team(stranger_team), GrantLevel::Manage),
        g(Grantee::User(other), GrantLevel::Manage),
    ];
    assert_eq!(p.level_on(other, &grants), Some(GrantLevel::Use));
    assert_eq!(p.level_on(other, &grants[..1]), Some(GrantLevel::View));
    assert_eq!(p.level_on(other, &grants[2..]), None);
    assert_eq!(p.level_on(other, &[]), None);
    // Owning beats any grant.
    assert_eq!(
        p.level_on(row.user.id, &grants[..1]),
        Some(GrantLevel::Manage)
    );
    // A team grant counts as much as a direct one.
    assert_eq!(
        p.level_on(other, &[g(Grantee::Team(t2), GrantLevel::Manage)]),
        Some(GrantLevel::Manage)
    );
    // Admins hold manage everywhere, without any grant.
    let admin = Principal::from_user(&user_row(Role::Admin, false).user, vec![]).unwrap();
    assert_eq!(admin.level_on(other, &[]), Some(GrantLevel::Manage));
}

#[test]
fn capability_checks_map_to_not_found_and_permission_denied() {
    let viewer_row = user_row(Role::Viewer, false);
    let viewer = Principal::from_user(&viewer_row.user, vec![]).unwrap();
    let conn = ConnectionId::new();
    let owner = UserId::new();
    let view = [Grant {
        grantee: Grantee::User(viewer_row.user.id),
        level: GrantLevel::View,
    }];

    // May not view: NotFound, with the same message as a connection that does not exist.
    let hidden = viewer
        .check_on::<act::ConnectionReveal>(conn, owner, &[])
        .unwrap_err();
    assert_eq!(hidden.kind(), ErrorKind::NotFound);
    assert_eq!(hidden.to_string(), "connection not found");
    let hidden_view = viewer
        .check_on::<act::ConnectionView>(conn, owner, &[])
        .unwrap_err();
    assert_eq!(hidden_view.to_string(), hidden.to_string());

    // May view, not reveal: PermissionDenied.
    let denied = viewer
        .check_on::<act::ConnectionReveal>(conn, owner, &view)
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
    assert!(denied.to_string().contains("connection.reveal"), "{denied}");

    // The proof carries who, what, where and at which level.
    let proof = viewer
        .check_on::<act::ConnectionView>(conn, owner, &view)
        .unwrap();
    assert_eq!(proof.connection(), conn);
    assert_eq!(proof.level(), GrantLevel::View);
    assert_eq!(proof.action(), Action::ConnectionView);
    assert_eq!(proof.principal().user(), viewer_row.user.id);

    // Global checks.
    let e = viewer.check::<act::KeysRotate>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    let admin = Principal::from_user(&user_row(Role::Admin, false).user, vec![]).unwrap();
    let ok = admin.check::<act::KeysRotate>().unwrap();
    assert_eq!(ok.action(), Action::KeysRotate);
    let proof = admin
        .check_on::<act::ConnectionDelete>(conn, owner, &[])
        .unwrap();
    assert_eq!(proof.level(), GrantLevel::Manage);

    // A connection action asked without its target is denied, never allowed.
    assert_eq!(admin.decide(Action::ConnectionView, None), Decision::Deny);
}

#[test]
fn read_only_tokens_only_read() {
    let row = user_row(Role::Admin, false);
    let ro = Principal::from_token(
        &row.user,
        &token_row(row.user.id, true),
        vec![],
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let rw = Principal::from_token(
        &row.user,
        &token_row(row.user.id, false),
        vec![],
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert!(!rw.is_read_only());
    assert!(rw.check::<act::KeysRotate>().is_ok());
    let e = ro.check::<act::KeysRotate>().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("read-only"), "{e}");
    assert!(ro.check::<act::KeysStatus>().is_ok());
    assert!(ro.check::<act::AuditVerify>().is_ok());
    let conn = ConnectionId::new();
    assert!(
        ro.check_on::<act::ConnectionReveal>(conn, row.user.id, &[])
            .is_ok()
    );
    let e = ro
        .check_on::<act::ConnectionDelete>(conn, row.user.id, &[])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);
}

#[test]
fn disabled_users_and_unusable_tokens_never_become_principals() {
    let now = OffsetDateTime::now_utc();
    for role in ROLES {
        let disabled = user_row(role, true);
        let e = Principal::from_user(&disabled.user, vec![]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
        let e = Principal::from_token(
            &disabled.user,
            &token_row(disabled.user.id, false),
            vec![],
            now,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    }
    let row = user_row(Role::Editor, false);
    let revoked = TokenInfo {
        revoked_at: Some(now),
        last_used_at: None,
        ..token_row(row.user.id, false)
    };
    let expired = TokenInfo {
        expires_at: Some(now - Duration::seconds(1)),
        ..token_row(row.user.id, false)
    };
    let foreign = token_row(UserId::new(), false);
    for token in [revoked, expired, foreign] {
        let e = Principal::from_token(&row.user, &token, vec![], now).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated);
    }
}

#[test]
fn visibility_follows_the_role() {
    let admin =
        Principal::from_user(&user_row(Role::Admin, false).user, vec![TeamId::new()]).unwrap();
    assert_eq!(admin.visibility(), Visibility::All);
    for role in [Role::Editor, Role::Viewer, Role::Auditor] {
        let row = user_row(role, false);
        let (a, b) = (TeamId::new(), TeamId::new());
        let p = Principal::from_user(&row.user, vec![b, a, b]).unwrap();
        assert_eq!(
            p.visibility(),
            Visibility::Member {
                user: row.user.id,
                teams: vec![a, b]
            }
        );
    }
}

#[test]
fn principals_do_not_carry_the_password_hash() {
    let row = user_row(Role::Viewer, false);
    let p = Principal::from_user(&row.user, vec![]).unwrap();
    let shown = format!("{p:?}");
    assert!(!shown.contains("canary-hash-a81c"), "{shown}");
    assert_eq!(p.username(), "viewer-user");
    assert_eq!(p.role(), Role::Viewer);
}
