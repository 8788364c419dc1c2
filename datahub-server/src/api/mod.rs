//! Every JSON shape of the HTTP API (requests, answers, event-stream lines, errors), one module
//! per area, converting to and from the core's types (the core has no serde). The route modules
//! keep the handlers and the path and query parameters they parse; the CLI prints these same
//! types with `--output json`.

pub mod audit;
pub mod connection;
pub mod directory;
pub mod error;
pub mod event;
pub mod meta;
pub mod policy;
pub mod report;
pub mod session;
pub mod team;
pub mod token;
pub mod user;
