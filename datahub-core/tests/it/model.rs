//! Integration tests: model.
