//! The conformance suite on SQLite (a temp folder per test), and what only SQLite has: the file,
//! its folder, its migrations, and raw access to tamper with it.

use std::sync::Arc;

use datahub_core::store::{SqliteStore, Store};
use tempfile::TempDir;

use crate::store::conformance::conformance_suite;

/// A fresh store in its own temp folder; the folder lives as long as the returned guard.
async fn fresh_sqlite() -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("data")).unwrap();
    (Arc::new(store), dir)
}

conformance_suite!(fresh_sqlite());

// ------------------------------------------------------------------------------------------
// What only SQLite has
// ------------------------------------------------------------------------------------------

use datahub_core::ErrorKind;
use datahub_core::audit::{ChainBreak, ChainVerifier};
use datahub_core::store::sqlite::DATABASE_FILE;

use crate::store::conformance::{audit_all, conn, ev, keyring, row, sealed, spec, user};

fn raw(dir: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join(DATABASE_FILE)).unwrap()
}

#[tokio::test]
async fn reopening_keeps_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (id, owner) = {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir).unwrap());
        let owner = user(&store, "owner").await;
        (conn(&store, "orders", owner).await, owner)
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir).unwrap());
    assert_eq!(store.connection(id.id).await.unwrap().unwrap(), id);
    assert_eq!(
        store.user(owner).await.unwrap().unwrap().user.username,
        "owner"
    );
    assert_eq!(audit_all(&store, 10).await.len(), 2);
    // Opening again applied nothing twice.
    let n: i64 = raw(&dir)
        .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n as usize, datahub_core::store::sqlite::MIGRATIONS.len());
}

#[tokio::test]
async fn a_newer_schema_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    drop(SqliteStore::open(&dir).unwrap());
    raw(&dir)
        .execute(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) \
             VALUES (999, 'future', zeroblob(32), 0)",
            [],
        )
        .unwrap();
    let err = SqliteStore::open(&dir).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    let msg = err.to_string();
    assert!(msg.contains("version 999"), "{msg}");
    assert!(msg.contains("upgrade datahub"), "{msg}");
}

#[tokio::test]
async fn an_edited_migration_refuses_to_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    drop(SqliteStore::open(&dir).unwrap());
    raw(&dir)
        .execute(
            "UPDATE schema_migrations SET checksum = zeroblob(32) WHERE version = 1",
            [],
        )
        .unwrap();
    let err = SqliteStore::open(&dir).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[tokio::test]
async fn the_folder_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("data");
    let _store = SqliteStore::open(&dir).unwrap();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
    let file = std::fs::metadata(dir.join(DATABASE_FILE)).unwrap();
    assert_eq!(
        file.permissions().mode() & 0o077,
        0,
        "database readable by others"
    );
}

#[tokio::test]
async fn a_sealed_canary_never_reaches_the_files_in_plaintext() {
    const CANARY: &str = "canary-Zq8!vX2#pw-7f3e";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir).unwrap());
    let owner = user(&store, "owner").await;
    let mut r = row(spec("orders", "db.example.com", None, &[]), owner);
    r.secrets = sealed(&keyring("k1", 1), r.id, CANARY, true);
    store
        .insert_connection(&r, &ev("connection.create"))
        .await
        .unwrap();
    let mut again = r.clone();
    again.secrets = sealed(&keyring("k1", 1), r.id, CANARY, true);
    store
        .update_connection(&again, 1, &ev("connection.update"))
        .await
        .unwrap();
    let mut checked = 0;
    for name in [DATABASE_FILE.to_owned(), format!("{DATABASE_FILE}-wal")] {
        let Ok(bytes) = std::fs::read(dir.join(&name)) else {
            continue;
        };
        checked += bytes.len();
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "the canary is in {name} in plaintext"
        );
        assert!(
            !bytes.windows(20).any(|w| w == &b"-----BEGIN PRIVATE K"[..]),
            "{name}"
        );
    }
    assert!(checked > 0);
    // The row is there and opens with the key.
    let got = store.connection(r.id).await.unwrap().unwrap();
    let dek = keyring("k1", 1).unwrap_dek(r.id, &got.secrets.dek).unwrap();
    let pw = dek.open(r.id, "password", &got.secrets.password).unwrap();
    assert_eq!(pw.expose_secret(), CANARY.as_bytes());
}

#[tokio::test]
async fn an_edited_audit_row_is_detected() {
    let (store, tmp) = fresh_sqlite().await;
    let dir = tmp.path().join("data");
    for i in 0..5 {
        store.append_audit(&ev(&format!("step.{i}"))).await.unwrap();
    }
    let db = raw(&dir);
    // The store's SQL refuses edits and deletions outright ...
    let err = db
        .execute("UPDATE audit_log SET outcome = 'denied' WHERE seq = 3", [])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    assert!(
        db.execute("DELETE FROM audit_log WHERE seq = 4", [])
            .is_err()
    );
    // ... and someone who drops the guard is caught by the chain.
    db.execute_batch(
        "DROP TRIGGER audit_log_no_update; \
         UPDATE audit_log SET actor_name = 'mallory' WHERE seq = 3;",
    )
    .unwrap();
    let mut v = ChainVerifier::new();
    let verdict = audit_all(&store, 2)
        .await
        .iter()
        .try_for_each(|r| v.push(r));
    assert_eq!(verdict, Err(ChainBreak::Content { seq: 3 }));

    db.execute_batch("DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 3;")
        .unwrap();
    let mut v = ChainVerifier::new();
    let verdict = audit_all(&store, 2)
        .await
        .iter()
        .try_for_each(|r| v.push(r));
    assert_eq!(
        verdict,
        Err(ChainBreak::Gap {
            expected: 3,
            found: 4
        })
    );
}

#[tokio::test]
async fn a_corrupt_row_is_a_store_error_not_a_panic() {
    let (store, tmp) = fresh_sqlite().await;
    let dir = tmp.path().join("data");
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    let db = raw(&dir);
    db.execute_batch("CREATE TEMP TABLE saved AS SELECT * FROM connections")
        .unwrap();
    let restore = "UPDATE connections SET \
        name = (SELECT name FROM temp.saved), \
        connect_timeout_ms = (SELECT connect_timeout_ms FROM temp.saved), \
        tls_mode = (SELECT tls_mode FROM temp.saved), \
        sealed_password = (SELECT sealed_password FROM temp.saved), \
        owner = (SELECT owner FROM temp.saved)";
    for (sql, what) in [
        ("UPDATE connections SET name = 'Not A Name'", "name"),
        (
            "UPDATE connections SET connect_timeout_ms = 0",
            "connect timeout",
        ),
        ("UPDATE connections SET tls_mode = 'sometimes'", "tls_mode"),
        (
            "UPDATE connections SET sealed_password = x'00'",
            "sealed password",
        ),
        ("UPDATE connections SET owner = 'nobody'", "owner"),
    ] {
        db.execute(sql, []).unwrap();
        let err = store.connection(r.id).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Store, "{what}");
        assert!(err.to_string().contains("corrupt row"), "{what}: {err}");
        if what != "sealed password" {
            let err = store
                .list_connections(&Default::default(), &datahub_core::model::Visibility::All)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Store, "{what}");
            let err = store.connection_summary(r.id).await.unwrap_err();
            assert!(err.to_string().contains("corrupt row"), "{what}: {err}");
        }
        db.execute(restore, []).unwrap();
    }
    // Restored: the row reads again.
    assert_eq!(store.connection(r.id).await.unwrap().unwrap(), r);
}

#[tokio::test]
async fn a_failed_audit_write_rolls_the_change_back() {
    let (store, tmp) = fresh_sqlite().await;
    let dir = tmp.path().join("data");
    let owner = user(&store, "owner").await;
    let r = conn(&store, "orders", owner).await;
    raw(&dir)
        .execute_batch(
            "CREATE TRIGGER audit_full BEFORE INSERT ON audit_log \
             BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        )
        .unwrap();
    let other = row(spec("other", "db.example.com", None, &[]), owner);
    let err = store
        .insert_connection(&other, &ev("connection.create"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Store);
    assert!(store.connection(other.id).await.unwrap().is_none());
    let mut changed = r.clone();
    changed.spec = spec("renamed", "elsewhere.example.com", None, &[]);
    assert!(
        store
            .update_connection(&changed, 1, &ev("connection.update"))
            .await
            .is_err()
    );
    assert!(
        store
            .delete_connection(r.id, 1, &ev("connection.delete"))
            .await
            .is_err()
    );
    assert_eq!(store.connection(r.id).await.unwrap().unwrap(), r);
    raw(&dir).execute_batch("DROP TRIGGER audit_full").unwrap();
    assert_eq!(audit_all(&store, 10).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_keep_one_linear_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let a: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir).unwrap());
    let b: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir).unwrap());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        tasks.push(tokio::spawn(async move {
            store.append_audit(&ev("auth.login")).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut v = ChainVerifier::new();
    for r in audit_all(&a, 16).await {
        v.push(&r).unwrap();
    }
    assert_eq!(v.checked(), 40);
}

#[tokio::test]
async fn the_search_migration_backfills_existing_rows() {
    use datahub_core::model::{ListQuery, Visibility};
    use datahub_core::rbac::{Grant, GrantLevel, Grantee};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let viewer = {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir).unwrap());
        let owner = user(&store, "owner").await;
        let viewer = user(&store, "viewer").await;
        let rows = [
            row(
                spec(
                    "orders",
                    "h1.example.com",
                    Some("Ärger über Öl"),
                    &["red", "blue"],
                ),
                owner,
            ),
            row(spec("billing", "h2.example.com", None, &[]), owner),
        ];
        for r in &rows {
            store
                .insert_connection(r, &ev("connection.create"))
                .await
                .unwrap();
        }
        let grant = Grant {
            grantee: Grantee::User(viewer),
            level: GrantLevel::View,
        };
        crate::store_set_grants(store.as_ref(), rows[1].id, &[grant], &ev("grant.set"))
            .await
            .unwrap();
        viewer
    };
    // Back to a store migrated by version 1 only.
    raw(&dir)
        .execute_batch(
            "DROP TABLE connection_search_fts; DROP TABLE connection_search; \
             DROP TRIGGER grants_search_insert; DROP TRIGGER grants_search_delete; \
             DROP TRIGGER grants_search_update; \
             DELETE FROM schema_migrations WHERE version = 2;",
        )
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir).unwrap());
    for (search, expected) in [
        ("ÜBER", vec!["orders"]),
        ("blue", vec!["orders"]),
        ("redblue", vec![]),
        ("h2.ex", vec!["billing"]),
        ("ING", vec!["billing"]),
        (".example.", vec!["billing", "orders"]),
    ] {
        let query = ListQuery {
            search: Some(search.into()),
            ..ListQuery::default()
        };
        let page = store
            .list_connections(&query, &Visibility::All)
            .await
            .unwrap();
        let names: Vec<&str> = page.items.iter().map(|s| s.spec.name.as_str()).collect();
        assert_eq!(names, expected, "{search:?}");
        assert_eq!(page.total as usize, expected.len(), "{search:?}");
    }
    // The grants were carried over too.
    let query = ListQuery {
        search: Some(".example.".into()),
        ..ListQuery::default()
    };
    let vis = Visibility::Member {
        user: viewer,
        teams: vec![],
    };
    let page = store.list_connections(&query, &vis).await.unwrap();
    let names: Vec<&str> = page.items.iter().map(|s| s.spec.name.as_str()).collect();
    assert_eq!((names, page.total), (vec!["billing"], 1));
}
