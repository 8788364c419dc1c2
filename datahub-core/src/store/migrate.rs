//! Schema migrations shared by both stores: the embedded list, checksums, and the plan of what
//! to apply. Each backend applies the plan in its own way, under its own lock (SQLite: an
//! exclusive transaction; PostgreSQL: an advisory lock, so replicas starting together are safe).

use sha2::{Digest, Sha256};

use crate::{Error, ErrorKind, Result};

/// One migration: a numbered SQL script embedded in the binary.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number; migrations apply in increasing order, starting at 1. A number may be skipped
    /// (branches developed side by side each take their own), so a store can apply a lower
    /// number after a higher one; migrations are therefore written to be independent of any
    /// migration numbered between them.
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
/// embedded one (a version this program does not embed counts as one), or when the embedded list
/// itself is not numbered in increasing order from 1.
pub fn plan<'a>(available: &'a [Migration], applied: &[Applied]) -> Result<Vec<&'a Migration>> {
    let increasing = available.first().is_some_and(|m| m.version == 1)
        && available.windows(2).all(|w| w[0].version < w[1].version);
    if !increasing {
        return Err(Error::new(
            ErrorKind::Internal,
            "embedded migrations are not numbered in increasing order from 1",
        ));
    }
    let known = available.last().map_or(0, |m| m.version);
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
        let bad = [M[1], M[0]];
        assert_eq!(plan(&bad, &[]).unwrap_err().kind(), ErrorKind::Internal);
    }

    #[test]
    fn a_skipped_number_is_allowed_and_applied_later() {
        let late = Migration {
            version: 4,
            name: "late",
            sql: "CREATE TABLE d (x INT);",
        };
        let gap = [M[0], M[1], late];
        let names = |p: Vec<&Migration>| p.iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(
            names(plan(&gap, &[applied(&M[0])]).unwrap()),
            ["more", "late"]
        );
        // A store migrated by a build that had 3 but not 4 is refused by this one only if 3 is
        // unknown here: it is not embedded, so it counts as an edited migration.
        let third = Applied {
            version: 3,
            checksum: [1; 32],
        };
        let err = plan(&gap, &[applied(&M[0]), third]).unwrap_err();
        assert!(err.to_string().contains("migration 3"), "{err}");
        // The newest known version is the last embedded one, not the count.
        let future = Applied {
            version: 5,
            checksum: [0; 32],
        };
        let err = plan(&gap, &[future]).unwrap_err();
        assert!(err.to_string().contains("up to version 4"), "{err}");
    }
}
