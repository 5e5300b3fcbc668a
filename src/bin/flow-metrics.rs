//! `flow-metrics`: the command line. `replay` runs Genesys events through the pipeline from
//! files or stdin, printing each counted occurrence; with no file it replays the bundled samples.

use std::fs::File;
use std::io::{self, BufReader};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use flow_metrics::config::{ApiKeySource, DataDogConfig, check_retention, parse_duration, process_env};
use flow_metrics::count::Tally;
use flow_metrics::ledger::dynamodb::create_table;
use flow_metrics::ledger::{DynamoDbLedger, Ledger, MemoryLedger};
use flow_metrics::pipeline::Pipeline;
use flow_metrics::replay::{self, DEFAULT_BATCH_SIZE, Source};
use flow_metrics::sink::datadog::ApiKey;
use flow_metrics::sink::{DataDogSink, JsonLinesSink, Sink};
use jiff::SignedDuration;
use tracing_subscriber::EnvFilter;

/// The sample events replayed when no file is given.
const BUNDLED_SAMPLES: &str = include_str!("../../samples/genesys-events.jsonl");

/// Counts Genesys Cloud flow metric attributes exactly once.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay EventBridge events from files through the pipeline and print what counts.
    ///
    /// Prints one JSON object per counted occurrence on stdout, and on stderr one line per
    /// rejected event and per invalid key, then a summary. Exit status: 0 when every event was
    /// read, 1 when some were rejected, 2 on bad usage, 3 when the replay had to stop.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
struct ReplayArgs {
    /// Event files: one JSON event, a JSON array of events, or JSON Lines; `-` reads stdin.
    /// With none, the bundled sample events are replayed.
    files: Vec<PathBuf>,

    /// Where counted keys are recorded.
    #[arg(long, value_enum, default_value_t = LedgerKind::Memory)]
    ledger: LedgerKind,

    #[command(flatten)]
    dynamodb: DynamoDbArgs,

    /// Where counted occurrences go.
    #[arg(long, value_enum, default_value_t = SinkKind::Stdout)]
    sink: SinkKind,

    /// Keys older than this, relative to their event's time, are stale and never counted.
    #[arg(long, value_parser = parse_duration, default_value = "7d")]
    max_key_age: SignedDuration,

    /// Events per batch (one sink push per batch).
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: NonZeroUsize,
}

/// The DynamoDB ledger's settings (with `--ledger dynamodb`). Credentials and region come from
/// the standard AWS chain.
#[derive(Debug, clap::Args)]
struct DynamoDbArgs {
    /// The ledger table.
    #[arg(long, env = "FLOW_METRICS_TABLE", required_if_eq("ledger", "dynamodb"))]
    table: Option<String>,

    /// A DynamoDB endpoint such as an emulator's (default: AWS, or AWS_ENDPOINT_URL).
    #[arg(long)]
    endpoint_url: Option<String>,

    /// Create the table (on-demand, with TTL) if it does not exist.
    #[arg(long)]
    create_table: bool,

    /// How long a claim holds before another process may take the key.
    #[arg(long, value_parser = parse_duration, default_value = "2m")]
    lease: SignedDuration,

    /// How long a ledger item is kept after its key's time (must exceed --max-key-age).
    #[arg(long, value_parser = parse_duration, default_value = "30d")]
    retention: SignedDuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LedgerKind {
    /// In this process only: forgets everything at exit.
    Memory,
    /// A DynamoDB table shared with the Lambda: keys counted there are not counted again.
    Dynamodb,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SinkKind {
    /// JSON Lines on stdout.
    Stdout,
    /// DataDog distribution points, configured like the Lambda: DD_API_KEY (or
    /// DD_API_KEY_SECRET_ARN), DD_SITE or DD_URL, DD_TAGS, FLOW_METRICS_METRIC.
    Datadog,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(io::stderr)
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Replay(args) => run_replay(args).await,
    };
    match outcome {
        Ok(tally) if tally.events_rejected > 0 => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(3)
        }
    }
}

async fn run_replay(args: ReplayArgs) -> anyhow::Result<Tally> {
    let sources = open_sources(&args.files)?;
    match args.sink {
        SinkKind::Stdout => replay_into(JsonLinesSink::stdout(), sources, &args).await,
        SinkKind::Datadog => replay_into(datadog_sink(&args).await?, sources, &args).await,
    }
}

async fn replay_into<S: Sink>(sink: S, sources: Vec<Source>, args: &ReplayArgs) -> anyhow::Result<Tally> {
    match args.ledger {
        LedgerKind::Memory => replay_with(MemoryLedger::default(), sink, sources, args).await,
        LedgerKind::Dynamodb => replay_with(dynamodb_ledger(args).await?, sink, sources, args).await,
    }
}

async fn datadog_sink(args: &ReplayArgs) -> anyhow::Result<DataDogSink> {
    let config = DataDogConfig::from_env(&process_env)?;
    let api_key = match &config.api_key {
        ApiKeySource::Key(key) => key.clone(),
        ApiKeySource::SecretArn(arn) => {
            let aws = flow_metrics::aws::load_config(args.dynamodb.endpoint_url.as_deref()).await?;
            ApiKey::from_secret(&aws_sdk_secretsmanager::Client::new(&aws), arn).await?
        }
    };
    Ok(DataDogSink::new(config.with_key(api_key))?)
}

async fn dynamodb_ledger(args: &ReplayArgs) -> anyhow::Result<DynamoDbLedger> {
    let settings = &args.dynamodb;
    check_retention(settings.retention, args.max_key_age)?;
    let table = settings
        .table
        .as_deref()
        .context("--table is required with --ledger dynamodb")?;
    let config = flow_metrics::aws::load_config(settings.endpoint_url.as_deref()).await?;
    let client = aws_sdk_dynamodb::Client::new(&config);
    if settings.create_table {
        create_table(&client, table)
            .await
            .with_context(|| format!("cannot create table {table}"))?;
    }
    Ok(DynamoDbLedger::new(client, table)
        .with_lease(settings.lease)
        .with_retention(settings.retention))
}

async fn replay_with<L: Ledger, S: Sink>(
    ledger: L,
    sink: S,
    sources: Vec<Source>,
    args: &ReplayArgs,
) -> anyhow::Result<Tally> {
    let pipeline = Pipeline::new(ledger, sink).with_max_key_age(args.max_key_age);
    let replayed = replay::replay(&pipeline, sources, args.batch_size, &mut io::stderr()).await;
    eprintln!("summary: {}", replayed.tally);
    match replayed.stopped {
        None => Ok(replayed.tally),
        Some(error) => Err(anyhow::Error::new(error).context("the replay stopped early")),
    }
}

fn open_sources(files: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    if files.is_empty() {
        eprintln!("no file given: replaying the bundled sample events (samples/genesys-events.jsonl)");
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
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_library_defaults() {
        let replay = Cli::parse_from(["flow-metrics", "replay"]);
        let Command::Replay(args) = replay.command;
        assert_eq!(args.max_key_age, flow_metrics::count::DEFAULT_MAX_KEY_AGE);
        assert_eq!(args.dynamodb.lease, flow_metrics::ledger::dynamodb::DEFAULT_LEASE);
        assert_eq!(
            args.dynamodb.retention,
            flow_metrics::ledger::dynamodb::DEFAULT_RETENTION
        );
    }
}
