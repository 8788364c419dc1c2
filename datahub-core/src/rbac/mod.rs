//! Access control: the vocabulary (roles, grant levels, grants), the permission table
//! ([`RULES`], one row per [`Action`]), the acting [`Principal`] and the checks that turn a
//! permission into a proof value ([`Allowed`], [`AllowedOn`]).
//!
//! Deny by default: an action is allowed only when its row in [`RULES`] says so. A check that
//! succeeds returns a proof whose constructor is private to this module; the Hub's internal
//! functions take that proof as an argument, so a path that skipped the check does not compile.
//! A connection the principal may not even view is reported as `NotFound`, never as
//! `PermissionDenied`, so its existence is not revealed.
//!
//! This module is pure logic: it never calls a store. The Hub loads the owner and grants of a
//! connection and hands them in.

mod policy;
mod principal;

pub use policy::{Access, Action, ConnectionAction, GlobalAction, RULES, Rule, act};
pub use principal::{Allowed, AllowedOn, AuthMethod, Decision, Principal, Target};

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result, TeamId, UserId};

/// A user's global role. Deny by default: a role grants only what the permission table lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything: users, teams, roles, grants, keys, policy, audit.
    Admin,
    /// Creates connections (becoming their owner) and tests drafts; acts on others per grant.
    Editor,
    /// Acts on connections per grant only.
    Viewer,
    /// Reads the audit log; nothing else by role.
    Auditor,
}

impl Role {
    /// Every role, in order of the permission table.
    pub const ALL: [Self; 4] = [Self::Admin, Self::Editor, Self::Viewer, Self::Auditor];

    /// The stable lowercase name, as stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Editor => "editor",
            Self::Viewer => "viewer",
            Self::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    /// Parses the lowercase name; anything else is an `InvalidInput` error on `role`.
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::invalid("role", "must be one of admin, editor, viewer, auditor"))
    }
}

/// A grant level on one connection. Each includes the ones before it (`View < Use < Manage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GrantLevel {
    /// Metadata and health, never a secret.
    View,
    /// Test it, reveal its credentials or DSN, open a pool.
    Use,
    /// Edit, delete, grant and revoke. The owner of a connection has this level.
    Manage,
}

impl GrantLevel {
    /// Every level, weakest first.
    pub const ALL: [Self; 3] = [Self::View, Self::Use, Self::Manage];

    /// The stable lowercase name, as stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Use => "use",
            Self::Manage => "manage",
        }
    }
}

impl fmt::Display for GrantLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GrantLevel {
    type Err = Error;

    /// Parses the lowercase name; anything else is an `InvalidInput` error on `level`.
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| Error::invalid("level", "must be one of view, use, manage"))
    }
}

/// Who a grant is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grantee {
    /// One user.
    User(UserId),
    /// Every member of a team.
    Team(TeamId),
}

/// One grant on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Grant {
    /// Who it is for.
    pub grantee: Grantee,
    /// What it allows.
    pub level: GrantLevel,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_levels_nest() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        for l in GrantLevel::ALL {
            assert_eq!(l.as_str().parse::<GrantLevel>().unwrap(), l);
        }
        assert!(GrantLevel::View < GrantLevel::Use && GrantLevel::Use < GrantLevel::Manage);
        assert_eq!("root".parse::<Role>().unwrap_err().field(), Some("role"));
        assert_eq!(
            "all".parse::<GrantLevel>().unwrap_err().field(),
            Some("level")
        );
    }
}
