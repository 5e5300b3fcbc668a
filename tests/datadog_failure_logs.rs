//! When DataDog refuses or cannot be reached, the function's log lines carry the words the cdk
//! stack's metric filter counts (`src/log_markers.json`): the CloudWatch alarm on failing pushes
//! depends on them, since self-metrics sent to DataDog fail along with the points. So do the
//! lines of requests DataDog may have taken and that are sent again (`PossiblyDoubled`). A test
//! binary of its own: tracing caches which callsites are enabled process-wide.

mod common;

use common::attributes_event;
use common::intake::{Intake, LostAnswer, Rules};
use flow_metrics::count::Tally;
use flow_metrics::ledger::MemoryLedger;
use flow_metrics::pipeline::Pipeline;
use flow_metrics::sink::datadog::{ApiKey, DataDogSettings};
use flow_metrics::sink::{DataDogSink, PushContext, Sink};
use jiff::{SignedDuration, Timestamp};

/// The words of one kind of line in `src/log_markers.json`.
fn markers(kind: &str) -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/log_markers.json"))
        .expect("src/log_markers.json");
    let markers: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    markers[kind]
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
    let markers = markers("dataDogPushFailures");
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

#[tokio::test]
async fn a_request_datadog_may_have_taken_and_sent_again_logs_each_key_with_the_possibly_doubled_marker() {
    let now: Timestamp = "2026-03-07T04:10:00Z".parse().expect("time");
    // DataDog takes the first request, and its answer is lost: a 503.
    let intake = Intake::start(Rules {
        now: Some(now),
        lost_answers: vec![LostAnswer::Status(503)],
        ..Rules::default()
    })
    .await;
    let (logs, _guard) = common::logs::capture();
    let sink = DataDogSink::new(intake.sink_settings(&[], false)).expect("sink");
    let pipeline = Pipeline::new(MemoryLedger::default(), sink);
    let event = attributes_event(
        "c-1",
        "2026-03-07T04:08:11Z",
        &[
            "RoutingMetric_Start(2026-03-07T04:08:00Z)",
            "RoutingMetric_Menu(2026-03-07T04:08:05Z)",
        ],
    );
    let report = pipeline.process_batch(&[&event], now).await;
    assert_eq!(report.tally.keys_counted, 2, "delivered on the retry");
    assert_eq!(report.tally.keys_possibly_doubled, 2);
    let logged = logs.take();
    let lines: Vec<serde_json::Value> = logged
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let request: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| {
            line["fields"]["message"]
                == "DataDog may have taken this request though its answer was a server error or never \
                    came: its points may be counted twice; sent again"
        })
        .collect();
    assert_eq!(request.len(), 1, "one line for the one resend: {logged}");
    assert_eq!(request[0]["level"], "WARN");
    assert_eq!(request[0]["fields"]["points"], 2);
    assert!(
        request[0]["fields"]["error"]
            .as_str()
            .is_some_and(|error| error.contains("503")),
        "{logged}"
    );
    // The metric filter counts one line per key, each naming its conversation and key.
    let markers = markers("possiblyDoubled");
    let keyed: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| {
            markers
                .iter()
                .any(|marker| line.to_string().contains(marker.as_str()))
        })
        .collect();
    assert_eq!(keyed.len(), 2, "{logged}");
    for line in keyed {
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["fields"]["conversation_id"], "c-1");
        assert!(
            line["fields"]["key"]
                .as_str()
                .is_some_and(|key| key.starts_with("RoutingMetric_"))
        );
    }
}
