//! The conformance suite on PostgreSQL (a fresh database per test on a kit cluster).
