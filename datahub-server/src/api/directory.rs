//! The JSON of the name directory: ids and names of enabled users and teams, to pick a
//! grantee.

use datahub_core::model::Directory;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// Users and teams whose name matched, at most 20 of each, sorted by name.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryOut {
    /// Enabled users.
    pub users: Vec<DirectoryUserOut>,
    /// Teams.
    pub teams: Vec<DirectoryTeamOut>,
}

/// A user as the directory shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryUserOut {
    /// The user's id (a grant's `user_id`).
    pub id: Uuid,
    /// The login name.
    pub username: String,
}

/// A team as the directory shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryTeamOut {
    /// The team's id (a grant's `team_id`).
    pub id: Uuid,
    /// The team's name.
    pub name: String,
}

impl From<Directory> for DirectoryOut {
    fn from(d: Directory) -> Self {
        Self {
            users: d
                .users
                .into_iter()
                .map(|u| DirectoryUserOut {
                    id: *u.id.as_uuid(),
                    username: u.username,
                })
                .collect(),
            teams: d
                .teams
                .into_iter()
                .map(|t| DirectoryTeamOut {
                    id: *t.id.as_uuid(),
                    name: t.name,
                })
                .collect(),
        }
    }
}
