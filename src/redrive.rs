//! Redrive: delivering keys whose claims were left stuck (claimed, lease expired, never
//! confirmed), with the same protocol as live events.
//!
//! Each stuck key goes back through the pipeline as an attributes event of its conversation,
//! timed at the event that first claimed it (so the stale rule judges it as it did then). The
//! ledger's conditional claim decides: a key that the Lambda re-claims or delivers meanwhile is
//! skipped, so a redrive is safe while the Lambda runs and a second redrive sends nothing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::event::{AttributesEvent, Event};
use crate::ledger::Ledger;
use crate::ledger::dynamodb::LedgerItem;
use crate::pipeline::{BatchReport, BatchTime, Pipeline};
use crate::sink::Sink;

/// A key whose claim is stuck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckKey {
    pub conversation_id: String,
    pub key: String,
    /// The time of the event that first claimed it.
    pub first_seen: Timestamp,
}

impl From<&LedgerItem> for StuckKey {
    fn from(item: &LedgerItem) -> Self {
        StuckKey {
            conversation_id: item.conversation_id.clone(),
            key: item.attribute_key.clone(),
            first_seen: Timestamp::from_millisecond(item.first_seen_ms).unwrap_or(Timestamp::UNIX_EPOCH),
        }
    }
}

/// Claims, pushes and confirms the stuck keys; one event per (conversation, first-seen time).
pub async fn redrive<L: Ledger, S: Sink>(
    pipeline: &Pipeline<L, S>,
    stuck: &[StuckKey],
    time: BatchTime,
) -> BatchReport {
    let mut events: BTreeMap<(&str, Timestamp), Vec<Cow<'_, str>>> = BTreeMap::new();
    for key in stuck {
        events
            .entry((key.conversation_id.as_str(), key.first_seen))
            .or_default()
            .push(Cow::Borrowed(key.key.as_str()));
    }
    let events = events
        .into_iter()
        .map(|((conversation_id, event_time), mut attribute_keys)| {
            attribute_keys.sort_unstable();
            attribute_keys.dedup();
            Ok(Event::Attributes(AttributesEvent {
                conversation_id: Cow::Borrowed(conversation_id),
                event_time,
                attribute_keys,
                // Only the stuck keys: how long after its flow's first key each came is unknown.
                complete: false,
            }))
        })
        .collect();
    pipeline.process_decoded(events, time).await
}
