//! `policy show|set`: the target policy.

use clap::Subcommand;
use datahub_core::model::TargetPolicy;

use super::{CliError, CliResult, Output, OutputArgs};
use crate::api::policy::Policy;
use crate::config::Settings;

/// `datahub-server policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the target policy.
    Show {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Change the target policy; settings not given keep their value.
    Set {
        /// Allowed networks (CIDR; repeat for several): replaces the list.
        #[arg(long = "allow", value_name = "CIDR")]
        allow: Vec<String>,
        /// Empty the allowed list (any address not denied is allowed).
        #[arg(long, conflicts_with = "allow")]
        clear_allow: bool,
        /// Denied networks (CIDR; repeat for several): replaces the list.
        #[arg(long = "deny", value_name = "CIDR")]
        deny: Vec<String>,
        /// Empty the denied list.
        #[arg(long, conflicts_with = "deny")]
        clear_deny: bool,
        /// The lowest TLS mode a connection may use.
        #[arg(long)]
        min_tls_mode: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
}

pub(crate) async fn run(command: PolicyCommand, settings: &Settings) -> CliResult {
    let (hub, op) = super::open(settings, false).await?;
    match command {
        PolicyCommand::Show { out } => {
            let policy = hub.policy(&op).await?;
            print(&policy, out.output)
        }
        PolicyCommand::Set {
            allow,
            clear_allow,
            deny,
            clear_deny,
            min_tls_mode,
            out,
        } => {
            if allow.is_empty()
                && !clear_allow
                && deny.is_empty()
                && !clear_deny
                && min_tls_mode.is_none()
            {
                return Err(CliError::usage(
                    "nothing to change: give --allow, --deny, --clear-allow, --clear-deny or \
                     --min-tls-mode",
                ));
            }
            let mut policy = hub.policy(&op).await?;
            if clear_allow || !allow.is_empty() {
                policy.allow_cidrs = allow;
            }
            if clear_deny || !deny.is_empty() {
                policy.deny_cidrs = deny;
            }
            if let Some(mode) = min_tls_mode {
                policy.min_tls_mode = mode.parse()?;
            }
            let policy = hub.set_policy(&op, policy).await?;
            print(&policy, out.output)
        }
    }
}

fn print(policy: &TargetPolicy, output: Output) -> CliResult {
    match output {
        Output::Json => super::print_json(&Policy::from(policy.clone())),
        Output::Table => {
            let list = |l: &[String]| {
                if l.is_empty() {
                    "-".to_owned()
                } else {
                    l.join(", ")
                }
            };
            let mut t = super::table(["setting", "value"]);
            t.add_row(["allow_cidrs".to_owned(), list(&policy.allow_cidrs)]);
            t.add_row(["deny_cidrs".to_owned(), list(&policy.deny_cidrs)]);
            t.add_row([
                "min_tls_mode".to_owned(),
                policy.min_tls_mode.as_str().to_owned(),
            ]);
            super::print_table(&t)
        }
    }
}
