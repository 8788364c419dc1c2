//! The backend-independent conformance cases.
