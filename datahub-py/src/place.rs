//! Where a local hub's store is, as given to `LocalHub.open`, and opening the Hub there with the
//! server's own startup code (store, migrations, the key rules of SECURITY.md S28).

use std::path::{Path, PathBuf};

use datahub_core::hub::{Hub, RateLimit};
use datahub_server::config::{CommonArgs, ServeArgs, Settings, StoreUrl};
use datahub_server::startup;

use crate::errors::Raised;

/// How a hub was opened: enough to open it again (in a forked child).
#[derive(Debug, Clone)]
pub struct Place {
    /// The data folder (absolute): the SQLite store's, and the key file's default place.
    pub data_dir: Option<PathBuf>,
    /// A PostgreSQL store (its `Debug` redacts the password).
    pub store: Option<StoreUrl>,
    /// The key file, when not the data folder's `master.key`.
    pub key_file: Option<PathBuf>,
    /// Whether a missing folder and key may be made (only for an empty store).
    pub create: bool,
}

impl Place {
    /// Reads `open`'s arguments: a `postgres://` (or `postgresql://`) `store` is a shared store;
    /// any other `store` is a data folder, like `data_dir`.
    ///
    /// # Errors
    /// `invalid_input` when neither or both of a folder are given.
    pub fn new(
        data_dir: Option<String>,
        store: Option<String>,
        key_file: Option<String>,
        create: bool,
    ) -> Result<Self, Raised> {
        let (folder, url) = match store.filter(|s| !s.is_empty()) {
            Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                (data_dir, Some(StoreUrl::new(s)))
            }
            Some(_) if data_dir.is_some() => {
                return Err(Raised::invalid(
                    "store",
                    "give the data folder once: as data_dir, or as a store that is a folder",
                ));
            }
            Some(folder) => (Some(folder), None),
            None => (data_dir, None),
        };
        let folder = folder.filter(|f| !f.is_empty()).map(absolute).transpose()?;
        if folder.is_none() && url.is_none() {
            return Err(Raised::invalid(
                "data_dir",
                "give a data folder, or a postgres:// store URL",
            ));
        }
        let key_file = key_file
            .filter(|f| !f.is_empty())
            .map(absolute)
            .transpose()?;
        Ok(Self {
            data_dir: folder,
            store: url,
            key_file,
            create,
        })
    }

    /// Where the hub is, for reprs: `sqlite:<folder>` or `postgres://user@host:port/db`, never a
    /// password.
    pub fn describe(&self) -> String {
        match (&self.store, &self.data_dir) {
            (Some(url), _) => describe_url(url.expose_secret()),
            (None, Some(dir)) => format!("sqlite:{}", dir.display()),
            (None, None) => "nowhere".to_owned(),
        }
    }

    /// The server's settings for this place.
    fn settings(&self) -> Result<Settings, Raised> {
        let common = CommonArgs {
            data_dir: self.data_dir.clone(),
            store: self.store.clone(),
            master_key_file: self.key_file.clone(),
            ..CommonArgs::default()
        };
        Settings::resolve(&common, &ServeArgs::default()).map_err(|e| Raised::invalid("store", e))
    }

    /// Opens the Hub (on the runtime): the store (migrated), the keyring (`DATAHUB_MASTER_KEY`
    /// or the key file; made only when `create` and the store is empty), the Hub's key check.
    ///
    /// # Errors
    /// `invalid_input` on `data_dir` for a missing folder without `create`; the store's and
    /// the keyring's errors with their kinds.
    pub async fn open(&self) -> Result<Hub, Raised> {
        let settings = self.settings()?;
        if self.store.is_none() {
            let dir = &settings.data_dir;
            if !dir.is_dir() {
                if !self.create {
                    return Err(Raised::invalid(
                        "data_dir",
                        format!(
                            "the data folder {} does not exist: pass create=True to make a new \
                             one",
                            dir.display()
                        ),
                    ));
                }
                std::fs::create_dir_all(dir).map_err(|e| {
                    Raised::new(
                        "io",
                        "io",
                        format!("could not create the data folder {}: {e}", dir.display()),
                    )
                })?;
            }
        }
        let hub = startup::open_hub(&settings, self.create)
            .await
            .map_err(|e| self.opening_failed(e))?;
        // The operator is trusted like the server's CLI: its tests are not rate-limited per
        // user (`test_many` over a large store would otherwise stall at one test a second).
        Ok(hub.with_test_rate_limit(RateLimit {
            burst: u32::MAX,
            per_second: 1.0e9,
        }))
    }

    /// An opening error: a core error keeps its kind; the startup's own refusals (a missing
    /// key for a store holding data) are keyring errors. A store password never shows.
    fn opening_failed(&self, e: anyhow::Error) -> Raised {
        let mut raised = match e.downcast::<datahub_core::Error>() {
            Ok(core) => Raised::from(core),
            Err(other) => Raised::new("keyring", "keyring", format!("{other:#}")),
        };
        if let Some(password) = self
            .store
            .as_ref()
            .and_then(|u| password_of(u.expose_secret()))
        {
            raised.message = raised.message.replace(password, "****");
        }
        raised
    }
}

/// `p` made absolute against the current folder (so a later `chdir` changes nothing).
fn absolute(p: String) -> Result<PathBuf, Raised> {
    std::path::absolute(Path::new(&p))
        .map_err(|e| Raised::invalid("data_dir", format!("not a usable path: {e}")))
}

/// The parts of a `postgres://user:password@host:port/db?…` URL.
struct UrlParts<'a> {
    scheme: &'a str,
    user: Option<&'a str>,
    password: Option<&'a str>,
    host: &'a str,
    port: Option<&'a str>,
    database: &'a str,
}

fn split_url(url: &str) -> Option<UrlParts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, password)) => (Some(user), Some(password)),
            None => (Some(u), None),
        },
        None => (None, None),
    };
    // A bracketed IPv6 literal keeps its colons.
    let (host, port) = if let Some(end) = hostport.find(']') {
        let (host, after) = hostport.split_at(end + 1);
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    Some(UrlParts {
        scheme,
        user,
        password,
        host,
        port,
        database,
    })
}

/// The password of a store URL, when it has one.
fn password_of(url: &str) -> Option<&str> {
    split_url(url)
        .and_then(|p| p.password)
        .filter(|p| !p.is_empty())
}

/// `postgres://user@host:port/db`: the URL without its password and options.
fn describe_url(url: &str) -> String {
    let Some(p) = split_url(url) else {
        return "postgres://(unreadable URL)".to_owned();
    };
    let user = p.user.map(|u| format!("{u}@")).unwrap_or_default();
    let host = if p.host.is_empty() {
        "localhost"
    } else {
        p.host
    };
    format!(
        "{}://{user}{host}:{}/{}",
        p.scheme,
        p.port.filter(|p| !p.is_empty()).unwrap_or("5432"),
        p.database
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_never_shows_the_password() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@127.0.0.1:5433/hub?sslmode=require",
                "postgres://app@127.0.0.1:5433/hub",
            ),
            (
                "postgresql://app:s3cret@[::1]/hub",
                "postgresql://app@[::1]:5432/hub",
            ),
            ("postgres://127.0.0.1/hub", "postgres://127.0.0.1:5432/hub"),
            (
                "postgres://a:b:s3cret@127.0.0.1:1/d",
                "postgres://a@127.0.0.1:1/d",
            ),
        ] {
            let place = Place::new(None, Some(url.to_owned()), None, false).unwrap();
            assert_eq!(place.describe(), shown);
            assert!(!format!("{place:?}").contains("s3cret"));
        }
        assert_eq!(
            password_of("postgres://app:s3cret@127.0.0.1/hub"),
            Some("s3cret")
        );
        assert_eq!(password_of("postgres://app@127.0.0.1/hub"), None);
    }

    #[test]
    fn a_folder_is_made_absolute() {
        let place = Place::new(Some("some-data".to_owned()), None, None, true).unwrap();
        let dir = place.data_dir.clone().unwrap();
        assert!(dir.is_absolute());
        assert_eq!(place.describe(), format!("sqlite:{}", dir.display()));
        let as_store = Place::new(None, Some("some-data".to_owned()), None, true).unwrap();
        assert_eq!(as_store.data_dir, Some(dir));
        let e = Place::new(None, None, None, true).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("data_dir"));
    }

    #[tokio::test]
    async fn a_missing_folder_is_refused_without_create() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let place = Place::new(Some(missing.display().to_string()), None, None, false).unwrap();
        let e = place.open().await.unwrap_err();
        assert_eq!(e.code, "invalid_input");
        assert!(e.message.contains("does not exist"), "{e:?}");
        assert!(!missing.exists());
    }
}
