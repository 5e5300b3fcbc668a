//! Names belong to the fleet: names fetched from Genesys are kept in the ledger table (partition
//! `#names`), a cold start learns them with one Query and asks Genesys only for what the table
//! lacks, names older than the TTL are fetched again, and the audit's and the redrive's scan
//! never see these items. Against dynalite, with the fake Genesys.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use common::emulator::Dynalite;
use common::genesys::{CLIENT_ID, CLIENT_SECRET, FakeGenesys};
use common::public_sample::{
    CONVERSATION, FIRST_MILESTONE, FLOW, OUTCOME, PUBLIC_SAMPLE, SECOND_MILESTONE, known_names,
};
use flow_metrics::audit::{Audit, totals};
use flow_metrics::event::EventError;
use flow_metrics::ledger::dynamodb::{DynamoDbNameStore, ScanFilter, create_table, schema};
use flow_metrics::ledger::{DynamoDbLedger, MemoryLedger};
use flow_metrics::names::genesys::{Credentials, GenesysDirectory, GenesysSettings};
use flow_metrics::names::store::{MemoryNameStore, NameStore, StoredName};
use flow_metrics::names::{CredentialsSource, Directory, GenesysConfig, NameKind, Names, NamesConfig};
use flow_metrics::pipeline::{BatchTime, EventOutcome, Pipeline};
use flow_metrics::sink::JsonLinesSink;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

const TABLE: &str = "flow-metrics-names";

fn now() -> Timestamp {
    "2025-12-12T15:02:31Z".parse().expect("time")
}

fn invocation() -> BatchTime {
    BatchTime {
        now: now(),
        deadline: Some(tokio::time::Instant::now() + Duration::from_secs(30)),
    }
}

fn config(genesys: &FakeGenesys) -> NamesConfig {
    NamesConfig {
        fixed: HashMap::new(),
        genesys: Some(GenesysConfig {
            login_url: genesys.uri(),
            api_url: genesys.uri(),
            credentials: CredentialsSource::Given(Credentials {
                client_id: CLIENT_ID.to_owned(),
                client_secret: CLIENT_SECRET.to_owned(),
            }),
            ttl: SignedDuration::from_hours(1),
        }),
    }
}

/// The sample event of another conversation.
fn of_conversation(conversation: &str) -> String {
    PUBLIC_SAMPLE.replace(CONVERSATION, conversation)
}

/// A cold start as the Lambda makes it: names learnt from the table, the ledger on it.
async fn cold_start(
    emulator: &Dynalite,
    genesys: &FakeGenesys,
) -> Pipeline<DynamoDbLedger, JsonLinesSink<Vec<u8>>> {
    let store: Arc<dyn NameStore> = Arc::new(DynamoDbNameStore::new(emulator.client(), TABLE));
    let names =
        Names::from_config_or_ids(&config(genesys), None, Some(store), Duration::from_secs(300)).await;
    let ledger = DynamoDbLedger::new(emulator.client(), TABLE).with_retention(common::ARCHIVE_RETENTION);
    Pipeline::new(ledger, JsonLinesSink::new(Vec::new())).with_names(Arc::new(names))
}

/// (flow, metric) of every line printed.
fn shown(printed: Vec<u8>) -> Vec<(String, String)> {
    String::from_utf8_lossy(&printed)
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).expect("a JSON line");
            let text = |field: &str| line[field].as_str().unwrap_or_default().to_owned();
            (text("flow"), text("metric"))
        })
        .collect()
}

fn named() -> Vec<(String, String)> {
    [
        ("Customer Routing", "Identified customer"),
        ("Customer Routing", "Billing menu"),
        ("Customer Routing", "Self service"),
    ]
    .iter()
    .map(|(flow, metric)| ((*flow).to_owned(), (*metric).to_owned()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_fetched_once_are_kept_in_the_table_and_a_second_cold_start_asks_genesys_nothing() {
    let emulator = Dynalite::start();
    create_table(&emulator.client(), TABLE).await.expect("table");
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;

    let first = cold_start(&emulator, &genesys).await;
    let report = first.process_batch(&[PUBLIC_SAMPLE], invocation()).await;
    assert_eq!((report.tally.keys_counted, report.tally.names_unresolved), (3, 0));
    // The invocation's end: its fetches, and their writes to the table, finish.
    first
        .finish_name_fetches(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(genesys.api_requests().len(), 4);
    let (_, sink) = first.into_parts();
    assert_eq!(shown(sink.into_inner()), named());

    // One item per id, in the names partition.
    let stored = DynamoDbNameStore::new(emulator.client(), TABLE)
        .load_all()
        .await
        .expect("names");
    let mut stored: Vec<(String, String, String)> = stored
        .into_iter()
        .map(|name| (name.kind.to_string(), name.id, name.name))
        .collect();
    stored.sort();
    assert_eq!(
        stored,
        [
            ("flow".to_owned(), FLOW.to_owned(), "Customer Routing".to_owned()),
            (
                "milestone".to_owned(),
                FIRST_MILESTONE.to_owned(),
                "Identified customer".to_owned()
            ),
            (
                "milestone".to_owned(),
                SECOND_MILESTONE.to_owned(),
                "Billing menu".to_owned()
            ),
            (
                "outcome".to_owned(),
                OUTCOME.to_owned(),
                "Self service".to_owned()
            ),
        ]
    );

    // Another instance starts cold: it reads the names from the table, and Genesys hears nothing.
    let (requests, tokens) = (genesys.api_requests().len(), genesys.token_requests());
    let second = cold_start(&emulator, &genesys).await;
    let other = of_conversation("22222222-2d4f-4a6e-9b8c-1f2e3d4c5b6a");
    let report = second.process_batch(&[&other], invocation()).await;
    assert_eq!((report.tally.keys_counted, report.tally.names_unresolved), (3, 0));
    second
        .finish_name_fetches(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(
        genesys.api_requests().len(),
        requests,
        "no name was asked of Genesys"
    );
    assert_eq!(genesys.token_requests(), tokens, "not even a token");
    let (_, sink) = second.into_parts();
    assert_eq!(shown(sink.into_inner()), named());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_scan_never_sees_the_names() {
    let emulator = Dynalite::start();
    create_table(&emulator.client(), TABLE).await.expect("table");
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    let ledger = DynamoDbLedger::new(emulator.client(), TABLE).with_retention(common::ARCHIVE_RETENTION);
    let audit = |filter: ScanFilter| {
        let ledger = ledger.clone();
        async move {
            let mut audit = Audit::new(None, Timestamp::now());
            let mut items = 0;
            ledger
                .scan(4, &filter, |item| {
                    items += 1;
                    audit.add(&item);
                })
                .await
                .expect("scan");
            (items, totals(&audit.rows()), audit.rows().len())
        }
    };
    // Keys counted with names unknown to the table, then names fetched and kept.
    let pipeline = Pipeline::new(ledger.clone(), JsonLinesSink::new(Vec::new()));
    pipeline.process_batch(&[PUBLIC_SAMPLE], invocation()).await;
    let before = audit(ScanFilter::default()).await;
    assert_eq!(before.1, (3, 0, 0));

    let names = cold_start(&emulator, &genesys).await;
    let report = names
        .process_batch(
            &[&of_conversation("33333333-2d4f-4a6e-9b8c-1f2e3d4c5b6a")],
            invocation(),
        )
        .await;
    names
        .finish_name_fetches(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(report.tally.keys_counted, 3);
    let raw = emulator
        .client()
        .query()
        .table_name(TABLE)
        .key_condition_expression("#pk = :names")
        .expression_attribute_names("#pk", schema::PARTITION_KEY)
        .expression_attribute_values(":names", AttributeValue::S(schema::NAMES_PARTITION.to_owned()))
        .send()
        .await
        .expect("query");
    assert_eq!(raw.count(), 4, "the names are in the table");

    // Only the second conversation's keys are new to the audit: the names are not keys.
    let after = audit(ScanFilter::default()).await;
    assert_eq!((after.0, after.1), (before.0 + 3, (6, 0, 0)));
    assert_eq!(after.2, before.2, "the same rows: the names add none");
    // The redrive scans the same way, with its stuck-claim filter on top: a name item, which is
    // no claim, could not pass that filter in any case.
}

/// A directory in front of `genesys` with `store`, learnt as at a cold start.
async fn seeded(genesys: &FakeGenesys, store: Arc<MemoryNameStore>) -> GenesysDirectory {
    let settings = GenesysSettings {
        login_url: genesys.uri(),
        api_url: genesys.uri(),
        credentials: Credentials {
            client_id: CLIENT_ID.to_owned(),
            client_secret: CLIENT_SECRET.to_owned(),
        },
        ttl: Duration::from_secs(3600),
        retry_after_failure: Duration::from_secs(60),
    };
    GenesysDirectory::new(settings)
        .expect("client")
        .with_store_seeded(Some(store))
        .await
}

#[tokio::test]
async fn only_what_the_table_lacks_or_has_stale_is_asked_of_genesys_and_written_back() {
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    let store = Arc::new(MemoryNameStore::default());
    let kept = |kind, id: &str, name: &str, age: SignedDuration| StoredName {
        kind,
        id: id.to_owned(),
        name: name.to_owned(),
        fetched_at: Timestamp::now() - age,
    };
    // The flow's name is fresh; the outcome's is older than the TTL (1 h), and Genesys has
    // renamed it since; the milestones are not kept at all.
    store
        .put(&kept(
            NameKind::Flow,
            FLOW,
            "Customer Routing",
            SignedDuration::from_mins(5),
        ))
        .await
        .expect("put");
    store
        .put(&kept(
            NameKind::Outcome,
            OUTCOME,
            "Old name",
            SignedDuration::from_hours(2),
        ))
        .await
        .expect("put");
    let directory = seeded(&genesys, store.clone()).await;
    assert_eq!(store.loads(), 1, "one load at start");
    assert_eq!(
        directory.name(NameKind::Flow, FLOW).as_deref(),
        Some("Customer Routing")
    );
    // A stale name is used while it is fetched again.
    assert_eq!(
        directory.name(NameKind::Outcome, OUTCOME).as_deref(),
        Some("Old name")
    );
    assert_eq!(directory.name(NameKind::Milestone, FIRST_MILESTONE), None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while directory.fetching() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut asked: Vec<String> = genesys.api_requests().into_iter().map(|(path, _)| path).collect();
    asked.sort();
    assert_eq!(
        asked,
        [
            format!("/api/v2/flows/milestones/{FIRST_MILESTONE}"),
            format!("/api/v2/flows/outcomes/{OUTCOME}"),
        ]
    );
    assert_eq!(
        directory.name(NameKind::Outcome, OUTCOME).as_deref(),
        Some("Self service")
    );
    // What was fetched is written back for the fleet; the fresh flow name was not rewritten.
    let names: Vec<(NameKind, String)> = store
        .names()
        .into_iter()
        .map(|name| (name.kind, name.name))
        .collect();
    assert_eq!(
        names,
        [
            (NameKind::Flow, "Customer Routing".to_owned()),
            (NameKind::Milestone, "Identified customer".to_owned()),
            (NameKind::Outcome, "Self service".to_owned()),
        ]
    );
    assert_eq!(store.puts(), 2 + 2);
}

#[tokio::test]
async fn a_conversation_id_cannot_take_the_names_partition() {
    let pipeline = Pipeline::new(MemoryLedger::default(), JsonLinesSink::new(Vec::new()));
    let report = pipeline
        .process_batch(&[&of_conversation(schema::NAMES_PARTITION)], now())
        .await;
    assert!(
        matches!(
            &report.outcomes[..],
            [EventOutcome::Rejected(EventError::BadConversationId(..))]
        ),
        "{:?}",
        report.outcomes
    );
}

/// Operator commands on the table share the fleet's names: a replay into it reads them and asks
/// Genesys nothing it already knows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_into_the_table_names_from_the_table_too() {
    let emulator = Dynalite::start();
    create_table(&emulator.client(), TABLE).await.expect("table");
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    let first = cold_start(&emulator, &genesys).await;
    first.process_batch(&[PUBLIC_SAMPLE], invocation()).await;
    first
        .finish_name_fetches(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    let (requests, tokens) = (genesys.api_requests().len(), genesys.token_requests());

    let events = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        events.path(),
        of_conversation("33333333-2d4f-4a6e-9b8c-1f2e3d4c5b6a"),
    )
    .expect("events");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flow-metrics"))
        .args([
            "replay", "--ledger", "dynamodb", "--table", TABLE, "--sink", "stdout",
        ])
        .args(["--endpoint-url", &emulator.endpoint, "--retention", "3650d"])
        .arg(events.path())
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("GENESYS_LOGIN_URL", genesys.uri())
        .env("GENESYS_API_URL", genesys.uri())
        .env("GENESYS_CLIENT_ID", CLIENT_ID)
        .env("GENESYS_CLIENT_SECRET", CLIENT_SECRET)
        .output()
        .expect("run flow-metrics");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.trim_end().ends_with("names unresolved 0"), "{stderr}");
    assert_eq!(shown(output.stdout), named());
    assert_eq!(
        genesys.api_requests().len(),
        requests,
        "no name was asked of Genesys"
    );
    assert_eq!(genesys.token_requests(), tokens, "not even a token");
}
