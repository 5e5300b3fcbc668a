//! The audit's and the redrive's parallel scan of the ledger table: which items to read
//! ([`ScanFilter`], applied by DynamoDB as a filter expression, and never the names cache's), the segments read at once, and
//! what the scan read and cost ([`ScanTotals`]).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use jiff::Timestamp;

use super::{DynamoDbStore, LedgerItem, schema};
use crate::ledger::{KeyLedger, LedgerError};

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
            ("#source", schema::SOURCE),
            ("#value", schema::OUTCOME_VALUE),
            ("#duration", schema::DURATION_MS),
            ("#doubled", schema::POSSIBLY_DOUBLED),
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
        // The names cache shares the table; its items are no keys.
        condition(
            "#pk <> :names",
            ":names",
            AttributeValue::S(schema::NAMES_PARTITION.to_owned()),
        );
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

impl KeyLedger<DynamoDbStore> {
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
        let producers = futures::future::try_join_all((0..segments).map(|segment| {
            self.store()
                .scan_segment(segment, segments, &expression, sender.clone())
        }));
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
}

impl DynamoDbStore {
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
            .projection_expression(
                "#pk, #sk, #flow, #metric, #time, #seen, #state, #lease, #source, #value, #duration, #doubled",
            )
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
                    serde_dynamo::from_item(item.clone()).map_err(|error| self.item_error("Scan", error))
                })
                .collect::<Result<Vec<LedgerItem>, LedgerError>>()?;
            if pages_out.send((items, capacity)).await.is_err() {
                break;
            }
        }
        Ok(())
    }
}
