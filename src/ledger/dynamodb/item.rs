//! The ledger table's items: the attribute names shared with the cdk stack through
//! `table.json`, the claim item a `PutItem` writes, and the two ways items are read back (the
//! protocol's view of a key, and the audit's and redrive's whole item).

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

use crate::key::Source;
use crate::ledger::store::{KeyRecord, NewClaim};

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
    pub const SOURCE: &str = "source";
    pub const OUTCOME_VALUE: &str = "outcome_value";
    pub const DURATION_MS: &str = "duration_ms";
    /// Set when a claim is released after a push whose answer never came: the sink may hold it.
    pub const MAYBE_DELIVERED: &str = "maybe_delivered";
    /// Set when a key was delivered by a push that may have counted it twice.
    pub const POSSIBLY_DOUBLED: &str = "possibly_doubled";
    /// The partition of the names cache (see `names.rs`): no conversation id starts with `#`.
    pub const NAMES_PARTITION: &str = "#names";
    /// A cached name, and when it was fetched (epoch ms).
    pub const NAME: &str = "name";
    pub const FETCHED_AT_MS: &str = "fetched_at_ms";
    pub const CLAIMED: &str = "claimed";
    pub const DELIVERED: &str = "delivered";
    /// The shared definition itself.
    pub const TABLE_JSON: &str = include_str!("../table.json");
}

/// A claim as written by `PutItem`.
#[derive(Clone, Copy, Serialize)]
pub(super) struct ClaimItem<'a> {
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
    /// Left out for attribute keys, as in items written before milestones and outcomes.
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome_value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<i64>,
}

impl<'a> ClaimItem<'a> {
    /// The item claiming `claim`'s key, expiring `retention` after the key's time.
    pub(super) fn new(claim: &NewClaim<'a>, retention: SignedDuration) -> Self {
        let metric = claim.key;
        ClaimItem {
            conversation_id: claim.conversation_id,
            attribute_key: metric.key,
            flow: metric.flow,
            metric: metric.metric,
            key_time_ms: metric.time.as_millisecond(),
            first_seen_ms: claim.first_seen_ms,
            state: schema::CLAIMED,
            claim_token: &claim.token.0,
            lease_expires_ms: claim.lease_expires_ms,
            expires_at: metric.time.as_second().saturating_add(retention.as_secs()),
            source: match metric.source {
                Source::Attribute => None,
                other => Some(other.name()),
            },
            outcome_value: match metric.source {
                Source::Outcome { value, .. } => value,
                _ => None,
            },
            duration_ms: match metric.source {
                Source::Outcome { duration, .. } => duration.map(|duration| duration.as_millis() as i64),
                _ => None,
            },
        }
    }
}

/// What the protocol reads of an item.
#[derive(Deserialize)]
pub(super) struct KeyState {
    #[serde(default)]
    pub(super) attribute_key: String,
    state: String,
    claim_token: Option<String>,
    lease_expires_ms: Option<i64>,
    #[serde(default)]
    maybe_delivered: bool,
}

impl From<KeyState> for KeyRecord {
    fn from(item: KeyState) -> Self {
        KeyRecord {
            delivered: item.state == schema::DELIVERED,
            token: item.claim_token,
            lease_expires_ms: item.lease_expires_ms,
            maybe_delivered: item.maybe_delivered,
        }
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
    /// `milestone` or `outcome`; absent for attribute keys.
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub outcome_value: Option<String>,
    #[serde(default)]
    pub duration_ms: Option<i64>,
    /// Delivered by a push that may have counted it twice (see "Exactly once" in the README).
    #[serde(default)]
    pub possibly_doubled: bool,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use aws_sdk_dynamodb::types::AttributeValue;
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
        assert_eq!(attributes["source"], schema::SOURCE);
        assert_eq!(attributes["outcomeValue"], schema::OUTCOME_VALUE);
        assert_eq!(attributes["durationMs"], schema::DURATION_MS);
        assert_eq!(attributes["maybeDelivered"], schema::MAYBE_DELIVERED);
        assert_eq!(attributes["possiblyDoubled"], schema::POSSIBLY_DOUBLED);
        assert_eq!(table["states"]["claimed"], schema::CLAIMED);
        assert_eq!(table["states"]["delivered"], schema::DELIVERED);
    }

    fn written(item: ClaimItem<'_>) -> BTreeSet<String> {
        let item: std::collections::HashMap<String, AttributeValue> =
            serde_dynamo::to_item(item).expect("item");
        item.into_keys().collect()
    }

    /// Every attribute the shared definition names, but those in `absent`.
    fn defined_but(absent: &[&str]) -> BTreeSet<String> {
        let table = shared_definition();
        let mut defined: BTreeSet<String> = table["attributes"]
            .as_object()
            .expect("attributes")
            .values()
            .filter_map(Value::as_str)
            .filter(|name| !absent.contains(name))
            .map(str::to_owned)
            .collect();
        defined.extend([schema::PARTITION_KEY, schema::SORT_KEY, schema::TIME_TO_LIVE].map(str::to_owned));
        defined
    }

    #[test]
    fn a_claim_item_writes_exactly_the_defined_attributes() {
        let attribute = ClaimItem {
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
            source: None,
            outcome_value: None,
            duration_ms: None,
        };
        // Attribute keys' items are as they were before milestones and outcomes existed.
        assert_eq!(
            written(attribute),
            defined_but(&[
                schema::DELIVERED_AT_MS,
                schema::SOURCE,
                schema::OUTCOME_VALUE,
                schema::DURATION_MS,
                schema::MAYBE_DELIVERED,
                schema::POSSIBLY_DOUBLED,
            ])
        );
        let outcome = ClaimItem {
            attribute_key: "outcome:o:1",
            source: Some("outcome"),
            outcome_value: Some("SUCCESS"),
            duration_ms: Some(4395),
            ..attribute
        };
        assert_eq!(
            written(outcome),
            defined_but(&[
                schema::DELIVERED_AT_MS,
                schema::MAYBE_DELIVERED,
                schema::POSSIBLY_DOUBLED
            ])
        );
    }
}
