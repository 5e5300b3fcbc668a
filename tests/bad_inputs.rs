//! The bad-input catalogue (README, "Bad inputs"): one test per row. Each hostile or broken
//! input gets a clear error or a documented skip; the rest of its batch is still processed;
//! nothing panics, nothing is counted twice or lost.

mod common;

use common::intake::{Intake, Rules};
use common::{RecordingSink, attributes_event};
use flow_metrics::attribute::{Attribute, InvalidKey, classify};
use flow_metrics::event::EventError;
use flow_metrics::lambda::{Response, handle};
use flow_metrics::ledger::dynamodb::DEFAULT_RETENTION;
use flow_metrics::ledger::{Claim, ClaimRequest, Held, Ledger, LedgerError, LedgerTerms, MemoryLedger};
use flow_metrics::pipeline::{BatchReport, DeliveryError, EventOutcome, Pipeline};
use flow_metrics::sink::SinkError;
use jiff::{SignedDuration, Timestamp};
use serde_json::value::RawValue;
use serde_json::{Value, json};

const GOOD_KEY: &str = "RoutingMetric_Start(2026-03-07T04:08:00.000Z)";

fn pipeline() -> Pipeline<MemoryLedger, RecordingSink> {
    Pipeline::new(MemoryLedger::default(), RecordingSink::default())
}

fn good_event(conversation: &str) -> String {
    attributes_event(conversation, "2026-03-07T04:08:11Z", &[GOOD_KEY])
}

/// Processes `bad` between two good events; checks the good ones still count, once.
async fn between_good_events(bad: String) -> (BatchReport, Pipeline<MemoryLedger, RecordingSink>) {
    let pipeline = pipeline();
    let events = [good_event("before"), bad, good_event("after")];
    let texts: Vec<&str> = events.iter().map(String::as_str).collect();
    let report = pipeline.process_batch(&texts, Timestamp::now()).await;
    let pushed = pipeline.sink().pushed();
    assert!(
        pushed.contains(&("before".to_owned(), GOOD_KEY.to_owned())),
        "{pushed:?}"
    );
    assert!(
        pushed.contains(&("after".to_owned(), GOOD_KEY.to_owned())),
        "{pushed:?}"
    );
    (report, pipeline)
}

fn rejection(report: &BatchReport) -> &EventError {
    match &report.outcomes[1] {
        EventOutcome::Rejected(error) => error,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn processed(report: &BatchReport) -> &flow_metrics::pipeline::EventReport {
    match &report.outcomes[1] {
        EventOutcome::Processed(report) => report,
        other => panic!("expected the event to be processed, got {other:?}"),
    }
}

fn event_with_attributes(conversation: &str, attributes: serde_json::Map<String, Value>) -> String {
    json!({
        "detail-type": "v2.detail.events.conversation.{id}.attributes",
        "time": "2026-03-07T04:09:16Z",
        "detail": {
            "topicName": format!("v2.detail.events.conversation.{conversation}.attributes"),
            "eventBody": {"eventTime": 1772856556251i64, "conversationId": conversation, "attributes": attributes}
        }
    })
    .to_string()
}

#[tokio::test]
async fn invalid_json_is_rejected_as_such() {
    let (report, _) = between_good_events(r#"{"detail-type": "v2.detail"#.to_owned()).await;
    assert!(matches!(rejection(&report), EventError::NotJson(_)));
    assert!(rejection(&report).to_string().starts_with("not valid JSON: "));
}

#[tokio::test]
async fn an_event_of_256_kb_is_processed() {
    let mut attributes = serde_json::Map::new();
    attributes.insert(GOOD_KEY.to_owned(), json!("1"));
    attributes.insert("Padding".to_owned(), json!("x".repeat(256 * 1024 - 600)));
    let event = event_with_attributes("big", attributes);
    assert!(event.len() >= 255 * 1024, "{}", event.len());
    let (report, pipeline) = between_good_events(event).await;
    assert_eq!(processed(&report).counted, 1);
    assert!(
        pipeline
            .sink()
            .pushed()
            .contains(&("big".to_owned(), GOOD_KEY.to_owned()))
    );
}

#[tokio::test]
async fn ten_thousand_attributes_are_all_read() {
    let attributes: serde_json::Map<String, Value> = (0..10_000)
        .map(|i| {
            let key = if i % 10 == 0 {
                format!("RoutingMetric_Step{i}(2026-03-07T04:08:00.000Z)")
            } else {
                format!("Attribute{i}")
            };
            (key, json!("1"))
        })
        .collect();
    let (report, _) = between_good_events(event_with_attributes("wide", attributes)).await;
    assert_eq!(processed(&report).counted, 1000);
}

#[tokio::test]
async fn keys_of_100_kb_are_ignored_or_invalid_and_reported_short() {
    let huge_other = "A".repeat(100 * 1024);
    let huge_metric = format!("{}Metric_M(2026-03-07T04:08:00Z)", "F".repeat(100 * 1024));
    let huge_date = format!("FMetric_M({})", "9".repeat(100 * 1024));
    let attributes = [&huge_other, &huge_metric, &huge_date]
        .into_iter()
        .map(|key| (key.clone(), json!("1")))
        .collect();
    let (report, _) = between_good_events(event_with_attributes("huge", attributes)).await;
    let invalid = &processed(&report).invalid;
    assert_eq!(invalid.len(), 2);
    assert!(
        invalid
            .iter()
            .any(|(_, reason)| matches!(reason, InvalidKey::NameTooLong { len, .. } if *len == 100 * 1024))
    );
    for (_, reason) in invalid {
        assert!(
            reason.to_string().len() < 400,
            "the reason quotes an excerpt: {reason}"
        );
    }
}

#[tokio::test]
async fn escapes_that_are_not_unicode_are_rejected() {
    // A lone surrogate is not a character: serde_json refuses it.
    let event = good_event("surrogate").replace("RoutingMetric_Start", r"Routing\ud800Metric_Start");
    let (report, _) = between_good_events(event).await;
    assert!(
        matches!(rejection(&report), EventError::NotJson(_)),
        "{}",
        rejection(&report)
    );
}

#[tokio::test]
async fn control_characters_make_a_key_invalid_and_a_conversation_id_rejected() {
    let attributes = [(
        "Routing\nIVRMetric_Start(2026-03-07T04:08:00Z)".to_owned(),
        json!("1"),
    )]
    .into_iter()
    .collect();
    let (report, _) = between_good_events(event_with_attributes("ctl", attributes)).await;
    assert!(matches!(
        processed(&report).invalid[0].1,
        InvalidKey::ForbiddenCharacter { found: '\n', .. }
    ));
    let event = event_with_attributes("bad\u{7}id", serde_json::Map::new());
    let (report, _) = between_good_events(event).await;
    assert!(matches!(rejection(&report), EventError::BadConversationId(..)));
}

#[test]
fn metric_marker_in_odd_places_follows_the_rules() {
    let read = |key: &str| match classify(key) {
        Attribute::Other => "other".to_owned(),
        Attribute::Metric(m) => format!("{} / {}", m.flow, m.metric),
        Attribute::Invalid(reason) => format!("invalid: {reason}"),
    };
    assert_eq!(
        read("Metric_Start(2026-03-07T04:08:00Z)"),
        "invalid: the flow name is empty"
    );
    assert_eq!(
        read("RoutingMetric_"),
        "invalid: no '(' opens the datetime after the metric name"
    );
    assert_eq!(
        read("RoutingMetric_Metric_(2026-03-07T04:08:00Z)"),
        "Routing / Metric_"
    );
    assert_eq!(
        read("A Metric_B Metric_C(2026-03-07T04:08:00Z)"),
        "A  / B Metric_C"
    );
    assert_eq!(read("metric_lowercase(2026-03-07T04:08:00Z)"), "other");
    assert_eq!(
        read("RoutingMetric_Start(2026-03-07T04:08:00Z)Metric_"),
        "invalid: the key must end with ')' closing the datetime"
    );
}

#[tokio::test]
async fn dates_out_of_range_are_invalid_or_stale() {
    let attributes = [
        "RoutingMetric_A(2026-02-29T00:00:00Z)",
        "RoutingMetric_B(2026-03-07T24:00:00Z)",
        "RoutingMetric_C(2026-03-07T23:59:60Z)",
        "RoutingMetric_D(10000-01-01T00:00:00Z)",
        "RoutingMetric_E(0000-01-01T00:00:00Z)",
        "RoutingMetric_F(9999-12-31T23:59:59-23:59)",
        "RoutingMetric_G(9999-12-01T00:00:00Z)",
    ]
    .into_iter()
    .map(|key| (key.to_owned(), json!("1")))
    .collect();
    let (report, _) = between_good_events(event_with_attributes("dates", attributes)).await;
    let report = processed(&report);
    // Feb 29 of a common year, hour 24, second 60, a 5-digit year, and a time past jiff's range.
    assert_eq!(report.invalid.len(), 5, "{:?}", report.invalid);
    // Representable but far from the event: stale (year 0) or counted (year 9999, which DataDog
    // then receives at the processing time).
    assert_eq!(report.stale.len(), 1);
    assert_eq!(report.counted, 1);
}

#[tokio::test]
async fn a_conversation_id_that_is_not_a_uuid_is_accepted() {
    let (report, pipeline) = between_good_events(good_event("IVR-call-42")).await;
    assert_eq!(processed(&report).counted, 1);
    assert!(
        pipeline
            .sink()
            .pushed()
            .contains(&("IVR-call-42".to_owned(), GOOD_KEY.to_owned()))
    );
}

#[tokio::test]
async fn a_missing_or_empty_conversation_id_is_rejected() {
    let mut event: Value = serde_json::from_str(&good_event("x")).expect("json");
    event["detail"]["eventBody"]
        .as_object_mut()
        .expect("body")
        .remove("conversationId");
    let (report, _) = between_good_events(event.to_string()).await;
    assert!(matches!(rejection(&report), EventError::MissingConversationId));
    let (report, _) = between_good_events(event_with_attributes("", serde_json::Map::new())).await;
    assert!(matches!(rejection(&report), EventError::BadConversationId(..)));
}

#[tokio::test]
async fn a_topic_naming_another_conversation_is_rejected() {
    let event = good_event("one").replace("conversation.one.attributes", "conversation.two.attributes");
    let (report, pipeline) = between_good_events(event).await;
    assert!(matches!(rejection(&report), EventError::TopicMismatch { .. }));
    assert!(
        !pipeline
            .sink()
            .pushed()
            .iter()
            .any(|(c, _)| c == "one" || c == "two")
    );
}

#[tokio::test]
async fn an_sqs_record_that_is_not_an_eventbridge_event_fails_alone() {
    let pipeline = pipeline();
    let records = json!({"Records": [
        {"messageId": "m-1", "body": good_event("first"), "eventSource": "aws:sqs"},
        {"messageId": "m-2", "body": r#"{"Records":[{"body":"nested"}]}"#, "eventSource": "aws:sqs"},
        {"messageId": "m-3", "body": "", "eventSource": "aws:sqs"},
        {"messageId": "m-4", "body": good_event("second"), "eventSource": "aws:sqs"}
    ]});
    let payload = RawValue::from_string(records.to_string()).expect("json");
    let Ok(Response::Batch(response)) = handle(&pipeline, &payload, Timestamp::now().into()).await else {
        panic!("a batch response");
    };
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m-2", "m-3"]);
    assert_eq!(pipeline.sink().pushed().len(), 2);
}

#[tokio::test]
async fn datadog_refusing_a_payload_as_too_large_fails_the_event_without_losing_its_keys() {
    // One series, refused as too large: nothing smaller to split it into.
    let intake = Intake::start(Rules {
        forced: vec![(413, None)],
        ..Rules::default()
    })
    .await;
    let sink = flow_metrics::sink::DataDogSink::new(intake.sink_settings(&[], false)).expect("sink");
    let pipeline = Pipeline::new(MemoryLedger::default(), sink);
    let event = good_event("c-413");
    let first = pipeline.process_batch(&[&event], Timestamp::now()).await;
    match &first.outcomes[0] {
        EventOutcome::Failed {
            error: DeliveryError::Sink(SinkError::Permanent(message)),
            ..
        } => assert!(
            message.contains("413") && message.contains("forced by the test"),
            "{message}"
        ),
        other => panic!("expected a permanent sink failure, got {other:?}"),
    }
    // The claim was released: the event's retry (or the dead-letter redrive) counts it once.
    let retried = pipeline.process_batch(&[&event], Timestamp::now()).await;
    assert_eq!(retried.tally.keys_counted, 1);
    assert_eq!(pipeline.ledger().delivered(), 1);
    assert_eq!(intake.statuses(), [413, 202]);
}

/// The memory ledger, with records kept as long as a DynamoDB table's by default.
struct Forgetting(MemoryLedger);

impl Ledger for Forgetting {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, LedgerError> {
        self.0.claim(request).await
    }

    async fn confirm(&self, held: Held<'_>, possibly_doubled: bool) -> Result<Vec<String>, LedgerError> {
        self.0.confirm(held, possibly_doubled).await
    }

    async fn release(&self, held: Held<'_>, maybe_delivered: bool) -> Result<(), LedgerError> {
        self.0.release(held, maybe_delivered).await
    }

    fn terms(&self) -> LedgerTerms {
        LedgerTerms {
            retention: Some(DEFAULT_RETENTION),
            ..self.0.terms()
        }
    }
}

#[tokio::test]
async fn an_event_too_old_for_the_ledgers_retention_is_rejected_not_counted_again() {
    let pipeline = Pipeline::new(Forgetting(MemoryLedger::default()), RecordingSink::default());
    let event_time: Timestamp = "2026-03-07T04:08:11Z".parse().expect("time");
    let events = [good_event("old")];
    let texts: Vec<&str> = events.iter().map(String::as_str).collect();
    // 22 days on, the keys' records are surely kept: counted.
    let report = pipeline
        .process_batch(&texts, event_time + SignedDuration::from_hours(22 * 24))
        .await;
    assert!(matches!(report.outcomes[0], EventOutcome::Processed(_)));
    // 24 days on (retention 30 days less the 7-day key age), they may be gone: refused.
    let report = pipeline
        .process_batch(&texts, event_time + SignedDuration::from_hours(24 * 24))
        .await;
    match &report.outcomes[0] {
        EventOutcome::Rejected(error @ EventError::TooOld { .. }) => assert!(
            error
                .to_string()
                .contains("the records of its keys may have expired, and counting it could count them again"),
            "{error}"
        ),
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(pipeline.sink().pushed().len(), 1);
}
