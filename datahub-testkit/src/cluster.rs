//! Throwaway PostgreSQL clusters: the builder, the running cluster, its files and its processes.
//!
//! This module owns everything that touches `initdb`, `pg_ctl` and `psql`: the per-process
//! template data folder, copying it into a fresh temporary folder per cluster, writing
//! `postgresql.conf` and `pg_hba.conf`, the TLS files, setup SQL, stop, restart and cleanup on
//! drop. It never mocks the server and never listens beyond `127.0.0.1` and its own unix socket
//! folder.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tempfile::TempDir;

use crate::binaries::{PgBinaries, RunAs};
use crate::certs::{ServerCert, TlsMaterial};
use crate::error::{Error, ErrorKind, Result};

/// The only address the clusters listen on and the helpers dial.
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// How many fresh ports the first start tries when another process takes the chosen one.
const PORT_ATTEMPTS: usize = 5;

/// How long `pg_ctl` may wait for the server to start or stop.
const PG_CTL_WAIT_SECS: &str = "30";

/// How many lines of the server log an error message carries.
const LOG_TAIL_LINES: usize = 20;

/// Everything but RFC 3986 unreserved characters is escaped in URL user, password and path.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The superuser `initdb` creates; it keeps `trust` over the unix socket only.
pub const SUPERUSER: &str = "postgres";

/// How a user proves who it is, as a `pg_hba.conf` method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AuthMethod {
    /// `scram-sha-256`; the password is stored as a SCRAM verifier. Default.
    #[default]
    ScramSha256,
    /// `md5`; the password is stored as an md5 hash (`password_encryption = md5` while creating
    /// it), so the server really runs the md5 exchange rather than upgrading to SCRAM.
    Md5,
    /// `password`: the password travels in cleartext (inside TLS when the client uses it).
    Password,
    /// `trust`: no password asked.
    Trust,
    /// `cert`: the client presents a certificate from [`PgCluster::client_cert`] whose common name
    /// is the user; needs TLS and always uses a `hostssl` line.
    Cert,
}

impl AuthMethod {
    fn hba_name(self) -> &'static str {
        match self {
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Md5 => "md5",
            AuthMethod::Password => "password",
            AuthMethod::Trust => "trust",
            AuthMethod::Cert => "cert",
        }
    }
}

/// Which TCP connections a user's `pg_hba.conf` line matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Transport {
    /// `host`: with or without TLS. Default.
    #[default]
    Any,
    /// `hostssl`: only over TLS; a plaintext attempt finds no matching line and is refused.
    SslOnly,
    /// `hostnossl`: only without TLS; a TLS attempt finds no matching line and is refused.
    NoSsl,
}

impl Transport {
    fn hba_type(self) -> &'static str {
        match self {
            Transport::Any => "host",
            Transport::SslOnly => "hostssl",
            Transport::NoSsl => "hostnossl",
        }
    }
}

/// A login role the cluster creates, with its password and its one `pg_hba.conf` line.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    name: String,
    password: Option<String>,
    auth: AuthMethod,
    transport: Transport,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth", &self.auth)
            .field("transport", &self.transport)
            .finish()
    }
}

impl User {
    /// A login role named `name` with no password, [`AuthMethod::ScramSha256`] and
    /// [`Transport::Any`]; names are checked at [`PgClusterBuilder::start`] (ASCII letters,
    /// digits, `_` and `-`, at most 63 bytes).
    pub fn new(name: &str) -> Self {
        User {
            name: name.to_owned(),
            password: None,
            auth: AuthMethod::default(),
            transport: Transport::default(),
        }
    }

    /// Sets the role's password. Default: none (the role cannot pass password methods).
    #[must_use]
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Sets the `pg_hba.conf` method. Default: [`AuthMethod::ScramSha256`].
    #[must_use]
    pub fn auth(mut self, auth: AuthMethod) -> Self {
        self.auth = auth;
        self
    }

    /// Sets which connections the `pg_hba.conf` line matches. Default: [`Transport::Any`].
    #[must_use]
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// The role's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `pg_hba.conf` line type: `cert` users always get `hostssl`.
    fn hba_type(&self) -> &'static str {
        match self.auth {
            AuthMethod::Cert => Transport::SslOnly.hba_type(),
            _ => self.transport.hba_type(),
        }
    }
}

/// Builds and starts a [`PgCluster`]; every option has a default, so
/// `PgCluster::builder().start()` gives a plaintext cluster with only the superuser.
#[derive(Debug, Clone)]
pub struct PgClusterBuilder {
    tls: Option<ServerCert>,
    users: Vec<User>,
    databases: Vec<(String, String)>,
    max_connections: u32,
    settings: Vec<(String, String)>,
    base_dir: Option<PathBuf>,
}

impl Default for PgClusterBuilder {
    fn default() -> Self {
        PgClusterBuilder {
            tls: None,
            users: Vec::new(),
            databases: Vec::new(),
            max_connections: 20,
            settings: Vec::new(),
            base_dir: None,
        }
    }
}

impl PgClusterBuilder {
    /// Turns TLS on, presenting the given server certificate variant. Default: TLS off.
    #[must_use]
    pub fn tls(mut self, server_cert: ServerCert) -> Self {
        self.tls = Some(server_cert);
        self
    }

    /// Adds a login role and its `pg_hba.conf` line; lines keep the order users were added.
    #[must_use]
    pub fn user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    /// Adds a database owned by `owner` (a user added with [`Self::user`] or `postgres`).
    #[must_use]
    pub fn database(mut self, name: &str, owner: &str) -> Self {
        self.databases.push((name.to_owned(), owner.to_owned()));
        self
    }

    /// Sets `max_connections`; PostgreSQL keeps `superuser_reserved_connections` (3 unless set
    /// with [`Self::setting`]) of them for superusers, and refuses to start when that leaves none.
    /// Default: 20.
    #[must_use]
    pub fn max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// Adds any other `postgresql.conf` setting; the value is written as a quoted string, and a
    /// later setting of the same name wins. Default: none.
    #[must_use]
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the folder the cluster's temporary folder is created in. Default: `/dev/shm` when it
    /// is a world-writable sticky folder (memory-backed, so copying the data folder's thousand
    /// small files is cheap), else
    /// [`std::env::temp_dir`]. When running as root every folder above it must be traversable by
    /// the `postgres` user.
    #[must_use]
    pub fn base_dir(mut self, base_dir: &Path) -> Self {
        self.base_dir = Some(base_dir.to_owned());
        self
    }

    /// Starts the cluster and runs its setup SQL, blocking until it accepts connections.
    ///
    /// Safe to call inside a tokio runtime (it blocks the calling thread, no nested runtime).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::BinaryNotFound`], [`ErrorKind::SystemUser`], [`ErrorKind::Initdb`],
    /// [`ErrorKind::Start`] (with the server log tail), [`ErrorKind::Setup`],
    /// [`ErrorKind::Certificate`], [`ErrorKind::Io`], and [`ErrorKind::InvalidInput`] for a bad
    /// name, a null byte in a password, a `cert` or `hostssl` user without TLS, or a database
    /// owner that is not a user.
    pub fn start(self) -> Result<PgCluster> {
        self.validate()?;
        let bins = PgBinaries::locate()?;
        let run_as = RunAs::detect()?;
        let default_base = default_base_dir();
        let base = self
            .base_dir
            .clone()
            .unwrap_or_else(|| default_base.clone());
        check_traversable(&base, run_as)?;
        // The template always lives in the default folder, so a caller's `base_dir` can be
        // deleted without pulling it from under other clusters.
        let template_base = default_base;
        check_traversable(&template_base, run_as)?;
        let template = template_data_dir(&bins, run_as, &template_base)?;

        let root = tempfile::Builder::new()
            .prefix("datahub-pg-")
            .tempdir_in(&base)
            .map_err(|e| Error::io(format!("creating a folder in {}", base.display()), e))?;
        let mut cluster = PgCluster {
            data_dir: root.path().join("data"),
            socket_dir: root.path().join("sock"),
            log_file: root.path().join("server.log"),
            port: 0,
            tls: None,
            server_cert: self.tls,
            users: self.users.clone(),
            bins,
            run_as,
            running: false,
            root,
        };
        // From here on, an error drops `cluster`, which stops any server and deletes the folder.
        cluster.lay_out_files(&template, &self)?;
        cluster.first_start()?;
        cluster.run_setup_sql(&self)?;
        Ok(cluster)
    }

    fn validate(&self) -> Result<()> {
        for user in &self.users {
            check_name("user", &user.name)?;
            if user.password.as_deref().is_some_and(|p| p.contains('\0')) {
                return Err(invalid(format!(
                    "password of user {} contains a null byte",
                    user.name
                )));
            }
            let needs_tls = user.auth == AuthMethod::Cert || user.transport == Transport::SslOnly;
            if needs_tls && self.tls.is_none() {
                return Err(invalid(format!(
                    "user {} needs tls (cert or hostssl) but the cluster has tls off; call .tls(..)",
                    user.name
                )));
            }
            if user.auth == AuthMethod::Cert && user.transport == Transport::NoSsl {
                return Err(invalid(format!(
                    "user {} uses cert auth, which cannot work on a hostnossl line",
                    user.name
                )));
            }
        }
        for (name, owner) in &self.databases {
            check_name("database", name)?;
            if owner != SUPERUSER && !self.users.iter().any(|u| &u.name == owner) {
                return Err(invalid(format!(
                    "database {name} has owner {owner}, who is not a user"
                )));
            }
        }
        for (name, _) in &self.settings {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            {
                return Err(invalid(format!(
                    "setting name {name:?} is not a postgresql.conf name"
                )));
            }
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections must be at least 1"));
        }
        Ok(())
    }
}

/// A running throwaway PostgreSQL cluster on `127.0.0.1` and a private unix socket folder.
///
/// Dropping it stops the server (`pg_ctl stop -m immediate`) and deletes its folder; drop never
/// panics.
pub struct PgCluster {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    tls: Option<TlsMaterial>,
    server_cert: Option<ServerCert>,
    users: Vec<User>,
    bins: PgBinaries,
    run_as: RunAs,
    running: bool,
    // Last field: dropped after `Drop::drop` has stopped the server.
    root: TempDir,
}

impl fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgCluster")
            .field("root", &self.root.path())
            .field("port", &self.port)
            .field("server_cert", &self.server_cert)
            .field("users", &self.users)
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

impl PgCluster {
    /// A builder with every option at its default (TLS off, no users, `max_connections` 20).
    pub fn builder() -> PgClusterBuilder {
        PgClusterBuilder::default()
    }

    /// The host to dial: always `"127.0.0.1"`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The TCP port, chosen free at first start and kept across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(LOOPBACK), self.port)
    }

    /// The folder holding the server's unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The cluster's data folder.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The temporary folder holding data, socket, TLS files and log; deleted on drop.
    pub fn root_dir(&self) -> &Path {
        self.root.path()
    }

    /// The folder the PostgreSQL programs were found in.
    pub fn bin_dir(&self) -> &Path {
        self.bins.dir()
    }

    /// The server certificate variant, or `None` when TLS is off.
    pub fn server_cert(&self) -> Option<ServerCert> {
        self.server_cert
    }

    /// The PEM of the cluster CA (signs the server certificate, except for
    /// [`ServerCert::OtherCa`], and every client certificate); `None` when TLS is off.
    pub fn ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.ca.pem())
    }

    /// The PEM of the unrelated CA that signs the [`ServerCert::OtherCa`] server certificate;
    /// `None` when TLS is off.
    pub fn other_ca_pem(&self) -> Option<&str> {
        self.tls.as_ref().map(|t| t.other_ca.pem())
    }

    /// Issues a client certificate for `user`, signed by the cluster CA; returns
    /// `(certificate PEM, PKCS#8 private key PEM)`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] when TLS is off, [`ErrorKind::Certificate`] if rcgen fails.
    pub fn client_cert(&self, user: &str) -> Result<(String, String)> {
        let tls = self
            .tls
            .as_ref()
            .ok_or_else(|| invalid("client certificates need a cluster with tls on"))?;
        let issued = tls.ca.issue_client(user)?;
        Ok((issued.cert_pem, issued.key_pem))
    }

    /// The password the cluster set for `user`, if any.
    pub fn password(&self, user: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|u| u.name == user)
            .and_then(|u| u.password.as_deref())
    }

    /// A `tokio_postgres::Config` for `user` on `database` over TCP to `127.0.0.1`, with the
    /// user's password when it has one, `sslmode` left at tokio-postgres's default (`prefer`)
    /// and a 10 s connect timeout.
    pub fn config(&self, user: &str, database: &str) -> tokio_postgres::Config {
        self.config_via(self.addr(), user, database)
    }

    /// Like [`Self::config`] but dialling `addr` instead of the cluster, typically a
    /// [`crate::FaultProxy`] in front of it; the TLS name is `addr`'s IP.
    pub fn config_via(
        &self,
        addr: SocketAddr,
        user: &str,
        database: &str,
    ) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host(addr.ip().to_string())
            .port(addr.port())
            .user(user)
            .dbname(database)
            .connect_timeout(Duration::from_secs(10));
        if let Some(password) = self.password(user) {
            config.password(password);
        }
        config
    }

    /// A `tokio_postgres::Config` for the `postgres` superuser over the unix socket (trust), on
    /// the `postgres` database.
    pub fn superuser_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(SUPERUSER)
            .dbname(SUPERUSER)
            .connect_timeout(Duration::from_secs(10));
        config
    }

    /// A `postgres://user[:password]@127.0.0.1:port/database` URL, percent-encoded, without
    /// `sslmode` (add `?sslmode=require` yourself when needed).
    pub fn url(&self, user: &str, database: &str) -> String {
        let enc = |s: &str| utf8_percent_encode(s, URL_COMPONENT).to_string();
        let credentials = match self.password(user) {
            Some(password) => format!("{}:{}", enc(user), enc(password)),
            None => enc(user),
        };
        format!(
            "postgres://{credentials}@{}:{}/{}",
            self.host(),
            self.port,
            enc(database)
        )
    }

    /// Runs `sql` through `psql` as the superuser over the unix socket, on `database`, stopping
    /// at the first error; returns psql's unaligned, tuples-only output.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Setup`] with psql's message (terse: the statement text is not echoed),
    /// [`ErrorKind::Io`] if psql cannot be run.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        let mut cmd = self.command("psql");
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=terse",
        ])
        .arg("-h")
        .arg(&self.socket_dir)
        .args([
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
            "-d",
            database,
            "-f",
            "-",
        ]);
        // The SQL (which may hold passwords) goes through stdin, never the process list.
        let output = run_with_stdin(cmd, sql.as_bytes(), "psql")?;
        if !output.status.success() {
            return Err(Error::new(
                ErrorKind::Setup,
                format!(
                    "psql on database {database} exited with {}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Whether the server was started by the kit and not stopped since.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// The postmaster's process id from `postmaster.pid`, or `None` when it is not running.
    pub fn server_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log_file).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`), keeping port and data; does nothing
    /// when already stopped.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Stop`] with the log tail.
    pub fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        self.pg_ctl_stop("fast")?;
        self.running = false;
        Ok(())
    }

    /// Starts a stopped server again on the same port with the same data; does nothing when
    /// already running.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Start`] with the log tail (for example when the port was taken meanwhile).
    pub fn start(&mut self) -> Result<()> {
        if self.running {
            return Ok(());
        }
        self.pg_ctl_start()
    }

    /// [`Self::stop`] then [`Self::start`].
    ///
    /// # Errors
    ///
    /// As [`Self::stop`] and [`Self::start`].
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start()
    }

    /// A command for one of the PostgreSQL programs, run as the server's user with the cluster
    /// folder as working directory.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bins.program(program));
        cmd.current_dir(self.root.path()).stdin(Stdio::null());
        // Settings from the caller's environment must not redirect the kit's own commands.
        for var in [
            "PGHOST",
            "PGHOSTADDR",
            "PGPORT",
            "PGDATA",
            "PGUSER",
            "PGDATABASE",
            "PGOPTIONS",
            "PGSERVICE",
            "PGSSLMODE",
        ] {
            cmd.env_remove(var);
        }
        as_server_user(&mut cmd, self.run_as);
        cmd
    }

    fn lay_out_files(&mut self, template: &Path, builder: &PgClusterBuilder) -> Result<()> {
        let run_as = self.run_as;
        chown(self.root.path(), run_as)?;
        copy_tree(template, &self.data_dir, run_as)?;
        make_dir(&self.socket_dir, run_as)?;

        let mut conf = String::from("\n# datahub-testkit\n");
        let mut set = |name: &str, value: &str| {
            conf.push_str(&format!("{name} = {}\n", conf_quote(value)));
        };
        set("listen_addresses", "127.0.0.1");
        set("unix_socket_directories", &path_str(&self.socket_dir)?);
        set("max_connections", &builder.max_connections.to_string());
        // Speed: a throwaway cluster never needs durability.
        set("fsync", "off");
        set("synchronous_commit", "off");
        set("full_page_writes", "off");
        set("shared_buffers", "16MB");
        set("password_encryption", "scram-sha-256");
        set("logging_collector", "off");

        if let Some(variant) = self.server_cert {
            let tls = TlsMaterial::generate(variant)?;
            let tls_dir = self.root.path().join("tls");
            make_dir(&tls_dir, run_as)?;
            let cert = tls_dir.join("server.crt");
            let key = tls_dir.join("server.key");
            let ca = tls_dir.join("ca.crt");
            write_file(&cert, tls.server.cert_pem.as_bytes(), 0o644, run_as)?;
            // PostgreSQL refuses a key readable by group or others.
            write_file(&key, tls.server.key_pem.as_bytes(), 0o600, run_as)?;
            write_file(&ca, tls.ca.pem().as_bytes(), 0o644, run_as)?;
            set("ssl", "on");
            set("ssl_cert_file", &path_str(&cert)?);
            set("ssl_key_file", &path_str(&key)?);
            set("ssl_ca_file", &path_str(&ca)?);
            self.tls = Some(tls);
        }
        for (name, value) in &builder.settings {
            set(name, value);
        }
        append_file(&self.data_dir.join("postgresql.conf"), conf.as_bytes())?;

        let mut hba = String::from(
            "# datahub-testkit: the superuser over the unix socket only, then one line per user.\n\
             local all postgres trust\n",
        );
        for user in &self.users {
            hba.push_str(&format!(
                "{} all \"{}\" 127.0.0.1/32 {}\n",
                user.hba_type(),
                user.name,
                user.auth.hba_name()
            ));
        }
        write_file(
            &self.data_dir.join("pg_hba.conf"),
            hba.as_bytes(),
            0o600,
            run_as,
        )?;
        Ok(())
    }

    /// Picks a free port and starts; retries with a new port when another process took it.
    fn first_start(&mut self) -> Result<()> {
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            self.port = free_port()?;
            let line = format!("\nport = {}\n", self.port);
            append_file(&self.data_dir.join("postgresql.conf"), line.as_bytes())?;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(err) if self.log_tail(LOG_TAIL_LINES).contains("could not bind") => {
                    last_error = Some(err);
                }
                Err(err) => return Err(err),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::new(ErrorKind::Start, "no free port found")))
    }

    fn pg_ctl_start(&mut self) -> Result<()> {
        let mut cmd = self.command("pg_ctl");
        cmd.args(["start", "-w", "-s", "-t", PG_CTL_WAIT_SECS, "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file);
        let output = run(cmd, "pg_ctl start")?;
        if !output.status.success() {
            return Err(Error::new(
                ErrorKind::Start,
                format!(
                    "pg_ctl start on port {} exited with {}: {}\nserver log tail:\n{}",
                    self.port,
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim(),
                    self.log_tail(LOG_TAIL_LINES)
                ),
            ));
        }
        self.running = true;
        Ok(())
    }

    fn pg_ctl_stop(&self, mode: &str) -> Result<()> {
        let mut cmd = self.command("pg_ctl");
        cmd.args(["stop", "-w", "-s", "-t", PG_CTL_WAIT_SECS, "-m", mode, "-D"])
            .arg(&self.data_dir);
        let output = run(cmd, "pg_ctl stop")?;
        if !output.status.success() {
            return Err(Error::new(
                ErrorKind::Stop,
                format!(
                    "pg_ctl stop -m {mode} exited with {}: {}\nserver log tail:\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim(),
                    self.log_tail(LOG_TAIL_LINES)
                ),
            ));
        }
        Ok(())
    }

    fn run_setup_sql(&self, builder: &PgClusterBuilder) -> Result<()> {
        let mut sql = String::new();
        for user in &self.users {
            // md5 users get an md5 hash so the server runs the md5 exchange, not SCRAM.
            let encryption = match user.auth {
                AuthMethod::Md5 => "md5",
                _ => "scram-sha-256",
            };
            sql.push_str(&format!("SET password_encryption = '{encryption}';\n"));
            sql.push_str(&format!("CREATE ROLE {} LOGIN", ident(&user.name)));
            if let Some(password) = &user.password {
                sql.push_str(&format!(" PASSWORD {}", literal(password)));
            }
            sql.push_str(";\n");
        }
        for (name, owner) in &builder.databases {
            sql.push_str(&format!(
                "CREATE DATABASE {} OWNER {};\n",
                ident(name),
                ident(owner)
            ));
        }
        if sql.is_empty() {
            return Ok(());
        }
        self.psql(SUPERUSER, &sql).map(|_| ())
    }

    /// Last resort when `pg_ctl` cannot stop the server: kill the postmaster by pid.
    fn kill_postmaster(&self) {
        if let Some(pid) = self.server_pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // A failed start may have left a server behind without `running` set: the pid file tells.
        let pid_file = self.data_dir.join("postmaster.pid");
        if self.running || pid_file.exists() {
            if self.pg_ctl_stop("immediate").is_err() {
                self.kill_postmaster();
            }
            self.running = false;
        }
        // `root` (a TempDir) deletes the folder when dropped after this; it ignores errors.
    }
}

/// `/dev/shm` when it is a shared scratch folder like `/tmp` (mode 1777), else the temp folder.
fn default_base_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let shared_scratch = fs::metadata(shm).is_ok_and(|m| m.is_dir() && m.mode() & 0o1777 == 0o1777);
    if shared_scratch {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// The per-process template: `initdb` runs at most once per process and version.
static TEMPLATE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Returns the template data folder, creating it with `initdb` on first use.
///
/// The template lives in the base folder under a name that carries the PostgreSQL version, the
/// kit version and the server user, so later processes (and other test binaries) reuse it
/// instead of leaving one copy each; it is moved into place with an atomic rename, so a
/// concurrent process never sees a half-written one.
fn template_data_dir(bins: &PgBinaries, run_as: RunAs, base: &Path) -> Result<PathBuf> {
    let mut guard = TEMPLATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(dir) = guard.as_ref() {
        if dir.join("PG_VERSION").exists() {
            return Ok(dir.clone());
        }
    }
    let version = initdb_version(bins)?;
    let final_dir = base.join(format!(
        "datahub-testkit-template-{}-{}-uid{}",
        env!("CARGO_PKG_VERSION"),
        version,
        run_as.uid
    ));
    let data = final_dir.join("data");
    if !data.join("PG_VERSION").exists() {
        build_template(bins, run_as, base, &final_dir)?;
    }
    *guard = Some(data.clone());
    Ok(data)
}

fn build_template(bins: &PgBinaries, run_as: RunAs, base: &Path, final_dir: &Path) -> Result<()> {
    let staging = tempfile::Builder::new()
        .prefix("datahub-testkit-initdb-")
        .tempdir_in(base)
        .map_err(|e| {
            Error::io(
                format!("creating a staging folder in {}", base.display()),
                e,
            )
        })?;
    chown(staging.path(), run_as)?;
    let data = staging.path().join("data");
    let mut cmd = Command::new(bins.program("initdb"));
    cmd.current_dir(staging.path())
        .stdin(Stdio::null())
        .args([
            "--auth=trust",
            "-U",
            SUPERUSER,
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
            "-D",
        ])
        .arg(&data);
    as_server_user(&mut cmd, run_as);
    let output = run(cmd, "initdb")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().collect();
        return Err(Error::new(
            ErrorKind::Initdb,
            format!(
                "initdb into {} exited with {}: {}",
                data.display(),
                output.status,
                tail[tail.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            ),
        ));
    }
    let staged = staging.keep();
    match fs::rename(&staged, final_dir) {
        Ok(()) => Ok(()),
        // Another process won the race: use its template, discard ours.
        Err(_) if final_dir.join("data").join("PG_VERSION").exists() => {
            let _ = fs::remove_dir_all(&staged);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staged);
            Err(Error::io(
                format!("moving the initdb template to {}", final_dir.display()),
                e,
            ))
        }
    }
}

/// `initdb --version`, reduced to characters safe in a folder name.
fn initdb_version(bins: &PgBinaries) -> Result<String> {
    let mut cmd = Command::new(bins.program("initdb"));
    cmd.arg("--version").stdin(Stdio::null());
    let output = run(cmd, "initdb --version")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version: String = text
        .split_whitespace()
        .nth(2)
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    Ok(version)
}

fn as_server_user(cmd: &mut Command, run_as: RunAs) {
    if run_as.switch {
        cmd.uid(run_as.uid).gid(run_as.gid);
    }
}

fn run(mut cmd: Command, what: &str) -> Result<Output> {
    cmd.output().map_err(|e| io_error_for(what, &cmd, e))
}

fn run_with_stdin(mut cmd: Command, input: &[u8], what: &str) -> Result<Output> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| io_error_for(what, &cmd, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A write error means psql exited early; its status and stderr say why.
        let _ = stdin.write_all(input);
    }
    child
        .wait_with_output()
        .map_err(|e| io_error_for(what, &cmd, e))
}

fn io_error_for(what: &str, cmd: &Command, e: std::io::Error) -> Error {
    Error::io(
        format!("running {what} ({})", cmd.get_program().to_string_lossy()),
        e,
    )
}

/// Asks the kernel for a free loopback port; the small window before the server binds it is
/// covered by retrying the first start.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((LOOPBACK, 0))
        .map_err(|e| Error::io("binding 127.0.0.1:0 to find a free port", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the free port", e))?;
    Ok(addr.port())
}

/// Every folder from `base` up to `/` must let the server user pass, or the server cannot reach
/// its data folder.
fn check_traversable(base: &Path, run_as: RunAs) -> Result<()> {
    if !run_as.switch {
        return Ok(());
    }
    let base = base
        .canonicalize()
        .map_err(|e| Error::io(format!("resolving {}", base.display()), e))?;
    for dir in base.ancestors() {
        let meta =
            fs::metadata(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
        let mode = meta.mode();
        let passable = mode & 0o001 != 0
            || (meta.uid() == run_as.uid && mode & 0o100 != 0)
            || (meta.gid() == run_as.gid && mode & 0o010 != 0);
        if !passable {
            return Err(invalid(format!(
                "folder {} is not traversable by the postgres user (mode {:o}); pick another \
                 base_dir or TMPDIR, or `chmod o+x` it",
                dir.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path, run_as: RunAs) -> Result<()> {
    let io = |what: &str, path: &Path| {
        let message = format!("{what} {}", path.display());
        move |e| Error::io(message, e)
    };
    let meta = fs::metadata(src).map_err(io("reading", src))?;
    fs::create_dir(dst).map_err(io("creating", dst))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io("setting permissions of", dst))?;
    chown(dst, run_as)?;
    for entry in fs::read_dir(src).map_err(io("listing", src))? {
        let entry = entry.map_err(io("listing", src))?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let kind = entry.file_type().map_err(io("reading", &from))?;
        if kind.is_dir() {
            copy_tree(&from, &to, run_as)?;
        } else if kind.is_symlink() {
            let target = fs::read_link(&from).map_err(io("reading link", &from))?;
            std::os::unix::fs::symlink(&target, &to).map_err(io("creating link", &to))?;
            std::os::unix::fs::lchown(&to, Some(run_as.uid), Some(run_as.gid))
                .map_err(io("changing owner of", &to))?;
        } else {
            // fs::copy keeps the permission bits.
            fs::copy(&from, &to).map_err(io("copying to", &to))?;
            chown(&to, run_as)?;
        }
    }
    Ok(())
}

fn make_dir(path: &Path, run_as: RunAs) -> Result<()> {
    fs::create_dir(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("setting permissions of {}", path.display()), e))?;
    chown(path, run_as)
}

fn write_file(path: &Path, contents: &[u8], mode: u32, run_as: RunAs) -> Result<()> {
    let err = |e| Error::io(format!("writing {}", path.display()), e);
    fs::write(path, contents).map_err(err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err)?;
    chown(path, run_as)
}

fn append_file(path: &Path, contents: &[u8]) -> Result<()> {
    let err = |e| Error::io(format!("appending to {}", path.display()), e);
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(err)?;
    file.write_all(contents).map_err(err)
}

fn chown(path: &Path, run_as: RunAs) -> Result<()> {
    if !run_as.switch {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(run_as.uid), Some(run_as.gid))
        .map_err(|e| Error::io(format!("changing owner of {}", path.display()), e))
}

fn path_str(path: &Path) -> Result<String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(format!("path {} is not valid UTF-8", path.display())))
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidInput, message)
}

/// Names go into SQL identifiers and `pg_hba.conf`; keeping them plain avoids quoting bugs.
fn check_name(what: &str, name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} name {name:?} must be 1 to 63 ASCII letters, digits, `_` or `-`"
        )))
    }
}

/// A postgresql.conf string value.
fn conf_quote(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// A SQL identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A SQL string literal (standard_conforming_strings is on by default).
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(conf_quote("/tmp/a'b"), "'/tmp/a''b'");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("user", "alice_1-x").is_ok());
        for bad in ["", "a b", "a\"b", "é", &"x".repeat(64)] {
            let err = check_name("user", bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn builder_rejects_tls_users_without_tls() {
        let err = PgCluster::builder()
            .user(User::new("c").auth(AuthMethod::Cert))
            .start()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = PgCluster::builder()
            .user(User::new("s").transport(Transport::SslOnly))
            .start()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn builder_rejects_unknown_owner_and_tiny_max_connections() {
        let err = PgCluster::builder()
            .database("db", "nobody")
            .start()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let err = PgCluster::builder().max_connections(0).start().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn user_debug_redacts_password() {
        let user = User::new("alice").password("hunter2-canary");
        let debug = format!("{user:?}");
        assert!(!debug.contains("hunter2-canary"));
        assert!(debug.contains("redacted"));
    }
}
