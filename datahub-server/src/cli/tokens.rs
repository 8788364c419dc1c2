//! `tokens create|list|revoke`: API tokens of any user. A listing never shows a token's text or
//! its hash (the store keeps only the hash, and only the core's lookup reads it).

use std::collections::HashMap;

use clap::Subcommand;
use datahub_core::model::TokenInfo;
use datahub_core::{TokenId, UserId};
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

/// A token as listed: the HTTP API's token shape, plus the user it acts as.
#[derive(Debug, Serialize)]
struct TokenJson<'a> {
    id: String,
    name: &'a str,
    user_id: String,
    /// `null` when the user is no longer in the store.
    username: Option<&'a str>,
    read_only: bool,
    #[serde(with = "super::ts")]
    created_at: OffsetDateTime,
    #[serde(with = "super::ts::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(with = "super::ts::option")]
    revoked_at: Option<OffsetDateTime>,
    /// `null` before its first use; recorded at most once a minute.
    #[serde(with = "super::ts::option")]
    last_used_at: Option<OffsetDateTime>,
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
    let items: Vec<TokenJson<'_>> = tokens
        .iter()
        .map(|t| TokenJson {
            id: t.id.to_string(),
            name: &t.name,
            user_id: t.user.to_string(),
            username: names.get(&t.user).copied(),
            read_only: t.read_only,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            last_used_at: t.last_used_at,
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
                t.add_row([
                    i.id.clone(),
                    i.name.to_owned(),
                    i.username.unwrap_or("-").to_owned(),
                    if i.read_only { "yes" } else { "no" }.to_owned(),
                    super::rfc3339(i.created_at),
                    super::cell_time(i.expires_at),
                    super::cell_time(i.revoked_at),
                    super::cell_time(i.last_used_at),
                ]);
            }
            super::print_table(&t)
        }
    }
}
