//! The conformance suite on SQLite (a temp folder per test).
