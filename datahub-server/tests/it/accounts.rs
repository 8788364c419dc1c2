//! Users, teams, the name directory and API tokens over HTTP: what each role may do, the
//! one-time token, read-only and revoked tokens, disabled accounts, write-only passwords, and bad
//! input of every shape (S18–S20, S27).

use axum::http::{Method, StatusCode};
use datahub_core::rbac::Role;
use serde_json::{Value, json};

use crate::common::{Account, TestApp, USER_PASSWORD};

/// A password that must never come back in any answer.
const CANARY: &str = "canary-Pw-7f3a9c1e-never-shown";

fn fresh() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Accounts of every role but admin.
struct Roles {
    editor: Account,
    viewer: Account,
    auditor: Account,
}

async fn roles(t: &TestApp) -> Roles {
    Roles {
        editor: t.account("ed", Role::Editor).await,
        viewer: t.account("vi", Role::Viewer).await,
        auditor: t.account("au", Role::Auditor).await,
    }
}

#[tokio::test]
async fn an_admin_creates_reads_and_changes_accounts_and_passwords_stay_write_only() {
    let t = TestApp::new().await;
    let admin = Some(t.admin_token.as_str());
    let created = t
        .send(
            Method::POST,
            "/api/v1/users",
            admin,
            Some(json!({"username": "carol", "password": CANARY, "role": "editor"})),
        )
        .await;
    created.assert_status(StatusCode::CREATED);
    created.assert_hides(CANARY);
    assert_eq!(created.body["username"], "carol");
    assert_eq!(created.body["role"], "editor");
    assert_eq!(created.body["disabled"], false);
    assert!(created.body.get("password").is_none());
    assert!(created.body.get("password_hash").is_none());
    let id = created.body["id"].as_str().unwrap().to_owned();

    // The new account signs in with the password it was given.
    t.login("carol", CANARY).await;

    let list = t.send(Method::GET, "/api/v1/users", admin, None).await;
    list.assert_status(StatusCode::OK);
    list.assert_hides(CANARY);
    assert!(list.text.contains("\"carol\"") && !list.text.contains("argon2"));
    let names: Vec<_> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].clone())
        .collect();
    assert!(names.contains(&json!("admin")) && names.contains(&json!("carol")));

    let one = t
        .send(Method::GET, &format!("/api/v1/users/{id}"), admin, None)
        .await;
    one.assert_status(StatusCode::OK);
    assert_eq!(one.body["id"], id.as_str());

    let missing = t
        .send(
            Method::GET,
            &format!("/api/v1/users/{}", fresh()),
            admin,
            None,
        )
        .await;
    missing.assert_error(StatusCode::NOT_FOUND, None);

    let taken = t
        .send(
            Method::POST,
            "/api/v1/users",
            admin,
            Some(json!({"username": "carol", "password": CANARY, "role": "viewer"})),
        )
        .await;
    assert_eq!(taken.assert_error(StatusCode::CONFLICT, None), "conflict");
    taken.assert_hides(CANARY);

    // Role change, then a password reset: the old password stops working.
    let changed = t
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            admin,
            Some(json!({"role": "viewer"})),
        )
        .await;
    changed.assert_status(StatusCode::OK);
    assert_eq!(changed.body["role"], "viewer");
    let reset = t
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            admin,
            Some(json!({"password": "a-brand-new-password"})),
        )
        .await;
    reset.assert_status(StatusCode::OK);
    assert!(
        t.hub
            .login("carol", CANARY.into(), &Default::default())
            .await
            .is_err()
    );
    t.login("carol", "a-brand-new-password").await;

    let missing = t
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{}", fresh()),
            admin,
            Some(json!({"disabled": true})),
        )
        .await;
    missing.assert_error(StatusCode::NOT_FOUND, None);

    // The audit log names the changed fields, never a password.
    let audit = t
        .send(Method::GET, "/api/v1/audit?per_page=200", admin, None)
        .await;
    audit.assert_status(StatusCode::OK);
    audit.assert_hides(CANARY);
    audit.assert_hides("a-brand-new-password");

    // The last enabled admin can be neither demoted nor disabled.
    let admin_id = t.admin().await.user().to_string();
    for change in [json!({"role": "editor"}), json!({"disabled": true})] {
        let refused = t
            .send(
                Method::PATCH,
                &format!("/api/v1/users/{admin_id}"),
                admin,
                Some(change),
            )
            .await;
        refused.assert_error(StatusCode::CONFLICT, None);
    }
}

#[tokio::test]
async fn only_admins_manage_accounts_and_teams() {
    let t = TestApp::new().await;
    let r = roles(&t).await;
    let user = r.viewer.id.clone();
    let admin_only: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/users".into(), None),
        (
            Method::POST,
            "/api/v1/users".into(),
            Some(json!({"username": "mallory", "password": CANARY, "role": "admin"})),
        ),
        (Method::GET, format!("/api/v1/users/{user}"), None),
        (
            Method::PATCH,
            format!("/api/v1/users/{user}"),
            Some(json!({"role": "admin"})),
        ),
        (
            Method::POST,
            "/api/v1/teams".into(),
            Some(json!({"name": "crew", "members": []})),
        ),
        (
            Method::PUT,
            format!("/api/v1/teams/{}", fresh()),
            Some(json!({"name": "crew", "members": []})),
        ),
        (Method::DELETE, format!("/api/v1/teams/{}", fresh()), None),
    ];
    for account in [&r.editor, &r.viewer, &r.auditor] {
        for (method, path, body) in &admin_only {
            let audit_before = t.audit_count().await;
            let reply = t
                .send(method.clone(), path, Some(&account.token), body.clone())
                .await;
            let code = reply.assert_error(StatusCode::FORBIDDEN, None);
            assert_eq!(
                code, "permission_denied",
                "{} {method} {path}",
                account.username
            );
            reply.assert_hides(CANARY);
            // A refused write is audited as denied; nothing else is written.
            let audit_after = t.audit_count().await;
            assert!(audit_after - audit_before <= 1, "{method} {path}");
        }
    }
    // Nothing was created or changed.
    let users = t
        .send(Method::GET, "/api/v1/users", Some(&t.admin_token), None)
        .await;
    assert_eq!(users.body.as_array().unwrap().len(), 4);
    assert!(!users.text.contains("mallory"));
    assert_eq!(
        users
            .body
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["role"] == "admin")
            .count(),
        1
    );
    let denied = t
        .send(
            Method::GET,
            "/api/v1/audit?action=user.update&per_page=200",
            Some(&t.admin_token),
            None,
        )
        .await;
    denied.assert_status(StatusCode::OK);
    assert_eq!(denied.body["total"], 3);
    assert!(
        denied.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["outcome"] == "denied")
    );

    // Every role may list teams (to pick a grantee) and manage its own tokens.
    for account in [&r.editor, &r.viewer, &r.auditor] {
        let token = Some(account.token.as_str());
        t.send(Method::GET, "/api/v1/teams", token, None)
            .await
            .assert_status(StatusCode::OK);
        let mine = t.send(Method::GET, "/api/v1/tokens", token, None).await;
        mine.assert_status(StatusCode::OK);
        assert_eq!(mine.body.as_array().unwrap().len(), 1);
        let created = t
            .send(
                Method::POST,
                "/api/v1/tokens",
                token,
                Some(json!({"name": "cli"})),
            )
            .await;
        created.assert_status(StatusCode::CREATED);
        let id = created.body["id"].as_str().unwrap();
        t.send(Method::DELETE, &format!("/api/v1/tokens/{id}"), token, None)
            .await
            .assert_status(StatusCode::NO_CONTENT);
    }
}

#[tokio::test]
async fn teams_are_created_replaced_and_deleted() {
    let t = TestApp::new().await;
    let r = roles(&t).await;
    let admin = Some(t.admin_token.as_str());
    let created = t
        .send(
            Method::POST,
            "/api/v1/teams",
            admin,
            Some(json!({"name": "data-eng", "members": [r.viewer.id, r.editor.id, r.viewer.id]})),
        )
        .await;
    created.assert_status(StatusCode::CREATED);
    assert_eq!(created.body["name"], "data-eng");
    assert_eq!(created.body["members"].as_array().unwrap().len(), 2);
    let id = created.body["id"].as_str().unwrap().to_owned();

    let listed = t
        .send(Method::GET, "/api/v1/teams", Some(&r.viewer.token), None)
        .await;
    listed.assert_status(StatusCode::OK);
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
    assert_eq!(listed.body[0]["id"], id.as_str());

    let replaced = t
        .send(
            Method::PUT,
            &format!("/api/v1/teams/{id}"),
            admin,
            Some(json!({"name": "analytics", "members": [r.auditor.id]})),
        )
        .await;
    replaced.assert_status(StatusCode::OK);
    assert_eq!(replaced.body["name"], "analytics");
    assert_eq!(replaced.body["members"], json!([r.auditor.id]));

    // A PUT never creates a team under an id the client chose.
    let unknown = t
        .send(
            Method::PUT,
            &format!("/api/v1/teams/{}", fresh()),
            admin,
            Some(json!({"name": "ghost"})),
        )
        .await;
    unknown.assert_error(StatusCode::NOT_FOUND, None);

    let taken = t
        .send(
            Method::POST,
            "/api/v1/teams",
            admin,
            Some(json!({"name": "analytics"})),
        )
        .await;
    taken.assert_error(StatusCode::CONFLICT, None);
    let no_member = t
        .send(
            Method::POST,
            "/api/v1/teams",
            admin,
            Some(json!({"name": "ops", "members": [fresh()]})),
        )
        .await;
    no_member.assert_error(StatusCode::NOT_FOUND, None);

    t.send(Method::DELETE, &format!("/api/v1/teams/{id}"), admin, None)
        .await
        .assert_status(StatusCode::NO_CONTENT);
    t.send(Method::DELETE, &format!("/api/v1/teams/{id}"), admin, None)
        .await
        .assert_error(StatusCode::NOT_FOUND, None);
    let listed = t.send(Method::GET, "/api/v1/teams", admin, None).await;
    assert_eq!(listed.body, json!([]));
}

#[tokio::test]
async fn a_token_is_shown_once_works_as_bearer_and_is_refused_once_revoked() {
    let t = TestApp::new().await;
    let r = roles(&t).await;
    let created = t
        .send(
            Method::POST,
            "/api/v1/tokens",
            Some(&r.editor.token),
            Some(json!({"name": "notebook", "expires_in_days": 30})),
        )
        .await;
    created.assert_status(StatusCode::CREATED);
    let token = created.body["token"].as_str().unwrap().to_owned();
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("dh_"), "{token}");
    assert_eq!(created.body["name"], "notebook");
    assert_eq!(created.body["read_only"], false);
    assert!(created.body["expires_at"].is_string());

    // It acts as its user; the list never shows a token's text again.
    let listed = t
        .send(Method::GET, "/api/v1/tokens", Some(&token), None)
        .await;
    listed.assert_status(StatusCode::OK);
    listed.assert_hides(&token);
    listed.assert_hides(&r.editor.token);
    let mine: Vec<_> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert_eq!(mine.len(), 2);
    assert!(mine.contains(&json!(id)));
    assert!(
        listed
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("token").is_none())
    );

    // Others' tokens are not listed, and only an admin may revoke them.
    let others = t
        .send(Method::GET, "/api/v1/tokens", Some(&r.viewer.token), None)
        .await;
    assert!(!others.text.contains(&id));
    t.send(
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        Some(&r.viewer.token),
        None,
    )
    .await
    .assert_error(StatusCode::FORBIDDEN, None);
    t.send(Method::GET, "/api/v1/tokens", Some(&token), None)
        .await
        .assert_status(StatusCode::OK);

    // Revoked with itself: refused from the next request on.
    t.send(
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        Some(&token),
        None,
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
    let refused = t
        .send(Method::GET, "/api/v1/tokens", Some(&token), None)
        .await;
    assert_eq!(
        refused.assert_error(StatusCode::UNAUTHORIZED, None),
        "unauthenticated"
    );
    let listed = t
        .send(Method::GET, "/api/v1/tokens", Some(&r.editor.token), None)
        .await;
    let entry = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(entry["revoked_at"].is_string());

    // An admin revokes anyone's token; an unknown id is 404.
    let viewer_tokens = t
        .send(Method::GET, "/api/v1/tokens", Some(&r.viewer.token), None)
        .await;
    let viewer_token_id = viewer_tokens.body[0]["id"].as_str().unwrap().to_owned();
    t.send(
        Method::DELETE,
        &format!("/api/v1/tokens/{viewer_token_id}"),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
    t.send(Method::GET, "/api/v1/teams", Some(&r.viewer.token), None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, None);
    t.send(
        Method::DELETE,
        &format!("/api/v1/tokens/{}", fresh()),
        Some(&t.admin_token),
        None,
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn a_read_only_token_reads_but_every_state_change_is_refused() {
    let t = TestApp::new().await;
    let created = t
        .send(
            Method::POST,
            "/api/v1/tokens",
            Some(&t.admin_token),
            Some(json!({"name": "reader", "read_only": true})),
        )
        .await;
    created.assert_status(StatusCode::CREATED);
    assert_eq!(created.body["read_only"], true);
    let reader = created.body["token"].as_str().unwrap().to_owned();
    let reader = Some(reader.as_str());
    let id = created.body["id"].as_str().unwrap().to_owned();

    for path in [
        "/api/v1/users",
        "/api/v1/teams",
        "/api/v1/tokens",
        "/api/v1/audit",
        "/api/v1/policy",
    ] {
        t.send(Method::GET, path, reader, None)
            .await
            .assert_status(StatusCode::OK);
    }
    let admin_id = t.admin().await.user().to_string();
    let writes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/api/v1/users".into(),
            Some(json!({"username": "sneaky", "password": CANARY, "role": "admin"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{admin_id}"),
            Some(json!({"password": CANARY})),
        ),
        (
            Method::POST,
            "/api/v1/users/me/password".into(),
            Some(
                json!({"current_password": "admin-password-for-the-tests", "new_password": CANARY}),
            ),
        ),
        (
            Method::POST,
            "/api/v1/teams".into(),
            Some(json!({"name": "crew"})),
        ),
        (
            Method::POST,
            "/api/v1/tokens".into(),
            Some(json!({"name": "more"})),
        ),
        (Method::DELETE, format!("/api/v1/tokens/{id}"), None),
        (
            Method::PUT,
            "/api/v1/policy".into(),
            Some(json!({"allow_cidrs": [], "deny_cidrs": [], "min_tls_mode": "disable"})),
        ),
    ];
    for (method, path, body) in writes {
        let reply = t.send(method.clone(), &path, reader, body).await;
        assert_eq!(
            reply.assert_error(StatusCode::FORBIDDEN, None),
            "permission_denied",
            "{method} {path}"
        );
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("read-only")
        );
        reply.assert_hides(CANARY);
    }
    // Nothing changed: the policy, the password, the token.
    let policy = t.send(Method::GET, "/api/v1/policy", reader, None).await;
    assert_eq!(policy.body["min_tls_mode"], "require");
    t.admin().await;
    t.send(Method::GET, "/api/v1/tokens", reader, None)
        .await
        .assert_status(StatusCode::OK);
}

/// S33: disabling an account revokes its tokens for good: enabling it again brings none back.
#[tokio::test]
async fn a_disabled_accounts_tokens_stay_revoked_when_it_is_enabled_again() {
    let t = TestApp::new().await;
    let r = roles(&t).await;
    let path = format!("/api/v1/users/{}", r.editor.id);
    let disabled = t
        .send(
            Method::PATCH,
            &path,
            Some(&t.admin_token),
            Some(json!({"disabled": true})),
        )
        .await;
    disabled.assert_status(StatusCode::OK);
    assert_eq!(disabled.body["disabled"], true);
    let refused = t
        .send(Method::GET, "/api/v1/tokens", Some(&r.editor.token), None)
        .await;
    assert_eq!(
        refused.assert_error(StatusCode::UNAUTHORIZED, None),
        "unauthenticated"
    );
    t.send(
        Method::PATCH,
        &path,
        Some(&t.admin_token),
        Some(json!({"disabled": false})),
    )
    .await
    .assert_status(StatusCode::OK);
    t.send(Method::GET, "/api/v1/tokens", Some(&r.editor.token), None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, None);
}

#[tokio::test]
async fn a_user_changes_their_own_password_given_the_current_one() {
    let t = TestApp::new().await;
    let r = roles(&t).await;
    let token = Some(r.viewer.token.as_str());
    let path = "/api/v1/users/me/password";

    let wrong = t
        .send(
            Method::POST,
            path,
            token,
            Some(json!({"current_password": CANARY, "new_password": "another-good-password"})),
        )
        .await;
    wrong.assert_error(StatusCode::BAD_REQUEST, Some("current_password"));
    wrong.assert_hides(CANARY);
    let weak = t
        .send(
            Method::POST,
            path,
            token,
            Some(json!({"current_password": USER_PASSWORD, "new_password": "short"})),
        )
        .await;
    weak.assert_error(StatusCode::BAD_REQUEST, Some("new_password"));

    t.send(
        Method::POST,
        path,
        token,
        Some(json!({"current_password": USER_PASSWORD, "new_password": CANARY})),
    )
    .await
    .assert_status(StatusCode::NO_CONTENT);
    t.login("vi", CANARY).await;
    assert!(
        t.hub
            .login("vi", USER_PASSWORD.into(), &Default::default())
            .await
            .is_err()
    );

    // Wrong guesses are limited like sign-ins.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let reply = t
            .send(
                Method::POST,
                path,
                token,
                Some(json!({"current_password": "not-the-password", "new_password": "whatever-else-1"})),
            )
            .await;
        statuses.push(reply.status);
    }
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

/// One bad request and the field its 4xx must name.
struct Bad {
    method: Method,
    path: String,
    body: &'static str,
    field: &'static str,
}

fn bad(method: Method, path: impl Into<String>, body: &'static str, field: &'static str) -> Bad {
    Bad {
        method,
        path: path.into(),
        body,
        field,
    }
}

#[tokio::test]
async fn bad_input_to_every_account_endpoint_is_a_4xx_naming_the_field() {
    let t = TestApp::new().await;
    let r = roles(&t).await;
    let user = format!("/api/v1/users/{}", r.viewer.id);
    let team = t
        .send(
            Method::POST,
            "/api/v1/teams",
            Some(&t.admin_token),
            Some(json!({"name": "crew"})),
        )
        .await;
    let team = format!("/api/v1/teams/{}", team.body["id"].as_str().unwrap());
    let long_name: &'static str = Box::leak(
        format!(
            r#"{{"username": "{}", "password": "pw-long-enough-1", "role": "viewer"}}"#,
            "a".repeat(65)
        )
        .into_boxed_str(),
    );
    let long_password: &'static str = Box::leak(
        format!(
            r#"{{"username": "dave", "password": "{}", "role": "viewer"}}"#,
            "p".repeat(1025)
        )
        .into_boxed_str(),
    );
    let long_team: &'static str =
        Box::leak(format!(r#"{{"name": "{}"}}"#, "t".repeat(65)).into_boxed_str());
    let long_token: &'static str =
        Box::leak(format!(r#"{{"name": "{}"}}"#, "n".repeat(65)).into_boxed_str());
    let cases = [
        // Users.
        bad(Method::POST, "/api/v1/users", "{", "body"),
        bad(Method::POST, "/api/v1/users", "[]", "body"),
        bad(
            Method::POST,
            "/api/v1/users",
            r#"{"username": 5, "password": "pw-long-enough-1", "role": "viewer"}"#,
            "username",
        ),
        bad(
            Method::POST,
            "/api/v1/users",
            r#"{"username": "dave", "password": 12345678901234, "role": "viewer"}"#,
            "password",
        ),
        bad(
            Method::POST,
            "/api/v1/users",
            r#"{"username": "dave", "password": "pw-long-enough-1", "role": "root"}"#,
            "role",
        ),
        bad(
            Method::POST,
            "/api/v1/users",
            r#"{"username": "dave", "password": "pw-long-enough-1"}"#,
            "role",
        ),
        bad(
            Method::POST,
            "/api/v1/users",
            r#"{"username": "dave", "password": "pw-long-enough-1", "role": "viewer", "admin": true}"#,
            "admin",
        ),
        bad(
            Method::POST,
            "/api/v1/users",
            r#"{"username": "Dave Smith", "password": "pw-long-enough-1", "role": "viewer"}"#,
            "username",
        ),
        bad(
            Method::POST,
            "/api/v1/users",
            r#"{"username": "dave", "password": "short", "role": "viewer"}"#,
            "password",
        ),
        bad(Method::POST, "/api/v1/users", long_name, "username"),
        bad(Method::POST, "/api/v1/users", long_password, "password"),
        bad(Method::GET, "/api/v1/users/not-a-uuid", "", "id"),
        bad(
            Method::PATCH,
            "/api/v1/users/12345",
            r#"{"role": "viewer"}"#,
            "id",
        ),
        bad(Method::PATCH, &*user, r#"{"disabled": "yes"}"#, "disabled"),
        bad(Method::PATCH, &*user, r#"{"role": "superuser"}"#, "role"),
        bad(
            Method::PATCH,
            &*user,
            r#"{"username": "renamed"}"#,
            "username",
        ),
        bad(Method::PATCH, &*user, r#"{"password": ""}"#, "password"),
        bad(
            Method::POST,
            "/api/v1/users/me/password",
            r#"{"current_password": 1, "new_password": "x"}"#,
            "current_password",
        ),
        bad(
            Method::POST,
            "/api/v1/users/me/password",
            r#"{"current_password": "x"}"#,
            "new_password",
        ),
        bad(
            Method::POST,
            "/api/v1/users/me/password",
            "not json",
            "body",
        ),
        // Teams.
        bad(
            Method::POST,
            "/api/v1/teams",
            r#"{"name": "ops", "members": ["nope"]}"#,
            "members[0]",
        ),
        bad(
            Method::POST,
            "/api/v1/teams",
            r#"{"name": "ops", "members": "all"}"#,
            "members",
        ),
        bad(
            Method::POST,
            "/api/v1/teams",
            r#"{"name": "Ops Team"}"#,
            "name",
        ),
        bad(Method::POST, "/api/v1/teams", long_team, "name"),
        bad(
            Method::POST,
            "/api/v1/teams",
            r#"{"name": "ops", "owner": "me"}"#,
            "owner",
        ),
        bad(Method::POST, "/api/v1/teams", r#"{"members": []}"#, "name"),
        bad(Method::PUT, "/api/v1/teams/zzz", r#"{"name": "ops"}"#, "id"),
        bad(Method::PUT, &*team, r#"{"name": null}"#, "name"),
        bad(Method::DELETE, "/api/v1/teams/1-2-3", "", "id"),
        // Tokens.
        bad(
            Method::POST,
            "/api/v1/tokens",
            r#"{"name": "cli", "expires_in_days": -1}"#,
            "expires_in_days",
        ),
        bad(
            Method::POST,
            "/api/v1/tokens",
            r#"{"name": "cli", "expires_in_days": 0}"#,
            "expires_in_days",
        ),
        bad(
            Method::POST,
            "/api/v1/tokens",
            r#"{"name": "cli", "expires_in_days": 99999}"#,
            "expires_in_days",
        ),
        bad(
            Method::POST,
            "/api/v1/tokens",
            r#"{"name": "cli", "expires_in_days": 1.5}"#,
            "expires_in_days",
        ),
        bad(
            Method::POST,
            "/api/v1/tokens",
            r#"{"name": "cli", "read_only": "yes"}"#,
            "read_only",
        ),
        bad(
            Method::POST,
            "/api/v1/tokens",
            r#"{"name": "cli", "scope": "all"}"#,
            "scope",
        ),
        bad(Method::POST, "/api/v1/tokens", r#"{"name": ""}"#, "name"),
        bad(Method::POST, "/api/v1/tokens", long_token, "name"),
        bad(
            Method::POST,
            "/api/v1/tokens",
            r#"{"name": "a\u0007b"}"#,
            "name",
        ),
        bad(Method::DELETE, "/api/v1/tokens/not-a-uuid", "", "id"),
    ];
    for case in cases {
        let (content_type, body) = if case.body.is_empty() {
            (None, String::new())
        } else {
            (Some("application/json"), case.body.to_owned())
        };
        let reply = t
            .send_raw(
                case.method.clone(),
                &case.path,
                Some(&t.admin_token),
                content_type,
                body,
            )
            .await;
        assert!(
            reply.status.is_client_error(),
            "{} {} {}: {} {}",
            case.method,
            case.path,
            case.body,
            reply.status,
            reply.text
        );
        assert_eq!(
            reply.body["error"]["field"], case.field,
            "{} {} {}: {}",
            case.method, case.path, case.body, reply.text
        );
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    }

    // A body that is not declared JSON.
    let reply = t
        .send_raw(
            Method::POST,
            "/api/v1/tokens",
            Some(&t.admin_token),
            Some("text/plain"),
            r#"{"name": "cli"}"#,
        )
        .await;
    reply.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, Some("Content-Type"));
    // Nothing was created by any of it.
    let users = t
        .send(Method::GET, "/api/v1/users", Some(&t.admin_token), None)
        .await;
    assert_eq!(users.body.as_array().unwrap().len(), 4);
    let tokens = t
        .send(Method::GET, "/api/v1/tokens", Some(&t.admin_token), None)
        .await;
    assert_eq!(tokens.body.as_array().unwrap().len(), 1);
}

/// The directory: every signed-in role (a read-only token too) finds enabled users and teams by
/// a case-insensitive part of the name, ids and names only, sorted, at most 20 of each; `q` is
/// checked and named when refused.
#[tokio::test]
async fn the_directory_finds_enabled_users_and_teams_by_name() {
    let t = TestApp::new().await;
    let viewer = t.account("vic-ops", Role::Viewer).await;
    let auditor = t.account("audrey", Role::Auditor).await;
    let gone = t.account("ops-gone", Role::Editor).await;
    let admin = t.admin_token.clone();
    let r = t
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{}", gone.id),
            Some(&admin),
            Some(json!({"disabled": true})),
        )
        .await;
    r.assert_status(StatusCode::OK);
    for name in ["ops", "devops", "web"] {
        t.send(
            Method::POST,
            "/api/v1/teams",
            Some(&admin),
            Some(json!({"name": name})),
        )
        .await
        .assert_status(StatusCode::CREATED);
    }
    let read_only = t.token_for("audrey", USER_PASSWORD, true).await;

    for token in [&viewer.token, &auditor.token, &read_only, &admin] {
        let r = t
            .send(Method::GET, "/api/v1/directory?q=OPS", Some(token), None)
            .await;
        r.assert_status(StatusCode::OK);
        let teams: Vec<&str> = r.body["teams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(teams, ["devops", "ops"], "{}", r.text);
        assert_eq!(
            r.body["users"],
            json!([{"id": viewer.id, "username": "vic-ops"}]),
            "the disabled user is not listed: {}",
            r.text
        );
        let team = r.body["teams"][0].as_object().unwrap();
        assert_eq!(team.len(), 2, "ids and names only: {}", r.text);
        assert!(team["id"].is_string());
    }
    // Without `q`: every enabled user and every team, by name.
    let r = t
        .send(Method::GET, "/api/v1/directory", Some(&viewer.token), None)
        .await;
    r.assert_status(StatusCode::OK);
    let users: Vec<&str> = r.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["admin", "audrey", "vic-ops"]);
    assert_eq!(r.body["teams"].as_array().unwrap().len(), 3);

    // At most 20 of each.
    for i in 0..22 {
        t.send(
            Method::POST,
            "/api/v1/teams",
            Some(&admin),
            Some(json!({"name": format!("squad-{i:02}")})),
        )
        .await
        .assert_status(StatusCode::CREATED);
    }
    let r = t
        .send(
            Method::GET,
            "/api/v1/directory?q=squad",
            Some(&viewer.token),
            None,
        )
        .await;
    let teams = r.body["teams"].as_array().unwrap();
    assert_eq!(teams.len(), 20, "{}", r.text);
    assert_eq!(teams[0]["name"], "squad-00");
    assert_eq!(teams[19]["name"], "squad-19");

    // Bad input names the field; nobody signed in gets 401.
    let long = "a".repeat(65);
    for q in [long.as_str(), "a%0Ab", "%07"] {
        let r = t
            .send(
                Method::GET,
                &format!("/api/v1/directory?q={q}"),
                Some(&viewer.token),
                None,
            )
            .await;
        r.assert_error(StatusCode::BAD_REQUEST, Some("q"));
    }
    let r = t
        .send(
            Method::GET,
            &format!("/api/v1/directory?q={}", "a".repeat(64)),
            Some(&viewer.token),
            None,
        )
        .await;
    r.assert_status(StatusCode::OK);
    let r = t
        .send(
            Method::GET,
            "/api/v1/directory?x=1",
            Some(&viewer.token),
            None,
        )
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, Some("x"));
    let r = t.send(Method::GET, "/api/v1/directory", None, None).await;
    r.assert_error(StatusCode::UNAUTHORIZED, None);
}

/// A wrong current password counts against the sign-in limit; once it is spent the answer is a
/// 429 with `Retry-After`.
#[tokio::test]
async fn password_change_guesses_are_limited_with_retry_after() {
    let t = TestApp::new().await;
    let user = t.account("guesser", Role::Viewer).await;
    let guess =
        json!({"current_password": "not-my-password-1", "new_password": "a-new-password-123"});
    let mut limited = None;
    for _ in 0..12 {
        let r = t
            .send(
                Method::POST,
                "/api/v1/users/me/password",
                Some(&user.token),
                Some(guess.clone()),
            )
            .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
            break;
        }
        r.assert_error(StatusCode::BAD_REQUEST, Some("current_password"));
    }
    let r = limited.expect("the guesses were never limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry), "Retry-After: {retry}");
    assert_eq!(r.body["error"]["code"], "rate_limited");
}

#[tokio::test]
async fn a_tokens_use_shows_in_the_list_recorded_once_a_minute() {
    let t = TestApp::new().await;
    let r = roles(&t).await;
    let created = t
        .send(
            Method::POST,
            "/api/v1/tokens",
            Some(&r.editor.token),
            Some(json!({"name": "ci"})),
        )
        .await;
    created.assert_status(StatusCode::CREATED);
    let token = created.body["token"].as_str().unwrap().to_owned();
    let id = created.body["id"].clone();
    let last_used = |listed: &Value| -> Value {
        let mine = listed.as_array().unwrap().iter().find(|t| t["id"] == id);
        mine.unwrap()["last_used_at"].clone()
    };
    let before = t
        .send(Method::GET, "/api/v1/tokens", Some(&r.editor.token), None)
        .await;
    assert_eq!(last_used(&before.body), Value::Null, "never used yet");

    // Its first use is recorded (RFC 3339, not before its creation) and listed.
    t.send(Method::GET, "/api/v1/connections", Some(&token), None)
        .await
        .assert_status(StatusCode::OK);
    let after = t
        .send(Method::GET, "/api/v1/tokens", Some(&r.editor.token), None)
        .await;
    let first = last_used(&after.body);
    let at = time::OffsetDateTime::parse(
        first.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let made = time::OffsetDateTime::parse(
        created.body["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(
        made <= at && at <= time::OffsetDateTime::now_utc(),
        "{first}"
    );
    // Uses within the minute leave it as it was.
    for _ in 0..3 {
        t.send(Method::GET, "/api/v1/tokens", Some(&token), None)
            .await
            .assert_status(StatusCode::OK);
    }
    let again = t
        .send(Method::GET, "/api/v1/tokens", Some(&token), None)
        .await;
    assert_eq!(last_used(&again.body), first);

    // The OpenAPI document describes the field.
    let spec = t
        .send(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    let field = &spec.body["components"]["schemas"]["ApiTokenInfo"]["properties"]["last_used_at"];
    assert!(field.is_object(), "{}", spec.text);
}
