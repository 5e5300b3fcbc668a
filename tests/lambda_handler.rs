//! The Lambda handler in-process: direct EventBridge events and SQS batches, what it answers
//! and what it counts.

mod common;

use std::sync::atomic::Ordering;

use common::intake::{Intake, Rules};
use common::{RecordingSink, attributes_event, other_topic_event};
use flow_metrics::lambda::{InvocationError, Response, handle};
use flow_metrics::ledger::MemoryLedger;
use flow_metrics::pipeline::Pipeline;
use flow_metrics::sink::DataDogSink;
use jiff::Timestamp;
use serde_json::json;
use serde_json::value::RawValue;

const START: &str = "RoutingMetric_Start(2026-03-07T04:08:00.000Z)";

fn pipeline() -> Pipeline<MemoryLedger, RecordingSink> {
    Pipeline::new(MemoryLedger::default(), RecordingSink::default())
}

fn raw(json: String) -> Box<RawValue> {
    RawValue::from_string(json).expect("valid JSON")
}

fn sqs_batch(records: &[(&str, &str)]) -> Box<RawValue> {
    let records: Vec<_> = records
        .iter()
        .map(|(id, body)| {
            json!({
                "messageId": id,
                "receiptHandle": "handle",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:flow-metrics",
                "awsRegion": "eu-west-1"
            })
        })
        .collect();
    raw(json!({ "Records": records }).to_string())
}

fn failed_ids(response: Response) -> Vec<String> {
    match response {
        Response::Batch(batch) => batch
            .batch_item_failures
            .into_iter()
            .map(|failure| failure.item_identifier)
            .collect(),
        other => panic!("expected a batch response, got {other:?}"),
    }
}

#[tokio::test]
async fn a_direct_event_is_counted_and_answered_with_null() {
    let pipeline = pipeline();
    let event = raw(attributes_event("c-1", "2026-03-07T04:08:11Z", &[START]));
    let response = handle(&pipeline, &event, Timestamp::now().into())
        .await
        .expect("handled");
    assert_eq!(serde_json::to_string(&response).expect("json"), "null");
    assert_eq!(pipeline.sink().pushed(), [("c-1".to_owned(), START.to_owned())]);
}

#[tokio::test]
async fn other_topics_succeed_and_count_nothing() {
    let pipeline = pipeline();
    let response = handle(&pipeline, &raw(other_topic_event("c-1")), Timestamp::now().into()).await;
    assert!(matches!(response, Ok(Response::Handled)));
    assert!(pipeline.sink().pushed().is_empty());
}

#[tokio::test]
async fn a_malformed_direct_event_is_an_error_so_it_reaches_the_dead_letter_queue() {
    let pipeline = pipeline();
    let event =
        raw(r#"{"detail-type":"v2.detail.events.conversation.{id}.attributes","detail":{}}"#.to_owned());
    let error = handle(&pipeline, &event, Timestamp::now().into())
        .await
        .expect_err("rejected");
    assert!(matches!(error, InvocationError::Rejected(_)));
    assert_eq!(error.kind(), "RejectedEvent");
}

#[tokio::test]
async fn an_undelivered_direct_event_is_an_error_and_its_retry_counts_it_once() {
    let pipeline = pipeline();
    let event = raw(attributes_event("c-1", "2026-03-07T04:08:11Z", &[START]));
    pipeline.sink().failing.store(true, Ordering::SeqCst);
    let error = handle(&pipeline, &event, Timestamp::now().into())
        .await
        .expect_err("not delivered");
    assert_eq!(error.kind(), "NotDelivered");
    pipeline.sink().failing.store(false, Ordering::SeqCst);
    handle(&pipeline, &event, Timestamp::now().into())
        .await
        .expect("retried");
    handle(&pipeline, &event, Timestamp::now().into())
        .await
        .expect("duplicate");
    assert_eq!(pipeline.sink().pushed().len(), 1);
}

#[tokio::test]
async fn an_sqs_batch_reports_only_its_poison_records() {
    let pipeline = pipeline();
    let good = attributes_event("c-1", "2026-03-07T04:08:11Z", &[START]);
    let other = attributes_event("c-2", "2026-03-07T04:08:11Z", &[START]);
    let topic = other_topic_event("c-3");
    let batch = sqs_batch(&[
        ("m-1", &good),
        ("m-2", "{not an event"),
        ("m-3", &other),
        ("m-4", &topic),
        ("m-5", r#"{"Records": []}"#),
    ]);
    let response = handle(&pipeline, &batch, Timestamp::now().into())
        .await
        .expect("handled");
    assert_eq!(failed_ids(response), ["m-2", "m-5"]);
    assert_eq!(pipeline.sink().pushed().len(), 2);
}

#[tokio::test]
async fn an_sqs_batch_whose_push_fails_asks_for_the_records_with_new_keys_again() {
    let pipeline = pipeline();
    let fresh = attributes_event("c-1", "2026-03-07T04:08:11Z", &[START]);
    let nothing_new = attributes_event("c-2", "2026-03-07T04:08:11Z", &["AccountID"]);
    pipeline.sink().failing.store(true, Ordering::SeqCst);
    let response = handle(
        &pipeline,
        &sqs_batch(&[("m-1", &fresh), ("m-2", &nothing_new)]),
        Timestamp::now().into(),
    )
    .await
    .expect("handled");
    assert_eq!(failed_ids(response), ["m-1"]);
}

#[tokio::test]
async fn the_batch_response_has_lambdas_shape() {
    let pipeline = pipeline();
    let response = handle(
        &pipeline,
        &sqs_batch(&[("m-1", "nonsense")]),
        Timestamp::now().into(),
    )
    .await
    .expect("handled");
    assert_eq!(
        serde_json::to_value(&response).expect("json"),
        json!({"batchItemFailures": [{"itemIdentifier": "m-1"}]})
    );
}

#[tokio::test]
async fn a_payload_that_is_neither_an_event_nor_a_batch_is_an_error() {
    let pipeline = pipeline();
    let error = handle(&pipeline, &raw("[1,2]".to_owned()), Timestamp::now().into())
        .await
        .expect_err("unknown payload");
    assert_eq!(error.kind(), "UnknownPayload");
}

#[tokio::test]
async fn a_series_datadog_refuses_fails_only_the_records_that_carry_it() {
    // DataDog refuses any series tagged metric:poison; the other records of the batch share its
    // request, and must be delivered all the same.
    let now: Timestamp = "2026-03-07T04:10:00Z".parse().expect("time");
    let intake = Intake::start(Rules {
        now: Some(now),
        refused_tag: Some("metric:poison".to_owned()),
        ..Rules::default()
    })
    .await;
    let sink = DataDogSink::new(intake.sink_settings(&[], false)).expect("sink");
    let pipeline = Pipeline::new(MemoryLedger::default(), sink);
    let poison = "RoutingMetric_Poison(2026-03-07T04:08:05.000Z)";
    let batch = sqs_batch(&[
        ("m-1", &attributes_event("c-1", "2026-03-07T04:08:11Z", &[START])),
        (
            "m-2",
            &attributes_event("c-2", "2026-03-07T04:08:11Z", &[START, poison]),
        ),
        ("m-3", &attributes_event("c-3", "2026-03-07T04:08:11Z", &[START])),
    ]);
    let response = handle(&pipeline, &batch, now.into()).await.expect("handled");
    assert_eq!(failed_ids(response), ["m-2"], "only the poison record is retried");
    // Every good key was delivered once; the poison record's START too, with the good ones.
    let starts: usize = intake
        .points("genesys.flow.metric")
        .iter()
        .filter(|(tags, _, _)| {
            tags.as_array()
                .is_some_and(|tags| tags.contains(&json!("metric:start")))
        })
        .map(|(_, _, values)| values)
        .sum();
    assert_eq!(starts, 3);
    assert_eq!(
        pipeline.ledger().delivered(),
        3,
        "the poison key's claim was released"
    );

    // The retry fails again, with DataDog's message: after Lambda's retries it is dead-lettered.
    let retry = sqs_batch(&[(
        "m-2",
        &attributes_event("c-2", "2026-03-07T04:08:11Z", &[START, poison]),
    )]);
    let error = handle(
        &pipeline,
        &raw(attributes_event("c-2", "2026-03-07T04:08:11Z", &[START, poison])),
        now.into(),
    )
    .await
    .expect_err("refused again");
    assert!(matches!(error, InvocationError::NotDelivered(_)));
    assert!(error.to_string().contains("Invalid tag"), "{error}");
    let response = handle(&pipeline, &retry, now.into()).await.expect("handled");
    assert_eq!(failed_ids(response), ["m-2"]);
    assert_eq!(pipeline.ledger().delivered(), 3, "nothing counted twice");
}
