//! `conn list|add|test|rm|reveal|grants|grant|revoke-grant`: saved connections and who may
//! reach them. Grants use the core's vocabulary: a user or a team holds `view`, `use` or
//! `manage` on one connection, each level including the one before; the owner (and every
//! admin) holds `manage` without a grant.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use datahub_core::ConnectionId;
use datahub_core::hub::{Hub, SaveOutcome};
use datahub_core::model::{Connection, ConnectionDraft, MonitoringDraft, OptionsDraft, TlsDraft};
use datahub_core::model::{ListQuery, MAX_PER_PAGE, NamedGrant};
use datahub_core::probe::{MAX_BUDGET, Report};
use datahub_core::rbac::{Grant, GrantLevel, Grantee, Principal};
use datahub_core::secret::PrivateKeyPem;
use futures_util::StreamExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{CliError, CliResult, Output, OutputArgs, PasswordArgs};
use crate::api::connection::{ConnectionOut, ConnectionPage, GrantsOut, RevealBody, owner_of};
use crate::api::report::{NamedReport, TestReport};
use crate::config::Settings;

/// How many connections `conn test --all` tests at once.
const TEST_CONCURRENCY: usize = 8;

/// `datahub-server conn ...`
#[derive(Debug, Subcommand)]
pub enum ConnCommand {
    /// List saved connections with their health.
    List {
        /// Only connections whose name, description, host or a tag contains this text.
        #[arg(long)]
        search: Option<String>,
        /// Only connections carrying this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Only connections with this health status (unknown, healthy, degraded, down).
        #[arg(long)]
        status: Option<String>,
        /// The page to show (1-based).
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Connections per page (1 to 200).
        #[arg(long, default_value_t = 50)]
        per_page: u32,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Save a new connection; its password is prompted for (or read with --password-stdin).
    Add(Box<AddArgs>),
    /// Test saved connections now and print the prober's report; exits 1 if any test fails.
    Test {
        /// Names or ids of the connections to test.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        connections: Vec<String>,
        /// Test every saved connection.
        #[arg(long)]
        all: bool,
        /// The budget of each test, in milliseconds (at most 5000).
        #[arg(long, default_value_t = 5_000)]
        timeout_ms: u64,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Delete a saved connection.
    Rm {
        /// Name or id.
        connection: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// List the grants on a connection (who may view, use or manage it besides its owner).
    Grants {
        /// Name or id.
        connection: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Grant a user or a team a level on a connection (replacing the level it held).
    Grant {
        /// Name or id.
        connection: String,
        #[command(flatten)]
        grantee: GranteeArgs,
        /// view (metadata and health), use (also test, reveal, open a pool) or manage (also
        /// edit, delete, grant).
        #[arg(long)]
        level: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Remove a user's or a team's grant on a connection.
    RevokeGrant {
        /// Name or id.
        connection: String,
        #[command(flatten)]
        grantee: GranteeArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Print a connection's credentials and DSN (the one command that shows a secret; audited).
    Reveal {
        /// Name or id.
        connection: String,
        #[command(flatten)]
        out: OutputArgs,
    },
}

/// Who a grant is for: exactly one of a user and a team, by name.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct GranteeArgs {
    /// The user's login name.
    #[arg(long)]
    user: Option<String>,
    /// The team's name.
    #[arg(long)]
    team: Option<String>,
}

/// The settings of `conn add` (the data model's fields; secrets never as arguments).
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// Unique name: 1-64 of a-z 0-9 _ . - starting with a letter or digit.
    name: String,
    /// Host name or IP address.
    #[arg(long)]
    host: String,
    /// Port. Default: 5432.
    #[arg(long)]
    port: Option<i64>,
    /// Database name.
    #[arg(long)]
    database: String,
    /// Database user name.
    #[arg(long)]
    username: String,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
    /// TLS mode: disable, allow, prefer, require, verify-ca, verify-full. Default: verify-full.
    #[arg(long)]
    tls_mode: Option<String>,
    /// A PEM file of the CA certificate(s) to trust (default: public roots).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// A PEM file of the client certificate (needs --client-key).
    #[arg(long, value_name = "FILE")]
    client_cert: Option<PathBuf>,
    /// A PEM file of the client's private key (read from the file, never an argument).
    #[arg(long, value_name = "FILE")]
    client_key: Option<PathBuf>,
    /// Channel binding: disable, prefer, require. Default: prefer.
    #[arg(long)]
    channel_binding: Option<String>,
    /// A tag (repeat for several).
    #[arg(long = "tag")]
    tags: Vec<String>,
    /// Connect timeout in milliseconds (at most 5000).
    #[arg(long)]
    connect_timeout_ms: Option<i64>,
    /// The application name the server sees.
    #[arg(long)]
    application_name: Option<String>,
    /// Do not monitor this connection.
    #[arg(long)]
    no_monitoring: bool,
    /// Seconds between checks (10 to 86400). Default: 60.
    #[arg(long)]
    interval_s: Option<i64>,
    /// A check slower than this many milliseconds counts as degraded. Default: 1000.
    #[arg(long)]
    slow_ms: Option<i64>,
    /// The user who owns the connection (and so manages it); must exist and be enabled.
    /// Default: no user: admins manage it, and others reach it through grants.
    #[arg(long, value_name = "USERNAME")]
    owner: Option<String>,
    /// Test before saving; nothing is saved (exit 1) when the test fails.
    #[arg(long)]
    test_first: bool,
    #[command(flatten)]
    password: PasswordArgs,
    #[command(flatten)]
    out: OutputArgs,
}

pub(crate) async fn run(command: ConnCommand, settings: &Settings) -> CliResult {
    match command {
        ConnCommand::List {
            search,
            tag,
            status,
            page,
            per_page,
            out,
        } => {
            let (hub, op) = super::open(settings, false).await?;
            let query = ListQuery {
                search,
                tag: tag
                    .map(|t| datahub_core::model::Tag::parse(&t))
                    .transpose()?,
                status: status.map(|s| s.parse()).transpose()?,
                page,
                per_page,
                ..ListQuery::default()
            };
            let page = hub.list_connections(&op, &query).await?;
            match out.output {
                Output::Json => super::print_json(&ConnectionPage {
                    items: page.items.iter().map(ConnectionOut::from).collect(),
                    total: page.total,
                    page: page.page,
                    per_page: page.per_page,
                }),
                Output::Table => {
                    let mut t = super::table([
                        "name", "host", "database", "user", "tls", "status", "latency", "checked",
                    ]);
                    for c in &page.items {
                        let s = &c.spec;
                        t.add_row([
                            s.name.as_str().to_owned(),
                            format!("{}:{}", s.host.to_url_host(), s.port),
                            s.database.as_str().to_owned(),
                            s.username.as_str().to_owned(),
                            s.tls.mode().as_str().to_owned(),
                            c.health.status.as_str().to_owned(),
                            c.health
                                .latency_ms
                                .map_or_else(|| "-".to_owned(), |l| format!("{l} ms")),
                            super::cell_time(c.health.checked_at),
                        ]);
                    }
                    super::print_table(&t)?;
                    let shown = page.items.len();
                    eprintln!(
                        "{shown} of {} connections (page {} of {} per page)",
                        page.total, page.page, page.per_page
                    );
                    Ok(())
                }
            }
        }
        ConnCommand::Add(args) => add(*args, settings).await,
        ConnCommand::Test {
            connections,
            all,
            timeout_ms,
            out,
        } => {
            let budget = Duration::from_millis(timeout_ms);
            if budget.is_zero() || budget > MAX_BUDGET {
                return Err(CliError::usage("timeout_ms: must be between 1 and 5000"));
            }
            let (hub, op) = super::open(settings, false).await?;
            let targets = if all {
                every_connection(&hub, &op).await?
            } else {
                let mut found = Vec::with_capacity(connections.len());
                for c in &connections {
                    found.push(resolve(&hub, &op, c).await?);
                }
                found
            };
            test(&hub, &op, targets, all, budget, out.output).await
        }
        ConnCommand::Rm { connection, yes } => {
            let (hub, op) = super::open(settings, false).await?;
            let c = resolve(&hub, &op, &connection).await?;
            let name = c.spec.name.as_str();
            if !yes && !super::confirm(&format!("Delete the connection {name}?"))? {
                return Err(CliError::usage(
                    "not deleted: confirm on a terminal, or pass --yes",
                ));
            }
            hub.delete_connection(&op, c.id, c.version).await?;
            eprintln!("connection {name} is deleted");
            Ok(())
        }
        ConnCommand::Grants { connection, out } => {
            let (hub, op) = super::open(settings, false).await?;
            let c = resolve(&hub, &op, &connection).await?;
            let grants = hub.grants(&op, c.id).await?.grants;
            print_grants(&hub, &op, &c, &grants, out.output).await
        }
        ConnCommand::Grant {
            connection,
            grantee,
            level,
            out,
        } => {
            let level: GrantLevel = level.parse()?;
            let (hub, op) = super::open(settings, false).await?;
            let c = resolve(&hub, &op, &connection).await?;
            let grantee = find_grantee(&hub, &op, &grantee).await?;
            // Read, change, replace: the replacement names the version read, so a grant change
            // made meanwhile by someone else is refused (stale), never overwritten.
            let current = hub.grants(&op, c.id).await?;
            let mut grants = current.plain();
            grants.retain(|g| g.grantee != grantee);
            grants.push(Grant { grantee, level });
            let grants = hub
                .set_grants(&op, c.id, current.version, &grants)
                .await?
                .grants;
            print_grants(&hub, &op, &c, &grants, out.output).await
        }
        ConnCommand::RevokeGrant {
            connection,
            grantee: who,
            out,
        } => {
            let (hub, op) = super::open(settings, false).await?;
            let c = resolve(&hub, &op, &connection).await?;
            let grantee = find_grantee(&hub, &op, &who).await?;
            let current = hub.grants(&op, c.id).await?;
            let mut grants = current.plain();
            let before = grants.len();
            grants.retain(|g| g.grantee != grantee);
            if grants.len() == before {
                let (field, name) = match (&who.user, &who.team) {
                    (Some(u), _) => ("user", u.as_str()),
                    (None, Some(t)) => ("team", t.as_str()),
                    (None, None) => ("user", ""),
                };
                return Err(CliError::usage(format!(
                    "{field}: {name:?} holds no grant on {}",
                    c.spec.name
                )));
            }
            let grants = hub
                .set_grants(&op, c.id, current.version, &grants)
                .await?
                .grants;
            print_grants(&hub, &op, &c, &grants, out.output).await
        }
        ConnCommand::Reveal { connection, out } => {
            let (hub, op) = super::open(settings, false).await?;
            let c = resolve(&hub, &op, &connection).await?;
            let revealed = hub.reveal(&op, c.id).await?;
            match out.output {
                Output::Json => super::print_json(&RevealBody(revealed))?,
                Output::Table => {
                    let mut t = super::table(["field", "value"]);
                    t.add_row(["username", revealed.username.as_str()]);
                    t.add_row(["password", revealed.password.expose_secret()]);
                    t.add_row(["dsn", revealed.dsn.expose_secret()]);
                    super::print_table(&t)?;
                    if let Some(key) = &revealed.client_key_pem {
                        println!("{}", key.expose_secret());
                    }
                }
            }
            eprintln!("This reveal is recorded in the audit log.");
            Ok(())
        }
    }
}

async fn add(args: AddArgs, settings: &Settings) -> CliResult {
    let AddArgs {
        name,
        host,
        port,
        database,
        username,
        description,
        tls_mode,
        ca_cert,
        client_cert,
        client_key,
        channel_binding,
        tags,
        connect_timeout_ms,
        application_name,
        no_monitoring,
        interval_s,
        slow_ms,
        owner,
        test_first,
        password,
        out,
    } = args;
    // Everything that can be refused without the store is checked before the prompt.
    let mode = tls_mode.map(|m| m.parse()).transpose()?;
    let channel_binding = channel_binding.map(|c| c.parse()).transpose()?;
    let ca_cert_pem = ca_cert
        .as_deref()
        .map(|p| read_pem("ca_cert", p))
        .transpose()?;
    let client_cert_pem = client_cert
        .as_deref()
        .map(|p| read_pem("client_cert", p))
        .transpose()?;
    let client_key_pem = client_key
        .as_deref()
        .map(|p| read_pem("client_key", p).map(PrivateKeyPem::from))
        .transpose()?;
    let (hub, op) = super::open(settings, true).await?;
    let owner = match owner {
        Some(name) => {
            let user = super::users::find(&hub, &op, &name)
                .await
                .map_err(|_| CliError::usage(format!("owner: no user {name:?}")))?;
            if user.disabled {
                return Err(CliError::usage(format!(
                    "owner: {} is a disabled account",
                    user.username
                )));
            }
            Some(user.id)
        }
        None => None,
    };
    let password = super::read_password(password, "Database password", false)?;
    let draft = ConnectionDraft {
        name,
        description,
        engine: None,
        host,
        port,
        database,
        username,
        password: Some(password),
        tls: TlsDraft {
            mode,
            ca_cert_pem,
            client_cert_pem,
            client_key_pem,
            channel_binding,
        },
        options: OptionsDraft {
            connect_timeout_ms,
            application_name,
        },
        tags,
        monitoring: MonitoringDraft {
            enabled: Some(!no_monitoring),
            interval_s,
            slow_ms,
        },
    };
    let connection = match (test_first, owner) {
        (true, None) => match hub.create_connection_tested(&op, draft, MAX_BUDGET).await? {
            SaveOutcome::Saved { connection, .. } => *connection,
            SaveOutcome::NotSaved(report) => return test_failed(report, out.output),
        },
        (true, Some(owner)) => {
            let report = hub.test_draft(&op, draft.clone(), None, MAX_BUDGET).await?;
            if !report.ok {
                return test_failed(report, out.output);
            }
            hub.create_connection_owned_by(&op, Some(owner), draft)
                .await?
        }
        (false, owner) => hub.create_connection_owned_by(&op, owner, draft).await?,
    };
    match out.output {
        Output::Json => super::print_json(&ConnectionOut::from(&connection)),
        Output::Table => {
            eprintln!(
                "connection {} is saved (id {})",
                connection.spec.name, connection.id
            );
            Ok(())
        }
    }
}

/// `conn add --test-first` whose test failed: the report, and exit 1 with nothing saved.
fn test_failed(report: Report, output: Output) -> CliResult {
    print_reports(&[(None, report)], false, output)?;
    Err(CliError::failed("the test failed: nothing was saved"))
}

/// A PEM file's text; the error names the flag, not the content.
fn read_pem(field: &str, path: &Path) -> CliResult<String> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("{field}: could not read {}: {e}", path.display())))
}

/// The connection named by `reference`: an id, else a name.
pub(crate) async fn resolve(hub: &Hub, op: &Principal, reference: &str) -> CliResult<Connection> {
    match reference.parse::<ConnectionId>() {
        Ok(id) => Ok(hub.connection(op, id).await?),
        Err(_) => hub.connection_by_name(op, reference).await.map_err(|e| {
            if e.kind() == datahub_core::ErrorKind::NotFound {
                CliError::usage(format!("no connection {reference:?}"))
            } else {
                CliError::from(e)
            }
        }),
    }
}

async fn every_connection(hub: &Hub, op: &Principal) -> CliResult<Vec<Connection>> {
    let mut all = Vec::new();
    let mut page = 1;
    loop {
        let query = ListQuery {
            page,
            per_page: MAX_PER_PAGE,
            ..ListQuery::default()
        };
        let got = hub.list_connections(op, &query).await?;
        let done = got.items.len() < MAX_PER_PAGE as usize;
        all.extend(got.items);
        if done || all.len() as u64 >= got.total {
            return Ok(all);
        }
        page += 1;
    }
}

async fn test(
    hub: &Hub,
    op: &Principal,
    targets: Vec<Connection>,
    many: bool,
    budget: Duration,
    output: Output,
) -> CliResult {
    let bar =
        ProgressBar::with_draw_target(Some(targets.len() as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("testing {bar:30} {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    if !many {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut results: Vec<(Connection, Result<Report, datahub_core::Error>)> =
        futures_util::stream::iter(targets)
            .map(|c| {
                let bar = bar.clone();
                async move {
                    let result = hub.test_connection(op, c.id, budget).await;
                    bar.inc(1);
                    bar.set_message(c.spec.name.as_str().to_owned());
                    (c, result)
                }
            })
            .buffer_unordered(TEST_CONCURRENCY)
            .collect()
            .await;
    bar.finish_and_clear();
    results.sort_by(|a, b| a.0.spec.name.as_str().cmp(b.0.spec.name.as_str()));
    let mut reports = Vec::with_capacity(results.len());
    let mut errors = 0;
    for (c, result) in results {
        match result {
            Ok(report) => reports.push((Some(c), report)),
            Err(e) => {
                errors += 1;
                eprintln!("error: {}: {e}", c.spec.name);
            }
        }
    }
    let all_ok = errors == 0 && reports.iter().all(|(_, r)| r.ok);
    print_reports(&reports, many, output)?;
    if all_ok {
        Ok(())
    } else {
        Err(CliError::silent())
    }
}

/// Prints test reports: one report as the prober's JSON, several as a list of
/// `{"id", "name", "report"}`; a table for people.
fn print_reports(
    reports: &[(Option<Connection>, Report)],
    many: bool,
    output: Output,
) -> CliResult {
    match output {
        Output::Json => {
            if let (false, [(_, report)]) = (many, reports) {
                return super::print_json(&TestReport::from(report));
            }
            let list: Vec<NamedReport> = reports
                .iter()
                .map(|(c, r)| NamedReport {
                    id: c.as_ref().map(|c| c.id.to_string()).unwrap_or_default(),
                    name: c
                        .as_ref()
                        .map(|c| c.spec.name.as_str().to_owned())
                        .unwrap_or_default(),
                    report: TestReport::from(r),
                })
                .collect();
            super::print_json(&list)
        }
        Output::Table => {
            let mut t = super::table(["connection", "ok", "total", "error", "step", "hint"]);
            for (c, r) in reports {
                let failure = r.failure.as_ref();
                t.add_row([
                    c.as_ref()
                        .map_or_else(|| "draft".to_owned(), |c| c.spec.name.as_str().to_owned()),
                    if r.ok { "yes" } else { "no" }.to_owned(),
                    format!("{:.1} ms", r.total_ms),
                    failure.map_or_else(|| "-".to_owned(), |f| f.kind.as_str().to_owned()),
                    failure.map_or_else(|| "-".to_owned(), |f| f.step.as_str().to_owned()),
                    failure.map_or_else(|| "-".to_owned(), |f| f.hint.to_string()),
                ]);
            }
            super::print_table(&t)?;
            if let (false, [(_, report)]) = (many, reports) {
                let mut steps = super::table(["step", "ms", "ok"]);
                for s in &report.steps {
                    steps.add_row([
                        s.name.as_str().to_owned(),
                        format!("{:.1}", s.ms),
                        if s.ok { "yes" } else { "no" }.to_owned(),
                    ]);
                }
                super::print_table(&steps)?;
                if let Some(server) = &report.server {
                    println!(
                        "server: PostgreSQL {}, database {}, user {}{}",
                        server.version,
                        server.database,
                        server.user,
                        if server.in_recovery { ", standby" } else { "" }
                    );
                }
                if let Some(tls) = &report.tls {
                    println!(
                        "tls: {} {}",
                        tls.protocol.as_deref().unwrap_or("-"),
                        tls.cipher.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(())
        }
    }
}

/// The user or team named by `--user` or `--team`.
async fn find_grantee(hub: &Hub, op: &Principal, who: &GranteeArgs) -> CliResult<Grantee> {
    match (&who.user, &who.team) {
        (Some(name), _) => Ok(Grantee::User(
            super::users::find(hub, op, name)
                .await
                .map_err(|_| CliError::usage(format!("user: no user {name:?}")))?
                .id,
        )),
        (None, Some(name)) => hub
            .teams(op)
            .await?
            .into_iter()
            .find(|t| t.name == *name)
            .map(|t| Grantee::Team(t.id))
            .ok_or_else(|| CliError::usage(format!("team: no team {name:?}"))),
        (None, None) => Err(CliError::usage("give --user or --team")),
    }
}

/// Prints a connection's grants: the HTTP API's `{"grants": [...]}` (with names), or for people
/// a table with names, after a line naming the owner.
async fn print_grants(
    hub: &Hub,
    op: &Principal,
    c: &Connection,
    grants: &[NamedGrant],
    output: Output,
) -> CliResult {
    if output == Output::Json {
        return super::print_json(&GrantsOut::of(grants));
    }
    let owner = match owner_of(c) {
        Some(_) => hub
            .users(op)
            .await?
            .into_iter()
            .find(|u| u.id == c.owner)
            .map_or_else(|| c.owner.to_string(), |u| u.username),
        None => "no user (admins manage it)".to_owned(),
    };
    println!("{}: owner {owner}", c.spec.name);
    let mut t = super::table(["grantee", "name", "level", "id"]);
    for g in grants {
        let (kind, id) = match g.grant.grantee {
            Grantee::User(u) => ("user", u.to_string()),
            Grantee::Team(t) => ("team", t.to_string()),
        };
        t.add_row([
            kind.to_owned(),
            g.name.clone(),
            g.grant.level.as_str().to_owned(),
            id,
        ]);
    }
    super::print_table(&t)
}
