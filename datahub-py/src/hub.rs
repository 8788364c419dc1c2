//! `LocalHub`: the Python class of local mode.
//!
//! It remembers how it was opened ([`Place`]) and the pid it opened the Hub in: in a forked
//! child the first call forgets the parent's Hub (its pools' connections belong to the parent)
//! and opens the store again. Its lock is held only to read or swap the Hub, never across a
//! wait, so many Python threads may call one hub at once.

use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use datahub_core::ConnectionId;
use datahub_core::audit::RequestInfo;
use datahub_core::hub::{Hub, SaveOutcome};
use datahub_core::probe::MAX_BUDGET;
use datahub_core::rbac::Principal;
use datahub_server::api::connection::{
    ConnectionOut, ConnectionPage, CreateConnection, DraftTest, HealthHistoryOut, PatchConnection,
    RevealBody,
};
use datahub_server::api::report::TestReport;
use datahub_server::extract::{json_body, query_params};
use datahub_server::routes::connections::{HistoryParams, ListParams};
use pyo3::prelude::*;
use pyo3::types::PyString;
use secrecy::zeroize::Zeroizing;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::errors::Raised;
use crate::measure;
use crate::place::Place;
use crate::runtime::{self, Ticker};

/// The most tests `test_many` runs at once, whatever is asked.
const MAX_CONCURRENCY: usize = 256;

/// A Hub opened on a store in this process, acting as the operator `operator:<name>`.
#[pyclass(frozen, module = "datahub_connections._native")]
#[derive(Debug)]
pub struct LocalHub {
    place: Place,
    principal: Principal,
    state: Mutex<State>,
}

/// The open Hub and the process it was opened in.
#[derive(Debug)]
struct State {
    pid: u32,
    hub: Option<Hub>,
    closed: bool,
}

#[pymethods]
impl LocalHub {
    /// Opens a data folder or a store URL (see the stub for the rules).
    #[staticmethod]
    #[pyo3(signature = (data_dir, store, key_file, operator, create))]
    fn open(
        py: Python<'_>,
        data_dir: Option<String>,
        store: Option<String>,
        key_file: Option<String>,
        operator: &str,
        create: bool,
    ) -> PyResult<Self> {
        let place = Place::new(data_dir, store, key_file, create).map_err(|e| e.into_pyerr(py))?;
        let opening = place.clone();
        let hub = runtime::wait(py, async move { opening.open().await })?
            .map_err(|e| e.into_pyerr(py))?;
        let principal = Principal::operator(operator).with_request(RequestInfo {
            client_addr: None,
            request_id: Some(format!("py-{}", uuid::Uuid::now_v7())),
        });
        Ok(Self {
            place,
            principal,
            state: Mutex::new(State {
                pid: std::process::id(),
                hub: Some(hub),
                closed: false,
            }),
        })
    }

    /// Where this hub is, for reprs (never a password).
    fn describe(&self) -> String {
        self.place.describe()
    }

    /// One page of connections: the `ConnectionPage` JSON with no items, and each item's
    /// `ConnectionOut` JSON, so that Python reads a row only when it is used.
    fn list(&self, py: Python<'_>, query: &str) -> PyResult<(String, Vec<String>)> {
        let query = list_query(query).map_err(|e| e.into_pyerr(py))?;
        self.run(py, move |hub, op| async move {
            let page = hub.list_connections(&op, &query).await?;
            let rows = page
                .items
                .iter()
                .map(|c| to_json(&ConnectionOut::from(c)))
                .collect::<Result<Vec<_>, _>>()?;
            let head = to_json(&ConnectionPage {
                items: Vec::new(),
                total: page.total,
                page: page.page,
                per_page: page.per_page,
            })?;
            Ok((head, rows))
        })
    }

    /// A connection by id or name: the `ConnectionOut` JSON with `access`.
    fn get(&self, py: Python<'_>, ident: String) -> PyResult<String> {
        self.run(py, move |hub, op| async move {
            let id = resolve(&hub, &op, &ident).await?;
            let (connection, level) = hub.connection_with_access(&op, id).await?;
            let mut out = ConnectionOut::from(&connection);
            out.access = Some(level.as_str());
            to_json(&out)
        })
    }

    /// Saves a new connection from the `CreateConnection` JSON.
    fn create(&self, py: Python<'_>, body: &str, test_first: bool) -> PyResult<String> {
        let draft = json_body::<CreateConnection>(body.as_bytes())
            .and_then(CreateConnection::into_draft)
            .map_err(|e| Raised::from(e).into_pyerr(py))?;
        self.run(py, move |hub, op| async move {
            let connection = if test_first {
                match hub.create_connection_tested(&op, draft, MAX_BUDGET).await? {
                    SaveOutcome::Saved { connection, .. } => *connection,
                    SaveOutcome::NotSaved(report) => {
                        let report = TestReport::from(&report);
                        let mut e = Raised::new(
                            "test_failed",
                            "test_failed",
                            format!(
                                "the connection test failed ({}): nothing was saved",
                                report.outcome()
                            ),
                        );
                        e.report = Some(to_json(&report)?);
                        return Err(e);
                    }
                }
            } else {
                hub.create_connection(&op, draft).await?
            };
            to_json(&ConnectionOut::from(&connection))
        })
    }

    /// Applies the `PatchConnection` JSON if `version` is still the stored one.
    fn update(&self, py: Python<'_>, ident: String, version: u64, patch: &str) -> PyResult<String> {
        let patch = json_body::<PatchConnection>(patch.as_bytes())
            .and_then(PatchConnection::into_patch)
            .map_err(|e| Raised::from(e).into_pyerr(py))?;
        self.run(py, move |hub, op| async move {
            let id = resolve(&hub, &op, &ident).await?;
            let connection = hub.update_connection(&op, id, version, patch).await?;
            to_json(&ConnectionOut::from(&connection))
        })
    }

    /// Deletes the connection at that version.
    fn delete(&self, py: Python<'_>, ident: String, version: u64) -> PyResult<()> {
        self.run(py, move |hub, op| async move {
            let id = resolve(&hub, &op, &ident).await?;
            hub.delete_connection(&op, id, version).await?;
            Ok(())
        })
    }

    /// Tests a saved connection now: the `TestReport` JSON.
    fn test(&self, py: Python<'_>, ident: String) -> PyResult<String> {
        self.run(py, move |hub, op| async move {
            to_json(&test_one(&hub, &op, &ident).await?)
        })
    }

    /// Tests the `DraftTest` JSON settings without saving: the `TestReport` JSON.
    fn test_draft(&self, py: Python<'_>, body: &str) -> PyResult<String> {
        let (draft, reuse) = json_body::<DraftTest>(body.as_bytes())
            .and_then(DraftTest::into_draft)
            .map_err(|e| Raised::from(e).into_pyerr(py))?;
        self.run(py, move |hub, op| async move {
            let report = hub.test_draft(&op, draft, reuse, MAX_BUDGET).await?;
            to_json(&TestReport::from(&report))
        })
    }

    /// Tests many saved connections, at most `concurrency` at once; `progress(done, total)`
    /// is called on this thread as results come in. A JSON array in input order.
    #[pyo3(signature = (idents, concurrency, progress))]
    fn test_many(
        &self,
        py: Python<'_>,
        idents: Vec<String>,
        concurrency: usize,
        progress: Option<Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let (hub, op) = self.hub(py)?;
        let total = idents.len();
        let permits = concurrency.clamp(1, MAX_CONCURRENCY);
        let mut done = 0_usize;
        let items = runtime::wait_with_ticks(
            py,
            move |ticker| test_all(hub, op, idents, permits, ticker),
            |_| {
                done += 1;
                match &progress {
                    Some(callback) => callback.call1((done, total)).map(drop),
                    None => Ok(()),
                }
            },
        )?;
        to_json(&items).map_err(|e| e.into_pyerr(py))
    }

    /// Measurement only (`benches/compare.py`): the prober's own loop over these saved
    /// connections, with no Hub around each test (see `measure.rs`). Reads their specs and
    /// secrets now (reveals: audited) for `_ProbeLoop.run` to test again and again.
    #[pyo3(name = "_probe_loop")]
    fn probe_loop(&self, py: Python<'_>, idents: Vec<String>) -> PyResult<measure::ProbeLoop> {
        self.run(py, move |hub, op| async move {
            measure::prepare(&hub, &op, &idents).await
        })
    }

    /// Measurement only: [`Self::test`] with where its time went, in microseconds: from the
    /// call's start to the future's first poll on the runtime, the future itself, and from
    /// its end to the answer back on this thread (GIL taken again).
    #[pyo3(name = "_test_traced")]
    fn test_traced(&self, py: Python<'_>, ident: String) -> PyResult<(String, f64, f64, f64)> {
        let entered = Instant::now();
        let (hub, op) = self.hub(py)?;
        let (answer, started, ended) = runtime::wait(py, async move {
            let started = Instant::now();
            let answer = test_one(&hub, &op, &ident).await;
            (answer, started, Instant::now())
        })?;
        let back = Instant::now();
        let json = answer
            .and_then(|r| to_json(&r))
            .map_err(|e| e.into_pyerr(py))?;
        let us = |from: Instant, to: Instant| to.duration_since(from).as_secs_f64() * 1e6;
        Ok((
            json,
            us(entered, started),
            us(started, ended),
            us(ended, back),
        ))
    }

    /// The `HealthHistoryOut` JSON (`since`: RFC 3339, default 24 h ago).
    #[pyo3(signature = (ident, since, limit))]
    fn health(
        &self,
        py: Python<'_>,
        ident: String,
        since: Option<String>,
        limit: Option<i64>,
    ) -> PyResult<String> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(since) = &since {
            query.append_pair("since", since);
        }
        if let Some(limit) = limit {
            query.append_pair("limit", &limit.to_string());
        }
        let (since, limit) = query_params::<HistoryParams>(&query.finish())
            .and_then(HistoryParams::window)
            .map_err(|e| Raised::from(e).into_pyerr(py))?;
        self.run(py, move |hub, op| async move {
            let id = resolve(&hub, &op, &ident).await?;
            let history = hub.health_history(&op, id, since, limit).await?;
            to_json(&HealthHistoryOut::from(&history))
        })
    }

    /// The `RevealResponse` JSON, password included. Audited.
    fn reveal<'py>(&self, py: Python<'py>, ident: String) -> PyResult<Bound<'py, PyString>> {
        let text: Zeroizing<String> = self.run(py, move |hub, op| async move {
            let id = resolve(&hub, &op, &ident).await?;
            let revealed = hub.reveal(&op, id).await?;
            serde_json::to_string(&RevealBody(revealed))
                .map(Zeroizing::new)
                .map_err(|e| Raised::internal(format!("could not write JSON: {e}")))
        })?;
        // Straight into the Python string: no other copy outlives the zeroized one.
        Ok(PyString::new(py, &text))
    }

    /// Closes the store's connections; later calls raise `Unavailable`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let hub = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.closed = true;
            let hub = state.hub.take();
            if state.pid != std::process::id() {
                // The parent's: its connections are not ours to close.
                std::mem::forget(hub);
                return Ok(());
            }
            hub
        };
        if let Some(hub) = hub {
            // Dropped on the runtime, where the store's pools live.
            runtime::wait(py, async move { drop(hub) })?;
        }
        Ok(())
    }
}

impl LocalHub {
    /// The Hub of this process (opened again after a fork) and the operator principal.
    fn hub(&self, py: Python<'_>) -> PyResult<(Hub, Principal)> {
        let pid = std::process::id();
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.closed {
                return Err(Raised::unavailable("this hub is closed").into_pyerr(py));
            }
            if state.pid == pid
                && let Some(hub) = &state.hub
            {
                return Ok((hub.clone(), self.principal.clone()));
            }
            if state.pid != pid {
                // Forked: the parent's Hub holds the parent's connections.
                std::mem::forget(state.hub.take());
            }
        }
        // Opened without the lock held: the wait releases the GIL, and another thread waiting
        // for the lock with the GIL would block this one's signal checks.
        let place = self.place.clone();
        let hub =
            runtime::wait(py, async move { place.open().await })?.map_err(|e| e.into_pyerr(py))?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.closed {
            return Err(Raised::unavailable("this hub is closed").into_pyerr(py));
        }
        if state.pid == pid
            && let Some(first) = &state.hub
        {
            // Another thread opened it first: keep that one.
            return Ok((first.clone(), self.principal.clone()));
        }
        state.pid = pid;
        state.hub = Some(hub.clone());
        Ok((hub, self.principal.clone()))
    }

    /// Runs one call on the runtime with the GIL released and raises its error.
    fn run<T, F, M>(&self, py: Python<'_>, make: M) -> PyResult<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Raised>> + Send + 'static,
        M: FnOnce(Hub, Principal) -> F,
    {
        let (hub, op) = self.hub(py)?;
        runtime::wait(py, make(hub, op))?.map_err(|e| e.into_pyerr(py))
    }
}

impl Drop for LocalHub {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        if state.pid != std::process::id() {
            // Collected in a forked child that never used it: the Hub is the parent's.
            std::mem::forget(state.hub.take());
        }
    }
}

/// The id of `ident`: a UUID is an id, anything else a name.
pub(crate) async fn resolve(
    hub: &Hub,
    op: &Principal,
    ident: &str,
) -> Result<ConnectionId, Raised> {
    if let Ok(id) = ConnectionId::from_str(ident) {
        return Ok(id);
    }
    Ok(hub.connection_by_name(op, ident).await?.id)
}

/// Tests one saved connection, by id or by name (resolved in the test's one store read).
async fn test_one(hub: &Hub, op: &Principal, ident: &str) -> Result<TestReport, Raised> {
    let report = match ConnectionId::from_str(ident) {
        Ok(id) => hub.test_connection(op, id, MAX_BUDGET).await?,
        Err(_) => hub.test_connection_by_name(op, ident, MAX_BUDGET).await?,
    };
    Ok(TestReport::from(&report))
}

/// One result of `test_many`.
#[derive(Debug, Serialize)]
struct ManyItem {
    ident: String,
    report: Option<TestReport>,
    error: Option<ItemError>,
}

/// The error of one `test_many` item.
#[derive(Debug, Serialize)]
struct ItemError {
    code: &'static str,
    kind: &'static str,
    message: String,
    field: Option<String>,
}

impl From<Raised> for ItemError {
    fn from(e: Raised) -> Self {
        Self {
            code: e.code,
            kind: e.kind,
            message: e.message,
            field: e.field,
        }
    }
}

/// Tests every ident, `permits` at once, ticking once per result; results in input order.
async fn test_all(
    hub: Hub,
    op: Principal,
    idents: Vec<String>,
    permits: usize,
    ticker: Ticker,
) -> Vec<ManyItem> {
    let gate = Arc::new(Semaphore::new(permits));
    let mut tasks = JoinSet::new();
    let mut slots: Vec<Option<ManyItem>> = Vec::with_capacity(idents.len());
    for (index, ident) in idents.iter().enumerate() {
        slots.push(None);
        let (hub, op, gate, ident) = (hub.clone(), op.clone(), gate.clone(), ident.clone());
        tasks.spawn(async move {
            let outcome = match gate.acquire_owned().await {
                Ok(_permit) => test_one(&hub, &op, &ident).await,
                Err(_) => Err(Raised::internal("the test gate closed")),
            };
            (index, ident, outcome)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, ident, outcome)) = joined {
            let item = match outcome {
                Ok(report) => ManyItem {
                    ident,
                    report: Some(report),
                    error: None,
                },
                Err(e) => ManyItem {
                    ident,
                    report: None,
                    error: Some(e.into()),
                },
            };
            if let Some(slot) = slots.get_mut(index) {
                *slot = Some(item);
            }
        }
        ticker.tick();
    }
    slots
        .into_iter()
        .zip(idents)
        .map(|(slot, ident)| {
            slot.unwrap_or_else(|| ManyItem {
                ident,
                report: None,
                error: Some(Raised::internal("the test ended without a result (a bug)").into()),
            })
        })
        .collect()
}

/// `list`'s JSON object of parameters as the server reads its query string: strings as they
/// are, numbers and booleans as text, `null` left out.
fn list_query(json: &str) -> Result<datahub_core::model::ListQuery, Raised> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|_| Raised::invalid("query", "must be a JSON object of parameters"))?;
    let serde_json::Value::Object(map) = value else {
        return Err(Raised::invalid(
            "query",
            "must be a JSON object of parameters",
        ));
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in &map {
        match value {
            serde_json::Value::Null => {}
            serde_json::Value::String(s) => {
                query.append_pair(name, s);
            }
            serde_json::Value::Number(n) => {
                query.append_pair(name, &n.to_string());
            }
            serde_json::Value::Bool(b) => {
                query.append_pair(name, if *b { "true" } else { "false" });
            }
            _ => {
                return Err(Raised::invalid(
                    name,
                    "wrong type: expected a string or a number",
                ));
            }
        }
    }
    let params: ListParams = query_params(&query.finish())?;
    Ok(params.into_query()?)
}

/// A value as JSON text.
fn to_json<T: Serialize>(value: &T) -> Result<String, Raised> {
    serde_json::to_string(value).map_err(|e| Raised::internal(format!("could not write JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters_are_checked_as_the_server_checks_them() {
        let q = list_query(r#"{"search":"sales","page":2,"per_page":"10","tag":null}"#).unwrap();
        assert_eq!(q.search.as_deref(), Some("sales"));
        assert_eq!((q.page, q.per_page), (2, 10));
        let e = list_query(r#"{"per_page":0}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("per_page"));
        let e = list_query(r#"{"status":"sideways"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("status"));
        let e = list_query(r#"{"nope":"x"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("nope"));
        let e = list_query(r#"{"tag":["a"]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("tag"));
        let e = list_query("[1]").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("query"));
    }
}
