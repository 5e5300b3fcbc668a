//! What one countable key is, whatever marked it: a metric attribute, a flow milestone or a
//! flow outcome. The ledger records keys and sinks receive them without caring which source
//! they came from; the source says which metric they become and what else they carry.

use jiff::SignedDuration;
use jiff::Timestamp;
use serde::Serialize;
use serde::ser::SerializeMap;

/// A countable key, borrowing its parts from the event it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricKey<'a> {
    /// With the conversation id, the identity of one occurrence: the attribute key, or
    /// `milestone:<milestoneId>:<milestoneTime ms>`, or `outcome:<flowOutcomeId>:<start ms>`.
    pub key: &'a str,
    /// The flow's name (attributes) or id (milestones and outcomes, until a name is known).
    pub flow: &'a str,
    /// The metric's name (attributes), or the milestone's or outcome's id.
    pub metric: &'a str,
    /// When it happened, in UTC.
    pub time: Timestamp,
    pub source: Source<'a>,
}

/// Which Genesys mechanism marked the point, and what it says besides its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// A `<Flow>Metric_<Metric>(<time>)` participant attribute.
    Attribute,
    /// A flow milestone reached.
    Milestone,
    /// A flow outcome, timed at its end (or its start when Genesys gives no end).
    Outcome {
        /// `SUCCESS` or `FAILURE`, when the event says.
        value: Option<&'a str>,
        /// From the outcome's start to its end, when both are known.
        duration: Option<SignedDuration>,
    },
}

impl Source<'_> {
    /// The name written in stdout lines and ledger items.
    pub fn name(&self) -> &'static str {
        match self {
            Source::Attribute => "attribute",
            Source::Milestone => "milestone",
            Source::Outcome { .. } => "outcome",
        }
    }
}

/// `"source"`, and for outcomes `"value"` and `"duration_ms"` (null when unknown): the fields a
/// stdout line adds after the key's own.
impl Serialize for Source<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("source", self.name())?;
        if let Source::Outcome { value, duration } = self {
            map.serialize_entry("value", value)?;
            map.serialize_entry("duration_ms", &duration.map(|duration| duration.as_millis()))?;
        }
        map.end()
    }
}
