//! Settings: flags, `DATAHUB_*` environment variables, an optional TOML file, and defaults, in
//! that order of precedence.
//!
//! Defaults need nothing installed: listen on 127.0.0.1:8080, keep the SQLite store and the key
//! file in `./datahub-data`. A `postgres://` (or `postgresql://`) `--store` selects the shared
//! PostgreSQL store. Secrets are never taken as flags: the bootstrap admin's password comes from
//! `DATAHUB_BOOTSTRAP_ADMIN_PASSWORD`, the master key from `DATAHUB_MASTER_KEY` or the key file,
//! and a store URL with a password is best given by `DATAHUB_STORE` or the file (a flag shows in
//! the process list).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use datahub_core::dsn::redact_url;
use datahub_core::hub::{LoginLimit, RateLimit};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default data folder.
pub const DEFAULT_DATA_DIR: &str = "datahub-data";
/// The key file's name inside the data folder.
pub const KEY_FILE: &str = "master.key";

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines. The default.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings every command shares (the store, the key, logging).
#[derive(Debug, Clone, Default, Args)]
pub struct CommonArgs {
    /// A TOML settings file (keys as the long flags, with `_`: `listen`, `data_dir`, `store`,
    /// `master_key_file`, `tls_cert`, `tls_key`, `log_format`, `log_level`, `test_rate_burst`,
    /// `test_rate_per_second`, `login_burst`, `login_refill_seconds`).
    #[arg(long, env = "DATAHUB_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder of the embedded store and the key file. Default: ./datahub-data.
    #[arg(long, env = "DATAHUB_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// `sqlite` (the default, in the data folder) or a `postgres://` URL for a shared store.
    #[arg(
        long,
        env = "DATAHUB_STORE",
        global = true,
        value_name = "URL",
        hide_env_values = true,
        value_parser = StoreUrl::parse_arg
    )]
    pub store: Option<StoreUrl>,
    /// The master key file. Default: master.key in the data folder (created on first start
    /// when `DATAHUB_MASTER_KEY` is not set).
    #[arg(
        long,
        env = "DATAHUB_MASTER_KEY_FILE",
        global = true,
        value_name = "FILE"
    )]
    pub master_key_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "DATAHUB_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log level or filter, e.g. `info` or `datahub_core=debug,info`. Default: info.
    #[arg(long, env = "DATAHUB_LOG", global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// Settings of `serve`. Global like [`CommonArgs`], so each is accepted before or after the
/// subcommand (`datahub-server --listen ADDR serve` and `datahub-server serve --listen ADDR`);
/// other commands ignore them.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Address to listen on. Default: 127.0.0.1:8080.
    #[arg(long, env = "DATAHUB_LISTEN", global = true, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "DATAHUB_TLS_CERT", global = true, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "DATAHUB_TLS_KEY", global = true, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Do not run the health monitor in this process.
    #[arg(long, env = "DATAHUB_NO_MONITOR", global = true)]
    pub no_monitor: bool,
    /// Connection tests a user may run at once (draft and saved tests, and the first monitor
    /// check of a connection they saved or changed). Default: 20.
    #[arg(long, env = "DATAHUB_TEST_RATE_BURST", value_name = "N")]
    pub test_rate_burst: Option<u32>,
    /// Connection tests a user regains per second. Default: 1.
    #[arg(long, env = "DATAHUB_TEST_RATE_PER_SECOND", value_name = "RATE")]
    pub test_rate_per_second: Option<f64>,
    /// Failed sign-ins (and wrong current passwords) allowed at once per account name and per
    /// client address. Default: 10.
    #[arg(long, env = "DATAHUB_LOGIN_BURST", value_name = "N")]
    pub login_burst: Option<u32>,
    /// Seconds until one failed sign-in is forgotten. Default: 6 (10 a minute).
    #[arg(long, env = "DATAHUB_LOGIN_REFILL_SECONDS", value_name = "SECONDS")]
    pub login_refill_seconds: Option<f64>,
}

/// The TOML file's keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    store: Option<StoreUrl>,
    master_key_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    test_rate_burst: Option<u32>,
    test_rate_per_second: Option<f64>,
    login_burst: Option<u32>,
    login_refill_seconds: Option<f64>,
}

/// The `store` setting as given: `sqlite` or a PostgreSQL URL, which may hold the store's
/// password. It lives in a secret type (zeroized on drop); `Debug` and `Display` show it
/// redacted by the core's [`redact_url`] (S9, S34), and reading it takes `expose_secret`.
#[derive(Clone)]
pub struct StoreUrl(SecretString);

impl StoreUrl {
    /// Wraps a setting's text.
    pub fn new(text: String) -> Self {
        Self(SecretString::from(text))
    }

    /// The text, password included: only to connect.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }

    /// clap's parser: any text (checked by [`Settings::resolve`]).
    fn parse_arg(text: &str) -> Result<Self, std::convert::Infallible> {
        Ok(Self::new(text.to_owned()))
    }
}

impl PartialEq for StoreUrl {
    fn eq(&self, other: &Self) -> bool {
        self.expose_secret() == other.expose_secret()
    }
}

impl Eq for StoreUrl {}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({:?})", redact_url(self.expose_secret()))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.expose_secret()))
    }
}

impl<'de> Deserialize<'de> for StoreUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// Which store to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded SQLite store in this folder.
    Sqlite(PathBuf),
    /// A PostgreSQL store at this URL (`Debug` and `Display` redact its password).
    Postgres(StoreUrl),
}

/// Settings after merging flags, environment, file and defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The data folder.
    pub data_dir: PathBuf,
    /// The store.
    pub store: StoreChoice,
    /// The key file (used when `DATAHUB_MASTER_KEY` is not set).
    pub master_key_file: PathBuf,
    /// HTTPS certificate and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
    /// Whether to run the monitor.
    pub monitor: bool,
    /// The per-user limit on connection tests. Default: [`RateLimit::default`] (20, 1 a second).
    pub test_rate: RateLimit,
    /// The limit on failed sign-ins. Default: [`LoginLimit::default`] (10, one back every 6 s).
    pub login_limit: LoginLimit,
}

impl Settings {
    /// Merges `common` and `serve` (flags and environment, already merged by clap) over the
    /// settings file, over the defaults.
    ///
    /// # Errors
    /// A message naming the setting when the file cannot be read or parsed, the store is
    /// neither `sqlite` nor a PostgreSQL URL, only one of the TLS files is given, or a limit is
    /// not a positive number.
    pub fn resolve(common: &CommonArgs, serve: &ServeArgs) -> Result<Self, String> {
        let file = match &common.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let data_dir = common
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let store = match common.store.clone().or(file.store) {
            None => StoreChoice::Sqlite(data_dir.clone()),
            Some(s) if s.expose_secret() == "sqlite" => StoreChoice::Sqlite(data_dir.clone()),
            Some(s)
                if s.expose_secret().starts_with("postgres://")
                    || s.expose_secret().starts_with("postgresql://") =>
            {
                StoreChoice::Postgres(s)
            }
            Some(_) => {
                return Err(
                    "store: use `sqlite` or a postgres:// URL (the value is not repeated here)"
                        .to_owned(),
                );
            }
        };
        let master_key_file = common
            .master_key_file
            .clone()
            .or(file.master_key_file)
            .unwrap_or_else(|| data_dir.join(KEY_FILE));
        let tls = match (
            serve.tls_cert.clone().or(file.tls_cert),
            serve.tls_key.clone().or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err("tls_cert and tls_key: give both or neither".to_owned()),
        };
        let listen = match serve.listen.or(file.listen) {
            Some(listen) => listen,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| "listen: the default address does not parse".to_owned())?,
        };
        let defaults = RateLimit::default();
        let test_rate = RateLimit {
            burst: positive_count(
                "test_rate_burst",
                serve.test_rate_burst.or(file.test_rate_burst),
                defaults.burst,
            )?,
            per_second: positive_number(
                "test_rate_per_second",
                serve.test_rate_per_second.or(file.test_rate_per_second),
                defaults.per_second,
            )?,
        };
        let login_defaults = LoginLimit::default();
        let login_limit = LoginLimit {
            burst: positive_count(
                "login_burst",
                serve.login_burst.or(file.login_burst),
                login_defaults.burst,
            )?,
            refill: Duration::from_secs_f64(positive_number(
                "login_refill_seconds",
                serve.login_refill_seconds.or(file.login_refill_seconds),
                login_defaults.refill.as_secs_f64(),
            )?),
        };
        Ok(Self {
            listen,
            data_dir,
            store,
            master_key_file,
            tls,
            log_format: common.log_format.or(file.log_format).unwrap_or_default(),
            log_level: common
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_owned()),
            monitor: !serve.no_monitor,
            test_rate,
            login_limit,
        })
    }
}

/// A count of at least 1.
fn positive_count(name: &str, value: Option<u32>, default: u32) -> Result<u32, String> {
    match value {
        None => Ok(default),
        Some(0) => Err(format!("{name}: must be at least 1")),
        Some(n) => Ok(n),
    }
}

/// A finite number above 0 and at most a day's worth of seconds.
fn positive_number(name: &str, value: Option<f64>, default: f64) -> Result<f64, String> {
    match value {
        None => Ok(default),
        Some(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        Some(_) => Err(format!(
            "{name}: must be a number above 0 and at most 86400"
        )),
    }
}

fn read_file(path: &Path) -> Result<FileSettings, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("config: could not read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config: {}: {}", path.display(), e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_nothing() {
        let s = Settings::resolve(&CommonArgs::default(), &ServeArgs::default()).unwrap();
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            s.store,
            StoreChoice::Sqlite(PathBuf::from(DEFAULT_DATA_DIR))
        );
        assert_eq!(
            s.master_key_file,
            PathBuf::from(DEFAULT_DATA_DIR).join(KEY_FILE)
        );
        assert!(s.tls.is_none());
        assert!(s.monitor);
        assert_eq!(s.test_rate, RateLimit::default());
        assert_eq!(s.login_limit, LoginLimit::default());
    }

    #[test]
    fn limits_come_from_flags_or_the_file_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("datahub.toml");
        std::fs::write(
            &path,
            "test_rate_burst = 3\ntest_rate_per_second = 0.5\nlogin_burst = 4\n\
             login_refill_seconds = 30\n",
        )
        .unwrap();
        let common = CommonArgs {
            config: Some(path),
            ..CommonArgs::default()
        };
        let s = Settings::resolve(&common, &ServeArgs::default()).unwrap();
        assert_eq!(
            s.test_rate,
            RateLimit {
                burst: 3,
                per_second: 0.5
            }
        );
        assert_eq!(s.login_limit.burst, 4);
        assert_eq!(s.login_limit.refill, Duration::from_secs(30));
        let serve = ServeArgs {
            login_burst: Some(2),
            ..ServeArgs::default()
        };
        assert_eq!(
            Settings::resolve(&common, &serve)
                .unwrap()
                .login_limit
                .burst,
            2
        );
        for bad in [
            ServeArgs {
                test_rate_burst: Some(0),
                ..ServeArgs::default()
            },
            ServeArgs {
                test_rate_per_second: Some(f64::NAN),
                ..ServeArgs::default()
            },
            ServeArgs {
                login_refill_seconds: Some(-1.0),
                ..ServeArgs::default()
            },
        ] {
            let e = Settings::resolve(&CommonArgs::default(), &bad).unwrap_err();
            assert!(e.contains("test_rate") || e.contains("login"), "{e}");
        }
    }

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("datahub.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/from-file\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let common = CommonArgs {
            config: Some(path.clone()),
            data_dir: Some(PathBuf::from("/tmp/from-flag")),
            ..CommonArgs::default()
        };
        let s = Settings::resolve(&common, &ServeArgs::default()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(s.data_dir, PathBuf::from("/tmp/from-flag"));
        assert_eq!(s.log_format, LogFormat::Json);

        std::fs::write(&path, "lissten = \"x\"\n").unwrap();
        let e = Settings::resolve(&common, &ServeArgs::default()).unwrap_err();
        assert!(e.contains("lissten"), "{e}");
    }

    /// S34: settings holding a store URL with a password never show it in `Debug` or
    /// `Display`, from a flag or from the settings file.
    #[test]
    fn the_store_url_is_redacted_in_debug_and_display() {
        let canary = "canary-store-pw-3e1f";
        let url = format!("postgres://datahub:{canary}@127.0.0.1:5432/datahub?sslmode=require");
        let common = CommonArgs {
            store: Some(StoreUrl::new(url.clone())),
            ..CommonArgs::default()
        };
        let s = Settings::resolve(&common, &ServeArgs::default()).unwrap();
        let StoreChoice::Postgres(store) = &s.store else {
            panic!("a PostgreSQL store");
        };
        assert_eq!(store.expose_secret(), url);
        for shown in [
            format!("{s:?}"),
            format!("{s:#?}"),
            format!("{common:?}"),
            format!("{store}"),
            format!("{:?}", s.store),
        ] {
            assert!(!shown.contains(canary), "{shown}");
        }
        assert!(
            format!("{store}").contains("datahub:***@127.0.0.1:5432"),
            "{store}"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("datahub.toml");
        std::fs::write(&path, format!("store = \"{url}\"\n")).unwrap();
        let from_file = CommonArgs {
            config: Some(path),
            ..CommonArgs::default()
        };
        let s = Settings::resolve(&from_file, &ServeArgs::default()).unwrap();
        assert!(!format!("{s:?}").contains(canary));
    }

    #[test]
    fn a_bad_store_is_refused_without_echo() {
        let common = CommonArgs {
            store: Some(StoreUrl::new("mysql://u:canary-pw@127.0.0.1/db".to_owned())),
            ..CommonArgs::default()
        };
        let e = Settings::resolve(&common, &ServeArgs::default()).unwrap_err();
        assert!(e.starts_with("store:"), "{e}");
        assert!(!e.contains("canary-pw"));
        let pg = CommonArgs {
            store: Some(StoreUrl::new("postgres://app@127.0.0.1/datahub".to_owned())),
            ..CommonArgs::default()
        };
        let s = Settings::resolve(&pg, &ServeArgs::default()).unwrap();
        assert!(matches!(s.store, StoreChoice::Postgres(_)));
    }
}
