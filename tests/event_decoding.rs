//! Decoding Genesys EventBridge events: real-shaped ones, other topics, broken ones.

use flow_metrics::event::{AttributesEvent, Event, EventError, decode};
use jiff::Timestamp;
use serde_json::{Value, json};

fn attributes_event(body: Value) -> Value {
    json!({
        "version": "0",
        "id": "b0c8b1f4-5a1e-4a6e-8d0a-6f2b7a1c9e01",
        "detail-type": "v2.detail.events.conversation.{id}.attributes",
        "source": "aws.partner/genesys.com/cloud/6a3b6c1e-0b4e-4f3e-9a57-2d1f0c8e7a11/flow-metrics",
        "account": "123456789012",
        "time": "2026-03-07T04:09:16Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {
            "topicName": "v2.detail.events.conversation.12341234-1234-1234-1234-123456789012.attributes",
            "version": "2",
            "eventBody": body,
            "metadata": {"CorrelationId": "5f6c8f0e-2b7d-4f7e-b3c1-0f4a2b8d9c11"},
            "timestamp": "2026-03-07T04:09:16.258Z"
        }
    })
}

fn body() -> Value {
    json!({
        "eventTime": 1772856556251i64,
        "conversationId": "12341234-1234-1234-1234-123456789012",
        "participantId": "0d9a3e44-1c3b-4f0e-8f6e-2f4b5c6d7e8f",
        "attributes": {
            "AccountID": "0-000000",
            "CustomerRoutingMetric_Unknown(2026-03-07T04:08:28.093Z)": "1"
        },
        "conversationExternalContactIds": [],
        "conversationExternalOrganizationIds": [],
        "communications": [{"id": "c3d2a1b0-0000-4000-8000-000000000001", "mediaType": "VOICE"}]
    })
}

fn decoded(event: &Value) -> Result<AttributesEvent<'static>, EventError> {
    let text = event.to_string();
    match decode(&text)? {
        Event::Attributes(event) => Ok(AttributesEvent {
            conversation_id: event.conversation_id.into_owned().into(),
            event_time: event.event_time,
            attribute_keys: event
                .attribute_keys
                .into_iter()
                .map(|key| key.into_owned().into())
                .collect(),
            complete: event.complete,
        }),
        other => panic!("expected an attributes event, got {other:?}"),
    }
}

fn rejection(text: &str) -> EventError {
    match decode(text) {
        Err(error) => error,
        Ok(event) => panic!("expected {text} to be rejected, got {event:?}"),
    }
}

#[test]
fn a_real_shaped_event_gives_conversation_time_and_every_key() {
    let event = decoded(&attributes_event(body())).expect("valid event");
    assert_eq!(event.conversation_id, "12341234-1234-1234-1234-123456789012");
    assert_eq!(
        event.event_time,
        Timestamp::from_millisecond(1772856556251).expect("in range")
    );
    assert_eq!(
        event.attribute_keys,
        [
            "AccountID",
            "CustomerRoutingMetric_Unknown(2026-03-07T04:08:28.093Z)"
        ]
    );
}

#[test]
fn the_bundled_pretty_printed_sample_decodes() {
    let text = std::fs::read_to_string("samples/single-event.json").expect("sample file");
    match decode(&text).expect("valid sample") {
        Event::Attributes(event) => assert!(event.attribute_keys.iter().any(|key| key.contains("Metric_"))),
        other => panic!("expected an attributes event, got {other:?}"),
    }
}

#[test]
fn other_topics_of_the_integration_are_ignored_not_rejected() {
    for topic in ["customer.start", "flow.end", "acw", "customer.end"] {
        let mut event = attributes_event(json!({"conversationId": "c-1", "eventTime": 1}));
        event["detail-type"] = json!(format!("v2.detail.events.conversation.{{id}}.{topic}"));
        let text = event.to_string();
        assert!(matches!(decode(&text), Ok(Event::OtherTopic { .. })), "{topic}");
    }
}

#[test]
fn the_event_time_falls_back_to_the_detail_timestamp_then_the_envelope_time() {
    let mut event = attributes_event(body());
    event["detail"]["eventBody"]
        .as_object_mut()
        .expect("object")
        .remove("eventTime");
    let time = decoded(&event).expect("valid").event_time;
    assert_eq!(
        time,
        "2026-03-07T04:09:16.258Z"
            .parse::<Timestamp>()
            .expect("timestamp")
    );

    event["detail"]
        .as_object_mut()
        .expect("object")
        .remove("timestamp");
    let time = decoded(&event).expect("valid").event_time;
    assert_eq!(
        time,
        "2026-03-07T04:09:16Z".parse::<Timestamp>().expect("timestamp")
    );

    event.as_object_mut().expect("object").remove("time");
    assert!(matches!(decoded(&event), Err(EventError::MissingTime)));
}

#[test]
fn escaped_keys_are_decoded_and_repeated_keys_kept_once() {
    let text = attributes_event(body()).to_string().replace(
        "\"AccountID\"",
        r#""Caf\u00e9Metric_Menu(2026-03-07T04:08:28Z)":"1","AccountID":"a","AccountID""#,
    );
    match decode(&text).expect("valid") {
        Event::Attributes(event) => assert_eq!(
            event.attribute_keys,
            [
                "AccountID",
                "CaféMetric_Menu(2026-03-07T04:08:28Z)",
                "CustomerRoutingMetric_Unknown(2026-03-07T04:08:28.093Z)"
            ]
        ),
        other => panic!("expected an attributes event, got {other:?}"),
    }
}

#[test]
fn broken_events_are_rejected_with_a_reason() {
    assert!(matches!(rejection("{\"detail-type\": "), EventError::NotJson(_)));
    assert!(matches!(rejection("not json"), EventError::NotJson(_)));
    assert!(matches!(rejection("[1, 2]"), EventError::Shape(_)));
    assert!(matches!(rejection("{}"), EventError::Shape(_)));

    let mut no_conversation = attributes_event(body());
    no_conversation["detail"]["eventBody"]
        .as_object_mut()
        .expect("object")
        .remove("conversationId");
    assert!(matches!(
        decoded(&no_conversation),
        Err(EventError::MissingConversationId)
    ));

    let mut empty_conversation = attributes_event(body());
    empty_conversation["detail"]["eventBody"]["conversationId"] = json!("");
    empty_conversation["detail"]["topicName"] = json!("v2.detail.events.conversation..attributes");
    assert!(matches!(
        decoded(&empty_conversation),
        Err(EventError::BadConversationId(..))
    ));

    let mut attributes_not_an_object = attributes_event(body());
    attributes_not_an_object["detail"]["eventBody"]["attributes"] = json!(["a", "b"]);
    let error = decoded(&attributes_not_an_object).expect_err("rejected");
    assert!(
        error.to_string().contains("an object of participant attributes"),
        "{error}"
    );

    let mut wrong_time = attributes_event(body());
    wrong_time["detail"]["eventBody"]["eventTime"] = json!(i64::MAX);
    assert!(matches!(decoded(&wrong_time), Err(EventError::BadTime(_))));
}

#[test]
fn an_event_without_attributes_is_an_event_with_no_attributes() {
    // Every field of eventBody is optional in Genesys's schema: such an event is processed and
    // counts nothing, rather than being rejected, retried and dead-lettered.
    let mut missing = attributes_event(body());
    missing["detail"]["eventBody"]
        .as_object_mut()
        .expect("object")
        .remove("attributes");
    let mut null = attributes_event(body());
    null["detail"]["eventBody"]["attributes"] = Value::Null;
    for event in [missing, null] {
        let decoded = decoded(&event).expect("decoded");
        assert_eq!(decoded.conversation_id, "12341234-1234-1234-1234-123456789012");
        assert!(decoded.attribute_keys.is_empty());
    }
}

#[test]
fn a_topic_naming_another_conversation_is_rejected() {
    let mut event = attributes_event(body());
    event["detail"]["topicName"] =
        json!("v2.detail.events.conversation.99999999-1234-1234-1234-123456789012.attributes");
    match decoded(&event) {
        Err(EventError::TopicMismatch { conversation_id, .. }) => {
            assert_eq!(conversation_id, "12341234-1234-1234-1234-123456789012")
        }
        other => panic!("expected a topic mismatch, got {other:?}"),
    }
}

#[test]
fn a_lambda_on_failure_record_is_read_as_the_event_it_carries() {
    // What Lambda puts in the dead-letter queue after its retries, in direct mode.
    let event = attributes_event(body());
    let record = json!({
        "version": "1.0",
        "timestamp": "2026-03-07T04:12:20.000Z",
        "requestContext": {
            "requestId": "7b1c0f43-3f5e-4a3e-9d4b-2b6f1d0c8a11",
            "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:flow-metrics:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": "NotDelivered", "errorMessage": "could not count the event's keys"}
    });
    assert_eq!(
        decoded(&record).expect("decoded"),
        decoded(&event).expect("decoded")
    );
    // An event that merely mentions the word is still itself.
    let mut mentioning = body();
    mentioning["attributes"]["requestPayload"] = json!("1");
    let text = attributes_event(mentioning).to_string();
    assert!(matches!(decode(&text), Ok(Event::Attributes(_))));
}
