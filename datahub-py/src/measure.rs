//! Measurement entry points for `benches/compare.py` (issue 15), private to the package (their
//! names start with `_`; nothing in `datahub_connections` calls them).
//!
//! - [`wait_floor`]: a future that does nothing, through the same wait as every call: the
//!   binding's own cost per call (the wake-ups both ways, the GIL released and taken again).
//! - [`ProbeLoop`]: the prober's own loop over saved connections, `probe::test` for each spec
//!   at most `concurrency` at once through the dialer and policy the Hub uses, with no Hub
//!   around it (no store read, no audit): what `test_many` is compared with, in the same
//!   process and on the same runtime.

use std::sync::Arc;
use std::time::Instant;

use datahub_core::hub::Hub;
use datahub_core::model::{ConnectionSecrets, ConnectionSpec};
use datahub_core::net::{Dialer, Policy};
use datahub_core::probe::{self, MAX_BUDGET, PolicyDial, ProbeRules};
use datahub_core::rbac::Principal;
use pyo3::prelude::*;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::errors::Raised;
use crate::runtime;

/// Measurement only: waits for a future that does nothing, as every call waits for its own.
#[pyfunction]
#[pyo3(name = "_wait_floor")]
pub fn wait_floor(py: Python<'_>) -> PyResult<()> {
    runtime::wait(py, async {})
}

/// Measurement only: the prober's own loop over saved connections, read once (specs, secrets,
/// the Hub's policy as stored then) by `LocalHub._probe_loop`.
#[pyclass(frozen, module = "datahub_connections._native", name = "_ProbeLoop")]
#[derive(Debug)]
pub struct ProbeLoop(Prepared);

#[pymethods]
impl ProbeLoop {
    /// Tests every connection once, at most `concurrency` at once: the seconds the batch took
    /// and how many tests passed.
    fn run(&self, py: Python<'_>, concurrency: usize) -> PyResult<(f64, usize)> {
        runtime::wait(py, probe_loop(self.0.clone(), concurrency))
    }
}

/// The specs and secrets of saved connections, and the dialer and rules the Hub tests them
/// with (its policy as stored now).
#[derive(Clone)]
struct Prepared {
    targets: Vec<Arc<(ConnectionSpec, ConnectionSecrets)>>,
    dial: Arc<PolicyDial>,
    rules: Arc<ProbeRules>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secrets stay out of it, whatever their own `Debug` does.
        f.debug_struct("Prepared")
            .field("targets", &self.targets.len())
            .finish_non_exhaustive()
    }
}

/// Reads each connection (by name or id) and its secrets (a reveal: audited) and the policy.
///
/// # Errors
/// As the Hub's `connection_by_name`, `reveal` and `policy`.
pub async fn prepare(hub: &Hub, op: &Principal, idents: &[String]) -> Result<ProbeLoop, Raised> {
    let policy = hub.policy(op).await?;
    let mut targets = Vec::with_capacity(idents.len());
    for ident in idents {
        let id = crate::hub::resolve(hub, op, ident).await?;
        let connection = hub.connection(op, id).await?;
        let revealed = hub.reveal(op, id).await?;
        let secrets = ConnectionSecrets {
            password: revealed.password,
            client_key_pem: revealed.client_key_pem,
        };
        targets.push(Arc::new((connection.spec, secrets)));
    }
    let dial = PolicyDial::new(
        Arc::new(Dialer::system()),
        Arc::new(Policy::from_target(&policy)?),
    );
    let rules = ProbeRules {
        min_tls_mode: policy.min_tls_mode,
        ..ProbeRules::default()
    };
    Ok(ProbeLoop(Prepared {
        targets,
        dial: Arc::new(dial),
        rules: Arc::new(rules),
    }))
}

/// Tests every prepared target, `concurrency` at once (a task per target waiting for a permit,
/// as `test_many` runs them): the seconds the batch took and how many tests passed.
async fn probe_loop(prepared: Prepared, concurrency: usize) -> (f64, usize) {
    let gate = Arc::new(Semaphore::new(concurrency.clamp(1, Semaphore::MAX_PERMITS)));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for target in &prepared.targets {
        let (target, gate) = (Arc::clone(target), Arc::clone(&gate));
        let (dial, rules) = (Arc::clone(&prepared.dial), Arc::clone(&prepared.rules));
        tasks.spawn(async move {
            let Ok(_permit) = gate.acquire_owned().await else {
                return false;
            };
            let (spec, secrets) = &*target;
            probe::test(&*dial, spec, secrets, &rules, MAX_BUDGET)
                .await
                .ok
        });
    }
    let mut passed = 0;
    while let Some(joined) = tasks.join_next().await {
        passed += usize::from(joined.unwrap_or(false));
    }
    (started.elapsed().as_secs_f64(), passed)
}
