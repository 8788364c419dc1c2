//! Finding the machine's PostgreSQL programs and the system user that must run them.
//!
//! This module owns the search order (`PATH` first, then `/usr/lib/postgresql/<version>/bin`,
//! highest version first) and the `/etc/passwd` lookup. It never installs anything.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// Where Debian and Ubuntu install one folder per PostgreSQL major version.
const VERSIONED_ROOT: &str = "/usr/lib/postgresql";

/// The folder holding `initdb`, `pg_ctl` and `psql`, all from the same installation.
#[derive(Debug, Clone)]
pub(crate) struct PgBinaries {
    dir: PathBuf,
}

impl PgBinaries {
    /// Finds a folder holding `initdb`, `pg_ctl` and `psql`.
    ///
    /// `PATH` wins when it holds all three (a developer's own build); otherwise the highest
    /// `/usr/lib/postgresql/<version>/bin`. Debian's `/usr/bin/pg_ctl` wrappers lack `initdb`, so
    /// they are skipped by the all-three rule.
    pub(crate) fn locate() -> Result<Self> {
        let path_dirs = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default();
        Self::locate_in(path_dirs, Path::new(VERSIONED_ROOT))
    }

    fn locate_in(path_dirs: Vec<PathBuf>, versioned_root: &Path) -> Result<Self> {
        let mut searched = Vec::new();
        for dir in path_dirs.into_iter().chain(versioned_dirs(versioned_root)) {
            if has_all(&dir) {
                return Ok(PgBinaries { dir });
            }
            searched.push(dir.display().to_string());
        }
        Err(Error::new(
            ErrorKind::BinaryNotFound,
            format!(
                "no folder holds initdb, pg_ctl and psql together; searched PATH and \
                 {}/<version>/bin ({}); install them with `apt-get install postgresql`",
                versioned_root.display(),
                searched.join(", ")
            ),
        ))
    }

    pub(crate) fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

fn has_all(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "psql"]
        .iter()
        .all(|name| is_executable(&dir.join(name)))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
}

/// `/usr/lib/postgresql/<version>/bin`, highest version first.
fn versioned_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = version_key(&name)?;
            Some((key, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// "15" -> [15], "9.6" -> [9, 6]; anything else is not a version folder.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// The operating-system identity the server runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// True when the kit must switch to this identity (it runs as root).
    pub(crate) switch: bool,
}

impl RunAs {
    /// The `postgres` user when running as root (PostgreSQL refuses to run as root), otherwise
    /// the current user.
    pub(crate) fn detect() -> Result<Self> {
        let (uid, gid) = current_ids()?;
        if uid != 0 {
            return Ok(RunAs {
                uid,
                gid,
                switch: false,
            });
        }
        let passwd = fs::read_to_string("/etc/passwd")
            .map_err(|e| Error::io("reading /etc/passwd to find the postgres user", e))?;
        match lookup_user(&passwd, "postgres") {
            Some((uid, gid)) => Ok(RunAs {
                uid,
                gid,
                switch: true,
            }),
            None => Err(Error::new(
                ErrorKind::SystemUser,
                "running as root but /etc/passwd has no `postgres` user to run the server as; \
                 `apt-get install postgresql` creates it",
            )),
        }
    }
}

/// The effective uid and gid of this process, read without libc: `/proc/self` is owned by them.
fn current_ids() -> Result<(u32, u32)> {
    let meta = fs::metadata("/proc/self")
        .map_err(|e| Error::io("reading /proc/self to learn the current user", e))?;
    Ok((meta.uid(), meta.gid()))
}

/// Finds `name` in passwd(5) text and returns its uid and gid.
fn lookup_user(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lookup_reads_uid_and_gid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgres:x:104:110:PostgreSQL administrator:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(lookup_user(passwd, "postgres"), Some((104, 110)));
        assert_eq!(lookup_user(passwd, "postgre"), None);
        assert_eq!(lookup_user("postgres:x:abc:1:::\n", "postgres"), None);
    }

    #[test]
    fn missing_binaries_say_where_we_looked_and_how_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let err = PgBinaries::locate_in(vec![empty.path().to_owned()], &empty.path().join("none"))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BinaryNotFound);
        let message = err.to_string();
        assert!(
            message.contains(&empty.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("apt-get install postgresql"), "{message}");
    }

    #[test]
    fn highest_version_folder_wins() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        for version in ["9.6", "15", "16"] {
            let bin = root.path().join(version).join("bin");
            fs::create_dir_all(&bin).unwrap();
            for program in ["initdb", "pg_ctl", "psql"] {
                fs::write(bin.join(program), "#!/bin/sh\n").unwrap();
                fs::set_permissions(bin.join(program), fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        // 16 lacks psql, so 15 is the highest complete installation.
        fs::remove_file(root.path().join("16/bin/psql")).unwrap();
        let found = PgBinaries::locate_in(Vec::new(), root.path()).unwrap();
        assert_eq!(found.dir(), root.path().join("15/bin"));
    }

    #[test]
    fn version_folders_sort_numerically() {
        assert_eq!(version_key("15"), Some(vec![15]));
        assert_eq!(version_key("9.6"), Some(vec![9, 6]));
        assert_eq!(version_key("common"), None);
        assert!(version_key("16") > version_key("9.6"));
    }
}
