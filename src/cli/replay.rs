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

use crate::config::{check_retention, parse_duration};
use crate::count::{DEFAULT_MAX_KEY_AGE, DEFAULT_RUN_GAP, Tally};
use crate::ledger::dynamodb::{DEFAULT_RETENTION, create_table};
use crate::ledger::{DeliveredCache, DynamoDbLedger, Ledger, MemoryLedger, cache};
use crate::names::{Names, NamesConfig};
use crate::pipeline::Pipeline;
use crate::replay::{self, DEFAULT_BATCH_SIZE, Source};
use crate::sink::{JsonLinesSink, Sink};
use crate::timing::DEFAULT_LEASE;

use super::shared::SinkKind;
use super::target::{Settings, TargetArgs};

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

    /// With --ledger dynamodb: the deployment whose table records the keys, and whose
    /// function's settings the replay takes.
    #[command(flatten)]
    target: TargetArgs,

    /// Create the table (on-demand, with TTL) if it does not exist.
    #[arg(long)]
    create_table: bool,

    /// How long a claim holds before another process may take the key (default: the
    /// function's FLOW_METRICS_LEASE, 40 s: its timeout plus a margin). Each batch's push ends
    /// 11 s before the lease of its earliest claim: raise it, or lower --batch-size, if a slow
    /// table makes claiming a batch take longer.
    #[arg(long, value_parser = parse_duration)]
    lease: Option<SignedDuration>,

    /// How long a ledger item is kept after its key's time, above --max-key-age (default: the
    /// function's FLOW_METRICS_RETENTION, 30d).
    #[arg(long, value_parser = parse_duration)]
    retention: Option<SignedDuration>,

    /// Where counted occurrences go: stdout by default with the memory ledger, DataDog against
    /// a deployment; with a table no stack created it must be said, since the table then
    /// records them as delivered.
    #[arg(long, value_enum)]
    sink: Option<SinkKind>,

    /// Keys older than this, relative to their event's time, are stale and never counted
    /// (default: the function's FLOW_METRICS_MAX_KEY_AGE, 7d).
    #[arg(long, value_parser = parse_duration)]
    max_key_age: Option<SignedDuration>,

    /// Keys of a flow more than this apart are in different runs; each key's `.elapsed` is
    /// timed from the start of its run (default: the function's FLOW_METRICS_RUN_GAP, 1h).
    #[arg(long, value_parser = parse_duration)]
    run_gap: Option<SignedDuration>,

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
    let settings = match args.ledger {
        LedgerKind::Memory => Settings::shell(args.target.clone()),
        LedgerKind::Dynamodb => args.target.settings().await?,
    };
    let sink = match args.ledger {
        LedgerKind::Memory => args.sink.unwrap_or(SinkKind::Stdout),
        LedgerKind::Dynamodb => settings.sink(args.sink),
    };
    let timing = Timing {
        lease: settings.duration("FLOW_METRICS_LEASE", ("--lease", args.lease), DEFAULT_LEASE)?,
        retention: settings.duration(
            "FLOW_METRICS_RETENTION",
            ("--retention", args.retention),
            DEFAULT_RETENTION,
        )?,
        max_key_age: settings.duration(
            "FLOW_METRICS_MAX_KEY_AGE",
            ("--max-key-age", args.max_key_age),
            DEFAULT_MAX_KEY_AGE,
        )?,
        run_gap: settings.duration(
            "FLOW_METRICS_RUN_GAP",
            ("--run-gap", args.run_gap),
            DEFAULT_RUN_GAP,
        )?,
    };
    let sources = open_sources(&args.files)?;
    let replay = Replay {
        args: &args,
        settings: &settings,
        timing,
    };
    let tally = match sink {
        SinkKind::Stdout => replay.run_into(JsonLinesSink::stdout(), sources).await?,
        SinkKind::Datadog => replay.run_into(settings.datadog_sink().await?, sources).await?,
    };
    Ok(if tally.events_rejected > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The durations a replay counts with.
struct Timing {
    lease: SignedDuration,
    retention: SignedDuration,
    max_key_age: SignedDuration,
    run_gap: SignedDuration,
}

/// A replay's arguments and the settings they resolved to.
struct Replay<'a> {
    args: &'a ReplayArgs,
    settings: &'a Settings,
    timing: Timing,
}

impl Replay<'_> {
    async fn run_into<S: Sink>(&self, sink: S, sources: Vec<Source>) -> anyhow::Result<Tally> {
        match self.args.ledger {
            LedgerKind::Memory => self.run_with(MemoryLedger::default(), sink, sources).await,
            LedgerKind::Dynamodb => {
                check_retention(self.timing.retention, self.timing.max_key_age)?;
                let client = self.settings.dynamodb().await.context("--ledger dynamodb")?;
                let table = self.settings.table()?;
                if self.args.create_table {
                    create_table(&client, table)
                        .await
                        .with_context(|| format!("cannot create table {table}"))?;
                }
                self.settings.check_clock().await?;
                let ledger = DynamoDbLedger::new(client, table)
                    .with_lease(self.timing.lease)
                    .with_retention(self.timing.retention);
                // As in the Lambda: events repeating keys already delivered cost no Query.
                let ledger = DeliveredCache::new(ledger, cache::DEFAULT_CAPACITY);
                self.run_with(ledger, sink, sources).await
            }
        }
    }

    async fn run_with<L: Ledger, S: Sink>(
        &self,
        ledger: L,
        sink: S,
        sources: Vec<Source>,
    ) -> anyhow::Result<Tally> {
        let names = self.settings.names_from(self.names_config()?).await?;
        let pipeline = Pipeline::new(ledger, sink)
            .with_max_key_age(self.timing.max_key_age)
            .with_run_gap(self.timing.run_gap)
            .with_names(names);
        let replayed = replay::replay(&pipeline, sources, self.args.batch_size, &mut io::stderr()).await;
        eprintln!("summary: {}", replayed.tally);
        match replayed.stopped {
            None => Ok(replayed.tally),
            Some(error) => Err(anyhow::Error::new(error).context("the replay stopped early")),
        }
    }

    /// The names as the settings configure them; replaying the bundled samples, their names too
    /// (beneath FLOW_METRICS_NAMES), so that the first replay a newcomer runs shows names.
    fn names_config(&self) -> anyhow::Result<NamesConfig> {
        let mut config = self.settings.names_config()?;
        if self.args.files.is_empty() {
            let bundled = Names::parse_fixed(BUNDLED_NAMES).context("samples/flow-names.json")?;
            for (id, name) in bundled {
                config.fixed.entry(id).or_insert(name);
            }
        }
        Ok(config)
    }
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
