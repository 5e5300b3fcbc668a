//! Drain: a dead-letter queue's events back through the pipeline, the job behind
//! `flow-metrics drain`.
//!
//! The queue is one more source of events: each message's body is an EventBridge event (what
//! EventBridge and SQS dead-letter) or a Lambda on-failure record carrying one (what direct mode's
//! on-failure destination sends); [`crate::event::decode`] reads both. Messages go through the
//! same claim → push → confirm protocol as live events, and a message is deleted only once its
//! event is acknowledged: counted, already counted, or of another topic. A rejected event (a
//! poison message) and one whose keys could not be delivered stay in the queue, with why.

use std::collections::HashSet;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry};
use jiff::Timestamp;
use serde::Serialize;

use crate::count::{self, Tally};
use crate::error_text::with_causes;
use crate::event::{self, Event};
use crate::ledger::Ledger;
use crate::pipeline::{BatchTime, EventOutcome, Pipeline};
use crate::sink::Sink;

/// Messages received at once (SQS's maximum).
const BATCH: i32 = 10;

/// How long a received message stays hidden while the drain works on it, in seconds.
const VISIBILITY_SECONDS: i32 = 300;

/// Why a drain stopped.
#[derive(Debug, thiserror::Error)]
#[error("queue {queue_url}: {operation} failed: {message}")]
pub struct DrainError {
    pub queue_url: String,
    pub operation: &'static str,
    pub message: String,
}

/// One dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    client: Client,
    url: String,
}

/// A message as received.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    receipt: String,
    body: String,
}

/// What happens, or would happen, to one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessagePlan {
    pub message_id: String,
    /// `deliver` (fresh keys to count), `delete` (nothing left to count), `keep` (rejected or
    /// not delivered: it stays in the queue).
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
    /// Messages left in the queue, with why.
    pub kept: Vec<MessagePlan>,
    pub tally: Tally,
}

impl DeadLetterQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        DeadLetterQueue {
            client,
            url: url.into(),
        }
    }

    fn error(&self, operation: &'static str, error: impl std::error::Error) -> DrainError {
        DrainError {
            queue_url: self.url.clone(),
            operation,
            message: with_causes(&error),
        }
    }

    /// About how many messages wait (SQS's own estimate), for a progress bar.
    pub async fn approximate_length(&self) -> Result<u64, DrainError> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|error| self.error("GetQueueAttributes", error))?;
        Ok(attributes
            .attributes()
            .and_then(|attributes| {
                attributes.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            })
            .and_then(|count| count.parse().ok())
            .unwrap_or_default())
    }

    async fn receive(&self) -> Result<Vec<Received>, DrainError> {
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(BATCH)
            .visibility_timeout(VISIBILITY_SECONDS)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|error| self.error("ReceiveMessage", error))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|message| {
                Some(Received {
                    id: message.message_id?,
                    receipt: message.receipt_handle?,
                    body: message.body.unwrap_or_default(),
                })
            })
            .collect())
    }

    async fn delete(&self, messages: &[&Received]) -> Result<(), DrainError> {
        if messages.is_empty() {
            return Ok(());
        }
        let entries = messages
            .iter()
            .enumerate()
            .map(|(index, message)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(&message.receipt)
                    .build()
                    .map_err(|error| self.error("DeleteMessageBatch", error))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let output = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|error| self.error("DeleteMessageBatch", error))?;
        match output.failed.first() {
            None => Ok(()),
            Some(failed) => Err(DrainError {
                queue_url: self.url.clone(),
                operation: "DeleteMessageBatch",
                message: format!(
                    "{} message(s) not deleted ({}): they will be drained again, and count nothing twice",
                    output.failed.len(),
                    failed.message.as_deref().unwrap_or(&failed.code)
                ),
            }),
        }
    }

    /// Makes received messages visible again at once (they stay in the queue).
    async fn give_back(&self, messages: &[Received]) -> Result<(), DrainError> {
        for chunk in messages.chunks(BATCH as usize) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, message)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(&message.receipt)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|error| self.error("ChangeMessageVisibilityBatch", error))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|error| self.error("ChangeMessageVisibilityBatch", error))?;
        }
        Ok(())
    }
}

/// What the drain would do with a message, judged without the ledger (for `--dry-run`).
fn plan(message: &Received, max_key_age: jiff::SignedDuration) -> MessagePlan {
    let (action, conversation_id, fresh_keys, reason) = match event::decode(&message.body) {
        Err(error) => ("keep", None, 0, Some(format!("rejected: {error}"))),
        Ok(Event::OtherTopic { detail_type }) => {
            ("delete", None, 0, Some(format!("another topic: {detail_type}")))
        }
        Ok(event) => {
            let fresh = count::extract(&event, max_key_age).fresh.len();
            let action = if fresh > 0 { "deliver" } else { "delete" };
            let conversation_id = event.conversation().map(|(id, _)| id.to_owned());
            (action, conversation_id, fresh, None)
        }
    };
    MessagePlan {
        message_id: message.id.clone(),
        action,
        conversation_id,
        fresh_keys,
        reason,
    }
}

/// What the pipeline did with a message: deleted once acknowledged, else kept, with why.
fn done_with(message: &Received, outcome: EventOutcome) -> MessagePlan {
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
    MessagePlan {
        message_id: message.id.clone(),
        action,
        conversation_id,
        fresh_keys,
        reason,
    }
}

/// Drains `queue` through `pipeline`; `progress` hears of every message handled. With `dry_run`,
/// lists what would be done (`each` hears every plan) and changes nothing.
pub async fn drain<L: Ledger, S: Sink>(
    pipeline: &Pipeline<L, S>,
    queue: &DeadLetterQueue,
    dry_run: bool,
    max_key_age: jiff::SignedDuration,
    mut each: impl FnMut(&MessagePlan),
) -> Result<Drained, DrainError> {
    let mut drained = Drained::default();
    let mut seen = HashSet::new();
    let mut held = Vec::new();
    loop {
        let messages = queue.receive().await?;
        let fresh: Vec<Received> = messages
            .into_iter()
            .filter(|message| seen.insert(message.id.clone()))
            .collect();
        // Nothing new: the queue is empty, or holds only messages this run kept.
        if fresh.is_empty() {
            break;
        }
        drained.received += fresh.len() as u64;
        if dry_run {
            fresh.iter().for_each(|message| each(&plan(message, max_key_age)));
            held.extend(fresh);
            continue;
        }
        let bodies: Vec<&str> = fresh.iter().map(|message| message.body.as_str()).collect();
        let report = pipeline
            .process_batch(&bodies, BatchTime::from(Timestamp::now()))
            .await;
        drained.tally += report.tally;
        let mut acknowledged = Vec::new();
        for (message, outcome) in fresh.iter().zip(report.outcomes) {
            let done = done_with(message, outcome);
            if done.action == "keep" {
                drained.kept.push(done.clone());
                held.push(message.clone());
            } else {
                acknowledged.push(message);
            }
            each(&done);
        }
        queue.delete(&acknowledged).await?;
        drained.deleted += acknowledged.len() as u64;
    }
    // What stays is visible again at once, for a person or the next drain.
    queue.give_back(&held).await?;
    Ok(drained)
}
