//! `flow-metrics doctor --stack …`, the real binary, against a whole deployed chain on moto
//! (CloudFormation, EventBridge, Lambda, CloudWatch, CloudWatch Logs, SQS, S3, Secrets Manager
//! and DynamoDB), with the strict fake DataDog intake and the fake Genesys, all on 127.0.0.1.
//! The traffic is put where AWS puts it: datapoints of `AWS/Events`, `AWS/Lambda` and the
//! stack's own metrics, and the function's JSON log lines (the real line's shape,
//! `tests/fixtures/invocation-line.json`). A healthy chain passes every check; each break of a
//! link is found, with exit status 1 and its fix. Each test has its own moto (CloudWatch through
//! `common::cbor_proxy`, since moto does not speak the SDK's CBOR protocol). Run with
//! `-- --nocapture` to see the reports.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use aws_sdk_dynamodb::types::AttributeValue;
use common::cbor_proxy::CborProxy;
use common::deployment::{
    ACCOUNT, DATADOG_KEY, EVENT_SOURCE, LOG_GROUP, METRICS_NAMESPACE, REGION, deploy_chain, emulator_config,
};
use common::emulator::{Moto, environment_for};
use common::genesys::FakeGenesys;
use common::intake::Intake;
use common::public_sample::known_names;
use flow_metrics::ledger::dynamodb::schema;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const STACK: &str = "GenesysFlowMetrics";
const TABLE: &str = "GenesysFlowMetrics-LedgerTable";

/// A deployed chain and what it talks to.
struct Chain {
    moto: Moto,
    /// moto's CloudWatch on the SDK's protocol.
    cloudwatch: CborProxy,
    _intake: Intake,
    genesys: FakeGenesys,
    outputs: BTreeMap<String, String>,
    config: aws_config::SdkConfig,
}

/// The metrics a healthy day puts: (namespace, name, value five minutes ago, three hours ago).
const HEALTHY: [(&str, &str, f64, f64); 6] = [
    ("AWS/Events", "MatchedEvents", 12.0, 40.0),
    ("AWS/Lambda", "Errors", 0.0, 0.0),
    ("AWS/Lambda", "Throttles", 0.0, 0.0),
    (METRICS_NAMESPACE, "KeysDelivered", 7.0, 20.0),
    (METRICS_NAMESPACE, "DataDogPushFailures", 0.0, 0.0),
    ("AWS/SQS", "ApproximateAgeOfOldestMessage", 0.0, 0.0),
];

impl Chain {
    /// The chain as cdk deploys it, its function's settings edited by `edit`; no traffic yet.
    async fn deployed(edit: impl FnOnce(&mut Value)) -> Chain {
        let moto = Moto::start();
        let intake = Intake::accepting().await;
        let genesys = FakeGenesys::start(std::time::Duration::from_secs(3600), &known_names()).await;
        // The stack sets DD_SITE and GENESYS_REGION; here the sites are the fakes, which
        // nothing else may reach.
        let mut variables = json!({
            "FLOW_METRICS_TABLE": TABLE,
            "FLOW_METRICS_RETENTION": "30d",
            "FLOW_METRICS_LEASE": "40s",
            "DD_URL": intake.uri(),
            "DD_API_KEY_SECRET_ARN": {"Ref": "ApiKeySecret"},
            "DD_TAGS": "env:prod",
            "GENESYS_LOGIN_URL": genesys.uri(),
            "GENESYS_API_URL": genesys.uri(),
            "GENESYS_CREDENTIALS_SECRET_ARN": {"Ref": "GenesysSecret"},
            "RUST_LOG": "info",
        });
        edit(&mut variables);
        let outputs = deploy_chain(&moto, STACK, variables).await;
        let config = emulator_config(&moto.endpoint);
        let cloudwatch = CborProxy::start(&moto.endpoint);
        Chain {
            moto,
            cloudwatch,
            _intake: intake,
            genesys,
            outputs,
            config,
        }
    }

    /// A chain that has counted for a day, and lately.
    async fn healthy() -> Chain {
        let chain = Chain::deployed(|_| {}).await;
        chain.traffic_without(&[]).await;
        chain
    }

    /// The bus and the rule's own name.
    fn rule(&self) -> (String, String) {
        let (bus, rule) = self.outputs["RuleName"].rsplit_once('|').expect("bus|rule");
        (bus.to_owned(), rule.to_owned())
    }

    /// The dimensions AWS gives a metric of this namespace.
    fn dimensions(&self, namespace: &str) -> Vec<(&'static str, String)> {
        match namespace {
            "AWS/Events" => {
                let (bus, rule) = self.rule();
                vec![("EventBusName", bus), ("RuleName", rule)]
            }
            "AWS/Lambda" => vec![("FunctionName", self.outputs["FunctionName"].clone())],
            "AWS/SQS" => {
                let url = &self.outputs["DeadLetterQueueUrl"];
                vec![("QueueName", url.rsplit('/').next().expect("a name").to_owned())]
            }
            _ => Vec::new(),
        }
    }

    /// Datapoints of a metric, as AWS puts them: (minutes ago, value).
    async fn metric(&self, namespace: &str, name: &str, points: &[(i64, f64)]) {
        let now = Timestamp::now();
        let dimensions: Vec<Dimension> = self
            .dimensions(namespace)
            .into_iter()
            .map(|(name, value)| Dimension::builder().name(name).value(value).build())
            .collect();
        let data: Vec<MetricDatum> = points
            .iter()
            .map(|(minutes, value)| {
                let at = now - SignedDuration::from_mins(*minutes);
                MetricDatum::builder()
                    .metric_name(name)
                    .set_dimensions(Some(dimensions.clone()))
                    .timestamp(DateTime::from_secs(at.as_second()))
                    .value(*value)
                    .build()
            })
            .collect();
        let config = aws_sdk_cloudwatch::config::Builder::from(&self.config)
            .endpoint_url(&self.cloudwatch.endpoint)
            .build();
        aws_sdk_cloudwatch::Client::from_conf(config)
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(data))
            .send()
            .await
            .expect("put metric data");
    }

    /// A day of healthy traffic, but for the metrics named in `without`: datapoints and the
    /// function's invocation lines.
    async fn traffic_without(&self, without: &[&str]) {
        for (namespace, name, lately, earlier) in HEALTHY {
            if !without.contains(&name) {
                self.metric(namespace, name, &[(180, earlier), (5, lately)]).await;
            }
        }
        self.log(&[(180, invocation_line(20)), (5, invocation_line(7))])
            .await;
    }

    /// Lines in the function's log group, as Lambda writes them: (minutes ago, line).
    async fn log(&self, lines: &[(i64, String)]) {
        let logs = aws_sdk_cloudwatchlogs::Client::new(&self.config);
        let stream = format!("2026/12/01/[$LATEST]{}", Timestamp::now().as_nanosecond());
        logs.create_log_stream()
            .log_group_name(LOG_GROUP)
            .log_stream_name(&stream)
            .send()
            .await
            .expect("a log stream");
        let now = Timestamp::now();
        let events: Vec<_> = lines
            .iter()
            .map(|(minutes, line)| {
                let at = now - SignedDuration::from_mins(*minutes);
                let mut line: Value = serde_json::from_str(line).expect("a JSON line");
                // The function writes microseconds.
                let at_micros = Timestamp::from_microsecond(at.as_microsecond()).expect("a time");
                line["timestamp"] = json!(at_micros.to_string());
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(at.as_millisecond())
                    .message(line.to_string())
                    .build()
                    .expect("a log event")
            })
            .collect();
        logs.put_log_events()
            .log_group_name(LOG_GROUP)
            .log_stream_name(stream)
            .set_log_events(Some(events))
            .send()
            .await
            .expect("put log events");
    }

    /// `flow-metrics doctor --stack STACK ARGS…` from an operator's shell, its report printed.
    async fn doctor(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flow-metrics"));
        command
            .args(["doctor", "--stack", STACK, "--region", REGION])
            .args(args)
            .env_clear()
            .envs(environment_for(&self.moto.endpoint))
            .env("AWS_ENDPOINT_URL_CLOUDWATCH", &self.cloudwatch.endpoint);
        let output = tokio::task::spawn_blocking(move || command.output().expect("run flow-metrics"))
            .await
            .expect("joined");
        let shown: Vec<&str> = ["flow-metrics", "doctor", "--stack", STACK, "--region", REGION]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        println!("$ {}", shown.join(" "));
        print!("{}", String::from_utf8_lossy(&output.stdout));
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        output
    }
}

/// The function's invocation line (the real line's shape) with `keys` counted.
fn invocation_line(keys: u64) -> String {
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/invocation-line.json"
    ))
    .expect("the fixture");
    let mut line: Value = serde_json::from_str(&fixture).expect("the fixture's line");
    let fields = &mut line["fields"];
    fields["events_read"] = json!(keys + 2);
    fields["events_ignored"] = json!(1);
    fields["keys_seen"] = json!(keys + 1);
    fields["keys_counted"] = json!(keys);
    fields["keys_already_counted"] = json!(1);
    fields["names_unavailable"] = json!(0);
    line.to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The report's line of check `name`, with its fix if any (the lines up to the next check).
fn item<'a>(report: &'a str, name: &str) -> &'a str {
    let start = report
        .find(&format!(" {name}  "))
        .unwrap_or_else(|| panic!("no check {name:?} in:\n{report}"));
    let start = report[..start].rfind('\n').map_or(0, |at| at + 1);
    let rest = &report[start..];
    let end = rest[1..]
        .find("\n  [")
        .or_else(|| rest[1..].find("\n\n"))
        .map_or(rest.len(), |at| at + 1);
    &rest[..end]
}

/// Asserts doctor exited 1, and that check `name` failed saying `found`, with a fix saying `fix`.
fn assert_fails(output: &Output, name: &str, found: &str, fix: &str) {
    let report = stdout(output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    let item = item(&report, name);
    assert!(
        item.trim_start().starts_with("[FAIL]"),
        "{name} should fail:\n{item}"
    );
    assert!(item.contains(found), "{name} should say {found:?}:\n{item}");
    assert!(item.contains(fix), "{name}'s fix should say {fix:?}:\n{item}");
}

/// The checks of the report, by status.
fn statuses(report: &str) -> BTreeMap<&'static str, usize> {
    let mut counted = BTreeMap::new();
    for (mark, status) in [("[ok]", "ok"), ("[warn]", "warn"), ("[FAIL]", "fail")] {
        let item = format!("  {mark}");
        counted.insert(
            status,
            report.lines().filter(|line| line.starts_with(&item)).count(),
        );
    }
    counted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_chain_passes_every_check_and_says_so_in_json_too() {
    let chain = Chain::healthy().await;
    let output = chain.doctor(&[]).await;
    let report = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert_eq!(
        statuses(&report),
        BTreeMap::from([("fail", 0), ("ok", 22), ("warn", 0)]),
        "{report}"
    );
    for (name, says) in [
        ("event source", &format!("{EVENT_SOURCE}: ACTIVE")[..]),
        ("topics", "matches v2.detail.events.conversation.{id}.attributes"),
        ("matched events", "12 in the last hour, 52 in the last day"),
        ("settings", "valid: table GenesysFlowMetrics-LedgerTable"),
        ("API key", "takes it (GET /api/v1/validate: valid)"),
        ("keys delivered", "7 in the last hour, 27 in the last day"),
        ("TTL", "ENABLED on expires_at"),
        ("stuck keys", "the scan read the whole table"),
        ("read outcomes", "architect:flowOutcome:view: granted"),
    ] {
        assert!(item(&report, name).contains(says), "{name}: {says}\n{report}");
    }
    // The read-only walk asked Genesys for lists, never an id.
    let asked: Vec<String> = chain
        .genesys
        .api_requests()
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(asked.len(), 3, "{asked:?}");

    let json = chain.doctor(&["--json"]).await;
    assert_eq!(json.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&json.stdout).expect("a JSON report");
    assert_eq!(
        (
            &json["stack"],
            &json["status"],
            &json["exit_status"],
            &json["failed"]
        ),
        (&json!(STACK), &json!("pass"), &json!(0), &json!(0))
    );
    let checks = json["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 22);
    let links: Vec<u64> = checks
        .iter()
        .map(|check| check["link"].as_u64().expect("a link"))
        .collect();
    assert!(
        links.windows(2).all(|pair| pair[0] <= pair[1]),
        "in chain order: {links:?}"
    );
    assert_eq!(links.first(), Some(&1));
    assert_eq!(links.last(), Some(&8));
    assert!(
        checks
            .iter()
            .all(|check| check["status"] == "pass" && check["fix"].is_null())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_hour_of_a_closed_centre_warns_and_exits_0() {
    let chain = Chain::deployed(|_| {}).await;
    chain.traffic_without(&["MatchedEvents", "KeysDelivered"]).await;
    chain.metric("AWS/Events", "MatchedEvents", &[(180, 40.0)]).await;
    chain
        .metric(METRICS_NAMESPACE, "KeysDelivered", &[(180, 20.0)])
        .await;
    let output = chain.doctor(&[]).await;
    let report = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{report}");
    let matched = item(&report, "matched events");
    assert!(matched.trim_start().starts_with("[warn]"), "{matched}");
    assert!(
        matched.contains("0 in the last hour, 40 in the last day: a closed centre"),
        "{matched}"
    );
    assert!(
        item(&report, "keys delivered").trim_start().starts_with("[warn]"),
        "{report}"
    );
    assert!(
        report.contains("[warn] worth a look, the exit status stays 0"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_partner_event_source_is_found_with_the_integration_to_mend() {
    let chain = Chain::healthy().await;
    aws_sdk_eventbridge::Client::new(&chain.config)
        .delete_partner_event_source()
        .name(EVENT_SOURCE)
        .account(ACCOUNT)
        .send()
        .await
        .expect("Genesys deletes its source");
    let output = chain.doctor(&[]).await;
    assert_fails(
        &output,
        "event source",
        "is DELETED: Genesys removed it",
        "in Genesys Cloud: Admin → Integrations → Amazon EventBridge Source: activate the integration",
    );
    assert!(item(&stdout(&output), "event source").contains("set \"eventSourceName\" in cdk/settings.json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_rule_is_found_with_the_command_that_enables_it() {
    let chain = Chain::healthy().await;
    let (bus, rule) = chain.rule();
    aws_sdk_eventbridge::Client::new(&chain.config)
        .disable_rule()
        .name(&rule)
        .event_bus_name(&bus)
        .send()
        .await
        .expect("disable the rule");
    let output = chain.doctor(&[]).await;
    assert_fails(
        &output,
        "state",
        "is DISABLED",
        &format!("aws events enable-rule --region {REGION} --event-bus-name '{bus}' --name {rule}"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_on_the_wrong_topic_is_found_and_redeployed() {
    let chain = Chain::healthy().await;
    let (bus, rule) = chain.rule();
    let pattern = json!({
        "source": [EVENT_SOURCE],
        "detail-type": ["v2.detail.events.conversation.{id}.customer.start"],
    });
    aws_sdk_eventbridge::Client::new(&chain.config)
        .put_rule()
        .name(&rule)
        .event_bus_name(&bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .expect("change the rule by hand");
    let output = chain.doctor(&[]).await;
    assert_fails(
        &output,
        "topics",
        "not v2.detail.events.conversation.{id}.attributes: attribute events never reach the function",
        "(cd cdk && npx cdk deploy) restores the stack's pattern",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_without_matched_events_points_at_the_integration() {
    let chain = Chain::deployed(|_| {}).await;
    chain.traffic_without(&["MatchedEvents"]).await;
    let output = chain.doctor(&[]).await;
    assert_fails(
        &output,
        "matched events",
        "0 in the last hour, 0 in the last day: Genesys sends nothing the rule matches",
        "the integration active, its topics subscribed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_the_function_refuses_are_named_with_the_setting_to_correct() {
    let chain = Chain::deployed(|variables| {
        let variables = variables.as_object_mut().expect("variables");
        variables.remove("DD_URL");
        variables.insert("DD_SITE".to_owned(), json!("app.datadoghq.eu"));
    })
    .await;
    chain.traffic_without(&[]).await;
    let output = chain.doctor(&[]).await;
    assert_fails(
        &output,
        "settings",
        "DD_SITE: \"app.datadoghq.eu\" is not a DataDog site parameter: use datadoghq.eu",
        "correct datadogSite in cdk/settings.json (DD_SITE), then (cd cdk && npx cdk deploy)",
    );
    // The key is not shown to any DataDog while the site is wrong.
    assert_fails(
        &output,
        "API key",
        "cannot check the key: DD_SITE",
        "correct the function's settings first (link 3)",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_errors_are_counted_and_their_latest_lines_shown() {
    let chain = Chain::healthy().await;
    chain.metric("AWS/Lambda", "Errors", &[(3, 2.0)]).await;
    let error = json!({
        "timestamp": "",
        "level": "ERROR",
        "fields": {
            "message": "keys not delivered",
            "conversation_id": "c-7f3a",
            "error": "the ledger is unavailable (PutItem): ThrottlingException: Rate of requests exceeds the allowed throughput.",
        },
    });
    chain.log(&[(4, error.to_string()), (3, error.to_string())]).await;
    let output = chain.doctor(&[]).await;
    assert_fails(
        &output,
        "errors",
        "failed invocations: 2 in the last hour, 2 in the last day",
        "aws logs tail --region eu-west-1 /aws/lambda/GenesysFlowMetrics-Function --since 1h",
    );
    assert_fails(
        &output,
        "error lines",
        "keys not delivered: the ledger is unavailable (PutItem): ThrottlingException",
        "the line says what failed",
    );
    assert!(item(&stdout(&output), "error lines").contains("2 ERROR line(s) in the last hour"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_told_from_the_old_placeholder_with_the_commands_that_store_one() {
    let chain = Chain::healthy().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&chain.config);
    let arn = &chain.outputs["ApiKeySecretArn"];
    let store = format!(
        "aws secretsmanager put-secret-value --secret-id {arn} --region {REGION} --secret-string \"$DD_API_KEY\""
    );
    // A real key's form, of another site's organisation.
    secrets
        .put_secret_value()
        .secret_id(arn)
        .secret_string("fedcba9876543210fedcba9876543210")
        .send()
        .await
        .expect("another key");
    let output = chain.doctor(&[]).await;
    assert_fails(
        &output,
        "API key",
        "refused it (403: Forbidden): no organisation of this site has it",
        &store,
    );
    let refused = stdout(&output);
    assert!(
        item(&refused, "API key").contains("A key belongs to one DataDog site"),
        "{refused}"
    );
    assert!(!refused.contains("fedcba9876543210"), "the key is never shown");
    // What CDK generated for v0.1.0: 32 letters and digits.
    secrets
        .put_secret_value()
        .secret_id(arn)
        .secret_string("Xq7pLm2RkT9vW4bN8cY3dF6gH1jK5sZa")
        .send()
        .await
        .expect("the placeholder");
    let output = chain.doctor(&[]).await;
    assert_fails(
        &output,
        "API key",
        "the placeholder the stack generated up to v0.1.0",
        &store,
    );
    assert!(item(&stdout(&output), "API key").contains("aws lambda update-function-configuration"));
    assert_ne!(DATADOG_KEY, "Xq7pLm2RkT9vW4bN8cY3dF6gH1jK5sZa");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_without_keys_delivered_fails_with_the_way_to_send_one() {
    let chain = Chain::deployed(|_| {}).await;
    chain.traffic_without(&["KeysDelivered"]).await;
    let output = chain.doctor(&[]).await;
    assert_fails(
        &output,
        "keys delivered",
        "keys DataDog accepted: 0 in the last hour, 0 in the last day",
        "flow-metrics sample-event --flow DeployTest --metric Start > event.json",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_waiting_in_the_queue_and_the_bucket_are_to_be_drained() {
    let chain = Chain::healthy().await;
    aws_sdk_sqs::Client::new(&chain.config)
        .send_message()
        .queue_url(&chain.outputs["DeadLetterQueueUrl"])
        .message_body(common::attributes_event("c-1", "2026-12-01T10:00:00Z", &[]))
        .send()
        .await
        .expect("a dead letter");
    chain
        .metric("AWS/SQS", "ApproximateAgeOfOldestMessage", &[(2, 7_380.0)])
        .await;
    let s3 = flow_metrics::aws::s3_client(&chain.config, true);
    for key in [
        "aws/lambda/async/GenesysFlowMetrics-Function/2026/12/01/a",
        "aws/lambda/async/GenesysFlowMetrics-Function/2026/12/01/b",
    ] {
        s3.put_object()
            .bucket(&chain.outputs["DeadLetterBucketName"])
            .key(key)
            .body(b"{}".to_vec().into())
            .send()
            .await
            .expect("a record");
    }
    let output = chain.doctor(&[]).await;
    let drain = format!("flow-metrics drain --stack {STACK} --region {REGION} --dry-run");
    assert_fails(
        &output,
        "dead-letter queue",
        "1 message(s) wait (1 visible, 0 in flight); the oldest waits for 2h 3m",
        &drain,
    );
    assert_fails(
        &output,
        "dead-letter bucket",
        "2 record(s) of failed invocations wait; the oldest from",
        &drain,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_ttl_is_found_with_the_command_that_turns_it_on() {
    let chain = Chain::healthy().await;
    let ttl = aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
        .enabled(false)
        .attribute_name(schema::TIME_TO_LIVE)
        .build()
        .expect("a TTL specification");
    aws_sdk_dynamodb::Client::new(&chain.config)
        .update_time_to_live()
        .table_name(TABLE)
        .time_to_live_specification(ttl)
        .send()
        .await
        .expect("TTL off");
    let output = chain.doctor(&[]).await;
    assert_fails(
        &output,
        "TTL",
        "TTL is DISABLED: items are never deleted",
        &format!(
            "aws dynamodb update-time-to-live --region {REGION} --table-name {TABLE} --time-to-live-specification Enabled=true,AttributeName=expires_at"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_keys_are_counted_by_the_redrive_scan_and_redriven() {
    let chain = Chain::healthy().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&chain.config);
    let now = Timestamp::now();
    let ms = |ago: SignedDuration| AttributeValue::N((now - ago).as_millisecond().to_string());
    // Claims whose lease ended two hours and 90 minutes ago, stuck; and one still held.
    for (conversation, lease_ago) in [("c-stuck-1", 120), ("c-stuck-2", 90), ("c-held", -1)] {
        let key = format!(
            "CustomerRoutingMetric_Start({})",
            now - SignedDuration::from_hours(3)
        );
        let item = [
            (schema::PARTITION_KEY, AttributeValue::S(conversation.to_owned())),
            (schema::SORT_KEY, AttributeValue::S(key)),
            (schema::FLOW, AttributeValue::S("CustomerRouting".to_owned())),
            (schema::METRIC, AttributeValue::S("Start".to_owned())),
            (schema::KEY_TIME_MS, ms(SignedDuration::from_hours(3))),
            (schema::FIRST_SEEN_MS, ms(SignedDuration::from_hours(3))),
            (schema::STATE, AttributeValue::S(schema::CLAIMED.to_owned())),
            (schema::CLAIM_TOKEN, AttributeValue::S("a-token".to_owned())),
            (schema::LEASE_EXPIRES_MS, ms(SignedDuration::from_mins(lease_ago))),
            (
                schema::TIME_TO_LIVE,
                AttributeValue::N(
                    (now + SignedDuration::from_hours(24 * 30))
                        .as_second()
                        .to_string(),
                ),
            ),
        ];
        dynamodb
            .put_item()
            .table_name(TABLE)
            .set_item(Some(
                item.into_iter()
                    .map(|(name, value)| (name.to_owned(), value))
                    .collect(),
            ))
            .send()
            .await
            .expect("a claim");
    }
    let output = chain.doctor(&[]).await;
    let redrive = format!("flow-metrics redrive --stack {STACK} --region {REGION} --dry-run");
    assert_fails(
        &output,
        "stuck keys",
        "2 key(s) claimed and never confirmed, their lease over for 1h or more",
        &redrive,
    );
    assert!(item(&stdout(&output), "stuck keys").contains("the scan read the whole table"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genesys_client_missing_a_permission_is_told_which() {
    let chain = Chain::healthy().await;
    chain.genesys.forbid("milestones");
    let output = chain.doctor(&[]).await;
    assert_fails(
        &output,
        "read milestones",
        "the OAuth client's role lacks architect:flowMilestone:view",
        "Genesys Cloud: Admin → Roles / Permissions → the OAuth client's role: add the permission architect:flowMilestone:view",
    );
    let report = stdout(&output);
    assert!(
        item(&report, "read flows").trim_start().starts_with("[ok]"),
        "{report}"
    );
    assert!(
        item(&report, "read outcomes").trim_start().starts_with("[ok]"),
        "{report}"
    );
}

#[test]
fn without_a_stack_doctor_says_to_name_one() {
    let output = Command::new(env!("CARGO_BIN_EXE_flow-metrics"))
        .arg("doctor")
        .env_clear()
        .output()
        .expect("run flow-metrics");
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("doctor walks a deployed stack: name it with --stack (cdk/settings.json's stackName, GenesysFlowMetrics by default)"),
        "{stderr}"
    );
}
