//! `datahub_connections._native`: the core's `Hub` in a Python process (the package's local
//! mode), as a trusted operator.
//!
//! No business logic lives here: every call goes through the Hub (permission checks and the
//! audit log included), takes the REST API's JSON bodies and query parameters through the
//! server's own types and parsers (`datahub_server::api`, `extract`), and answers the JSON the
//! server would, so both modes validate and answer alike. Every call runs on the process's one
//! runtime with the GIL released (`runtime.rs`); errors are raised as the package's exception
//! tree (`errors.rs`); the core's events reach Python `logging` (`logging.rs`). `parse_url`
//! (`url.rs`) reads `add(url=...)`'s URL with the core's parser, for both modes.

mod errors;
mod hub;
mod logging;
mod measure;
mod place;
mod runtime;
mod url;

use pyo3::prelude::*;

pub use crate::errors::Raised;
pub use crate::hub::LocalHub;
pub use crate::url::parse_url;

/// The module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<LocalHub>()?;
    m.add_class::<measure::ProbeLoop>()?;
    m.add_function(wrap_pyfunction!(parse_url, m)?)?;
    m.add_function(wrap_pyfunction!(measure::wait_floor, m)?)?;
    logging::install(m.py());
    Ok(())
}
