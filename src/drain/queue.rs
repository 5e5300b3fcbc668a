//! An SQS dead-letter queue as a [`DeadLetterSource`]: each message one letter, received hidden
//! for a while, deleted by its receipt handle, and made visible again at once when kept.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, QueueAttributeName,
};

use super::{DeadLetterSource, DrainError, Letter, LetterId};
use crate::error_text::with_causes;

/// Messages received at once (SQS's maximum).
const BATCH: i32 = 10;

/// How long a received message stays hidden while the drain works on it, in seconds.
const VISIBILITY_SECONDS: i32 = 300;

/// One dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    client: Client,
    url: String,
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
            place: self.describe(),
            operation,
            message: with_causes(&error),
        }
    }
}

impl DeadLetterSource for DeadLetterQueue {
    fn describe(&self) -> String {
        format!("queue {}", self.url)
    }

    fn noun(&self) -> &'static str {
        "message"
    }

    /// SQS's own estimate of the visible messages.
    async fn approximate_length(&self) -> Result<Option<u64>, DrainError> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|error| self.error("GetQueueAttributes", error))?;
        Ok(attributes
            .attributes()
            .and_then(|attributes| attributes.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|count| count.parse().ok()))
    }

    async fn next_letters(&mut self) -> Result<Vec<Letter>, DrainError> {
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
                Some(Letter {
                    id: LetterId::MessageId(message.message_id?),
                    handle: message.receipt_handle?,
                    body: Ok(message.body.unwrap_or_default()),
                })
            })
            .collect())
    }

    async fn delete(&self, handles: &[&str]) -> Result<(), DrainError> {
        if handles.is_empty() {
            return Ok(());
        }
        let entries = handles
            .iter()
            .enumerate()
            .map(|(index, handle)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .receipt_handle(*handle)
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
                place: self.describe(),
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
    async fn give_back(&self, handles: &[String]) -> Result<(), DrainError> {
        for chunk in handles.chunks(BATCH as usize) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(index, handle)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(handle)
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
