//! What counts: from one event to the keys the ledger should be asked about.
//!
//! Pure rules, no I/O: a key is counted once per conversation if it is a valid metric key that
//! is not stale. Stale means its datetime is more than `max_key_age` older than the event's own
//! time, so the result depends only on the event, never on the wall clock.
//!
//! How long after the start of its flow run a key came (its `elapsed`) is a pure function of the
//! event too: a **flow run** is the conversation's valid, non-stale keys of one flow, sorted by
//! time and split wherever two consecutive keys are more than `run_gap` apart. A stale key never
//! starts a run, nor is part of one.

use std::ops::AddAssign;

use jiff::fmt::temporal::DateTimePrinter;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::attribute::{Attribute, InvalidKey, classify};
use crate::event::Event;
use crate::key::{MetricKey, Source};

/// Default for how old a key may be, relative to its event, and still count.
pub const DEFAULT_MAX_KEY_AGE: SignedDuration = SignedDuration::from_hours(7 * 24);

/// Default for how far apart two consecutive keys of a flow may be and still be one run.
pub const DEFAULT_RUN_GAP: SignedDuration = SignedDuration::from_hours(1);

/// The ids of a milestone's or outcome's flow and step, kept when names replace them, so that
/// its points can be grouped by id too (a renamed flow, an id sent before its name was known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepIds<'a> {
    pub flow: &'a str,
    /// The milestone's or outcome's id.
    pub step: &'a str,
}

/// One counted metric occurrence: what a sink receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Occurrence<'a> {
    pub conversation_id: &'a str,
    pub flow: &'a str,
    pub metric: &'a str,
    /// A milestone's or outcome's ids (`flow` and `metric` may be names); none for attributes,
    /// whose flow and metric are names already.
    #[serde(skip)]
    pub ids: Option<StepIds<'a>>,
    pub key: &'a str,
    #[serde(serialize_with = "serialize_utc")]
    pub time: Timestamp,
    /// How long after the start of its flow run in the conversation this key came, when known.
    #[serde(skip)]
    pub elapsed: Option<SignedDuration>,
    #[serde(flatten)]
    pub source: Source<'a>,
}

/// RFC 3339 in UTC with at least millisecond digits (as Genesys writes them), more if the key
/// had more: `2026-03-07T04:08:17.950Z`, not `…17.95Z`.
fn serialize_utc<S: serde::Serializer>(time: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    let digits = if time.subsec_nanosecond() % 1_000_000 == 0 {
        3
    } else {
        9
    };
    let text = DateTimePrinter::new()
        .precision(Some(digits))
        .timestamp_to_string(time);
    serializer.serialize_str(&text)
}

impl<'a> StepIds<'a> {
    /// The ids a key of `source` keeps: a milestone's or outcome's flow and step ids.
    pub fn of(source: Source<'_>, flow: &'a str, step: &'a str) -> Option<Self> {
        match source {
            Source::Attribute => None,
            Source::Milestone | Source::Outcome { .. } => Some(StepIds { flow, step }),
        }
    }
}

impl<'a> Occurrence<'a> {
    pub fn new(conversation_id: &'a str, metric: &MetricKey<'a>, elapsed: Option<SignedDuration>) -> Self {
        Occurrence {
            conversation_id,
            flow: metric.flow,
            metric: metric.metric,
            ids: StepIds::of(metric.source, metric.flow, metric.metric),
            key: metric.key,
            time: metric.time,
            elapsed,
            source: metric.source,
        }
    }
}

/// The metric keys of one event, sorted by what happens to them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Extracted<'a> {
    /// Valid and recent: ask the ledger.
    pub fresh: Vec<MetricKey<'a>>,
    /// Valid but older than the age limit: never counted.
    pub stale: Vec<MetricKey<'a>>,
    /// Candidates that break the grammar: never counted.
    pub invalid: Vec<(&'a str, InvalidKey)>,
    /// The flow runs of the fresh keys, if the event carries all the conversation's attributes.
    pub runs: Vec<FlowRun<'a>>,
}

/// A flow run: consecutive fresh keys of one flow, none more than the run gap after the one
/// before; from its first key's time to its last's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRun<'a> {
    pub flow: &'a str,
    pub start: Timestamp,
    pub end: Timestamp,
}

impl<'a> Extracted<'a> {
    /// Metric candidates in the event, valid or not.
    pub fn seen(&self) -> usize {
        self.fresh.len() + self.stale.len() + self.invalid.len()
    }

    /// How long after the start of its flow run `metric` came: a pure function of an event that
    /// carries all the conversation's attributes; unknown otherwise, and for a stale key.
    pub fn elapsed(&self, metric: &MetricKey<'a>) -> Option<SignedDuration> {
        self.runs
            .iter()
            .find(|run| run.flow == metric.flow && run.start <= metric.time && metric.time <= run.end)
            .map(|run| metric.time.duration_since(run.start))
    }
}

/// Sorts the event's keys into fresh, stale and invalid ones, and the fresh ones of an event
/// carrying all the conversation's attributes into flow runs (split where keys are more than
/// `run_gap` apart); attributes that are no metric keys are left out, and other topics have none.
pub fn extract<'a>(
    event: &'a Event<'_>,
    max_key_age: SignedDuration,
    run_gap: SignedDuration,
) -> Extracted<'a> {
    let Some((_, event_time)) = event.conversation() else {
        return Extracted::default();
    };
    let oldest = event_time.checked_sub(max_key_age).unwrap_or(Timestamp::MIN);
    let mut extracted = Extracted::default();
    let mut sort = |key: MetricKey<'a>| {
        if key.time < oldest {
            extracted.stale.push(key);
        } else {
            extracted.fresh.push(key);
        }
    };
    match event {
        Event::Attributes(event) => {
            let mut invalid = Vec::new();
            for key in &event.attribute_keys {
                match classify(key) {
                    Attribute::Other => {}
                    Attribute::Metric(metric) => sort(metric),
                    Attribute::Invalid(reason) => invalid.push((key.as_ref(), reason)),
                }
            }
            extracted.invalid = invalid;
            if event.complete {
                extracted.runs = flow_runs(&extracted.fresh, run_gap);
            }
        }
        Event::FlowOutcome(event) => {
            let mut invalid = Vec::new();
            for mark in &event.marks {
                match mark {
                    Ok(mark) => sort(mark.metric_key()),
                    Err((key, reason)) => invalid.push((key.as_str(), reason.clone())),
                }
            }
            extracted.invalid = invalid;
        }
        Event::OtherTopic { .. } => {}
    }
    extracted
}

/// The runs of `keys`, per flow in time order: a key more than `gap` after the one before it (of
/// its flow) starts a new run; exactly `gap` after does not.
fn flow_runs<'k>(keys: &[MetricKey<'k>], gap: SignedDuration) -> Vec<FlowRun<'k>> {
    let mut times: Vec<(&'k str, Timestamp)> = keys.iter().map(|key| (key.flow, key.time)).collect();
    times.sort_unstable();
    let mut runs: Vec<FlowRun<'k>> = Vec::new();
    for (flow, time) in times {
        match runs.last_mut() {
            Some(run) if run.flow == flow && time.duration_since(run.end) <= gap => run.end = time,
            _ => runs.push(FlowRun {
                flow,
                start: time,
                end: time,
            }),
        }
    }
    runs
}

/// The oldest an event may be, relative to now, for its keys to be judged safely: a key counts
/// if it is at most `max_key_age` older than its event, and its record is kept `retention` after
/// the key's time. An older event's keys may have lost their records, and would count again.
/// `None` when records are never forgotten (or the retention leaves no room, which the
/// configuration refuses).
pub fn oldest_safe_event_age(
    retention: Option<SignedDuration>,
    max_key_age: SignedDuration,
) -> Option<SignedDuration> {
    retention?
        .checked_sub(max_key_age)
        .filter(|age| age.is_positive())
}

/// Running counts of what happened to events and keys. Key counts are per event: every event
/// repeats all the conversation's attributes, so a key seen in three events is seen three times,
/// counted at most once, and "already counted" the other times.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub events_read: u64,
    pub events_ignored: u64,
    pub events_rejected: u64,
    pub events_failed: u64,
    pub keys_seen: u64,
    pub keys_counted: u64,
    pub keys_already_counted: u64,
    /// Fresh keys still held by another invocation's live claim when this one stopped waiting:
    /// their events failed, to be retried.
    pub keys_pending: u64,
    pub keys_invalid: u64,
    pub keys_stale: u64,
    /// Keys delivered by a push that may have counted them twice: sent again after an attempt
    /// whose answer was lost or a server error, or taken from a claim whose holder may have
    /// pushed them and never confirmed them. Each is logged `possibly doubled`.
    pub keys_possibly_doubled: u64,
    /// Names of delivered milestones and outcomes (their flow's, their own) sent as ids, because
    /// no name was known.
    pub names_unresolved: u64,
    /// Batches (in the Lambda, invocations) that ran while names could not be had at all: the
    /// Genesys API's setup failed, and ids stood in for every name not in the fixed map.
    pub names_unavailable: u64,
}

impl AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.events_read += other.events_read;
        self.events_ignored += other.events_ignored;
        self.events_rejected += other.events_rejected;
        self.events_failed += other.events_failed;
        self.keys_seen += other.keys_seen;
        self.keys_counted += other.keys_counted;
        self.keys_already_counted += other.keys_already_counted;
        self.keys_pending += other.keys_pending;
        self.keys_invalid += other.keys_invalid;
        self.keys_stale += other.keys_stale;
        self.keys_possibly_doubled += other.keys_possibly_doubled;
        self.names_unresolved += other.names_unresolved;
        self.names_unavailable += other.names_unavailable;
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "events read {}, ignored {}, rejected {}, failed {}; metric keys seen {}, counted {}, \
             already counted {}, pending {}, invalid {}, stale {}",
            self.events_read,
            self.events_ignored,
            self.events_rejected,
            self.events_failed,
            self.keys_seen,
            self.keys_counted,
            self.keys_already_counted,
            self.keys_pending,
            self.keys_invalid,
            self.keys_stale,
        )?;
        // Said only when it happened: most runs never double anything.
        if self.keys_possibly_doubled > 0 {
            write!(f, ", possibly doubled {}", self.keys_possibly_doubled)?;
        }
        write!(f, "; names unresolved {}", self.names_unresolved)
    }
}
