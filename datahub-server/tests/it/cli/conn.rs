//! Connections and grants through the CLI.

use super::*;

#[test]
fn connections_against_a_kit_cluster() {
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(User::new("app").password(CANARY))
        .database("appdb", "app")
        .start()
        .unwrap();
    let cli = Cli::new();
    let ca = cli.data.with_file_name("ca.pem");
    std::fs::write(&ca, cluster.ca_pem().unwrap()).unwrap();
    let port = cluster.port().to_string();
    let add = |name: &str, password: &str| {
        cli.run(
            &[
                "conn",
                "add",
                name,
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--database",
                "appdb",
                "--username",
                "app",
                "--tls-mode",
                "verify-full",
                "--ca-cert",
                ca.to_str().unwrap(),
                "--tag",
                "kit",
                "--password-stdin",
                "-o",
                "json",
            ],
            Some(&stdin_line(password)),
        )
    };
    let saved = add("app-db", CANARY).ok().json();
    assert_eq!(saved["name"], "app-db");
    assert_eq!(saved["password_set"], true);
    assert_eq!(saved["tls"]["mode"], "verify-full");
    assert_eq!(saved["version"], 1);
    assert_eq!(saved["health"]["status"], "unknown");
    assert!(saved.get("password").is_none());
    assert_eq!(add("app-db", CANARY).code, 1, "the name is taken");
    add("wrong-pw", USER_PW).ok();
    let bad_port = cli.run(
        &[
            "conn",
            "add",
            "x",
            "--host",
            "127.0.0.1",
            "--port",
            "70000",
            "--database",
            "d",
            "--username",
            "u",
            "--password-stdin",
        ],
        Some(&stdin_line(USER_PW)),
    );
    assert_eq!(bad_port.code, 2);
    assert!(bad_port.stderr.contains("port"), "{}", bad_port.stderr);

    let table = cli.run(&["conn", "list"], None).ok().stdout;
    assert!(
        table.contains("app-db") && table.contains("wrong-pw"),
        "{table}"
    );
    let list = cli
        .run(&["conn", "list", "--search", "app", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["page"], 1);
    assert_eq!(list["items"][0]["id"], saved["id"]);

    let report = cli
        .run(&["conn", "test", "app-db", "-o", "json"], None)
        .ok()
        .json();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["error_kind"], Value::Null);
    assert_eq!(report["server"]["user"], "app");
    assert_eq!(report["server"]["database"], "appdb");
    assert!(
        report["tls"]["protocol"]
            .as_str()
            .unwrap()
            .starts_with("TLS")
    );
    assert!(report["steps"].as_array().unwrap().len() >= 4);
    for key in ["step", "hint", "sqlstate", "total_ms"] {
        assert!(report.get(key).is_some(), "{key}");
    }
    let by_id = cli
        .run(&["conn", "test", saved["id"].as_str().unwrap()], None)
        .ok();
    assert!(by_id.stdout.contains("app-db"), "{}", by_id.stdout);

    let failed = cli.run(&["conn", "test", "wrong-pw", "-o", "json"], None);
    assert_eq!(failed.code, 1);
    let failed = failed.json();
    assert_eq!(failed["ok"], false);
    assert_eq!(failed["error_kind"], "auth_failed");

    let all = cli.run(&["conn", "test", "--all", "-o", "json"], None);
    assert_eq!(all.code, 1, "one of them fails");
    let all = all.json();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["name"], "app-db");
    assert_eq!(all[0]["report"]["ok"], true);
    assert_eq!(all[1]["report"]["error_kind"], "auth_failed");
    assert_eq!(cli.run(&["conn", "test", "missing"], None).code, 2);
    assert_eq!(cli.run(&["conn", "test"], None).code, 2);

    let revealed = cli.reveal(&["conn", "reveal", "app-db", "-o", "json"]).ok();
    let json = revealed.json();
    assert_eq!(json["password"], CANARY);
    assert_eq!(json["username"], "app");
    assert!(json["dsn"].as_str().unwrap().starts_with("postgres"));
    assert!(revealed.stderr.contains("audit"));

    let unconfirmed = cli.run(&["conn", "rm", "app-db"], None);
    assert_eq!(unconfirmed.code, 2, "no terminal and no --yes");
    cli.run(&["conn", "rm", "app-db", "--yes"], None).ok();
    let list = cli.run(&["conn", "list", "-o", "json"], None).ok().json();
    assert_eq!(list["total"], 1);
    assert_eq!(cli.run(&["conn", "reveal", "app-db"], None).code, 2);

    let tail = cli
        .run(&["audit", "tail", "-n", "200", "-o", "json"], None)
        .ok()
        .json();
    let actions: Vec<&str> = tail
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for expected in [
        "connection.create",
        "connection.test",
        "connection.reveal",
        "connection.delete",
    ] {
        assert!(actions.contains(&expected), "{expected} in {actions:?}");
    }
    cli.run(&["audit", "verify"], None).ok();
    cli.assert_no_canary();
}

#[test]
fn conn_grants_in_the_cores_vocabulary() {
    let cli = Cli::new();
    add_user(&cli, "root", "admin");
    let bob = add_user(&cli, "bob", "viewer");
    add_user(&cli, "alice", "editor");
    let ops = add_conn(&cli, "ops-db", &[]).ok().json();

    // A team, made through the core on the same store (the CLI has no team commands).
    let (runtime, hub) = hub_of(&cli);
    let bob_id: datahub_core::UserId = bob["id"].as_str().unwrap().parse().unwrap();
    let team = runtime
        .block_on(hub.save_team(
            &datahub_core::rbac::Principal::operator("test"),
            None,
            "ops",
            &[bob_id],
        ))
        .unwrap();
    let team_id = team.id.to_string();

    // Grants in the core's vocabulary (view, use, manage), to a user or a team.
    let grants = |name: &str| {
        cli.run(&["conn", "grants", name, "-o", "json"], None)
            .ok()
            .json()
    };
    assert_eq!(grants("ops-db"), json!({"grants": []}));
    let set = cli
        .run(
            &[
                "conn", "grant", "ops-db", "--user", "bob", "--level", "use", "-o", "json",
            ],
            None,
        )
        .ok()
        .json();
    assert_eq!(
        set,
        json!({"grants": [{"user_id": bob["id"], "level": "use", "name": "bob"}]})
    );
    cli.run(
        &[
            "conn", "grant", "ops-db", "--team", "ops", "--level", "view",
        ],
        None,
    )
    .ok();
    // Granting again replaces the level.
    cli.run(
        &[
            "conn", "grant", "ops-db", "--user", "bob", "--level", "manage",
        ],
        None,
    )
    .ok();
    let now = grants("ops-db");
    let items = now["grants"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{now}");
    assert!(items.contains(&json!({"user_id": bob["id"], "level": "manage", "name": "bob"})));
    assert!(items.contains(&json!({"team_id": team_id, "level": "view", "name": "ops"})));
    let table = cli.run(&["conn", "grants", "ops-db"], None).ok().stdout;
    for expected in ["user", "bob", "manage", "team", "ops", "view", &team_id] {
        assert!(table.contains(expected), "{expected}: {table}");
    }

    // Bad input: exit 2, nothing changes.
    for args in [
        &[
            "conn", "grant", "ops-db", "--user", "bob", "--level", "edit",
        ][..],
        &[
            "conn", "grant", "ops-db", "--user", "nobody", "--level", "view",
        ][..],
        &[
            "conn", "grant", "ops-db", "--team", "nope", "--level", "view",
        ][..],
        &[
            "conn", "grant", "ops-db", "--user", "bob", "--team", "ops", "--level", "view",
        ][..],
        &["conn", "grant", "ops-db", "--level", "view"][..],
        &[
            "conn", "grant", "missing", "--user", "bob", "--level", "view",
        ][..],
        &["conn", "revoke-grant", "ops-db", "--user", "alice"][..],
    ] {
        let bad = cli.run(args, None);
        assert_eq!(bad.code, 2, "{args:?}: {}", bad.stderr);
    }
    let level = cli.run(
        &[
            "conn", "grant", "ops-db", "--user", "bob", "--level", "edit",
        ],
        None,
    );
    assert!(level.stderr.contains("level"), "{}", level.stderr);
    let none = cli.run(&["conn", "revoke-grant", "ops-db", "--user", "alice"], None);
    assert!(none.stderr.contains("holds no grant"), "{}", none.stderr);
    assert_eq!(grants("ops-db"), now);

    let revoked = cli
        .run(
            &[
                "conn",
                "revoke-grant",
                "ops-db",
                "--user",
                "bob",
                "-o",
                "json",
            ],
            None,
        )
        .ok()
        .json();
    assert_eq!(
        revoked,
        json!({"grants": [{"team_id": team_id, "level": "view", "name": "ops"}]})
    );

    // The HTTP API reads the same grants, and bob now sees the connection through his team.
    let (root_t, bob_t) = (token_of(&cli, "root"), token_of(&cli, "bob"));
    let app = app_of(hub);
    let ops_uri = format!("/api/v1/connections/{}", ops["id"].as_str().unwrap());
    runtime.block_on(async {
        let (status, api_grants) = api_get(&app, &format!("{ops_uri}/grants"), &root_t).await;
        assert_eq!(status, 200);
        assert_eq!(api_grants, revoked);
        let (status, seen) = api_get(&app, &ops_uri, &bob_t).await;
        assert_eq!(status, 200, "{seen}");
        let (_, bobs) = api_get(&app, "/api/v1/connections", &bob_t).await;
        assert_eq!(bobs["total"], 1);
    });

    // Four grant changes, each audited; refusals wrote nothing.
    let tail = cli
        .run(&["audit", "tail", "-n", "100", "-o", "json"], None)
        .ok()
        .json();
    let writes = tail
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "grants.write")
        .count();
    assert_eq!(writes, 4);
    cli.assert_no_canary();
}

#[test]
fn conn_add_owner_and_connections_no_user_owns() {
    let cli = Cli::new();
    add_user(&cli, "root", "admin");
    let alice = add_user(&cli, "alice", "editor");
    add_user(&cli, "carl", "viewer");
    cli.run(&["users", "disable", "carl"], None).ok();

    // Owners: no user by default, or an enabled user named with --owner.
    let ops = add_conn(&cli, "ops-db", &[]).ok().json();
    assert_eq!(ops["owner"], Value::Null, "no nil UUID posing as a user");
    assert_eq!(ops["client_key_set"], false, "the API's connection shape");
    let alices = add_conn(&cli, "alice-db", &["--owner", "alice"])
        .ok()
        .json();
    assert_eq!(alices["owner"], alice["id"]);
    for (owner, said) in [("nobody", "no user"), ("carl", "disabled")] {
        let refused = add_conn(&cli, "refused", &["--owner", owner]);
        assert_eq!(refused.code, 2, "{}", refused.stderr);
        assert!(
            refused.stderr.contains("owner") && refused.stderr.contains(said),
            "{}",
            refused.stderr
        );
    }
    let list = cli.run(&["conn", "list", "-o", "json"], None).ok().json();
    assert_eq!(list["total"], 2, "nothing refused was saved");
    let owners: Vec<(&Value, &Value)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (&c["name"], &c["owner"]))
        .collect();
    assert!(owners.contains(&(&json!("ops-db"), &Value::Null)));
    assert!(owners.contains(&(&json!("alice-db"), &alice["id"])));
    let shown = cli.run(&["conn", "grants", "ops-db"], None).ok().stdout;
    assert!(shown.contains("owner no user"), "{shown}");
    let shown = cli.run(&["conn", "grants", "alice-db"], None).ok().stdout;
    assert!(shown.contains("owner alice"), "{shown}");

    // Over HTTP: owner null, GET and list work for admins; the owner manages its own.
    let (root_t, alice_t) = (token_of(&cli, "root"), token_of(&cli, "alice"));
    let (runtime, hub) = hub_of(&cli);
    let app = app_of(hub);
    let uri = |c: &Value| format!("/api/v1/connections/{}", c["id"].as_str().unwrap());
    runtime.block_on(async {
        let (status, one) = api_get(&app, &uri(&ops), &root_t).await;
        assert_eq!(status, 200, "{one}");
        assert_eq!(one["owner"], Value::Null);
        assert_eq!(one["name"], "ops-db");
        let (status, all) = api_get(&app, "/api/v1/connections", &root_t).await;
        assert_eq!(status, 200, "{all}");
        assert_eq!(all["total"], 2);
        let api_owners: Vec<(&Value, &Value)> = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (&c["name"], &c["owner"]))
            .collect();
        assert!(api_owners.contains(&(&json!("ops-db"), &Value::Null)));
        assert!(api_owners.contains(&(&json!("alice-db"), &alice["id"])));
        // Alice sees only hers, and may manage it (read its grants).
        let (_, hers) = api_get(&app, "/api/v1/connections", &alice_t).await;
        assert_eq!(hers["total"], 1);
        assert_eq!(hers["items"][0]["owner"], alice["id"]);
        let (status, _) = api_get(&app, &format!("{}/grants", uri(&alices)), &alice_t).await;
        assert_eq!(status, 200);
        let (status, _) = api_get(&app, &uri(&ops), &alice_t).await;
        assert_eq!(status, 404);
    });

    // The creation for alice names the owner among the changed fields.
    let tail = cli
        .run(&["audit", "tail", "-n", "100", "-o", "json"], None)
        .ok()
        .json();
    let creates: Vec<&Value> = tail
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "connection.create")
        .map(|r| &r["changed_fields"])
        .collect();
    assert_eq!(creates, [&json!([]), &json!(["owner"])]);
    cli.assert_no_canary();
}
