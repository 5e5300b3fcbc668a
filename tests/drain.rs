//! `flow-metrics drain` end to end: a dead-letter queue on moto's SQS emulator and an on-failure
//! bucket on moto's S3, the ledger on dynalite, all on 127.0.0.1. Both shapes a dead letter holds
//! (EventBridge events and Lambda on-failure records, one of them bigger than an SQS message), a
//! poison letter that stays with its reason, an event of another topic, a duplicate, a dry run
//! that changes nothing, a second run that counts nothing twice, and a queue and a bucket drained
//! in one run.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use common::emulator::{Dynalite, Moto, environment_for};
use common::{attributes_event, other_topic_event};
use flow_metrics::ledger::dynamodb::create_table;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const TABLE: &str = "flow-metrics-drain";

fn sqs(moto: &Moto) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .endpoint_url(&moto.endpoint)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// An S3 client for moto: buckets addressed path-style, under moto's own host.
fn s3(moto: &Moto) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .endpoint_url(&moto.endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// `flow-metrics drain ARGS…` against the emulators: DynamoDB on dynalite, SQS and S3 on moto.
fn run_drain(dynalite: &Dynalite, moto: &Moto, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flow-metrics"))
        .args(["drain", "--table", TABLE])
        .args(args)
        .envs(environment_for(&dynalite.endpoint))
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ENDPOINT_URL_DYNAMODB", &dynalite.endpoint)
        .env("AWS_ENDPOINT_URL_SQS", &moto.endpoint)
        .env("AWS_ENDPOINT_URL_S3", &moto.endpoint)
        .output()
        .expect("run flow-metrics drain")
}

/// `flow-metrics drain --queue-url QUEUE_URL ARGS…` against the emulators.
fn drain(dynalite: &Dynalite, moto: &Moto, queue_url: &str, args: &[&str]) -> Output {
    let mut all = vec!["--queue-url", queue_url];
    all.extend_from_slice(args);
    run_drain(dynalite, moto, &all)
}

/// `(conversation, key)` of each occurrence a `--sink stdout` run printed, sorted.
fn counted(output: &Output) -> Vec<(String, String)> {
    let mut counted: Vec<(String, String)> = json_lines(&output.stdout)
        .iter()
        .map(|line| {
            (
                line["conversation_id"].as_str().expect("id").to_owned(),
                line["key"].as_str().expect("key").to_owned(),
            )
        })
        .collect();
    counted.sort();
    counted
}

fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// Messages in the queue, visible or not.
async fn messages_in(client: &aws_sdk_sqs::Client, queue_url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName::{
        ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible,
    };
    let attributes = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(ApproximateNumberOfMessages)
        .attribute_names(ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("attributes");
    let count = |name| {
        attributes
            .attributes()
            .and_then(|attributes| attributes.get(&name))
            .and_then(|count| count.parse::<u64>().ok())
            .expect("a count")
    };
    count(ApproximateNumberOfMessages) + count(ApproximateNumberOfMessagesNotVisible)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_queue_is_drained_once_and_a_poison_message_stays_with_its_reason() {
    let dynalite = Dynalite::start();
    let moto = Moto::start();
    create_table(&dynalite.client(), TABLE).await.expect("table");
    let client = sqs(&moto);
    let queue_url = client
        .create_queue()
        .queue_name("flow-metrics-dead-letters")
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");

    let at = Timestamp::now() - SignedDuration::from_mins(30);
    let key = |metric: &str| format!("RoutingMetric_{metric}({at})");
    let (start, menu, transfer) = (key("Start"), key("Menu"), key("Transfer"));
    let raw = attributes_event("c-raw", &at.to_string(), &[&start, &menu]);
    let wrapped_event: Value =
        serde_json::from_str(&attributes_event("c-wrapped", &at.to_string(), &[&transfer])).expect("json");
    let on_failure = json!({
        "version": "1.0",
        "timestamp": at.to_string(),
        "requestContext": {"requestId": "r-1", "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": wrapped_event,
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorType": "NotDelivered", "errorMessage": "DataDog answered 503"}
    })
    .to_string();
    let bodies = [
        raw.clone(),
        on_failure,
        "{not an event".to_owned(),
        other_topic_event("c-other"),
        raw,
    ];
    for body in &bodies {
        client
            .send_message()
            .queue_url(&queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }

    // A dry run lists every message and changes nothing.
    let dry = drain(&dynalite, &moto, &queue_url, &["--dry-run"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let plans = json_lines(&dry.stdout);
    let mut actions: BTreeMap<String, usize> = BTreeMap::new();
    for plan in &plans {
        *actions
            .entry(plan["action"].as_str().expect("action").to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        actions,
        BTreeMap::from([
            ("deliver".to_owned(), 3),
            ("delete".to_owned(), 1),
            ("keep".to_owned(), 1)
        ])
    );
    assert_eq!(
        messages_in(&client, &queue_url).await,
        5,
        "the dry run deleted nothing"
    );

    // The drain counts each key once, deletes what is acknowledged, keeps the poison message.
    let first = drain(&dynalite, &moto, &queue_url, &["--sink", "stdout"]);
    assert_eq!(
        first.status.code(),
        Some(1),
        "a message was kept: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        counted(&first),
        [
            ("c-raw".to_owned(), menu.clone()),
            ("c-raw".to_owned(), start.clone()),
            ("c-wrapped".to_owned(), transfer.clone()),
        ]
    );
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(
        stderr.contains("kept message") && stderr.contains("not valid JSON"),
        "{stderr}"
    );
    assert!(
        stderr.contains("5 message(s) received, 4 deleted, 1 kept"),
        "{stderr}"
    );
    assert_eq!(
        messages_in(&client, &queue_url).await,
        1,
        "only the poison message stays"
    );

    // Run again (as after a crash, or by a second operator): nothing counts twice.
    let second = drain(&dynalite, &moto, &queue_url, &["--sink", "stdout"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        second.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );
    assert_eq!(messages_in(&client, &queue_url).await, 1);

    // The same events redelivered to the queue are acknowledged, and count nothing.
    client
        .send_message()
        .queue_url(&queue_url)
        .message_body(&bodies[0])
        .send()
        .await
        .expect("send");
    let third = drain(&dynalite, &moto, &queue_url, &["--sink", "stdout"]);
    assert!(third.stdout.is_empty());
    assert!(String::from_utf8_lossy(&third.stderr).contains("2 message(s) received, 1 deleted, 1 kept"));
}

/// The bucket's objects: key → text.
async fn objects_in(client: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, String> {
    let listed = client
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list");
    let mut objects = BTreeMap::new();
    for object in listed.contents() {
        let key = object.key().expect("key");
        let body = client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .expect("get")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes();
        objects.insert(key.to_owned(), String::from_utf8(body.to_vec()).expect("text"));
    }
    objects
}

async fn put(client: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &str) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .expect("put");
}

/// Lambda's on-failure record of a direct invocation of `event`, as Lambda writes it.
fn on_failure_record(event: Value, at: Timestamp) -> String {
    json!({
        "version": "1.0",
        "timestamp": at.to_string(),
        "requestContext": {
            "requestId": "0b6f3c52-8f1e-4d7a-b1f4-6c0d2a9e5b17",
            "functionArn": "arn:aws:lambda:eu-west-1:123456789012:function:GenesysFlowMetrics-Function:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": "NotDelivered", "errorMessage": "DataDog answered 503"}
    })
    .to_string()
}

/// Summary lines of a run's stderr.
fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_failure_bucket_is_drained_once_and_a_poison_object_stays_with_its_reason() {
    let dynalite = Dynalite::start();
    let moto = Moto::start();
    create_table(&dynalite.client(), TABLE).await.expect("table");
    let client = s3(&moto);
    let bucket = "flow-metrics-dead-letters";
    client
        .create_bucket()
        .bucket(bucket)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await
        .expect("bucket");

    let at = Timestamp::now() - SignedDuration::from_mins(30);
    let key = |metric: &str| format!("RoutingMetric_{metric}({at})");
    let (start, menu, transfer, survey) = (key("Start"), key("Menu"), key("Transfer"), key("Survey"));

    // An attributes event near EventBridge's 256 KB: thousands of attributes, three metric keys
    // among them. Wrapped in Lambda's record it no longer fits an SQS message.
    let mut big: Value = serde_json::from_str(&attributes_event(
        "c-big",
        &at.to_string(),
        &[&start, &menu, &transfer],
    ))
    .expect("json");
    let attributes = big["detail"]["eventBody"]["attributes"]
        .as_object_mut()
        .expect("attributes");
    for index in 0..2_300 {
        attributes.insert(format!("Context_{index:05}"), json!("x".repeat(90)));
    }
    // One more, padded to bring the event to 262,000 bytes, just under EventBridge's limit.
    attributes.insert("Context_pad".to_owned(), json!(""));
    let padding = 262_000 - big.to_string().len();
    big["detail"]["eventBody"]["attributes"]["Context_pad"] = json!("x".repeat(padding));
    let big_event = big.to_string();
    let big_record = on_failure_record(big, at);
    assert_eq!(big_event.len(), 262_000);
    assert!(big_record.len() > 256 * 1024, "{}", big_record.len());

    // A bare EventBridge event, and a record whose event is rejected for good.
    let small = attributes_event("c-small", &at.to_string(), &[&survey]);
    let mut poison: Value =
        serde_json::from_str(&attributes_event("c-poison", &at.to_string(), &[&start])).expect("json");
    poison["detail"]["eventBody"]
        .as_object_mut()
        .expect("body")
        .remove("conversationId");
    let poison_record = on_failure_record(poison, at);

    let big_key = "aws/lambda/async/GenesysFlowMetrics-Function/2026/12/01/big-0b6f3c52";
    let poison_key = "aws/lambda/async/GenesysFlowMetrics-Function/2026/12/01/poison-7a1d";
    let small_key = "manual/small.json";
    put(&client, bucket, big_key, &big_record).await;
    put(&client, bucket, poison_key, &poison_record).await;
    put(&client, bucket, small_key, &small).await;
    let all_three = objects_in(&client, bucket).await;
    assert_eq!(all_three[big_key], big_record, "the record is stored whole");

    // A dry run lists every object and changes nothing.
    let dry = run_drain(&dynalite, &moto, &["--bucket", bucket, "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr_of(&dry));
    let plans: BTreeMap<String, (String, u64)> = json_lines(&dry.stdout)
        .iter()
        .map(|plan| {
            (
                plan["object_key"].as_str().expect("object key").to_owned(),
                (
                    plan["action"].as_str().expect("action").to_owned(),
                    plan["fresh_keys"].as_u64().expect("fresh keys"),
                ),
            )
        })
        .collect();
    assert_eq!(
        plans,
        BTreeMap::from([
            (big_key.to_owned(), ("deliver".to_owned(), 3)),
            (poison_key.to_owned(), ("keep".to_owned(), 0)),
            (small_key.to_owned(), ("deliver".to_owned(), 1)),
        ])
    );
    assert_eq!(
        objects_in(&client, bucket).await,
        all_three,
        "the dry run deleted nothing"
    );

    // The drain counts each key once, deletes what is acknowledged, keeps the poison object.
    let first = run_drain(&dynalite, &moto, &["--bucket", bucket, "--sink", "stdout"]);
    assert_eq!(
        first.status.code(),
        Some(1),
        "an object was kept: {}",
        stderr_of(&first)
    );
    assert_eq!(
        counted(&first),
        [
            ("c-big".to_owned(), menu.clone()),
            ("c-big".to_owned(), start.clone()),
            ("c-big".to_owned(), transfer.clone()),
            ("c-small".to_owned(), survey.clone()),
        ]
    );
    let stderr = stderr_of(&first);
    assert!(
        stderr.contains(&format!(
            "kept object {poison_key}: rejected: the event has no eventBody.conversationId"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "drain, bucket s3://{bucket}/: 3 object(s) received, 2 deleted, 1 kept; keys counted 4, already counted 0"
        )),
        "{stderr}"
    );
    assert_eq!(
        objects_in(&client, bucket).await,
        BTreeMap::from([(poison_key.to_owned(), poison_record.clone())]),
        "only the poison object stays, as it was"
    );

    // Run again: nothing counts twice, the poison object stays.
    let second = run_drain(&dynalite, &moto, &["--bucket", bucket, "--sink", "stdout"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        second.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );
    assert!(
        stderr_of(&second).contains("1 object(s) received, 0 deleted, 1 kept; keys counted 0"),
        "{}",
        stderr_of(&second)
    );

    // A queue and part of the bucket in one run: the big event dead-lettered by EventBridge
    // (it fits a message bare) and the small one back under its prefix. Both are acknowledged,
    // counting nothing; the poison object, outside the prefix, is not read.
    let sqs = sqs(&moto);
    let queue_url = sqs
        .create_queue()
        .queue_name("flow-metrics-rule-dead-letters")
        .send()
        .await
        .expect("queue")
        .queue_url
        .expect("url");
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body(&big_event)
        .send()
        .await
        .expect("send");
    put(&client, bucket, small_key, &small).await;
    let both = drain(
        &dynalite,
        &moto,
        &queue_url,
        &["--bucket", bucket, "--prefix", "manual/", "--sink", "stdout"],
    );
    let stderr = stderr_of(&both);
    assert!(both.status.success(), "{stderr}");
    assert!(
        both.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&both.stdout)
    );
    assert!(
        stderr.contains("1 message(s) received, 1 deleted, 0 kept; keys counted 0, already counted 3"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "drain, bucket s3://{bucket}/manual/: 1 object(s) received, 1 deleted, 0 kept; keys counted 0, already counted 1"
        )),
        "{stderr}"
    );
    assert_eq!(messages_in(&sqs, &queue_url).await, 0);
    assert_eq!(
        objects_in(&client, bucket).await.into_keys().collect::<Vec<_>>(),
        [poison_key]
    );
}
