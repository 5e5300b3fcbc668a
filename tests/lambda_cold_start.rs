//! The real Lambda binary at cold start, against a fake Lambda Runtime API on 127.0.0.1 (the
//! three calls a function makes: the next invocation, its response, an init error): a Genesys
//! OAuth client whose secret the function's role may not read does not stop it. It starts, says
//! why names are unavailable with the words the stack's alarm counts, and answers invocations.
//! (The end-to-end tests with a ledger are in `lambda_e2e.rs`; this one needs no emulator: the
//! event belongs to another topic, so no ledger call is made.) Its `invocation` line is held to
//! `tests/fixtures/invocation-line.json`, the line the stack's `KeysDelivered` filter is tested on.

mod common;

use std::fs::File;
use std::process::{Command, Stdio};

use common::emulator::Running;
use common::intake::Intake;
use common::lambda_runtime::{REQUEST_ID, first_answer, runtime_api};
use common::secrets::{FakeSecrets, SECRET_ARN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_starts_and_answers_when_the_genesys_secret_cannot_be_read() {
    let secrets = FakeSecrets::default();
    let (secrets_server, _client) = secrets.start().await;
    let intake = Intake::accepting().await;
    let runtime = runtime_api(&common::other_topic_event("c-1")).await;
    let log_path = std::env::temp_dir().join(format!("flow-metrics-cold-start-{}.log", std::process::id()));
    let log = File::create(&log_path).expect("a log file");
    let mut function = Running(
        Command::new(env!("CARGO_BIN_EXE_flow-metrics-lambda"))
            .env("AWS_LAMBDA_RUNTIME_API", runtime.uri())
            .env("AWS_LAMBDA_FUNCTION_NAME", "flow-metrics")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "eu-west-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", secrets_server.uri())
            .env("FLOW_METRICS_TABLE", "flow-metrics-ledger")
            .env("DD_API_KEY", "cold-start-test-key")
            .env("DD_URL", intake.uri())
            .env("GENESYS_LOGIN_URL", "http://127.0.0.1:9")
            .env("GENESYS_API_URL", "http://127.0.0.1:9")
            .env("GENESYS_CREDENTIALS_SECRET_ARN", SECRET_ARN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the function"),
    );

    let answer = first_answer(&runtime, &mut function).await;
    let logs = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    assert_eq!(
        answer,
        (
            Some((
                format!("/2018-06-01/runtime/invocation/{REQUEST_ID}/response"),
                "null".to_owned()
            )),
            None
        ),
        "the function answers the invocation and keeps running: {logs}"
    );
    let unavailable = logs
        .lines()
        .find(|line| line.contains("names unavailable"))
        .unwrap_or_else(|| panic!("the failure is logged with its marker: {logs}"));
    assert!(unavailable.contains("\"ERROR\""), "{unavailable}");
    assert!(unavailable.contains("AccessDeniedException"), "{unavailable}");
    assert!(!logs.contains("cannot start"), "{logs}");
    let invocation = logs
        .lines()
        .find(|line| line.contains("\"invocation\""))
        .unwrap_or_else(|| panic!("an invocation line: {logs}"));
    assert!(invocation.contains("\"names_unavailable\":1"), "{invocation}");
    assert_shaped_as_the_fixture(invocation);
}

/// The `invocation` line the stack's `KeysDelivered` metric filter reads (and its jest test
/// checks), as this binary really writes it: `tests/fixtures/invocation-line.json`. A field
/// renamed, moved or retyped fails here, before the filter silently reads nothing.
fn assert_shaped_as_the_fixture(line: &str) {
    let shape = |line: &str| {
        let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
        let kinds = |object: &serde_json::Value| {
            object
                .as_object()
                .expect("an object")
                .iter()
                .map(|(key, value)| {
                    let kind = match value {
                        serde_json::Value::Number(_) => "number",
                        serde_json::Value::String(_) => "string",
                        serde_json::Value::Object(_) => "object",
                        _ => "other",
                    };
                    (key.clone(), kind)
                })
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        (
            kinds(&value),
            kinds(&value["fields"]),
            value["fields"]["message"].clone(),
        )
    };
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/invocation-line.json"
    ))
    .expect("the fixture");
    assert_eq!(
        shape(line),
        shape(fixture.trim()),
        "the function's invocation line changed shape: update tests/fixtures/invocation-line.json \
         and the stack's KeysDelivered filter (cdk/lib/flow-metrics-stack.ts) to it\n{line}"
    );
}
