//! Black-box: concurrent `flow-metrics replay --ledger dynamodb` processes against a DynamoDB
//! emulator behind a proxy that injects the faults DynamoDB really produces (writes applied but
//! answered with a 500, then retried by the SDK; throttles). Failed replays are run again, as
//! Lambda retries an event, until every one succeeds. Every key is printed exactly once in all.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;

use common::attributes_event;
use common::emulator::{Dynalite, replay_into_dynamodb};
use common::fault_proxy::{FaultProxy, FaultRates};
use flow_metrics::ledger::dynamodb::create_table;
use jiff::{SignedDuration, Timestamp};

const TABLE: &str = "flow-metrics-faults";
const PROCESSES: usize = 4;
const MAX_RUNS: usize = 12;

/// Conversations whose attribute maps grow event by event, in the last hour; every event twice.
/// Returns the events and each (conversation, key) that must count.
fn trace(conversations: usize) -> (Vec<String>, Vec<(String, String)>) {
    let start = Timestamp::now() - SignedDuration::from_hours(1);
    let mut events = Vec::new();
    let mut keys = Vec::new();
    for conversation in 0..conversations {
        let id = format!("conversation-{conversation:03}");
        let flow = ["Routing", "Billing IVR", "SupportBot"][conversation % 3];
        let mut attributes = vec!["AccountID".to_owned()];
        for step in 0..(2 + conversation % 7) {
            let at = start + SignedDuration::from_secs((conversation * 60 + step * 5) as i64);
            let key = format!("{flow}Metric_Step{step}({at})");
            keys.push((id.clone(), key.clone()));
            attributes.push(key);
            let refs: Vec<&str> = attributes.iter().map(String::as_str).collect();
            let event = attributes_event(&id, &at.to_string(), &refs);
            events.push(event.clone());
            events.push(event);
        }
    }
    (events, keys)
}

fn replay(endpoint: &str, file: &std::path::Path) -> Child {
    let file = file.to_str().expect("a UTF-8 path");
    replay_into_dynamodb(endpoint, TABLE, &["--sink", "stdout", "--batch-size", "16", file])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run flow-metrics")
}

#[test]
fn concurrent_replays_through_lost_answers_and_throttles_count_every_key_exactly_once() {
    let emulator = Dynalite::start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(create_table(&emulator.client(), TABLE))
        .expect("table");
    let proxy = FaultProxy::start(
        &emulator.endpoint,
        FaultRates {
            lost_write_answers: 0.06,
            throttles: 0.05,
        },
        0x5eed,
    );
    let (events, keys) = trace(90);

    // Each process gets every event, in its own order.
    let directory = tempfile::tempdir().expect("temporary directory");
    let files: Vec<std::path::PathBuf> = (0..PROCESSES)
        .map(|process| {
            let mut random = fastrand::Rng::with_seed(process as u64);
            let mut order = events.clone();
            random.shuffle(&mut order);
            let path = directory.path().join(format!("events-{process}.jsonl"));
            let mut file = std::fs::File::create(&path).expect("create");
            for event in &order {
                writeln!(file, "{event}").expect("write");
            }
            path
        })
        .collect();

    let mut printed: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut to_run: Vec<usize> = (0..PROCESSES).collect();
    let mut failed_runs = 0;
    for _ in 0..MAX_RUNS {
        if to_run.is_empty() {
            break;
        }
        let children: Vec<(usize, Child)> = to_run
            .iter()
            .map(|&process| (process, replay(&proxy.endpoint, &files[process])))
            .collect();
        to_run.clear();
        for (process, child) in children {
            let output = child.wait_with_output().expect("wait");
            for line in String::from_utf8_lossy(&output.stdout).lines() {
                let occurrence: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
                let pair = (
                    occurrence["conversation_id"].as_str().expect("id").to_owned(),
                    occurrence["key"].as_str().expect("key").to_owned(),
                );
                *printed.entry(pair).or_default() += 1;
            }
            match output.status.code() {
                Some(0) => {}
                // The replay stopped on a transient failure: run it again, as Lambda would.
                Some(3) => {
                    failed_runs += 1;
                    to_run.push(process);
                }
                other => panic!(
                    "replay exited with {other:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                ),
            }
        }
    }
    assert!(to_run.is_empty(), "replays still failing after {MAX_RUNS} runs");

    let lost: Vec<_> = keys.iter().filter(|pair| !printed.contains_key(*pair)).collect();
    let doubled: Vec<_> = printed.iter().filter(|(_, count)| **count > 1).collect();
    assert!(
        lost.is_empty(),
        "{} of {} keys never counted: {lost:?}",
        lost.len(),
        keys.len()
    );
    assert!(doubled.is_empty(), "counted twice: {doubled:?}");
    assert_eq!(printed.len(), keys.len());

    let counts = &proxy.counts;
    eprintln!(
        "{} keys; proxy forwarded {}, lost {} write answers, throttled {}; {failed_runs} runs failed and were retried",
        keys.len(),
        counts.forwarded.load(Ordering::SeqCst),
        counts.lost_write_answers.load(Ordering::SeqCst),
        counts.throttles.load(Ordering::SeqCst),
    );
    assert!(counts.lost_write_answers.load(Ordering::SeqCst) > 10);
    assert!(counts.throttles.load(Ordering::SeqCst) > 10);
}
