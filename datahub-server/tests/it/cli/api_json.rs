//! The CLI's `--output json` is the HTTP API's JSON for the same thing: users, tokens, the
//! policy, a connection, a test report, a reveal, a page of the audit log and its verification
//! (intact, then with a gap in the chain). Each is read through the CLI binary and through the
//! API (the app in this process, over the CLI's store and key file), and the parsed values are
//! compared whole, leaving out only what legitimately differs between two calls: a test's
//! timings, a token's secret, id and creation time, the last use of the token the API calls are
//! made with, and how many entries an intact chain holds (each verification is audited).

use axum::http::Method;

use super::*;

/// `value` without the object keys in `keys` (at the top level).
fn without(value: &Value, keys: &[&str]) -> Value {
    let mut value = value.clone();
    let object = value.as_object_mut().unwrap();
    for key in keys {
        object.remove(*key);
    }
    value
}

/// A test report without its timings (`total_ms`, each step's `ms`).
fn untimed(report: &Value) -> Value {
    let mut report = without(report, &["total_ms"]);
    for step in report["steps"].as_array_mut().unwrap() {
        step.as_object_mut().unwrap().remove("ms");
    }
    report
}

#[test]
fn cli_json_is_the_apis_json() {
    let cli = Cli::new();
    cli.run(&["migrate"], None).ok();
    let root = add_user(&cli, "root", "admin");
    let alice = add_user(&cli, "alice", "editor");
    let token = token_of(&cli, "root");
    let added = add_conn(&cli, "app-db", &[]).ok().json();
    let conn_id = added["id"].as_str().unwrap().to_owned();
    cli.run(&["policy", "set", "--deny", "127.0.0.254/32"], None)
        .ok();
    let (runtime, hub) = hub_of(&cli);
    let app = app_of(hub);
    let api = |method: Method, uri: &str, body: Option<Value>| {
        let (status, json) = runtime.block_on(api_send(&app, method, uri, &token, body));
        assert!(status.is_success(), "{uri}: {status} {json}");
        json
    };
    let get = |uri: &str| api(Method::GET, uri, None);
    let cli_json = |args: &[&str]| {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        cli.run(&args, None).ok().json()
    };

    // Users: the list, and one new account as `users add` printed it.
    assert_eq!(cli_json(&["users", "list"]), get("/api/v1/users"));
    let id = alice["id"].as_str().unwrap();
    assert_eq!(alice, get(&format!("/api/v1/users/{id}")));

    // Policy.
    assert_eq!(cli_json(&["policy", "show"]), get("/api/v1/policy"));

    // Connections: the list, and the new one as `conn add` printed it.
    let api_list = get("/api/v1/connections");
    assert_eq!(cli_json(&["conn", "list"]), api_list);
    assert_eq!(added, api_list["items"][0]);

    // A test's report (to a closed loopback port), but for its timings.
    let api_report = api(
        Method::POST,
        &format!("/api/v1/connections/{conn_id}/test"),
        None,
    );
    let cli_report = cli.run(&["conn", "test", "app-db", "-o", "json"], None);
    assert_eq!(cli_report.code, 1, "the test fails: {}", cli_report.stderr);
    assert_eq!(untimed(&cli_report.json()), untimed(&api_report));

    // A reveal: the one answer with the secret, kept out of what is checked for the canary.
    let api_reveal = api(
        Method::POST,
        &format!("/api/v1/connections/{conn_id}/reveal"),
        None,
    );
    let cli_reveal = cli.reveal(&["conn", "reveal", "app-db", "-o", "json"]).ok();
    assert_eq!(cli_reveal.json(), api_reveal);
    assert_eq!(api_reveal["password"], CANARY);

    // Tokens: the CLI lists every user's, each the API's token and the user it acts as.
    let cli_created = cli_json(&["tokens", "create", "--user", "root", "--name", "parity"]);
    let api_created = api(
        Method::POST,
        "/api/v1/tokens",
        Some(json!({"name": "parity"})),
    );
    assert_eq!(cli_created["user_id"], root["id"]);
    let fresh = ["id", "token", "created_at"];
    assert_eq!(
        without(&cli_created, &["user_id", "id", "token", "created_at"]),
        without(&api_created, &fresh)
    );
    let api_tokens = get("/api/v1/tokens");
    let cli_tokens = cli_json(&["tokens", "list", "--user", "root"]);
    let (api_tokens, cli_tokens) = (
        api_tokens.as_array().unwrap(),
        cli_tokens.as_array().unwrap(),
    );
    assert_eq!(cli_tokens.len(), api_tokens.len());
    assert_eq!(api_tokens.len(), 3, "{api_tokens:?}");
    for (cli_token, api_token) in cli_tokens.iter().zip(api_tokens) {
        assert_eq!(cli_token["user_id"], root["id"]);
        assert_eq!(cli_token["username"], "root");
        // The token of the API calls is used by them: its last use may be recorded between
        // the two reads.
        let used = if api_token["name"] == "t" {
            vec!["last_used_at"]
        } else {
            Vec::new()
        };
        let mut cli_keys = vec!["user_id", "username"];
        cli_keys.extend(&used);
        assert_eq!(without(cli_token, &cli_keys), without(api_token, &used));
    }

    // The audit log: the API's page (newest first) holds the CLI's tail (oldest first).
    let page = get("/api/v1/audit?per_page=200");
    let mut api_entries = page["items"].as_array().unwrap().clone();
    api_entries.reverse();
    let tail = cli_json(&["audit", "tail", "-n", "200"]);
    let cli_entries = &tail.as_array().unwrap()[..api_entries.len()];
    assert_eq!(cli_entries, api_entries.as_slice());
    assert!(
        api_entries
            .iter()
            .any(|e| e["actor"].is_null() && e["actor_name"] == format!("operator:{OS_USER}")),
        "{api_entries:?}"
    );
    assert!(api_entries.iter().any(|e| e["actor"] == root["id"]));

    // Its verification: intact (each verification is itself audited, so `checked` grows).
    let cli_verified = cli_json(&["audit", "verify"]);
    let api_verified = get("/api/v1/audit/verify");
    assert_eq!(cli_verified["ok"], true);
    assert_eq!(
        without(&cli_verified, &["checked"]),
        without(&api_verified, &["checked"])
    );

    // A gap: entry 3 is deleted by someone with the file.
    {
        let db = rusqlite::Connection::open(cli.db()).unwrap();
        db.execute_batch(
            "DROP TRIGGER audit_log_no_delete;
             DELETE FROM audit_log WHERE seq = 3;",
        )
        .unwrap();
    }
    let api_broken = get("/api/v1/audit/verify");
    let cli_broken = cli.run(&["audit", "verify", "-o", "json"], None);
    assert_eq!(cli_broken.code, 1, "{}", cli_broken.stderr);
    assert_eq!(cli_broken.json(), api_broken);
    assert_eq!(api_broken["first_break"]["kind"], "gap");
    assert_eq!(api_broken["first_break"]["seq"], 4, "the entry found");
    assert_eq!(api_broken["first_break"]["expected"], 3);
    assert_eq!(api_broken["checked"], 2);

    cli.assert_no_canary();
}
