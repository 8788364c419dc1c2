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
