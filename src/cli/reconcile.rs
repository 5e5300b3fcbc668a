//! `flow-metrics reconcile`: Genesys's own analytics for an interval beside the ledger's keys,
//! per flow and metric, as a table per flow, CSV or JSON; exit status 1 when a difference no
//! known reason explains exceeds the threshold, or when Genesys's details are not yet available
//! up to the interval's end (partial).

use std::io;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::ValueEnum;

use crate::ledger::DynamoDbLedger;
use crate::reconcile::genesys::GenesysAnalytics;
use crate::reconcile::ledger::{ledger_key, scan_filter};
use crate::reconcile::{self, Interval};

use super::shared::{ScanArgs, report_scan, scan};
use super::target::TargetArgs;

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    #[command(flatten)]
    target: TargetArgs,

    #[command(flatten)]
    scan: ScanArgs,

    /// The interval of key times to reconcile, ISO 8601 in UTC: <start>/<end> or
    /// <start>/<duration> (2026-12-01T10:00:00Z/2026-12-01T11:00:00Z, 2026-12-01T10:00:00Z/PT1H,
    /// 2026-12-01T00:00:00Z/P1D: a day is 24 h).
    #[arg(long)]
    interval: Interval,

    /// Keys counted on one side only for no known reason that a row may have before the exit
    /// status is 1.
    #[arg(long, default_value_t = 0)]
    threshold: u64,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// A table per flow, for people, with its coverage and a verdict.
    Table,
    /// One line per row, with its flow's coverage.
    Csv,
    /// The whole report: {"interval", "available_until", "verdict", "coverage", "rows": [...]}.
    Json,
}

pub async fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let settings = args.target.settings().await?;
    let table = settings.table()?;
    let directory = settings
        .genesys_directory(&settings.names_config()?)
        .await?
        .context(
            "reconcile asks Genesys's analytics with the function's OAuth client: configure it \
         (the stack's genesysRegion and genesysCredentialsSecretArn, or GENESYS_REGION and \
         GENESYS_CREDENTIALS_SECRET_ARN for a table no stack created)",
        )?;
    let genesys = GenesysAnalytics::new(directory)
        .side(args.interval, None)
        .await
        .context("cannot read Genesys's analytics")?;
    if genesys.skipped.any() {
        eprintln!("{}", genesys.skipped);
    }
    let ledger = DynamoDbLedger::new(settings.dynamodb().await?, table);
    let mut keys = Vec::new();
    let filter = scan_filter(args.interval);
    let totals = scan(&ledger, &args.scan, &filter, |item| keys.push(ledger_key(item))).await?;
    let report = reconcile::reconcile(args.interval, jiff::Timestamp::now(), &genesys, &keys);
    let mut stdout = io::stdout().lock();
    match args.format {
        Format::Table => reconcile::write_table(&report, args.threshold, &mut stdout)?,
        Format::Csv => reconcile::write_csv(&report, &mut stdout)?,
        Format::Json => reconcile::write_json(&report, args.threshold, &mut stdout)?,
    }
    report_scan(table, &args.scan, totals);
    Ok(match report.verdict(args.threshold) {
        reconcile::Verdict::Complete => ExitCode::SUCCESS,
        reconcile::Verdict::Incomplete | reconcile::Verdict::Partial => ExitCode::from(1),
    })
}
