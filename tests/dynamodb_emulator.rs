//! The DynamoDB ledger against a real DynamoDB emulator (dynalite on 127.0.0.1), with the table
//! made by the code's own `create_table`. Mocks cannot tell a wrong expression from a right one;
//! dynalite answers a wrong one with DynamoDB's own ValidationException, so every expression the
//! ledger sends is checked here for real.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use aws_sdk_dynamodb::types::AttributeValue;
use common::emulator::{Dynalite, replay_into_dynamodb};
use common::{RecordingSink, attributes_event};
use flow_metrics::attribute::{Attribute, classify};
use flow_metrics::ledger::dynamodb::{create_table, schema};
use flow_metrics::ledger::{ClaimRequest, ClaimToken, DynamoDbLedger, Ledger, LedgerError, MemoryLedger};
use flow_metrics::pipeline::{BatchTime, EventOutcome, Pipeline};
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;
use tokio::time::Instant;

const TABLE: &str = "flow-metrics-test";
const SAMPLES: &str = "samples/genesys-events.jsonl";
const LEASE: SignedDuration = SignedDuration::from_mins(2);

/// The samples' expected occurrences, from the in-memory ledger.
async fn expected_from_memory() -> Vec<(String, String)> {
    let pipeline = Pipeline::new(MemoryLedger::default(), RecordingSink::default());
    let events = common::sample_lines();
    let texts: Vec<&str> = events.iter().map(String::as_str).collect();
    pipeline.process_batch(&texts, Timestamp::now()).await;
    pipeline.sink().pushed()
}

async fn ledger(emulator: &Dynalite) -> DynamoDbLedger {
    let client = emulator.client();
    create_table(&client, TABLE).await.expect("create the table");
    DynamoDbLedger::new(client, TABLE)
        .with_lease(LEASE)
        .with_retention(common::ARCHIVE_RETENTION)
}

/// Every item of the table as (conversation, key) → state.
async fn items(emulator: &Dynalite) -> BTreeMap<(String, String), String> {
    let mut pages = emulator
        .client()
        .scan()
        .table_name(TABLE)
        .into_paginator()
        .items()
        .send();
    let mut items = BTreeMap::new();
    while let Some(item) = pages.next().await {
        let item = item.expect("scan");
        let text = |name: &str| {
            item.get(name)
                .and_then(|value| value.as_s().ok())
                .cloned()
                .expect(name)
        };
        items.insert(
            (text(schema::PARTITION_KEY), text(schema::SORT_KEY)),
            text(schema::STATE),
        );
    }
    items
}

#[tokio::test]
async fn creating_the_table_twice_is_fine_without_ttl_support() {
    let emulator = Dynalite::start();
    let client = emulator.client();
    create_table(&client, TABLE).await.expect("first create");
    create_table(&client, TABLE)
        .await
        .expect("second create finds the table");
    let described = client
        .describe_table()
        .table_name(TABLE)
        .send()
        .await
        .expect("describe");
    let table = described.table().expect("table");
    let keys: Vec<(&str, &str)> = table
        .key_schema()
        .iter()
        .map(|key| (key.attribute_name(), key.key_type().as_str()))
        .collect();
    assert_eq!(
        keys,
        [(schema::PARTITION_KEY, "HASH"), (schema::SORT_KEY, "RANGE")]
    );
}

#[tokio::test]
async fn replaying_twice_counts_every_key_once_in_total() {
    let emulator = Dynalite::start();
    let pipeline = Pipeline::new(ledger(&emulator).await, RecordingSink::default());
    let events = common::sample_lines();
    let texts: Vec<&str> = events.iter().map(String::as_str).collect();
    let first = pipeline.process_batch(&texts, Timestamp::now()).await;
    let second = pipeline.process_batch(&texts, Timestamp::now()).await;
    let expected = expected_from_memory().await;
    assert_eq!(pipeline.sink().pushed(), expected);
    assert_eq!(first.tally.keys_counted as usize, expected.len());
    assert_eq!(second.tally.keys_counted, 0);
    assert!(
        !first
            .outcomes
            .iter()
            .any(|outcome| matches!(outcome, EventOutcome::Failed { .. }))
    );

    let stored = items(&emulator).await;
    assert_eq!(stored.len(), expected.len());
    assert!(stored.values().all(|state| state == "delivered"), "{stored:?}");
}

#[tokio::test]
async fn concurrent_replays_deliver_each_key_exactly_once() {
    let emulator = Dynalite::start();
    let pipeline = Arc::new(Pipeline::new(ledger(&emulator).await, RecordingSink::default()));
    let events = Arc::new(common::sample_lines());
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..6usize {
        let (pipeline, events) = (Arc::clone(&pipeline), Arc::clone(&events));
        tasks.spawn(async move {
            // Each task sees the same deliveries in its own order, a few at a time.
            let mut order: Vec<&str> = events.iter().map(String::as_str).collect();
            order.rotate_left(task * 5);
            if task % 2 == 1 {
                order.reverse();
            }
            for batch in order.chunks(1 + task) {
                pipeline.process_batch(batch, Timestamp::now()).await;
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task");
    }
    let expected = expected_from_memory().await;
    let pushed = pipeline.sink().pushed();
    assert_eq!(pushed.len(), expected.len(), "a key was pushed twice or lost");
    assert_eq!(pushed, expected);
}

#[tokio::test]
async fn a_claim_left_by_a_crash_is_delivered_once_after_its_lease() {
    let emulator = Dynalite::start();
    let pipeline = Pipeline::new(ledger(&emulator).await, RecordingSink::default());
    let conversation = "12341234-1234-1234-1234-123456789012";
    let key = "RoutingMetric_Start(2026-03-07T04:08:00.000Z)";
    let Attribute::Metric(metric) = classify(key) else {
        panic!("valid key")
    };
    let crash_time = Timestamp::now();
    let crashed = pipeline
        .ledger()
        .claim(ClaimRequest {
            conversation_id: conversation,
            event_time: crash_time,
            keys: &[metric],
            token: &ClaimToken::random(),
            now: crash_time,
        })
        .await
        .expect("claim");
    assert_eq!(crashed.won, [0], "the crashed process had won the key");

    let event = attributes_event(conversation, "2026-03-07T04:08:11Z", &[key]);
    let invocation = BatchTime {
        now: crash_time,
        deadline: Some(Instant::now() + Duration::from_secs(8)),
    };
    let waited = pipeline.process_batch(&[&event], invocation).await;
    assert!(pipeline.sink().pushed().is_empty(), "the lease still holds");
    assert!(
        matches!(waited.outcomes[..], [EventOutcome::Failed { .. }]),
        "the event fails while its key's holder may still deliver it"
    );
    let after_lease = crash_time + LEASE + SignedDuration::from_secs(1);
    pipeline.process_batch(&[&event], after_lease).await;
    pipeline.process_batch(&[&event], after_lease).await;
    assert_eq!(pipeline.sink().pushed().len(), 1);
    let stored = items(&emulator).await;
    assert_eq!(stored.values().collect::<Vec<_>>(), ["delivered"]);
}

#[tokio::test]
async fn released_claims_are_counted_by_the_retry() {
    let emulator = Dynalite::start();
    let pipeline = Pipeline::new(ledger(&emulator).await, RecordingSink::default());
    let event = attributes_event(
        "c-1",
        "2026-03-07T04:08:11Z",
        &[
            "RoutingMetric_Start(2026-03-07T04:08:00Z)",
            "RoutingMetric_Menu(2026-03-07T04:08:10Z)",
        ],
    );
    pipeline.sink().failing.store(true, Ordering::SeqCst);
    let failed = pipeline.process_batch(&[&event], Timestamp::now()).await;
    assert!(matches!(failed.outcomes[..], [EventOutcome::Failed { .. }]));
    // Released: claimed with an expired lease, so the retry takes them at once.
    assert!(items(&emulator).await.values().all(|state| state == "claimed"));

    pipeline.sink().failing.store(false, Ordering::SeqCst);
    let retried = pipeline.process_batch(&[&event], Timestamp::now()).await;
    assert_eq!(retried.tally.keys_counted, 2);
    assert!(items(&emulator).await.values().all(|state| state == "delivered"));
}

#[tokio::test]
async fn a_confirm_by_a_holder_whose_lease_was_taken_over_is_refused() {
    let emulator = Dynalite::start();
    let ledger = ledger(&emulator).await;
    let Attribute::Metric(metric) = classify("RoutingMetric_Start(2026-03-07T04:08:00Z)") else {
        panic!("valid key")
    };
    let keys = [metric];
    let (slow_token, fast_token) = (ClaimToken::random(), ClaimToken::random());
    let request = |now, token| ClaimRequest {
        conversation_id: "c-1",
        event_time: now,
        keys: &keys,
        token,
        now,
    };
    let start = Timestamp::now();
    let slow = ledger
        .claim(request(start, &slow_token))
        .await
        .expect("first claim");
    let later = start + LEASE + SignedDuration::from_secs(1);
    let fast = ledger
        .claim(request(later, &fast_token))
        .await
        .expect("re-claim after the lease");
    assert_eq!((slow.won.as_slice(), fast.won.as_slice()), (&[0][..], &[0][..]));
    let held_keys = [metric.key];
    let held = |token| flow_metrics::ledger::Held {
        conversation_id: "c-1",
        keys: &held_keys,
        token,
        now: later,
    };
    assert_eq!(
        ledger.confirm(held(&slow_token), false).await.expect("confirm"),
        [metric.key]
    );
    assert!(
        ledger
            .confirm(held(&fast_token), false)
            .await
            .expect("confirm")
            .is_empty()
    );
    assert!(
        ledger
            .confirm(held(&fast_token), false)
            .await
            .expect("a retried confirm")
            .is_empty(),
        "confirming twice is confirming once"
    );
}

#[tokio::test]
async fn a_missing_table_is_a_permanent_error_naming_it() {
    let emulator = Dynalite::start();
    let ledger = DynamoDbLedger::new(emulator.client(), "no-such-table");
    let Attribute::Metric(metric) = classify("RoutingMetric_Start(2026-03-07T04:08:00Z)") else {
        panic!("valid key")
    };
    let error = ledger
        .claim(ClaimRequest {
            conversation_id: "c-1",
            event_time: Timestamp::now(),
            keys: &[metric],
            token: &ClaimToken::random(),
            now: Timestamp::now(),
        })
        .await
        .expect_err("no table");
    assert!(matches!(error, LedgerError::Permanent { .. }), "{error}");
    assert!(error.to_string().contains("no-such-table"), "{error}");
}

#[tokio::test]
async fn the_emulator_rejects_a_wrong_expression_as_dynamodb_would() {
    // The reason this layer exists: an expression that is wrong (here a reserved word used
    // without a placeholder) passes every mock but fails against DynamoDB's validation.
    let emulator = Dynalite::start();
    ledger(&emulator).await;
    let result = emulator
        .client()
        .query()
        .table_name(TABLE)
        .key_condition_expression("conversation_id = :pk")
        .projection_expression("attribute_key, state")
        .expression_attribute_values(":pk", AttributeValue::S("c-1".to_owned()))
        .send()
        .await;
    let error = result.expect_err("`state` is a reserved word");
    let code = error.as_service_error().and_then(|error| {
        use aws_sdk_dynamodb::error::ProvideErrorMetadata;
        error.code().map(str::to_owned)
    });
    assert_eq!(code.as_deref(), Some("ValidationException"));
}

#[test]
fn the_cli_replaying_twice_into_dynalite_prints_each_key_once_in_total() {
    let emulator = Dynalite::start();
    let replay = || {
        let output = replay_into_dynamodb(
            &emulator.endpoint,
            TABLE,
            &[
                "--sink",
                "stdout",
                "--create-table",
                "--retention",
                "3650d",
                SAMPLES,
            ],
        )
        .output()
        .expect("run flow-metrics");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8")
    };
    let first = replay();
    let second = replay();
    let memory = Command::new(env!("CARGO_BIN_EXE_flow-metrics"))
        .args(["replay", SAMPLES])
        .output()
        .expect("run flow-metrics");
    let lines = |text: &str| text.lines().map(str::to_owned).collect::<BTreeSet<String>>();
    assert_eq!(lines(&first), lines(&String::from_utf8_lossy(&memory.stdout)));
    assert_eq!(
        first.lines().count(),
        lines(&first).len(),
        "no line printed twice"
    );
    assert!(second.is_empty(), "the second replay counts nothing: {second}");
}

#[test]
fn the_cli_refuses_events_too_old_for_the_tables_retention() {
    // With 30 days' retention, records of keys from March may be gone: counting the samples
    // again could count them twice, so each event is refused with the reason.
    let emulator = Dynalite::start();
    let output = replay_into_dynamodb(
        &emulator.endpoint,
        TABLE,
        &["--sink", "stdout", "--create-table", SAMPLES],
    )
    .output()
    .expect("run flow-metrics");
    assert_eq!(output.status.code(), Some(1), "rejected events");
    assert!(output.stdout.is_empty(), "nothing counted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the records of its keys may have expired"),
        "{stderr}"
    );
}

#[test]
fn the_cli_will_not_guess_the_sink_for_a_table_no_stack_created() {
    // Printing to stdout would record the keys as delivered: DataDog would never get them. A
    // deployment's table has a sink (DataDog); an emulator's has none to guess.
    let emulator = Dynalite::start();
    let output = Command::new(env!("CARGO_BIN_EXE_flow-metrics"))
        .args(["replay", "--ledger", "dynamodb", "--table", TABLE, SAMPLES])
        .envs(emulator.environment())
        .output()
        .expect("run flow-metrics");
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--sink is required with a table no stack created"),
        "{stderr}"
    );
    let redrive = Command::new(env!("CARGO_BIN_EXE_flow-metrics"))
        .args(["redrive", "--table", TABLE])
        .envs(emulator.environment())
        .output()
        .expect("run flow-metrics");
    assert_eq!(redrive.status.code(), Some(2));
}

#[test]
fn the_cli_names_missing_credentials() {
    let output = Command::new(env!("CARGO_BIN_EXE_flow-metrics"))
        .args([
            "replay", "--ledger", "dynamodb", "--table", TABLE, "--sink", "stdout", SAMPLES,
        ])
        .env_clear()
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .output()
        .expect("run flow-metrics");
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no AWS credentials were found"), "{stderr}");
}
