//! The JSON of teams: a team as shown, and its name and members to create or replace it.

use datahub_core::UserId;
use datahub_core::model;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// The most members one team may have.
pub const MAX_MEMBERS: usize = 10_000;

/// A team as shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct Team {
    /// Id.
    pub id: Uuid,
    /// Unique name (the rules of a user name).
    pub name: String,
    /// The members' user ids, sorted.
    pub members: Vec<Uuid>,
}

impl From<model::Team> for Team {
    fn from(row: model::Team) -> Self {
        Self {
            id: *row.id.as_uuid(),
            name: row.name,
            members: row.members.iter().map(|m| *m.as_uuid()).collect(),
        }
    }
}

/// A team's name and members, to create it or replace them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamInput {
    /// Unique name: 1–64 of `a-z 0-9 _ . @ -`, starting with a letter or digit.
    pub name: String,
    /// The members' user ids (duplicates are ignored). Default: none.
    #[serde(default)]
    pub members: Vec<Uuid>,
}

impl TeamInput {
    /// The members as user ids.
    ///
    /// # Errors
    /// 400 on `members` when there are more than [`MAX_MEMBERS`].
    pub fn members(&self) -> ApiResult<Vec<UserId>> {
        if self.members.len() > MAX_MEMBERS {
            return Err(ApiError::invalid(
                "members",
                format!("must hold at most {MAX_MEMBERS} user ids"),
            ));
        }
        Ok(self
            .members
            .iter()
            .copied()
            .map(UserId::from_uuid)
            .collect())
    }
}
