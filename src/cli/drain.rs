//! `flow-metrics drain`: dead letters (a queue's messages, the on-failure bucket's objects, or
//! both) back through the pipeline, each deleted once its event is acknowledged.

use std::io::{self, IsTerminal as _};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use jiff::SignedDuration;

use crate::config::{check_retention, parse_duration};
use crate::count::{DEFAULT_MAX_KEY_AGE, DEFAULT_RUN_GAP};
use crate::drain::{DeadLetterBucket, DeadLetterQueue, DeadLetterSource, Drained, drain};
use crate::ledger::DynamoDbLedger;
use crate::ledger::dynamodb::DEFAULT_RETENTION;
use crate::pipeline::Pipeline;
use crate::sink::{JsonLinesSink, Sink};
use crate::timing::DEFAULT_LEASE;

use super::shared::SinkKind;
use super::target::TargetArgs;

#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The dead-letter queue (default: the stack's `DeadLetterQueueUrl` output).
    #[arg(long)]
    queue_url: Option<String>,

    /// The on-failure bucket of direct mode (default: the stack's `DeadLetterBucketName`
    /// output): each object is one failed invocation's record.
    #[arg(long)]
    bucket: Option<String>,

    /// Only the bucket's objects whose keys start with this (default: the whole bucket).
    #[arg(long)]
    prefix: Option<String>,

    /// The deployment: its dead letters, its table and its function's settings. `--endpoint-url`
    /// applies to SQS and S3 too (S3 is then addressed path-style); to point each service at its
    /// own emulator, set AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_SQS and AWS_ENDPOINT_URL_S3.
    #[command(flatten)]
    target: TargetArgs,

    /// Where the events' keys go (default against a deployment: DataDog; required with a table
    /// no stack created, unless --dry-run): the table records them as delivered.
    #[arg(long, value_enum)]
    sink: Option<SinkKind>,

    /// How long the drain's own claims hold (default: the function's FLOW_METRICS_LEASE).
    #[arg(long, value_parser = parse_duration)]
    lease: Option<SignedDuration>,

    /// The table's item retention (default: the function's FLOW_METRICS_RETENTION): events
    /// too old for it are kept, not counted.
    #[arg(long, value_parser = parse_duration)]
    retention: Option<SignedDuration>,

    /// Keys older than this, relative to their event's time, are stale and never counted
    /// (default: the function's FLOW_METRICS_MAX_KEY_AGE).
    #[arg(long, value_parser = parse_duration)]
    max_key_age: Option<SignedDuration>,

    /// Keys of a flow more than this apart are in different runs, each key's `.elapsed` timed
    /// from the start of its run (default: the function's FLOW_METRICS_RUN_GAP).
    #[arg(long, value_parser = parse_duration)]
    run_gap: Option<SignedDuration>,

    /// List what would be done with each letter (one JSON line each); change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(args: DrainArgs) -> anyhow::Result<ExitCode> {
    let settings = args.target.settings().await?;
    let deployed = |output: &str| {
        settings
            .deployment()
            .and_then(|deployment| deployment.output(output))
            .map(str::to_owned)
    };
    let (queue_url, bucket) = match (&args.queue_url, &args.bucket) {
        (None, None) => (deployed("DeadLetterQueueUrl"), deployed("DeadLetterBucketName")),
        (queue_url, bucket) => (queue_url.clone(), bucket.clone()),
    };
    if queue_url.is_none() && bucket.is_none() {
        anyhow::bail!("name the dead letters: --stack (its queue and bucket), --queue-url or --bucket");
    }
    if args.prefix.is_some() && bucket.is_none() {
        anyhow::bail!("--prefix selects objects of a bucket, and no bucket is drained");
    }
    let sink = (!args.dry_run).then(|| settings.sink(args.sink));
    let lease = settings.duration("FLOW_METRICS_LEASE", ("--lease", args.lease), DEFAULT_LEASE)?;
    let retention = settings.duration(
        "FLOW_METRICS_RETENTION",
        ("--retention", args.retention),
        DEFAULT_RETENTION,
    )?;
    let max_key_age = settings.duration(
        "FLOW_METRICS_MAX_KEY_AGE",
        ("--max-key-age", args.max_key_age),
        DEFAULT_MAX_KEY_AGE,
    )?;
    let run_gap = settings.duration(
        "FLOW_METRICS_RUN_GAP",
        ("--run-gap", args.run_gap),
        DEFAULT_RUN_GAP,
    )?;
    check_retention(retention, max_key_age)?;
    let table = settings.table()?;
    if !args.dry_run {
        settings.check_clock().await?;
    }
    let aws = settings.aws().await?;
    let ledger = DynamoDbLedger::new(settings.dynamodb().await?, table)
        .with_lease(lease)
        .with_retention(retention);
    let mut sources = DeadLetters {
        queue: queue_url.map(|url| DeadLetterQueue::new(aws_sdk_sqs::Client::new(aws), url)),
        bucket: bucket.map(|bucket| {
            let client = crate::aws::s3_client(aws, crate::aws::emulated_s3(aws));
            DeadLetterBucket::new(client, bucket, args.prefix.clone())
        }),
        max_key_age,
    };
    let names = settings.names().await?;
    let kept = match sink {
        Some(SinkKind::Datadog) => {
            let pipeline = Pipeline::new(ledger, settings.datadog_sink().await?)
                .with_run_gap(run_gap)
                .with_names(names);
            sources.drain_all(&pipeline, args.dry_run).await?
        }
        _ => {
            let pipeline = Pipeline::new(ledger, JsonLinesSink::stdout())
                .with_run_gap(run_gap)
                .with_names(names);
            sources.drain_all(&pipeline, args.dry_run).await?
        }
    };
    Ok(if kept == 0 || args.dry_run {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What `drain` reads: a queue, a bucket, or both (the queue first).
struct DeadLetters {
    queue: Option<DeadLetterQueue>,
    bucket: Option<DeadLetterBucket>,
    /// Keys older than this, relative to their event's time, are never counted.
    max_key_age: SignedDuration,
}

impl DeadLetters {
    /// Drains each source in turn, printing what was kept and a summary for each; returns how
    /// many letters were kept in all.
    async fn drain_all<S: Sink>(
        &mut self,
        pipeline: &Pipeline<DynamoDbLedger, S>,
        dry_run: bool,
    ) -> anyhow::Result<usize> {
        let mut kept = 0;
        if let Some(queue) = &mut self.queue {
            kept += drain_one(pipeline, queue, dry_run, self.max_key_age).await?;
        }
        if let Some(bucket) = &mut self.bucket {
            kept += drain_one(pipeline, bucket, dry_run, self.max_key_age).await?;
        }
        Ok(kept)
    }
}

/// Drains one source with a progress bar on a terminal, then prints each letter kept and a
/// summary; returns how many were kept.
async fn drain_one<S: Sink, D: DeadLetterSource>(
    pipeline: &Pipeline<DynamoDbLedger, S>,
    source: &mut D,
    dry_run: bool,
    max_key_age: SignedDuration,
) -> anyhow::Result<usize> {
    let noun = source.noun();
    let progress = if io::stderr().is_terminal() && !dry_run {
        // A bar when the source can tell how many wait, else a count.
        let (bar, template) = match source.approximate_length().await.ok().flatten() {
            Some(total) => (ProgressBar::new(total), "{msg} {bar:30} {pos}/{len}"),
            None => (ProgressBar::no_length(), "{msg} {spinner} {pos}"),
        };
        bar.set_style(
            ProgressStyle::with_template(&format!("{template} {noun}s ({{per_sec}})"))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.with_message("draining")
    } else {
        ProgressBar::hidden()
    };
    let drained = drain(pipeline, source, dry_run, max_key_age, |plan| {
        progress.inc(1);
        if dry_run {
            println!("{}", serde_json::to_string(plan).unwrap_or_default());
        }
    })
    .await?;
    progress.finish_and_clear();
    report_drained(&source.describe(), noun, &drained, dry_run);
    Ok(drained.kept.len())
}

fn report_drained(place: &str, noun: &str, drained: &Drained, dry_run: bool) {
    for kept in &drained.kept {
        eprintln!(
            "kept {}: {}",
            kept.id,
            kept.reason.as_deref().unwrap_or("not delivered")
        );
    }
    if dry_run {
        eprintln!(
            "dry run, {place}: {} {noun}(s) received; nothing changed",
            drained.received
        );
        return;
    }
    eprintln!(
        "drain, {place}: {} {noun}(s) received, {} deleted, {} kept; keys counted {}, already counted {}",
        drained.received,
        drained.deleted,
        drained.kept.len(),
        drained.tally.keys_counted,
        drained.tally.keys_already_counted
    );
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::super::{Cli, Command};
    use super::DrainArgs;

    fn parse(args: &[&str]) -> Result<DrainArgs, clap::Error> {
        Cli::try_parse_from(["flow-metrics", "drain"].iter().chain(args)).map(|cli| match cli.command {
            Command::Drain(drain) => drain,
            _ => panic!("drain"),
        })
    }

    #[test]
    fn its_durations_are_the_functions_unless_a_flag_says_otherwise() {
        let defaults = parse(&["--stack", "S"]).expect("a stack alone");
        assert_eq!(
            (
                defaults.lease,
                defaults.retention,
                defaults.max_key_age,
                defaults.run_gap
            ),
            (None, None, None, None)
        );
        let given = parse(&["--run-gap", "90m", "--retention", "10d"]).expect("durations");
        assert_eq!(given.run_gap, Some(jiff::SignedDuration::from_mins(90)));
        assert_eq!(given.retention, Some(jiff::SignedDuration::from_hours(240)));
        assert!(parse(&["--run-gap", "an hour"]).is_err());
    }

    #[test]
    fn drain_reads_a_queue_a_bucket_or_both() {
        let both = parse(&["--queue-url", "q", "--bucket", "b", "--prefix", "p/"]).expect("both");
        assert_eq!(
            (
                both.queue_url.as_deref(),
                both.bucket.as_deref(),
                both.prefix.as_deref()
            ),
            (Some("q"), Some("b"), Some("p/"))
        );
    }
}
