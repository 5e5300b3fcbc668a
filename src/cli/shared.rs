//! What several commands share: the sink they send to, and scanning the table with progress.
//! Where they work and with which settings is `target`'s.

use std::io::{self, IsTerminal as _};
use std::num::NonZeroUsize;

use anyhow::Context as _;
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

use crate::ledger::DynamoDbLedger;
use crate::ledger::dynamodb::{LedgerItem, ScanFilter, ScanTotals};

/// How the table is scanned.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Parallel scan segments (default: 4 per core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    segments: Option<u32>,
}

impl ScanArgs {
    pub fn segments(&self) -> u32 {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        self.segments
            .unwrap_or_else(|| u32::try_from(cores * 4).unwrap_or(4))
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SinkKind {
    /// JSON Lines on stdout.
    Stdout,
    /// DataDog distribution points, configured like the Lambda: DD_API_KEY (or
    /// DD_API_KEY_SECRET_ARN), DD_SITE or DD_URL, DD_TAGS, FLOW_METRICS_METRIC.
    Datadog,
}

/// Scans the table with a progress spinner on a terminal.
pub async fn scan(
    ledger: &DynamoDbLedger,
    args: &ScanArgs,
    filter: &ScanFilter,
    mut each: impl FnMut(LedgerItem),
) -> anyhow::Result<ScanTotals> {
    let progress = if io::stderr().is_terminal() {
        let spinner = ProgressBar::new_spinner().with_message(format!("scanning {}", ledger.table()));
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {msg}: {pos} items ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        spinner
    } else {
        ProgressBar::hidden()
    };
    let totals = ledger
        .scan(args.segments(), filter, |item| {
            progress.inc(1);
            each(item);
        })
        .await
        .with_context(|| format!("cannot scan table {}", ledger.table()))?;
    progress.finish_and_clear();
    Ok(totals)
}

pub fn report_scan(table: &str, args: &ScanArgs, totals: ScanTotals) {
    eprintln!(
        "scanned {table}: {} matching item(s), {} segment(s), {:.1} read capacity units consumed",
        totals.items,
        args.segments(),
        totals.capacity_units
    );
}
