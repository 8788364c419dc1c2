//! `tokens create|list|revoke`: API tokens of any user. A listing never shows a token's text or
//! its hash (the store keeps only the hash, and only the core's lookup reads it).

use std::collections::HashMap;

use clap::Subcommand;
use datahub_core::model::TokenInfo;
use datahub_core::{TokenId, UserId};

use super::{CliResult, Output, OutputArgs};
use crate::api::token::{ApiTokenInfo, CreatedTokenBody, CreatedUserTokenBody, UserTokenInfo};
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
    /// List API tokens (revoked and expired ones too), oldest first; never the token itself.
    List {
        /// Only the tokens acting as this user.
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Revoke an API token by id (effective on its next request).
    Revoke {
        /// The token's id.
        id: String,
    },
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
            match out.output {
                Output::Json => super::print_json(&CreatedUserTokenBody {
                    token: CreatedTokenBody(new),
                    user_id: *user.id.as_uuid(),
                }),
                Output::Table => {
                    let mut t = super::table(["id", "user", "name", "read only", "expires"]);
                    t.add_row([
                        new.info.id.to_string(),
                        user.username.clone(),
                        new.info.name.clone(),
                        if read_only { "yes" } else { "no" }.to_owned(),
                        super::cell_time(new.info.expires_at),
                    ]);
                    super::print_table(&t)?;
                    println!("token: {}", new.token.expose_secret());
                    eprintln!("The token is shown this once: store it now.");
                    Ok(())
                }
            }
        }
        TokensCommand::List { user, out } => {
            let users = hub.users(&op).await?;
            let only = match user {
                Some(name) => Some(super::users::find(&hub, &op, &name).await?.id),
                None => None,
            };
            let tokens = hub.list_tokens(&op, only).await?;
            let names: HashMap<UserId, &str> =
                users.iter().map(|u| (u.id, u.username.as_str())).collect();
            print_tokens(&tokens, &names, out.output)
        }
        TokensCommand::Revoke { id } => {
            let id: TokenId = id.parse()?;
            hub.revoke_token(&op, id).await?;
            eprintln!("token {id} is revoked");
            Ok(())
        }
    }
}

/// Prints tokens: a JSON array, or a table for people.
fn print_tokens(tokens: &[TokenInfo], names: &HashMap<UserId, &str>, output: Output) -> CliResult {
    let items: Vec<UserTokenInfo> = tokens
        .iter()
        .map(|t| UserTokenInfo {
            token: ApiTokenInfo::from(t.clone()),
            user_id: *t.user.as_uuid(),
            username: names.get(&t.user).map(|n| (*n).to_owned()),
        })
        .collect();
    match output {
        Output::Json => super::print_json(&items),
        Output::Table => {
            let mut t = super::table([
                "id",
                "name",
                "user",
                "read only",
                "created",
                "expires",
                "revoked",
                "last used",
            ]);
            for i in &items {
                let token = &i.token;
                t.add_row([
                    token.id.to_string(),
                    token.name.clone(),
                    i.username.as_deref().unwrap_or("-").to_owned(),
                    if token.read_only { "yes" } else { "no" }.to_owned(),
                    super::rfc3339(token.created_at),
                    super::cell_time(token.expires_at),
                    super::cell_time(token.revoked_at),
                    super::cell_time(token.last_used_at),
                ]);
            }
            super::print_table(&t)
        }
    }
}
