//! The DynamoDB ledger: one item per (conversation id, attribute key), claimed with a
//! conditional put, confirmed and released with conditional updates.
//!
//! There are no snapshots and no read-modify-write of a conversation. Per event with fresh keys:
//! one eventually consistent `Query` of the conversation's partition skips keys already
//! delivered or validly claimed; each remaining key is claimed by a `PutItem` that only succeeds
//! if the key is unrecorded or its claim's lease has expired. DynamoDB's conditional write is
//! the arbiter: of any number of concurrent callers exactly one wins a key. A put whose condition
//! fails answers with the item it found (`ALL_OLD`; a consistent `GetItem` where an emulator
//! leaves it out), so a holder whose own applied write was retried by the SDK knows it won.
//! Confirm keeps the claim token, so a retried confirm succeeds too.
//!
//! This file holds the store's per-item requests; the items and their attribute names are in
//! `item.rs`, the names cache kept in the same table in `names.rs`, the audit's parallel scan in `scan.rs`, table creation in `table.rs`, and the
//! sorting of SDK errors into transient and permanent in `sdk_error.rs`.

mod item;
pub mod names;
mod scan;
mod sdk_error;
mod table;

use std::collections::HashMap;
use std::error::Error as StdError;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use jiff::SignedDuration;

use self::item::{ClaimItem, KeyState};
pub use self::item::{LedgerItem, schema};
pub use self::names::DynamoDbNameStore;
pub use self::scan::{ScanFilter, ScanTotals};
use self::sdk_error::classify_error;
pub use self::table::create_table;
use super::LedgerError;
use super::store::{ItemStore, KeyLedger, KeyRecord, NewClaim, PutClaim, Update};

/// How long an item outlives its key's time by default. It must exceed the stale age (7 days)
/// so that a key can never be counted again after its item expires.
pub const DEFAULT_RETENTION: SignedDuration = SignedDuration::from_hours(30 * 24);

/// The claim protocol over one DynamoDB table.
pub type DynamoDbLedger = KeyLedger<DynamoDbStore>;

/// One DynamoDB table of per-key items.
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
    retention: SignedDuration,
}

impl KeyLedger<DynamoDbStore> {
    /// A ledger on `table`, with the default lease and retention.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        let store = DynamoDbStore {
            client,
            table: table.into(),
            retention: DEFAULT_RETENTION,
        };
        KeyLedger::with_store(store, crate::timing::DEFAULT_LEASE)
    }

    /// How long an item is kept after its key's time (the table's TTL).
    pub fn with_retention(mut self, retention: SignedDuration) -> Self {
        self.store_mut().retention = retention;
        self
    }

    pub fn table(&self) -> &str {
        &self.store().table
    }
}

impl DynamoDbStore {
    fn item_error(&self, operation: &'static str, error: serde_dynamo::Error) -> LedgerError {
        LedgerError::Permanent {
            operation,
            message: format!(
                "table {} holds an item this version cannot read: {error}",
                self.table
            ),
        }
    }

    /// The key's item, read consistently: what a failed condition met, when the answer did not
    /// carry it.
    async fn current(&self, conversation_id: &str, key: &str) -> Result<Option<KeyRecord>, LedgerError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(
                schema::PARTITION_KEY,
                AttributeValue::S(conversation_id.to_owned()),
            )
            .key(schema::SORT_KEY, AttributeValue::S(key.to_owned()))
            .projection_expression("#state, #token, #lease, #maybe")
            .expression_attribute_names("#state", schema::STATE)
            .expression_attribute_names("#token", schema::CLAIM_TOKEN)
            .expression_attribute_names("#lease", schema::LEASE_EXPIRES_MS)
            .expression_attribute_names("#maybe", schema::MAYBE_DELIVERED)
            .consistent_read(true)
            .send()
            .await
            .map_err(|error| self.error("GetItem", error))?;
        output
            .item
            .map(|item| serde_dynamo::from_item::<_, KeyState>(item).map(KeyRecord::from))
            .transpose()
            .map_err(|error| self.item_error("GetItem", error))
    }

    /// Runs a conditional `UpdateItem` on a key: `Ok(false)` if the condition failed.
    async fn update_if(
        &self,
        key: &Update<'_>,
        condition: &str,
        update: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, LedgerError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                schema::PARTITION_KEY,
                AttributeValue::S(key.conversation_id.to_owned()),
            )
            .key(schema::SORT_KEY, AttributeValue::S(key.key.to_owned()))
            .condition_expression(condition)
            .update_expression(update);
        for (placeholder, name) in names {
            request = request.expression_attribute_names(*placeholder, *name);
        }
        for (placeholder, value) in values {
            request = request.expression_attribute_values(placeholder, value);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(error) => match error.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(false),
                _ => Err(self.error("UpdateItem", error)),
            },
        }
    }

    fn error<E, R>(&self, operation: &'static str, error: SdkError<E, R>) -> LedgerError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        classify_error(operation, &self.table, error)
    }
}

impl ItemStore for DynamoDbStore {
    async fn read(&self, conversation_id: &str) -> Result<HashMap<String, KeyRecord>, LedgerError> {
        let mut items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .projection_expression("#sk, #state, #token, #lease, #maybe")
            .expression_attribute_names("#pk", schema::PARTITION_KEY)
            .expression_attribute_names("#sk", schema::SORT_KEY)
            .expression_attribute_names("#state", schema::STATE)
            .expression_attribute_names("#token", schema::CLAIM_TOKEN)
            .expression_attribute_names("#lease", schema::LEASE_EXPIRES_MS)
            .expression_attribute_names("#maybe", schema::MAYBE_DELIVERED)
            .expression_attribute_values(":pk", AttributeValue::S(conversation_id.to_owned()))
            .consistent_read(false)
            .into_paginator()
            .items()
            .send();
        let mut recorded = HashMap::new();
        while let Some(item) = items.next().await {
            let item = item.map_err(|error| self.error("Query", error))?;
            let mut state: KeyState =
                serde_dynamo::from_item(item).map_err(|error| self.item_error("Query", error))?;
            let key = std::mem::take(&mut state.attribute_key);
            recorded.insert(key, KeyRecord::from(state));
        }
        Ok(recorded)
    }

    async fn put_claim(&self, claim: &NewClaim<'_>, now_ms: i64) -> Result<PutClaim, LedgerError> {
        let item = ClaimItem::new(claim, self.retention);
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
            // What a written claim replaced: an abandoned claim may have been pushed already.
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let error = match put {
            Ok(written) => {
                let replaced = written
                    .attributes
                    .filter(|old| !old.is_empty())
                    .map(|old| serde_dynamo::from_item::<_, KeyState>(old).map(KeyRecord::from))
                    .transpose()
                    .map_err(|error| self.item_error("PutItem", error))?;
                return Ok(PutClaim::Written { replaced });
            }
            Err(error) => error,
        };
        let Some(PutItemError::ConditionalCheckFailedException(failed)) = error.as_service_error() else {
            return Err(self.error("PutItem", error));
        };
        let found = match failed.item() {
            Some(old) => Some(
                serde_dynamo::from_item::<_, KeyState>(old.clone())
                    .map(KeyRecord::from)
                    .map_err(|error| self.item_error("PutItem", error))?,
            ),
            None => self.current(claim.conversation_id, claim.key.key).await?,
        };
        // The item can vanish between the failed put and the read (its TTL): it is free again,
        // and the protocol asks once more.
        Ok(PutClaim::Found(found.unwrap_or(KeyRecord {
            lease_expires_ms: Some(0),
            ..KeyRecord::default()
        })))
    }

    async fn mark_delivered(
        &self,
        key: &Update<'_>,
        now_ms: i64,
        possibly_doubled: bool,
    ) -> Result<bool, LedgerError> {
        // The token stays, so that a retried confirm of a key we delivered finds it ours.
        let mut update = "SET #state = :delivered, #delivered = if_not_exists(#delivered, :now)".to_owned();
        let mut names = vec![
            ("#token", schema::CLAIM_TOKEN),
            ("#state", schema::STATE),
            ("#delivered", schema::DELIVERED_AT_MS),
            ("#lease", schema::LEASE_EXPIRES_MS),
        ];
        let mut values = vec![
            (":token", AttributeValue::S(key.token.0.clone())),
            (":delivered", AttributeValue::S(schema::DELIVERED.to_owned())),
            (":now", AttributeValue::N(now_ms.to_string())),
        ];
        if possibly_doubled {
            update.push_str(", #doubled = :true");
            names.push(("#doubled", schema::POSSIBLY_DOUBLED));
            values.push((":true", AttributeValue::Bool(true)));
        }
        update.push_str(" REMOVE #lease");
        self.update_if(key, "#token = :token", &update, &names, values)
            .await
    }

    async fn release(&self, key: &Update<'_>, maybe_delivered: bool) -> Result<bool, LedgerError> {
        // The item stays, claimed with an expired lease: the next claim of the key takes it.
        let update = if maybe_delivered {
            "SET #lease = :released, #maybe = :true REMOVE #token"
        } else {
            "SET #lease = :released REMOVE #token"
        };
        let mut names = vec![
            ("#token", schema::CLAIM_TOKEN),
            ("#state", schema::STATE),
            ("#lease", schema::LEASE_EXPIRES_MS),
        ];
        let mut values = vec![
            (":token", AttributeValue::S(key.token.0.clone())),
            (":claimed", AttributeValue::S(schema::CLAIMED.to_owned())),
            (":released", AttributeValue::N("0".to_owned())),
        ];
        if maybe_delivered {
            names.push(("#maybe", schema::MAYBE_DELIVERED));
            values.push((":true", AttributeValue::Bool(true)));
        }
        self.update_if(
            key,
            "#state = :claimed AND #token = :token",
            update,
            &names,
            values,
        )
        .await
    }

    fn retention(&self) -> Option<SignedDuration> {
        Some(self.retention)
    }
}
