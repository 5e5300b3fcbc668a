//! The second source: `v2.detail.events.conversation.{id}.flow.outcome` events, Genesys's own
//! flow milestones and outcomes, read into countable keys.
//!
//! Each milestone reached is one key, `milestone:<milestoneId>:<milestoneTime ms>`, at the
//! milestone's time; the outcome is one key, `outcome:<flowOutcomeId>:<flowOutcomeStartTime ms>`,
//! at its end time (its start when the end is missing), with its value and duration. The keys
//! name ids; names are a sink's concern. Every body field is optional in Genesys's schema: an
//! event with neither milestones nor an outcome counts nothing, and a milestone or outcome that
//! lacks what its key needs is reported as invalid, never counted.

use std::borrow::Cow;

use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;

use crate::attribute::InvalidKey;
use crate::key::{MetricKey, Source};

/// The `detail-type` of a flow outcome event. Genesys keeps the literal `{id}` in it.
pub const FLOW_OUTCOME_DETAIL_TYPE: &str = "v2.detail.events.conversation.{id}.flow.outcome";

/// A `v2.detail.events.conversation.{id}.flow.outcome` event.
#[derive(Debug, PartialEq, Eq)]
pub struct FlowOutcomeEvent<'a> {
    pub conversation_id: Cow<'a, str>,
    /// When Genesys says the event happened: the clock for the stale rule.
    pub event_time: Timestamp,
    /// The milestones and the outcome it reports, each once, in the order given.
    pub marks: Vec<FlowMark<'a>>,
    /// Milestones or an outcome it reports without what their key needs, with why.
    pub invalid: Vec<(String, InvalidKey)>,
}

/// A milestone reached, or the flow's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowMark<'a> {
    pub key: String,
    pub flow_id: Cow<'a, str>,
    /// The milestone's or outcome's id.
    pub id: Cow<'a, str>,
    pub time: Timestamp,
    /// `None` for a milestone.
    pub outcome: Option<OutcomeFacts<'a>>,
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
    #[serde(default, borrow)]
    flow_milestones: Option<Vec<MilestoneBody<'a>>>,
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

/// How a key with a missing part is shown in a report.
fn or_unknown<T: ToString>(part: Option<T>) -> String {
    part.map_or_else(|| "?".to_owned(), |part| part.to_string())
}

impl<'a> FlowOutcomeBody<'a> {
    /// The milestones and outcome of the body, with those that cannot be keyed set apart.
    pub(crate) fn into_marks(self) -> (Vec<FlowMark<'a>>, Vec<(String, InvalidKey)>) {
        let mut marks: Vec<FlowMark<'a>> = Vec::new();
        let mut invalid = Vec::new();
        let flow_id = self.flow_id.filter(|id| !id.is_empty());
        for milestone in self.flow_milestones.unwrap_or_default() {
            let key = format!(
                "milestone:{}:{}",
                or_unknown(milestone.milestone_id.as_deref()),
                or_unknown(milestone.milestone_time)
            );
            match milestone_mark(&key, flow_id.clone(), milestone) {
                Ok(_) if marks.iter().any(|known| known.key == key) => {}
                Ok(mark) => marks.push(mark),
                Err(reason) => invalid.push((key, reason)),
            }
        }
        let outcome = Outcome {
            id: self.flow_outcome_id,
            value: self.flow_outcome_value,
            start_ms: self.flow_outcome_start_time,
            end_ms: self.flow_outcome_end_time,
        };
        if outcome.reported() {
            let key = format!(
                "outcome:{}:{}",
                or_unknown(outcome.id.as_deref()),
                or_unknown(outcome.start_ms)
            );
            match outcome_mark(&key, flow_id, outcome) {
                Ok(mark) => marks.push(mark),
                Err(reason) => invalid.push((key, reason)),
            }
        }
        (marks, invalid)
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

/// A milestone's mark under `key`, or why it has none.
fn milestone_mark<'a>(
    key: &str,
    flow_id: Option<Cow<'a, str>>,
    milestone: MilestoneBody<'a>,
) -> Result<FlowMark<'a>, InvalidKey> {
    let id = milestone
        .milestone_id
        .filter(|id| !id.is_empty())
        .ok_or(InvalidKey::MissingField("milestoneId"))?;
    let ms = milestone
        .milestone_time
        .ok_or(InvalidKey::MissingField("milestoneTime"))?;
    Ok(FlowMark {
        key: key.to_owned(),
        time: millis("milestoneTime", ms)?,
        flow_id: flow_id.ok_or(InvalidKey::MissingField("flowId"))?,
        id,
        outcome: None,
    })
}

/// The outcome's mark under `key`, or why it has none.
fn outcome_mark<'a>(
    key: &str,
    flow_id: Option<Cow<'a, str>>,
    outcome: Outcome<'a>,
) -> Result<FlowMark<'a>, InvalidKey> {
    let id = outcome
        .id
        .filter(|id| !id.is_empty())
        .ok_or(InvalidKey::MissingField("flowOutcomeId"))?;
    let start_ms = outcome
        .start_ms
        .ok_or(InvalidKey::MissingField("flowOutcomeStartTime"))?;
    let start = millis("flowOutcomeStartTime", start_ms)?;
    let end = outcome
        .end_ms
        .map(|ms| millis("flowOutcomeEndTime", ms))
        .transpose()?;
    Ok(FlowMark {
        key: key.to_owned(),
        flow_id: flow_id.ok_or(InvalidKey::MissingField("flowId"))?,
        id,
        time: end.unwrap_or(start),
        outcome: Some(OutcomeFacts {
            value: outcome.value,
            duration: end.map(|end| end.duration_since(start)),
        }),
    })
}
