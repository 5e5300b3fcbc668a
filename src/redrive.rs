//! Redrive: delivering keys whose claims were left stuck (claimed, lease expired, never
//! confirmed), with the same protocol as live events.
//!
//! Each stuck key goes back through the pipeline in an event of its conversation, timed at the
//! event that first claimed it (so the stale rule judges it as it did then): attribute keys in an
//! attributes event, milestones and outcomes in a flow outcome event rebuilt from what the item
//! recorded. The ledger's conditional claim decides: a key that the Lambda re-claims or delivers
//! meanwhile is skipped, so a redrive is safe while the Lambda runs and a second redrive sends
//! nothing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use crate::event::{AttributesEvent, Event};
use crate::flow_outcome::{FlowMark, FlowOutcomeEvent, OutcomeFacts};
use crate::key::Source;
use crate::ledger::Ledger;
use crate::ledger::dynamodb::LedgerItem;
use crate::pipeline::{BatchReport, BatchTime, Pipeline};
use crate::sink::Sink;

/// The keys of one rebuilt event.
#[derive(Default)]
struct Rebuilt<'a> {
    attribute_keys: Vec<Cow<'a, str>>,
    marks: Vec<FlowMark<'a>>,
}

/// The milestone or outcome a ledger item recorded; `None` for an attribute key.
fn flow_mark(item: &LedgerItem) -> Option<FlowMark<'_>> {
    let outcome = match item.source.as_deref() {
        Some(source) if source == Source::Milestone.name() => None,
        // The only other source an item is written with.
        Some(_) => Some(Box::new(OutcomeFacts {
            value: item.outcome_value.as_deref().map(Cow::Borrowed),
            duration: item.duration_ms.map(SignedDuration::from_millis),
        })),
        None => return None,
    };
    Some(FlowMark {
        key: item.attribute_key.clone(),
        flow_id: Cow::Borrowed(&item.flow),
        id: Cow::Borrowed(&item.metric),
        time: millis(item.key_time_ms),
        outcome,
    })
}

fn millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Claims, pushes and confirms the stuck keys; per (conversation, first-seen time), one event
/// of attribute keys and one of milestones and outcomes.
pub async fn redrive<L: Ledger, S: Sink>(
    pipeline: &Pipeline<L, S>,
    stuck: &[LedgerItem],
    time: BatchTime,
) -> BatchReport {
    let mut rebuilt: BTreeMap<(&str, Timestamp), Rebuilt<'_>> = BTreeMap::new();
    for item in stuck {
        let event = rebuilt
            .entry((item.conversation_id.as_str(), millis(item.first_seen_ms)))
            .or_default();
        match flow_mark(item) {
            // A scan gives each (conversation, key) once.
            Some(mark) => event.marks.push(mark),
            None => event.attribute_keys.push(Cow::Borrowed(&item.attribute_key)),
        }
    }
    let mut events = Vec::new();
    for ((conversation_id, event_time), mut keys) in rebuilt {
        if !keys.attribute_keys.is_empty() {
            keys.attribute_keys.sort_unstable();
            keys.attribute_keys.dedup();
            events.push(Ok(Event::Attributes(AttributesEvent {
                conversation_id: Cow::Borrowed(conversation_id),
                event_time,
                attribute_keys: keys.attribute_keys,
                // Only the stuck keys: their flow runs, so how long into its run each came, are unknown.
                complete: false,
            })));
        }
        if !keys.marks.is_empty() {
            events.push(Ok(Event::FlowOutcome(FlowOutcomeEvent {
                conversation_id: Cow::Borrowed(conversation_id),
                event_time,
                marks: keys.marks.into_iter().map(Ok).collect(),
            })));
        }
    }
    pipeline.process_decoded(events, time).await
}
