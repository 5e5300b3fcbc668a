//! `flow-metrics audit`: the ledger table's keys per flow and metric (delivered, claimed,
//! stuck), as a table, CSV or JSON, then the DataDog custom metrics their series make.

use std::io;
use std::process::ExitCode;

use clap::ValueEnum;
use jiff::Timestamp;

use crate::audit::{self, Audit, Bucket, CustomMetrics};
use crate::ledger::DynamoDbLedger;
use crate::ledger::dynamodb::ScanFilter;

use super::shared::{ScanArgs, report_scan, scan};
use super::target::TargetArgs;

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    target: TargetArgs,

    #[command(flatten)]
    scan: ScanArgs,

    /// Also split counts by this bucket of the key's time (UTC).
    #[arg(long, value_enum)]
    by: Option<BucketArg>,

    /// Only keys whose time is at or after this (RFC 3339, e.g. 2026-03-07T00:00:00Z).
    #[arg(long)]
    since: Option<Timestamp>,

    /// Only keys whose time is before this (RFC 3339).
    #[arg(long)]
    until: Option<Timestamp>,

    /// Only this flow.
    #[arg(long)]
    flow: Option<String>,

    /// Only this metric.
    #[arg(long)]
    metric: Option<String>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BucketArg {
    Minute,
    Hour,
    Day,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Aligned, for people, with a totals row.
    Table,
    Csv,
    /// An array of {"flow","metric","bucket"?,"delivered","claimed","stuck"}.
    Json,
}

pub async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let settings = args.target.settings().await?;
    let table = settings.table()?;
    let ledger = DynamoDbLedger::new(settings.dynamodb().await?, table);
    let filter = ScanFilter {
        since: args.since,
        until: args.until,
        flow: args.flow.clone(),
        metric: args.metric.clone(),
        stuck_at: None,
    };
    let bucket = args.by.map(|by| match by {
        BucketArg::Minute => Bucket::Minute,
        BucketArg::Hour => Bucket::Hour,
        BucketArg::Day => Bucket::Day,
    });
    let series = settings.series()?;
    let mut custom_metrics = CustomMetrics::new(series.metrics, series.static_tags);
    let mut audit = Audit::new(bucket, Timestamp::now());
    let totals = scan(&ledger, &args.scan, &filter, |item| {
        audit.add(&item);
        custom_metrics.add(&item);
    })
    .await?;
    let rows = audit.rows();
    let mut stdout = io::stdout().lock();
    match args.format {
        Format::Table => audit::write_table(&rows, &mut stdout)?,
        Format::Csv => audit::write_csv(&rows, &mut stdout)?,
        Format::Json => audit::write_json(&rows, &mut stdout)?,
    }
    report_scan(table, &args.scan, totals);
    custom_metrics.write(&mut io::stderr().lock())?;
    Ok(ExitCode::SUCCESS)
}
