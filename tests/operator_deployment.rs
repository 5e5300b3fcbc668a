//! Operator commands given only the deployment behave as its function: `drain`, `replay
//! --ledger dynamodb` and `redrive` with `--stack`, `audit` with the table alone. The stack
//! (CloudFormation, Lambda, Secrets Manager, SQS, S3) is on moto, the ledger on dynalite, DataDog
//! a strict fake intake and Genesys a fake Platform API, all on 127.0.0.1. The operator's shell
//! holds other settings (the old default retention, another env tag): they must not count.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use common::attributes_event;
use common::deployment::{REGION, deploy, emulator_config, tag_with_stack};
use common::emulator::{Dynalite, Moto, environment_for};
use common::genesys::FakeGenesys;
use common::intake::Intake;
use common::public_sample::{PUBLIC_SAMPLE, known_names};
use flow_metrics::ledger::dynamodb::create_table;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const STACK: &str = "GenesysFlowMetrics";
const TABLE: &str = "GenesysFlowMetrics-Ledger";

/// The deployment's own name for the outcome metric.
const OUTCOME_METRIC: &str = "ivr.flow.outcome";

/// A deployment with `retentionDays` 10 and `tags` env:prod, naming through Genesys.
struct World {
    dynalite: Dynalite,
    moto: Moto,
    intake: Intake,
    _genesys: FakeGenesys,
    outputs: BTreeMap<String, String>,
}

async fn deployed() -> World {
    let dynalite = Dynalite::start();
    let moto = Moto::start();
    let intake = Intake::accepting().await;
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    create_table(&dynalite.client(), TABLE).await.expect("table");
    tag_with_stack(&dynalite.client(), TABLE, STACK).await;
    // The stack sets DD_SITE; here the site is the fake intake, which nothing else may reach.
    let variables = json!({
        "FLOW_METRICS_TABLE": TABLE,
        "FLOW_METRICS_RETENTION": "10d",
        "FLOW_METRICS_LEASE": "40s",
        "DD_URL": intake.uri(),
        "DD_API_KEY_SECRET_ARN": {"Ref": "ApiKeySecret"},
        "DD_TAGS": "env:prod,team:ivr",
        "FLOW_METRICS_OUTCOME_METRIC": OUTCOME_METRIC,
        "GENESYS_LOGIN_URL": genesys.uri(),
        "GENESYS_API_URL": genesys.uri(),
        "GENESYS_CREDENTIALS_SECRET_ARN": {"Ref": "GenesysSecret"},
        "RUST_LOG": "info",
    });
    let outputs = deploy(&moto, STACK, variables, json!({}), json!({})).await;
    World {
        dynalite,
        moto,
        intake,
        _genesys: genesys,
        outputs,
    }
}

impl World {
    /// `flow-metrics ARGS…` from an operator's shell that holds settings of its own.
    async fn flow_metrics(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flow-metrics"));
        command
            .args(args)
            .env_clear()
            .envs(environment_for(&self.moto.endpoint))
            .env("AWS_ENDPOINT_URL_DYNAMODB", &self.dynalite.endpoint)
            // The operator's own settings, which a deployment's replace.
            .env("FLOW_METRICS_RETENTION", "30d")
            .env("DD_TAGS", "env:laptop");
        tokio::task::spawn_blocking(move || command.output().expect("run flow-metrics"))
            .await
            .expect("joined")
    }

    /// Tags of every accepted point of the attribute metric and the outcome metric.
    fn tags_sent(&self) -> Vec<Vec<String>> {
        ["genesys.flow.metric", OUTCOME_METRIC]
            .iter()
            .flat_map(|metric| self.intake.points(metric))
            .map(|(tags, _, _)| {
                tags.as_array()
                    .expect("tags")
                    .iter()
                    .map(|tag| tag.as_str().expect("a tag").to_owned())
                    .collect()
            })
            .collect()
    }
}

/// Genesys's public flow outcome sample, moved to `at`.
fn public_sample_at(at: Timestamp) -> String {
    let mut event: Value = serde_json::from_str(PUBLIC_SAMPLE).expect("sample");
    let body = &mut event["detail"]["eventBody"];
    let shift = at.as_millisecond() - body["eventTime"].as_i64().expect("time");
    let moved = |value: &Value| json!(value.as_i64().expect("a time") + shift);
    for field in ["eventTime", "flowOutcomeStartTime", "flowOutcomeEndTime"] {
        body[field] = moved(&body[field]);
    }
    for milestone in body["flowMilestones"].as_array_mut().expect("milestones") {
        milestone["milestoneTime"] = moved(&milestone["milestoneTime"]);
    }
    event.to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Points carry the deployment's tags and names, never the shell's tags or ids.
fn assert_sent_as_the_function(world: &World) {
    let tags = world.tags_sent();
    assert!(!tags.is_empty(), "nothing was sent");
    for tags in &tags {
        assert!(tags.contains(&"env:prod".to_owned()), "{tags:?}");
        assert!(tags.contains(&"team:ivr".to_owned()), "{tags:?}");
        assert!(!tags.iter().any(|tag| tag.contains("laptop")), "{tags:?}");
    }
    let outcome_tags = world.intake.points(OUTCOME_METRIC);
    assert!(!outcome_tags.is_empty(), "the outcome was not sent");
    let text = format!("{outcome_tags:?}");
    assert!(text.contains("customer_routing"), "the flow is named: {text}");
    assert!(text.contains("self_service"), "the outcome is named: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_given_the_stack_keeps_what_the_retention_forgot_and_sends_as_the_function() {
    let world = deployed().await;
    let sqs = aws_sdk_sqs::Client::new(&emulator_config(&world.moto.endpoint));
    let queue_url = &world.outputs["DeadLetterQueueUrl"];
    let now = Timestamp::now();
    let twelve_days_ago = now - SignedDuration::from_hours(12 * 24);
    let old_key = format!("RoutingMetric_Start({twelve_days_ago})");
    let recent = now - SignedDuration::from_mins(20);
    let fresh_key = format!("RoutingMetric_Menu({recent})");
    for body in [
        attributes_event("c-old", &twelve_days_ago.to_string(), &[&old_key]),
        attributes_event("c-fresh", &recent.to_string(), &[&fresh_key]),
        public_sample_at(recent),
    ] {
        sqs.send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
            .expect("a dead letter");
    }

    let output = world.flow_metrics(&["drain", "--stack", STACK]).await;
    let stderr = stderr(&output);
    // One letter is kept: exit 1, with why.
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "settings: those of function {}",
            world.outputs["FunctionName"]
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("note: this shell's FLOW_METRICS_RETENTION is not used"),
        "{stderr}"
    );
    assert!(
        stderr.contains("note: this shell's DD_TAGS is not used"),
        "{stderr}"
    );
    let kept: Vec<&str> = stderr.lines().filter(|line| line.starts_with("kept ")).collect();
    assert_eq!(kept.len(), 1, "{stderr}");
    assert!(
        kept[0].contains("more than 72h ago (the ledger's retention less the maximum key age)"),
        "the reason is the deployment's retention, 10 days: {stderr}"
    );
    assert!(stderr.contains("1 kept; keys counted 4"), "{stderr}");
    assert_sent_as_the_function(&world);
    let sent = format!("{:?}", world.intake.accepted());
    assert!(!sent.contains("c-old"), "{sent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_into_the_stacks_table_sends_as_the_function_and_a_flag_overrides_aloud() {
    let world = deployed().await;
    let events = tempfile::NamedTempFile::new().expect("temp file");
    let at = Timestamp::now() - SignedDuration::from_mins(5);
    let key = format!("RoutingMetric_Menu({at})");
    let lines = [
        attributes_event("c-replayed", &at.to_string(), &[&key]),
        public_sample_at(at),
    ];
    std::fs::write(events.path(), lines.join("\n")).expect("events");
    let path = events.path().to_str().expect("a path");

    let output = world
        .flow_metrics(&[
            "replay", "--ledger", "dynamodb", "--stack", STACK, "--lease", "50s", path,
        ])
        .await;
    let stderr = stderr(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("override: --lease 50s (the deployment's FLOW_METRICS_LEASE is 40s)"),
        "{stderr}"
    );
    assert!(stderr.contains("names unresolved 0"), "{stderr}");
    assert_sent_as_the_function(&world);
    // The keys are the deployment's now: replaying the same events counts nothing.
    let again = world
        .flow_metrics(&["replay", "--ledger", "dynamodb", "--stack", STACK, path])
        .await;
    let again = String::from_utf8_lossy(&again.stderr);
    assert!(again.contains("counted 0, already counted 4"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_given_the_table_alone_takes_the_deployments_series_and_redrive_the_stack() {
    let world = deployed().await;
    let at = Timestamp::now() - SignedDuration::from_mins(5);
    let events = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(events.path(), public_sample_at(at)).expect("events");
    let path = events.path().to_str().expect("a path");
    let replayed = world
        .flow_metrics(&["replay", "--ledger", "dynamodb", "--table", TABLE, path])
        .await;
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    assert!(
        stderr(&replayed).contains(&format!("in stack {STACK} ({REGION})")),
        "the table leads to its stack: {}",
        stderr(&replayed)
    );

    let audit = world
        .flow_metrics(&["audit", "--table", TABLE, "--format", "json"])
        .await;
    let audit_err = stderr(&audit);
    assert!(audit.status.success(), "{audit_err}");
    assert!(
        audit_err.contains(&format!("in stack {STACK} ({REGION})")),
        "{audit_err}"
    );
    let rows: Value = serde_json::from_slice(&audit.stdout).expect("audit JSON");
    let delivered: u64 = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row["delivered"].as_u64().expect("a count"))
        .sum();
    assert_eq!(delivered, 3, "two milestones and the outcome: {rows}");
    // The custom metrics are those of the deployment's series names.
    assert!(audit_err.contains(OUTCOME_METRIC), "{audit_err}");

    let redrive = world
        .flow_metrics(&["redrive", "--stack", STACK, "--dry-run"])
        .await;
    let redrive_err = stderr(&redrive);
    assert!(redrive.status.success(), "{redrive_err}");
    assert!(redrive_err.contains("dry run: 0 stuck key(s)"), "{redrive_err}");
}
