//! Request and response types shared by several route modules, converting to and from the
//! core's types (the core has no serde).

pub mod connection;
pub mod report;
