//! Accounts through the Hub: authentication (password login, API tokens, reloading a session's
//! principal), the first admin, users, teams, the name directory and API tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::Duration;
use zeroize::Zeroizing;

use super::{Hub, now, target};
use crate::audit::{AuditEvent, Outcome, RequestInfo};
use crate::auth::{self, AccountName};
use crate::model::{Directory, TOKEN_TOUCH_INTERVAL, Team, TokenInfo, User};
use crate::rbac::{Action, AuthMethod, Principal, Role, act};
use crate::secret::{ApiToken, Password};
use crate::store::{StoredToken, StoredUser};
use crate::{Error, ErrorKind, Result, TeamId, TokenId, UserId};

/// The name of the first admin, created on first start.
pub const BOOTSTRAP_ADMIN: &str = "admin";

/// The most users, and the most teams, one [`Hub::directory`] answer lists: 20.
pub const DIRECTORY_LIMIT: u32 = 20;

/// The longest directory query [`Hub::directory`] takes, in characters: 64 (the longest name).
pub const MAX_DIRECTORY_QUERY_CHARS: usize = 64;

/// The longest token or team name, in characters.
const MAX_LABEL_LEN: usize = 64;

/// The longest token lifetime, in days.
const MAX_TOKEN_DAYS: u32 = 3_650;

/// An admin's change to another account; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    /// New role.
    pub role: Option<Role>,
    /// Disable or enable the account.
    pub disabled: Option<bool>,
    /// A new password (a reset).
    pub password: Option<Password>,
}

/// The result of [`Hub::bootstrap_admin`] when it created the first admin.
#[derive(Debug)]
pub struct BootstrapAdmin {
    /// The admin's login name ([`BOOTSTRAP_ADMIN`]).
    pub username: String,
    /// The password, when it was generated (show it once); `None` when it was given.
    pub generated_password: Option<Password>,
}

/// A newly created API token: shown once.
#[derive(Debug)]
pub struct NewApiToken {
    /// What is stored about it.
    pub info: TokenInfo,
    /// The token text. Show it to the user once; it is never stored.
    pub token: ApiToken,
}

impl Hub {
    /// Creates the first admin when the store has no user at all: with `password` if given
    /// (it must meet the password policy), else with a random one returned once. Returns `None`
    /// when users already exist, also when another process sharing the store created the admin
    /// meanwhile (replicas starting together: exactly one of them creates it, none fails).
    ///
    /// # Errors
    /// `InvalidInput` on `password` when a given password breaks the policy.
    pub async fn bootstrap_admin(
        &self,
        password: Option<Password>,
    ) -> Result<Option<BootstrapAdmin>> {
        if self.store.user_count().await? > 0 {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(p) => {
                auth::check_password_policy(&p)?;
                (p, false)
            }
            None => (random_password()?, true),
        };
        let hash_input = password.clone();
        let hash = self
            .password_work(move || auth::hash_password(&hash_input))
            .await?;
        let at = now();
        let row = StoredUser {
            user: User {
                id: UserId::new(),
                username: BOOTSTRAP_ADMIN.to_owned(),
                role: Role::Admin,
                disabled: false,
                created_at: at,
                updated_at: at,
            },
            password_hash: hash,
        };
        let event = AuditEvent::now(
            None,
            "system",
            "user.bootstrap",
            Some(&target("user", row.user.id)),
            Outcome::Ok,
        );
        if let Err(e) = self.store.insert_user(&row, &event).await {
            // Replicas starting together on an empty store all find no user above; the name's
            // uniqueness lets one create the admin, and the others find it made.
            if e.kind() == ErrorKind::Conflict && self.store.user_count().await? > 0 {
                return Ok(None);
            }
            return Err(e);
        }
        Ok(Some(BootstrapAdmin {
            username: row.user.username,
            generated_password: generated.then_some(password),
        }))
    }

    /// Logs in with a user name and password; the attempt is audited either way. A hash weaker
    /// than the current parameters is replaced on success.
    ///
    /// Guesses are throttled per account name (S20, S29; [`Hub::with_login_limit`]): the
    /// attempt takes its token before any password work, so however many arrive at once at most
    /// the burst reach argon2; a failed one keeps it spent, and one that succeeds (or fails for
    /// another reason than the password, e.g. the store) gives it back, so signing in often
    /// never locks anyone out. Unknown names are throttled alike, and a refused attempt gets the
    /// same answer whether or not the account exists.
    ///
    /// # Errors
    /// `Unauthenticated` with one message for every cause (unknown user, wrong password,
    /// disabled account), after the same amount of work. `RateLimited`, with how long to wait,
    /// when the name's guesses are spent; nothing is checked nor audited then.
    pub async fn login(
        &self,
        username: &str,
        password: Password,
        request: &RequestInfo,
    ) -> Result<Principal> {
        let guess = self.take_guess(username)?;
        let result = self.check_login(username, password, request).await;
        self.settle_guess(guess, &result);
        result
    }

    /// [`Hub::login`] once the attempt is admitted.
    async fn check_login(
        &self,
        username: &str,
        password: Password,
        request: &RequestInfo,
    ) -> Result<Principal> {
        let user = match AccountName::parse(username) {
            Ok(name) => self.store.user_by_name(name.as_str()).await?,
            Err(_) => None,
        };
        let checked_user = user.clone();
        let checked_password = password.clone();
        let verdict = self
            .password_work(move || Ok(auth::verify_login(checked_user.as_ref(), &checked_password)))
            .await?;
        let login = match verdict {
            Ok(login) => login,
            Err(e) => {
                // Only a known account is named: an unknown "user name" may be a password typed
                // into the wrong field.
                let (actor, name) = match &user {
                    Some(u) => (Some(u.user.id), u.user.username.as_str()),
                    None => (None, "unknown"),
                };
                let event = AuditEvent::now(actor, name, "auth.login", None, Outcome::Denied)
                    .with_request_info(request);
                self.audit(&event).await?;
                return Err(e);
            }
        };
        let mut user = user.ok_or_else(|| Error::new(ErrorKind::Internal, "login without user"))?;
        if login.needs_rehash {
            let hash = self
                .password_work(move || auth::hash_password(&password))
                .await?;
            user.password_hash = hash;
            user.user.updated_at = now();
            let event = AuditEvent::now(
                Some(user.user.id),
                &user.user.username,
                "user.rehash_password",
                Some(&target("user", user.user.id)),
                Outcome::Ok,
            )
            .with_request_info(request);
            self.store.update_user(&user, &event).await?;
        }
        let principal = self
            .principal_from_row(&user.user)
            .await?
            .with_auth_method(AuthMethod::Password)
            .with_request(request.clone());
        let event = AuditEvent::now(
            Some(user.user.id),
            &user.user.username,
            "auth.login",
            None,
            Outcome::Ok,
        )
        .with_request_info(request);
        self.audit(&event).await?;
        Ok(principal)
    }

    /// The principal for a request carrying an API token. Records the use when the last
    /// recorded one is a minute old or more ([`TOKEN_TOUCH_INTERVAL`]), so a busy
    /// client costs a write at most once a minute; a refused token records nothing.
    ///
    /// # Errors
    /// `Unauthenticated` with one message for every cause (malformed, unknown, expired,
    /// revoked, disabled user). `Store` when the store fails.
    pub async fn authenticate_token(
        &self,
        token: &str,
        request: &RequestInfo,
    ) -> Result<Principal> {
        let refused = || Error::new(ErrorKind::Unauthenticated, auth::TOKEN_REFUSED);
        let hash = auth::parse_token(token)?;
        // The token, its user and the user's teams: one wait for the store.
        let held = self
            .store
            .token_with_holder(&hash)
            .await?
            .ok_or_else(refused)?;
        let (token, teams) = (held.credential.info, held.teams);
        let user = held.user.ok_or_else(refused)?.user;
        let at = now();
        let principal =
            Principal::from_token(&user, &token, teams, at)?.with_request(request.clone());
        // The row read above tells most requests that no write is due; the store's condition
        // settles races between requests and replicas.
        let due = token
            .last_used_at
            .is_none_or(|last| at - last >= TOKEN_TOUCH_INTERVAL);
        if due {
            self.store.touch_token(token.id, at).await?;
        }
        Ok(principal)
    }

    /// The principal for a user id held by a session, loaded afresh.
    ///
    /// # Errors
    /// `Unauthenticated` when the user no longer exists or is disabled.
    pub async fn principal_for(&self, user: UserId, request: &RequestInfo) -> Result<Principal> {
        let row = self.store.user(user).await?.ok_or_else(|| {
            Error::new(ErrorKind::Unauthenticated, "the account no longer exists")
        })?;
        Ok(self
            .principal_from_row(&row.user)
            .await?
            .with_request(request.clone()))
    }

    async fn principal_from_row(&self, user: &User) -> Result<Principal> {
        let teams = self.store.teams_of(user.id).await?;
        Principal::from_user(user, teams)
    }

    /// Every user account (admins).
    ///
    /// # Errors
    /// `PermissionDenied` for other roles.
    pub async fn users(&self, principal: &Principal) -> Result<Vec<User>> {
        principal.check::<act::UserList>()?;
        Ok(self
            .store
            .users()
            .await?
            .into_iter()
            .map(|u| u.user)
            .collect())
    }

    /// Creates a user account (admins).
    ///
    /// # Errors
    /// `PermissionDenied` (audited); `InvalidInput` on `username` or `password`; `Conflict` on
    /// `username` when taken.
    pub async fn create_user(
        &self,
        principal: &Principal,
        username: &str,
        password: Password,
        role: Role,
    ) -> Result<User> {
        let allowed = match principal.check::<act::UserCreate>() {
            Ok(a) => a,
            Err(e) => return self.refuse(principal, Action::UserCreate, None, e).await,
        };
        let name = AccountName::parse(username)?;
        auth::check_password_policy(&password)?;
        let hash = self
            .password_work(move || auth::hash_password(&password))
            .await?;
        let at = now();
        let row = StoredUser {
            user: User {
                id: UserId::new(),
                username: name.into_string(),
                role,
                disabled: false,
                created_at: at,
                updated_at: at,
            },
            password_hash: hash,
        };
        let event = self
            .event(
                principal,
                allowed.action(),
                Some(&target("user", row.user.id)),
                Outcome::Ok,
            )
            .with_changed_fields(&["username", "role", "password"]);
        self.store.insert_user(&row, &event).await?;
        Ok(row.user)
    }

    /// Changes another account's role, enabled state or password (admins). The last enabled
    /// admin can be neither demoted nor disabled.
    ///
    /// Disabling the account or setting its password ends every session of the user, in the
    /// same store transaction as the change and its audit row (re-enabling it later revives
    /// none). Disabling it also revokes every API token of the user in that transaction, for
    /// good (S33); a new password leaves the tokens working (revoke them one by one). A role
    /// change alone ends nothing: sessions and tokens load the user afresh on every request.
    ///
    /// # Errors
    /// `PermissionDenied` (audited); `NotFound` for an unknown user; `InvalidInput` on `password`;
    /// `Conflict` when it would leave no enabled admin.
    pub async fn update_user(
        &self,
        principal: &Principal,
        id: UserId,
        update: UserUpdate,
    ) -> Result<User> {
        let user_target = target("user", id);
        let allowed = match principal.check::<act::UserUpdate>() {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(principal, Action::UserUpdate, Some(&user_target), e)
                    .await;
            }
        };
        let mut row = self
            .store
            .user(id)
            .await?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "user not found"))?;
        // Only a change to an enabled admin can leave no enabled admin (a store the local
        // operator filled may have none at all, and its editors must still be manageable).
        let was_enabled_admin = row.user.role == Role::Admin && !row.user.disabled;
        let mut changed = Vec::new();
        if let Some(role) = update.role
            && role != row.user.role
        {
            row.user.role = role;
            changed.push("role");
        }
        if let Some(disabled) = update.disabled
            && disabled != row.user.disabled
        {
            row.user.disabled = disabled;
            changed.push("disabled");
        }
        if let Some(password) = update.password {
            auth::check_password_policy(&password)?;
            row.password_hash = self
                .password_work(move || auth::hash_password(&password))
                .await?;
            changed.push("password");
        }
        if changed.is_empty() {
            return Ok(row.user);
        }
        if was_enabled_admin && (row.user.role != Role::Admin || row.user.disabled) {
            let other_admins = self
                .store
                .users()
                .await?
                .iter()
                .filter(|u| u.user.id != id && u.user.role == Role::Admin && !u.user.disabled)
                .count();
            if other_admins == 0 {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    "this is the last enabled admin: make another admin first",
                ));
            }
        }
        row.user.updated_at = now();
        let event = self
            .event(principal, allowed.action(), Some(&user_target), Outcome::Ok)
            .with_changed_fields(&changed);
        if row.user.disabled || changed.contains(&"password") {
            self.store.update_user_ending_sessions(&row, &event).await?;
        } else {
            self.store.update_user(&row, &event).await?;
        }
        Ok(row.user)
    }

    /// Changes the principal's own password, given the current one. Ends every session of the
    /// user, the caller's own included, in the same store transaction: an adapter serving a
    /// session logs in again with the new password and starts a new session for the caller.
    /// API tokens keep working: they are credentials of their own, revoked one by one.
    ///
    /// Wrong current passwords are throttled with failed sign-ins, per account name, as in
    /// [`Hub::login`].
    ///
    /// # Errors
    /// `Unauthenticated` when `current` is wrong; `InvalidInput` on `password` for the new one;
    /// `PermissionDenied` through a read-only token; `RateLimited` when the account's guesses
    /// are spent.
    pub async fn change_own_password(
        &self,
        principal: &Principal,
        current: Password,
        new: Password,
    ) -> Result<()> {
        let guess = self.take_guess(principal.username())?;
        let result = self
            .check_and_change_password(principal, current, new)
            .await;
        self.settle_guess(guess, &result);
        result
    }

    /// [`Hub::change_own_password`] once the attempt is admitted.
    async fn check_and_change_password(
        &self,
        principal: &Principal,
        current: Password,
        new: Password,
    ) -> Result<()> {
        let allowed = match principal.check::<act::PasswordChangeOwn>() {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(principal, Action::PasswordChangeOwn, None, e)
                    .await;
            }
        };
        auth::check_password_policy(&new)?;
        let mut row = self.store.user(principal.user()).await?.ok_or_else(|| {
            Error::new(ErrorKind::Unauthenticated, "the account no longer exists")
        })?;
        let stored = row.clone();
        let verdict = self
            .password_work(move || Ok(auth::verify_login(Some(&stored), &current)))
            .await?;
        if let Err(e) = verdict {
            let event = self.event(
                principal,
                allowed.action(),
                Some(&target("user", row.user.id)),
                Outcome::Denied,
            );
            self.audit(&event).await?;
            return Err(e);
        }
        row.password_hash = self
            .password_work(move || auth::hash_password(&new))
            .await?;
        row.user.updated_at = now();
        let event = self
            .event(
                principal,
                allowed.action(),
                Some(&target("user", row.user.id)),
                Outcome::Ok,
            )
            .with_changed_fields(&["password"]);
        self.store.update_user_ending_sessions(&row, &event).await?;
        Ok(())
    }

    /// Every team with its members.
    ///
    /// # Errors
    /// `PermissionDenied` when the role may not list teams.
    pub async fn teams(&self, principal: &Principal) -> Result<Vec<Team>> {
        principal.check::<act::TeamList>()?;
        self.store.teams().await
    }

    /// Enabled users and teams whose name contains `q` (case-insensitive; `None` or empty: all),
    /// at most [`DIRECTORY_LIMIT`] of each, sorted by name: ids and names only, for picking a
    /// grantee. Any signed-in principal may ask (`directory.read`); not audited (a read).
    ///
    /// # Errors
    /// `PermissionDenied` when the role may not read the directory; `InvalidInput` on `q` when
    /// it is longer than [`MAX_DIRECTORY_QUERY_CHARS`] characters or holds a control character.
    pub async fn directory(&self, principal: &Principal, q: Option<&str>) -> Result<Directory> {
        principal.check::<act::DirectoryRead>()?;
        let q = q.unwrap_or("");
        if q.chars().count() > MAX_DIRECTORY_QUERY_CHARS {
            return Err(Error::invalid("q", "must be at most 64 characters"));
        }
        if q.chars().any(char::is_control) {
            return Err(Error::invalid("q", "must not contain control characters"));
        }
        self.store
            .directory(&q.to_lowercase(), DIRECTORY_LIMIT)
            .await
    }

    /// Creates a team (`id` = `None`) or replaces an existing team's name and members (admins).
    ///
    /// # Errors
    /// `PermissionDenied` (audited); `InvalidInput` on `name`; `Conflict` on `name` when taken;
    /// `NotFound` for an unknown member or team.
    pub async fn save_team(
        &self,
        principal: &Principal,
        id: Option<TeamId>,
        name: &str,
        members: &[UserId],
    ) -> Result<Team> {
        let id = id.unwrap_or_default();
        let team_target = target("team", id);
        let allowed = match principal.check::<act::TeamManage>() {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(principal, Action::TeamManage, Some(&team_target), e)
                    .await;
            }
        };
        let name = AccountName::parse(name).map_err(|e| e.with_field("name"))?;
        let mut members = members.to_vec();
        members.sort_unstable();
        members.dedup();
        let team = Team {
            id,
            name: name.into_string(),
            members,
        };
        let event = self
            .event(principal, allowed.action(), Some(&team_target), Outcome::Ok)
            .with_changed_fields(&["name", "members"]);
        self.store.upsert_team(&team, &event).await?;
        Ok(team)
    }

    /// Deletes a team and its grants (admins).
    ///
    /// # Errors
    /// `PermissionDenied` (audited); `NotFound`.
    pub async fn delete_team(&self, principal: &Principal, id: TeamId) -> Result<()> {
        let team_target = target("team", id);
        let allowed = match principal.check::<act::TeamManage>() {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(principal, Action::TeamManage, Some(&team_target), e)
                    .await;
            }
        };
        let event = self.event(principal, allowed.action(), Some(&team_target), Outcome::Ok);
        self.store.delete_team(id, &event).await
    }

    /// Creates an API token acting as the principal; the token text is returned once.
    ///
    /// A token created through another API token expires no later than that one (S33), and a
    /// read-only token creates none; from a signed-in session, the lifetime is as asked.
    ///
    /// # Errors
    /// `PermissionDenied` (audited) through a read-only token; `InvalidInput` on `name` or
    /// `expires_in_days` (1 to 3,650); `NotFound` for the local operator, who is no user.
    pub async fn create_token(
        &self,
        principal: &Principal,
        name: &str,
        expires_in_days: Option<u32>,
        read_only: bool,
    ) -> Result<NewApiToken> {
        self.create_token_for(
            principal,
            principal.user(),
            name,
            expires_in_days,
            read_only,
        )
        .await
    }

    /// Creates an API token acting as the user `user`: one's own (as [`Hub::create_token`]), or
    /// anyone's for admins and the local operator. The token text is returned once.
    ///
    /// # Errors
    /// `PermissionDenied` (audited) for another user's token unless the principal is an admin,
    /// or through a read-only token; `NotFound` when `user` does not exist; `InvalidInput` on
    /// `name` or `expires_in_days` (1 to 3,650).
    pub async fn create_token_for(
        &self,
        principal: &Principal,
        user: UserId,
        name: &str,
        expires_in_days: Option<u32>,
        read_only: bool,
    ) -> Result<NewApiToken> {
        let own = principal.actor() == Some(user);
        let action = if own {
            principal.check::<act::TokenCreateOwn>().map(|a| a.action())
        } else {
            principal.check::<act::TokenManageAny>().map(|a| a.action())
        };
        let action = match action {
            Ok(a) => a,
            Err(e) => {
                let action = if own {
                    Action::TokenCreateOwn
                } else {
                    Action::TokenManageAny
                };
                let user_target = (!own).then(|| target("user", user));
                return self
                    .refuse(principal, action, user_target.as_deref(), e)
                    .await;
            }
        };
        let name = check_label("name", name)?;
        if !own && self.store.user(user).await?.is_none() {
            return Err(Error::new(ErrorKind::NotFound, "user not found"));
        }
        let at = now();
        let asked = match expires_in_days {
            None => None,
            Some(d) if (1..=MAX_TOKEN_DAYS).contains(&d) => Some(at + Duration::days(i64::from(d))),
            Some(_) => {
                return Err(Error::invalid(
                    "expires_in_days",
                    "must be between 1 and 3650",
                ));
            }
        };
        // S33: a token minted with a token never outlives it. (Its rights are capped too: a
        // read-only token may mint nothing, as creating a token is a write.)
        let expires_at = match (asked, principal.token_expires_at()) {
            (Some(asked), Some(cap)) => Some(asked.min(cap)),
            (None, cap) => cap,
            (asked, None) => asked,
        };
        let new = auth::new_token()?;
        let row = StoredToken {
            info: TokenInfo {
                id: TokenId::new(),
                user,
                name,
                read_only,
                created_at: at,
                expires_at,
                revoked_at: None,
                last_used_at: None,
            },
            hash: new.hash,
        };
        let mut event = self.event(
            principal,
            action,
            Some(&target("token", row.info.id)),
            Outcome::Ok,
        );
        if !own {
            event = event.with_changed_fields(&["user"]);
        }
        self.store.insert_token(&row, &event).await?;
        Ok(NewApiToken {
            info: row.info,
            token: new.token,
        })
    }

    /// The principal's own API tokens.
    ///
    /// # Errors
    /// `PermissionDenied` when the role may not list tokens.
    pub async fn tokens(&self, principal: &Principal) -> Result<Vec<TokenInfo>> {
        principal.check::<act::TokenListOwn>()?;
        Ok(self
            .store
            .tokens_of(principal.user())
            .await?
            .into_iter()
            .map(|t| t.info)
            .collect())
    }

    /// API tokens, revoked and expired ones included, oldest first: the principal's own with
    /// `user` = its own id (the rule of [`Hub::tokens`]); another user's, or with `user` =
    /// `None` every user's, for admins and the local operator (the table's "anyone's tokens"
    /// right). Never the token text or its hash. A listing is a read and is not audited.
    ///
    /// # Errors
    /// `PermissionDenied` for another user's tokens unless the principal is an admin (through
    /// a token that may write: the right to manage anyone's tokens is a write right);
    /// `NotFound` on `user` when no such user exists.
    pub async fn list_tokens(
        &self,
        principal: &Principal,
        user: Option<UserId>,
    ) -> Result<Vec<TokenInfo>> {
        if let Some(u) = user
            && principal.actor() == Some(u)
        {
            return self.tokens(principal).await;
        }
        principal.check::<act::TokenManageAny>()?;
        let users = match user {
            Some(u) => vec![self.store.user(u).await?.ok_or_else(|| {
                Error::new(ErrorKind::NotFound, "user not found").with_field("user")
            })?],
            None => self.store.users().await?,
        };
        let mut tokens = Vec::new();
        for u in &users {
            tokens.extend(
                self.store
                    .tokens_of(u.user.id)
                    .await?
                    .into_iter()
                    .map(|t| t.info),
            );
        }
        tokens.sort_by_key(|t| (t.created_at, t.id));
        Ok(tokens)
    }

    /// Revokes a token: one's own, or anyone's for admins. Effective on the next request.
    ///
    /// # Errors
    /// `PermissionDenied` (audited) for another user's token unless the principal is an admin,
    /// or through a read-only token; `NotFound` for a token that does not exist.
    pub async fn revoke_token(&self, principal: &Principal, id: TokenId) -> Result<()> {
        let token_target = target("token", id);
        let own = self
            .store
            .tokens_of(principal.user())
            .await?
            .iter()
            .any(|t| t.info.id == id);
        let action = if own {
            principal.check::<act::TokenRevokeOwn>().map(|a| a.action())
        } else {
            principal.check::<act::TokenManageAny>().map(|a| a.action())
        };
        let action = match action {
            Ok(a) => a,
            Err(e) => {
                let action = if own {
                    Action::TokenRevokeOwn
                } else {
                    Action::TokenManageAny
                };
                return self.refuse(principal, action, Some(&token_target), e).await;
            }
        };
        if !own && !self.token_exists(id).await? {
            return Err(Error::new(ErrorKind::NotFound, "token not found"));
        }
        let event = self.event(principal, action, Some(&token_target), Outcome::Ok);
        self.store.revoke_token(id, now(), &event).await
    }
}

impl Hub {
    /// Whether any user holds the token `id` (an admin-only path: it reads every user's tokens).
    async fn token_exists(&self, id: TokenId) -> Result<bool> {
        for user in self.store.users().await? {
            if self
                .store
                .tokens_of(user.user.id)
                .await?
                .iter()
                .any(|t| t.info.id == id)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A label (token or similar name): 1 to 64 characters, no control or invisible characters.
fn check_label(field: &'static str, value: &str) -> Result<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if trimmed.chars().count() > MAX_LABEL_LEN {
        return Err(Error::invalid(field, "must be at most 64 characters long"));
    }
    if trimmed
        .chars()
        .any(|c| c.is_control() || crate::audit::is_invisible_format(c))
    {
        return Err(Error::invalid(
            field,
            "must not contain control or invisible characters",
        ));
    }
    Ok(trimmed.to_owned())
}

/// A random password for the first admin: 24 characters of base64url (144 bits).
fn random_password() -> Result<Password> {
    let mut raw = Zeroizing::new([0u8; 18]);
    auth::fill_random(raw.as_mut())?;
    Ok(Password::new(URL_SAFE_NO_PAD.encode(raw.as_ref())))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::{HashParams, PASSWORD_HASH_PARAMS, needs_rehash};
    use crate::crypto::Keyring;
    use crate::store::{SqliteStore, Store};

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const PW: &str = "a-weakly-hashed-password";

    #[tokio::test]
    async fn token_listing_follows_the_token_rules() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
        let hub = Hub::open(store.clone(), Keyring::parse(KEY).unwrap())
            .await
            .unwrap();
        let op = Principal::operator("tester");
        let mut principals = Vec::new();
        for (name, role) in [("ann", Role::Admin), ("ed", Role::Editor)] {
            let user = hub
                .create_user(&op, name, Password::from(PW), role)
                .await
                .unwrap();
            let row = store.user(user.id).await.unwrap().unwrap();
            principals.push((
                user.id,
                Principal::from_user(&row.user, Vec::new()).unwrap(),
            ));
        }
        let [(ann, ann_p), (ed, ed_p)] = <[_; 2]>::try_from(principals).unwrap();
        let a1 = hub.create_token(&ann_p, "a1", None, false).await.unwrap();
        let e1 = hub.create_token(&ed_p, "e1", Some(5), true).await.unwrap();
        let e2 = hub
            .create_token_for(&op, ed, "e2", None, false)
            .await
            .unwrap();
        hub.revoke_token(&op, e2.info.id).await.unwrap();
        let ids = |list: &[TokenInfo]| list.iter().map(|t| t.id).collect::<Vec<_>>();

        // Everyone lists their own; only admins and the operator anyone's, or everyone's.
        let own = hub.list_tokens(&ed_p, Some(ed)).await.unwrap();
        assert_eq!(ids(&own), [e1.info.id, e2.info.id]);
        assert_eq!(own, hub.tokens(&ed_p).await.unwrap());
        assert!(own[1].revoked_at.is_some() && own[0].read_only);
        for other in [Some(ann), None] {
            let refused = hub.list_tokens(&ed_p, other).await.unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::PermissionDenied);
        }
        for p in [&op, &ann_p] {
            let all = hub.list_tokens(p, None).await.unwrap();
            assert_eq!(ids(&all), [a1.info.id, e1.info.id, e2.info.id]);
            let eds = hub.list_tokens(p, Some(ed)).await.unwrap();
            assert_eq!(ids(&eds), [e1.info.id, e2.info.id]);
            assert!(eds.iter().all(|t| t.user == ed));
            let nobody = hub.list_tokens(p, Some(UserId::new())).await.unwrap_err();
            assert_eq!(nobody.kind(), ErrorKind::NotFound);
        }
        // A read-only admin token lists its own tokens, not anyone else's (a write right).
        let ann_row = store.user(ann).await.unwrap().unwrap().user;
        let ro_row = TokenInfo {
            read_only: true,
            ..store.tokens_of(ann).await.unwrap().remove(0).info
        };
        let ro = Principal::from_token(&ann_row, &ro_row, Vec::new(), now()).unwrap();
        assert_eq!(
            ids(&hub.list_tokens(&ro, Some(ann)).await.unwrap()),
            [a1.info.id]
        );
        let refused = hub.list_tokens(&ro, None).await.unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::PermissionDenied);
    }

    /// S33: a token made through a token expires no later than it; a read-only one makes none;
    /// a session (a password login) makes them as asked.
    #[tokio::test]
    async fn a_token_minted_with_a_token_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
        let hub = Hub::open(store.clone(), Keyring::parse(KEY).unwrap())
            .await
            .unwrap();
        hub.bootstrap_admin(Some(Password::from(PW))).await.unwrap();
        let session = hub
            .login(BOOTSTRAP_ADMIN, Password::from(PW), &RequestInfo::default())
            .await
            .unwrap();
        let forever = hub.create_token(&session, "f", None, false).await.unwrap();
        assert_eq!(forever.info.expires_at, None);
        let short = hub
            .create_token(&session, "s", Some(2), false)
            .await
            .unwrap();
        let cap = short.info.expires_at.unwrap();
        let through = hub
            .authenticate_token(short.token.expose_secret(), &RequestInfo::default())
            .await
            .unwrap();
        assert_eq!(through.token_expires_at(), Some(cap));
        for days in [None, Some(3_650)] {
            let minted = hub.create_token(&through, "m", days, false).await.unwrap();
            assert!(minted.info.expires_at.is_some_and(|e| e <= cap));
        }
        let one = hub
            .create_token(&through, "o", Some(1), false)
            .await
            .unwrap();
        assert!(one.info.expires_at.is_some_and(|e| e < cap));
        let ro = hub.create_token(&session, "r", None, true).await.unwrap();
        let ro = hub
            .authenticate_token(ro.token.expose_secret(), &RequestInfo::default())
            .await
            .unwrap();
        for read_only in [false, true] {
            let refused = hub
                .create_token(&ro, "x", None, read_only)
                .await
                .unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::PermissionDenied);
        }
    }

    #[tokio::test]
    async fn a_login_replaces_a_weaker_hash() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
        let hub = Hub::open(store.clone(), Keyring::parse(KEY).unwrap())
            .await
            .unwrap();
        let weak = HashParams {
            m_kib: 1_024,
            t: 1,
            p: 1,
        };
        let phc = crate::auth::password::hash_with(PW.as_bytes(), &[7; 16], weak).unwrap();
        assert!(needs_rehash(&phc));
        let at = now();
        let row = StoredUser {
            user: User {
                id: UserId::new(),
                username: "old-timer".into(),
                role: Role::Viewer,
                disabled: false,
                created_at: at,
                updated_at: at,
            },
            password_hash: phc.clone(),
        };
        let event = AuditEvent::now(None, "test", "user.create", None, Outcome::Ok);
        store.insert_user(&row, &event).await.unwrap();

        hub.login("old-timer", Password::from(PW), &RequestInfo::default())
            .await
            .unwrap();
        let stored = store
            .user(row.user.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash;
        assert_ne!(stored, phc);
        assert!(!needs_rehash(&stored));
        assert!(stored.contains(&format!(
            "m={},t={},p={}",
            PASSWORD_HASH_PARAMS.m_kib, PASSWORD_HASH_PARAMS.t, PASSWORD_HASH_PARAMS.p
        )));
        // The new hash still logs in.
        hub.login("old-timer", Password::from(PW), &RequestInfo::default())
            .await
            .unwrap();
    }
}
