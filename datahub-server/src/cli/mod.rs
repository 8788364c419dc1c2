//! The operator CLI: the subcommands of the `datahub-server` binary other than `serve`.
//!
//! Every command works on the configured store with the same settings as `serve` (`--data-dir`,
//! `--store`, `--master-key-file`, `DATAHUB_*`, the TOML file), and goes through the `Hub` like
//! the HTTP API, acting as the local operator ([`Principal::operator`], named
//! `operator:<OS user>` in the audit log): whoever runs it holds the store and the master key,
//! and so is trusted like the server. Every action is permission-checked and audited as usual.
//!
//! Rules: secrets only by prompt (no echo) or `--password-stdin`, never as arguments (S8);
//! the only command printing a stored secret is `conn reveal` (audited). Tables for people,
//! `--output json` for scripts; progress bars go to stderr (hidden when it is no terminal).
//! Exit codes: [`EXIT_OK`], [`EXIT_FAILURE`] (e.g. a failed test, a broken audit chain),
//! [`EXIT_USAGE`] (bad usage or input).

mod audit;
mod conn;
mod keys;
mod policy;
mod tokens;
mod users;

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{Table, presets};
use datahub_core::audit::RequestInfo;
use datahub_core::hub::{Hub, RateLimit};
use datahub_core::rbac::Principal;
use datahub_core::secret::Password;
use datahub_core::{Error as CoreError, ErrorKind};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::{CommonArgs, Settings};
use crate::startup;

/// Exit code: done.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command ran and failed (a failed test, a broken chain, a refused change).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: bad usage or input (also clap's code for a bad command line).
pub const EXIT_USAGE: u8 = 2;

/// The subcommands of `datahub-server`. With none, it serves.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply pending store migrations and exit.
    Migrate,
    /// User accounts.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// API tokens.
    #[command(subcommand)]
    Tokens(tokens::TokensCommand),
    /// Master keys: generate, status, rotation, retirement.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Saved connections.
    #[command(subcommand)]
    Conn(conn::ConnCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The target policy (allowed and denied networks, lowest TLS mode).
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Output {
    /// Tables for people. The default.
    #[default]
    Table,
    /// JSON for scripts, with stable field names (the HTTP API's shapes where they exist).
    Json,
}

/// The `--output` flag every listing command takes.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Where a secret comes from: a prompt without echo, or the first line of stdin.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of stdin instead of prompting (for scripts).
    #[arg(long)]
    pub password_stdin: bool,
}

/// Settings for a CLI command: as resolved for `serve`, but logging only warnings unless a log
/// level was set, so a command's output is not mixed with info lines.
pub fn settings_for(command: &Command, common: &CommonArgs, mut settings: Settings) -> Settings {
    if !matches!(command, Command::Serve) && common.log_level.is_none() {
        settings.log_level = "warn".to_owned();
    }
    settings
}

/// Runs one CLI command (not `serve`) and returns the process's exit code; errors are printed
/// on stderr as `error: ...`.
pub async fn run(command: Command, settings: Settings) -> ExitCode {
    let result = match command {
        Command::Serve => startup::serve(settings).await.map_err(CliError::from),
        Command::Migrate => migrate(&settings).await,
        Command::Users(c) => users::run(c, &settings).await,
        Command::Tokens(c) => tokens::run(c, &settings).await,
        Command::Keys(c) => keys::run(c, &settings).await,
        Command::Conn(c) => conn::run(c, &settings).await,
        Command::Audit(c) => audit::run(c, &settings).await,
        Command::Policy(c) => policy::run(c, &settings).await,
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            if !e.message.is_empty() {
                eprintln!("error: {}", e.message);
            }
            ExitCode::from(e.code)
        }
    }
}

async fn migrate(settings: &Settings) -> CliResult {
    let store = startup::open_store(settings).await?;
    // Like every command, refuse a store whose keys the keyring cannot open (S28); this one
    // never makes a key.
    startup::check_keys(settings, store.as_ref()).await?;
    eprintln!("the store is migrated");
    Ok(())
}

/// A command's failure: the message for stderr and the exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    code: u8,
    message: String,
}

pub(crate) type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// Bad usage or input: exit code 2.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    /// A failure: exit code 1.
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self {
            code: EXIT_FAILURE,
            message: message.into(),
        }
    }

    /// Exit code 1 with nothing more to say (the output already told).
    pub(crate) fn silent() -> Self {
        Self::failed("")
    }
}

impl From<CoreError> for CliError {
    /// Input the core refused, and names that match nothing, are usage errors; the rest are
    /// failures. The core's messages never hold a secret.
    fn from(e: CoreError) -> Self {
        match e.kind() {
            ErrorKind::InvalidInput | ErrorKind::NotFound => Self::usage(e.to_string()),
            _ => Self::failed(e.to_string()),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        // A core error inside keeps its classification.
        match e.downcast::<CoreError>() {
            Ok(core) => Self::from(core),
            Err(e) => Self::failed(format!("{e:#}")),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::failed(format!("could not write the output: {e}"))
    }
}

/// The Hub over the configured store, and the operator principal acting in this run.
///
/// `create_key`: create the key file (as `serve` does on first start) when it does not exist.
pub(crate) async fn open(settings: &Settings, create_key: bool) -> CliResult<(Hub, Principal)> {
    let hub = startup::open_hub(settings, create_key)
        .await?
        // The operator is trusted like the server: its tests are not rate-limited per user
        // (`conn test --all` on a large store would otherwise stall at one test per second).
        .with_test_rate_limit(RateLimit {
            burst: u32::MAX,
            per_second: 1.0e9,
        });
    Ok((hub, operator()))
}

/// The local operator, named after the OS user, with a run id for the audit log.
pub(crate) fn operator() -> Principal {
    let name = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default();
    Principal::operator(&name).with_request(RequestInfo {
        client_addr: None,
        request_id: Some(format!("cli-{}", uuid::Uuid::now_v7())),
    })
}

/// Reads a password: the first line of stdin with `--password-stdin`, else a prompt without
/// echo on the terminal (asked twice when `confirm`). Never from the command line.
pub(crate) fn read_password(
    args: PasswordArgs,
    prompt: &str,
    confirm: bool,
) -> CliResult<Password> {
    if args.password_stdin {
        let mut line = secrecy::zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::usage(format!("could not read the password from stdin: {e}")))?;
        let trimmed = line.trim_end_matches(['\n', '\r']);
        if trimmed.is_empty() {
            return Err(CliError::usage("password: stdin held no password"));
        }
        return Ok(Password::from(trimmed));
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(
            "password: no terminal to prompt on; pass it on stdin with --password-stdin",
        ));
    }
    let first = secrecy::zeroize::Zeroizing::new(
        rpassword::prompt_password(format!("{prompt}: "))
            .map_err(|e| CliError::usage(format!("could not read the password: {e}")))?,
    );
    if confirm {
        let again = secrecy::zeroize::Zeroizing::new(
            rpassword::prompt_password(format!("{prompt} (again): "))
                .map_err(|e| CliError::usage(format!("could not read the password: {e}")))?,
        );
        if *first != *again {
            return Err(CliError::usage("password: the two entries differ"));
        }
    }
    if first.is_empty() {
        return Err(CliError::usage("password: must not be empty"));
    }
    Ok(Password::from(first.as_str()))
}

/// Asks a yes/no question on the terminal; `false` without a terminal.
pub(crate) fn confirm(question: &str) -> CliResult<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Prints `value` as pretty JSON on stdout.
pub(crate) fn print_json<T: Serialize + ?Sized>(value: &T) -> CliResult {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::failed(format!("could not encode the output: {e}")))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(())
}

/// A table with a header, in the house style.
pub(crate) fn table<I, S>(header: I) -> Table
where
    I: IntoIterator<Item = S>,
    S: Into<comfy_table::Cell>,
{
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_header(header);
    t
}

/// Prints a table on stdout.
pub(crate) fn print_table(table: &Table) -> CliResult {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{table}")?;
    Ok(())
}

/// A timestamp as RFC 3339 (UTC), as the HTTP API writes them.
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// An optional timestamp as RFC 3339, or `-` for a table.
pub(crate) fn cell_time(at: Option<OffsetDateTime>) -> String {
    at.map_or_else(|| "-".to_owned(), rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_to_exit_codes() {
        let bad = CliError::from("root".parse::<datahub_core::rbac::Role>().unwrap_err());
        assert_eq!(bad.code, EXIT_USAGE);
        assert!(bad.message.starts_with("role: "), "{}", bad.message);
        let io = CliError::from(anyhow::anyhow!("the store is down"));
        assert_eq!(io.code, EXIT_FAILURE);
    }
}
