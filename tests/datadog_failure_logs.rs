//! When DataDog refuses or cannot be reached, the function's log lines carry the words the cdk
//! stack's metric filter counts (`src/log_markers.json`): the CloudWatch alarm on failing pushes
//! depends on them, since self-metrics sent to DataDog fail along with the points. A test binary
//! of its own: tracing caches which callsites are enabled process-wide.

mod common;

use common::attributes_event;
use common::intake::{Intake, Rules};
use flow_metrics::count::Tally;
use flow_metrics::ledger::MemoryLedger;
use flow_metrics::pipeline::Pipeline;
use flow_metrics::sink::datadog::{ApiKey, DataDogSettings};
use flow_metrics::sink::{DataDogSink, PushContext, Sink};
use jiff::{SignedDuration, Timestamp};

fn markers() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/log_markers.json"))
        .expect("src/log_markers.json");
    let markers: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    markers["dataDogPushFailures"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|word| word.as_str().expect("a word").to_owned())
        .collect()
}

#[tokio::test]
async fn failed_pushes_log_the_words_the_cloudwatch_alarm_counts() {
    let now: Timestamp = "2026-03-07T04:10:00Z".parse().expect("time");
    // A wrong key: every request refused with 403.
    let intake = Intake::start(Rules {
        now: Some(now),
        forced: vec![(403, None); 10],
        ..Rules::default()
    })
    .await;
    let (logs, _guard) = common::logs::capture();
    let sink = DataDogSink::new(DataDogSettings {
        api_key: ApiKey::new("wrong").expect("key"),
        ..intake.sink_settings(&[], true)
    })
    .expect("sink");
    let pipeline = Pipeline::new(MemoryLedger::default(), sink);
    let event = attributes_event(
        "c-1",
        "2026-03-07T04:08:11Z",
        &["RoutingMetric_Start(2026-03-07T04:08:00Z)"],
    );
    pipeline.process_batch(&[&event], now).await;
    let push_logs = logs.take();
    let markers = markers();
    assert!(
        markers.iter().any(|marker| push_logs.contains(marker.as_str())),
        "a failed push logs one of {markers:?}: {push_logs}"
    );

    // Self-metrics sent alone, a minute later, fail too: that is logged with a marker as well.
    pipeline.sink().record(&Tally::default(), now);
    let later = PushContext {
        now: now + SignedDuration::from_secs(61),
        deadline: None,
    };
    pipeline.sink().push(&[], &later).await.expect("never fails");
    let alone_logs = logs.take();
    assert!(
        markers.iter().any(|marker| alone_logs.contains(marker.as_str())),
        "failed self-metrics log one of {markers:?}: {alone_logs}"
    );
}
