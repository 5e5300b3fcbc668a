//! Drain: dead letters' events back through the pipeline, the job behind `flow-metrics drain`.
//!
//! This module owns what a drain does with a dead letter, whatever holds it: a
//! [`DeadLetterSource`] (an SQS dead-letter queue, [`queue`], or the S3 bucket of Lambda's
//! on-failure destination, [`bucket`]) hands out letters; each letter's text is an EventBridge
//! event (what EventBridge and SQS dead-letter) or a Lambda on-failure record carrying one (what
//! direct mode's on-failure destination writes), and [`crate::event::decode`] reads both. Letters
//! go through the same claim → push → confirm protocol as live events, and a letter is deleted
//! only once its event is acknowledged: counted, already counted, or of another topic. A rejected
//! event (a poison letter) and one whose keys could not be delivered stay where they are, with why.

pub mod bucket;
pub mod queue;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;

use jiff::Timestamp;
use serde::Serialize;

use crate::count::{self, Tally};
use crate::event::{self, Event};
use crate::ledger::Ledger;
use crate::pipeline::{BatchTime, EventOutcome, Pipeline};
use crate::sink::Sink;

pub use bucket::DeadLetterBucket;
pub use queue::DeadLetterQueue;

/// Why a drain stopped.
#[derive(Debug, thiserror::Error)]
#[error("{place}: {operation} failed: {message}")]
pub struct DrainError {
    /// The source, as [`DeadLetterSource::describe`] says it (`queue URL`, `bucket s3://…`).
    pub place: String,
    pub operation: &'static str,
    pub message: String,
}

/// Which letter: a queue's message or a bucket's object. Serialized as `{"message_id": …}` or
/// `{"object_key": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LetterId {
    MessageId(String),
    ObjectKey(String),
}

impl fmt::Display for LetterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LetterId::MessageId(id) => write!(f, "message {id}"),
            LetterId::ObjectKey(key) => write!(f, "object {key}"),
        }
    }
}

/// One dead letter as its source handed it out.
#[derive(Debug, Clone)]
pub struct Letter {
    pub id: LetterId,
    /// What deletes it or gives it back: SQS's receipt handle, S3's key.
    pub(crate) handle: String,
    /// Its text, or why it cannot be read as text (then it is kept, rejected).
    pub(crate) body: Result<String, String>,
}

/// Where dead letters wait. Letters are handed out in pages; the drain deletes those it got
/// acknowledged and gives back the rest at the end.
pub trait DeadLetterSource {
    /// The source, for messages: `queue URL`, `bucket s3://name/prefix`.
    fn describe(&self) -> String;

    /// What one letter is called, for summaries: `message`, `object`.
    fn noun(&self) -> &'static str;

    /// About how many letters wait, if the source can tell cheaply (for a progress bar).
    fn approximate_length(&self) -> impl Future<Output = Result<Option<u64>, DrainError>> + Send;

    /// The next letters; none when the source has no more for this run. A letter may be handed
    /// out again (an SQS message whose visibility ended): the drain skips those it has seen.
    fn next_letters(&mut self) -> impl Future<Output = Result<Vec<Letter>, DrainError>> + Send;

    /// Deletes acknowledged letters, given by their handles.
    fn delete(&self, handles: &[&str]) -> impl Future<Output = Result<(), DrainError>> + Send;

    /// Makes kept letters, given by their handles, available again at once, for a person or the
    /// next drain.
    fn give_back(&self, handles: &[String]) -> impl Future<Output = Result<(), DrainError>> + Send;
}

/// What happens, or would happen, to one letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LetterPlan {
    #[serde(flatten)]
    pub id: LetterId,
    /// `deliver` (fresh keys to count), `delete` (nothing left to count), `keep` (rejected or
    /// not delivered: it stays where it is).
    pub action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    pub fresh_keys: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How a drain went.
#[derive(Debug, Default)]
pub struct Drained {
    pub received: u64,
    pub deleted: u64,
    /// Letters left where they were, with why.
    pub kept: Vec<LetterPlan>,
    pub tally: Tally,
}

/// A letter that cannot be read as text: kept, rejected.
fn unreadable(letter: &Letter, why: &str) -> LetterPlan {
    LetterPlan {
        id: letter.id.clone(),
        action: "keep",
        conversation_id: None,
        fresh_keys: 0,
        reason: Some(format!("rejected: {why}")),
    }
}

/// What the drain would do with a letter's text, judged without the ledger (for `--dry-run`).
fn plan(letter: &Letter, body: &str, max_key_age: jiff::SignedDuration) -> LetterPlan {
    let (action, conversation_id, fresh_keys, reason) = match event::decode(body) {
        Err(error) => ("keep", None, 0, Some(format!("rejected: {error}"))),
        Ok(Event::OtherTopic { detail_type }) => {
            ("delete", None, 0, Some(format!("another topic: {detail_type}")))
        }
        Ok(event) => {
            let fresh = count::extract(&event, max_key_age, count::DEFAULT_RUN_GAP)
                .fresh
                .len();
            let action = if fresh > 0 { "deliver" } else { "delete" };
            let conversation_id = event.conversation().map(|(id, _)| id.to_owned());
            (action, conversation_id, fresh, None)
        }
    };
    LetterPlan {
        id: letter.id.clone(),
        action,
        conversation_id,
        fresh_keys,
        reason,
    }
}

/// What the pipeline did with a letter: deleted once acknowledged, else kept, with why.
fn done_with(letter: &Letter, outcome: EventOutcome) -> LetterPlan {
    let (action, conversation_id, fresh_keys, reason) = match outcome {
        EventOutcome::Processed(report) => (
            "delete",
            Some(report.conversation_id),
            report.counted + report.already_counted,
            None,
        ),
        EventOutcome::Ignored { detail_type } => {
            ("delete", None, 0, Some(format!("another topic: {detail_type}")))
        }
        EventOutcome::Rejected(error) => ("keep", None, 0, Some(format!("rejected: {error}"))),
        EventOutcome::Failed { report, error } => (
            "keep",
            Some(report.conversation_id),
            report.counted + report.already_counted + report.pending,
            Some(format!("not delivered (drain again later): {error}")),
        ),
    };
    LetterPlan {
        id: letter.id.clone(),
        action,
        conversation_id,
        fresh_keys,
        reason,
    }
}

/// Drains `source` through `pipeline`; `each` hears of every letter handled. With `dry_run`,
/// lists what would be done (`each` hears every plan) and changes nothing.
pub async fn drain<L: Ledger, S: Sink, D: DeadLetterSource>(
    pipeline: &Pipeline<L, S>,
    source: &mut D,
    dry_run: bool,
    max_key_age: jiff::SignedDuration,
    mut each: impl FnMut(&LetterPlan),
) -> Result<Drained, DrainError> {
    let mut drained = Drained::default();
    let mut seen = HashSet::new();
    let mut held = Vec::new();
    loop {
        let letters = source.next_letters().await?;
        let fresh: Vec<Letter> = letters
            .into_iter()
            .filter(|letter| seen.insert(letter.id.clone()))
            .collect();
        // Nothing new: the source is empty, or holds only letters this run kept.
        if fresh.is_empty() {
            break;
        }
        drained.received += fresh.len() as u64;
        let mut readable = Vec::with_capacity(fresh.len());
        for letter in &fresh {
            match &letter.body {
                Ok(body) => readable.push((letter, body.as_str())),
                Err(why) => {
                    let kept = unreadable(letter, why);
                    each(&kept);
                    if !dry_run {
                        drained.kept.push(kept);
                    }
                    held.push(letter.handle.clone());
                }
            }
        }
        if dry_run {
            for (letter, body) in readable {
                each(&plan(letter, body, max_key_age));
                held.push(letter.handle.clone());
            }
            continue;
        }
        let bodies: Vec<&str> = readable.iter().map(|(_, body)| *body).collect();
        let report = pipeline
            .process_batch(&bodies, BatchTime::from(Timestamp::now()))
            .await;
        drained.tally += report.tally;
        let mut acknowledged = Vec::new();
        for ((letter, _), outcome) in readable.iter().zip(report.outcomes) {
            let done = done_with(letter, outcome);
            if done.action == "keep" {
                drained.kept.push(done.clone());
                held.push(letter.handle.clone());
            } else {
                acknowledged.push(letter.handle.as_str());
            }
            each(&done);
        }
        source.delete(&acknowledged).await?;
        drained.deleted += acknowledged.len() as u64;
    }
    // What stays is available again at once, for a person or the next drain.
    source.give_back(&held).await?;
    Ok(drained)
}
