//! `flow-metrics audit` and `flow-metrics redrive` against the DynamoDB emulator: a replayed
//! trace, claims left stuck by a simulated crash, the audit's totals, and a redrive that
//! delivers each stuck key exactly once to a fake DataDog intake.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Output};

use common::emulator::Dynalite;
use common::intake::Intake;
use common::{RecordingSink, attributes_event};
use flow_metrics::attribute::{Attribute, classify};
use flow_metrics::key::MetricKey;
use flow_metrics::ledger::dynamodb::create_table;
use flow_metrics::ledger::{ClaimRequest, ClaimToken, DynamoDbLedger, Ledger};
use flow_metrics::pipeline::Pipeline;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const TABLE: &str = "flow-metrics-audit";

/// A generated trace: conversations whose attribute maps grow event by event, every event
/// delivered twice. Returns the events and the set of (conversation, key) they carry.
fn trace(conversations: usize) -> (Vec<String>, BTreeSet<(String, String)>) {
    let mut events = Vec::new();
    let mut keys = BTreeSet::new();
    for conversation in 0..conversations {
        let id = format!("conversation-{conversation:03}");
        let flow = ["Routing", "Billing IVR", "SupportBot"][conversation % 3];
        let mut attributes = vec!["AccountID".to_owned()];
        for step in 0..(1 + conversation % 4) {
            let at = format!(
                "2026-03-07T{:02}:{:02}:{:02}.000Z",
                8 + conversation % 3,
                step * 7,
                conversation % 60
            );
            let metric = ["Start", "Menu", "Transfer", "End"][step];
            let key = format!("{flow}Metric_{metric}({at})");
            keys.insert((id.clone(), key.clone()));
            attributes.push(key);
            let refs: Vec<&str> = attributes.iter().map(String::as_str).collect();
            let event = attributes_event(&id, &at, &refs);
            events.push(event.clone());
            events.push(event);
        }
    }
    (events, keys)
}

fn flow_metrics(emulator: &Dynalite, args: &[&str], extra_env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flow-metrics"))
        .args(args)
        .args(["--table", TABLE, "--segments", "3"])
        .envs(emulator.environment())
        .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run flow-metrics")
}

fn audit_json(emulator: &Dynalite, extra: &[&str]) -> Value {
    let mut args = vec!["audit", "--format", "json"];
    args.extend_from_slice(extra);
    let output = flow_metrics(emulator, &args, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json rows")
}

fn totals(rows: &Value) -> (u64, u64, u64) {
    rows.as_array()
        .expect("rows")
        .iter()
        .fold((0, 0, 0), |(d, c, s), row| {
            (
                d + row["delivered"].as_u64().expect("n"),
                c + row["claimed"].as_u64().expect("n"),
                s + row["stuck"].as_u64().expect("n"),
            )
        })
}

/// Claims keys as a process would just before crashing: never pushed, never confirmed.
async fn crash_after_claiming(ledger: &DynamoDbLedger, conversation: &str, keys: &[&str], at: Timestamp) {
    let metrics: Vec<MetricKey<'_>> = keys
        .iter()
        .map(|key| match classify(key) {
            Attribute::Metric(metric) => metric,
            other => panic!("{other:?}"),
        })
        .collect();
    let claim = ledger
        .claim(ClaimRequest {
            conversation_id: conversation,
            event_time: at,
            keys: &metrics,
            token: &ClaimToken::random(),
            now: at,
        })
        .await
        .expect("claim");
    assert_eq!(claim.won.len(), keys.len());
}

fn intake_points(intake: &Intake) -> usize {
    intake
        .points("genesys.flow.metric")
        .iter()
        .map(|point| point.2)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_counts_the_trace_and_redrive_delivers_stuck_keys_exactly_once() {
    let emulator = Dynalite::start();
    create_table(&emulator.client(), TABLE).await.expect("table");
    let ledger = DynamoDbLedger::new(emulator.client(), TABLE).with_retention(common::ARCHIVE_RETENTION);
    let pipeline = Pipeline::new(ledger.clone(), RecordingSink::default());
    let (events, keys) = trace(24);
    let texts: Vec<&str> = events.iter().map(String::as_str).collect();
    for batch in texts.chunks(10) {
        pipeline.process_batch(batch, Timestamp::now()).await;
    }
    assert_eq!(pipeline.sink().pushed().len(), keys.len());

    // Three keys claimed by a process that died two hours ago, one by a process that died five
    // minutes ago (Lambda may still retry its event), one claimed just now (in flight).
    let two_hours_ago = Timestamp::now() - SignedDuration::from_hours(2);
    let stuck = [
        "RoutingMetric_Callback(2026-03-07T09:00:00Z)",
        "RoutingMetric_Survey(2026-03-07T09:01:00Z)",
    ];
    crash_after_claiming(&ledger, "crashed-1", &stuck, two_hours_ago).await;
    crash_after_claiming(
        &ledger,
        "crashed-2",
        &["SupportBotMetric_Start(2026-03-07T10:00:00Z)"],
        two_hours_ago,
    )
    .await;
    crash_after_claiming(
        &ledger,
        "crashed-recently",
        &["SupportBotMetric_Start(2026-03-07T10:30:00Z)"],
        Timestamp::now() - SignedDuration::from_mins(5),
    )
    .await;
    crash_after_claiming(
        &ledger,
        "in-flight",
        &["RoutingMetric_Start(2026-03-07T11:00:00Z)"],
        Timestamp::now(),
    )
    .await;

    let rows = audit_json(&emulator, &[]);
    assert_eq!(totals(&rows), (keys.len() as u64, 1, 4));
    let routing_callback = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|row| row["metric"] == "Callback")
        .expect("a Callback row");
    assert_eq!(
        routing_callback,
        &json!({"flow": "Routing", "metric": "Callback", "delivered": 0, "claimed": 0, "stuck": 1})
    );

    // Filters and buckets.
    let billing = audit_json(&emulator, &["--flow", "Billing IVR", "--by", "hour"]);
    assert!(
        billing
            .as_array()
            .expect("rows")
            .iter()
            .all(|row| row["flow"] == "Billing IVR" && row["bucket"].is_string())
    );
    let before_nine = audit_json(&emulator, &["--until", "2026-03-07T09:00:00Z"]);
    let expected_before_nine = keys.iter().filter(|(_, key)| key.contains("T08:")).count() as u64;
    assert_eq!(totals(&before_nine).0, expected_before_nine);

    // A dry run lists and changes nothing; by default only claims stuck for an hour or more.
    let dry = flow_metrics(&emulator, &["redrive", "--dry-run"], &[]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    assert_eq!(String::from_utf8_lossy(&dry.stdout).lines().count(), 3);
    assert!(
        String::from_utf8_lossy(&dry.stderr).contains(
            "0 were released after a failed push: safe to redrive (unless DataDog may have taken \
             the push: then they are logged and counted as possibly doubled); 3 were abandoned by \
             a process that stopped between claim and confirm: if it had pushed them, redriving \
             counts them twice, and each is logged and counted as possibly doubled"
        ),
        "the dry run says what it cannot know"
    );
    let recent = flow_metrics(&emulator, &["redrive", "--dry-run", "--stuck-for", "1m"], &[]);
    assert_eq!(String::from_utf8_lossy(&recent.stdout).lines().count(), 4);
    assert_eq!(totals(&audit_json(&emulator, &[])), (keys.len() as u64, 1, 4));

    // The redrive delivers each stuck key once; a second redrive sends nothing.
    let intake = Intake::accepting().await;
    let datadog = [("DD_API_KEY", "redrive-key".to_owned()), ("DD_URL", intake.uri())];
    for _ in 0..2 {
        let output = flow_metrics(&emulator, &["redrive", "--sink", "datadog"], &datadog);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(intake_points(&intake), 3);
    let after = audit_json(&emulator, &[]);
    assert_eq!(totals(&after), (keys.len() as u64 + 3, 1, 1));
    // The abandoned claims' holder may have pushed them: the ledger says so, and the audit shows it.
    let doubled: u64 = after
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|row| row["possibly_doubled"].as_u64())
        .sum();
    assert_eq!(doubled, 3, "{after}");
}

#[test]
fn every_format_prints_the_same_totals() {
    let emulator = Dynalite::start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let keys = runtime.block_on(async {
        create_table(&emulator.client(), TABLE).await.expect("table");
        let pipeline = Pipeline::new(
            DynamoDbLedger::new(emulator.client(), TABLE).with_retention(common::ARCHIVE_RETENTION),
            RecordingSink::default(),
        );
        let (events, keys) = trace(6);
        let texts: Vec<&str> = events.iter().map(String::as_str).collect();
        pipeline.process_batch(&texts, Timestamp::now()).await;
        keys.len() as u64
    });
    let table = flow_metrics(&emulator, &["audit"], &[]);
    let table = String::from_utf8(table.stdout).expect("utf-8");
    assert!(
        table
            .lines()
            .last()
            .is_some_and(|line| line.starts_with("| total") && line.contains(&format!(" {keys} "))),
        "{table}"
    );
    let csv = flow_metrics(&emulator, &["audit", "--format", "csv", "--by", "day"], &[]);
    let csv = String::from_utf8(csv.stdout).expect("utf-8");
    assert_eq!(
        csv.lines().next(),
        Some("flow,metric,bucket,delivered,claimed,stuck")
    );
    let delivered: u64 = csv
        .lines()
        .skip(1)
        .map(|line| {
            line.rsplit(',')
                .nth(2)
                .and_then(|n| n.parse::<u64>().ok())
                .expect("delivered")
        })
        .sum();
    assert_eq!(delivered, keys);
}
