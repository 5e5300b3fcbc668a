//! When the Genesys OAuth client's secret cannot be read at cold start, the Lambda counts anyway:
//! ids stand in for names not in the fixed map, the failure is logged with the words the cdk
//! stack's alarm counts (`namesUnavailable` in `src/log_markers.json`) and counted
//! (`genesys.flow_metrics.names_unavailable`, the invocation line's `names_unavailable`), and the
//! setup is tried again later, so that a mended permission heals without a restart. A test
//! binary of its own: tracing caches which callsites are enabled process-wide. Current-thread
//! runtimes, so that the lines of background tasks are captured too.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::genesys::{CLIENT_ID, CLIENT_SECRET, FakeGenesys};
use common::intake::Intake;
use common::public_sample::{FLOW, OUTCOME, PUBLIC_SAMPLE};
use common::secrets::{FakeSecrets, SECRET_ARN};

use flow_metrics::ledger::MemoryLedger;
use flow_metrics::names::{CredentialsSource, GenesysConfig, Names, NamesConfig};
use flow_metrics::pipeline::{BatchTime, Pipeline};
use flow_metrics::sink::{DataDogSink, PushContext, Sink};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

fn markers() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/log_markers.json"))
        .expect("src/log_markers.json");
    let markers: Value = serde_json::from_str(&text).expect("JSON");
    markers["namesUnavailable"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|word| word.as_str().expect("a word").to_owned())
        .collect()
}

fn now() -> Timestamp {
    "2025-12-12T15:02:40Z".parse().expect("time")
}

/// The public sample, for a conversation of its own.
fn sample(conversation: &str) -> Box<serde_json::value::RawValue> {
    let mut event: Value = serde_json::from_str(PUBLIC_SAMPLE).expect("sample");
    event["detail"]["topicName"] = json!(format!(
        "v2.detail.events.conversation.{conversation}.flow.outcome"
    ));
    event["detail"]["eventBody"]["conversationId"] = json!(conversation);
    serde_json::value::RawValue::from_string(event.to_string()).expect("json")
}

/// The sum of a self-metric's values the intake accepted.
fn self_metric(intake: &Intake, name: &str) -> f64 {
    intake
        .accepted()
        .iter()
        .flat_map(|body| body["series"].as_array().cloned().unwrap_or_default())
        .filter(|series| series["metric"] == format!("genesys.flow_metrics.{name}"))
        .flat_map(|series| series["points"].as_array().cloned().unwrap_or_default())
        .flat_map(|point| point[1].as_array().cloned().unwrap_or_default())
        .map(|value| value.as_f64().unwrap_or_default())
        .sum()
}

/// Sends what the sink holds back: the self-metrics ride with its next request.
async fn send_held_back(sink: &DataDogSink) {
    sink.flush(&PushContext {
        now: now(),
        deadline: None,
    })
    .await;
}

#[tokio::test]
async fn a_secret_that_cannot_be_read_at_cold_start_leaves_ids_for_names_and_counting_goes_on() {
    let (logs, _guard) = common::logs::capture();
    let secrets = FakeSecrets::default();
    let (_secrets_server, secrets_client) = secrets.start().await;
    let genesys = FakeGenesys::start(
        Duration::from_secs(3600),
        &[
            ("flows", FLOW, "Customer Routing"),
            ("outcomes", OUTCOME, "Self service"),
        ],
    )
    .await;
    let config = NamesConfig {
        fixed: HashMap::from([(FLOW.to_owned(), "Billing IVR".to_owned())]),
        genesys: Some(GenesysConfig {
            login_url: genesys.uri(),
            api_url: genesys.uri(),
            credentials: CredentialsSource::SecretArn(SECRET_ARN.to_owned()),
            ttl: SignedDuration::from_hours(1),
        }),
    };

    // Cold start: the function's role may not read the secret. Names are set up anyway.
    let retry_every = Duration::from_millis(300);
    let names = Names::from_config_or_ids(&config, Some(secrets_client), None, retry_every).await;
    let cold_start_logs = logs.take();
    let markers = markers();
    let error_line = cold_start_logs
        .lines()
        .find(|line| markers.iter().any(|marker| line.contains(marker.as_str())))
        .unwrap_or_else(|| panic!("the failure is logged with one of {markers:?}: {cold_start_logs}"));
    assert!(error_line.contains("\"ERROR\""), "{error_line}");
    assert!(error_line.contains("AccessDeniedException"), "{error_line}");
    assert!(error_line.contains(SECRET_ARN), "{error_line}");

    let intake = Intake::at(now()).await;
    let sink = DataDogSink::new(intake.sink_settings(&[], true)).expect("sink");
    let pipeline = Pipeline::new(MemoryLedger::default(), sink).with_names(Arc::new(names));
    let time = BatchTime {
        now: now(),
        deadline: None,
    };

    // The outcome is counted: its flow named by the fixed map, the outcome by its id.
    let answer = flow_metrics::lambda::handle(&pipeline, &sample("c-1"), time).await;
    assert!(answer.is_ok(), "{answer:?}");
    let outcomes = intake.points("genesys.flow.outcome");
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(
        outcomes[0].0,
        json!([
            "flow:billing_ivr",
            format!("outcome:{OUTCOME}"),
            "outcome_value:success",
            format!("flow_id:{FLOW}"),
            format!("outcome_id:{OUTCOME}"),
        ])
    );
    assert_eq!(intake.points("genesys.flow.milestone").len(), 2);
    let invocation_logs = logs.take();
    let invocation_line = invocation_logs
        .lines()
        .find(|line| line.contains("\"invocation\""))
        .expect("an invocation line");
    assert!(
        invocation_line.contains("\"names_unavailable\":1"),
        "{invocation_line}"
    );
    // The self-metric rides with the next request.
    send_held_back(pipeline.sink()).await;
    assert_eq!(self_metric(&intake, "names_unavailable"), 1.0);

    // The permission is mended; the setup is tried again once it is due, in the background,
    // and names come from Genesys again without a restart.
    secrets.answer(Some(
        &json!({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}).to_string(),
    ));
    tokio::time::sleep(retry_every + Duration::from_millis(50)).await;
    let mut conversation = 1;
    let named = loop {
        conversation += 1;
        let answer =
            flow_metrics::lambda::handle(&pipeline, &sample(&format!("c-{conversation}")), time).await;
        assert!(answer.is_ok(), "{answer:?}");
        let latest = intake.points("genesys.flow.outcome").pop().expect("a point");
        if latest.0[1] == "outcome:self_service" || conversation > 50 {
            break latest;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(named.0[0], "flow:billing_ivr", "the fixed map still comes first");
    assert_eq!(named.0[1], "outcome:self_service");
    let healed_logs = logs.take();
    assert!(healed_logs.contains("available again"), "{healed_logs}");
    // Once names are available again, invocations no longer count them unavailable.
    let before = self_metric(&intake, "names_unavailable");
    let answer = flow_metrics::lambda::handle(&pipeline, &sample("c-last"), time).await;
    assert!(answer.is_ok(), "{answer:?}");
    assert!(logs.take().contains("\"names_unavailable\":0"));
    send_held_back(pipeline.sink()).await;
    assert_eq!(self_metric(&intake, "names_unavailable"), before);
}

#[tokio::test]
async fn an_unreadable_secret_is_logged_without_its_content() {
    let (logs, _guard) = common::logs::capture();
    let secrets = FakeSecrets::default();
    secrets.answer(Some(r#"{"clientId": "id", "clientSecret": "hunter2-TOPSECRET"#));
    let (_server, client) = secrets.start().await;
    let config = NamesConfig {
        fixed: HashMap::new(),
        genesys: Some(GenesysConfig {
            login_url: "http://127.0.0.1:9".to_owned(),
            api_url: "http://127.0.0.1:9".to_owned(),
            credentials: CredentialsSource::SecretArn(SECRET_ARN.to_owned()),
            ttl: SignedDuration::from_hours(1),
        }),
    };
    let names = Names::from_config_or_ids(&config, Some(client), None, Duration::from_secs(300)).await;
    let text = logs.take();
    assert!(text.contains("names unavailable"), "{text}");
    assert!(text.contains("is not {"), "{text}");
    assert!(!text.contains("TOPSECRET"), "{text}");
    use flow_metrics::names::{Directory, NameKind};
    assert_eq!(names.name(NameKind::Flow, FLOW), None);
    assert!(names.unavailable().is_some());
}
