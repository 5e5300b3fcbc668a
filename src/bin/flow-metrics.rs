//! `flow-metrics`, the command line: parses the arguments and dispatches each subcommand to its
//! module under `src/cli/` (see `flow_metrics::cli`). Exit status 3 is an error that stopped the
//! command; each subcommand says what 0, 1 and 2 mean.

use std::io;
use std::process::ExitCode;

use clap::Parser as _;
use flow_metrics::cli::{self, Cli, Command};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(io::stderr)
        .init();
    let outcome = match Cli::parse().command {
        Command::Replay(args) => cli::replay::run(args).await,
        Command::Audit(args) => cli::audit::run(args).await,
        Command::Redrive(args) => cli::redrive::run(args).await,
        Command::Simulate(args) => cli::simulate::run(args).await,
        Command::Drain(args) => cli::drain::run(args).await,
        Command::SampleEvent(args) => cli::sample_event::run(&args),
        Command::Names(args) => cli::names::run(&args).await,
        Command::Doctor(args) => cli::doctor::run(args).await,
        Command::Reconcile(args) => cli::reconcile::run(args).await,
        Command::Datadog(args) => cli::datadog::run(args).await,
    };
    match outcome {
        Ok(status) => status,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(3)
        }
    }
}
