//! `flow-metrics`: the command line.
//! - `replay` runs Genesys events through the pipeline from files or stdin (with no file, the
//!   bundled samples), printing each counted occurrence;
//! - `audit` scans the ledger table and counts delivered, in-flight and stuck keys;
//! - `redrive` delivers the stuck ones; `drain` a dead-letter queue's events;
//! - `simulate` estimates costs; `sample-event` writes an event for testing a deployment;
//! - `names` checks that ids can be named (the Genesys OAuth client and its permissions).

use std::fs::File;
use std::io::{self, BufReader, IsTerminal as _};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use flow_metrics::audit::{self, Audit, Bucket, CustomMetrics};
use flow_metrics::config::{check_retention, parse_duration, process_env};
use flow_metrics::count::{DEFAULT_MAX_KEY_AGE, Tally};
use flow_metrics::drain::{DeadLetterBucket, DeadLetterQueue, DeadLetterSource, Drained, drain};
use flow_metrics::ledger::dynamodb::{LedgerItem, ScanFilter, ScanTotals, create_table};
use flow_metrics::ledger::{DeliveredCache, DynamoDbLedger, Ledger, MemoryLedger, cache};
use flow_metrics::names::genesys::GenesysDirectory;
use flow_metrics::names::{CredentialsSource, Directory, NameKind, Names, NamesConfig};
use flow_metrics::pipeline::{EventOutcome, Pipeline};
use flow_metrics::redrive::redrive;
use flow_metrics::replay::{self, DEFAULT_BATCH_SIZE, Source};
use flow_metrics::simulate::{self, TraceShape};
use flow_metrics::sink::datadog::{ApiKey, ApiKeySource, DataDogConfig, SeriesConfig};
use flow_metrics::sink::{DataDogSink, JsonLinesSink, Sink};
use indicatif::{ProgressBar, ProgressStyle};
use jiff::{SignedDuration, Timestamp};
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
    /// Count the ledger's keys per flow and metric: delivered, claimed (in flight), stuck; then
    /// the DataDog custom metrics the delivered keys' series make (named by DD_TAGS,
    /// FLOW_METRICS_METRIC, … and FLOW_METRICS_ELAPSED, as the sink names them).
    Audit(AuditArgs),
    /// Deliver stuck keys (claimed, lease expired, never confirmed) to the sink, exactly once.
    ///
    /// Safe while the Lambda runs, and safe to run twice. Exit status: 0 when every stuck key
    /// was delivered or found delivered, 1 when some could not be, 3 on error.
    Redrive(RedriveArgs),
    /// Estimate costs: run a generated month-like trace through the pipeline with DynamoDB
    /// units metered, beside the snapshot-diff design, and print $ per million events.
    Simulate(SimulateArgs),
    /// Send dead letters' events through the pipeline again (a dead-letter queue's messages, an
    /// on-failure bucket's objects, or both), deleting each letter once its event is acknowledged.
    ///
    /// Reads both shapes a dead letter holds (EventBridge events, Lambda on-failure records). A
    /// rejected event (poison) or one not delivered stays where it is, with why. With both
    /// --queue-url and --bucket, the queue is drained first, then the bucket. Safe to run twice:
    /// keys already counted are skipped. Exit status: 0 when everything was drained, 1 when
    /// letters were kept, 2 on bad usage, 3 on error.
    Drain(DrainArgs),
    /// Print an attributes event of now, carrying one metric key: to test a deployment end to
    /// end (`aws lambda invoke --payload file://event.json`).
    SampleEvent(SampleEventArgs),
    /// Look ids up as the function would (FLOW_METRICS_NAMES, then the Genesys API), waiting
    /// for each answer: to check the OAuth client and its permissions before deploying.
    ///
    /// Exit status: 0 when every id was named, 1 when some were not (each line says why), 3 on
    /// error.
    Names(NamesArgs),
}

#[derive(Debug, clap::Args)]
struct NamesArgs {
    /// A flow id to name (repeatable).
    #[arg(long = "flow")]
    flows: Vec<String>,

    /// A milestone id to name (repeatable).
    #[arg(long = "milestone")]
    milestones: Vec<String>,

    /// An outcome id to name (repeatable).
    #[arg(long = "outcome")]
    outcomes: Vec<String>,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("dead_letters").args(["queue_url", "bucket"]).required(true).multiple(true)))]
struct DrainArgs {
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

    /// List what would be done with each letter (one JSON line each); change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, clap::Args)]
struct SampleEventArgs {
    /// Which topic's event: an attributes event with one metric key, or a flow outcome event
    /// with one milestone and a successful outcome.
    #[arg(long, value_enum, default_value = "attribute")]
    source: SampleSource,

    /// The flow name of the key (an outcome event's flow id).
    #[arg(long, default_value = "DeployTest")]
    flow: String,

    /// The metric name of the key (an outcome event's milestone and outcome id).
    #[arg(long, default_value = "Start")]
    metric: String,

    /// The conversation id (default: a new random one, so that the key counts once).
    #[arg(long)]
    conversation: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SampleSource {
    Attribute,
    Outcome,
}

#[derive(Debug, clap::Args)]
struct SimulateArgs {
    /// Conversations in the trace.
    #[arg(long, default_value_t = TraceShape::default().conversations)]
    conversations: usize,

    /// Share of events delivered twice.
    #[arg(long, default_value_t = TraceShape::default().duplicate_rate)]
    duplicate_rate: f64,

    /// Lambda memory, in MB.
    #[arg(long, default_value_t = 256.0)]
    memory: f64,

    /// Seed of the trace generator.
    #[arg(long, default_value_t = TraceShape::default().seed)]
    seed: u64,
}

/// The ledger table. Credentials and region come from the standard AWS chain.
#[derive(Debug, clap::Args)]
struct TableArgs {
    /// The ledger table.
    #[arg(long, env = "FLOW_METRICS_TABLE")]
    table: Option<String>,

    /// A DynamoDB endpoint such as an emulator's (default: AWS, or AWS_ENDPOINT_URL).
    #[arg(long)]
    endpoint_url: Option<String>,
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

    /// Events per batch (one sink push per batch).
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: NonZeroUsize,
}

#[derive(Debug, clap::Args)]
struct AuditArgs {
    #[command(flatten)]
    table: TableArgs,

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

#[derive(Debug, clap::Args)]
struct RedriveArgs {
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

/// How the table is scanned.
#[derive(Debug, clap::Args)]
struct ScanArgs {
    /// Parallel scan segments (default: 4 per core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    segments: Option<u32>,
}

impl ScanArgs {
    fn segments(&self) -> u32 {
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        self.segments
            .unwrap_or_else(|| u32::try_from(cores * 4).unwrap_or(4))
    }
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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BucketArg {
    Minute,
    Hour,
    Day,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// Aligned, for people, with a totals row.
    Table,
    Csv,
    /// An array of {"flow","metric","bucket"?,"delivered","claimed","stuck"}.
    Json,
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
        Command::Audit(args) => run_audit(args).await,
        Command::Redrive(args) => run_redrive(args).await,
        Command::SampleEvent(args) => sample_event(&args),
        Command::Names(args) => look_up_names(&args).await,
        Command::Drain(args) => run_drain(args).await,
        Command::Simulate(args) => {
            let shape = TraceShape {
                conversations: args.conversations,
                duplicate_rate: args.duplicate_rate,
                seed: args.seed,
                ..TraceShape::default()
            };
            print!("{}", simulate::compare(shape).await.render(args.memory));
            Ok(ExitCode::SUCCESS)
        }
    };
    match outcome {
        Ok(status) => status,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(3)
        }
    }
}

/// The sink for a run that records keys in `table`: it must be named, because the table then
/// holds the keys as delivered, and no later run sends them. Exits with a usage error if not.
fn sink_for_table(sink: Option<SinkKind>, table: Option<&str>) -> SinkKind {
    let table = table.unwrap_or("the table");
    let Some(sink) = sink else {
        use clap::CommandFactory as _;
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                format!(
                    "--sink is required with a DynamoDB table: the keys sent are recorded in {table} as \
                     delivered, and no later run sends them again. Use --sink datadog to count them in \
                     DataDog, or --sink stdout to print them instead (DataDog then never gets them)"
                ),
            )
            .exit();
    };
    if matches!(sink, SinkKind::Stdout) {
        eprintln!(
            "note: --sink stdout records each key it prints as delivered in {table}: DataDog will not \
             receive them, and no later run will send them"
        );
    }
    sink
}

async fn run_replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
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
        .with_names(names(&args.table).await?);
    let replayed = replay::replay(&pipeline, sources, args.batch_size, &mut io::stderr()).await;
    eprintln!("summary: {}", replayed.tally);
    match replayed.stopped {
        None => Ok(replayed.tally),
        Some(error) => Err(anyhow::Error::new(error).context("the replay stopped early")),
    }
}

async fn run_audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let (client, table) = args.table.client().await?;
    let ledger = DynamoDbLedger::new(client, table);
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
    let series = SeriesConfig::from_env(&process_env)?;
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

async fn run_redrive(args: RedriveArgs) -> anyhow::Result<ExitCode> {
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

/// Scans the table with a progress spinner on a terminal.
async fn scan(
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

fn report_scan(table: &str, args: &ScanArgs, totals: ScanTotals) {
    eprintln!(
        "scanned {table}: {} matching item(s), {} segment(s), {:.1} read capacity units consumed",
        totals.items,
        args.segments(),
        totals.capacity_units
    );
}

impl TableArgs {
    /// The AWS configuration from the standard chain, and the table name.
    async fn aws(&self) -> anyhow::Result<(aws_config::SdkConfig, &str)> {
        let table = self
            .table
            .as_deref()
            .context("--table (or FLOW_METRICS_TABLE) is required")?;
        let config = flow_metrics::aws::load_config(self.endpoint_url.as_deref()).await?;
        Ok((config, table))
    }

    /// A DynamoDB client from the standard AWS chain, and the table name.
    async fn client(&self) -> anyhow::Result<(aws_sdk_dynamodb::Client, &str)> {
        let (config, table) = self.aws().await?;
        Ok((flow_metrics::aws::dynamodb_client(&config), table))
    }
}

/// Names of flows, milestones and outcomes, as the environment configures them.
async fn names(table: &TableArgs) -> anyhow::Result<Arc<dyn Directory>> {
    let config = NamesConfig::from_env(&process_env)?;
    let secrets = match config.genesys.as_ref().map(|genesys| &genesys.credentials) {
        Some(CredentialsSource::SecretArn(_)) => {
            let aws = flow_metrics::aws::load_config(table.endpoint_url.as_deref()).await?;
            Some(aws_sdk_secretsmanager::Client::new(&aws))
        }
        _ => None,
    };
    Ok(Arc::new(Names::from_config(&config, secrets.as_ref()).await?))
}

async fn datadog_sink(table: &TableArgs) -> anyhow::Result<DataDogSink> {
    let config = DataDogConfig::from_env(&process_env)?;
    let api_key = match &config.api_key {
        ApiKeySource::Key(key) => key.clone(),
        ApiKeySource::SecretArn(arn) => {
            let aws = flow_metrics::aws::load_config(table.endpoint_url.as_deref()).await?;
            ApiKey::from_secret(&aws_sdk_secretsmanager::Client::new(&aws), arn).await?
        }
    };
    Ok(DataDogSink::new(config.with_key(api_key))?)
}

async fn run_drain(args: DrainArgs) -> anyhow::Result<ExitCode> {
    let sink = (!args.dry_run).then(|| sink_for_table(args.sink, args.table.table.as_deref()));
    let (aws, table) = args.table.aws().await?;
    let ledger = DynamoDbLedger::new(flow_metrics::aws::dynamodb_client(&aws), table)
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
            let client = flow_metrics::aws::s3_client(&aws, path_style);
            DeadLetterBucket::new(client, bucket, args.prefix.clone())
        }),
    };
    let names = names(&args.table).await?;
    let kept = match sink {
        Some(SinkKind::Datadog) => {
            let pipeline = Pipeline::new(ledger, datadog_sink(&args.table).await?).with_names(names);
            sources.drain_all(&pipeline, args.dry_run).await?
        }
        _ => {
            let pipeline = Pipeline::new(ledger, JsonLinesSink::stdout()).with_names(names);
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

async fn look_up_names(args: &NamesArgs) -> anyhow::Result<ExitCode> {
    let config = NamesConfig::from_env(&process_env)?;
    let directory = match &config.genesys {
        None => None,
        Some(genesys) => {
            let secrets = match genesys.credentials {
                CredentialsSource::SecretArn(_) => {
                    let aws = flow_metrics::aws::load_config(None).await?;
                    Some(aws_sdk_secretsmanager::Client::new(&aws))
                }
                CredentialsSource::Given(_) => None,
            };
            Some(GenesysDirectory::from_config(genesys, secrets.as_ref()).await?)
        }
    };
    let asked = [
        (NameKind::Flow, &args.flows),
        (NameKind::Milestone, &args.milestones),
        (NameKind::Outcome, &args.outcomes),
    ];
    let mut unnamed = 0;
    for (kind, ids) in asked {
        for id in ids {
            let answer = match (config.fixed.get(id), &directory) {
                (Some(name), _) => Ok(format!("{name} (FLOW_METRICS_NAMES)")),
                (None, Some(directory)) => directory
                    .look_up(kind, id)
                    .await
                    .map(|name| name.to_string())
                    .map_err(|error| error.to_string()),
                (None, None) => Err(
                    "not in FLOW_METRICS_NAMES, and the Genesys API is not configured \
                                     (GENESYS_REGION and an OAuth client)"
                        .to_owned(),
                ),
            };
            match answer {
                Ok(name) => println!("{kind} {id}: {name}"),
                Err(why) => {
                    unnamed += 1;
                    println!("{kind} {id}: not named: {why}");
                }
            }
        }
    }
    Ok(if unnamed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn sample_event(args: &SampleEventArgs) -> anyhow::Result<ExitCode> {
    // Milliseconds, as Genesys writes them.
    let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond())?;
    let conversation = args.conversation.clone().unwrap_or_else(|| {
        let hex = format!("{:032x}", fastrand::u128(..));
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    });
    let event = match args.source {
        SampleSource::Attribute => {
            let key = format!("{}Metric_{}({now})", args.flow, args.metric);
            if let flow_metrics::attribute::Attribute::Invalid(reason) =
                flow_metrics::attribute::classify(&key)
            {
                anyhow::bail!("{key:?} is not a valid metric key: {reason}");
            }
            let attributes = serde_json::Map::from_iter([(key, serde_json::json!("1"))]);
            flow_metrics::event::attributes_event_json(&conversation, now, &attributes)
        }
        SampleSource::Outcome => flow_metrics::flow_outcome::flow_outcome_event_json(
            &conversation,
            &args.flow,
            &args.metric,
            &args.metric,
            now - SignedDuration::from_secs(2),
            now,
        ),
    };
    println!("{event}");
    Ok(ExitCode::SUCCESS)
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

    /// `eval "$(scripts/operator-env.sh)"` exports the deployed function's environment: the
    /// operator commands then take its lease, retention and stale age, not their defaults.
    #[test]
    fn operator_commands_take_the_functions_timing_from_its_variables() {
        use clap::CommandFactory;
        let command = Cli::command();
        let env_of = |subcommand: &str, arg: &str| {
            let sub = command.find_subcommand(subcommand).expect(subcommand);
            let arg = sub.get_arguments().find(|a| a.get_id() == arg).expect(arg);
            arg.get_env().and_then(|name| name.to_str()).map(str::to_owned)
        };
        for (subcommand, arg, variable) in [
            ("drain", "lease", "FLOW_METRICS_LEASE"),
            ("drain", "retention", "FLOW_METRICS_RETENTION"),
            ("replay", "lease", "FLOW_METRICS_LEASE"),
            ("replay", "retention", "FLOW_METRICS_RETENTION"),
            ("replay", "max_key_age", "FLOW_METRICS_MAX_KEY_AGE"),
            ("redrive", "lease", "FLOW_METRICS_LEASE"),
        ] {
            assert_eq!(
                env_of(subcommand, arg).as_deref(),
                Some(variable),
                "{subcommand} --{arg}"
            );
        }
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

    #[test]
    fn defaults_are_the_library_defaults() {
        let Command::Replay(replay) = Cli::parse_from(["flow-metrics", "replay"]).command else {
            panic!("replay");
        };
        assert_eq!(replay.max_key_age, flow_metrics::count::DEFAULT_MAX_KEY_AGE);
        assert_eq!(replay.lease, flow_metrics::timing::DEFAULT_LEASE);
        assert_eq!(
            replay.retention,
            flow_metrics::ledger::dynamodb::DEFAULT_RETENTION
        );
        let Command::Redrive(redrive) = Cli::parse_from(["flow-metrics", "redrive"]).command else {
            panic!("redrive");
        };
        assert_eq!(redrive.lease, flow_metrics::timing::DEFAULT_LEASE);
    }
}
