//! `flow-metrics redrive`: the ledger's stuck keys delivered through the same protocol as live
//! events, saying each time what a redrive cannot know.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use jiff::{SignedDuration, Timestamp};

use crate::config::parse_duration;
use crate::count::Tally;
use crate::ledger::DynamoDbLedger;
use crate::ledger::dynamodb::{LedgerItem, ScanFilter};
use crate::names::Directory;
use crate::pipeline::{EventOutcome, Pipeline};
use crate::redrive::redrive;
use crate::sink::{JsonLinesSink, Sink};

use super::shared::{ScanArgs, SinkKind, TableArgs, datadog_sink, names, report_scan, scan, sink_for_table};

#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    table: TableArgs,

    #[command(flatten)]
    scan: ScanArgs,

    /// Where redriven occurrences go (required unless --dry-run): the table records them as
    /// delivered.
    #[arg(long, value_enum)]
    sink: Option<SinkKind>,

    /// How long the redrive's own claims hold (as the Lambda's, by default).
    #[arg(long, env = "FLOW_METRICS_LEASE", value_parser = parse_duration, default_value = "40s")]
    lease: SignedDuration,

    /// Only claims released, or whose lease ended at least this long ago: a recent one may
    /// still be retried by Lambda.
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    stuck_for: SignedDuration,

    /// List what would be redriven; change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(args: RedriveArgs) -> anyhow::Result<ExitCode> {
    let sink = (!args.dry_run).then(|| sink_for_table(args.sink, args.table.table.as_deref()));
    let (client, table) = args.table.client().await?;
    let ledger = DynamoDbLedger::new(client, table).with_lease(args.lease);
    let stuck_before = Timestamp::now()
        .checked_sub(args.stuck_for)
        .context("--stuck-for reaches before the epoch")?;
    let filter = ScanFilter {
        stuck_at: Some(stuck_before),
        ..ScanFilter::default()
    };
    let mut stuck = Vec::new();
    let totals = scan(&ledger, &args.scan, &filter, |item| stuck.push(item)).await?;
    report_scan(table, &args.scan, totals);
    if args.dry_run {
        for item in &stuck {
            println!("{}", stuck_line(item));
        }
        eprintln!("dry run: {} stuck key(s) would be redriven", stuck.len());
        eprintln!("{}", what_redrive_cannot_know(&stuck));
        return Ok(ExitCode::SUCCESS);
    }
    let caveat = what_redrive_cannot_know(&stuck);
    let tally = match sink {
        Some(SinkKind::Datadog) => {
            let sink = datadog_sink(&args.table).await?;
            redrive_into(ledger, sink, names(&args.table).await?, &stuck).await
        }
        _ => redrive_into(ledger, JsonLinesSink::stdout(), names(&args.table).await?, &stuck).await,
    };
    eprintln!(
        "redrive: {} stuck key(s); delivered {}, taken or delivered by another process {}, not delivered {}",
        stuck.len(),
        tally.keys_counted,
        tally.keys_already_counted,
        (stuck.len() as u64).saturating_sub(tally.keys_counted + tally.keys_already_counted)
    );
    eprintln!("{caveat}");
    Ok(if tally.events_failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn redrive_into<S: Sink>(
    ledger: DynamoDbLedger,
    sink: S,
    names: Arc<dyn Directory>,
    stuck: &[LedgerItem],
) -> Tally {
    // Stuck keys were fresh when first claimed: judge them at that time, with no age limit
    // beyond the table's own retention.
    let pipeline = Pipeline::new(ledger, sink)
        .with_max_key_age(SignedDuration::MAX)
        .with_names(names);
    let report = redrive(&pipeline, stuck, Timestamp::now().into()).await;
    for outcome in &report.outcomes {
        if let EventOutcome::Failed { report, error } = outcome {
            eprintln!("conversation {}: not delivered: {error}", report.conversation_id);
        }
    }
    report.tally
}

/// Whether a stuck claim was given back after a failed push (its lease set to 0).
fn released(item: &LedgerItem) -> bool {
    matches!(item.lease_expires_ms, None | Some(0))
}

/// What a redrive can and cannot know of the keys it redrives, said every time.
fn what_redrive_cannot_know(stuck: &[LedgerItem]) -> String {
    let released = stuck.iter().filter(|item| released(item)).count();
    let abandoned = stuck.len() - released;
    format!(
        "of these, {released} were released after a failed push: safe to redrive (unless DataDog \
         accepted a push whose answer was lost); {abandoned} were abandoned by a process that \
         stopped between claim and confirm: if it had pushed them, redriving counts them twice, and \
         nothing in the ledger can tell"
    )
}

fn stuck_line(item: &LedgerItem) -> String {
    let lease = match item.lease_expires_ms {
        Some(ms) if !released(item) => {
            Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |at| at.to_string())
        }
        _ => "released".to_owned(),
    };
    serde_json::json!({
        "conversation_id": item.conversation_id,
        "key": item.attribute_key,
        "flow": item.flow,
        "metric": item.metric,
        "source": item.source.as_deref().unwrap_or("attribute"),
        "lease_expired_at": lease,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::super::{Cli, Command};

    #[test]
    fn its_lease_defaults_to_the_functions() {
        let Command::Redrive(redrive) = Cli::parse_from(["flow-metrics", "redrive"]).command else {
            panic!("redrive");
        };
        assert_eq!(redrive.lease, crate::timing::DEFAULT_LEASE);
    }
}
