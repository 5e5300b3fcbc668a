//! The DataDog API key never reaches a log or an error, even at trace level with every retry
//! logged. A test binary of its own: tracing caches which callsites are enabled process-wide,
//! so a subscriber set for one test thread can miss events while other tests log concurrently.

mod common;

use std::time::Duration;

use common::intake::{Intake, Rules};
use flow_metrics::count::Occurrence;
use flow_metrics::key::Source;
use flow_metrics::sink::datadog::{ApiKey, DataDogSettings, RetryPolicy};
use flow_metrics::sink::{DataDogSink, PushContext, Sink};
use jiff::Timestamp;

const KEY: &str = "0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn the_key_never_reaches_the_logs() {
    let now: Timestamp = "2026-03-07T12:00:00Z".parse().expect("timestamp");
    let intake = Intake::start(Rules {
        now: Some(now),
        forced: vec![(500, None); 10],
        ..Rules::default()
    })
    .await;
    let (logs, _guard) = common::logs::capture();
    let settings = DataDogSettings {
        api_key: ApiKey::new(KEY).expect("key"),
        ..intake.sink_settings(&[], true)
    };
    assert!(!format!("{settings:?}").contains(KEY));
    let sink = DataDogSink::new(settings).expect("sink").with_retry(RetryPolicy {
        attempts: 4,
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        request_timeout: Duration::from_secs(5),
    });
    tracing::debug!(?sink, "sink built");
    let occurrences = [Occurrence {
        conversation_id: "c-1",
        flow: "F",
        metric: "M",
        ids: None,
        key: "a",
        time: "2026-03-07T11:59:30Z".parse().expect("timestamp"),
        elapsed: None,
        source: Source::Attribute,
    }];
    let context = PushContext { now, deadline: None };
    let failure = sink.push(&occurrences, &context).await.expect_err("unavailable");
    let logs = logs.take();
    assert!(logs.contains("retrying"), "the retries were logged: {logs}");
    assert!(!logs.contains(KEY), "{logs}");
    assert!(!failure.to_string().contains(KEY));
}
