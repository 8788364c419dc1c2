//! Turning PostgreSQL and pool failures into the crate's [`Error`]: a message that says what to
//! check, never a connection password, and never the detail of a failing row (PostgreSQL's
//! `DETAIL` can quote a whole row, sealed columns included), so server errors are reduced to
//! their SQLSTATE and primary message.

use deadpool_postgres::{PoolError, TimeoutType};
use tokio_postgres::error::SqlState;

use crate::{Error, ErrorKind};

/// The SQLSTATE of a server error, if it is one.
pub(super) fn sqlstate(e: &tokio_postgres::Error) -> Option<&SqlState> {
    e.as_db_error().map(tokio_postgres::error::DbError::code)
}

/// The constraint a server error names, if any.
pub(super) fn constraint(e: &tokio_postgres::Error) -> Option<&str> {
    e.as_db_error()
        .and_then(tokio_postgres::error::DbError::constraint)
}

/// Whether `e` is a unique violation.
pub(super) fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    sqlstate(e) == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Whether `e` is a foreign key violation.
pub(super) fn is_foreign_key_violation(e: &tokio_postgres::Error) -> bool {
    sqlstate(e) == Some(&SqlState::FOREIGN_KEY_VIOLATION)
}

/// A failed statement or connection, `doing` what (e.g. `inserting a connection`).
pub(super) fn db(doing: &str, e: tokio_postgres::Error) -> Error {
    let Some(db) = e.as_db_error() else {
        // Client-side failures (I/O, a closed connection, a timeout) carry no server text and no
        // password, so the cause is kept.
        let message = if e.is_closed() {
            format!(
                "lost the connection to the PostgreSQL store while {doing}: check that the \
                 server is up and reachable"
            )
        } else {
            format!(
                "the PostgreSQL store failed while {doing}: check that the server is up and \
                 reachable"
            )
        };
        tracing::warn!(store = "postgres", doing, error = %e, "store request failed");
        return Error::new(ErrorKind::Store, message).with_source(e);
    };
    let code = db.code().code();
    // The SQLSTATE only: the server's text can quote a value.
    tracing::warn!(
        store = "postgres",
        doing,
        sqlstate = code,
        "store request failed"
    );
    let hint = match code.get(..2) {
        Some("57") if code == "57014" => {
            ": the statement ran out of time (the store is overloaded or a lock is held too long)"
        }
        Some("08") | Some("57") | Some("53") => {
            ": check that the server is up, accepting connections and not out of resources"
        }
        Some("40") => ": it collided with a concurrent change; retry",
        Some("28") => ": check the store's user name and password",
        Some("3D") => ": check that the store's database exists",
        Some("42") if code == "42501" => ": check the store user's privileges",
        Some("42") => ": check that the store's schema is the one this program expects",
        _ => "",
    };
    Error::new(
        ErrorKind::Store,
        format!(
            "the PostgreSQL store failed while {doing} ({code}: {}){hint}",
            db.message()
        ),
    )
}

/// A pool that could not hand out a connection.
pub(super) fn pool(e: PoolError, max_connections: usize) -> Error {
    if !matches!(e, PoolError::Backend(_)) {
        tracing::warn!(store = "postgres", error = %e, "store pool failed");
    }
    match e {
        PoolError::Timeout(TimeoutType::Wait) => Error::new(
            ErrorKind::Store,
            format!(
                "timed out waiting for a free connection to the PostgreSQL store (pool of \
                 {max_connections}): the store is overloaded or slow"
            ),
        ),
        PoolError::Timeout(TimeoutType::Create) => Error::new(
            ErrorKind::Store,
            "timed out connecting to the PostgreSQL store: check that the server is up and \
             reachable at the configured host and port",
        ),
        PoolError::Timeout(TimeoutType::Recycle) => Error::new(
            ErrorKind::Store,
            "timed out checking a pooled connection to the PostgreSQL store: check that the \
             server is up and responsive",
        ),
        PoolError::Backend(e) => match crate::probe::PoolConnectError::find(&e) {
            // Refused before the server said anything of its own: name the failure as a
            // connection test would (kind, step, hint), e.g. a certificate no trusted CA signed.
            Some(refused) => {
                let f = refused.failure();
                Error::new(
                    ErrorKind::Store,
                    format!(
                        "could not connect to the PostgreSQL store ({} during {}): {}; check the \
                         store URL",
                        f.kind, f.step, f.hint
                    ),
                )
            }
            None => db("connecting", e),
        },
        PoolError::Closed => Error::new(ErrorKind::Store, "the PostgreSQL store was closed"),
        PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => Error::new(
            ErrorKind::Internal,
            "the PostgreSQL store's connection pool is misconfigured",
        ),
    }
}
