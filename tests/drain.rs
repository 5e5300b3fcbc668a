//! `flow-metrics drain` end to end: a dead-letter queue on moto's SQS emulator, the ledger on
//! dynalite, both on 127.0.0.1. Both shapes a dead-letter queue holds (EventBridge events and
//! Lambda on-failure records), a poison message that stays with its reason, an event of another
//! topic, a duplicate, a dry run that changes nothing, and a second run that counts nothing twice.

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

/// `flow-metrics drain` against the emulators: DynamoDB on dynalite, SQS on moto.
fn drain(dynalite: &Dynalite, moto: &Moto, queue_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flow-metrics"))
        .args(["drain", "--queue-url", queue_url, "--table", TABLE])
        .args(args)
        .envs(environment_for(&dynalite.endpoint))
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ENDPOINT_URL_DYNAMODB", &dynalite.endpoint)
        .env("AWS_ENDPOINT_URL_SQS", &moto.endpoint)
        .output()
        .expect("run flow-metrics drain")
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
    let mut counted: Vec<(String, String)> = json_lines(&first.stdout)
        .iter()
        .map(|line| {
            (
                line["conversation_id"].as_str().expect("id").to_owned(),
                line["key"].as_str().expect("key").to_owned(),
            )
        })
        .collect();
    counted.sort();
    assert_eq!(
        counted,
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
