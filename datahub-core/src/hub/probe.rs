//! Connection tests through the Hub: a saved connection, a draft (optionally reusing a saved
//! connection's secrets for fields left blank), and creation that is refused when the test
//! fails. Every test is permission-checked, rate-limited per user and audited.

use std::sync::Arc;
use std::time::Duration;

use tracing::{Instrument as _, debug_span};

use super::policy::Effective;
use super::{Hub, secrets, target};
use crate::audit::Outcome;
use crate::model::{Connection, ConnectionDraft, ConnectionSecrets, ConnectionSpec};
use crate::net::Policy;
use crate::probe::{self, PolicyDial, ProbeRules, Report};
use crate::rbac::{Action, Principal, act};
use crate::store::TestContext;
use crate::{ConnectionId, Error, ErrorKind, Result};

/// The outcome of [`Hub::create_connection_tested`]: saved, or not saved because the test
/// failed.
#[derive(Debug)]
pub enum SaveOutcome {
    /// The test passed and the connection was saved.
    Saved {
        /// The saved connection.
        connection: Box<Connection>,
        /// The test that allowed it.
        report: Report,
    },
    /// The test failed, so nothing was saved: the report says why.
    NotSaved(Report),
}

impl Hub {
    /// Tests a saved connection now (grant `use`), within `budget` (at most 5 s).
    ///
    /// # Errors
    /// `NotFound`; `PermissionDenied` (audited) without `use`; `RateLimited` when the principal
    /// tests too often; `Decrypt`/`Keyring` when its secrets do not open. A failing test is not
    /// an error: it is a report with `ok == false`.
    pub async fn test_connection(
        &self,
        principal: &Principal,
        id: ConnectionId,
        budget: Duration,
    ) -> Result<Report> {
        async {
            let context = self
                .store
                .connection_for_test(id)
                .instrument(debug_span!("read"))
                .await?;
            self.test_saved(principal, context, budget).await
        }
        .instrument(debug_span!("hub_test", connection = %id))
        .await
    }

    /// [`Self::test_connection`] for a caller whose authentication runs now: `authenticate`
    /// (an adapter's check of the caller's credential) runs alongside the test's store read,
    /// so the two waits for the store overlap. Authentication decides first: when it fails,
    /// its error is returned at once and the read, finished or not, is dropped unseen, so an
    /// unauthenticated caller learns nothing of the connection, not even from the read's own
    /// error; once it passes, everything goes on as in [`Self::test_connection`].
    ///
    /// # Errors
    /// `authenticate`'s error; otherwise as [`Self::test_connection`].
    pub async fn test_connection_as<E: From<Error>>(
        &self,
        authenticate: impl Future<Output = std::result::Result<Principal, E>>,
        id: ConnectionId,
        budget: Duration,
    ) -> std::result::Result<Report, E> {
        async {
            let (principal, context) = {
                // Awaited inside, so the read's span ends as soon as the read is done.
                let read = async {
                    self.store
                        .connection_for_test(id)
                        .instrument(debug_span!("read"))
                        .await
                };
                tokio::pin!(authenticate, read);
                let mut context = None;
                let principal = loop {
                    tokio::select! {
                        biased;
                        principal = &mut authenticate => break principal?,
                        read = &mut read, if context.is_none() => context = Some(read),
                    }
                };
                match context {
                    Some(read) => (principal, read?),
                    None => (principal, read.await?),
                }
            };
            Ok(self.test_saved(&principal, context, budget).await?)
        }
        .instrument(debug_span!("hub_test", connection = %id))
        .await
    }

    /// [`Self::test_connection`] for the connection with this name: the name is resolved in
    /// the test's one store read, with the same checks, limits, audit and errors as a test by
    /// id (a connection the principal may not view is `NotFound`, as one that does not exist).
    ///
    /// # Errors
    /// As [`Self::test_connection`]; `InvalidInput` (field `name`) for a name no connection
    /// could have.
    pub async fn test_connection_by_name(
        &self,
        principal: &Principal,
        name: &str,
        budget: Duration,
    ) -> Result<Report> {
        let name = crate::model::ConnectionName::parse(name)?;
        async {
            let context = self
                .store
                .connection_for_test_by_name(&name)
                .instrument(debug_span!("read"))
                .await?;
            self.test_saved(principal, context, budget).await
        }
        .instrument(debug_span!("hub_test", connection = name.as_str()))
        .await
    }

    /// [`Self::test_connection`] once the connection is read (`None`: not found). Each stage
    /// has a span of its own (level `debug`: nothing is recorded, and next to nothing spent,
    /// when it is off), so a subscriber can time them: `read` (the row, its grants and the
    /// policy: one store call), `authorize`, `rate_limit`, `decrypt`, `policy` (compiling it
    /// for the dialer), `probe` and `audit`.
    async fn test_saved(
        &self,
        principal: &Principal,
        context: Option<TestContext>,
        budget: Duration,
    ) -> Result<Report> {
        let context =
            context.ok_or_else(|| Error::new(ErrorKind::NotFound, "connection not found"))?;
        let row = &context.connection;
        let id = row.id;
        let conn_target = target("connection", id);
        let checked = debug_span!("authorize")
            .in_scope(|| principal.check_on::<act::ConnectionTest>(id, row.owner, &context.grants));
        let allowed = match checked {
            Ok(allowed) => allowed,
            Err(e) => {
                return self
                    .refuse(principal, Action::ConnectionTest, Some(&conn_target), e)
                    .await;
            }
        };
        debug_span!("rate_limit").in_scope(|| self.take_test(principal.user()))?;
        let opened = debug_span!("decrypt")
            .in_scope(|| secrets::open(&self.keyring, allowed.connection(), &row.secrets))?;
        let policy = debug_span!("policy").in_scope(|| Effective::of(&context.policy))?;
        let report = self
            .run_probe_under(&policy, &row.spec, &opened, budget)
            .instrument(debug_span!("probe"))
            .await;
        self.audit_test(principal, allowed.action(), &conn_target, &report)
            .instrument(debug_span!("audit"))
            .await?;
        Ok(report)
    }

    /// Tests settings that are not saved (roles editor and admin), within `budget`.
    ///
    /// With `reuse`, a saved connection the principal may `use` lends its stored password and
    /// client key to the fields the draft leaves blank (S11: the form never has to hold them),
    /// but only to the target they were saved for (S30,
    /// [`ConnectionSpec::may_lend_secrets_to`]): same host, port, database, user name and
    /// engine, TLS not weaker, the CA unchanged under a verifying mode.
    ///
    /// # Errors
    /// `PermissionDenied` (audited); `NotFound` for a `reuse` connection the principal may not
    /// view; `InvalidInput` naming the field, also `password` (or `tls.client_key_pem`) when a
    /// blank secret would be lent to another target; `RateLimited`.
    pub async fn test_draft(
        &self,
        principal: &Principal,
        mut draft: ConnectionDraft,
        reuse: Option<ConnectionId>,
        budget: Duration,
    ) -> Result<Report> {
        let allowed = match principal.check::<act::ConnectionTestDraft>() {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(principal, Action::ConnectionTestDraft, None, e)
                    .await;
            }
        };
        let (audit_target, lender) = match reuse {
            Some(id) => {
                let (row, lent) = self.authorize::<act::ConnectionTest>(principal, id).await?;
                let stored = secrets::open(&self.keyring, lent.connection(), &row.secrets)?;
                let mut borrowed = None;
                if draft.password.as_ref().is_none_or(|p| p.is_empty()) {
                    draft.password = Some(stored.password);
                    borrowed = Some("password");
                }
                if draft
                    .tls
                    .client_key_pem
                    .as_ref()
                    .is_none_or(|k| k.is_empty())
                    && draft
                        .tls
                        .client_cert_pem
                        .as_deref()
                        .is_some_and(|c| !c.trim().is_empty())
                {
                    draft.tls.client_key_pem = stored.client_key_pem;
                    borrowed = borrowed.or(Some("tls.client_key_pem"));
                }
                (
                    Some(target("connection", id)),
                    borrowed.map(|field| (row.spec, field)),
                )
            }
            None => (None, None),
        };
        let (spec, secrets) = draft.validate()?;
        // S30: a stored secret goes only to the target it was saved for.
        if let Some((saved, field)) = lender
            && !saved.may_lend_secrets_to(&spec)
        {
            return Err(Error::invalid(
                field,
                "must be given to test another host, port, database, user or engine, or weaker \
                 TLS, than the saved connection's",
            ));
        }
        self.take_test(principal.user())?;
        let report = self.run_probe(&spec, &secrets, budget).await?;
        self.audit_test(
            principal,
            allowed.action(),
            audit_target.as_deref().unwrap_or("draft"),
            &report,
        )
        .await?;
        Ok(report)
    }

    /// Tests a draft and saves it only when the test passes (`?test_first=true`).
    ///
    /// # Errors
    /// Those of [`Hub::test_draft`] and [`Hub::create_connection`]. A failing test is not an
    /// error: it is [`SaveOutcome::NotSaved`] with the report, and nothing is saved.
    pub async fn create_connection_tested(
        &self,
        principal: &Principal,
        draft: ConnectionDraft,
        budget: Duration,
    ) -> Result<SaveOutcome> {
        // Refuse early what creation would refuse, so a test is not spent on it.
        if let Err(e) = principal.check::<act::ConnectionCreate>() {
            return self
                .refuse(principal, Action::ConnectionCreate, None, e)
                .await;
        }
        let report = self
            .test_draft(principal, draft.clone(), None, budget)
            .await?;
        if !report.ok {
            return Ok(SaveOutcome::NotSaved(report));
        }
        // The test above was paid for and told what the first check would: that check is owed
        // to no one's budget.
        let connection = self.insert_connection(principal, None, draft).await?;
        self.changes.changed(connection.id);
        Ok(SaveOutcome::Saved {
            connection: Box::new(connection),
            report,
        })
    }

    /// Runs the prober through the one dialer under the current target policy (read afresh).
    pub(super) async fn run_probe(
        &self,
        spec: &ConnectionSpec,
        secrets: &ConnectionSecrets,
        budget: Duration,
    ) -> Result<Report> {
        let policy = Effective::of(&self.store.policy().await?)?;
        Ok(self.run_probe_under(&policy, spec, secrets, budget).await)
    }

    /// Runs the prober through the one dialer under `policy`.
    pub(super) async fn run_probe_under(
        &self,
        policy: &Effective,
        spec: &ConnectionSpec,
        secrets: &ConnectionSecrets,
        budget: Duration,
    ) -> Report {
        let dial = PolicyDial::new(self.connect.clone(), policy.policy.clone());
        let rules = ProbeRules {
            min_tls_mode: policy.min_tls_mode,
            ..ProbeRules::default()
        };
        probe::test(&dial, spec, secrets, &rules, budget).await
    }

    /// Audits a finished test: outcome `ok` or `error`, with the failure kind as the one
    /// "changed field" so the log shows why without a second lookup. A test changes no stored
    /// data, so its row is appended unsynced ([`AuditStore::append_audit_unsynced`]): written
    /// before the test answers and surviving a crash of the process (S21, S25), without waiting
    /// for a sync of the log (ARCHITECTURE.md, `hub/`).
    ///
    /// [`AuditStore::append_audit_unsynced`]: crate::store::AuditStore::append_audit_unsynced
    async fn audit_test(
        &self,
        principal: &Principal,
        action: Action,
        audit_target: &str,
        report: &Report,
    ) -> Result<()> {
        let (outcome, detail) = match &report.failure {
            None => (Outcome::Ok, Vec::new()),
            Some(f) => (
                Outcome::Error,
                vec![format!("error_kind={}", f.kind.as_str())],
            ),
        };
        let event = self
            .event(principal, action, Some(audit_target), outcome)
            .with_changed_fields(&detail);
        self.audit_unsynced(&event).await
    }
}

impl Hub {
    /// A connection pool to a saved connection (grant `use`), for services embedding the core.
    ///
    /// The pool dials through the hub's one dialer under the target policy and TLS floor as they
    /// are now (a later policy change applies to pools built after it), with the same TLS
    /// settings and cleartext guard as a test, and every pool timeout set. The request is
    /// audited; the secrets move into the pool and are never shown.
    ///
    /// # Errors
    /// `NotFound`; `PermissionDenied` (audited) without `use`; `InvalidInput` for a TLS mode
    /// below the floor or bad pool options; `Decrypt`/`Keyring` when the secrets do not open.
    pub async fn pool(
        &self,
        principal: &Principal,
        name: &str,
        options: &crate::probe::PoolOptions,
    ) -> Result<deadpool_postgres::Pool> {
        let name = crate::model::ConnectionName::parse(name)?;
        let row = self
            .store
            .connection_by_name(&name)
            .await?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "connection not found"))?;
        let conn_target = target("connection", row.id);
        let grants = self.store.grants(row.id).await?;
        let allowed = match principal.check_on::<act::ConnectionPool>(row.id, row.owner, &grants) {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(principal, Action::ConnectionPool, Some(&conn_target), e)
                    .await;
            }
        };
        let opened = secrets::open(&self.keyring, allowed.connection(), &row.secrets)?;
        let target_policy = self.store.policy().await?;
        let policy = Policy::from_target(&target_policy)?;
        let rules = ProbeRules {
            min_tls_mode: target_policy.min_tls_mode,
            ..ProbeRules::default()
        };
        let pool = probe::pool(
            self.connect.clone(),
            Arc::new(policy),
            &row.spec,
            opened,
            &rules,
            options,
        )?;
        let event = self.event(principal, allowed.action(), Some(&conn_target), Outcome::Ok);
        self.audit(&event).await?;
        Ok(pool)
    }
}
