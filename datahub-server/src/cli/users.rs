//! `users add|list|passwd|disable|enable|set-role`: user accounts. The core refuses to demote or
//! disable the last enabled admin (as it does for the HTTP API), so the CLI cannot lock an
//! install out of its own administration.

use clap::Subcommand;
use datahub_core::hub::{Hub, UserUpdate};
use datahub_core::model::User;
use datahub_core::rbac::{Principal, Role};

use super::{CliError, CliResult, Output, OutputArgs, PasswordArgs};
use crate::api;
use crate::config::Settings;

/// `datahub-server users ...`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user account; the password is prompted for (or read with --password-stdin).
    Add {
        /// The login name.
        username: String,
        /// The global role: admin, editor, viewer or auditor.
        #[arg(long, default_value = "viewer")]
        role: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// List user accounts.
    List {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Set a user's password (prompted for, or read with --password-stdin).
    Passwd {
        /// The login name.
        username: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Disable a user account (it can no longer sign in; its sessions end).
    Disable {
        /// The login name.
        username: String,
    },
    /// Enable a disabled user account again (it may sign in; ended sessions stay ended).
    Enable {
        /// The login name.
        username: String,
    },
    /// Change a user's global role.
    SetRole {
        /// The login name.
        username: String,
        /// The new role: admin, editor, viewer or auditor.
        role: String,
        #[command(flatten)]
        out: OutputArgs,
    },
}

pub(crate) async fn run(command: UsersCommand, settings: &Settings) -> CliResult {
    let (hub, op) = super::open(settings, true).await?;
    match command {
        UsersCommand::Add {
            username,
            role,
            password,
            out,
        } => {
            let role: Role = role.parse()?;
            let password = super::read_password(password, "Password", true)?;
            let user = hub.create_user(&op, &username, password, role).await?;
            print_users(&[user], false, out.output)
        }
        UsersCommand::List { out } => {
            let users = hub.users(&op).await?;
            print_users(&users, true, out.output)
        }
        UsersCommand::Passwd { username, password } => {
            let user = find(&hub, &op, &username).await?;
            let password = super::read_password(password, "New password", true)?;
            let update = UserUpdate {
                password: Some(password),
                ..UserUpdate::default()
            };
            hub.update_user(&op, user.id, update).await?;
            eprintln!("the password of {} is changed", user.username);
            Ok(())
        }
        UsersCommand::Disable { username } => {
            set_disabled(&hub, &op, &username, true).await?;
            eprintln!("{username} is disabled");
            Ok(())
        }
        UsersCommand::Enable { username } => {
            set_disabled(&hub, &op, &username, false).await?;
            eprintln!("{username} is enabled");
            Ok(())
        }
        UsersCommand::SetRole {
            username,
            role,
            out,
        } => {
            let role: Role = role.parse()?;
            let user = find(&hub, &op, &username).await?;
            let update = UserUpdate {
                role: Some(role),
                ..UserUpdate::default()
            };
            let user = hub.update_user(&op, user.id, update).await?;
            if out.output == Output::Table {
                eprintln!("{} is now {}", user.username, user.role.as_str());
            }
            print_users(&[user], false, out.output)
        }
    }
}

/// Disables or enables the account `username`.
async fn set_disabled(hub: &Hub, op: &Principal, username: &str, disabled: bool) -> CliResult {
    let user = find(hub, op, username).await?;
    let update = UserUpdate {
        disabled: Some(disabled),
        ..UserUpdate::default()
    };
    hub.update_user(op, user.id, update).await?;
    Ok(())
}

/// The user with this login name.
pub(crate) async fn find(hub: &Hub, op: &Principal, username: &str) -> CliResult<User> {
    hub.users(op)
        .await?
        .into_iter()
        .find(|u| u.username == username)
        .ok_or_else(|| CliError::usage(format!("username: no user {username:?}")))
}

/// Prints users: a JSON array for a list, one object for a single new user (the API's
/// [`api::user::User`]).
fn print_users(users: &[User], list: bool, output: Output) -> CliResult {
    match output {
        Output::Json => {
            let items: Vec<api::user::User> = users.iter().map(api::user::User::from).collect();
            if let (false, [one]) = (list, items.as_slice()) {
                super::print_json(one)
            } else {
                super::print_json(&items)
            }
        }
        Output::Table => {
            let mut t = super::table(["username", "role", "disabled", "created", "id"]);
            for u in users {
                t.add_row([
                    u.username.clone(),
                    u.role.as_str().to_owned(),
                    if u.disabled { "yes" } else { "no" }.to_owned(),
                    super::rfc3339(u.created_at),
                    u.id.to_string(),
                ]);
            }
            super::print_table(&t)
        }
    }
}
