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
use crate::timing::DEFAULT_LEASE;

use super::shared::{ScanArgs, SinkKind, report_scan, scan};
use super::target::TargetArgs;

#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    target: TargetArgs,

    #[command(flatten)]
    scan: ScanArgs,

    /// Where redriven occurrences go (default against a deployment: DataDog; required with a
    /// table no stack created, unless --dry-run): the table records them as delivered.
    #[arg(long, value_enum)]
    sink: Option<SinkKind>,

    /// How long the redrive's own claims hold (default: the function's FLOW_METRICS_LEASE).
    #[arg(long, value_parser = parse_duration)]
    lease: Option<SignedDuration>,

    /// Only claims released, or whose lease ended at least this long ago: a recent one may
    /// still be retried by Lambda.
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    stuck_for: SignedDuration,

    /// List what would be redriven; change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(args: RedriveArgs) -> anyhow::Result<ExitCode> {
    let settings = args.target.settings().await?;
    let sink = (!args.dry_run).then(|| settings.sink(args.sink));
    let lease = settings.duration("FLOW_METRICS_LEASE", ("--lease", args.lease), DEFAULT_LEASE)?;
    let table = settings.table()?;
    if !args.dry_run {
        settings.check_clock().await?;
    }
    let ledger = DynamoDbLedger::new(settings.dynamodb().await?, table).with_lease(lease);
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
            let sink = settings.datadog_sink().await?;
            redrive_into(ledger, sink, settings.names().await?, &stuck).await
        }
        _ => redrive_into(ledger, JsonLinesSink::stdout(), settings.names().await?, &stuck).await,
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
         may have taken the push: then they are logged and counted as possibly doubled); \
         {abandoned} were abandoned by a process that stopped between claim and confirm: if it had \
         pushed them, redriving counts them twice, and each is logged and counted as possibly doubled"
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
