//! The local operator principal (the CLI's identity): admin rights without a user account,
//! audited with no actor id and the name `operator:<name>`; tokens for other users only through
//! `create_token_for` (admins and the operator); no session from an operator.

use std::sync::Arc;

use datahub_core::audit::{Outcome, RequestInfo};
use datahub_core::crypto::Keyring;
use datahub_core::hub::{Hub, UserUpdate};
use datahub_core::model::ListQuery;
use datahub_core::rbac::{AuthMethod, Principal, Role};
use datahub_core::secret::Password;
use datahub_core::store::{SqliteStore, Store};
use datahub_core::{ErrorKind, UserId};

use crate::hub::{K1, draft, login};

const PW: &str = "operator-test-password-1";

#[tokio::test]
async fn operator_acts_as_admin_and_is_audited_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
    let hub = Hub::open(store.clone(), Keyring::parse(K1).unwrap())
        .await
        .unwrap();
    let op = Principal::operator("alice").with_request(RequestInfo {
        client_addr: None,
        request_id: Some("cli-1".into()),
    });
    assert_eq!(op.role(), Role::Admin);
    assert_eq!(op.auth_method(), AuthMethod::Operator);
    assert_eq!(op.actor(), None);
    assert_eq!(op.username(), "operator:alice");

    // Works on an empty store: no user account is needed to create the first one.
    let bob = hub
        .create_user(&op, "bob", Password::from(PW), Role::Editor)
        .await
        .unwrap();
    let conn = hub
        .create_connection(&op, draft("by-operator", PW))
        .await
        .unwrap();
    assert_eq!(conn.owner, UserId::from_uuid(uuid::Uuid::nil()));
    let listed = hub
        .list_connections(&op, &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(listed.total, 1);

    // A user does not see the operator's connection without a grant.
    let bob_p = login(&hub, "bob", PW).await;
    assert_eq!(bob_p.actor(), Some(bob.id));
    let bobs = hub
        .list_connections(&bob_p, &ListQuery::default())
        .await
        .unwrap();
    assert_eq!(bobs.total, 0);

    // Tokens: the operator owns none, but may make one for a user, which then authenticates
    // as that user.
    let own = hub
        .create_token(&op, "mine", None, false)
        .await
        .unwrap_err();
    assert_eq!(own.kind(), ErrorKind::NotFound);
    let token = hub
        .create_token_for(&op, bob.id, "for-bob", Some(30), true)
        .await
        .unwrap();
    assert_eq!(token.info.user, bob.id);
    let by_token = hub
        .authenticate_token(token.token.expose_secret(), &RequestInfo::default())
        .await
        .unwrap();
    assert_eq!(by_token.user(), bob.id);
    assert!(by_token.is_read_only());
    let nobody = hub
        .create_token_for(&op, UserId::new(), "x", None, false)
        .await
        .unwrap_err();
    assert_eq!(nobody.kind(), ErrorKind::NotFound);

    // An editor may not make a token for someone else (audited), but may for itself.
    let denied = hub
        .create_token_for(&bob_p, UserId::new(), "x", None, false)
        .await
        .unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
    hub.create_token_for(&bob_p, bob.id, "own", None, false)
        .await
        .unwrap();

    // On a store without any admin, other accounts stay manageable.
    let disabled = hub
        .update_user(
            &op,
            bob.id,
            UserUpdate {
                disabled: Some(true),
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap();
    assert!(disabled.disabled);

    // No session starts from an operator.
    let e = hub
        .start_session(&op, &RequestInfo::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied);

    let rows = store.audit_after(0, 1_000).await.unwrap();
    let by_op: Vec<_> = rows
        .iter()
        .filter(|r| r.event.actor_name == "operator:alice")
        .collect();
    assert_eq!(
        by_op
            .iter()
            .map(|r| r.event.action.as_str())
            .collect::<Vec<_>>(),
        [
            "user.create",
            "connection.create",
            "token.manage",
            "user.update"
        ]
    );
    assert!(by_op.iter().all(|r| r.event.actor.is_none()
        && r.event.outcome == Outcome::Ok
        && r.event.request_id.as_deref() == Some("cli-1")));
    assert_eq!(by_op[2].event.changed_fields, ["user"]);
    let denied_row = rows
        .iter()
        .find(|r| r.event.outcome == Outcome::Denied)
        .unwrap();
    assert_eq!(denied_row.event.action, "token.manage");
    assert_eq!(denied_row.event.actor, Some(bob.id));
    let own_row = rows
        .iter()
        .find(|r| r.event.action == "token.create")
        .unwrap();
    assert_eq!(own_row.event.actor, Some(bob.id));
    assert!(hub.verify_audit(&op).await.unwrap().first_break.is_none());
}
