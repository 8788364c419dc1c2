//! The acting principal and the checks that turn a permission into a proof value.
//!
//! It must never construct a principal for a disabled user, nor hand out a proof for an action
//! the permission table does not allow.

use std::marker::PhantomData;

use time::OffsetDateTime;

use super::policy::{Access, Action, ConnectionAction, GlobalAction};
use super::{Grant, GrantLevel, Grantee, Role};
use crate::audit::RequestInfo;
use crate::model::{TokenInfo, User, Visibility};
use crate::{ConnectionId, Error, ErrorKind, Result, TeamId, UserId};

/// Who is acting: an authenticated, enabled user, through a session or an API token; or the
/// local operator.
///
/// [`Principal::from_user`] and [`Principal::from_token`] make a user's principal, and both
/// refuse a disabled user, so holding one means the account was enabled when it was loaded.
/// [`Principal::operator`] makes the local operator's, for adapters that hold the store and the
/// master key themselves (the `datahub-server` CLI); a network adapter never makes one.
/// Load it afresh on every request, so a revoked grant, a changed role or a disabled account
/// takes effect on the next one (S19).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    user: UserId,
    username: String,
    role: Role,
    teams: Vec<TeamId>,
    read_only: bool,
    method: AuthMethod,
    /// When the token this principal came from expires, if it came from a token that does.
    token_expires_at: Option<OffsetDateTime>,
    request: RequestInfo,
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// A password login, just now (`Hub::login`): the only kind a session may start from.
    Password,
    /// A browser session, or a user id a session holds.
    Session,
    /// An API token.
    Token,
    /// The local operator ([`Principal::operator`]): trusted by holding the store and the key.
    Operator,
}

/// The owner and grants of the connection an action targets, as loaded by the Hub.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The connection's owner (who holds `manage` on it).
    pub owner: UserId,
    /// Every grant on the connection.
    pub grants: &'a [Grant],
}

/// What the permission table says about one principal doing one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Allowed.
    Allow,
    /// Not allowed, and the caller may know the target exists: `PermissionDenied`.
    Deny,
    /// The caller may not even view the target connection: report `NotFound`, as if it did not
    /// exist.
    Hide,
}

/// Proof that a principal may do the global action `A`. Only [`Principal::check`] makes one;
/// functions that perform `A` take it as an argument.
#[derive(Debug)]
pub struct Allowed<'p, A> {
    principal: &'p Principal,
    action: PhantomData<fn() -> A>,
}

/// Proof that a principal may do the action `A` on one connection. Only
/// [`Principal::check_on`] makes one; functions that perform `A` take it as an argument.
#[derive(Debug)]
pub struct AllowedOn<'p, A> {
    principal: &'p Principal,
    connection: ConnectionId,
    level: GrantLevel,
    action: PhantomData<fn() -> A>,
}

impl Principal {
    /// The principal for a user who logged in or holds a session.
    ///
    /// `teams` are the teams the user belongs to. Errors: `Unauthenticated` when the user is
    /// disabled.
    pub fn from_user(user: &User, teams: Vec<TeamId>) -> Result<Self> {
        if user.disabled {
            return Err(Error::new(
                ErrorKind::Unauthenticated,
                "the account is disabled",
            ));
        }
        Ok(Self::build(user, teams, false))
    }

    /// The principal for a request carrying an API token: `token` as found by its hash, `user`
    /// the token's user, `now` the current time.
    ///
    /// A read-only token yields a read-only principal. Errors: `Unauthenticated`, with one
    /// message for every cause, when the token is expired or revoked, belongs to another user,
    /// or the user is disabled (see [`crate::auth::token_usable`]).
    pub fn from_token(
        user: &User,
        token: &TokenInfo,
        teams: Vec<TeamId>,
        now: OffsetDateTime,
    ) -> Result<Self> {
        crate::auth::token_usable(token, user, now)?;
        let mut principal =
            Self::build(user, teams, token.read_only).with_auth_method(AuthMethod::Token);
        principal.token_expires_at = token.expires_at;
        Ok(principal)
    }

    /// The local operator: someone who runs a trusted adapter (the `datahub-server` CLI) with
    /// the store and the master key in hand, and so could read or change every row anyway.
    ///
    /// The operator acts with the admin role, is no user account (`user()` is the nil id, so a
    /// connection it creates is owned by no user and visible to admins), and is audited like
    /// anyone else: with no actor id and the actor name `operator:<name>`, `name` being e.g. the
    /// operating-system user. Only adapters that already hold the store and the master key may
    /// make one; a network adapter must authenticate its callers instead. An operator principal
    /// cannot start a session, and owns no API token.
    ///
    /// `name` is tamed for the audit log: at most 64 characters of `A-Z a-z 0-9 . _ -` (any
    /// other becomes `_`), `unknown` when empty, so an OS user name can put no control character
    /// or look-alike into an audit row.
    pub fn operator(name: &str) -> Self {
        Self {
            user: UserId::from_uuid(uuid::Uuid::nil()),
            username: format!("operator:{}", operator_name(name)),
            role: Role::Admin,
            teams: Vec::new(),
            read_only: false,
            method: AuthMethod::Operator,
            token_expires_at: None,
            request: RequestInfo::default(),
        }
    }

    /// The user id the audit log records for this principal: the user's, or `None` for the
    /// local operator (who is no user account; its actor name says who it was).
    pub fn actor(&self) -> Option<UserId> {
        (self.method != AuthMethod::Operator).then_some(self.user)
    }

    fn build(user: &User, mut teams: Vec<TeamId>, read_only: bool) -> Self {
        teams.sort_unstable();
        teams.dedup();
        Self {
            user: user.id,
            username: user.username.clone(),
            role: user.role,
            teams,
            read_only,
            method: AuthMethod::Session,
            token_expires_at: None,
            request: RequestInfo::default(),
        }
    }

    /// The same principal, marked as authenticated by `method`. Crate-private: only the Hub's
    /// authentication functions know how a principal was made.
    pub(crate) fn with_auth_method(mut self, method: AuthMethod) -> Self {
        self.method = method;
        self
    }

    /// When the API token this principal came from expires (`None`: not from a token, or from
    /// one that never expires). A token minted with a token never outlives it (S33).
    pub fn token_expires_at(&self) -> Option<OffsetDateTime> {
        self.token_expires_at
    }

    /// How this principal was authenticated: [`Principal::from_user`] makes a
    /// [`AuthMethod::Session`] one, [`Principal::from_token`] a [`AuthMethod::Token`] one, and
    /// only a password login through the Hub a [`AuthMethod::Password`] one.
    pub fn auth_method(&self) -> AuthMethod {
        self.method
    }

    /// The same principal, acting in the request `request` (its client address and id go into
    /// every audit row the request writes).
    pub fn with_request(mut self, request: RequestInfo) -> Self {
        self.request = request;
        self
    }

    /// The request this principal acts in.
    pub fn request(&self) -> &RequestInfo {
        &self.request
    }

    /// The user acting.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The user's login name (for the audit log).
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The user's global role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The teams the user belongs to, sorted.
    pub fn teams(&self) -> &[TeamId] {
        &self.teams
    }

    /// Whether the principal acts through a read-only API token (and so may only read).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Which connections this principal may view, for the store to apply in SQL: every one for
    /// an admin, otherwise those the user owns or holds a grant on, directly or through a team.
    pub fn visibility(&self) -> Visibility {
        match self.role {
            Role::Admin => Visibility::All,
            _ => Visibility::Member {
                user: self.user,
                teams: self.teams.clone(),
            },
        }
    }

    /// The effective grant level on a connection owned by `owner` carrying `grants`: the highest
    /// of `manage` for an admin or the owner, the user's own grant, and the grants of each of the
    /// user's teams. `None` when the principal may not even view it.
    pub fn level_on(&self, owner: UserId, grants: &[Grant]) -> Option<GrantLevel> {
        if self.role == Role::Admin || owner == self.user {
            return Some(GrantLevel::Manage);
        }
        grants
            .iter()
            .filter(|g| match g.grantee {
                Grantee::User(u) => u == self.user,
                Grantee::Team(t) => self.teams.binary_search(&t).is_ok(),
            })
            .map(|g| g.level)
            .max()
    }

    /// Whether this principal may do the global `action`. Always `false` for an action on one
    /// connection: use [`Principal::decide`] with a target, or [`Principal::check_on`].
    pub fn may(&self, action: Action) -> bool {
        !action.is_connection_scoped() && self.decide(action, None) == Decision::Allow
    }

    /// What the permission table says about this principal doing `action`, on `target` when the
    /// action is scoped to a connection (ignored for a global action). A connection action
    /// without a target is denied. This yields no proof: the Hub's functions need
    /// [`Principal::check`] or [`Principal::check_on`].
    pub fn decide(&self, action: Action, target: Option<Target<'_>>) -> Decision {
        let rule = action.rule();
        let by_role = rule.allows_role(self.role);
        let allowed = match rule.grant {
            None => by_role,
            Some(needed) => {
                let Some(target) = target else {
                    return Decision::Deny;
                };
                let level = self.level_on(target.owner, target.grants);
                if level.is_none() && !by_role {
                    return Decision::Hide;
                }
                by_role || level >= Some(needed)
            }
        };
        if allowed && !(self.read_only && rule.access == Access::Write) {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }

    /// Checks the global action `A` and returns the proof the Hub needs to perform it.
    ///
    /// Errors: `PermissionDenied` when the role does not allow it, or when `A` writes and the
    /// principal acts through a read-only token.
    pub fn check<A: GlobalAction>(&self) -> Result<Allowed<'_, A>> {
        match self.decide(A::ACTION, None) {
            Decision::Allow => Ok(Allowed {
                principal: self,
                action: PhantomData,
            }),
            Decision::Deny | Decision::Hide => Err(self.denied(A::ACTION)),
        }
    }

    /// Checks the action `A` on the connection `connection` (owned by `owner`, carrying
    /// `grants`) and returns the proof the Hub needs to perform it.
    ///
    /// Errors: `NotFound` when the principal may not even view the connection (its existence is
    /// not revealed); `PermissionDenied` when it may view it but not do `A`, or when `A` writes
    /// and the principal acts through a read-only token.
    pub fn check_on<A: ConnectionAction>(
        &self,
        connection: ConnectionId,
        owner: UserId,
        grants: &[Grant],
    ) -> Result<AllowedOn<'_, A>> {
        match self.decide(A::ACTION, Some(Target { owner, grants })) {
            Decision::Allow => Ok(AllowedOn {
                principal: self,
                connection,
                // Allowed implies a level: admins and owners hold `manage`, anyone else needed
                // at least the rule's grant level.
                level: self.level_on(owner, grants).unwrap_or(GrantLevel::Manage),
                action: PhantomData,
            }),
            Decision::Deny => Err(self.denied(A::ACTION)),
            Decision::Hide => Err(not_found()),
        }
    }

    fn denied(&self, action: Action) -> Error {
        let message = if self.read_only && action.rule().access == Access::Write {
            format!("a read-only token may not do {action}")
        } else {
            format!("not allowed to do {action}")
        };
        Error::new(ErrorKind::PermissionDenied, message)
    }
}

/// The error for a connection the caller may not view: the same as for one that does not exist.
fn not_found() -> Error {
    Error::new(ErrorKind::NotFound, "connection not found")
}

impl Decision {
    /// The error this decision stands for: `Ok` for [`Decision::Allow`], `PermissionDenied` for
    /// [`Decision::Deny`], `NotFound` for [`Decision::Hide`].
    pub fn into_result(self, action: Action) -> Result<()> {
        match self {
            Self::Allow => Ok(()),
            Self::Deny => Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("not allowed to do {action}"),
            )),
            Self::Hide => Err(not_found()),
        }
    }
}

impl<'p, A: GlobalAction> Allowed<'p, A> {
    /// Who was allowed.
    pub fn principal(&self) -> &'p Principal {
        self.principal
    }

    /// What was allowed.
    pub fn action(&self) -> Action {
        A::ACTION
    }
}

impl<'p, A: ConnectionAction> AllowedOn<'p, A> {
    /// Who was allowed.
    pub fn principal(&self) -> &'p Principal {
        self.principal
    }

    /// What was allowed.
    pub fn action(&self) -> Action {
        A::ACTION
    }

    /// The connection the check was made on. The Hub must act on this id, not another.
    pub fn connection(&self) -> ConnectionId {
        self.connection
    }

    /// The principal's effective grant level on the connection.
    pub fn level(&self) -> GrantLevel {
        self.level
    }
}

/// An operator's name as the audit log shows it (see [`Principal::operator`]).
fn operator_name(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unknown".to_owned()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_names_are_tamed() {
        for (raw, expected) in [
            ("alice", "alice"),
            ("", "unknown"),
            ("a b\n\x1b[31m", "a_b___31m"),
            ("dom\\user.name-1", "dom_user.name-1"),
            ("a b/c", "a_b_c"),
        ] {
            assert_eq!(
                Principal::operator(raw).username,
                format!("operator:{expected}"),
                "{raw:?}"
            );
        }
        assert_eq!(operator_name(&"x".repeat(100)).len(), 64);
    }
}
