//! Opening the core (store, keyring, Hub) from the settings, and serving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use datahub_core::crypto::{KekId, Keyring, MASTER_KEY_ENV};
use datahub_core::hub::Hub;
use datahub_core::keys;
use datahub_core::monitor::MonitorConfig;
use datahub_core::secret::Password;
use datahub_core::store::{PostgresOptions, PostgresStore, SqliteStore, Store};
use tokio_util::sync::CancellationToken;

use crate::config::{LogFormat, Settings, StoreChoice};
use crate::state::{AppState, HttpOptions};

/// The environment variable holding the first admin's password.
pub const BOOTSTRAP_PASSWORD_ENV: &str = "DATAHUB_BOOTSTRAP_ADMIN_PASSWORD";

/// How long graceful shutdown waits for requests in flight before it stops serving.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Installs the log subscriber: text or JSON lines on stderr, filtered by `settings.log_level`.
///
/// # Errors
/// When the filter does not parse.
pub fn init_logging(settings: &Settings) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .map_err(|_| anyhow!("log_level: not a valid filter (e.g. `info`, `debug`)"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match settings.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|_| anyhow!("logging was already set up"))
}

/// Opens the store named by the settings (applying pending migrations).
///
/// # Errors
/// When the store cannot be opened or migrated.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &settings.store {
        StoreChoice::Sqlite(dir) => {
            let dir = dir.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&dir))
                .await
                .context("opening the SQLite store")??;
            Arc::new(store)
        }
        StoreChoice::Postgres(url) => Arc::new(
            PostgresStore::connect_url(url.expose_secret(), PostgresOptions::default()).await?,
        ),
    })
}

/// The keyring: `DATAHUB_MASTER_KEY` when set, else the key file. A missing key file is created
/// (mode 0600, with a warning to back it up) only when `create` is true and the store is empty
/// (no connection, no recorded key check); for a store holding data it is refused, naming the
/// key ids and the file, and nothing is written (SECURITY.md S28). Whether the keyring opens
/// the store is [`Hub::open`]'s check.
///
/// # Errors
/// A missing, malformed or unsafe key (SECURITY.md S4, S5, S28); the store failing.
pub async fn open_keyring(
    settings: &Settings,
    store: &dyn Store,
    create: bool,
) -> anyhow::Result<Keyring> {
    if std::env::var_os(MASTER_KEY_ENV).is_some() {
        return Ok(Keyring::from_env()?);
    }
    let path = &settings.master_key_file;
    if path.exists() {
        return Ok(Keyring::load_key_file(path)?);
    }
    refuse_a_new_key(settings, store).await?;
    if !create {
        return Ok(Keyring::load_key_file(path)?);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the folder of {}", path.display()))?;
    }
    let keyring = Keyring::create_key_file(path)?;
    tracing::warn!(
        path = %path.display(),
        key = %keyring.active_id(),
        "created a new master key file: back it up now, losing it loses every stored credential"
    );
    eprintln!(
        "A new master key was written to {} (mode 0600). Back it up: without it no stored \
         credential can be opened.",
        path.display()
    );
    Ok(keyring)
}

/// Refuses to go on without the key file when the store already uses keys: a new key would
/// open none of its data (S28). Names the key ids and the file looked at.
///
/// # Errors
/// When the store uses any key id; when the store fails.
pub async fn refuse_a_new_key(settings: &Settings, store: &dyn Store) -> anyhow::Result<()> {
    let used = keys::store_key_ids(store).await?;
    if used.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = used.iter().map(KekId::as_str).collect();
    Err(anyhow!(
        "the key file {} does not exist, and {MASTER_KEY_ENV} is not set, but this store's data \
         is sealed under the key {} {}: restore that key file from your backup (or set \
         {MASTER_KEY_ENV}); a new key is made only for an empty store",
        settings.master_key_file.display(),
        if ids.len() == 1 { "id" } else { "ids" },
        ids.join(", ")
    ))
}

/// Checks, without writing anything, that the configured keyring opens everything `store`
/// uses; with no key source at all, only an empty store passes (the `migrate` command's
/// check, which must not make a key).
///
/// # Errors
/// As [`open_keyring`] and [`keys::check_store_keys`].
pub async fn check_keys(settings: &Settings, store: &dyn Store) -> anyhow::Result<()> {
    if std::env::var_os(MASTER_KEY_ENV).is_none() && !settings.master_key_file.exists() {
        return refuse_a_new_key(settings, store).await;
    }
    let keyring = open_keyring(settings, store, false).await?;
    keys::check_store_keys(store, &keyring).await?;
    Ok(())
}

/// Opens store and keyring and the Hub over them.
///
/// # Errors
/// As [`open_store`] and [`open_keyring`]; also when the keyring does not open every key the
/// store uses ([`Hub::open`]).
pub async fn open_hub(settings: &Settings, create_key: bool) -> anyhow::Result<Hub> {
    let store = open_store(settings).await?;
    let keyring = open_keyring(settings, store.as_ref(), create_key).await?;
    Ok(Hub::open(store, keyring).await?)
}

/// Creates the first admin when the store has no user: password from
/// `DATAHUB_BOOTSTRAP_ADMIN_PASSWORD`, else random and printed once on stderr (never logged).
///
/// # Errors
/// When the given password breaks the policy, or the store fails.
pub async fn bootstrap(hub: &Hub) -> anyhow::Result<()> {
    let password = std::env::var(BOOTSTRAP_PASSWORD_ENV)
        .ok()
        .map(Password::from);
    let Some(created) = hub.bootstrap_admin(password).await? else {
        return Ok(());
    };
    tracing::info!(username = %created.username, "created the first admin account");
    match created.generated_password {
        Some(password) => {
            eprintln!(
                "Created the first admin account.\n  username: {}\n  password: {}\nThis password \
                 is shown once: sign in and change it.",
                created.username,
                password.expose_secret()
            );
        }
        None => eprintln!(
            "Created the first admin account `{}` with the password from {BOOTSTRAP_PASSWORD_ENV}.",
            created.username
        ),
    }
    Ok(())
}

/// Serves until SIGINT or SIGTERM: opens the core, bootstraps the admin, starts the monitor and
/// the metrics recorder, and serves HTTP (or HTTPS with the configured certificate).
///
/// # Errors
/// When the core cannot be opened, the address cannot be bound, or the TLS files are unusable.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let hub = open_hub(&settings, true)
        .await?
        .with_test_rate_limit(settings.test_rate);
    bootstrap(&hub).await?;
    let metrics = crate::telemetry::builder()
        .and_then(|b| b.install_recorder())
        .context("installing the metrics recorder")?;
    let shutdown = CancellationToken::new();
    let options = HttpOptions {
        secure_cookies: settings.tls.is_some(),
        ..HttpOptions::default()
    };
    let mut state = AppState::new(hub.clone(), options)
        .with_login_limit(settings.login_limit)
        .with_metrics(metrics)
        .with_shutdown(shutdown.clone());
    let monitor = settings
        .monitor
        .then(|| hub.start_monitor(MonitorConfig::default()));
    if let Some(monitor) = monitor {
        state = state.with_monitor(monitor);
    }
    let refresher =
        crate::telemetry::spawn_refresh(state.clone(), crate::telemetry::REFRESH_INTERVAL);
    let app = crate::app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();

    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signal.cancel();
    });

    match &settings.tls {
        None => {
            let listener = tokio::net::TcpListener::bind(settings.listen)
                .await
                .with_context(|| format!("listening on {}", settings.listen))?;
            let local = listener.local_addr()?;
            tracing::info!(address = %local, "serving http");
            eprintln!("DataHub Connections is serving on http://{local}");
            let stop = shutdown.clone();
            axum::serve(no_delay(listener), app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
                .context("serving")?;
        }
        Some((cert, key)) => {
            let config = tls_config(cert, key)?;
            let handle = axum_server::Handle::new();
            let stop = handle.clone();
            let token = shutdown.clone();
            tokio::spawn(async move {
                token.cancelled().await;
                stop.graceful_shutdown(Some(SHUTDOWN_GRACE));
            });
            tracing::info!(address = %settings.listen, "serving https");
            eprintln!(
                "DataHub Connections is serving on https://{}",
                settings.listen
            );
            axum_server::bind_rustls(settings.listen, config)
                .handle(handle)
                .serve(app)
                .await
                .context("serving")?;
        }
    }
    shutdown.cancel();
    let _ = refresher.await;
    state.shutdown_monitor().await;
    Ok(())
}

/// `listener` with `TCP_NODELAY` set on every connection it accepts (as axum-server does for
/// HTTPS): an answer written in parts never waits for the client's acknowledgement of the
/// first (Nagle's algorithm holding a small write back, up to the client's delayed ACK).
pub fn no_delay(
    listener: tokio::net::TcpListener,
) -> axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt as _;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted connection");
        }
    })
}

/// The rustls server configuration from PEM files (ring provider, like every TLS use here).
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<axum_server::tls_rustls::RustlsConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("tls_cert: could not read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls_cert: {} holds no readable certificate", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|_| anyhow!("tls_key: {} holds no readable private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("tls: no protocol version available")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|_| anyhow!("tls_key: does not match tls_cert"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(config),
    ))
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
