//! What one Lambda invocation does with its payload.
//!
//! The function is the target of the EventBridge rule (direct mode: the payload is one
//! EventBridge event) or of an SQS queue the rule feeds (queued mode: the payload is an SQS batch
//! whose record bodies are EventBridge events). Direct mode answers with an error when the event
//! is rejected or its keys could not be delivered, so that Lambda retries it and finally sends it
//! to the dead-letter queue: nothing is dropped silently. Queued mode answers with
//! `batchItemFailures`, so one poison record never blocks the others.

mod settings;

pub use settings::LambdaConfig;

use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::attribute::excerpt;
use crate::count::Tally;
use crate::ledger::Ledger;
use crate::names::FETCH_GRACE;
use crate::pipeline::{BatchTime, EventOutcome, Pipeline};
use crate::sink::Sink;
use crate::timing::CONFIRM_RESERVE;

/// What the function answers.
#[derive(Debug, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Response {
    /// Direct mode: the event was handled (counted, or another topic).
    Handled,
    /// Queued mode: the records to retry.
    Batch(SqsBatchResponse),
}

/// Why a direct invocation failed: Lambda retries it, then sends it to the dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("rejected event: {0}")]
    Rejected(String),
    #[error("could not count the event's keys (it will be retried): {0}")]
    NotDelivered(String),
    #[error("the payload is neither an EventBridge event nor an SQS batch: {0}")]
    Payload(String),
}

impl InvocationError {
    /// A short name for the kind of failure, as Lambda reports it (`errorType`).
    pub fn kind(&self) -> &'static str {
        match self {
            InvocationError::Rejected(_) => "RejectedEvent",
            InvocationError::NotDelivered(_) => "NotDelivered",
            InvocationError::Payload(_) => "UnknownPayload",
        }
    }
}

/// Deadlines before this (epoch ms, in 2001) are not dates: they are timeouts.
const EARLIEST_DEADLINE_MS: u64 = 1_000_000_000_000;

/// Time left before an invocation's deadline. Lambda sends the deadline as epoch milliseconds;
/// cargo-lambda's local emulator sends the timeout itself (e.g. `600000`), read as from now.
pub fn time_left(deadline_ms: u64, now_ms: u64) -> Duration {
    if deadline_ms < EARLIEST_DEADLINE_MS {
        Duration::from_millis(deadline_ms)
    } else {
        Duration::from_millis(deadline_ms.saturating_sub(now_ms))
    }
}

/// An SQS batch's records, read in the same pass that tells it apart from an EventBridge event
/// (which has no `Records`).
#[derive(Deserialize)]
struct Shape {
    #[serde(rename = "Records")]
    records: Option<Vec<SqsMessage>>,
}

/// Handles one invocation's payload and logs one summary line for it.
pub async fn handle<L: Ledger, S: Sink>(
    pipeline: &Pipeline<L, S>,
    payload: &RawValue,
    time: BatchTime,
) -> Result<Response, InvocationError> {
    let shape: Shape =
        serde_json::from_str(payload.get()).map_err(|error| InvocationError::Payload(error.to_string()))?;
    let response = match shape.records {
        Some(records) => Ok(Response::Batch(handle_sqs(pipeline, &records, time).await)),
        None => handle_direct(pipeline, payload, time)
            .await
            .map(|()| Response::Handled),
    };
    // Every event's fate is known; name fetches this invocation started may finish before
    // Lambda freezes the function (at most FETCH_GRACE, and never past the deadline's margin).
    let grace_end = Instant::now() + FETCH_GRACE;
    let until = time.deadline.map_or(grace_end, |deadline| {
        grace_end.min(deadline.checked_sub(CONFIRM_RESERVE).unwrap_or(deadline))
    });
    pipeline.finish_name_fetches(until).await;
    response
}

async fn handle_direct<L: Ledger, S: Sink>(
    pipeline: &Pipeline<L, S>,
    payload: &RawValue,
    time: BatchTime,
) -> Result<(), InvocationError> {
    let report = pipeline.process_batch(&[payload.get()], time).await;
    log_summary(&report.tally, "direct");
    report
        .outcomes
        .into_iter()
        .try_for_each(|outcome| settle(outcome, None))
}

async fn handle_sqs<L: Ledger, S: Sink>(
    pipeline: &Pipeline<L, S>,
    records: &[SqsMessage],
    time: BatchTime,
) -> SqsBatchResponse {
    let bodies: Vec<&str> = records
        .iter()
        .map(|record| record.body.as_deref().unwrap_or_default())
        .collect();
    let report = pipeline.process_batch(&bodies, time).await;
    log_summary(&report.tally, "queued");
    let mut response = SqsBatchResponse::default();
    for (record, outcome) in records.iter().zip(report.outcomes) {
        let message_id = record.message_id.clone().unwrap_or_default();
        if settle(outcome, Some(&message_id)).is_err() {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// Logs what needs a person's eye in one event's outcome; an error for the events to retry.
fn settle(outcome: EventOutcome, message_id: Option<&str>) -> Result<(), InvocationError> {
    match outcome {
        EventOutcome::Rejected(error) => {
            tracing::error!(message_id, %error, "rejected event");
            Err(InvocationError::Rejected(error.to_string()))
        }
        EventOutcome::Failed { report, error } => {
            tracing::error!(message_id, conversation_id = report.conversation_id, %error, "keys not delivered");
            Err(InvocationError::NotDelivered(error.to_string()))
        }
        EventOutcome::Processed(report) => {
            for (key, reason) in &report.invalid {
                tracing::warn!(conversation_id = report.conversation_id, key = excerpt(key), %reason, "invalid metric key");
            }
            Ok(())
        }
        EventOutcome::Ignored { .. } => Ok(()),
    }
}

fn log_summary(tally: &Tally, mode: &'static str) {
    tracing::info!(
        mode,
        events_read = tally.events_read,
        events_ignored = tally.events_ignored,
        events_rejected = tally.events_rejected,
        events_failed = tally.events_failed,
        keys_seen = tally.keys_seen,
        keys_counted = tally.keys_counted,
        keys_already_counted = tally.keys_already_counted,
        keys_invalid = tally.keys_invalid,
        keys_stale = tally.keys_stale,
        keys_possibly_doubled = tally.keys_possibly_doubled,
        names_unresolved = tally.names_unresolved,
        names_unavailable = tally.names_unavailable,
        "invocation"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_epoch_milliseconds_or_an_emulators_timeout() {
        let now_ms = 1_772_856_556_251;
        assert_eq!(time_left(now_ms + 30_000, now_ms), Duration::from_secs(30));
        assert_eq!(time_left(now_ms - 5, now_ms), Duration::ZERO);
        assert_eq!(time_left(600_000, now_ms), Duration::from_secs(600));
    }
}
