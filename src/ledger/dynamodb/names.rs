//! The names cache in the ledger table, so that names belong to the fleet: one item per id in a
//! partition of its own, read with one `Query` (every page) at cold start and written with a
//! plain `PutItem` after each fetch from Genesys (the last writer wins).
//!
//! Item layout: partition key [`schema::NAMES_PARTITION`] (`#names`: the events' decoding refuses
//! a conversation id that starts with `#`, so it can never be a conversation's partition), sort
//! key `<kind>:<id>` (`flow:…`, `milestone:…`, `outcome:…`), `name`, `fetched_at_ms`, and the
//! table's TTL `expires_at` [`NAMES_KEPT`] after the fetch. The audit's and the redrive's scan
//! leave the partition out.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};

use super::schema;
use super::sdk_error::classify_error;
use crate::names::NameKind;
use crate::names::store::{NameStore, NameStoreError, StoredName};

/// How long a name's item outlives its fetch: an id no instance has used (and so refreshed)
/// for this long is forgotten by the table's TTL.
pub const NAMES_KEPT: SignedDuration = SignedDuration::from_hours(7 * 24);

/// The names kept in a ledger table.
#[derive(Debug, Clone)]
pub struct DynamoDbNameStore {
    client: Client,
    table: String,
}

impl DynamoDbNameStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoDbNameStore {
            client,
            table: table.into(),
        }
    }

    async fn query_all(&self) -> Result<Vec<StoredName>, NameStoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :names")
            .expression_attribute_names("#pk", schema::PARTITION_KEY)
            .expression_attribute_values(":names", AttributeValue::S(schema::NAMES_PARTITION.to_owned()))
            .into_paginator()
            .send();
        let now = Timestamp::now();
        let mut names = Vec::new();
        while let Some(page) = pages.next().await {
            let page =
                page.map_err(|error| request_error("Query", classify_error("Query", &self.table, error)))?;
            for item in page.items() {
                match read_item(item) {
                    // DynamoDB deletes expired items some time after they expire.
                    Some((name, expires_at)) if expires_at > now.as_second() => names.push(name),
                    Some(_) => {}
                    None => tracing::warn!(
                        table = self.table,
                        key = ?item.get(schema::SORT_KEY),
                        "an item of the names partition is not a name; it is skipped"
                    ),
                }
            }
        }
        Ok(names)
    }

    async fn put_one(&self, name: &StoredName) -> Result<(), NameStoreError> {
        let fetched_ms = name.fetched_at.as_millisecond();
        let expires_at = name
            .fetched_at
            .saturating_add(NAMES_KEPT)
            .unwrap_or(Timestamp::MAX)
            .as_second();
        self.client
            .put_item()
            .table_name(&self.table)
            .item(
                schema::PARTITION_KEY,
                AttributeValue::S(schema::NAMES_PARTITION.to_owned()),
            )
            .item(
                schema::SORT_KEY,
                AttributeValue::S(format!("{}:{}", name.kind, name.id)),
            )
            .item(schema::NAME, AttributeValue::S(name.name.clone()))
            .item(schema::FETCHED_AT_MS, AttributeValue::N(fetched_ms.to_string()))
            .item(schema::TIME_TO_LIVE, AttributeValue::N(expires_at.to_string()))
            .send()
            .await
            .map_err(|error| request_error("PutItem", classify_error("PutItem", &self.table, error)))?;
        Ok(())
    }
}

fn request_error(operation: &'static str, error: crate::ledger::LedgerError) -> NameStoreError {
    NameStoreError::Request {
        operation,
        message: error.to_string(),
    }
}

/// A name item's name and expiry (epoch seconds); `None` if it is not one.
fn read_item(item: &HashMap<String, AttributeValue>) -> Option<(StoredName, i64)> {
    let text = |attribute: &str| item.get(attribute).and_then(|value| value.as_s().ok());
    let number = |attribute: &str| {
        item.get(attribute)
            .and_then(|value| value.as_n().ok())
            .and_then(|number| number.parse::<i64>().ok())
    };
    let (kind, id) = text(schema::SORT_KEY)?.split_once(':')?;
    let kind = NameKind::parse(kind)?;
    let name = text(schema::NAME)?.clone();
    let fetched_at = Timestamp::from_millisecond(number(schema::FETCHED_AT_MS)?).ok()?;
    let expires_at = number(schema::TIME_TO_LIVE)?;
    let stored = StoredName {
        kind,
        id: id.to_owned(),
        name,
        fetched_at,
    };
    Some((stored, expires_at))
}

impl NameStore for DynamoDbNameStore {
    fn load_all(&self) -> BoxFuture<'_, Result<Vec<StoredName>, NameStoreError>> {
        Box::pin(self.query_all())
    }

    fn put<'a>(&'a self, name: &'a StoredName) -> BoxFuture<'a, Result<(), NameStoreError>> {
        Box::pin(self.put_one(name))
    }
}
