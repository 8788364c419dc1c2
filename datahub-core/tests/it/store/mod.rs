//! The store conformance suite, run against both backends.

mod conformance;
mod postgres;
mod sqlite;
