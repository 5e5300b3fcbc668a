//! The Genesys Cloud EventBridge event: which events are conversation-attribute updates, and
//! what one carries (conversation id, the event's own time, every attribute key).
//!
//! Decoding borrows from the event's JSON text wherever it can: an event is parsed once and
//! its keys flow through the pipeline without copies. Attribute values are never read.

use std::borrow::Cow;

use jiff::Timestamp;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::attribute::excerpt;
use crate::flow_outcome::{FLOW_OUTCOME_DETAIL_TYPE, FlowOutcomeBody, FlowOutcomeEvent};

/// The `detail-type` of an attributes event. Genesys keeps the literal `{id}` in it.
pub const ATTRIBUTES_DETAIL_TYPE: &str = "v2.detail.events.conversation.{id}.attributes";

/// Longest conversation id accepted, in bytes (Genesys uses 36-character UUIDs).
pub const MAX_CONVERSATION_ID_BYTES: usize = 256;

/// A decoded event.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A conversation's attributes changed: it carries all of them.
    Attributes(AttributesEvent<'a>),
    /// A flow reported milestones reached and its outcome.
    FlowOutcome(FlowOutcomeEvent<'a>),
    /// Another topic of the same integration (`….customer.start`, `….flow.end`, …): ignored.
    OtherTopic { detail_type: Cow<'a, str> },
}

impl Event<'_> {
    /// The conversation and time of an event that carries keys; `None` for other topics.
    pub fn conversation(&self) -> Option<(&str, Timestamp)> {
        match self {
            Event::Attributes(event) => Some((&event.conversation_id, event.event_time)),
            Event::FlowOutcome(event) => Some((&event.conversation_id, event.event_time)),
            Event::OtherTopic { .. } => None,
        }
    }
}

/// A `v2.detail.events.conversation.{id}.attributes` event.
#[derive(Debug, PartialEq, Eq)]
pub struct AttributesEvent<'a> {
    pub conversation_id: Cow<'a, str>,
    /// When Genesys says the change happened: the clock for the stale rule.
    pub event_time: Timestamp,
    /// Every attribute key of the participant, sorted, each once.
    pub attribute_keys: Vec<Cow<'a, str>>,
    /// Whether these are all the conversation's attributes, as Genesys sends them (a redrive
    /// builds events of some keys only): only then are times between keys known.
    pub complete: bool,
}

/// Why an event is rejected.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("not a Genesys EventBridge event: {0}")]
    Shape(#[source] serde_json::Error),
    #[error("the event has no eventBody.conversationId")]
    MissingConversationId,
    #[error("conversation id {0:?} is not usable: {1}")]
    BadConversationId(String, &'static str),
    #[error("topicName {topic:?} does not name conversation {conversation_id:?}")]
    TopicMismatch { topic: String, conversation_id: String },
    #[error("the event has no time (eventBody.eventTime, detail.timestamp or time)")]
    MissingTime,
    #[error("the event's time {0} is out of range")]
    BadTime(String),
    #[error(
        "the event's time {event_time} is more than {limit} ago (the ledger's retention less the \
         maximum key age): the records of its keys may have expired, and counting it could count \
         them again"
    )]
    TooOld { event_time: Timestamp, limit: String },
}

/// What Lambda sends to an on-failure destination (the dead-letter queue, in direct mode): the
/// event that failed, as `requestPayload`, with why.
#[derive(Deserialize)]
struct OnFailureRecord<'a> {
    #[serde(rename = "requestContext")]
    _request_context: IgnoredAny,
    #[serde(rename = "requestPayload", borrow)]
    request_payload: &'a RawValue,
}

/// The event inside a Lambda on-failure record, if the text is one.
fn on_failure_payload(json: &str) -> Option<&str> {
    serde_json::from_str::<OnFailureRecord<'_>>(json)
        .ok()
        .map(|record| record.request_payload.get())
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "detail-type", borrow)]
    detail_type: Cow<'a, str>,
    #[serde(default, borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    detail: &'a RawValue,
}

#[derive(Deserialize)]
struct Detail<'a, B> {
    #[serde(rename = "topicName", default, borrow)]
    topic_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(rename = "eventBody")]
    event_body: B,
}

#[derive(Deserialize)]
struct AttributesBody<'a> {
    #[serde(rename = "eventTime", default)]
    event_time: Option<i64>,
    #[serde(rename = "conversationId", default, borrow)]
    conversation_id: Option<Cow<'a, str>>,
    /// Optional in Genesys's schema, like every field of the body: absent or null is an event
    /// with no attributes.
    #[serde(default, borrow)]
    attributes: Option<AttributeKeys<'a>>,
}

/// What every `v2.detail.events.conversation.*` body has (each optional): the conversation id
/// and the event's time in epoch milliseconds.
trait ConversationBody<'a>: Deserialize<'a> {
    fn take_common(&mut self) -> (Option<Cow<'a, str>>, Option<i64>);
}

impl<'a> ConversationBody<'a> for AttributesBody<'a> {
    fn take_common(&mut self) -> (Option<Cow<'a, str>>, Option<i64>) {
        (self.conversation_id.take(), self.event_time)
    }
}

impl<'a> ConversationBody<'a> for FlowOutcomeBody<'a> {
    fn take_common(&mut self) -> (Option<Cow<'a, str>>, Option<i64>) {
        (self.conversation_id.take(), self.event_time)
    }
}

/// The keys of the `attributes` object; values are skipped unread.
struct AttributeKeys<'a>(Vec<Cow<'a, str>>);

#[derive(Deserialize)]
struct BorrowedKey<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for AttributeKeys<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeysVisitor;
        impl<'de> serde::de::Visitor<'de> for KeysVisitor {
            type Value = AttributeKeys<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of participant attributes")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut keys = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((BorrowedKey(key), IgnoredAny)) = map.next_entry()? {
                    keys.push(key);
                }
                Ok(AttributeKeys(keys))
            }
        }
        deserializer.deserialize_map(KeysVisitor)
    }
}

/// Decodes one EventBridge event from its JSON text, or the event inside a Lambda on-failure
/// record (a dead-letter queue message of direct mode).
pub fn decode(json: &str) -> Result<Event<'_>, EventError> {
    // A record is looked for only when the text is no event: events pay nothing for it.
    let envelope: Envelope = match serde_json::from_str(json) {
        Ok(envelope) => envelope,
        Err(error) => match on_failure_payload(json) {
            Some(payload) => return decode(payload),
            None => return Err(classify_json_error(error)),
        },
    };
    let topic_suffix = match envelope.detail_type.as_ref() {
        ATTRIBUTES_DETAIL_TYPE => ".attributes",
        FLOW_OUTCOME_DETAIL_TYPE => ".flow.outcome",
        _ => {
            return Ok(Event::OtherTopic {
                detail_type: envelope.detail_type,
            });
        }
    };
    if topic_suffix == ".attributes" {
        let (body, conversation_id, event_time) =
            conversation_detail::<AttributesBody>(&envelope, topic_suffix)?;
        let mut attribute_keys = body
            .attributes
            .map(|AttributeKeys(keys)| keys)
            .unwrap_or_default();
        attribute_keys.sort_unstable();
        attribute_keys.dedup();
        return Ok(Event::Attributes(AttributesEvent {
            conversation_id,
            event_time,
            attribute_keys,
            complete: true,
        }));
    }
    let (body, conversation_id, event_time) =
        conversation_detail::<FlowOutcomeBody>(&envelope, topic_suffix)?;
    let marks = body.into_marks().map_err(EventError::Shape)?;
    Ok(Event::FlowOutcome(FlowOutcomeEvent {
        conversation_id,
        event_time,
        marks,
    }))
}

/// The body of a conversation topic's event, with its conversation id (checked against the
/// topic name) and time.
fn conversation_detail<'a, B: ConversationBody<'a>>(
    envelope: &Envelope<'a>,
    topic_suffix: &str,
) -> Result<(B, Cow<'a, str>, Timestamp), EventError> {
    let mut detail: Detail<B> = serde_json::from_str(envelope.detail.get()).map_err(classify_json_error)?;
    let (conversation_id, event_time_ms) = detail.event_body.take_common();
    let conversation_id = conversation_id.ok_or(EventError::MissingConversationId)?;
    check_conversation_id(&conversation_id)?;
    if let Some(topic) = &detail.topic_name {
        check_topic(topic, topic_suffix, &conversation_id)?;
    }
    let event_time = event_time(event_time_ms, detail.timestamp, envelope.time.clone())?;
    Ok((detail.event_body, conversation_id, event_time))
}

fn classify_json_error(error: serde_json::Error) -> EventError {
    if error.is_data() {
        EventError::Shape(error)
    } else {
        EventError::NotJson(error)
    }
}

fn check_conversation_id(id: &str) -> Result<(), EventError> {
    let problem = if id.is_empty() {
        Some("it is empty")
    } else if id.len() > MAX_CONVERSATION_ID_BYTES {
        Some("it is longer than 256 bytes")
    } else if id.chars().any(char::is_control) {
        Some("it contains control characters")
    } else if id.starts_with('#') {
        // The ledger table keeps its own items (the names cache) under such partition keys.
        Some("it starts with '#'")
    } else {
        None
    };
    match problem {
        Some(why) => Err(EventError::BadConversationId(excerpt(id), why)),
        None => Ok(()),
    }
}

fn check_topic(topic: &str, suffix: &str, conversation_id: &str) -> Result<(), EventError> {
    let named = topic
        .strip_prefix("v2.detail.events.conversation.")
        .and_then(|rest| rest.strip_suffix(suffix));
    if named == Some(conversation_id) {
        Ok(())
    } else {
        Err(EventError::TopicMismatch {
            topic: excerpt(topic),
            conversation_id: excerpt(conversation_id),
        })
    }
}

/// The event's own time: `eventBody.eventTime` (epoch ms), else `detail.timestamp`, else the
/// envelope's `time`.
fn event_time(
    event_time_ms: Option<i64>,
    detail_timestamp: Option<Cow<'_, str>>,
    envelope_time: Option<Cow<'_, str>>,
) -> Result<Timestamp, EventError> {
    if let Some(ms) = event_time_ms {
        return Timestamp::from_millisecond(ms).map_err(|_| EventError::BadTime(format!("eventTime {ms}")));
    }
    let text = detail_timestamp
        .or(envelope_time)
        .ok_or(EventError::MissingTime)?;
    text.parse()
        .map_err(|error: jiff::Error| EventError::BadTime(format!("{:?} ({error})", excerpt(&text))))
}

/// An attributes event as Genesys's EventBridge integration sends it (trimmed of fields this tool
/// never reads): for generated traces and for testing a deployment with a fresh event.
pub fn attributes_event_json(
    conversation: &str,
    time: Timestamp,
    attributes: &serde_json::Map<String, serde_json::Value>,
) -> String {
    serde_json::json!({
        "version": "0",
        "id": format!("{conversation}-{}", time.as_millisecond()),
        "detail-type": "v2.detail.events.conversation.{id}.attributes",
        "source": "aws.partner/genesys.com/cloud/6a3b6c1e-0b4e-4f3e-9a57-2d1f0c8e7a11/flow-metrics",
        "account": "123456789012",
        "time": time.to_string(),
        "region": "eu-west-1",
        "resources": [],
        "detail": {
            "topicName": format!("v2.detail.events.conversation.{conversation}.attributes"),
            "version": "2",
            "eventBody": {
                "eventTime": time.as_millisecond(),
                "conversationId": conversation,
                "participantId": "0d9a3e44-1c3b-4f0e-8f6e-2f4b5c6d7e8f",
                "attributes": attributes,
                "conversationExternalContactIds": [],
                "conversationExternalOrganizationIds": [],
                "communications": [{"id": "c3d2a1b0-0000-4000-8000-000000000001", "mediaType": "VOICE"}]
            },
            "metadata": {"CorrelationId": "5f6c8f0e-2b7d-4f7e-b3c1-0f4a2b8d9c11"},
            "timestamp": time.to_string()
        }
    })
    .to_string()
}
