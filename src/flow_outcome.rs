//! The second source: `v2.detail.events.conversation.{id}.flow.outcome` events, Genesys's own
//! flow milestones and outcomes, read into countable keys.
//!
//! Each milestone reached is one key, `milestone:<milestoneId>:<milestoneTime ms>`, at the
//! milestone's time; the outcome is one key, `outcome:<flowOutcomeId>:<flowOutcomeStartTime ms>`,
//! at its end time (its start when the end is missing), with its value and duration. The keys
//! name ids; names are looked up as occurrences are pushed (see [`crate::names`]). Every body field is optional in Genesys's schema: an
//! event with neither milestones nor an outcome counts nothing, and a milestone or outcome that
//! lacks what its key needs is reported as invalid, never counted.

use std::borrow::Cow;

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde::de::{Deserializer as _, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::attribute::{InvalidKey, excerpt};
use crate::key::{MetricKey, Source};

/// The `detail-type` of a flow outcome event. Genesys keeps the literal `{id}` in it.
pub const FLOW_OUTCOME_DETAIL_TYPE: &str = "v2.detail.events.conversation.{id}.flow.outcome";

/// A `v2.detail.events.conversation.{id}.flow.outcome` event.
#[derive(Debug, PartialEq, Eq)]
pub struct FlowOutcomeEvent<'a> {
    pub conversation_id: Cow<'a, str>,
    /// When Genesys says the event happened: the clock for the stale rule.
    pub event_time: Timestamp,
    /// The milestones and the outcome it reports, each once, in key order; or, for one that
    /// lacks what its key needs, the key as far as known (`?` for what is missing) and why.
    /// One list sized once: an event may list thousands of milestones.
    pub marks: Vec<Marked<'a>>,
}

/// A milestone or outcome: its mark, or its key as far as known and why it cannot be counted.
pub type Marked<'a> = Result<FlowMark<'a>, (String, InvalidKey)>;

/// A milestone reached, or the flow's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMark<'a> {
    pub key: String,
    pub flow_id: Cow<'a, str>,
    /// The milestone's or outcome's id.
    pub id: Cow<'a, str>,
    pub time: Timestamp,
    /// `None` for a milestone. Boxed: a mark is mostly a milestone, and an event may list many.
    pub outcome: Option<Box<OutcomeFacts<'a>>>,
}

/// What an outcome says besides its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeFacts<'a> {
    pub value: Option<Cow<'a, str>>,
    pub duration: Option<SignedDuration>,
}

impl FlowMark<'_> {
    pub fn metric_key(&self) -> MetricKey<'_> {
        MetricKey {
            key: &self.key,
            flow: &self.flow_id,
            metric: &self.id,
            time: self.time,
            source: match &self.outcome {
                None => Source::Milestone,
                Some(facts) => Source::Outcome {
                    value: facts.value.as_deref(),
                    duration: facts.duration,
                },
            },
        }
    }
}

/// The body fields this tool reads; every one optional, as in Genesys's schema.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FlowOutcomeBody<'a> {
    #[serde(default)]
    pub event_time: Option<i64>,
    #[serde(default, borrow)]
    pub conversation_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    flow_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    flow_outcome_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    flow_outcome_value: Option<Cow<'a, str>>,
    #[serde(default)]
    flow_outcome_start_time: Option<i64>,
    #[serde(default)]
    flow_outcome_end_time: Option<i64>,
    /// Read element by element into marks, never held as a list of its own.
    #[serde(default, borrow)]
    flow_milestones: Option<&'a RawValue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MilestoneBody<'a> {
    #[serde(default, borrow)]
    milestone_id: Option<Cow<'a, str>>,
    #[serde(default)]
    milestone_time: Option<i64>,
}

/// A time in epoch milliseconds, or why it is not one.
fn millis(field: &'static str, ms: i64) -> Result<Timestamp, InvalidKey> {
    Timestamp::from_millisecond(ms).map_err(|error| InvalidKey::ImpossibleDateTime {
        text: format!("{field} {ms}"),
        reason: error.to_string(),
    })
}

/// A key's part, or `?` where it is missing.
struct OrUnknown<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for OrUnknown<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(part) => part.fmt(f),
            None => f.write_str("?"),
        }
    }
}

/// Counts the elements of a JSON array without keeping them.
struct CountElements;

impl<'de> Visitor<'de> for CountElements {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of milestones")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut count = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            count += 1;
        }
        Ok(count)
    }
}

/// Calls a function with each element of a JSON array of milestones.
struct EachMilestone<F>(F);

impl<'de, F: FnMut(MilestoneBody<'de>)> Visitor<'de> for EachMilestone<F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a list of milestones")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(milestone) = seq.next_element()? {
            (self.0)(milestone);
        }
        Ok(())
    }
}

impl<'a> FlowOutcomeBody<'a> {
    /// The milestones and outcome of the body, each a mark or why it cannot be one; an error
    /// if `flowMilestones` is not a list of milestone objects.
    pub(crate) fn into_marks(self) -> Result<Vec<Marked<'a>>, serde_json::Error> {
        let milestones = self.flow_milestones.map(RawValue::get).unwrap_or("null");
        // Counted first (no allocation), so that the list is allocated once at its size.
        let count = serde_json::Deserializer::from_str(milestones).deserialize_any(CountElements)?;
        let mut marks = Vec::with_capacity(count + 1);
        let flow_id = self.flow_id;
        serde_json::Deserializer::from_str(milestones).deserialize_any(EachMilestone(
            |milestone: MilestoneBody<'a>| {
                let key = format!(
                    "milestone:{}:{}",
                    OrUnknown(milestone.milestone_id.as_deref()),
                    OrUnknown(milestone.milestone_time)
                );
                marks.push(match milestone_mark(flow_id.clone(), milestone) {
                    Ok(mark) => Ok(FlowMark { key, ..mark }),
                    Err(reason) => Err((key, reason)),
                });
            },
        ))?;
        let outcome = Outcome {
            id: self.flow_outcome_id,
            value: self.flow_outcome_value,
            start_ms: self.flow_outcome_start_time,
            end_ms: self.flow_outcome_end_time,
        };
        if outcome.reported() {
            let key = format!(
                "outcome:{}:{}",
                OrUnknown(outcome.id.as_deref()),
                OrUnknown(outcome.start_ms)
            );
            marks.push(match outcome_mark(flow_id, outcome) {
                Ok(mark) => Ok(FlowMark { key, ..mark }),
                Err(reason) => Err((key, reason)),
            });
        }
        // Each key once (Genesys may list a milestone twice), in key order as attribute keys are.
        marks.sort_unstable_by(|a, b| mark_key(a).cmp(mark_key(b)));
        marks.dedup_by(|a, b| mark_key(a) == mark_key(b));
        Ok(marks)
    }
}

fn mark_key<'k>(mark: &'k Marked<'_>) -> &'k str {
    match mark {
        Ok(mark) => &mark.key,
        Err((key, _)) => key,
    }
}

/// The outcome fields of a body.
struct Outcome<'a> {
    id: Option<Cow<'a, str>>,
    value: Option<Cow<'a, str>>,
    start_ms: Option<i64>,
    end_ms: Option<i64>,
}

impl Outcome<'_> {
    fn reported(&self) -> bool {
        self.id.is_some() || self.value.is_some() || self.start_ms.is_some() || self.end_ms.is_some()
    }
}

/// A field a key needs, or why the key cannot be had.
fn present<T>(field: Option<T>, name: &'static str) -> Result<T, InvalidKey> {
    field.ok_or(InvalidKey::MissingField(name))
}

/// Longest id accepted, in bytes (Genesys's are 36-character UUIDs): keys stay well within
/// DynamoDB's 1,024-byte sort key, as attribute keys do.
pub const MAX_ID_BYTES: usize = 200;

/// An id a key needs: present, not empty, short and printable.
fn named<'a>(id: Option<Cow<'a, str>>, name: &'static str) -> Result<Cow<'a, str>, InvalidKey> {
    let id = present(id.filter(|id| !id.is_empty()), name)?;
    if id.len() > MAX_ID_BYTES || id.chars().any(char::is_control) {
        return Err(InvalidKey::NotAnId {
            field: name,
            id: excerpt(&id),
        });
    }
    Ok(id)
}

/// A milestone's mark, its key left for the caller to set (an empty `String` costs nothing).
fn milestone_mark<'a>(
    flow_id: Option<Cow<'a, str>>,
    milestone: MilestoneBody<'a>,
) -> Result<FlowMark<'a>, InvalidKey> {
    let id = named(milestone.milestone_id, "milestoneId")?;
    let ms = present(milestone.milestone_time, "milestoneTime")?;
    Ok(FlowMark {
        key: String::new(),
        time: millis("milestoneTime", ms)?,
        flow_id: named(flow_id, "flowId")?,
        id,
        outcome: None,
    })
}

/// The outcome's mark, its key left for the caller to set.
fn outcome_mark<'a>(flow_id: Option<Cow<'a, str>>, outcome: Outcome<'a>) -> Result<FlowMark<'a>, InvalidKey> {
    let id = named(outcome.id, "flowOutcomeId")?;
    let start_ms = present(outcome.start_ms, "flowOutcomeStartTime")?;
    let start = millis("flowOutcomeStartTime", start_ms)?;
    let end = outcome
        .end_ms
        .map(|ms| millis("flowOutcomeEndTime", ms))
        .transpose()?;
    Ok(FlowMark {
        key: String::new(),
        flow_id: named(flow_id, "flowId")?,
        id,
        time: end.unwrap_or(start),
        outcome: Some(Box::new(OutcomeFacts {
            value: outcome.value,
            duration: end.map(|end| end.duration_since(start)),
        })),
    })
}

/// A flow outcome event as Genesys's EventBridge integration sends it (trimmed of fields this
/// tool never reads): `flow_id`'s outcome `outcome_id` (`SUCCESS`, from `started` to `ended`)
/// with one milestone reached at `started`; for testing a deployment with a fresh event.
pub fn flow_outcome_event_json(
    conversation: &str,
    flow_id: &str,
    milestone_id: &str,
    outcome_id: &str,
    started: Timestamp,
    ended: Timestamp,
) -> String {
    serde_json::json!({
        "version": "0",
        "id": format!("{conversation}-{}", ended.as_millisecond()),
        "detail-type": FLOW_OUTCOME_DETAIL_TYPE,
        "source": "aws.partner/genesys.com/cloud/6a3b6c1e-0b4e-4f3e-9a57-2d1f0c8e7a11/flow-metrics",
        "account": "123456789012",
        "time": ended.to_string(),
        "region": "eu-west-1",
        "resources": [],
        "detail": {
            "topicName": format!("v2.detail.events.conversation.{conversation}.flow.outcome"),
            "version": "2",
            "eventBody": {
                "eventTime": ended.as_millisecond(),
                "conversationId": conversation,
                "participantId": "0d9a3e44-1c3b-4f0e-8f6e-2f4b5c6d7e8f",
                "flowType": "INBOUNDCALL",
                "flowId": flow_id,
                "flowVersion": "1.0",
                "flowOutcomeId": outcome_id,
                "flowOutcomeValue": "SUCCESS",
                "flowOutcomeStartTime": started.as_millisecond(),
                "flowOutcomeEndTime": ended.as_millisecond(),
                "flowMilestones": [{"milestoneId": milestone_id, "milestoneTime": started.as_millisecond()}]
            },
            "metadata": {"CorrelationId": "5f6c8f0e-2b7d-4f7e-b3c1-0f4a2b8d9c11"},
            "timestamp": ended.to_string()
        }
    })
    .to_string()
}
