//! `flow-metrics`, the command line: one module per subcommand, each with its arguments, its
//! run and its output; `shared` holds what several share (the table, the sink, names, scans).
//! `src/bin/flow-metrics.rs` parses and dispatches.
//! - `replay` runs Genesys events through the pipeline from files or stdin (with no file, the
//!   bundled samples), printing each counted occurrence;
//! - `audit` scans the ledger table and counts delivered, in-flight and stuck keys;
//! - `redrive` delivers the stuck ones; `drain` dead letters' events;
//! - `simulate` estimates costs (its cost model beside it); `sample-event` writes an event for
//!   testing a deployment;
//! - `names` checks that ids can be named (the Genesys OAuth client and its permissions);
//! - `doctor` walks a deployed stack, link by link, and says what is broken and what fixes it;
//! - `reconcile` compares the ledger's keys of an interval with Genesys's own analytics;
//! - `datadog apply` sets DataDog up for a deployment: dashboard, monitors, downtimes, percentiles.

pub mod audit;
pub mod datadog;
pub mod doctor;
pub mod drain;
pub mod names;
pub mod reconcile;
pub mod redrive;
pub mod replay;
pub mod sample_event;
mod shared;
pub mod simulate;
mod target;

use clap::{Parser, Subcommand};

/// Counts Genesys Cloud flow metric attributes exactly once.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay EventBridge events from files through the pipeline and print what counts.
    ///
    /// Prints one JSON object per counted occurrence on stdout, and on stderr one line per
    /// rejected event and per invalid key, then a summary. Exit status: 0 when every event was
    /// read, 1 when some were rejected, 2 on bad usage, 3 when the replay had to stop.
    Replay(replay::ReplayArgs),
    /// Count the ledger's keys per flow and metric: delivered, claimed (in flight), stuck; then
    /// the DataDog custom metrics the delivered keys' series make (named by DD_TAGS,
    /// FLOW_METRICS_METRIC, … and FLOW_METRICS_ELAPSED, as the sink names them).
    Audit(audit::AuditArgs),
    /// Deliver stuck keys (claimed, lease expired, never confirmed) to the sink, exactly once.
    ///
    /// Safe while the Lambda runs, and safe to run twice. Exit status: 0 when every stuck key
    /// was delivered or found delivered, 1 when some could not be, 3 on error.
    Redrive(redrive::RedriveArgs),
    /// Estimate costs: run a generated month-like trace through the pipeline with DynamoDB
    /// units metered, beside the snapshot-diff design, and print $ per million events.
    Simulate(simulate::SimulateArgs),
    /// Send dead letters' events through the pipeline again (a dead-letter queue's messages, an
    /// on-failure bucket's objects, or both), deleting each letter once its event is acknowledged.
    ///
    /// Reads both shapes a dead letter holds (EventBridge events, Lambda on-failure records). A
    /// rejected event (poison) or one not delivered stays where it is, with why. With both
    /// --queue-url and --bucket, the queue is drained first, then the bucket. Safe to run twice:
    /// keys already counted are skipped. Exit status: 0 when everything was drained, 1 when
    /// letters were kept, 2 on bad usage, 3 on error.
    Drain(drain::DrainArgs),
    /// Print an attributes event of now, carrying one metric key: to test a deployment end to
    /// end (`aws lambda invoke --payload file://event.json`).
    SampleEvent(sample_event::SampleEventArgs),
    /// Look ids up as the function would (FLOW_METRICS_NAMES, then the Genesys API), waiting
    /// for each answer: to check the OAuth client and its permissions before deploying.
    ///
    /// Exit status: 0 when every id was named, 1 when some were not (each line says why), 3 on
    /// error.
    Names(names::NamesArgs),
    /// Walk the deployed chain, read-only, and print a checklist: the partner event source and
    /// bus, the rule, the function, the DataDog key, the points delivered, the dead letters, the
    /// ledger table, the Genesys names API. Each failed check says what is wrong and what fixes it.
    ///
    /// Exit status: 0 when every check passed (warnings, such as a quiet hour, do not fail), 1
    /// when one failed, 2 on bad usage, 3 on an error that stopped the walk (no stack).
    Doctor(doctor::DoctorArgs),
    /// Compare the ledger's keys of an interval with Genesys's own analytics (flow aggregates
    /// for milestones and outcomes, a conversation details job for attribute metrics), per flow
    /// and metric, saying which differences are expected and why, and which conversations the
    /// ledger lacks or has where Genesys does not.
    ///
    /// Exit status: 0 when every row's unexplained difference is within --threshold, 1 when one
    /// exceeds it, 2 on bad usage, 3 on error.
    Reconcile(reconcile::ReconcileArgs),
    /// Set DataDog up for a deployment: `datadog apply` creates or updates its dashboard, its
    /// monitors (muted while the centre is closed) and the percentiles the dashboard queries.
    Datadog(datadog::DatadogArgs),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
