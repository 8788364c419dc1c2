//! Connections through the Hub: create, get, list, update, delete, reveal, grants.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::{Hub, now, secrets, target};
use crate::audit::Outcome;
use crate::model::{Connection, ConnectionDraft, ConnectionPatch, ConnectionSpec};
use crate::rbac::{Action, AllowedOn, ConnectionAction, Grant, Grantee, Principal, act};
use crate::secret::{Password, PrivateKeyPem};
use crate::store::{ConnectionRow, ConnectionSummary, ListQuery, Page};
use crate::{ConnectionId, Error, ErrorKind, Result, UserId};

/// The grants on a connection, with the connection's version: the version a replacement of the
/// grants must name (they are part of what it covers, S26).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionGrants {
    /// The connection's version now.
    pub version: u64,
    /// The grants, users' before teams'.
    pub grants: Vec<Grant>,
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
    /// Saves a new connection owned by the principal.
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
                Some(u) if u.disabled => {
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
        let row = ConnectionRow {
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
        // The monitor's first check tells the creator whether the target answers (S31).
        self.owed_checks.owe(id, principal.user());
        Ok(to_connection(ConnectionSummary {
            id,
            spec: row.spec,
            owner: row.owner,
            version: row.version,
            created_at: at,
            updated_at: at,
            health: Default::default(),
        }))
    }

    /// One connection with its health, without secrets.
    ///
    /// # Errors
    /// `NotFound` when it does not exist or the principal may not view it.
    pub async fn connection(&self, principal: &Principal, id: ConnectionId) -> Result<Connection> {
        let summary = self
            .store
            .connection_summary(id)
            .await?
            .ok_or_else(not_found)?;
        let grants = self.store.grants(id).await?;
        principal.check_on::<act::ConnectionView>(id, summary.owner, &grants)?;
        Ok(to_connection(summary))
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
        let page = self
            .store
            .list_connections(query, &principal.visibility())
            .await?;
        Ok(Page {
            items: page.items.into_iter().map(to_connection).collect(),
            total: page.total,
            page: page.page,
            per_page: page.per_page,
        })
    }

    /// Applies `patch` to the connection if its version is still `expected_version`.
    ///
    /// An omitted password keeps the stored one (S11); pointing the connection elsewhere or
    /// weakening its TLS needs the password again (S12). An edit that changes nothing returns the
    /// connection as it is.
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
            return Err(stale());
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
        let updated = ConnectionRow {
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
        self.connection(principal, id).await
    }

    /// Deletes the connection if its version is still `expected_version`.
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
            .await
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
        let grants = self.store.grants(id).await?;
        principal.check_on::<act::GrantsRead>(id, row.owner, &grants)?;
        Ok(ConnectionGrants {
            version: row.version,
            grants,
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
            return Err(stale());
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
        Ok(ConnectionGrants {
            version,
            grants: self.store.grants(id).await?,
        })
    }

    /// Loads a connection and checks the action `A` on it, auditing a refusal: the one way the
    /// Hub's connection methods get their row and their proof.
    pub(super) async fn authorize<'p, A: ConnectionAction>(
        &self,
        principal: &'p Principal,
        id: ConnectionId,
    ) -> Result<(ConnectionRow, AllowedOn<'p, A>)> {
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

fn stale() -> Error {
    Error::new(
        ErrorKind::Conflict,
        "the connection changed since it was read: reload it and apply the edit again",
    )
    .with_field("version")
}

fn to_connection(s: ConnectionSummary) -> Connection {
    Connection {
        id: s.id,
        spec: s.spec,
        owner: s.owner,
        version: s.version,
        // A connection cannot be saved without a password (the model requires one).
        password_set: true,
        created_at: s.created_at,
        updated_at: s.updated_at,
        health: s.health,
    }
}

/// The libpq URL of a connection, password included.
fn dsn(spec: &ConnectionSpec, password: &Password) -> Dsn {
    let enc = |s: &str| utf8_percent_encode(s, URL_COMPONENT).to_string();
    let mut url = format!(
        "postgresql://{}:{}@{}:{}/{}?sslmode={}&channel_binding={}&connect_timeout={}",
        enc(spec.username.as_str()),
        enc(password.expose_secret()),
        spec.host.to_url_host(),
        spec.port.get(),
        enc(spec.database.as_str()),
        spec.tls.mode().as_str(),
        spec.tls.channel_binding().as_str(),
        spec.options.connect_timeout_ms().div_ceil(1000).max(1),
    );
    if let Some(app) = spec.options.application_name() {
        url.push_str("&application_name=");
        url.push_str(&enc(app.as_str()));
    }
    Dsn(Password::new(url))
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
            users.push((u.id, Principal::from_user(&row, Vec::new()).unwrap()));
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
