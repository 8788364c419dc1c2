//! `tokens create|revoke`: API tokens of any user.

use clap::Subcommand;
use datahub_core::TokenId;
use serde::Serialize;
use time::OffsetDateTime;

use super::{CliResult, Output, OutputArgs};
use crate::config::Settings;

/// `datahub-server tokens ...`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create an API token acting as a user; the token is shown this once.
    Create {
        /// The user the token acts as.
        #[arg(long)]
        user: String,
        /// A label for the token.
        #[arg(long)]
        name: String,
        /// Days until it expires (1 to 3650). Default: never.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// The token may only read.
        #[arg(long)]
        read_only: bool,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Revoke an API token by id (effective on its next request).
    Revoke {
        /// The token's id.
        id: String,
    },
}

/// A new token as printed: the HTTP API's token creation answer.
#[derive(Debug, Serialize)]
struct NewTokenJson<'a> {
    id: String,
    token: &'a str,
    name: &'a str,
    user_id: String,
    read_only: bool,
    #[serde(with = "super::ts")]
    created_at: OffsetDateTime,
    #[serde(with = "super::ts::option")]
    expires_at: Option<OffsetDateTime>,
}

pub(crate) async fn run(command: TokensCommand, settings: &Settings) -> CliResult {
    let (hub, op) = super::open(settings, true).await?;
    match command {
        TokensCommand::Create {
            user,
            name,
            expires_in_days,
            read_only,
            out,
        } => {
            let user = super::users::find(&hub, &op, &user).await?;
            let new = hub
                .create_token_for(&op, user.id, &name, expires_in_days, read_only)
                .await?;
            let json = NewTokenJson {
                id: new.info.id.to_string(),
                token: new.token.expose_secret(),
                name: &new.info.name,
                user_id: user.id.to_string(),
                read_only: new.info.read_only,
                created_at: new.info.created_at,
                expires_at: new.info.expires_at,
            };
            match out.output {
                Output::Json => super::print_json(&json),
                Output::Table => {
                    let mut t = super::table(["id", "user", "name", "read only", "expires"]);
                    t.add_row([
                        json.id.clone(),
                        user.username.clone(),
                        json.name.to_owned(),
                        if read_only { "yes" } else { "no" }.to_owned(),
                        super::cell_time(json.expires_at),
                    ]);
                    super::print_table(&t)?;
                    println!("token: {}", json.token);
                    eprintln!("The token is shown this once: store it now.");
                    Ok(())
                }
            }
        }
        TokensCommand::Revoke { id } => {
            let id: TokenId = id.parse()?;
            hub.revoke_token(&op, id).await?;
            eprintln!("token {id} is revoked");
            Ok(())
        }
    }
}
