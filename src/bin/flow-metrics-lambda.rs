//! The AWS Lambda function (`provided.al2023`, built with cargo-lambda). Configuration is read
//! and checked, the API key (and a Genesys OAuth client, if configured) fetched and the clients
//! built once per cold start; each invocation then runs [`flow_metrics::lambda::handle`].
//! Names the fleet already fetched are read from the ledger table once here (one `Query`).
//! Names never stop the function: if the OAuth client cannot be had, it starts with ids in place
//! of names (see [`Names::from_config_or_ids`]).
//!
//! With `FLOW_METRICS_RUN=reconcile` it is the scheduled reconciliation instead: each invocation
//! (the stack's hourly schedule, `{"time": <scheduled time>}`) reconciles the latest hour before
//! it that Genesys's details hold and sends each flow's coverage (see [`flow_metrics::reconcile::scheduled`]).

use std::sync::Arc;

use aws_config::BehaviorVersion;
use flow_metrics::config::process_env;
use flow_metrics::lambda::LambdaConfig;
use flow_metrics::lambda::time_left;
use flow_metrics::ledger::dynamodb::DynamoDbNameStore;
use flow_metrics::ledger::{DeliveredCache, DynamoDbLedger, cache};
use flow_metrics::names::genesys::GenesysDirectory;
use flow_metrics::names::store::NameStore;
use flow_metrics::names::{self, Names, NamesConfig};
use flow_metrics::pipeline::{BatchTime, Pipeline};
use flow_metrics::reconcile::genesys::GenesysAnalytics;
use flow_metrics::reconcile::scheduled::{ScheduledError, ScheduledReconcile, scheduled_time};
use flow_metrics::sink::DataDogSink;
use flow_metrics::sink::datadog::DataDogConfig;
use jiff::Timestamp;
use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};
use serde_json::value::RawValue;
use tokio::time::Instant;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .init();
    if process_env("FLOW_METRICS_RUN").as_deref() == Some("reconcile") {
        return reconcile_on_schedule().await;
    }
    let pipeline = match cold_start().await {
        Ok(pipeline) => pipeline,
        Err(error) => {
            tracing::error!(error = %error, "cannot start");
            return Err(error.into());
        }
    };
    let pipeline = &pipeline;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| async move {
        let time = BatchTime {
            now: Timestamp::now(),
            deadline: Some(deadline(&event.context)),
        };
        flow_metrics::lambda::handle(pipeline, &event.payload, time)
            .await
            .map_err(|error| Diagnostic {
                error_type: error.kind().to_owned(),
                error_message: error.to_string(),
            })
    }))
    .await
}

/// Everything built once: configuration, API key, DynamoDB and HTTP clients.
async fn cold_start() -> anyhow::Result<Pipeline<DeliveredCache<DynamoDbLedger>, DataDogSink>> {
    let config = LambdaConfig::from_env(&process_env)?;
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let api_key = config.datadog.api_key.key(&secrets).await?;
    let dynamodb = flow_metrics::aws::dynamodb_client(&aws);
    // Names the fleet fetched are kept in the ledger table: read once here, written after fetches.
    let store: Arc<dyn NameStore> = Arc::new(DynamoDbNameStore::new(dynamodb.clone(), &config.table));
    // A missing name is never worth an event: without the OAuth client, ids stand in.
    let names =
        Names::from_config_or_ids(&config.names, Some(secrets), Some(store), names::SETUP_RETRY).await;
    let ledger = DynamoDbLedger::new(dynamodb, &config.table)
        .with_lease(config.lease)
        .with_retention(config.retention);
    let ledger = DeliveredCache::new(ledger, cache::DEFAULT_CAPACITY);
    let sink = DataDogSink::new(config.datadog.with_key(api_key))?;
    tracing::info!(table = config.table, "ready");
    Ok(Pipeline::new(ledger, sink)
        .with_max_key_age(config.max_key_age)
        .with_run_gap(config.run_gap)
        .with_names(Arc::new(names)))
}

/// The scheduled reconciliation: built once, then one reconciliation per invocation.
async fn reconcile_on_schedule() -> Result<(), Error> {
    let scheduled = match reconcile_cold_start().await {
        Ok(scheduled) => scheduled,
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "cannot start the scheduled reconciliation"
            );
            return Err(error.into());
        }
    };
    let scheduled = &scheduled;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| async move {
        let failed = |error: ScheduledError| Diagnostic {
            error_type: "ReconcileFailed".to_owned(),
            error_message: error.to_string(),
        };
        let scheduled_at = scheduled_time(event.payload.get(), Timestamp::now()).map_err(failed)?;
        scheduled
            .run(scheduled_at, Timestamp::now(), Some(deadline(&event.context)))
            .await
            .map(|report| serde_json::json!({"interval": report.interval, "coverage": report.coverage()}))
            .map_err(failed)
    }))
    .await
}

/// The reconciliation's clients: the ledger table (read only), Genesys's analytics with the
/// OAuth client, and the DataDog sink.
async fn reconcile_cold_start() -> anyhow::Result<ScheduledReconcile> {
    use anyhow::Context as _;
    let table = process_env("FLOW_METRICS_TABLE").context("FLOW_METRICS_TABLE is not set")?;
    let datadog = DataDogConfig::from_env(&process_env)?;
    let names = NamesConfig::from_env(&process_env)?;
    let genesys = names
        .genesys
        .context("the reconciliation needs the Genesys OAuth client: set GENESYS_REGION and GENESYS_CREDENTIALS_SECRET_ARN")?;
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let api_key = datadog.api_key.key(&secrets).await?;
    let directory = GenesysDirectory::from_config(&genesys, Some(&secrets)).await?;
    Ok(ScheduledReconcile {
        analytics: GenesysAnalytics::new(directory),
        ledger: DynamoDbLedger::new(flow_metrics::aws::dynamodb_client(&aws), &table),
        sink: DataDogSink::new(datadog.with_key(api_key))?,
    })
}

/// The invocation's deadline as an `Instant`.
fn deadline(context: &lambda_runtime::Context) -> Instant {
    let now_ms = u64::try_from(Timestamp::now().as_millisecond()).unwrap_or_default();
    let left = time_left(context.deadline, now_ms);
    tracing::debug!(
        request_id = context.request_id,
        time_left_ms = left.as_millis(),
        "invoked"
    );
    Instant::now() + left
}
