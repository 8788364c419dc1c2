//! Master keys through the CLI: generate, rotate, retire; a lost or foreign key refused by
//! every command (S28); the PostgreSQL store over TLS (S32).

use super::*;

#[test]
fn keys_generate_rotate_and_retire() {
    let cli = Cli::new();
    add_conn(&cli, "keyed", &[]).ok();
    assert_key_file_private(&cli.key_file());
    let status = cli.run(&["keys", "status", "-o", "json"], None).ok().json();
    // A generated id, unique per key (S28), not `default`.
    let first = status[0]["id"].as_str().unwrap().to_owned();
    assert!(first.starts_with("k-"), "{first}");
    assert_eq!(status[0]["rows"], 1);

    // Printing a key touches nothing.
    let printed = cli
        .run(&["keys", "generate", "-o", "json"], None)
        .ok()
        .json();
    let entry = printed["entry"].as_str().unwrap();
    assert!(entry.starts_with(&format!("{}:", printed["id"].as_str().unwrap())));
    assert!(
        datahub_core::crypto::Keyring::parse(entry).is_ok(),
        "a valid keyring entry"
    );
    let before = std::fs::read_to_string(cli.key_file()).unwrap();
    assert!(!before.contains(entry));

    cli.run(&["keys", "generate", "--id", "k2", "--write"], None)
        .ok();
    assert_key_file_private(&cli.key_file());
    let again = cli.run(&["keys", "generate", "--id", "k2", "--write"], None);
    assert_eq!(again.code, 2, "a taken id is refused");
    let status = cli.run(&["keys", "status", "-o", "json"], None).ok().json();
    assert_eq!(status[0]["id"], "k2");
    assert_eq!(status[0]["active"], true);
    assert_eq!(status[0]["rows"], 0);
    assert_eq!(status[1]["id"], first.as_str());
    assert_eq!(status[1]["rows"], 1);

    let in_use = cli.run(&["keys", "retire", &first, "--write"], None);
    assert_eq!(in_use.code, 1, "{}", in_use.stderr);
    assert!(in_use.stderr.contains("still wraps 1"), "{}", in_use.stderr);
    assert!(
        std::fs::read_to_string(cli.key_file())
            .unwrap()
            .contains(&format!("{first}:"))
    );

    let rotated = cli.run(&["keys", "rotate", "-o", "json"], None).ok().json();
    assert_eq!(rotated["active"], "k2");
    assert_eq!(rotated["rewrapped"], 1);
    let rotated = cli.run(&["keys", "rotate", "-o", "json"], None).ok().json();
    assert_eq!(rotated["rewrapped"], 0);

    let active = cli.run(&["keys", "retire", "k2"], None);
    assert_eq!(active.code, 1);
    assert!(active.stderr.contains("active"), "{}", active.stderr);
    cli.run(&["keys", "retire", &first, "--write"], None).ok();
    assert_key_file_private(&cli.key_file());
    let text = std::fs::read_to_string(cli.key_file()).unwrap();
    assert!(
        !text.contains(&format!("{first}:")) && text.contains("k2:"),
        "{text}"
    );
    let status = cli.run(&["keys", "status", "-o", "json"], None).ok().json();
    assert_eq!(status.as_array().unwrap().len(), 1);
    assert_eq!(status[0]["rows"], 1);

    // The stored password still opens under the new key.
    let revealed = cli
        .reveal(&["conn", "reveal", "keyed", "-o", "json"])
        .ok()
        .json();
    assert_eq!(revealed["password"], CANARY);

    let tail = cli.run(&["audit", "tail", "-o", "json"], None).ok().json();
    let actions: Vec<&str> = tail
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "connection.create",
            "keys.retire",
            "keys.rotate",
            "keys.rotate",
            "keys.retire",
            "keys.retire",
            "connection.reveal",
        ]
    );
    cli.assert_no_canary();
}

#[cfg(unix)]
fn assert_key_file_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
}

#[cfg(not(unix))]
fn assert_key_file_private(path: &Path) {
    assert!(path.exists());
}

// ------------------------------------------------------------------------------------------
// S28: a lost or foreign master key is refused by every command and by `serve`
// ------------------------------------------------------------------------------------------

/// The right master key as bare base64 (id `default`), and a wrong one.
const RIGHT_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const WRONG_KEY: &str = "HxseHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE=";

/// Commands that each open the store and the keyring, one of every group.
const EVERY_KIND: &[&[&str]] = &[
    &["migrate"],
    &["users", "list"],
    &["tokens", "list", "--user", "admin"],
    &["conn", "list"],
    &["conn", "reveal", "keyed"],
    &["keys", "status"],
    &["keys", "generate", "--write"],
    &["audit", "verify"],
    &["policy", "show"],
];

/// What the store holds that a refused start must not change: key checks, audit rows, users.
fn snapshot(env: &[(&str, &str)], data: &Path) -> (Vec<String>, usize, u64) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store: std::sync::Arc<dyn datahub_core::store::Store> =
            match env.iter().find(|(k, _)| *k == "DATAHUB_STORE") {
                Some((_, url)) => std::sync::Arc::new(
                    datahub_core::store::PostgresStore::connect_url(
                        url,
                        datahub_core::store::PostgresOptions::default(),
                    )
                    .await
                    .unwrap(),
                ),
                None => std::sync::Arc::new(datahub_core::store::SqliteStore::open(data).unwrap()),
            };
        let checks = store
            .key_checks()
            .await
            .unwrap()
            .iter()
            .map(|c| c.kek_id().as_str().to_owned())
            .collect();
        let audit = store.audit_after(0, 100_000).await.unwrap().len();
        let users = store.user_count().await.unwrap();
        (checks, audit, users)
    })
}

/// Runs the server binary, which must refuse to start: exits non-zero within 30 s. Returns
/// its stderr.
fn serve_refused(cli: &Cli, env: &[(&str, &str)]) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DATAHUB_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .args(["--data-dir", cli.data.to_str().unwrap()])
        .args([
            "serve",
            "--no-monitor",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("DATAHUB_BOOTSTRAP_ADMIN_PASSWORD", USER_PW)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            assert_eq!(status.code(), Some(1), "{err}");
            return err;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started with a lost or wrong key");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Saves the connection `keyed` (canary password) with `env` set; it must succeed.
fn add_keyed(cli: &Cli, env: &[(&str, &str)]) {
    let added = cli.run_env(
        &[
            "conn",
            "add",
            "keyed",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
            "--database",
            "app",
            "--username",
            "app",
            "--tls-mode",
            "require",
            "--password-stdin",
        ],
        Some(&stdin_line(CANARY)),
        env,
    );
    assert_eq!(added.code, 0, "{}", added.stderr);
}

/// Every command and `serve` refuse with exit code 1 and a message holding each of `expect`;
/// none writes a key file or anything in the store.
#[track_caller]
fn everything_refuses(cli: &Cli, env: &[(&str, &str)], expect: &[&str]) {
    let before = snapshot(env, &cli.data);
    let key_file_before = std::fs::read(cli.key_file()).ok();
    for args in EVERY_KIND {
        let out = cli.run_env(args, None, env);
        assert_eq!(out.code, 1, "{args:?} exit code\n{}", out.stderr);
        for needle in expect {
            assert!(
                out.stderr.contains(needle),
                "{args:?}: no {needle:?} in\n{}",
                out.stderr
            );
        }
        assert!(!out.stdout.contains(CANARY));
    }
    let said = serve_refused(cli, env);
    for needle in expect {
        assert!(said.contains(needle), "serve: no {needle:?} in\n{said}");
    }
    assert!(!said.contains("A new master key"), "{said}");
    assert_eq!(
        std::fs::read(cli.key_file()).ok(),
        key_file_before,
        "no key file written or changed"
    );
    assert_eq!(
        snapshot(env, &cli.data),
        before,
        "nothing written to the store"
    );
}

/// The key file's one key id.
fn key_id_of(path: &Path) -> String {
    let keyring = datahub_core::crypto::Keyring::load_key_file(path).unwrap();
    keyring.active_id().as_str().to_owned()
}

/// S28 on the embedded store: the key file gone, then another data folder's key file, then a
/// wrong bare `DATAHUB_MASTER_KEY`: the server and every command refuse, naming the key id and
/// the file or variable, exiting 1 and writing nothing; the right key back starts and reveals.
/// Generated key ids are unique (not `default`).
#[test]
fn a_lost_or_foreign_key_is_refused_by_every_command_on_sqlite() {
    let cli = Cli::new();
    add_conn(&cli, "keyed", &[]).ok();
    let id = key_id_of(&cli.key_file());
    assert!(id.starts_with("k-") && id != "default", "{id}");
    let other = Cli::new();
    add_conn(&other, "elsewhere", &[]).ok();
    let other_id = key_id_of(&other.key_file());
    assert_ne!(id, other_id, "generated ids are unique");

    // The key file gone.
    let backup = cli.data.with_file_name("master.key.backup");
    std::fs::rename(cli.key_file(), &backup).unwrap();
    let path = cli.key_file().display().to_string();
    everything_refuses(&cli, &[], &[&id, &path, "does not exist"]);
    assert!(!cli.key_file().exists());

    // Another data folder's key file in its place.
    std::fs::copy(other.key_file(), cli.key_file()).unwrap();
    everything_refuses(&cli, &[], &[&id, &path]);

    // The right key back: starts and reveals.
    std::fs::rename(&backup, cli.key_file()).unwrap();
    let revealed = cli
        .reveal(&["conn", "reveal", "keyed", "-o", "json"])
        .ok()
        .json();
    assert_eq!(revealed["password"], CANARY);

    // A bare DATAHUB_MASTER_KEY (id `default`) with a wrong value.
    let env_cli = Cli::new();
    let right = [("DATAHUB_MASTER_KEY", RIGHT_KEY)];
    let wrong = [("DATAHUB_MASTER_KEY", WRONG_KEY)];
    add_keyed(&env_cli, &right);
    assert!(!env_cli.key_file().exists(), "the variable, not a file");
    everything_refuses(
        &env_cli,
        &wrong,
        &["default", "DATAHUB_MASTER_KEY", "not the key"],
    );
    // Without the variable, and no key file: refused too, naming `default` and the file.
    let path = env_cli.key_file().display().to_string();
    everything_refuses(&env_cli, &[], &["default", &path]);
    let revealed = env_cli.run_env(&["conn", "reveal", "keyed", "-o", "json"], None, &right);
    assert_eq!(revealed.code, 0, "{}", revealed.stderr);
    assert_eq!(revealed.json()["password"], CANARY);
    cli.assert_no_canary();
}

/// S28 on the PostgreSQL store (a kit cluster): the key file gone, a wrong bare
/// `DATAHUB_MASTER_KEY`, then the right keys back.
#[test]
fn a_lost_or_foreign_key_is_refused_by_every_command_on_postgres() {
    let cluster = PgCluster::builder()
        .user(User::new("store").password("store-pw-S28-x1"))
        .database("filekey", "store")
        .database("envkey", "store")
        .start()
        .unwrap();
    let file_url = cluster.url("store", "filekey");
    let file_env = [("DATAHUB_STORE", file_url.as_str())];
    let cli = Cli::new();
    add_keyed(&cli, &file_env);
    let id = key_id_of(&cli.key_file());
    let backup = cli.data.with_file_name("master.key.backup");
    std::fs::rename(cli.key_file(), &backup).unwrap();
    let path = cli.key_file().display().to_string();
    everything_refuses(&cli, &file_env, &[&id, &path]);
    // A fresh data folder on the same store: no key file is made for a store with data.
    let fresh = Cli::new();
    everything_refuses(&fresh, &file_env, &[&id]);
    assert!(!fresh.key_file().exists());
    std::fs::rename(&backup, cli.key_file()).unwrap();
    let revealed = cli.run_env(&["conn", "reveal", "keyed", "-o", "json"], None, &file_env);
    assert_eq!(revealed.code, 0, "{}", revealed.stderr);
    assert_eq!(revealed.json()["password"], CANARY);

    let env_url = cluster.url("store", "envkey");
    let right = [
        ("DATAHUB_STORE", env_url.as_str()),
        ("DATAHUB_MASTER_KEY", RIGHT_KEY),
    ];
    let wrong = [
        ("DATAHUB_STORE", env_url.as_str()),
        ("DATAHUB_MASTER_KEY", WRONG_KEY),
    ];
    let env_cli = Cli::new();
    add_keyed(&env_cli, &right);
    everything_refuses(
        &env_cli,
        &wrong,
        &["default", "DATAHUB_MASTER_KEY", "not the key"],
    );
    let revealed = env_cli.run_env(&["conn", "reveal", "keyed", "-o", "json"], None, &right);
    assert_eq!(revealed.code, 0, "{}", revealed.stderr);
    assert_eq!(revealed.json()["password"], CANARY);
}

/// S32 through the binary: `--store postgres://…?sslmode=verify-full&sslrootcert=…` migrates,
/// stores and reveals over TLS; a CA that did not sign the server's certificate makes every
/// command and `serve` refuse to start, saying the PostgreSQL store's certificate is the problem.
#[test]
fn the_postgres_store_over_tls_and_a_wrong_ca() {
    let cluster = PgCluster::builder()
        .tls(ServerCert::Valid)
        .user(
            User::new("store")
                .password("store-pw-S32-tls")
                .transport(datahub_testkit::Transport::SslOnly),
        )
        .database("store", "store")
        .start()
        .unwrap();
    let cli = Cli::new();
    std::fs::create_dir_all(&cli.data).unwrap();
    let ca = cli.data.join("store-ca.pem");
    let other = cli.data.join("other-ca.pem");
    std::fs::write(&ca, cluster.ca_pem().unwrap()).unwrap();
    std::fs::write(&other, cluster.other_ca_pem().unwrap()).unwrap();
    let base = cluster.url("store", "store");
    let good = format!("{base}?sslmode=verify-full&sslrootcert={}", ca.display());
    let env = [("DATAHUB_STORE", good.as_str())];
    let migrated = cli.run_env(&["migrate"], None, &env);
    assert_eq!(migrated.code, 0, "{}", migrated.stderr);
    assert!(
        !migrated.stderr.contains("may be unencrypted"),
        "no warning under verify-full: {}",
        migrated.stderr
    );
    let added = cli.run_env(
        &[
            "conn",
            "add",
            "over-tls",
            "--host",
            "127.0.0.1",
            "--port",
            "1",
            "--database",
            "app",
            "--username",
            "app",
            "--tls-mode",
            "require",
            "--password-stdin",
        ],
        Some(&stdin_line(CANARY)),
        &env,
    );
    assert_eq!(added.code, 0, "{}", added.stderr);
    let revealed = cli.run_env(&["conn", "reveal", "over-tls", "-o", "json"], None, &env);
    assert_eq!(revealed.code, 0, "{}", revealed.stderr);
    assert_eq!(revealed.json()["password"], CANARY);

    let wrong = format!("{base}?sslmode=verify-full&sslrootcert={}", other.display());
    let env = [("DATAHUB_STORE", wrong.as_str())];
    for args in [&["migrate"][..], &["conn", "list"], &["users", "list"]] {
        let out = cli.run_env(args, None, &env);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("PostgreSQL store"), "{}", out.stderr);
        assert!(
            out.stderr.contains("tls_certificate_invalid"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("store-pw-S32-tls"), "{}", out.stderr);
    }
    let said = serve_refused(&cli, &env);
    assert!(said.contains("tls_certificate_invalid"), "{said}");

    // No sslmode and no CA: prefer, with a warning at start.
    let env = [("DATAHUB_STORE", base.as_str())];
    let listed = cli.run_env(&["conn", "list"], None, &env);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.stderr.contains("may be unencrypted"),
        "{}",
        listed.stderr
    );
}
