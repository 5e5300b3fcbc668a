//! `flow-metrics replay`: file layouts, diagnostics, exit status, and exactly-once output for
//! shuffled, duplicated traces.

mod common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use flow_metrics::input::{FramingError, RawEvent, read_events};
use flow_metrics::ledger::MemoryLedger;
use flow_metrics::pipeline::Pipeline;
use flow_metrics::replay::{DEFAULT_BATCH_SIZE, Source, replay};
use flow_metrics::sink::JsonLinesSink;
use proptest::prelude::*;
use serde_json::Value;

const SAMPLES: &str = "samples/genesys-events.jsonl";

fn flow_metrics(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_flow-metrics"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flow-metrics");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(input);
    child.wait_with_output().expect("flow-metrics output")
}

/// `flow-metrics sample-event ARGS…`, and what a replay of it printed.
fn sample_replayed(args: &[&str]) -> (String, Output) {
    let sample = flow_metrics(&[&["sample-event"], args].concat(), None);
    assert!(sample.status.success());
    let event = String::from_utf8(sample.stdout).expect("utf-8");
    let output = flow_metrics(&["replay", "-"], Some(&event));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (event, output)
}

/// The (conversation, key) pairs printed on stdout, checking each is printed once.
fn printed(stdout: &[u8]) -> BTreeSet<(String, String)> {
    let mut seen = BTreeSet::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let occurrence: Value = serde_json::from_str(line).expect("each stdout line is JSON");
        let pair = (
            occurrence["conversation_id"]
                .as_str()
                .expect("conversation_id")
                .to_owned(),
            occurrence["key"].as_str().expect("key").to_owned(),
        );
        assert!(seen.insert(pair.clone()), "printed twice: {pair:?}");
    }
    seen
}

fn write_temp(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(contents.as_bytes()).expect("write temp file");
    file
}

/// Replays event text in-process with the memory ledger; returns stdout's pairs and stderr.
async fn replay_text(text: String) -> (BTreeSet<(String, String)>, String) {
    let pipeline = Pipeline::new(MemoryLedger::default(), JsonLinesSink::new(Vec::new()));
    let source = Source {
        name: "trace".to_owned(),
        reader: Box::new(std::io::Cursor::new(text.into_bytes())),
    };
    let mut report = Vec::new();
    let replayed = replay(&pipeline, vec![source], DEFAULT_BATCH_SIZE, &mut report).await;
    assert!(replayed.stopped.is_none(), "{:?}", replayed.stopped);
    let (_, sink) = pipeline.into_parts();
    let stdout = sink.into_inner();
    (printed(&stdout), String::from_utf8(report).expect("utf-8 report"))
}

#[test]
fn the_readme_command_replays_the_samples() {
    // `cargo run --release --bin flow-metrics -- replay`: no file, the bundled samples.
    let output = flow_metrics(&["replay"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let counted = printed(&output.stdout);
    assert!(!counted.is_empty());
    let summary = stderr.lines().last().expect("a summary line");
    assert!(
        summary.starts_with("summary: events read 41, ignored 12, rejected 0"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("counted {},", counted.len())),
        "{summary}"
    );
    // The samples hold one impossible date: reported once with its line, though repeated.
    let invalid: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("invalid metric key"))
        .collect();
    assert_eq!(invalid.len(), 1, "{stderr}");
    assert!(
        invalid[0].starts_with("samples/genesys-events.jsonl:"),
        "{}",
        invalid[0]
    );
}

#[test]
fn the_first_replay_a_newcomer_runs_shows_names() {
    let output = flow_metrics(&["replay"], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.trim_end().ends_with("names unresolved 0"), "{stderr}");
    let named: BTreeSet<(String, String)> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("json"))
        .filter(|line| line["source"] != "attribute")
        .map(|line| {
            (
                line["flow"].as_str().unwrap_or("").to_owned(),
                line["metric"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        named,
        BTreeSet::from([
            ("Customer Routing".to_owned(), "Billing menu".to_owned()),
            ("Customer Routing".to_owned(), "Identified customer".to_owned()),
            ("Customer Routing".to_owned(), "Self service".to_owned()),
            ("Support Bot".to_owned(), "Intent recognised".to_owned()),
        ])
    );
    // A file of one's own is named by FLOW_METRICS_NAMES or the Genesys API, not by the samples'
    // map: its ids stay ids.
    let given = flow_metrics(&["replay", SAMPLES], None);
    assert!(
        String::from_utf8_lossy(&given.stderr)
            .trim_end()
            .ends_with("names unresolved 12")
    );
}

#[test]
fn no_file_replays_the_bundled_samples() {
    let bundled = flow_metrics(&["replay"], None);
    let from_file = flow_metrics(&["replay", SAMPLES], None);
    assert!(bundled.status.success());
    assert_eq!(printed(&bundled.stdout), printed(&from_file.stdout));
}

#[test]
fn every_occurrence_has_the_documented_fields() {
    let output = flow_metrics(&["replay", "samples/single-event.json"], None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first: Value = serde_json::from_str(stdout.lines().next().expect("one occurrence")).expect("json");
    let fields: BTreeSet<&str> = first
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from(["conversation_id", "flow", "metric", "key", "time", "source"])
    );
    assert_eq!(first["source"], "attribute");
    let key = first["key"].as_str().expect("key");
    assert!(key.starts_with(first["flow"].as_str().expect("flow")));
    assert!(key.ends_with(&format!("({})", first["time"].as_str().expect("time"))));
}

#[test]
fn the_samples_milestones_and_outcomes_print_with_their_source_and_names_from_the_bundled_map() {
    let names = std::fs::read_to_string("samples/flow-names.json").expect("names file");
    let output = Command::new(env!("CARGO_BIN_EXE_flow-metrics"))
        .args(["replay", SAMPLES])
        .env("FLOW_METRICS_NAMES", names)
        .output()
        .expect("run flow-metrics");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("json"))
        .collect();
    let outcomes: Vec<(&str, &str, &str, i64)> = lines
        .iter()
        .filter(|line| line["source"] == "outcome")
        .map(|line| {
            (
                line["flow"].as_str().unwrap_or(""),
                line["metric"].as_str().unwrap_or(""),
                line["value"].as_str().unwrap_or(""),
                line["duration_ms"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("Customer Routing", "Self service", "FAILURE", 24_104),
            ("Customer Routing", "Self service", "SUCCESS", 20_692),
        ]
    );
    // The redelivered flow outcome event counts nothing again: four milestones in all.
    let milestones = lines.iter().filter(|line| line["source"] == "milestone").count();
    assert_eq!(milestones, 4);
    let summary = String::from_utf8_lossy(&output.stderr);
    assert!(summary.trim_end().ends_with("names unresolved 0"), "{summary}");
}

#[test]
fn a_sample_outcome_event_for_testing_a_deployment_counts_its_milestone_and_outcome() {
    let (_, output) = sample_replayed(&["--source", "outcome", "--flow", "F-1", "--metric", "O-1"]);
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("json"))
        .collect();
    let shown: Vec<(&str, &str, &str)> = lines
        .iter()
        .map(|line| {
            (
                line["source"].as_str().unwrap_or(""),
                line["flow"].as_str().unwrap_or(""),
                line["metric"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(shown, [("milestone", "F-1", "O-1"), ("outcome", "F-1", "O-1")]);
    assert_eq!(lines[1]["duration_ms"], 2000);
}

#[test]
fn rejected_events_are_reported_with_their_line_and_the_rest_still_counts() {
    let lines = common::sample_lines();
    let trace = format!("{}\n{{\"broken\": \n{}\n[1]\n", lines[0], lines[1..].join("\n"));
    let file = write_temp(&trace);
    let path = file.path().to_str().expect("utf-8 path");
    let output = flow_metrics(&["replay", path], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{path}:2: rejected: not valid JSON")),
        "{stderr}"
    );
    let last_line = lines.len() + 2;
    assert!(
        stderr.contains(&format!(
            "{path}:{last_line}: rejected: not a Genesys EventBridge event"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("rejected 2"), "{stderr}");
    let all = flow_metrics(&["replay", SAMPLES], None);
    assert_eq!(printed(&output.stdout), printed(&all.stdout));
}

#[test]
fn stdin_is_read_for_a_dash() {
    let trace = std::fs::read_to_string(SAMPLES).expect("samples");
    let piped = flow_metrics(&["replay", "-"], Some(&trace));
    assert!(piped.status.success());
    let from_file = flow_metrics(&["replay", SAMPLES], None);
    assert_eq!(printed(&piped.stdout), printed(&from_file.stdout));
}

#[test]
fn a_missing_file_stops_before_anything_is_replayed() {
    let output = flow_metrics(&["replay", SAMPLES, "no/such/file.json"], None);
    assert_eq!(output.status.code(), Some(3));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot open no/such/file.json"));
}

#[test]
fn bad_options_are_usage_errors() {
    let output = flow_metrics(&["replay", "--max-key-age", "a week", SAMPLES], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not a duration"));
}

#[tokio::test]
async fn a_json_array_and_json_lines_give_the_same_counts() {
    let lines = common::sample_lines();
    let array = format!("[\n  {}\n]\n", lines.join(",\n  "));
    let (from_array, _) = replay_text(array).await;
    let (from_lines, _) = replay_text(lines.join("\n")).await;
    assert_eq!(from_array, from_lines);
}

#[test]
fn events_in_arrays_and_documents_carry_their_first_line() {
    let event = |n: u32| format!("{{\n  \"n\": {n},\n  \"x\": [\n    1\n  ]\n}}");
    let collect = |text: &str| {
        let mut events = Vec::new();
        read_events(text.as_bytes(), |event: RawEvent| {
            events.push(event.line);
            std::ops::ControlFlow::Continue(())
        })
        .map(|()| events)
    };
    let array = format!("\n[\n{},\n{}\n]", event(1), event(2));
    assert_eq!(collect(&array).expect("array"), [3, 9]);
    let document = format!("\n\n{}\n{}", event(1), event(2));
    assert_eq!(collect(&document).expect("document"), [3, 9]);
    let json_lines = "\n{\"n\":1}\n\n{\"n\":2}\n";
    assert_eq!(collect(json_lines).expect("json lines"), [2, 4]);
    match collect("[\n{\"n\":1},\n{\"n\":\n") {
        Err(FramingError::Syntax { line, .. }) => assert_eq!(line, 4),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

/// A trace with each event delivered one to three times, in a random order.
fn shuffled_duplicated(lines: &[String], copies: &[u8], order: &[usize]) -> String {
    let mut deliveries: Vec<&String> = lines
        .iter()
        .zip(copies)
        .flat_map(|(line, copies)| std::iter::repeat_n(line, usize::from(*copies)))
        .collect();
    for (i, j) in order.iter().enumerate() {
        let len = deliveries.len();
        deliveries.swap(i % len, j % len);
    }
    deliveries.into_iter().cloned().collect::<Vec<_>>().join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_shuffled_duplicated_trace_prints_each_key_exactly_once(
        copies in prop::collection::vec(1u8..=3, 41),
        order in prop::collection::vec(0usize..1000, 0..120),
    ) {
        let lines = common::sample_lines();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        let (expected, _) = runtime.block_on(replay_text(lines.join("\n")));
        let (counted, _) = runtime.block_on(replay_text(shuffled_duplicated(&lines, &copies, &order)));
        prop_assert_eq!(counted, expected);
    }
}

#[test]
fn a_sample_event_for_testing_a_deployment_counts_one_fresh_key() {
    let (event, output) = sample_replayed(&["--flow", "IVR", "--metric", "Hello"]);
    let line: Value = serde_json::from_slice(&output.stdout).expect("one occurrence");
    assert_eq!(
        (line["flow"].as_str(), line["metric"].as_str()),
        (Some("IVR"), Some("Hello"))
    );
    // Fresh: within a minute of now, so DataDog plots it where it happened.
    let time: jiff::Timestamp = line["time"].as_str().expect("time").parse().expect("a time");
    assert!((jiff::Timestamp::now() - time).abs() < jiff::SignedDuration::from_secs(60));
    // Every run is a new conversation, so each deployment test counts.
    let again = flow_metrics(&["sample-event", "--flow", "IVR", "--metric", "Hello"], None);
    assert_ne!(String::from_utf8_lossy(&again.stdout), event);
}
