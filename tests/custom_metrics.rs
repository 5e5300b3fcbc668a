//! The audit's count of DataDog custom metrics against what DataDog receives: the same keys,
//! pushed through the DataDog sink to the fake intake and read back from the ledger's items, make
//! the same distinct (metric, tags) series, with `.elapsed` on and off.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::intake::Intake;
use flow_metrics::audit::{CustomMetricRow, CustomMetrics};
use flow_metrics::count::{Occurrence, StepIds};
use flow_metrics::key::Source;
use flow_metrics::ledger::dynamodb::LedgerItem;
use flow_metrics::sink::datadog::MetricNames;
use flow_metrics::sink::{DataDogSink, PushContext, Sink};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

fn now() -> Timestamp {
    "2026-03-07T12:00:00Z".parse().expect("time")
}

/// (source, flow, metric, outcome value, duration ms) of each delivered key.
type Known = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<i64>,
);

fn known_keys() -> Vec<Known> {
    vec![
        ("attribute", "Billing IVR", "Start", None, None),
        ("attribute", "Billing IVR", "Start", None, None),
        ("attribute", "Billing IVR", "Menu Option 2", None, None),
        // Normalised alike: `flow:billing_ivr`, `metric:start`, one series with the first.
        ("attribute", "billing ivr", "START", None, None),
        ("attribute", "CustomerRouting", "Start", None, None),
        ("milestone", "flow-a", "milestone-1", None, None),
        ("milestone", "flow-a", "milestone-2", None, None),
        ("milestone", "flow-b", "milestone-1", None, None),
        ("outcome", "flow-a", "outcome-1", Some("SUCCESS"), Some(20_692)),
        ("outcome", "flow-a", "outcome-1", Some("FAILURE"), Some(24_104)),
        ("outcome", "flow-a", "outcome-1", Some("SUCCESS"), Some(1_000)),
        // No end time: a count, no duration.
        ("outcome", "flow-b", "outcome-1", Some("SUCCESS"), None),
    ]
}

fn occurrences(keys: &[Known]) -> Vec<Occurrence<'static>> {
    keys.iter()
        .enumerate()
        .map(|(index, (source, flow, metric, value, duration_ms))| {
            let source = match *source {
                "milestone" => Source::Milestone,
                "outcome" => Source::Outcome {
                    value: *value,
                    duration: duration_ms.map(SignedDuration::from_millis),
                },
                _ => Source::Attribute,
            };
            Occurrence {
                conversation_id: "c",
                flow,
                metric,
                ids: StepIds::of(source, flow, metric),
                key: "k",
                time: now() - SignedDuration::from_secs(index as i64),
                elapsed: matches!(source, Source::Attribute).then(|| SignedDuration::from_secs(index as i64)),
                source,
            }
        })
        .collect()
}

fn ledger_items(keys: &[Known]) -> Vec<LedgerItem> {
    keys.iter()
        .enumerate()
        .map(|(index, (source, flow, metric, value, duration_ms))| LedgerItem {
            conversation_id: format!("c-{index}"),
            attribute_key: format!("key-{index}"),
            flow: (*flow).to_owned(),
            metric: (*metric).to_owned(),
            key_time_ms: now().as_millisecond() - 1000 * index as i64,
            first_seen_ms: now().as_millisecond(),
            state: "delivered".to_owned(),
            lease_expires_ms: None,
            source: (*source != "attribute").then(|| (*source).to_owned()),
            outcome_value: value.map(str::to_owned),
            duration_ms: *duration_ms,
            possibly_doubled: false,
        })
        .collect()
}

/// The distinct tag combinations per metric the intake received.
fn received_series(intake: &Intake) -> BTreeMap<String, BTreeSet<String>> {
    let mut series: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for body in intake.accepted() {
        for one in body["series"].as_array().expect("series") {
            let metric = one["metric"].as_str().expect("a name").to_owned();
            let tags: Vec<Value> = one["tags"].as_array().expect("tags").clone();
            series
                .entry(metric)
                .or_default()
                .insert(Value::from(tags).to_string());
        }
    }
    series
}

async fn compare(metrics: MetricNames) -> Vec<CustomMetricRow> {
    let intake = Intake::at(now()).await;
    let mut settings = intake.sink_settings(&["env:prod"], false);
    settings.metrics = metrics.clone();
    let sink = DataDogSink::new(settings).expect("sink");
    let keys = known_keys();
    sink.push(
        &occurrences(&keys),
        &PushContext {
            now: now(),
            deadline: None,
        },
    )
    .await
    .expect("delivered");

    let mut audit = CustomMetrics::new(metrics, vec!["env:prod".to_owned()]);
    for item in ledger_items(&keys) {
        audit.add(&item);
    }
    let rows = audit.rows();
    let counted: BTreeMap<String, u64> = rows
        .iter()
        .map(|row| (row.metric.clone(), row.tag_combinations))
        .collect();
    let received: BTreeMap<String, u64> = received_series(&intake)
        .into_iter()
        .map(|(metric, combinations)| (metric, combinations.len() as u64))
        .collect();
    assert_eq!(counted, received, "the audit counts the series DataDog receives");
    rows
}

#[tokio::test]
async fn the_audit_counts_the_series_datadog_receives_and_what_they_cost() {
    let rows = compare(MetricNames::default()).await;
    let summary: Vec<(&str, u64, u64, Option<u64>)> = rows
        .iter()
        .map(|row| {
            (
                row.metric.as_str(),
                row.tag_combinations,
                row.custom_metrics,
                row.with_percentiles,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("genesys.flow.metric", 3, 15, None),
            ("genesys.flow.metric.elapsed", 3, 15, Some(30)),
            ("genesys.flow.milestone", 3, 15, None),
            ("genesys.flow.outcome", 3, 15, None),
            ("genesys.flow.outcome.duration", 2, 10, Some(20)),
        ]
    );
}

#[tokio::test]
async fn with_elapsed_off_the_audit_counts_no_elapsed_series() {
    let rows = compare(MetricNames {
        elapsed: false,
        ..MetricNames::default()
    })
    .await;
    assert!(rows.iter().all(|row| row.metric != "genesys.flow.metric.elapsed"));
    assert_eq!(rows.len(), 4);
}
