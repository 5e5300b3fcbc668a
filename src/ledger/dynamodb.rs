//! The DynamoDB ledger: one item per (conversation id, attribute key), claimed with a
//! conditional put, confirmed and released with conditional updates.
//!
//! There are no snapshots and no read-modify-write of a conversation. Per event with fresh keys:
//! one eventually consistent `Query` of the conversation's partition skips keys already
//! delivered or validly claimed; each remaining key is claimed by a `PutItem` that only succeeds
//! if the key is unrecorded or its claim's lease has expired. DynamoDB's conditional write is
//! the arbiter: of any number of concurrent callers exactly one wins a key. The item layout is
//! in `table.json` beside this file, which the cdk stack reads too.

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters as _;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnConsumedCapacity,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
};
use futures::{StreamExt, stream};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Claim, ClaimRequest, ClaimToken, Held, Ledger, LedgerError};
use crate::attribute::MetricKey;
use crate::error_text::with_causes;

/// Attribute names of the ledger table. `table.json` is the shared definition; a test checks
/// that these and the item layout match it.
pub mod schema {
    pub const PARTITION_KEY: &str = "conversation_id";
    pub const SORT_KEY: &str = "attribute_key";
    pub const TIME_TO_LIVE: &str = "expires_at";
    pub const FLOW: &str = "flow";
    pub const METRIC: &str = "metric";
    pub const KEY_TIME_MS: &str = "key_time_ms";
    pub const FIRST_SEEN_MS: &str = "first_seen_ms";
    pub const STATE: &str = "state";
    pub const CLAIM_TOKEN: &str = "claim_token";
    pub const LEASE_EXPIRES_MS: &str = "lease_expires_ms";
    pub const DELIVERED_AT_MS: &str = "delivered_at_ms";
    pub const CLAIMED: &str = "claimed";
    pub const DELIVERED: &str = "delivered";
    /// The shared definition itself.
    pub const TABLE_JSON: &str = include_str!("table.json");
}

/// How long an item outlives its key's time by default. It must exceed the stale age (7 days)
/// so that a key can never be counted again after its item expires.
pub const DEFAULT_RETENTION: SignedDuration = SignedDuration::from_hours(30 * 24);

/// How long a claim holds by default: longer than a Lambda invocation can run with its pushes.
pub const DEFAULT_LEASE: SignedDuration = SignedDuration::from_mins(2);

/// Per-key requests of one event in flight at once.
const KEY_CONCURRENCY: usize = 16;

/// Error codes after which the same request can succeed later.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
    "ReplicatedWriteConflictException",
];

/// The ledger over one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoDbLedger {
    client: Client,
    table: String,
    lease: SignedDuration,
    retention: SignedDuration,
}

/// What a confirm or release changes on a held key, beyond the shared condition.
struct HeldUpdate {
    expression: &'static str,
    names: &'static [(&'static str, &'static str)],
    values: Vec<(&'static str, AttributeValue)>,
}

/// A claim as written by `PutItem`.
#[derive(Serialize)]
struct ClaimItem<'a> {
    conversation_id: &'a str,
    attribute_key: &'a str,
    flow: &'a str,
    metric: &'a str,
    key_time_ms: i64,
    first_seen_ms: i64,
    state: &'static str,
    claim_token: &'a str,
    lease_expires_ms: i64,
    expires_at: i64,
}

/// What the `Query` projects: enough to tell whether a key is taken.
#[derive(Deserialize)]
struct KeyState {
    attribute_key: String,
    state: String,
    lease_expires_ms: Option<i64>,
}

impl DynamoDbLedger {
    /// A ledger on `table`, with the default lease and retention.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDbLedger {
            client,
            table: table.into(),
            lease: DEFAULT_LEASE,
            retention: DEFAULT_RETENTION,
        }
    }

    /// How long a claim holds before another caller may take the key.
    pub fn with_lease(mut self, lease: SignedDuration) -> Self {
        self.lease = lease;
        self
    }

    /// How long an item is kept after its key's time (the table's TTL).
    pub fn with_retention(mut self, retention: SignedDuration) -> Self {
        self.retention = retention;
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Keys of the conversation that are delivered or validly claimed (one paginated Query).
    async fn taken_keys(&self, conversation_id: &str, now_ms: i64) -> Result<HashSet<String>, LedgerError> {
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .projection_expression("#sk, #state, #lease")
            .expression_attribute_names("#pk", schema::PARTITION_KEY)
            .expression_attribute_names("#sk", schema::SORT_KEY)
            .expression_attribute_names("#state", schema::STATE)
            .expression_attribute_names("#lease", schema::LEASE_EXPIRES_MS)
            .expression_attribute_values(":pk", AttributeValue::S(conversation_id.to_owned()))
            .consistent_read(false)
            .into_paginator()
            .items()
            .send();
        let mut taken = HashSet::new();
        while let Some(item) = items.next().await {
            let item = item.map_err(|error| self.error("Query", error))?;
            let key: KeyState = serde_dynamo::from_item(item).map_err(|error| LedgerError::Permanent {
                operation: "Query",
                message: format!(
                    "table {} holds an item this version cannot read: {error}",
                    self.table
                ),
            })?;
            let live_claim =
                key.state == schema::CLAIMED && key.lease_expires_ms.is_some_and(|lease| lease >= now_ms);
            if key.state == schema::DELIVERED || live_claim {
                taken.insert(key.attribute_key);
            }
        }
        Ok(taken)
    }

    /// Claims one key; `Ok(false)` if someone else holds or delivered it.
    async fn put_claim(
        &self,
        request: &ClaimRequest<'_>,
        metric: &MetricKey<'_>,
        token: &ClaimToken,
    ) -> Result<bool, LedgerError> {
        let now_ms = request.now.as_millisecond();
        let item = ClaimItem {
            conversation_id: request.conversation_id,
            attribute_key: metric.key,
            flow: metric.flow,
            metric: metric.metric,
            key_time_ms: metric.time.as_millisecond(),
            first_seen_ms: request.event_time.as_millisecond(),
            state: schema::CLAIMED,
            claim_token: &token.0,
            lease_expires_ms: now_ms
                .saturating_add(i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)),
            expires_at: metric.time.as_second().saturating_add(self.retention.as_secs()),
        };
        let item = serde_dynamo::to_item(item).map_err(|error| LedgerError::Permanent {
            operation: "PutItem",
            message: format!("cannot encode the claim item: {error}"),
        })?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR (#state = :claimed AND #lease < :now)")
            .expression_attribute_names("#pk", schema::PARTITION_KEY)
            .expression_attribute_names("#state", schema::STATE)
            .expression_attribute_names("#lease", schema::LEASE_EXPIRES_MS)
            .expression_attribute_values(":claimed", AttributeValue::S(schema::CLAIMED.to_owned()))
            .expression_attribute_values(":now", AttributeValue::N(now_ms.to_string()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(lost)) => {
                    let holder_state = lost
                        .item()
                        .and_then(|old| old.get(schema::STATE))
                        .and_then(|state| state.as_s().ok());
                    tracing::debug!(
                        conversation_id = request.conversation_id,
                        key = metric.key,
                        ?holder_state,
                        "claim lost: the key is taken"
                    );
                    Ok(false)
                }
                _ => Err(self.error("PutItem", error)),
            },
        }
    }

    async fn indexed_claim(
        &self,
        index: usize,
        request: &ClaimRequest<'_>,
        metric: &MetricKey<'_>,
        token: &ClaimToken,
    ) -> (usize, Result<bool, LedgerError>) {
        (index, self.put_claim(request, metric, token).await)
    }

    /// Runs a conditional `UpdateItem` on a held key: `Ok(false)` if the claim is no longer ours.
    async fn update_held(
        &self,
        held: &Held<'_>,
        key: &str,
        update: &HeldUpdate,
    ) -> Result<bool, LedgerError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                schema::PARTITION_KEY,
                AttributeValue::S(held.conversation_id.to_owned()),
            )
            .key(schema::SORT_KEY, AttributeValue::S(key.to_owned()))
            .condition_expression("#state = :claimed AND #token = :token")
            .update_expression(update.expression)
            .expression_attribute_names("#state", schema::STATE)
            .expression_attribute_names("#token", schema::CLAIM_TOKEN)
            .expression_attribute_values(":claimed", AttributeValue::S(schema::CLAIMED.to_owned()))
            .expression_attribute_values(":token", AttributeValue::S(held.token.0.clone()));
        for (placeholder, name) in update.names {
            request = request.expression_attribute_names(*placeholder, *name);
        }
        for (placeholder, value) in &update.values {
            request = request.expression_attribute_values(*placeholder, value.clone());
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(false),
                _ => Err(self.error("UpdateItem", error)),
            },
        }
    }

    async fn update_keyed<'k>(
        &self,
        held: &Held<'_>,
        key: &'k str,
        update: &HeldUpdate,
    ) -> (&'k str, Result<bool, LedgerError>) {
        (key, self.update_held(held, key, update).await)
    }

    /// Runs `update` on every held key, concurrently; returns the keys no longer ours.
    async fn update_all_held(
        &self,
        held: &Held<'_>,
        update: &HeldUpdate,
    ) -> Result<Vec<String>, LedgerError> {
        // A list of futures rather than a mapping closure: such closures trip rustc's proof that
        // the future is Send (rust-lang/rust#110338).
        let updates: Vec<_> = held
            .keys
            .iter()
            .map(|key| self.update_keyed(held, key, update))
            .collect();
        let results: Vec<(&str, Result<bool, LedgerError>)> = stream::iter(updates)
            .buffer_unordered(KEY_CONCURRENCY)
            .collect()
            .await;
        let mut lost = Vec::new();
        for (key, result) in results {
            if !result? {
                lost.push(key.to_owned());
            }
        }
        Ok(lost)
    }

    fn error<E, R>(&self, operation: &'static str, error: SdkError<E, R>) -> LedgerError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        classify_error(operation, &self.table, error)
    }
}

impl Ledger for DynamoDbLedger {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, LedgerError> {
        let token = ClaimToken::random();
        let taken = self
            .taken_keys(request.conversation_id, request.now.as_millisecond())
            .await?;
        let claims: Vec<_> = request
            .keys
            .iter()
            .enumerate()
            .filter(|(_, metric)| !taken.contains(metric.key))
            .map(|(index, metric)| self.indexed_claim(index, &request, metric, &token))
            .collect();
        let results: Vec<(usize, Result<bool, LedgerError>)> = stream::iter(claims)
            .buffer_unordered(KEY_CONCURRENCY)
            .collect()
            .await;
        let mut won = Vec::new();
        let mut failure = None;
        for (index, result) in results {
            match result {
                Ok(true) => won.push(index),
                Ok(false) => {}
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        won.sort_unstable();
        let Some(error) = failure else {
            return Ok(Claim { token, won });
        };
        // The event will be retried: give back what was won so the retry can take it at once.
        let keys: Vec<&str> = won
            .iter()
            .filter_map(|&index| request.keys.get(index))
            .map(|metric| metric.key)
            .collect();
        let held = Held {
            conversation_id: request.conversation_id,
            keys: &keys,
            token: &token,
            now: request.now,
        };
        if let Err(release_error) = self.release(held).await {
            tracing::warn!(%release_error, "claims of a failed event could not be released; they wait for their lease");
        }
        Err(error)
    }

    async fn confirm(&self, held: Held<'_>) -> Result<Vec<String>, LedgerError> {
        let delivered = HeldUpdate {
            expression: "SET #state = :delivered, #delivered = :now REMOVE #token, #lease",
            names: &[
                ("#delivered", schema::DELIVERED_AT_MS),
                ("#lease", schema::LEASE_EXPIRES_MS),
            ],
            values: vec![
                (":delivered", AttributeValue::S(schema::DELIVERED.to_owned())),
                (":now", AttributeValue::N(held.now.as_millisecond().to_string())),
            ],
        };
        self.update_all_held(&held, &delivered).await
    }

    async fn release(&self, held: Held<'_>) -> Result<(), LedgerError> {
        // The item stays, claimed with an expired lease: the next claim of the key takes it.
        let released = HeldUpdate {
            expression: "SET #lease = :expired REMOVE #token",
            names: &[("#lease", schema::LEASE_EXPIRES_MS)],
            values: vec![(":expired", AttributeValue::N("0".to_owned()))],
        };
        self.update_all_held(&held, &released).await.map(drop)
    }
}

/// One ledger item, as the audit and the redrive read it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LedgerItem {
    pub conversation_id: String,
    pub attribute_key: String,
    pub flow: String,
    pub metric: String,
    pub key_time_ms: i64,
    pub first_seen_ms: i64,
    pub state: String,
    pub lease_expires_ms: Option<i64>,
}

/// Which items a scan returns: DynamoDB applies it as a filter expression, so only matching
/// items cross the network (every item is still read and billed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanFilter {
    /// Key time at or after this.
    pub since: Option<Timestamp>,
    /// Key time before this.
    pub until: Option<Timestamp>,
    pub flow: Option<String>,
    pub metric: Option<String>,
    /// Only claims whose lease expired before this instant.
    pub stuck_at: Option<Timestamp>,
}

/// What a scan read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScanTotals {
    pub items: u64,
    /// Read capacity units the scan consumed.
    pub capacity_units: f64,
}

/// A scan's expression parts, built once and shared by every segment.
#[derive(Debug, Clone, Default)]
struct ScanExpression {
    filter: Option<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl ScanExpression {
    fn new(filter: &ScanFilter) -> Self {
        let mut expression = ScanExpression::default();
        for (placeholder, name) in [
            ("#pk", schema::PARTITION_KEY),
            ("#sk", schema::SORT_KEY),
            ("#flow", schema::FLOW),
            ("#metric", schema::METRIC),
            ("#time", schema::KEY_TIME_MS),
            ("#seen", schema::FIRST_SEEN_MS),
            ("#state", schema::STATE),
            ("#lease", schema::LEASE_EXPIRES_MS),
        ] {
            expression.names.insert(placeholder.to_owned(), name.to_owned());
        }
        let mut conditions = Vec::new();
        let mut condition = |text: &str, placeholder: &str, value: AttributeValue| {
            conditions.push(text.to_owned());
            expression.values.insert(placeholder.to_owned(), value);
        };
        if let Some(since) = filter.since {
            condition(
                "#time >= :since",
                ":since",
                AttributeValue::N(since.as_millisecond().to_string()),
            );
        }
        if let Some(until) = filter.until {
            condition(
                "#time < :until",
                ":until",
                AttributeValue::N(until.as_millisecond().to_string()),
            );
        }
        if let Some(flow) = &filter.flow {
            condition("#flow = :flow", ":flow", AttributeValue::S(flow.clone()));
        }
        if let Some(metric) = &filter.metric {
            condition("#metric = :metric", ":metric", AttributeValue::S(metric.clone()));
        }
        if let Some(stuck_at) = filter.stuck_at {
            condition(
                "#state = :claimed",
                ":claimed",
                AttributeValue::S(schema::CLAIMED.to_owned()),
            );
            condition(
                "#lease < :now",
                ":now",
                AttributeValue::N(stuck_at.as_millisecond().to_string()),
            );
        }
        expression.filter = (!conditions.is_empty()).then(|| conditions.join(" AND "));
        expression
    }
}

impl DynamoDbLedger {
    /// Reads every item matching `filter` with a parallel scan of `segments` segments, all
    /// pages, projecting only what the audit and the redrive need. `each` sees every item.
    pub async fn scan(
        &self,
        segments: u32,
        filter: &ScanFilter,
        mut each: impl FnMut(LedgerItem),
    ) -> Result<ScanTotals, LedgerError> {
        let segments = segments.max(1);
        let expression = ScanExpression::new(filter);
        let (sender, mut receiver) =
            tokio::sync::mpsc::channel::<(Vec<LedgerItem>, f64)>(segments as usize * 2);
        let producers = futures::future::try_join_all(
            (0..segments).map(|segment| self.scan_segment(segment, segments, &expression, sender.clone())),
        );
        drop(sender);
        let consumer = async {
            let mut totals = ScanTotals::default();
            while let Some((items, capacity)) = receiver.recv().await {
                totals.items += items.len() as u64;
                totals.capacity_units += capacity;
                items.into_iter().for_each(&mut each);
            }
            totals
        };
        let (produced, totals) = tokio::join!(producers, consumer);
        produced.map(|_| totals)
    }

    async fn scan_segment(
        &self,
        segment: u32,
        segments: u32,
        expression: &ScanExpression,
        pages_out: tokio::sync::mpsc::Sender<(Vec<LedgerItem>, f64)>,
    ) -> Result<(), LedgerError> {
        let to_i32 = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .segment(to_i32(segment))
            .total_segments(to_i32(segments))
            .projection_expression("#pk, #sk, #flow, #metric, #time, #seen, #state, #lease")
            .set_filter_expression(expression.filter.clone())
            .set_expression_attribute_names(Some(expression.names.clone()))
            .set_expression_attribute_values(
                (!expression.values.is_empty()).then(|| expression.values.clone()),
            )
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| self.error("Scan", error))?;
            let capacity = page
                .consumed_capacity()
                .and_then(|consumed| consumed.capacity_units())
                .unwrap_or_default();
            let items = page
                .items()
                .iter()
                .map(|item| {
                    serde_dynamo::from_item(item.clone()).map_err(|error| LedgerError::Permanent {
                        operation: "Scan",
                        message: format!(
                            "table {} holds an item this version cannot read: {error}",
                            self.table
                        ),
                    })
                })
                .collect::<Result<Vec<LedgerItem>, LedgerError>>()?;
            if pages_out.send((items, capacity)).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}

/// Sorts an SDK error into transient (retry the event later) or permanent (fix something).
fn classify_error<E, R>(operation: &'static str, table: &str, error: SdkError<E, R>) -> LedgerError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let message = match error.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("service error"),
            service.message().unwrap_or_default()
        ),
        None => with_causes(&error),
    };
    match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            LedgerError::Transient { operation, message }
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            if TRANSIENT_CODES.contains(&code) {
                LedgerError::Transient { operation, message }
            } else if code == "ResourceNotFoundException" {
                LedgerError::Permanent {
                    operation,
                    message: format!(
                        "table {table} does not exist in this account and region (or is not active): {message}"
                    ),
                }
            } else {
                LedgerError::Permanent {
                    operation,
                    message: format!("on table {table}: {message}"),
                }
            }
        }
        _ => LedgerError::Permanent {
            operation,
            message: format!("on table {table}: {message}"),
        },
    }
}

/// Creates the ledger table (on-demand, keys and TTL as in `table.json`) if it does not exist,
/// and waits until it is active. An emulator without TTL support gets a warning, not an error.
pub async fn create_table(client: &Client, table: &str) -> Result<(), LedgerError> {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, key_type| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
    };
    let definition_error = |error: aws_sdk_dynamodb::error::BuildError| LedgerError::Permanent {
        operation: "CreateTable",
        message: error.to_string(),
    };
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(schema::PARTITION_KEY).map_err(definition_error)?)
        .attribute_definitions(attribute(schema::SORT_KEY).map_err(definition_error)?)
        .key_schema(key(schema::PARTITION_KEY, KeyType::Hash).map_err(definition_error)?)
        .key_schema(key(schema::SORT_KEY, KeyType::Range).map_err(definition_error)?)
        .send()
        .await;
    match created {
        Ok(_) => tracing::info!(table, "created the ledger table"),
        Err(error)
            if matches!(
                error.as_service_error(),
                Some(CreateTableError::ResourceInUseException(_))
            ) =>
        {
            tracing::info!(table, "the ledger table exists already");
        }
        Err(error) => return Err(classify_error("CreateTable", table, error)),
    }
    client
        .wait_until_table_exists()
        .table_name(table)
        .wait(Duration::from_secs(120))
        .await
        .map_err(|error| LedgerError::Permanent {
            operation: "DescribeTable",
            message: format!("table {table} did not become active: {}", with_causes(&error)),
        })?;
    let time_to_live = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(schema::TIME_TO_LIVE)
        .build()
        .map_err(|error| LedgerError::Permanent {
            operation: "UpdateTimeToLive",
            message: error.to_string(),
        })?;
    if let Err(error) = client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(time_to_live)
        .send()
        .await
    {
        tracing::warn!(
            table,
            error = %with_causes(&error),
            "could not enable TTL on {}; items will not expire (emulators such as dynalite lack TTL)",
            schema::TIME_TO_LIVE
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn shared_definition() -> Value {
        serde_json::from_str(schema::TABLE_JSON).expect("table.json is JSON")
    }

    #[test]
    fn the_names_in_code_are_the_shared_definition() {
        let table = shared_definition();
        assert_eq!(table["partitionKey"], schema::PARTITION_KEY);
        assert_eq!(table["sortKey"], schema::SORT_KEY);
        assert_eq!(table["timeToLive"], schema::TIME_TO_LIVE);
        let attributes = &table["attributes"];
        assert_eq!(attributes["flow"], schema::FLOW);
        assert_eq!(attributes["metric"], schema::METRIC);
        assert_eq!(attributes["keyTimeMs"], schema::KEY_TIME_MS);
        assert_eq!(attributes["firstSeenMs"], schema::FIRST_SEEN_MS);
        assert_eq!(attributes["state"], schema::STATE);
        assert_eq!(attributes["claimToken"], schema::CLAIM_TOKEN);
        assert_eq!(attributes["leaseExpiresMs"], schema::LEASE_EXPIRES_MS);
        assert_eq!(attributes["deliveredAtMs"], schema::DELIVERED_AT_MS);
        assert_eq!(table["states"]["claimed"], schema::CLAIMED);
        assert_eq!(table["states"]["delivered"], schema::DELIVERED);
    }

    #[test]
    fn a_claim_item_writes_exactly_the_defined_attributes() {
        let item = ClaimItem {
            conversation_id: "c",
            attribute_key: "FMetric_M(2026-03-07T04:08:28Z)",
            flow: "F",
            metric: "M",
            key_time_ms: 1,
            first_seen_ms: 2,
            state: schema::CLAIMED,
            claim_token: "t",
            lease_expires_ms: 3,
            expires_at: 4,
        };
        let item: std::collections::HashMap<String, AttributeValue> =
            serde_dynamo::to_item(item).expect("item");
        let written: BTreeSet<&str> = item.keys().map(String::as_str).collect();
        let table = shared_definition();
        let mut defined: BTreeSet<&str> = table["attributes"]
            .as_object()
            .expect("attributes")
            .values()
            .filter_map(Value::as_str)
            .filter(|name| *name != schema::DELIVERED_AT_MS)
            .collect();
        defined.extend([schema::PARTITION_KEY, schema::SORT_KEY, schema::TIME_TO_LIVE]);
        assert_eq!(written, defined);
    }
}
