//! The second source: Genesys flow milestones and outcomes (`….flow.outcome` events), from the
//! public sample's shape to DataDog, through both ledgers, exactly once.

mod common;

use std::collections::BTreeSet;

use common::emulator::Dynalite;
use common::intake::{Intake, Rules};
use common::public_sample::{CONVERSATION, FIRST_MILESTONE, FLOW, OUTCOME, PUBLIC_SAMPLE, SECOND_MILESTONE};
use flow_metrics::attribute::InvalidKey;
use flow_metrics::event::{Event, EventError, decode};
use flow_metrics::ledger::dynamodb::{LedgerItem, ScanFilter, create_table};
use flow_metrics::ledger::{DynamoDbLedger, Ledger, MemoryLedger};
use flow_metrics::pipeline::{BatchTime, EventOutcome, Pipeline};
use flow_metrics::redrive::redrive;
use flow_metrics::sink::{DataDogSink, JsonLinesSink, Sink};
use jiff::Timestamp;
use serde_json::{Value, json};

/// Just after the sample's event, so that its keys are fresh and in DataDog's window.
fn now() -> Timestamp {
    "2025-12-12T15:02:31Z".parse().expect("time")
}

/// The lines a replay of the public sample prints, as the issue specifies them.
fn expected_lines() -> Vec<Value> {
    vec![
        json!({"conversation_id": CONVERSATION, "flow": FLOW, "metric": FIRST_MILESTONE,
               "key": format!("milestone:{FIRST_MILESTONE}:1765551656458"),
               "time": "2025-12-12T15:00:56.458Z", "source": "milestone"}),
        json!({"conversation_id": CONVERSATION, "flow": FLOW, "metric": SECOND_MILESTONE,
               "key": format!("milestone:{SECOND_MILESTONE}:1765551659120"),
               "time": "2025-12-12T15:00:59.120Z", "source": "milestone"}),
        json!({"conversation_id": CONVERSATION, "flow": FLOW, "metric": OUTCOME,
               "key": format!("outcome:{OUTCOME}:1765551656458"),
               "time": "2025-12-12T15:01:00.853Z", "source": "outcome",
               "value": "SUCCESS", "duration_ms": 4395}),
    ]
}

fn lines(printed: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(printed)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// The sample with its body changed by `edit`.
fn sample_with(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut event: Value = serde_json::from_str(PUBLIC_SAMPLE).expect("sample");
    edit(event["detail"]["eventBody"].as_object_mut().expect("body"));
    event.to_string()
}

/// Runs the sample, delivered twice, through a pipeline over `ledger`; both deliveries must be
/// processed.
async fn twice<L: Ledger, S: Sink>(pipeline: &Pipeline<L, S>) {
    for delivery in 0..2 {
        let report = pipeline.process_batch(&[PUBLIC_SAMPLE], now()).await;
        assert!(
            matches!(report.outcomes[..], [EventOutcome::Processed(_)]),
            "delivery {delivery}: {:?}",
            report.outcomes
        );
        let counted = if delivery == 0 { 3 } else { 0 };
        assert_eq!(report.tally.keys_counted, counted, "delivery {delivery}");
    }
}

#[test]
fn the_public_sample_decodes_into_its_milestones_and_outcome() {
    let Ok(Event::FlowOutcome(event)) = decode(PUBLIC_SAMPLE) else {
        panic!("a flow outcome event");
    };
    assert_eq!(event.conversation_id, CONVERSATION);
    assert_eq!(
        event.event_time,
        Timestamp::from_millisecond(1765551750107).expect("time")
    );
    let keys: Vec<&str> = event
        .marks
        .iter()
        .map(|mark| mark.as_ref().expect("a valid mark").key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            format!("milestone:{FIRST_MILESTONE}:1765551656458"),
            format!("milestone:{SECOND_MILESTONE}:1765551659120"),
            format!("outcome:{OUTCOME}:1765551656458"),
        ]
    );
}

#[tokio::test]
async fn delivered_twice_it_counts_each_milestone_and_the_outcome_once_in_memory() {
    let pipeline = Pipeline::new(MemoryLedger::default(), JsonLinesSink::new(Vec::new()));
    twice(&pipeline).await;
    let (_, sink) = pipeline.into_parts();
    assert_eq!(lines(&sink.into_inner()), expected_lines());
}

#[tokio::test]
async fn delivered_twice_it_counts_each_milestone_and_the_outcome_once_in_dynamodb() {
    let emulator = Dynalite::start();
    create_table(&emulator.client(), "outcomes").await.expect("table");
    let ledger = DynamoDbLedger::new(emulator.client(), "outcomes");
    let pipeline = Pipeline::new(ledger, JsonLinesSink::new(Vec::new()));
    twice(&pipeline).await;
    let (ledger, sink) = pipeline.into_parts();
    assert_eq!(lines(&sink.into_inner()), expected_lines());

    // The items say what each key is, for the audit and a redrive.
    let mut items: Vec<LedgerItem> = Vec::new();
    ledger
        .scan(1, &ScanFilter::default(), |item| items.push(item))
        .await
        .expect("scan");
    items.sort_by_key(|item| item.key_time_ms);
    type Described<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<i64>);
    let described: Vec<Described<'_>> = items
        .iter()
        .map(|item| {
            (
                item.state.as_str(),
                item.source.as_deref(),
                item.outcome_value.as_deref(),
                item.duration_ms,
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            ("delivered", Some("milestone"), None, None),
            ("delivered", Some("milestone"), None, None),
            ("delivered", Some("outcome"), Some("SUCCESS"), Some(4395)),
        ]
    );
}

#[tokio::test]
async fn a_redrive_rebuilds_stuck_milestones_and_outcomes_as_they_were() {
    let emulator = Dynalite::start();
    create_table(&emulator.client(), "stuck").await.expect("table");
    // The first holder's push fails for good: its claims are released, left for a redrive.
    let refusing = Intake::start(Rules {
        now: Some(now()),
        forced: vec![(403, None)],
        ..Rules::default()
    })
    .await;
    let ledger = DynamoDbLedger::new(emulator.client(), "stuck");
    let pipeline = Pipeline::new(ledger, datadog(&refusing));
    let report = pipeline.process_batch(&[PUBLIC_SAMPLE], now()).await;
    assert!(matches!(report.outcomes[..], [EventOutcome::Failed { .. }]));
    let (ledger, _) = pipeline.into_parts();
    let mut stuck = Vec::new();
    let filter = ScanFilter {
        stuck_at: Some(now()),
        ..ScanFilter::default()
    };
    ledger
        .scan(1, &filter, |item| stuck.push(item))
        .await
        .expect("scan");
    assert_eq!(stuck.len(), 3);

    let pipeline = Pipeline::new(ledger, JsonLinesSink::new(Vec::new()));
    let report = redrive(&pipeline, &stuck, BatchTime::from(now())).await;
    assert_eq!(report.tally.keys_counted, 3);
    let (_, sink) = pipeline.into_parts();
    let mut redriven = lines(&sink.into_inner());
    redriven.sort_by_key(|line| line["time"].as_str().map(str::to_owned));
    assert_eq!(redriven, expected_lines());
}

fn datadog(intake: &Intake) -> DataDogSink {
    DataDogSink::new(intake.sink_settings(&["env:test"], false)).expect("sink")
}

#[tokio::test]
async fn datadog_receives_the_milestone_outcome_and_duration_metrics_once() {
    let intake = Intake::at(now()).await;
    let pipeline = Pipeline::new(MemoryLedger::default(), datadog(&intake));
    twice(&pipeline).await;

    let tags = |tags: &[&str]| -> Value { json!(tags) };
    let milestone_points: BTreeSet<String> = intake
        .points("genesys.flow.milestone")
        .into_iter()
        .map(|(tags, second, values)| format!("{tags} {second} {values}"))
        .collect();
    let flow = format!("flow:{FLOW}");
    // Every milestone and outcome point carries its ids beside its names (here the names are
    // unknown, so ids stand in for them too).
    let flow_id = format!("flow_id:{FLOW}");
    assert_eq!(
        milestone_points,
        BTreeSet::from([
            format!(
                "{} 1765551656 1",
                tags(&[
                    &flow,
                    &format!("milestone:{FIRST_MILESTONE}"),
                    &flow_id,
                    &format!("milestone_id:{FIRST_MILESTONE}"),
                    "env:test"
                ])
            ),
            format!(
                "{} 1765551659 1",
                tags(&[
                    &flow,
                    &format!("milestone:{SECOND_MILESTONE}"),
                    &flow_id,
                    &format!("milestone_id:{SECOND_MILESTONE}"),
                    "env:test"
                ])
            ),
        ])
    );
    let outcome_tags = tags(&[
        &flow,
        &format!("outcome:{OUTCOME}"),
        "outcome_value:success",
        &flow_id,
        &format!("outcome_id:{OUTCOME}"),
        "env:test",
    ]);
    assert_eq!(
        intake.points("genesys.flow.outcome"),
        [(outcome_tags.clone(), json!(1765551660), 1)]
    );
    let durations: Vec<(Value, Value)> = intake
        .accepted()
        .iter()
        .flat_map(|body| body["series"].as_array().expect("series").clone())
        .filter(|series| series["metric"] == "genesys.flow.outcome.duration")
        .map(|series| (series["tags"].clone(), series["points"].clone()))
        .collect();
    assert_eq!(durations, [(outcome_tags, json!([[1765551660, [4.395]]]))]);
    // Milestones and outcomes have no elapsed series: that is the attribute metrics'.
    assert!(intake.points("genesys.flow.metric.elapsed").is_empty());
}

#[tokio::test]
async fn an_event_without_milestones_or_outcome_is_processed_with_no_keys() {
    let bare = sample_with(|body| {
        for field in [
            "flowOutcomeId",
            "flowOutcomeValue",
            "flowOutcomeStartTime",
            "flowOutcomeEndTime",
            "flowMilestones",
        ] {
            body.remove(field);
        }
    });
    let pipeline = Pipeline::new(MemoryLedger::default(), JsonLinesSink::new(Vec::new()));
    let report = pipeline.process_batch(&[&bare], now()).await;
    assert!(matches!(report.outcomes[..], [EventOutcome::Processed(_)]));
    assert_eq!((report.tally.keys_seen, report.tally.keys_counted), (0, 0));
}

#[tokio::test]
async fn an_outcome_without_an_end_is_timed_at_its_start_with_no_duration() {
    let open = sample_with(|body| {
        body.remove("flowOutcomeEndTime");
        body.remove("flowMilestones");
    });
    let pipeline = Pipeline::new(MemoryLedger::default(), JsonLinesSink::new(Vec::new()));
    pipeline.process_batch(&[&open], now()).await;
    let (_, sink) = pipeline.into_parts();
    let printed = lines(&sink.into_inner());
    assert_eq!(printed.len(), 1);
    assert_eq!(printed[0]["time"], "2025-12-12T15:00:56.458Z");
    assert_eq!(printed[0]["duration_ms"], Value::Null);
    assert_eq!(printed[0]["value"], "SUCCESS");
}

#[tokio::test]
async fn what_a_key_needs_but_lacks_is_reported_invalid_and_the_rest_counts() {
    let event = sample_with(|body| {
        body["flowMilestones"][1]
            .as_object_mut()
            .expect("milestone")
            .remove("milestoneTime");
        body.remove("flowOutcomeStartTime");
    });
    let pipeline = Pipeline::new(MemoryLedger::default(), JsonLinesSink::new(Vec::new()));
    let report = pipeline.process_batch(&[&event], now()).await;
    let [EventOutcome::Processed(processed)] = &report.outcomes[..] else {
        panic!("processed: {:?}", report.outcomes);
    };
    assert_eq!(processed.counted, 1);
    assert_eq!(
        processed.invalid,
        [
            (
                format!("milestone:{SECOND_MILESTONE}:?"),
                InvalidKey::MissingField("milestoneTime")
            ),
            (
                format!("outcome:{OUTCOME}:?"),
                InvalidKey::MissingField("flowOutcomeStartTime")
            ),
        ]
    );

    // Without a flow id nothing can be tagged with its flow: every key is invalid, with why.
    let no_flow = sample_with(|body| {
        body.remove("flowId");
    });
    let report = pipeline.process_batch(&[&no_flow], now()).await;
    let [EventOutcome::Processed(processed)] = &report.outcomes[..] else {
        panic!("processed: {:?}", report.outcomes);
    };
    assert_eq!(processed.invalid.len(), 3);
    assert!(
        processed
            .invalid
            .iter()
            .all(|(_, reason)| *reason == InvalidKey::MissingField("flowId"))
    );
}

#[test]
fn a_topic_name_of_another_conversation_or_family_is_rejected() {
    let mut event: Value = serde_json::from_str(PUBLIC_SAMPLE).expect("sample");
    event["detail"]["topicName"] = json!(format!("v2.detail.events.conversation.{CONVERSATION}.attributes"));
    assert!(matches!(
        decode(&event.to_string()),
        Err(EventError::TopicMismatch { .. })
    ));
}

#[test]
fn milestones_that_are_not_a_list_reject_the_event_with_why() {
    let event = sample_with(|body| {
        body.insert("flowMilestones".to_owned(), json!("reached"));
    });
    match decode(&event) {
        Err(error @ EventError::Shape(_)) => {
            assert!(error.to_string().contains("a list of milestones"), "{error}")
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    // null is as good as absent.
    let null = sample_with(|body| {
        body.insert("flowMilestones".to_owned(), Value::Null);
    });
    let Ok(Event::FlowOutcome(event)) = decode(&null) else {
        panic!("a flow outcome event");
    };
    assert_eq!(event.marks.len(), 1, "the outcome alone");
}

#[tokio::test]
async fn ids_too_long_for_a_key_or_with_control_characters_are_invalid_not_sent_to_the_ledger() {
    // DynamoDB refuses a sort key over 1,024 bytes: such a milestone would fail its event for good.
    let long = "m".repeat(2_000);
    let event = sample_with(|body| {
        body["flowMilestones"][0]["milestoneId"] = json!(long);
        body["flowOutcomeId"] = json!("outcome\u{7}bell");
    });
    let pipeline = Pipeline::new(MemoryLedger::default(), JsonLinesSink::new(Vec::new()));
    let report = pipeline.process_batch(&[&event], now()).await;
    let [EventOutcome::Processed(processed)] = &report.outcomes[..] else {
        panic!("processed: {:?}", report.outcomes);
    };
    assert_eq!(processed.counted, 1, "the second milestone still counts");
    let fields: Vec<&str> = processed
        .invalid
        .iter()
        .map(|(_, reason)| match reason {
            InvalidKey::NotAnId { field, .. } => *field,
            other => panic!("{other}"),
        })
        .collect();
    assert_eq!(fields, ["milestoneId", "flowOutcomeId"]);
    assert!(
        processed
            .invalid
            .iter()
            .all(|(key, reason)| reason.to_string().len() < 400 && key.len() > 10)
    );
}
