//! Tests one PostgreSQL connection given as a libpq connection string and prints the report as
//! one JSON object. See `datahub_examples::probe_cli` for the logic and `--help` for the usage.
//!
//! Run: `PGPASSWORD=... cargo run -p datahub-examples --example probe -- \
//! 'postgresql://app@db.example.com/app?sslmode=verify-full&sslrootcert=ca.pem' [--budget-ms N]`.
//! Exit status: 0 the test passed, 1 it failed, 2 invalid input.

use std::io::Write;

use datahub_core::secret::Password;
use datahub_examples::probe_cli;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pgpassword = std::env::var("PGPASSWORD").ok().map(Password::new);
    let outcome = probe_cli::run(&args, pgpassword).await;
    // Nothing more can be reported if the terminal is gone; the exit code still says it.
    let _ = std::io::stdout()
        .lock()
        .write_all(outcome.stdout.as_bytes());
    let _ = std::io::stderr()
        .lock()
        .write_all(outcome.stderr.as_bytes());
    std::process::exit(outcome.code);
}
