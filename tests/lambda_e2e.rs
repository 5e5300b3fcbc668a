//! End to end: the real Lambda binary under cargo-lambda's local runtime emulator
//! (`cargo lambda watch --only-lambda-apis`, invoked with `cargo lambda invoke`), with its ledger
//! in dynalite and its points going to a fake DataDog intake, all on 127.0.0.1. Then the same
//! events replayed with `flow-metrics replay --sink datadog` send the same points.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::attributes_event;
use common::emulator::{Dynalite, Running, start_listening};
use common::genesys::{CLIENT_ID, CLIENT_SECRET, FakeGenesys};
use common::intake::Intake;
use common::public_sample::{FLOW as SAMPLE_FLOW, OUTCOME as SAMPLE_OUTCOME, PUBLIC_SAMPLE};
use flow_metrics::ledger::dynamodb::create_table;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const TABLE: &str = "flow-metrics-e2e";

/// cargo-lambda from PATH, or where scripts/test.sh installs it.
fn cargo_lambda() -> PathBuf {
    let installed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/cargo-lambda");
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("cargo-lambda"))
            .find(|candidate| candidate.exists())
    });
    let found = on_path.or_else(|| installed.exists().then_some(installed));
    found.expect(
        "cargo-lambda is not installed: run scripts/test.sh (pip install cargo-lambda into .tools/venv)",
    )
}

/// How many `genesys.flow.metric` values the intake received per (tags, timestamp), over all
/// requests (how they were split into requests does not matter to DataDog).
fn flow_points(intake: &Intake) -> Vec<(Value, Value, usize)> {
    let mut totals: BTreeMap<(String, String), (Value, Value, usize)> = BTreeMap::new();
    for (tags, time, values) in intake.points("genesys.flow.metric") {
        let key = (tags.to_string(), time.to_string());
        totals.entry(key).or_insert_with(|| (tags, time, 0)).2 += values;
    }
    totals.into_values().collect()
}

/// The function running under the emulator; invoked through `cargo lambda invoke`.
struct LocalLambda {
    port: u16,
    _emulator: Running,
    _function: Running,
}

impl LocalLambda {
    /// The function with its ledger in `dynalite`, its points going to `intake`, and `extra`
    /// settings.
    fn start(dynalite: &Dynalite, intake: &Intake, extra: &[(&str, String)]) -> LocalLambda {
        let (emulator, port) = start_listening("cargo lambda watch", |port| {
            let mut command = Command::new(cargo_lambda());
            command
                .args([
                    "lambda",
                    "watch",
                    "--only-lambda-apis",
                    "-A",
                    "127.0.0.1",
                    "-P",
                    &port.to_string(),
                ])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            command
        });
        let function = Command::new(env!("CARGO_BIN_EXE_flow-metrics-lambda"))
            .envs(dynalite.environment())
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("FLOW_METRICS_TABLE", TABLE)
            .env("DD_API_KEY", "e2e-test-key")
            .env("DD_URL", intake.uri())
            .env("DD_TAGS", "env:e2e")
            .envs(extra.iter().map(|(name, value)| (*name, value.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the function");
        LocalLambda {
            port,
            _emulator: emulator,
            _function: Running(function),
        }
    }

    /// Invokes the function; returns its answer, or the error cargo-lambda printed.
    fn invoke(&self, payload: &Value) -> Result<Value, String> {
        let output = Command::new(cargo_lambda())
            .args([
                "lambda",
                "invoke",
                "-A",
                "127.0.0.1",
                "-P",
                &self.port.to_string(),
            ])
            .args(["--data-ascii", &payload.to_string(), "_"])
            .output()
            .expect("run cargo lambda invoke");
        let stdout = String::from_utf8_lossy(&output.stdout);
        if output.status.success() {
            Ok(serde_json::from_str(stdout.trim()).expect("a JSON answer"))
        } else {
            Err(format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)))
        }
    }
}

/// Events whose keys are a few seconds old, so that their points are on time.
fn recent_events() -> (Value, Value, Value) {
    let now = Timestamp::now();
    let at = |seconds: i64| now - SignedDuration::from_secs(seconds);
    let key = |metric: &str, seconds: i64| format!("CustomerRoutingMetric_{metric}({})", at(seconds));
    let (start, menu) = (key("Start", 40), key("Menu", 30));
    let event_time = at(20).to_string();
    let first = attributes_event("c-direct", &event_time, &[&start, &menu, "AccountID"]);
    let second = attributes_event("c-queued", &event_time, &[&start]);
    let third = attributes_event("c-queued-2", &event_time, &[&menu]);
    let parse = |text: String| serde_json::from_str::<Value>(&text).expect("event");
    (parse(first), parse(second), parse(third))
}

fn sqs_batch(records: &[(&str, String)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body)| json!({"messageId": id, "body": body, "eventSource": "aws:sqs"}))
        .collect();
    json!({ "Records": records })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lambda_counts_direct_and_queued_events_once_and_replay_sends_the_same_points() {
    let dynalite = Dynalite::start();
    create_table(&dynalite.client(), TABLE).await.expect("table");
    let intake = Intake::accepting().await;
    let lambda = LocalLambda::start(&dynalite, &intake, &[]);
    let (direct, queued, queued_again) = recent_events();

    // Direct mode: an EventBridge event, then its duplicate.
    assert_eq!(lambda.invoke(&direct), Ok(Value::Null));
    assert_eq!(lambda.invoke(&direct), Ok(Value::Null));
    assert_eq!(flow_points(&intake).iter().map(|p| p.2).sum::<usize>(), 2);

    // Queued mode: an SQS batch with one poison record.
    let batch = sqs_batch(&[
        ("m-1", queued.to_string()),
        ("m-poison", "{\"detail-type\": 42".to_owned()),
        ("m-2", queued_again.to_string()),
    ]);
    assert_eq!(
        lambda.invoke(&batch),
        Ok(json!({"batchItemFailures": [{"itemIdentifier": "m-poison"}]}))
    );
    // A malformed direct event is an error: Lambda retries it, then dead-letters it.
    let error = lambda
        .invoke(&json!({"detail-type": "v2.detail.events.conversation.{id}.attributes", "detail": {}}))
        .expect_err("rejected");
    assert!(
        error.contains("RejectedEvent") || error.contains("rejected event"),
        "{error}"
    );

    let lambda_points = flow_points(&intake);
    assert_eq!(
        lambda_points.iter().map(|p| p.2).sum::<usize>(),
        4,
        "{lambda_points:?}"
    );
    assert!(lambda_points.iter().all(|(tags, _, _)| tags[2] == "env:e2e"));

    // The same events replayed from a laptop into another intake send the same points.
    let replay_intake = Intake::accepting().await;
    let trace = [direct, queued, queued_again]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let mut replay = Command::new(env!("CARGO_BIN_EXE_flow-metrics"))
        .args(["replay", "--sink", "datadog", "-"])
        .env("DD_API_KEY", "e2e-test-key")
        .env("DD_URL", replay_intake.uri())
        .env("DD_TAGS", "env:e2e")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flow-metrics");
    {
        use std::io::Write as _;
        let mut stdin = replay.stdin.take().expect("stdin");
        stdin.write_all(trace.as_bytes()).expect("write");
    }
    let output = replay.wait_with_output().expect("replay");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(flow_points(&replay_intake), lambda_points);
}

/// The public flow outcome sample, for `conversation`, its times a few seconds ago.
fn recent_flow_outcome(conversation: &str) -> Value {
    let mut event: Value = serde_json::from_str(PUBLIC_SAMPLE).expect("sample");
    let ms = |seconds: i64| (Timestamp::now() - SignedDuration::from_secs(seconds)).as_millisecond();
    event["detail"]["topicName"] = json!(format!(
        "v2.detail.events.conversation.{conversation}.flow.outcome"
    ));
    let body = &mut event["detail"]["eventBody"];
    body["conversationId"] = json!(conversation);
    body["eventTime"] = json!(ms(20));
    body["flowOutcomeStartTime"] = json!(ms(40));
    body["flowOutcomeEndTime"] = json!(ms(30));
    body["flowMilestones"][0]["milestoneTime"] = json!(ms(40));
    body["flowMilestones"][1]["milestoneTime"] = json!(ms(35));
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_lambda_counts_flow_outcomes_once_and_names_them_from_genesys() {
    let dynalite = Dynalite::start();
    create_table(&dynalite.client(), TABLE).await.expect("table");
    let intake = Intake::accepting().await;
    let genesys = FakeGenesys::start(
        Duration::from_secs(3600),
        &[
            ("flows", SAMPLE_FLOW, "Customer Routing"),
            ("outcomes", SAMPLE_OUTCOME, "Self service"),
        ],
    )
    .await;
    let lambda = LocalLambda::start(
        &dynalite,
        &intake,
        &[
            ("GENESYS_LOGIN_URL", genesys.uri()),
            ("GENESYS_API_URL", genesys.uri()),
            ("GENESYS_CLIENT_ID", CLIENT_ID.to_owned()),
            ("GENESYS_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ],
    );

    // Delivered twice: the outcome counts once. The first invocation after the cold start waits
    // for Genesys's answers (up to its bound) before it pushes: its points carry names, with the
    // ids beside them.
    let first = recent_flow_outcome("c-outcome-1");
    assert_eq!(lambda.invoke(&first), Ok(Value::Null));
    assert_eq!(lambda.invoke(&first), Ok(Value::Null));
    let outcomes = intake.points("genesys.flow.outcome");
    assert_eq!(
        outcomes.iter().map(|point| point.2).sum::<usize>(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes[0].0,
        json!([
            "flow:customer_routing",
            "outcome:self_service",
            "outcome_value:success",
            format!("flow_id:{SAMPLE_FLOW}"),
            format!("outcome_id:{SAMPLE_OUTCOME}"),
            "env:e2e",
        ])
    );
    let milestones = intake.points("genesys.flow.milestone");
    assert_eq!(milestones.len(), 2);
    assert!(
        milestones
            .iter()
            .all(|(tags, _, _)| tags[0] == "flow:customer_routing"),
        "{milestones:?}"
    );
    assert_eq!(genesys.tokens_issued(), 1);
}
