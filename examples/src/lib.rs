//! Runnable examples of DataHub Connections. The logic of each example lives here as a function,
//! so the examples in `examples/` stay thin and the tests in `tests/` can run the same code.
//!
//! - [`run`] (example `embed`): a Rust program embedding the core on the default SQLite store.
//! - [`probe_cli::run`] (example `probe`): test one connection given as a libpq string and print
//!   the report as JSON.

pub mod probe_cli;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use datahub_core::audit::RequestInfo;
use datahub_core::crypto::Keyring;
use datahub_core::dsn::redact_url;
use datahub_core::hub::Hub;
use datahub_core::model::{Connection, ConnectionDraft, ListQuery};
use datahub_core::rbac::{Grant, GrantLevel, Grantee, Role};
use datahub_core::secret::Password;
use datahub_core::store::{SqliteStore, Store};

/// The demo database password of the connection the viewer is granted. Demo only: a real
/// program reads credentials from its user, never from its source.
pub const ORDERS_PASSWORD: &str = "orders-demo-Pw-7c41e9";
/// The demo database password of the connection the viewer is not granted.
pub const BILLING_PASSWORD: &str = "billing-demo-Pw-2b86d0";
/// The demo login password of the viewer.
pub const VIEWER_PASSWORD: &str = "viewer-demo-Pw-5a19f3";
/// The viewer's login name.
pub const VIEWER: &str = "vera";

/// What [`run`] saw, for callers and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The names the admin's list shows, in list order.
    pub admin_names: Vec<String>,
    /// How many connections the admin may see in all.
    pub admin_total: u64,
    /// The names the viewer's list shows, in list order.
    pub viewer_names: Vec<String>,
    /// How many connections the viewer may see in all.
    pub viewer_total: u64,
}

/// Embeds the core on the default SQLite store in `data_dir` and walks through the main calls,
/// writing what happens to `out`; never writes a password.
///
/// `data_dir` is created if missing and must otherwise be empty. It receives the key file
/// `master.key` (mode 0600, made by [`Keyring::create_key_file`]) and the store folder `store/`.
///
/// # Errors
/// When `data_dir` is not empty or cannot be created, when writing to `out` fails, and every
/// error of the core calls made (as `anyhow` errors saying which step failed).
pub async fn run(data_dir: &Path, out: &mut impl Write) -> anyhow::Result<Summary> {
    prepare_folder(data_dir)?;

    // 1. The master key: a new key file, readable by its owner only. Losing it loses every
    //    stored credential, so a real program tells its operator to back it up.
    let key_file = data_dir.join("master.key");
    let keyring = Keyring::create_key_file(&key_file).context("creating the key file")?;
    writeln!(
        out,
        "key file    {} (mode 0600; back it up: without it no credential opens)",
        key_file.display()
    )?;

    // 2. The store: SQLite in its own folder. Opening is blocking (file I/O, migrations).
    let store_dir = data_dir.join("store");
    let opened_dir = store_dir.clone();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&opened_dir))
        .await
        .context("opening the store")?
        .context("opening the store")?;
    let store: Arc<dyn Store> = Arc::new(store);
    writeln!(out, "store       {} (SQLite)", store_dir.display())?;

    // 3. The Hub: the one door to everything. It checks that the keyring opens the store's rows.
    let hub = Hub::open(store, keyring).await.context("opening the hub")?;

    // 4. The first admin, with a generated password shown once. This example logs in with it
    //    and keeps it to itself.
    let boot = hub
        .bootstrap_admin(None)
        .await
        .context("bootstrapping the admin")?
        .context("the new store already has users")?;
    let admin_password = boot
        .generated_password
        .context("bootstrap generated no password")?;
    let request = RequestInfo::default();
    let admin = hub
        .login(&boot.username, admin_password, &request)
        .await
        .context("logging in as the admin")?;
    writeln!(
        out,
        "admin       {:?} created and logged in (its generated password is not printed here)",
        boot.username
    )?;

    // 5. A connection, then a viewer who is granted `view` on it.
    let orders = hub
        .create_connection(
            &admin,
            draft(
                "orders-db",
                "Orders, primary",
                5432,
                "orders",
                "orders_app",
                ORDERS_PASSWORD,
            ),
        )
        .await
        .context("creating orders-db")?;
    writeln!(out, "connection  {:?} created", orders.spec.name.as_str())?;
    let viewer_user = hub
        .create_user(
            &admin,
            VIEWER,
            Password::from(VIEWER_PASSWORD),
            Role::Viewer,
        )
        .await
        .context("creating the viewer")?;
    hub.set_grants(
        &admin,
        orders.id,
        orders.version,
        &[Grant {
            grantee: Grantee::User(viewer_user.id),
            level: GrantLevel::View,
        }],
    )
    .await
    .context("granting the viewer view on orders-db")?;
    writeln!(
        out,
        "user        {VIEWER:?} created (role viewer), granted view on \"orders-db\""
    )?;

    // 6. A second connection the viewer is not granted.
    let billing = hub
        .create_connection(
            &admin,
            draft(
                "billing-db",
                "Billing, replica",
                5433,
                "billing",
                "billing_ro",
                BILLING_PASSWORD,
            ),
        )
        .await
        .context("creating billing-db")?;
    writeln!(
        out,
        "connection  {:?} created (not granted to the viewer)",
        billing.spec.name.as_str()
    )?;

    // 7. The same list call as each user: visibility is applied by the store.
    let viewer = hub
        .login(VIEWER, Password::from(VIEWER_PASSWORD), &request)
        .await
        .context("logging in as the viewer")?;
    let query = ListQuery::default();
    let admin_page = hub
        .list_connections(&admin, &query)
        .await
        .context("listing as the admin")?;
    let viewer_page = hub
        .list_connections(&viewer, &query)
        .await
        .context("listing as the viewer")?;
    writeln!(out, "\nas admin ({} in all):", admin_page.total)?;
    write_table(out, &admin_page.items)?;
    writeln!(out, "\nas {VIEWER} ({} in all):", viewer_page.total)?;
    write_table(out, &viewer_page.items)?;

    // 8. Credentials: the admin may reveal them (audited); the viewer's `view` grant does not
    //    allow it. Only the fact that a password is set, and the DSN redacted, are printed.
    let revealed = hub
        .reveal(&admin, orders.id)
        .await
        .context("revealing orders-db as the admin")?;
    let password_state = if revealed.password.expose_secret().is_empty() {
        "not set"
    } else {
        "set (not shown)"
    };
    writeln!(out, "\nreveal orders-db as admin:")?;
    writeln!(out, "  user      {}", revealed.username)?;
    writeln!(out, "  password  {password_state}")?;
    writeln!(
        out,
        "  dsn       {}",
        redact_url(revealed.dsn.expose_secret())
    )?;
    match hub.reveal(&viewer, orders.id).await {
        Ok(_) => bail!("the viewer could reveal credentials with a view grant"),
        Err(e) => writeln!(out, "reveal orders-db as {VIEWER}: refused ({e})")?,
    }

    Ok(Summary {
        admin_names: names(&admin_page.items),
        admin_total: admin_page.total,
        viewer_names: names(&viewer_page.items),
        viewer_total: viewer_page.total,
    })
}

/// Creates `dir` when missing; refuses one that holds anything (an earlier run's key file must
/// never be overwritten, and its store would already have an admin).
fn prepare_folder(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut entries =
        std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    if entries.next().is_some() {
        bail!(
            "{} is not empty: pass a new or empty folder with --data-dir",
            dir.display()
        );
    }
    Ok(())
}

/// A connection on the loopback address (nothing is dialled by this example).
fn draft(
    name: &str,
    description: &str,
    port: i64,
    database: &str,
    username: &str,
    password: &str,
) -> ConnectionDraft {
    ConnectionDraft {
        name: name.into(),
        description: Some(description.into()),
        host: "127.0.0.1".into(),
        port: Some(port),
        database: database.into(),
        username: username.into(),
        password: Some(Password::from(password)),
        ..ConnectionDraft::default()
    }
}

fn names(items: &[Connection]) -> Vec<String> {
    items
        .iter()
        .map(|c| c.spec.name.as_str().to_owned())
        .collect()
}

/// A small table of connections: name, host, port, version and health; no secret.
fn write_table(out: &mut impl Write, items: &[Connection]) -> std::io::Result<()> {
    writeln!(out, "  NAME         HOST         PORT VERSION  HEALTH")?;
    for c in items {
        writeln!(
            out,
            "  {:<12} {:<11} {:>5} {:>7}  {}",
            c.spec.name.as_str(),
            c.spec.host.as_str(),
            c.spec.port.get(),
            c.version,
            c.health.status
        )?;
    }
    Ok(())
}
