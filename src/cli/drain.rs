//! `flow-metrics drain`: dead letters (a queue's messages, the on-failure bucket's objects, or
//! both) back through the pipeline, each deleted once its event is acknowledged.

use std::io::{self, IsTerminal as _};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use jiff::SignedDuration;

use crate::config::parse_duration;
use crate::count::DEFAULT_MAX_KEY_AGE;
use crate::drain::{DeadLetterBucket, DeadLetterQueue, DeadLetterSource, Drained, drain};
use crate::ledger::DynamoDbLedger;
use crate::pipeline::Pipeline;
use crate::sink::{JsonLinesSink, Sink};

use super::shared::{SinkKind, TableArgs, datadog_sink, names, sink_for_table};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("dead_letters").args(["queue_url", "bucket"]).required(true).multiple(true)))]
pub struct DrainArgs {
    /// The dead-letter queue (the stack's `DeadLetterQueueUrl` output).
    #[arg(long)]
    queue_url: Option<String>,

    /// The on-failure bucket of direct mode (the stack's `DeadLetterBucketName` output): each
    /// object is one failed invocation's record.
    #[arg(long)]
    bucket: Option<String>,

    /// Only the bucket's objects whose keys start with this (default: the whole bucket).
    #[arg(long, requires = "bucket")]
    prefix: Option<String>,

    /// The ledger table the Lambda uses. `--endpoint-url` applies to SQS and S3 too (S3 is then
    /// addressed path-style); to point each service at its own emulator, set
    /// AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_SQS and AWS_ENDPOINT_URL_S3.
    #[command(flatten)]
    table: TableArgs,

    /// Where the events' keys go (required unless --dry-run): the table records them as
    /// delivered.
    #[arg(long, value_enum)]
    sink: Option<SinkKind>,

    /// How long the drain's own claims hold (as the Lambda's, by default; the function's own
    /// setting, FLOW_METRICS_LEASE, after `eval "$(scripts/operator-env.sh)"`).
    #[arg(long, env = "FLOW_METRICS_LEASE", value_parser = parse_duration, default_value = "40s")]
    lease: SignedDuration,

    /// The table's item retention, as deployed (FLOW_METRICS_RETENTION, which
    /// scripts/operator-env.sh takes from the function): events too old for it are kept, not counted.
    #[arg(long, env = "FLOW_METRICS_RETENTION", value_parser = parse_duration, default_value = "30d")]
    retention: SignedDuration,

    /// Keys of a flow more than this apart are in different runs, each key's `.elapsed` timed
    /// from the start of its run (the function's FLOW_METRICS_RUN_GAP, after
    /// `eval "$(scripts/operator-env.sh)"`).
    #[arg(long, env = "FLOW_METRICS_RUN_GAP", value_parser = parse_duration, default_value = "1h")]
    run_gap: SignedDuration,

    /// List what would be done with each letter (one JSON line each); change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(args: DrainArgs) -> anyhow::Result<ExitCode> {
    let sink = (!args.dry_run).then(|| sink_for_table(args.sink, args.table.table.as_deref()));
    let (aws, table) = args.table.aws().await?;
    let ledger = DynamoDbLedger::new(crate::aws::dynamodb_client(&aws), table)
        .with_lease(args.lease)
        .with_retention(args.retention);
    let mut sources = DeadLetters {
        queue: args
            .queue_url
            .as_ref()
            .map(|url| DeadLetterQueue::new(aws_sdk_sqs::Client::new(&aws), url)),
        bucket: args.bucket.as_ref().map(|bucket| {
            // An emulator serves buckets under its own host, not as host names of their own.
            let path_style =
                aws.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
            let client = crate::aws::s3_client(&aws, path_style);
            DeadLetterBucket::new(client, bucket, args.prefix.clone())
        }),
    };
    let names = names(&args.table).await?;
    let kept = match sink {
        Some(SinkKind::Datadog) => {
            let pipeline = Pipeline::new(ledger, datadog_sink(&args.table).await?)
                .with_run_gap(args.run_gap)
                .with_names(names);
            sources.drain_all(&pipeline, args.dry_run).await?
        }
        _ => {
            let pipeline = Pipeline::new(ledger, JsonLinesSink::stdout())
                .with_run_gap(args.run_gap)
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
            kept += drain_one(pipeline, queue, dry_run).await?;
        }
        if let Some(bucket) = &mut self.bucket {
            kept += drain_one(pipeline, bucket, dry_run).await?;
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
    let drained = drain(pipeline, source, dry_run, DEFAULT_MAX_KEY_AGE, |plan| {
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

    #[test]
    fn its_run_gap_defaults_to_the_functions_and_is_a_duration() {
        let parse = |args: &[&str]| {
            let all = ["flow-metrics", "drain", "--queue-url", "q"].iter().chain(args);
            Cli::try_parse_from(all).map(|cli| match cli.command {
                Command::Drain(drain) => drain.run_gap,
                _ => panic!("drain"),
            })
        };
        assert_eq!(parse(&[]).expect("default"), crate::count::DEFAULT_RUN_GAP);
        assert_eq!(
            parse(&["--run-gap", "90m"]).expect("90m"),
            jiff::SignedDuration::from_mins(90)
        );
        assert!(parse(&["--run-gap", "an hour"]).is_err());
    }

    #[test]
    fn drain_reads_a_queue_a_bucket_or_both_and_needs_one() {
        let parse = |args: &[&str]| Cli::try_parse_from(["flow-metrics", "drain"].iter().chain(args));
        let missing = parse(&["--table", "t"]).expect_err("no source");
        assert_eq!(missing.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let prefix_alone = parse(&["--queue-url", "q", "--prefix", "p/"]).expect_err("a prefix of no bucket");
        assert_eq!(
            prefix_alone.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        let Command::Drain(both) = parse(&["--queue-url", "q", "--bucket", "b", "--prefix", "p/"])
            .expect("both")
            .command
        else {
            panic!("drain");
        };
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
