//! Schema migrations shared by both stores: the embedded list, checksums, and the plan of what
//! to apply. Each backend applies the plan in its own way, under its own lock (SQLite: an
//! exclusive transaction; PostgreSQL: an advisory lock, so replicas starting together are safe).

use sha2::{Digest, Sha256};

use crate::{Error, ErrorKind, Result};

/// One migration: a numbered SQL script embedded in the binary.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number; migrations apply in increasing order, starting at 1, without gaps.
    pub version: u32,
    /// A short name, e.g. `init`.
    pub name: &'static str,
    /// The SQL, run as one script inside the migration transaction.
    pub sql: &'static str,
}

impl Migration {
    /// SHA-256 of the SQL: recorded when applied, and compared at every open, so a migration
    /// edited after it shipped is caught rather than silently diverging.
    pub fn checksum(&self) -> [u8; 32] {
        Sha256::digest(self.sql.as_bytes()).into()
    }
}

/// A migration a store records as applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// Its number.
    pub version: u32,
    /// The checksum recorded when it was applied.
    pub checksum: [u8; 32],
}

/// The migrations still to apply, in order.
///
/// # Errors
/// `Store` when the store's schema is newer than this program knows (it refuses to open rather
/// than run old code on a new schema), when an applied migration's checksum differs from the
/// embedded one, or when the embedded list itself is not numbered 1, 2, 3, ….
pub fn plan<'a>(available: &'a [Migration], applied: &[Applied]) -> Result<Vec<&'a Migration>> {
    for (i, m) in available.iter().enumerate() {
        if usize::try_from(m.version).ok() != Some(i + 1) {
            return Err(Error::new(
                ErrorKind::Internal,
                "embedded migrations are not numbered 1, 2, 3, …",
            ));
        }
    }
    let known = u32::try_from(available.len()).unwrap_or(u32::MAX);
    if let Some(newest) = applied.iter().map(|a| a.version).max()
        && newest > known
    {
        return Err(Error::new(
            ErrorKind::Store,
            format!(
                "the store's schema is version {newest} but this program knows only up to \
                 version {known}: upgrade datahub before opening this store"
            ),
        ));
    }
    for a in applied {
        let embedded = available
            .iter()
            .find(|m| m.version == a.version)
            .map(Migration::checksum);
        if embedded != Some(a.checksum) {
            return Err(Error::new(
                ErrorKind::Store,
                format!(
                    "migration {} differs from the one applied to this store (checksum \
                     mismatch): the store was migrated by a different build",
                    a.version
                ),
            ));
        }
    }
    Ok(available
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: [Migration; 2] = [
        Migration {
            version: 1,
            name: "init",
            sql: "CREATE TABLE a (x INT);",
        },
        Migration {
            version: 2,
            name: "more",
            sql: "CREATE TABLE b (x INT);",
        },
    ];

    fn applied(m: &Migration) -> Applied {
        Applied {
            version: m.version,
            checksum: m.checksum(),
        }
    }

    #[test]
    fn pending_migrations_come_in_order() {
        let names = |p: Vec<&Migration>| p.iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(names(plan(&M, &[]).unwrap()), ["init", "more"]);
        assert_eq!(names(plan(&M, &[applied(&M[0])]).unwrap()), ["more"]);
        assert!(
            plan(&M, &[applied(&M[0]), applied(&M[1])])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_newer_schema_is_refused_with_both_versions_named() {
        let future = Applied {
            version: 3,
            checksum: [0; 32],
        };
        let err = plan(&M, &[applied(&M[0]), applied(&M[1]), future]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Store);
        assert!(err.to_string().contains("version 3"), "{err}");
        assert!(err.to_string().contains("up to version 2"), "{err}");
    }

    #[test]
    fn an_edited_migration_is_refused() {
        let edited = Applied {
            version: 1,
            checksum: [7; 32],
        };
        let err = plan(&M, &[edited]).unwrap_err();
        assert!(err.to_string().contains("migration 1"), "{err}");
    }

    #[test]
    fn a_misnumbered_list_is_a_bug() {
        let bad = [M[1]];
        assert_eq!(plan(&bad, &[]).unwrap_err().kind(), ErrorKind::Internal);
    }
}
