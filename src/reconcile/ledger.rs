//! The ledger's side of a reconciliation: every key of the table whose time is in the interval
//! (a parallel scan, filtered by DynamoDB on the key's time), delivered or still claimed (with
//! its claim's lease expiry, which tells a key in flight from a stuck one).

use jiff::Timestamp;

use super::{Interval, LedgerKey, Subject};
use crate::ledger::dynamodb::{LedgerItem, ScanFilter, ScanTotals, schema};
use crate::ledger::{DynamoDbLedger, LedgerError};

/// The subject of an item: an attribute metric, a milestone, or an outcome with its value.
fn subject(item: &LedgerItem) -> Subject {
    let source = match item.source.as_deref() {
        Some("milestone") => "milestone",
        Some("outcome") => "outcome",
        _ => "attribute",
    };
    Subject {
        source,
        flow: item.flow.clone(),
        metric: item.metric.clone(),
        value: item.outcome_value.clone().filter(|_| source == "outcome"),
    }
}

/// The key an item records.
pub fn ledger_key(item: LedgerItem) -> LedgerKey {
    LedgerKey {
        subject: subject(&item),
        time: Timestamp::from_millisecond(item.key_time_ms).unwrap_or(Timestamp::UNIX_EPOCH),
        delivered: item.state == schema::DELIVERED,
        lease_expires: item
            .lease_expires_ms
            .and_then(|ms| Timestamp::from_millisecond(ms).ok()),
        conversation_id: item.conversation_id,
        key: item.attribute_key,
    }
}

/// The scan filter of `interval`'s keys: DynamoDB filters on the key's time.
pub fn scan_filter(interval: Interval) -> ScanFilter {
    ScanFilter {
        since: Some(interval.start),
        until: Some(interval.end),
        ..ScanFilter::default()
    }
}

/// Reads the keys of `interval` with `segments` parallel scan segments.
pub async fn keys_in(
    ledger: &DynamoDbLedger,
    segments: u32,
    interval: Interval,
) -> Result<(Vec<LedgerKey>, ScanTotals), LedgerError> {
    let mut keys = Vec::new();
    let totals = ledger
        .scan(segments, &scan_filter(interval), |item| {
            keys.push(ledger_key(item))
        })
        .await?;
    Ok((keys, totals))
}
