//! What several commands share: the ledger table they name, the sink they send to (and why a
//! table run must name it), the names directory and the DataDog sink as the environment
//! configures them, and scanning the table with progress.

use std::io::{self, IsTerminal as _};
use std::num::NonZeroUsize;
use std::sync::Arc;

use anyhow::Context as _;
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::process_env;
use crate::ledger::DynamoDbLedger;
use crate::ledger::dynamodb::DynamoDbNameStore;
use crate::ledger::dynamodb::{LedgerItem, ScanFilter, ScanTotals};
use crate::names::store::NameStore;
use crate::names::{CredentialsSource, Directory, Names, NamesConfig};
use crate::sink::DataDogSink;
use crate::sink::datadog::{ApiKey, ApiKeySource, DataDogConfig};

use super::Cli;

/// The ledger table. Credentials and region come from the standard AWS chain.
#[derive(Debug, clap::Args)]
pub struct TableArgs {
    /// The ledger table.
    #[arg(long, env = "FLOW_METRICS_TABLE")]
    pub table: Option<String>,

    /// A DynamoDB endpoint such as an emulator's (default: AWS, or AWS_ENDPOINT_URL).
    #[arg(long)]
    pub endpoint_url: Option<String>,
}

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

/// The sink for a run that records keys in `table`: it must be named, because the table then
/// holds the keys as delivered, and no later run sends them. Exits with a usage error if not.
pub fn sink_for_table(sink: Option<SinkKind>, table: Option<&str>) -> SinkKind {
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

impl TableArgs {
    /// The AWS configuration from the standard chain, and the table name.
    pub async fn aws(&self) -> anyhow::Result<(aws_config::SdkConfig, &str)> {
        let table = self
            .table
            .as_deref()
            .context("--table (or FLOW_METRICS_TABLE) is required")?;
        let config = crate::aws::load_config(self.endpoint_url.as_deref()).await?;
        Ok((config, table))
    }

    /// A DynamoDB client from the standard AWS chain, and the table name.
    pub async fn client(&self) -> anyhow::Result<(aws_sdk_dynamodb::Client, &str)> {
        let (config, table) = self.aws().await?;
        Ok((crate::aws::dynamodb_client(&config), table))
    }
}

/// Names of flows, milestones and outcomes, as the environment configures them.
pub async fn names(table: &TableArgs) -> anyhow::Result<Arc<dyn Directory>> {
    names_from(NamesConfig::from_env(&process_env)?, table, true).await
}

/// Names of flows, milestones and outcomes, as `config` says; with `from_table`, the ledger
/// table's names too (read once, fetched names written back), as the function shares them.
pub async fn names_from(
    config: NamesConfig,
    table: &TableArgs,
    from_table: bool,
) -> anyhow::Result<Arc<dyn Directory>> {
    let secrets = match config.genesys.as_ref().map(|genesys| &genesys.credentials) {
        Some(CredentialsSource::SecretArn(_)) => {
            let aws = crate::aws::load_config(table.endpoint_url.as_deref()).await?;
            Some(aws_sdk_secretsmanager::Client::new(&aws))
        }
        _ => None,
    };
    let store: Option<Arc<dyn NameStore>> = if from_table && config.genesys.is_some() {
        let (client, name) = table.client().await?;
        Some(Arc::new(DynamoDbNameStore::new(client, name)))
    } else {
        None
    };
    Ok(Arc::new(
        Names::from_config(&config, secrets.as_ref(), store).await?,
    ))
}

pub async fn datadog_sink(table: &TableArgs) -> anyhow::Result<DataDogSink> {
    let config = DataDogConfig::from_env(&process_env)?;
    let api_key = match &config.api_key {
        ApiKeySource::Key(key) => key.clone(),
        ApiKeySource::SecretArn(arn) => {
            let aws = crate::aws::load_config(table.endpoint_url.as_deref()).await?;
            ApiKey::from_secret(&aws_sdk_secretsmanager::Client::new(&aws), arn).await?
        }
    };
    Ok(DataDogSink::new(config.with_key(api_key))?)
}
