//! Connections through the Hub: create, get, list, update, delete, reveal, grants.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use zeroize::Zeroizing;

use super::{Hub, now, secrets, target};
use crate::audit::Outcome;
use crate::model::{
    Connection, ConnectionDraft, ConnectionPatch, ConnectionSpec, ListQuery, NamedGrant, Page,
};
use crate::rbac::{
    Action, AllowedOn, ConnectionAction, Grant, GrantLevel, Grantee, Principal, act,
};
use crate::secret::{Password, PrivateKeyPem};
use crate::store::StoredConnection;
use crate::{ConnectionId, Error, ErrorKind, Result, UserId};

/// The grants on a connection, with the connection's version: the version a replacement of the
/// grants must name (they are part of what it covers, S26).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionGrants {
    /// The connection's version now.
    pub version: u64,
    /// The grants, users' before teams', each with its grantee's name.
    pub grants: Vec<NamedGrant>,
}

impl ConnectionGrants {
    /// The grants without the names (what [`Hub::set_grants`] takes).
    pub fn plain(&self) -> Vec<Grant> {
        self.grants.iter().map(|g| g.grant).collect()
    }
}

/// A connection's decrypted credentials, from [`Hub::reveal`]: the one result that carries a
/// secret. `Debug` redacts the password, the client key and the DSN.
#[derive(Debug, Clone)]
pub struct Revealed {
    /// The database user name.
    pub username: String,
    /// The password.
    pub password: Password,
    /// The TLS client key, when the connection has one.
    pub client_key_pem: Option<PrivateKeyPem>,
    /// A libpq URL with every setting that fits in one (host, port, database, user, password,
    /// `sslmode`, `channel_binding`, `connect_timeout`, `application_name`). A CA or client
    /// certificate does not fit in a URL: pass those as files.
    pub dsn: Dsn,
}

/// A libpq connection URL carrying a password. `Debug` redacts it; no `Display`.
#[derive(Clone)]
pub struct Dsn(Password);

impl Dsn {
    /// The URL, password included. Call it at the last moment.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Dsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dsn(<redacted>)")
    }
}

/// What to percent-encode in a URL's user info and path: everything but unreserved characters.
const URL_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Hub {
    /// Saves a new connection owned by the principal. The monitor this hub started checks it
    /// within 5 s ([`Hub::start_monitor`]), on the principal's test budget (S31).
    ///
    /// # Errors
    /// `PermissionDenied` (audited) unless the role may create; `InvalidInput` naming the field
    /// for any broken rule, including a TLS mode below the admin policy's minimum (`tls.mode`);
    /// `Conflict` on `name` when the name is taken.
    pub async fn create_connection(
        &self,
        principal: &Principal,
        draft: ConnectionDraft,
    ) -> Result<Connection> {
        self.create_connection_owned_by(principal, None, draft)
            .await
    }

    /// Saves a new connection owned by the user `owner` (who then holds `manage` on it), or by
    /// the principal when `owner` is `None` or the principal's own id. Giving another account
    /// a connection it manages is an admin's act on that account: it needs the rights to
    /// create connections and to change other accounts (admins and the local operator). The
    /// audit row names `owner` among the changed fields when the owner is someone else.
    ///
    /// A connection the local operator creates without an owner is owned by no user (the nil
    /// id): admins manage it, and others reach it only through grants.
    ///
    /// # Errors
    /// As [`Hub::create_connection`]; `PermissionDenied` (audited) for another owner unless an
    /// admin; `InvalidInput` on `owner` when it names no user or a disabled one.
    pub async fn create_connection_owned_by(
        &self,
        principal: &Principal,
        owner: Option<UserId>,
        draft: ConnectionDraft,
    ) -> Result<Connection> {
        let connection = self.insert_connection(principal, owner, draft).await?;
        // The monitor's first check tells the creator whether the target answers (S31).
        self.owed_checks.owe(connection.id, principal.user());
        self.changes.changed(connection.id);
        Ok(connection)
    }

    /// Saves a new connection as [`Hub::create_connection_owned_by`] does, without telling the
    /// monitor nor owing its first check to anyone: the caller does.
    pub(super) async fn insert_connection(
        &self,
        principal: &Principal,
        owner: Option<UserId>,
        draft: ConnectionDraft,
    ) -> Result<Connection> {
        let allowed = match principal.check::<act::ConnectionCreate>() {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(principal, Action::ConnectionCreate, None, e)
                    .await;
            }
        };
        let owner = owner.filter(|o| *o != principal.user());
        if let Some(owner) = owner {
            if let Err(e) = principal.check::<act::UserUpdate>() {
                let user_target = target("user", owner);
                return self
                    .refuse(principal, Action::UserUpdate, Some(&user_target), e)
                    .await;
            }
            match self.store.user(owner).await? {
                None => return Err(Error::invalid("owner", "names no user")),
                Some(u) if u.user.disabled => {
                    return Err(Error::invalid("owner", "is a disabled account"));
                }
                Some(_) => {}
            }
        }
        let (spec, secrets) = draft.validate()?;
        self.check_tls_floor(&spec).await?;
        let at = now();
        let id = ConnectionId::new();
        let sealed = secrets::seal_new(&self.keyring, id, &secrets)?;
        let row = StoredConnection {
            id,
            spec,
            owner: owner.unwrap_or_else(|| allowed.principal().user()),
            version: Connection::FIRST_VERSION,
            created_at: at,
            updated_at: at,
            secrets: sealed,
        };
        let mut event = self.event(
            principal,
            allowed.action(),
            Some(&target("connection", id)),
            Outcome::Ok,
        );
        if owner.is_some() {
            event = event.with_changed_fields(&["owner"]);
        }
        self.store.insert_connection(&row, &event).await?;
        Ok(Connection {
            id,
            spec: row.spec,
            owner: row.owner,
            version: row.version,
            // A connection cannot be saved without a password (the model requires one).
            password_set: true,
            created_at: at,
            updated_at: at,
            health: Default::default(),
        })
    }

    /// One connection with its health, without secrets.
    ///
    /// # Errors
    /// `NotFound` when it does not exist or the principal may not view it.
    pub async fn connection(&self, principal: &Principal, id: ConnectionId) -> Result<Connection> {
        Ok(self.connection_with_access(principal, id).await?.0)
    }

    /// One connection with its health, and the principal's own grant level on it (`manage`
    /// for an admin or the owner), so a client can offer only what the caller may do. A
    /// read-only principal still may only read, whatever the level.
    ///
    /// # Errors
    /// `NotFound` when it does not exist or the principal may not view it.
    pub async fn connection_with_access(
        &self,
        principal: &Principal,
        id: ConnectionId,
    ) -> Result<(Connection, GrantLevel)> {
        let summary = self
            .store
            .connection_summary(id)
            .await?
            .ok_or_else(not_found)?;
        let grants = self.store.grants(id).await?;
        let level = principal
            .check_on::<act::ConnectionView>(id, summary.owner, &grants)?
            .level();
        Ok((summary, level))
    }

    /// The connection with this name, if the principal may view it.
    ///
    /// # Errors
    /// `NotFound` when it does not exist or the principal may not view it.
    pub async fn connection_by_name(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<Connection> {
        let name = crate::model::ConnectionName::parse(name)?;
        let row = self
            .store
            .connection_by_name(&name)
            .await?
            .ok_or_else(not_found)?;
        self.connection(principal, row.id).await
    }

    /// One page of the connections the principal may view, with the total over all pages.
    ///
    /// # Errors
    /// `InvalidInput` on `page` or `per_page` out of range.
    pub async fn list_connections(
        &self,
        principal: &Principal,
        query: &ListQuery,
    ) -> Result<Page<Connection>> {
        principal.check::<act::ConnectionList>()?;
        self.store
            .list_connections(query, &principal.visibility())
            .await
    }

    /// Applies `patch` to the connection if its version is still `expected_version`.
    ///
    /// An omitted password keeps the stored one (S11); pointing the connection elsewhere or
    /// weakening its TLS needs the password again (S12). An edit that changes nothing returns the
    /// connection as it is; any other is told to the monitor this hub started, which checks the
    /// connection again within 5 s, on the principal's test budget (S31).
    ///
    /// # Errors
    /// `NotFound`; `PermissionDenied` (audited) without `manage`; `InvalidInput` naming the field;
    /// `Conflict` when `expected_version` is stale or the new name is taken.
    pub async fn update_connection(
        &self,
        principal: &Principal,
        id: ConnectionId,
        expected_version: u64,
        patch: ConnectionPatch,
    ) -> Result<Connection> {
        let conn_target = target("connection", id);
        let (row, allowed) = self
            .authorize::<act::ConnectionUpdate>(principal, id)
            .await?;
        if row.version != expected_version {
            return Err(Error::stale());
        }
        let outcome = patch.apply(&row.spec)?;
        outcome.check_password_requirement()?;
        if outcome.is_unchanged() {
            return self.connection(principal, id).await;
        }
        if outcome.spec.tls.mode() != row.spec.tls.mode() {
            self.check_tls_floor(&outcome.spec).await?;
        }
        let sealed = secrets::apply_update(
            &self.keyring,
            allowed.connection(),
            &row.secrets,
            &outcome.secrets,
        )?;
        let updated = StoredConnection {
            spec: outcome.spec.clone(),
            updated_at: now(),
            secrets: sealed,
            ..row
        };
        let event = self
            .event(principal, allowed.action(), Some(&conn_target), Outcome::Ok)
            .with_changed_fields(outcome.changed());
        self.store
            .update_connection(&updated, expected_version, &event)
            .await?;
        // The monitor checks an edited connection again soon: that check tells the editor
        // whether the (perhaps new) target answers (S31).
        self.owed_checks.owe(id, principal.user());
        self.changes.changed(id);
        self.connection(principal, id).await
    }

    /// Deletes the connection if its version is still `expected_version`; the monitor this hub
    /// started stops checking it.
    ///
    /// # Errors
    /// `NotFound`; `PermissionDenied` (audited) without `manage`; `Conflict` when stale.
    pub async fn delete_connection(
        &self,
        principal: &Principal,
        id: ConnectionId,
        expected_version: u64,
    ) -> Result<()> {
        let conn_target = target("connection", id);
        let (_, allowed) = self
            .authorize::<act::ConnectionDelete>(principal, id)
            .await?;
        let event = self.event(principal, allowed.action(), Some(&conn_target), Outcome::Ok);
        self.store
            .delete_connection(allowed.connection(), expected_version, &event)
            .await?;
        self.changes.deleted(id);
        Ok(())
    }

    /// Decrypts a connection's credentials for the principal (grant `use`). The reveal is
    /// audited before the secret is returned; if the audit row cannot be written, nothing is
    /// revealed.
    ///
    /// # Errors
    /// `NotFound`; `PermissionDenied` (audited) without `use`; `Decrypt` or `Keyring` when the
    /// stored secrets do not open.
    pub async fn reveal(&self, principal: &Principal, id: ConnectionId) -> Result<Revealed> {
        let conn_target = target("connection", id);
        let (row, allowed) = self
            .authorize::<act::ConnectionReveal>(principal, id)
            .await?;
        let opened = match secrets::open(&self.keyring, allowed.connection(), &row.secrets) {
            Ok(s) => s,
            Err(e) => {
                let event = self.event(
                    principal,
                    allowed.action(),
                    Some(&conn_target),
                    Outcome::Error,
                );
                self.audit(&event).await?;
                return Err(e);
            }
        };
        let event = self.event(principal, allowed.action(), Some(&conn_target), Outcome::Ok);
        self.audit(&event).await?;
        let dsn = dsn(&row.spec, &opened.password);
        Ok(Revealed {
            username: row.spec.username.as_str().to_owned(),
            password: opened.password,
            client_key_pem: opened.client_key_pem,
            dsn,
        })
    }

    /// The grants on a connection (`manage`), with the connection's version.
    ///
    /// # Errors
    /// `NotFound`; `PermissionDenied` without `manage`.
    pub async fn grants(
        &self,
        principal: &Principal,
        id: ConnectionId,
    ) -> Result<ConnectionGrants> {
        let row = self
            .store
            .connection_summary(id)
            .await?
            .ok_or_else(not_found)?;
        // One read gives both what the check needs and the names.
        let named = self.store.named_grants(id).await?;
        let grants: Vec<Grant> = named.iter().map(|g| g.grant).collect();
        principal.check_on::<act::GrantsRead>(id, row.owner, &grants)?;
        Ok(ConnectionGrants {
            version: row.version,
            grants: named,
        })
    }

    /// Replaces the grants on a connection (`manage`) if its version is still
    /// `expected_version`; the connection's version goes up by one. A grantee named twice is an
    /// error.
    ///
    /// # Errors
    /// `NotFound` (also for an unknown user or team); `PermissionDenied` (audited) without
    /// `manage`; `InvalidInput` on `grants` for a duplicate grantee; `Conflict` on `version`
    /// when `expected_version` is stale.
    pub async fn set_grants(
        &self,
        principal: &Principal,
        id: ConnectionId,
        expected_version: u64,
        new_grants: &[Grant],
    ) -> Result<ConnectionGrants> {
        let conn_target = target("connection", id);
        let row = self
            .store
            .connection_summary(id)
            .await?
            .ok_or_else(not_found)?;
        let grants = self.store.grants(id).await?;
        let allowed = match principal.check_on::<act::GrantsWrite>(id, row.owner, &grants) {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(principal, Action::GrantsWrite, Some(&conn_target), e)
                    .await;
            }
        };
        if row.version != expected_version {
            return Err(Error::stale());
        }
        let mut grantees: Vec<Grantee> = new_grants.iter().map(|g| g.grantee).collect();
        grantees.sort_unstable();
        if grantees.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::invalid("grants", "names a user or team twice"));
        }
        let event = self
            .event(principal, allowed.action(), Some(&conn_target), Outcome::Ok)
            .with_changed_fields(&["grants"]);
        let version = self
            .store
            .set_grants(allowed.connection(), expected_version, new_grants, &event)
            .await?;
        // Who may view it changed: event streams check it again.
        self.changes.changed(id);
        Ok(ConnectionGrants {
            version,
            grants: self.store.named_grants(id).await?,
        })
    }

    /// Loads a connection and checks the action `A` on it, auditing a refusal: the one way the
    /// Hub's connection methods get their row and their proof.
    pub(super) async fn authorize<'p, A: ConnectionAction>(
        &self,
        principal: &'p Principal,
        id: ConnectionId,
    ) -> Result<(StoredConnection, AllowedOn<'p, A>)> {
        let row = self.store.connection(id).await?.ok_or_else(not_found)?;
        let grants = self.store.grants(id).await?;
        match principal.check_on::<A>(id, row.owner, &grants) {
            Ok(allowed) => Ok((row, allowed)),
            Err(e) => {
                self.refuse(principal, A::ACTION, Some(&target("connection", id)), e)
                    .await
            }
        }
    }

    /// Refuses a TLS mode below the admin policy's minimum.
    async fn check_tls_floor(&self, spec: &ConnectionSpec) -> Result<()> {
        let policy = self.store.policy().await?;
        if spec.tls.mode() < policy.min_tls_mode {
            return Err(Error::invalid(
                "tls.mode",
                format!(
                    "is below the lowest mode the policy allows ({})",
                    policy.min_tls_mode.as_str()
                ),
            ));
        }
        Ok(())
    }
}

fn not_found() -> Error {
    Error::new(ErrorKind::NotFound, "connection not found")
}

/// The libpq URL of a connection, password included.
fn dsn(spec: &ConnectionSpec, password: &Password) -> Dsn {
    Dsn(Password::new(dsn_text(spec, password)))
}

/// The text of [`dsn`], built in one buffer reserved at its exact final length: the
/// percent-encoded password is written straight into it, so no growing or temporary string
/// leaves an unzeroized copy behind, and the secret type takes it without reallocating (S34).
fn dsn_text(spec: &ConnectionSpec, password: &Password) -> String {
    let host = spec.host.to_url_host();
    let port = spec.port.get().to_string();
    let timeout = spec
        .options
        .connect_timeout_ms()
        .div_ceil(1000)
        .max(1)
        .to_string();
    let app = spec.options.application_name();
    // The pieces in order; `Enc` ones are percent-encoded.
    enum Piece<'a> {
        Raw(&'a str),
        Enc(&'a str),
    }
    let mut pieces = vec![
        Piece::Raw("postgresql://"),
        Piece::Enc(spec.username.as_str()),
        Piece::Raw(":"),
        Piece::Enc(password.expose_secret()),
        Piece::Raw("@"),
        Piece::Raw(&host),
        Piece::Raw(":"),
        Piece::Raw(&port),
        Piece::Raw("/"),
        Piece::Enc(spec.database.as_str()),
        Piece::Raw("?sslmode="),
        Piece::Raw(spec.tls.mode().as_str()),
        Piece::Raw("&channel_binding="),
        Piece::Raw(spec.tls.channel_binding().as_str()),
        Piece::Raw("&connect_timeout="),
        Piece::Raw(&timeout),
    ];
    if let Some(app) = app {
        pieces.push(Piece::Raw("&application_name="));
        pieces.push(Piece::Enc(app.as_str()));
    }
    let len: usize = pieces
        .iter()
        .map(|p| match p {
            Piece::Raw(s) => s.len(),
            Piece::Enc(s) => utf8_percent_encode(s, URL_COMPONENT).map(str::len).sum(),
        })
        .sum();
    let mut url = Zeroizing::new(String::with_capacity(len));
    for piece in &pieces {
        match piece {
            Piece::Raw(s) => url.push_str(s),
            Piece::Enc(s) => utf8_percent_encode(s, URL_COMPONENT).for_each(|p| url.push_str(p)),
        }
    }
    debug_assert_eq!(url.len(), url.capacity());
    std::mem::take(&mut *url)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::crypto::Keyring;
    use crate::rbac::Role;
    use crate::store::{SqliteStore, Store};

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const PW: &str = "owner-test-password-1";

    fn draft(name: &str) -> ConnectionDraft {
        ConnectionDraft {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: Some(1),
            database: "app".into(),
            username: "app".into(),
            password: Some(Password::from(PW)),
            ..ConnectionDraft::default()
        }
    }

    /// S34: the revealed DSN is built in a buffer reserved at its exact length (no
    /// reallocation leaves a copy of the encoded password), and says what it said before.
    #[test]
    fn the_dsn_is_built_in_one_exact_buffer() {
        let mut d = draft("dsn-exact");
        d.username = "app user".into();
        d.options.application_name = Some("my app/1".into());
        let (spec, _) = d.validate().unwrap();
        let password = Password::from("p@ss:wörd/%&canary");
        let text = dsn_text(&spec, &password);
        assert_eq!(text.len(), text.capacity());
        assert_eq!(
            text,
            "postgresql://app%20user:p%40ss%3Aw%C3%B6rd%2F%25%26canary@127.0.0.1:1/app\
             ?sslmode=verify-full&channel_binding=prefer&connect_timeout=5\
             &application_name=my%20app%2F1"
        );
    }

    #[tokio::test]
    async fn a_connection_can_be_created_for_an_enabled_user() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("data")).unwrap());
        let hub = Hub::open(store.clone(), Keyring::parse(KEY).unwrap())
            .await
            .unwrap();
        let op = Principal::operator("tester");
        let mut users = Vec::new();
        for (name, role) in [
            ("ann", Role::Admin),
            ("ed", Role::Editor),
            ("vi", Role::Viewer),
        ] {
            let u = hub
                .create_user(&op, name, Password::from(PW), role)
                .await
                .unwrap();
            let row = store.user(u.id).await.unwrap().unwrap();
            users.push((u.id, Principal::from_user(&row.user, Vec::new()).unwrap()));
        }
        let [(ann, ann_p), (ed, ed_p), (vi, vi_p)] = <[_; 3]>::try_from(users).unwrap();

        // The operator and admins may give a connection to someone; the owner then manages it.
        let for_ed = hub
            .create_connection_owned_by(&op, Some(ed), draft("for-ed"))
            .await
            .unwrap();
        assert_eq!(for_ed.owner, ed);
        assert_eq!(hub.connection(&ed_p, for_ed.id).await.unwrap().owner, ed);
        assert!(
            hub.grants(&ed_p, for_ed.id)
                .await
                .unwrap()
                .grants
                .is_empty()
        );
        let for_vi = hub
            .create_connection_owned_by(&ann_p, Some(vi), draft("for-vi"))
            .await
            .unwrap();
        assert_eq!(for_vi.owner, vi);
        let seen = hub
            .list_connections(&vi_p, &ListQuery::default())
            .await
            .unwrap();
        assert_eq!(seen.total, 1, "a viewer sees what it owns");
        // Naming oneself, or nobody, is an ordinary creation.
        let own = hub
            .create_connection_owned_by(&ed_p, Some(ed), draft("own"))
            .await
            .unwrap();
        assert_eq!(own.owner, ed);
        let nobodys = hub
            .create_connection_owned_by(&op, None, draft("nobodys"))
            .await
            .unwrap();
        assert_eq!(nobodys.owner_user(), None);

        // An editor may not give one away; an unknown or disabled owner is refused on `owner`.
        let refused = hub
            .create_connection_owned_by(&ed_p, Some(ann), draft("x1"))
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::PermissionDenied);
        let unknown = hub
            .create_connection_owned_by(&op, Some(UserId::new()), draft("x2"))
            .await
            .unwrap_err();
        assert_eq!(
            (unknown.kind(), unknown.field()),
            (ErrorKind::InvalidInput, Some("owner"))
        );
        let off = crate::hub::UserUpdate {
            disabled: Some(true),
            ..Default::default()
        };
        hub.update_user(&op, vi, off).await.unwrap();
        let disabled = hub
            .create_connection_owned_by(&op, Some(vi), draft("x3"))
            .await
            .unwrap_err();
        assert_eq!(
            (disabled.kind(), disabled.field()),
            (ErrorKind::InvalidInput, Some("owner"))
        );
        let all = hub
            .list_connections(&op, &ListQuery::default())
            .await
            .unwrap();
        assert_eq!(all.total, 4, "nothing refused was saved");

        // The audit rows: "owner" named when given away; the refusal recorded as denied.
        let rows = store.audit_after(0, 1_000).await.unwrap();
        let creates: Vec<&[String]> = rows
            .iter()
            .filter(|r| r.event.action == "connection.create")
            .map(|r| r.event.changed_fields.as_slice())
            .collect();
        let owner = ["owner".to_owned()];
        assert_eq!(creates, [&owner[..], &owner[..], &[], &[]]);
        assert!(rows.iter().any(|r| r.event.action == "user.update"
            && r.event.outcome == Outcome::Denied
            && r.event.actor == Some(ed)));
    }
}
