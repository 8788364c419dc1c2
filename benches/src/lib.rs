//! Bench code shared by a bench and a test: the scale bench's scenarios ([`scale`]), run by
//! `benches/scale.rs` for the figures and by `tests/scale_smoke.rs` with a small N in CI time.
//! The Criterion benches in `benches/` need nothing from here.

// Bench set-up that fails is a bug in the bench, and the clearest report is the panic; nothing
// here serves a request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod scale;
