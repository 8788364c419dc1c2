//! The `datahub-server` binary: serves the API by default; subcommands for operators. It only
//! parses the command line, sets up logging and hands over to the library.

use std::process::ExitCode;

use clap::Parser;
use datahub_server::cli;
use datahub_server::config::{CommonArgs, ServeArgs, Settings};
use datahub_server::startup;

/// DataHub Connections: store, test and monitor database connections.
#[derive(Debug, Parser)]
#[command(
    name = "datahub-server",
    version,
    about,
    after_help = "GET /metrics answers only an admin (401 to anonymous callers, 403 to others): \
                  give Prometheus an admin's read-only API token (`datahub-server tokens create --user \
                  admin --name prometheus --read-only`) as its bearer token."
)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<cli::Command>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::resolve(&cli.common, &cli.serve) {
        Ok(settings) => match &cli.command {
            Some(command) => cli::settings_for(command, &cli.common, settings),
            None => settings,
        },
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = startup::init_logging(&settings) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        None | Some(cli::Command::Serve) => runtime.block_on(startup::serve(settings)),
        Some(command) => return runtime.block_on(cli::run(command, settings)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
