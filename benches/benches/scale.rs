//! The scale bench (issue 16): the real `datahub-server` binary monitoring many connections on
//! the test kit's cheap loopback target, one replica on SQLite (scenario a) and several on one
//! PostgreSQL store (scenario b). What each scenario does is in `datahub_benches::scale`; how to
//! run it and read it is in `benches/README.md`.
//!
//! Run: `cargo build --release -p datahub-server && cargo bench -p datahub-benches --bench scale`.
//! Settings (environment): `SCALE_N` (scenario a's connections, default 100,000), `SCALE_M`
//! (scenario b's, default the smaller of N and 20,000), `SCALE_REPLICAS` (default 4),
//! `SCALE_INTERVAL` (seconds, default 60), `SCALE_WINDOW` (intervals measured in a, default 2),
//! `SCALE_FLIPS` (targets made down and up in b, default 20), `SCALE_SCENARIOS` (any of `a`,
//! `b` and `m`, the monitor's memory in-process; default `ab`).
//!
//! Prints one line per goal, `GOAL <name> <measured> <limit> met|not met`, and the other
//! figures as `FIGURE <name> <value> <unit>`; exits 0 whether goals are met or not (the
//! figures are the result), 2 when it cannot run.

use datahub_benches::scale::{self, Config};

fn main() {
    let bin = match scale::server_binary() {
        Ok(bin) => bin,
        Err(message) => {
            eprintln!("scale bench: {message}");
            std::process::exit(2);
        }
    };
    let config = match Config::from_env(bin) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("scale bench: {message}");
            std::process::exit(2);
        }
    };
    let outcome = scale::run(&config);
    let met = outcome.goals.iter().filter(|g| g.met()).count();
    println!("scale bench: {met} of {} goals met", outcome.goals.len());
}
