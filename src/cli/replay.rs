//! `flow-metrics replay`: Genesys events from files, stdin or the bundled samples through the
//! pipeline, into the memory ledger or a DynamoDB table, printing what counts.

use std::fs::File;
use std::io::{self, BufReader};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::ValueEnum;
use jiff::SignedDuration;

use crate::config::{check_retention, parse_duration, process_env};
use crate::count::Tally;
use crate::ledger::dynamodb::create_table;
use crate::ledger::{DeliveredCache, DynamoDbLedger, Ledger, MemoryLedger, cache};
use crate::names::{Names, NamesConfig};
use crate::pipeline::Pipeline;
use crate::replay::{self, DEFAULT_BATCH_SIZE, Source};
use crate::sink::{JsonLinesSink, Sink};

use super::shared::{SinkKind, TableArgs, datadog_sink, names_from, sink_for_table};

/// The sample events replayed when no file is given.
const BUNDLED_SAMPLES: &str = include_str!("../../samples/genesys-events.jsonl");

/// The names of the samples' flows, milestones and outcomes, used with them.
const BUNDLED_NAMES: &str = include_str!("../../samples/flow-names.json");

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Event files: one JSON event, a JSON array of events, or JSON Lines; `-` reads stdin.
    /// With none, the bundled sample events are replayed.
    files: Vec<PathBuf>,

    /// Where counted keys are recorded.
    #[arg(long, value_enum, default_value_t = LedgerKind::Memory)]
    ledger: LedgerKind,

    #[command(flatten)]
    table: TableArgs,

    /// Create the table (on-demand, with TTL) if it does not exist.
    #[arg(long)]
    create_table: bool,

    /// How long a claim holds before another process may take the key (as the Lambda's, by
    /// default: its timeout plus a margin). Each batch's push ends 5 s before the lease of its
    /// earliest claim: raise it, or lower --batch-size, if a slow table makes claiming a batch
    /// take longer.
    #[arg(long, env = "FLOW_METRICS_LEASE", value_parser = parse_duration, default_value = "40s")]
    lease: SignedDuration,

    /// How long a ledger item is kept after its key's time (must exceed --max-key-age).
    #[arg(long, env = "FLOW_METRICS_RETENTION", value_parser = parse_duration, default_value = "30d")]
    retention: SignedDuration,

    /// Where counted occurrences go: stdout by default with the memory ledger; with
    /// --ledger dynamodb it must be said, since the table then records them as delivered.
    #[arg(long, value_enum)]
    sink: Option<SinkKind>,

    /// Keys older than this, relative to their event's time, are stale and never counted.
    #[arg(long, env = "FLOW_METRICS_MAX_KEY_AGE", value_parser = parse_duration, default_value = "7d")]
    max_key_age: SignedDuration,

    /// Keys of a flow more than this apart are in different runs; each key's `.elapsed` is
    /// timed from the start of its run.
    #[arg(long, env = "FLOW_METRICS_RUN_GAP", value_parser = parse_duration, default_value = "1h")]
    run_gap: SignedDuration,

    /// Events per batch (one sink push per batch).
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: NonZeroUsize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LedgerKind {
    /// In this process only: forgets everything at exit.
    Memory,
    /// A DynamoDB table shared with the Lambda: keys counted there are not counted again.
    Dynamodb,
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let sink = match args.ledger {
        LedgerKind::Memory => args.sink.unwrap_or(SinkKind::Stdout),
        LedgerKind::Dynamodb => sink_for_table(args.sink, args.table.table.as_deref()),
    };
    let sources = open_sources(&args.files)?;
    let tally = match sink {
        SinkKind::Stdout => replay_into(JsonLinesSink::stdout(), sources, &args).await?,
        SinkKind::Datadog => replay_into(datadog_sink(&args.table).await?, sources, &args).await?,
    };
    Ok(if tally.events_rejected > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn replay_into<S: Sink>(sink: S, sources: Vec<Source>, args: &ReplayArgs) -> anyhow::Result<Tally> {
    match args.ledger {
        LedgerKind::Memory => replay_with(MemoryLedger::default(), sink, sources, args).await,
        LedgerKind::Dynamodb => {
            check_retention(args.retention, args.max_key_age)?;
            let (client, table) = args.table.client().await.context("--ledger dynamodb")?;
            if args.create_table {
                create_table(&client, table)
                    .await
                    .with_context(|| format!("cannot create table {table}"))?;
            }
            let ledger = DynamoDbLedger::new(client, table)
                .with_lease(args.lease)
                .with_retention(args.retention);
            // As in the Lambda: events repeating keys already delivered cost no Query.
            let ledger = DeliveredCache::new(ledger, cache::DEFAULT_CAPACITY);
            replay_with(ledger, sink, sources, args).await
        }
    }
}

async fn replay_with<L: Ledger, S: Sink>(
    ledger: L,
    sink: S,
    sources: Vec<Source>,
    args: &ReplayArgs,
) -> anyhow::Result<Tally> {
    let pipeline = Pipeline::new(ledger, sink)
        .with_max_key_age(args.max_key_age)
        .with_run_gap(args.run_gap)
        .with_names(
            names_from(
                replay_names(&args.files)?,
                &args.table,
                args.ledger == LedgerKind::Dynamodb,
            )
            .await?,
        );
    let replayed = replay::replay(&pipeline, sources, args.batch_size, &mut io::stderr()).await;
    eprintln!("summary: {}", replayed.tally);
    match replayed.stopped {
        None => Ok(replayed.tally),
        Some(error) => Err(anyhow::Error::new(error).context("the replay stopped early")),
    }
}

/// The names as the environment configures them; replaying the bundled samples, their names too
/// (beneath FLOW_METRICS_NAMES), so that the first replay a newcomer runs shows names.
fn replay_names(files: &[PathBuf]) -> anyhow::Result<NamesConfig> {
    let mut config = NamesConfig::from_env(&process_env)?;
    if files.is_empty() {
        let bundled = Names::parse_fixed(BUNDLED_NAMES).context("samples/flow-names.json")?;
        for (id, name) in bundled {
            config.fixed.entry(id).or_insert(name);
        }
    }
    Ok(config)
}

fn open_sources(files: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    if files.is_empty() {
        eprintln!(
            "no file given: replaying the bundled sample events (samples/genesys-events.jsonl), named by samples/flow-names.json"
        );
        return Ok(vec![Source {
            name: "samples/genesys-events.jsonl".to_owned(),
            reader: Box::new(BUNDLED_SAMPLES.as_bytes()),
        }]);
    }
    files
        .iter()
        .map(|path| {
            let name = path.display().to_string();
            let reader: Box<dyn io::BufRead + Send> = if name == "-" {
                Box::new(BufReader::new(io::stdin()))
            } else {
                let file = File::open(path).with_context(|| format!("cannot open {name}"))?;
                Box::new(BufReader::with_capacity(1 << 16, file))
            };
            Ok(Source { name, reader })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::super::{Cli, Command};

    #[test]
    fn defaults_are_the_library_defaults() {
        let Command::Replay(replay) = Cli::parse_from(["flow-metrics", "replay"]).command else {
            panic!("replay");
        };
        assert_eq!(replay.max_key_age, crate::count::DEFAULT_MAX_KEY_AGE);
        assert_eq!(replay.run_gap, crate::count::DEFAULT_RUN_GAP);
        assert_eq!(replay.lease, crate::timing::DEFAULT_LEASE);
        assert_eq!(replay.retention, crate::ledger::dynamodb::DEFAULT_RETENTION);
    }
}
