//! Users, tokens, policy and the audit log through the CLI.

use super::*;

#[test]
fn users_tokens_policy_and_a_tampered_audit_log() {
    let cli = Cli::new();
    cli.run(&["migrate"], None).ok();
    assert!(cli.db().exists());

    // Users: the password only on stdin.
    let added = cli
        .run(
            &[
                "users",
                "add",
                "alice",
                "--role",
                "editor",
                "--password-stdin",
                "-o",
                "json",
            ],
            Some(&stdin_line(CANARY)),
        )
        .ok()
        .json();
    assert_eq!(added["username"], "alice");
    assert_eq!(added["role"], "editor");
    assert_eq!(added["disabled"], false);
    let table = cli.run(&["users", "list"], None).ok().stdout;
    assert!(
        table.contains("alice") && table.contains("editor"),
        "{table}"
    );
    let list = cli.run(&["users", "list", "-o", "json"], None).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], added["id"]);

    // Bad input: exit 2, and nothing is created.
    let bad_role = cli.run(
        &["users", "add", "bob", "--role", "root", "--password-stdin"],
        Some(&stdin_line(USER_PW)),
    );
    assert_eq!(bad_role.code, 2, "{}", bad_role.stderr);
    assert!(bad_role.stderr.contains("role"), "{}", bad_role.stderr);
    let no_terminal = cli.run(&["users", "add", "bob"], None);
    assert_eq!(no_terminal.code, 2);
    assert!(no_terminal.stderr.contains("--password-stdin"));
    let unknown_flag = cli.run(&["users", "add", "bob", "--password", "x"], None);
    assert_eq!(unknown_flag.code, 2, "passwords are never arguments");
    let list = cli.run(&["users", "list", "-o", "json"], None).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1);

    cli.run(
        &["users", "passwd", "alice", "--password-stdin"],
        Some(&stdin_line(USER_PW)),
    )
    .ok();

    // Tokens: shown once, for a named user, revocable.
    let token = cli
        .run(
            &[
                "tokens",
                "create",
                "--user",
                "alice",
                "--name",
                "ci",
                "--read-only",
                "-o",
                "json",
            ],
            None,
        )
        .ok()
        .json();
    assert!(
        token["token"].as_str().unwrap().starts_with("dh_"),
        "{token}"
    );
    assert_eq!(token["user_id"], added["id"]);
    assert_eq!(token["read_only"], true);
    let token_id = token["id"].as_str().unwrap().to_owned();
    cli.run(&["tokens", "revoke", &token_id], None).ok();
    let nobody = cli.run(
        &["tokens", "create", "--user", "nobody", "--name", "x"],
        None,
    );
    assert_eq!(nobody.code, 2);
    assert_eq!(cli.run(&["tokens", "revoke", "not-a-uuid"], None).code, 2);

    cli.run(&["users", "disable", "alice"], None).ok();
    let list = cli.run(&["users", "list", "-o", "json"], None).ok().json();
    assert_eq!(list[0]["disabled"], true);

    // Policy.
    let policy = cli.run(&["policy", "show", "-o", "json"], None).ok().json();
    assert_eq!(policy["min_tls_mode"], "require");
    assert_eq!(policy["allow_cidrs"], Value::Array(vec![]));
    let set = cli
        .run(
            &[
                "policy",
                "set",
                "--deny",
                "127.1.2.3/8",
                "--min-tls-mode",
                "verify-ca",
                "-o",
                "json",
            ],
            None,
        )
        .ok()
        .json();
    assert_eq!(set["deny_cidrs"][0], "127.0.0.0/8");
    assert_eq!(set["min_tls_mode"], "verify-ca");
    let shown = cli.run(&["policy", "show"], None).ok().stdout;
    assert!(
        shown.contains("127.0.0.0/8") && shown.contains("verify-ca"),
        "{shown}"
    );
    let bad = cli.run(&["policy", "set", "--allow", "not-a-network"], None);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("allow_cidrs[0]"), "{}", bad.stderr);
    assert_eq!(cli.run(&["policy", "set"], None).code, 2);
    cli.run(&["policy", "set", "--clear-deny"], None).ok();

    // Every change is audited as the operator.
    let tail = cli
        .run(&["audit", "tail", "-n", "50", "-o", "json"], None)
        .ok()
        .json();
    let rows = tail.as_array().unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "user.create",
            "user.update",
            "token.manage",
            "token.manage",
            "user.update",
            "policy.write",
            "policy.write",
        ]
    );
    for r in rows {
        assert_eq!(r["actor_name"], format!("operator:{OS_USER}"));
        assert_eq!(r["actor"], Value::Null);
        assert_eq!(r["outcome"], "ok");
        assert!(r["request_id"].as_str().unwrap().starts_with("cli-"));
    }
    let last2 = cli.run(&["audit", "tail", "-n", "2"], None).ok().stdout;
    assert!(last2.contains("policy.write") && !last2.contains("user.create"));

    let verified = cli
        .run(&["audit", "verify", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["checked"], 7);

    // Someone with the file edits entry 2 (the triggers only stop honest SQL).
    {
        let db = rusqlite::Connection::open(cli.db()).unwrap();
        db.execute_batch(
            "DROP TRIGGER audit_log_no_update;
             UPDATE audit_log SET actor_name = 'mallory' WHERE seq = 2;",
        )
        .unwrap();
    }
    let broken = cli.run(&["audit", "verify", "-o", "json"], None);
    assert_eq!(broken.code, 1, "{}", broken.stderr);
    let broken = broken.json();
    assert_eq!(broken["ok"], false);
    assert_eq!(broken["first_break"]["seq"], 2);
    assert_eq!(broken["first_break"]["kind"], "content");
    assert_eq!(broken["checked"], 1);
    let said = cli.run(&["audit", "verify"], None);
    assert_eq!(said.code, 1);
    assert!(said.stdout.contains("BROKEN at entry 2"), "{}", said.stdout);

    cli.assert_no_canary();
}

#[test]
fn tokens_list_shows_every_field_but_the_token() {
    let cli = Cli::new();
    let alice = add_user(&cli, "alice", "editor");
    let bob = add_user(&cli, "bob", "viewer");
    let create = |user: &str, name: &str, extra: &[&str]| {
        let mut args = vec![
            "tokens", "create", "--user", user, "--name", name, "-o", "json",
        ];
        args.extend_from_slice(extra);
        cli.run(&args, None).ok().json()
    };
    let a1 = create("alice", "ci", &["--read-only", "--expires-in-days", "7"]);
    let b1 = create("bob", "laptop", &[]);
    let a2 = create("alice", "old", &[]);
    cli.run(&["tokens", "revoke", a2["id"].as_str().unwrap()], None)
        .ok();
    let secrets = [&a1, &b1, &a2].map(|t| t["token"].as_str().unwrap().to_owned());
    // A use recorded by a server sharing the store (2024-05-06T07:08:09.123456Z, in unix µs).
    {
        let db = rusqlite::Connection::open(cli.db()).unwrap();
        db.execute(
            "UPDATE tokens SET last_used_at = 1714979289123456 WHERE id = ?1",
            [b1["id"].as_str().unwrap()],
        )
        .unwrap();
    }

    let all = cli.run(&["tokens", "list", "-o", "json"], None).ok();
    let json = all.json();
    let items = json.as_array().unwrap();
    let ids: Vec<&Value> = items.iter().map(|t| &t["id"]).collect();
    assert_eq!(ids, [&a1["id"], &b1["id"], &a2["id"]], "oldest first");
    let first = &items[0];
    assert_eq!(first["name"], "ci");
    assert_eq!(first["user_id"], alice["id"]);
    assert_eq!(first["username"], "alice");
    assert_eq!(first["read_only"], true);
    assert_eq!(first["created_at"], a1["created_at"]);
    assert_eq!(first["expires_at"], a1["expires_at"]);
    assert_eq!(first["revoked_at"], Value::Null);
    assert_eq!(items[1]["username"], "bob");
    assert_eq!(items[1]["user_id"], bob["id"]);
    assert_eq!(items[1]["expires_at"], Value::Null);
    assert_eq!(first["last_used_at"], Value::Null, "never used");
    assert_eq!(items[1]["last_used_at"], "2024-05-06T07:08:09.123456Z");
    assert!(items[2]["revoked_at"].is_string(), "{json}");
    // Exactly these fields (serde_json's map lists them sorted): no token, no hash.
    let keys: Vec<&String> = first.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "created_at",
            "expires_at",
            "id",
            "last_used_at",
            "name",
            "read_only",
            "revoked_at",
            "user_id",
            "username"
        ]
    );

    let only_bob = cli
        .run(&["tokens", "list", "--user", "bob", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(only_bob.as_array().unwrap().len(), 1);
    assert_eq!(only_bob[0]["id"], b1["id"]);
    let table = cli.run(&["tokens", "list", "--user", "alice"], None).ok();
    for expected in ["ci", "old", "alice", "yes", a1["id"].as_str().unwrap()] {
        assert!(
            table.stdout.contains(expected),
            "{expected}: {}",
            table.stdout
        );
    }
    assert!(!table.stdout.contains("laptop"), "{}", table.stdout);
    let bobs = cli.run(&["tokens", "list", "--user", "bob"], None).ok();
    for expected in ["last used", "2024-05-06T07:08:09"] {
        assert!(
            bobs.stdout.contains(expected),
            "{expected}: {}",
            bobs.stdout
        );
    }
    let nobody = cli.run(&["tokens", "list", "--user", "nobody"], None);
    assert_eq!(nobody.code, 2);
    assert!(nobody.stderr.contains("username"), "{}", nobody.stderr);

    // Neither the token nor its hash is ever printed by a listing.
    let hashes: Vec<String> = {
        let db = rusqlite::Connection::open(cli.db()).unwrap();
        let mut stmt = db.prepare("SELECT hash FROM tokens").unwrap();
        stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|h| h.unwrap().iter().map(|b| format!("{b:02x}")).collect())
            .collect()
    };
    assert_eq!(hashes.len(), 3);
    for out in [&all.stdout, &table.stdout] {
        for secret in secrets.iter().chain(&hashes) {
            assert!(!out.contains(secret.as_str()), "printed {secret}");
        }
        assert!(!out.contains("dh_"), "{out}");
    }
    // Listing is a read: the audit log holds only the creations and the revocation.
    let tail = cli
        .run(&["audit", "tail", "-n", "50", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(tail.as_array().unwrap().len(), 6);
}

#[test]
fn users_enable_and_set_role_keep_an_enabled_admin() {
    let cli = Cli::new();
    let root = add_user(&cli, "root1", "admin");
    add_user(&cli, "ed", "editor");
    let user = |name: &str| -> Value {
        let list = cli.run(&["users", "list", "-o", "json"], None).ok().json();
        list.as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .unwrap()
            .clone()
    };

    // Roles: the core's four names; the answer is the user as stored.
    let set = cli
        .run(&["users", "set-role", "ed", "auditor", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(set["username"], "ed");
    assert_eq!(set["role"], "auditor");
    assert_eq!(user("ed")["role"], "auditor");
    let table = cli.run(&["users", "set-role", "ed", "viewer"], None).ok();
    assert!(table.stdout.contains("viewer"), "{}", table.stdout);
    assert!(
        table.stderr.contains("ed is now viewer"),
        "{}",
        table.stderr
    );
    let bad = cli.run(&["users", "set-role", "ed", "root"], None);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("role"), "{}", bad.stderr);
    let nobody = cli.run(&["users", "set-role", "nobody", "admin"], None);
    assert_eq!(nobody.code, 2);
    assert_eq!(cli.run(&["users", "enable", "nobody"], None).code, 2);
    assert_eq!(user("ed")["role"], "viewer");

    // Disable and enable again.
    cli.run(&["users", "disable", "ed"], None).ok();
    assert_eq!(user("ed")["disabled"], true);
    let enabled = cli.run(&["users", "enable", "ed"], None).ok();
    assert!(
        enabled.stderr.contains("ed is enabled"),
        "{}",
        enabled.stderr
    );
    assert_eq!(user("ed")["disabled"], false);

    // The last enabled admin can be neither demoted nor disabled (exit 1, nothing changes).
    for args in [
        &["users", "set-role", "root1", "editor"][..],
        &["users", "disable", "root1"][..],
    ] {
        let refused = cli.run(args, None);
        assert_eq!(refused.code, 1, "{args:?}: {}", refused.stderr);
        assert!(
            refused.stderr.contains("last enabled admin"),
            "{}",
            refused.stderr
        );
    }
    assert_eq!(user("root1")["role"], "admin");
    assert_eq!(user("root1")["disabled"], false);
    // With a second admin, one may go; then the other is the last, until the first is back.
    cli.run(&["users", "set-role", "ed", "admin"], None).ok();
    cli.run(&["users", "disable", "root1"], None).ok();
    assert_eq!(
        cli.run(&["users", "set-role", "ed", "editor"], None).code,
        1,
        "a disabled admin does not count"
    );
    cli.run(&["users", "enable", "root1"], None).ok();
    cli.run(&["users", "set-role", "ed", "editor"], None).ok();
    assert_eq!(user("ed")["role"], "editor");
    assert_eq!(user("root1")["id"], root["id"]);
    assert_eq!(user("root1")["disabled"], false);

    // Each change is one audited update naming the field; refusals change nothing.
    let tail = cli
        .run(&["audit", "tail", "-n", "50", "-o", "json"], None)
        .ok()
        .json();
    let updates: Vec<(String, Value)> = tail
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "user.update")
        .map(|r| {
            (
                r["outcome"].as_str().unwrap().to_owned(),
                r["changed_fields"].clone(),
            )
        })
        .collect();
    let role = || ("ok".to_owned(), serde_json::json!(["role"]));
    let disabled = || ("ok".to_owned(), serde_json::json!(["disabled"]));
    assert_eq!(
        updates,
        [
            role(),
            role(),
            disabled(),
            disabled(),
            role(),
            disabled(),
            disabled(),
            role()
        ]
    );
}
