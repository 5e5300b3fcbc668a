//! An S3 bucket as a [`DeadLetterSource`]: the on-failure destination of direct mode, where
//! Lambda writes one JSON object per failed invocation (its on-failure record, which may exceed
//! what an SQS message holds). Objects are listed once, page by page (ListObjectsV2 and its
//! continuation token), under an optional prefix, whatever layout Lambda gives their keys; each
//! is read whole, and deleted by its key once acknowledged. A kept object is simply left.

use std::collections::VecDeque;

use aws_sdk_s3::Client;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use super::{DeadLetterSource, DrainError, Letter, LetterId};
use crate::error_text::with_causes;

/// Objects read and handed out at once: one pipeline batch.
const BATCH: usize = 10;

/// Largest object read, in bytes. Lambda's records are far smaller (an event of at most 1 MB
/// and a response); anything bigger is not one, and is kept unread.
pub const MAX_OBJECT_BYTES: i64 = 16 * 1024 * 1024;

/// The on-failure bucket, or the part of it under a prefix.
#[derive(Debug, Clone)]
pub struct DeadLetterBucket {
    client: Client,
    bucket: String,
    prefix: Option<String>,
    /// Listed keys not handed out yet, with their sizes.
    pending: VecDeque<(String, Option<i64>)>,
    /// Where the listing goes on; `None` before the first page and after the last.
    continuation: Option<String>,
    listed_all: bool,
}

impl DeadLetterBucket {
    pub fn new(client: Client, bucket: impl Into<String>, prefix: Option<String>) -> Self {
        DeadLetterBucket {
            client,
            bucket: bucket.into(),
            prefix: prefix.filter(|prefix| !prefix.is_empty()),
            pending: VecDeque::new(),
            continuation: None,
            listed_all: false,
        }
    }

    fn error(&self, operation: &'static str, error: impl std::error::Error) -> DrainError {
        DrainError {
            place: self.describe(),
            operation,
            message: with_causes(&error),
        }
    }

    /// Lists the next page of keys into `pending`.
    async fn list_page(&mut self) -> Result<(), DrainError> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_prefix(self.prefix.clone())
            .set_continuation_token(self.continuation.take())
            .send()
            .await
            .map_err(|error| self.error("ListObjectsV2", error))?;
        for object in page.contents() {
            let Some(key) = object.key() else { continue };
            // A "folder" made in the console: no record.
            if key.ends_with('/') && object.size().unwrap_or_default() == 0 {
                continue;
            }
            self.pending.push_back((key.to_owned(), object.size()));
        }
        self.continuation = page.next_continuation_token().map(str::to_owned);
        self.listed_all = !page.is_truncated().unwrap_or(false) || self.continuation.is_none();
        Ok(())
    }

    /// Reads one object; `None` if it is gone (drained meanwhile by another run).
    async fn read(&self, key: String, size: Option<i64>) -> Result<Option<Letter>, DrainError> {
        let id = LetterId::ObjectKey(key.clone());
        if let Some(size) = size.filter(|size| *size > MAX_OBJECT_BYTES) {
            return Ok(Some(Letter {
                id,
                handle: key,
                body: Err(format!(
                    "{size} bytes, more than the {MAX_OBJECT_BYTES} an on-failure record can be: not read"
                )),
            }));
        }
        let object = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(object) => object,
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|error| error.is_no_such_key()) =>
            {
                return Ok(None);
            }
            Err(error) => return Err(self.error("GetObject", error)),
        };
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|error| self.error("GetObject", error))?
            .into_bytes();
        let body = String::from_utf8(bytes.to_vec()).map_err(|error| format!("not UTF-8 text: {error}"));
        Ok(Some(Letter {
            id,
            handle: key,
            body,
        }))
    }
}

impl DeadLetterSource for DeadLetterBucket {
    fn describe(&self) -> String {
        format!(
            "bucket s3://{}/{}",
            self.bucket,
            self.prefix.as_deref().unwrap_or_default()
        )
    }

    fn noun(&self) -> &'static str {
        "object"
    }

    /// Unknown: counting would take a listing of the whole bucket.
    async fn approximate_length(&self) -> Result<Option<u64>, DrainError> {
        Ok(None)
    }

    async fn next_letters(&mut self) -> Result<Vec<Letter>, DrainError> {
        loop {
            while self.pending.is_empty() && !self.listed_all {
                self.list_page().await?;
            }
            if self.pending.is_empty() {
                return Ok(Vec::new());
            }
            let count = self.pending.len().min(BATCH);
            let keys: Vec<_> = self.pending.drain(..count).collect();
            let read =
                futures::future::join_all(keys.into_iter().map(|(key, size)| self.read(key, size))).await;
            let letters: Vec<Letter> = read
                .into_iter()
                .filter_map(Result::transpose)
                .collect::<Result<_, _>>()?;
            // All gone meanwhile: on to the next ones, since no letters means no more.
            if !letters.is_empty() {
                return Ok(letters);
            }
        }
    }

    async fn delete(&self, handles: &[&str]) -> Result<(), DrainError> {
        if handles.is_empty() {
            return Ok(());
        }
        let objects = handles
            .iter()
            .map(|key| {
                ObjectIdentifier::builder()
                    .key(*key)
                    .build()
                    .map_err(|error| self.error("DeleteObjects", error))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|error| self.error("DeleteObjects", error))?;
        let output = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|error| self.error("DeleteObjects", error))?;
        match output.errors().first() {
            None => Ok(()),
            Some(failed) => Err(DrainError {
                place: self.describe(),
                operation: "DeleteObjects",
                message: format!(
                    "{} object(s) not deleted ({}: {}): they will be drained again, and count nothing twice",
                    output.errors().len(),
                    failed.key().unwrap_or_default(),
                    failed.message().or(failed.code()).unwrap_or("no reason given")
                ),
            }),
        }
    }

    /// Nothing to do: an object left in the bucket is there for the next drain.
    async fn give_back(&self, _handles: &[String]) -> Result<(), DrainError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::operation::delete_objects::DeleteObjectsOutput;
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
    use aws_sdk_s3::primitives::{ByteStream, SdkBody};
    use aws_sdk_s3::types::Object;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use bytes::Bytes;
    use serde_json::json;

    use super::*;
    use crate::event::{self, Event};

    const BUCKET: &str = "dead-letters";

    /// A Lambda on-failure record, as Lambda writes it, of an attributes event carrying `keys`
    /// among `filler` attributes of ~100 bytes each.
    fn record(keys: &[String], filler: usize) -> String {
        let mut attributes: serde_json::Map<String, serde_json::Value> = (0..filler)
            .map(|index| (format!("Context_{index:05}"), json!("x".repeat(90))))
            .collect();
        attributes.extend(keys.iter().map(|key| (key.clone(), json!("1"))));
        let event = json!({
            "version": "0",
            "id": "e-1",
            "detail-type": crate::event::ATTRIBUTES_DETAIL_TYPE,
            "source": "aws.partner/genesys.com/cloud/org/flow-metrics",
            "time": "2026-12-01T10:00:00Z",
            "detail": {
                "topicName": "v2.detail.events.conversation.c-big.attributes",
                "eventBody": {
                    "eventTime": 1_796_119_200_000_i64,
                    "conversationId": "c-big",
                    "attributes": attributes,
                }
            }
        });
        json!({
            "version": "1.0",
            "timestamp": "2026-12-01T10:03:07.123Z",
            "requestContext": {
                "requestId": "3f1c2a3e-9f0a-4c8e-9d5b-0b2b8d6f1e01",
                "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:flow-metrics:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorType": "NotDelivered", "errorMessage": "DataDog answered 503"}
        })
        .to_string()
    }

    /// `text` as S3 streams it: in chunks of 16 KiB.
    fn chunked(text: &str) -> ByteStream {
        let chunks: Vec<Result<hyper::body::Frame<Bytes>, std::io::Error>> = text
            .as_bytes()
            .chunks(16 * 1024)
            .map(|chunk| Ok(hyper::body::Frame::data(Bytes::copy_from_slice(chunk))))
            .collect();
        let body = http_body_util::StreamBody::new(futures::stream::iter(chunks));
        ByteStream::new(SdkBody::from_body_1_x(body))
    }

    #[tokio::test]
    async fn a_record_over_256_kb_is_read_intact_across_pages_and_deleted_by_its_key() {
        let keys: Vec<String> = ["Start", "Menu", "Transfer"]
            .iter()
            .map(|metric| format!("RoutingMetric_{metric}(2026-12-01T09:59:00Z)"))
            .collect();
        let big = record(&keys, 2_600);
        assert!(big.len() > 256 * 1024, "{} bytes", big.len());
        let small = record(&keys[..1], 0);
        let (big_key, small_key) = ("aws/lambda/async/flow-metrics/2026/12/01/big", "other/small");

        let first_page = mock!(Client::list_objects_v2)
            .match_requests(|list| list.continuation_token().is_none())
            .then_output(move || {
                ListObjectsV2Output::builder()
                    .contents(Object::builder().key(big_key).size(1).build())
                    .contents(Object::builder().key("a-folder/").size(0).build())
                    .is_truncated(true)
                    .next_continuation_token("page-2")
                    .build()
            });
        let second_page = mock!(Client::list_objects_v2)
            .match_requests(|list| list.continuation_token() == Some("page-2"))
            .then_output(move || {
                ListObjectsV2Output::builder()
                    .contents(Object::builder().key(small_key).size(1).build())
                    .is_truncated(false)
                    .build()
            });
        let big_body = big.clone();
        let get_big = mock!(Client::get_object)
            .match_requests(move |get| get.key() == Some(big_key))
            .then_output(move || GetObjectOutput::builder().body(chunked(&big_body)).build());
        let small_body = small.clone();
        let get_small = mock!(Client::get_object)
            .match_requests(move |get| get.key() == Some(small_key))
            .then_output(move || GetObjectOutput::builder().body(chunked(&small_body)).build());
        let delete = mock!(Client::delete_objects)
            .match_requests(move |delete| {
                delete.delete().is_some_and(|delete| {
                    delete.quiet() == Some(true)
                        && delete.objects().iter().map(ObjectIdentifier::key).eq([big_key])
                })
            })
            .then_output(|| DeleteObjectsOutput::builder().build());
        let client: Client = mock_client!(
            aws_sdk_s3,
            RuleMode::MatchAny,
            [&first_page, &second_page, &get_big, &get_small, &delete]
        );
        let mut bucket = DeadLetterBucket::new(client, BUCKET, None);

        let mut letters = Vec::new();
        loop {
            let page = bucket.next_letters().await.expect("letters");
            if page.is_empty() {
                break;
            }
            letters.extend(page);
        }
        let read: Vec<(LetterId, &str)> = letters
            .iter()
            .map(|letter| (letter.id.clone(), letter.body.as_deref().expect("text")))
            .collect();
        assert_eq!(
            read,
            [
                (LetterId::ObjectKey(big_key.to_owned()), big.as_str()),
                (LetterId::ObjectKey(small_key.to_owned()), small.as_str()),
            ],
            "each record is read whole, byte for byte, across both pages; the folder is skipped"
        );
        let Ok(Event::Attributes(event)) = event::decode(read[0].1) else {
            panic!("the record's event decodes");
        };
        assert_eq!(event.attribute_keys.len(), 2_600 + keys.len());
        assert_eq!(
            second_page.num_calls(),
            1,
            "the listing went on from its continuation token"
        );

        bucket.delete(&[big_key]).await.expect("deleted");
        assert_eq!(delete.num_calls(), 1);
    }
}
