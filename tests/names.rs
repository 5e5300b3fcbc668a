//! Names for flow, milestone and outcome ids: the Genesys Cloud Platform API through a fake that
//! keeps Genesys's rules (OAuth client credentials, bearer tokens that expire, 401, 404, 429 with
//! Retry-After, 5xx), the fixed map that overrides it, and what a pipeline sends: names it waited
//! for (within a bound), ids where they did not come in time.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::genesys::{CLIENT_ID, CLIENT_SECRET, FakeGenesys};
use common::intake::Intake;
use common::public_sample::{
    CONVERSATION, FIRST_MILESTONE, FLOW, OUTCOME, PUBLIC_SAMPLE, SECOND_MILESTONE, known_names,
};
use flow_metrics::ledger::{ClaimRequest, ClaimToken, Ledger, MemoryLedger};
use flow_metrics::names::genesys::{Credentials, GenesysDirectory, GenesysSettings};
use flow_metrics::names::{Directory, NAME_WAIT, NameKind, Names};
use flow_metrics::pipeline::{BatchTime, Pipeline};
use flow_metrics::sink::{DataDogSink, JsonLinesSink, PushContext, Sink};
use flow_metrics::timing::{CONFIRM_RESERVE, MIN_ATTEMPT};
use jiff::Timestamp;
use serde_json::Value;

fn settings(genesys: &FakeGenesys, secret: &str, retry_after_failure: Duration) -> GenesysSettings {
    GenesysSettings {
        login_url: genesys.uri(),
        api_url: genesys.uri(),
        credentials: Credentials {
            client_id: CLIENT_ID.to_owned(),
            client_secret: secret.to_owned(),
        },
        ttl: Duration::from_secs(3600),
        retry_after_failure,
    }
}

fn directory(genesys: &FakeGenesys) -> GenesysDirectory {
    GenesysDirectory::new(settings(genesys, CLIENT_SECRET, Duration::from_secs(60))).expect("client")
}

/// Waits (for readiness, not a set time) until `ready` gives a value.
async fn eventually<T>(what: &str, mut ready: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = ready() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Everything logged until `count` names were reported not resolved.
async fn until_unresolved(logs: &common::logs::Captured, count: usize) -> String {
    let mut seen = String::new();
    eventually(&format!("{count} unresolved names logged"), || {
        seen.push_str(&logs.take());
        (seen.matches("name not resolved").count() >= count).then_some(())
    })
    .await;
    seen
}

/// The name, once the background fetch has brought it.
async fn resolved(directory: &dyn Directory, kind: NameKind, id: &str) -> Arc<str> {
    eventually(&format!("the {kind} name of {id}"), || directory.name(kind, id)).await
}

#[tokio::test]
async fn names_are_fetched_in_the_background_then_served_from_the_cache() {
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    let directory = directory(&genesys);
    // The first look never waits: no name yet, the id stands in.
    assert_eq!(directory.name(NameKind::Flow, FLOW), None);
    assert_eq!(
        &*resolved(&directory, NameKind::Flow, FLOW).await,
        "Customer Routing"
    );
    assert_eq!(
        &*resolved(&directory, NameKind::Milestone, FIRST_MILESTONE).await,
        "Identified customer"
    );
    assert_eq!(
        &*resolved(&directory, NameKind::Outcome, OUTCOME).await,
        "Self service"
    );
    let asked = genesys.api_requests().len();
    for _ in 0..10 {
        assert_eq!(
            directory.name(NameKind::Flow, FLOW).as_deref(),
            Some("Customer Routing")
        );
    }
    assert_eq!(
        genesys.api_requests().len(),
        asked,
        "cached names are not asked again"
    );
    let paths: Vec<String> = genesys.api_requests().into_iter().map(|(path, _)| path).collect();
    assert_eq!(
        paths,
        [
            format!("/api/v2/flows/{FLOW}"),
            format!("/api/v2/flows/milestones/{FIRST_MILESTONE}"),
            format!("/api/v2/flows/outcomes/{OUTCOME}"),
        ]
    );
    assert_eq!(genesys.tokens_issued(), 1, "one token serves every request");
}

#[tokio::test]
async fn a_token_is_renewed_before_it_expires() {
    // Genesys's tokens here last 2 s: the client renews after 1.8 s, never sending an expired one.
    let genesys = FakeGenesys::start(Duration::from_secs(2), &known_names()).await;
    let directory = directory(&genesys);
    resolved(&directory, NameKind::Flow, FLOW).await;
    tokio::time::sleep(Duration::from_millis(1900)).await;
    resolved(&directory, NameKind::Outcome, OUTCOME).await;
    assert_eq!(genesys.tokens_issued(), 2);
    assert!(genesys.api_requests().iter().all(|(_, status)| *status == 200));
}

#[tokio::test]
async fn a_revoked_token_is_replaced_and_the_request_tried_again() {
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    let directory = directory(&genesys);
    resolved(&directory, NameKind::Flow, FLOW).await;
    genesys.revoke_tokens();
    assert_eq!(
        &*resolved(&directory, NameKind::Milestone, SECOND_MILESTONE).await,
        "Billing menu"
    );
    let statuses: Vec<u16> = genesys
        .api_requests()
        .into_iter()
        .map(|(_, status)| status)
        .collect();
    assert_eq!(statuses, [200, 401, 200]);
    assert_eq!(genesys.tokens_issued(), 2);
}

#[tokio::test]
async fn a_rate_limited_name_keeps_the_id_and_waits_as_long_as_genesys_says() {
    let (logs, _guard) = common::logs::capture();
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    // The directory's own pause after a failure is short; Genesys's Retry-After is not.
    let directory =
        GenesysDirectory::new(settings(&genesys, CLIENT_SECRET, Duration::from_millis(1))).expect("client");
    genesys.force(&[(429, Some(120))]);
    assert_eq!(directory.name(NameKind::Flow, FLOW), None);
    let seen = until_unresolved(&logs, 1).await;
    assert!(seen.contains("429") && seen.contains(FLOW), "{seen}");
    // Well past the directory's own pause, but within Genesys's: the id is still not asked.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(directory.name(NameKind::Flow, FLOW), None);
    resolved(&directory, NameKind::Outcome, OUTCOME).await;
    let flow_requests = genesys
        .api_requests()
        .iter()
        .filter(|(path, _)| path.ends_with(FLOW))
        .count();
    assert_eq!(flow_requests, 1, "not asked again before Retry-After");
}

#[tokio::test]
async fn server_errors_and_unknown_ids_keep_the_id_say_why_and_are_tried_again_later() {
    let (logs, _guard) = common::logs::capture();
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    let directory =
        GenesysDirectory::new(settings(&genesys, CLIENT_SECRET, Duration::from_millis(200))).expect("client");
    genesys.force(&[(503, None)]);
    assert_eq!(directory.name(NameKind::Flow, FLOW), None);
    assert_eq!(directory.name(NameKind::Outcome, "0000-unknown"), None);
    let seen = until_unresolved(&logs, 2).await;
    assert!(seen.contains("Genesys answered 503"), "{seen}");
    assert!(
        seen.contains("Genesys has no outcome with this id (404)"),
        "{seen}"
    );
    // Once the pause after a failure is over, the name is fetched again and found.
    assert_eq!(
        &*resolved(&directory, NameKind::Flow, FLOW).await,
        "Customer Routing"
    );
}

#[tokio::test]
async fn refused_credentials_are_said_and_not_tried_for_every_id() {
    let (logs, _guard) = common::logs::capture();
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    let directory =
        GenesysDirectory::new(settings(&genesys, "wrong secret", Duration::from_secs(60))).expect("client");
    for id in [FLOW, "a-1", "a-2", "a-3"] {
        assert_eq!(directory.name(NameKind::Flow, id), None);
    }
    let seen = until_unresolved(&logs, 4).await;
    assert!(
        seen.contains("Genesys refused the OAuth client's credentials (401): authentication failed"),
        "{seen}"
    );
    assert!(
        !seen.contains("wrong secret"),
        "the secret is never logged: {seen}"
    );
    assert_eq!(genesys.token_requests(), 1);
    assert!(genesys.api_requests().is_empty());
}

#[tokio::test]
async fn ids_that_could_change_the_request_path_are_never_sent() {
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    let directory = directory(&genesys);
    let (logs, _guard) = common::logs::capture();
    assert_eq!(directory.name(NameKind::Flow, "../../users/me"), None);
    eventually("the refusal logged", || {
        logs.take().contains("not one Genesys gives").then_some(())
    })
    .await;
    assert!(genesys.api_requests().is_empty());
}

#[tokio::test]
async fn the_fixed_map_overrides_the_api() {
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    let fixed = HashMap::from([(FLOW.to_owned(), "Routing (fixed)".to_owned())]);
    let names = Names::new(fixed, Some(Arc::new(directory(&genesys))));
    assert_eq!(
        names.name(NameKind::Flow, FLOW).as_deref(),
        Some("Routing (fixed)")
    );
    assert_eq!(
        &*resolved(&names, NameKind::Outcome, OUTCOME).await,
        "Self service"
    );
    assert!(
        genesys
            .api_requests()
            .iter()
            .all(|(path, _)| !path.contains(FLOW))
    );
}

fn now() -> Timestamp {
    "2025-12-12T15:02:31Z".parse().expect("time")
}

fn lines(printed: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(printed)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// (flow, metric) of each line a JSON-lines sink printed.
fn shown(printed: &[Value]) -> Vec<(String, String)> {
    printed
        .iter()
        .map(|line| {
            (
                line["flow"].as_str().unwrap_or("").to_owned(),
                line["metric"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// A fresh directory, as after a cold start, in front of `genesys`.
fn cold_names(genesys: &FakeGenesys) -> Arc<dyn Directory> {
    Arc::new(Names::new(HashMap::new(), Some(Arc::new(directory(genesys)))))
}

/// A batch as a Lambda invocation runs it: 30 s left.
fn invocation() -> BatchTime {
    BatchTime {
        now: now(),
        deadline: Some(tokio::time::Instant::now() + Duration::from_secs(30)),
    }
}

#[tokio::test]
async fn the_first_batch_after_a_cold_start_waits_for_names_and_sends_them_on_every_point() {
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    genesys.slow_down(Duration::from_millis(50));
    let pipeline = Pipeline::new(MemoryLedger::default(), JsonLinesSink::new(Vec::new()))
        .with_names(cold_names(&genesys));
    let started = tokio::time::Instant::now();
    let report = pipeline.process_batch(&[PUBLIC_SAMPLE], invocation()).await;
    assert!(started.elapsed() < NAME_WAIT, "{:?}", started.elapsed());
    assert_eq!((report.tally.keys_counted, report.tally.names_unresolved), (3, 0));
    // The same event again counts nothing.
    let again = pipeline.process_batch(&[PUBLIC_SAMPLE], invocation()).await;
    assert_eq!(
        (again.tally.keys_counted, again.tally.keys_already_counted),
        (0, 3)
    );
    let (_, sink) = pipeline.into_parts();
    let named = |flow: &str, metric: &str| (flow.to_owned(), metric.to_owned());
    assert_eq!(
        shown(&lines(&sink.into_inner())),
        [
            named("Customer Routing", "Identified customer"),
            named("Customer Routing", "Billing menu"),
            named("Customer Routing", "Self service"),
        ]
    );
    // Each id was asked once: the waits looked at the fetches, never asked again.
    assert_eq!(genesys.api_requests().len(), 4);
}

#[tokio::test]
async fn names_slower_than_the_bound_go_out_as_ids_counted_as_unresolved_and_each_key_once() {
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    // Genesys answers well after the bound: the wait ends at the bound, not with Genesys.
    let latency = Duration::from_secs(3);
    genesys.slow_down(latency);
    let names = cold_names(&genesys);
    let pipeline =
        Pipeline::new(MemoryLedger::default(), JsonLinesSink::new(Vec::new())).with_names(names.clone());
    let started = tokio::time::Instant::now();
    let report = pipeline.process_batch(&[PUBLIC_SAMPLE], invocation()).await;
    let waited = started.elapsed();
    assert!(waited >= NAME_WAIT && waited < latency, "waited {waited:?}");
    assert_eq!(report.tally.keys_counted, 3);
    // Nothing came in time: two ids each (the flow's and its own).
    assert_eq!(report.tally.names_unresolved, 6);
    let again = pipeline.process_batch(&[PUBLIC_SAMPLE], invocation()).await;
    assert_eq!(
        (again.tally.keys_counted, again.tally.keys_already_counted),
        (0, 3)
    );

    // Once fetched, the next occurrences carry names, at once.
    resolved(&*names, NameKind::Outcome, OUTCOME).await;
    resolved(&*names, NameKind::Flow, FLOW).await;
    let later = PUBLIC_SAMPLE
        .replace(CONVERSATION, "11111111-2d4f-4a6e-9b8c-1f2e3d4c5b6a")
        .replace(r#""flowMilestones":["#, r#""flowMilestones":[],"ignored":["#);
    let started = tokio::time::Instant::now();
    let report = pipeline.process_batch(&[&later], invocation()).await;
    assert!(started.elapsed() < NAME_WAIT, "{:?}", started.elapsed());
    assert_eq!((report.tally.keys_counted, report.tally.names_unresolved), (1, 0));
    let (_, sink) = pipeline.into_parts();
    let id = |flow: &str, metric: &str| (flow.to_owned(), metric.to_owned());
    assert_eq!(
        shown(&lines(&sink.into_inner())),
        [
            id(FLOW, FIRST_MILESTONE),
            id(FLOW, SECOND_MILESTONE),
            id(FLOW, OUTCOME),
            id("Customer Routing", "Self service"),
        ]
    );
}

#[tokio::test]
async fn with_genesys_down_ids_go_out_without_waiting_the_bound_and_each_key_counts_once() {
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    genesys.force(&[(503, None), (503, None), (503, None), (503, None)]);
    let pipeline = Pipeline::new(MemoryLedger::default(), JsonLinesSink::new(Vec::new()))
        .with_names(cold_names(&genesys));
    let started = tokio::time::Instant::now();
    let report = pipeline.process_batch(&[PUBLIC_SAMPLE], invocation()).await;
    // A failed fetch ends the wait for its id: nothing is left to wait for.
    assert!(started.elapsed() < NAME_WAIT, "{:?}", started.elapsed());
    assert_eq!((report.tally.keys_counted, report.tally.names_unresolved), (3, 6));
    let again = pipeline.process_batch(&[PUBLIC_SAMPLE], invocation()).await;
    assert_eq!(
        (again.tally.keys_counted, again.tally.keys_already_counted),
        (0, 3)
    );
    let (_, sink) = pipeline.into_parts();
    let printed = shown(&lines(&sink.into_inner()));
    assert_eq!(printed.len(), 3);
    assert!(printed.iter().all(|(flow, _)| flow == FLOW), "{printed:?}");
}

#[tokio::test]
async fn the_wait_for_names_never_eats_the_push_deadline() {
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    genesys.slow_down(Duration::from_secs(30));
    let pipeline = Pipeline::new(MemoryLedger::default(), JsonLinesSink::new(Vec::new()))
        .with_names(cold_names(&genesys));
    // Less than the minimal push attempt beyond the confirm reserve: no wait for names at all.
    let time = BatchTime {
        now: now(),
        deadline: Some(tokio::time::Instant::now() + CONFIRM_RESERVE + MIN_ATTEMPT),
    };
    let started = tokio::time::Instant::now();
    let report = pipeline.process_batch(&[PUBLIC_SAMPLE], time).await;
    assert!(started.elapsed() < NAME_WAIT, "{:?}", started.elapsed());
    assert_eq!((report.tally.keys_counted, report.tally.names_unresolved), (3, 6));
}

#[tokio::test]
async fn datadog_gets_names_as_tags_and_a_self_metric_for_ids_sent_in_their_place() {
    let intake = Intake::at(now()).await;
    let sink = DataDogSink::new(intake.sink_settings(&[], true)).expect("sink");
    // The fixed map names the flow and the outcome; the milestones have no name anywhere.
    let fixed = HashMap::from([
        (FLOW.to_owned(), "Customer Routing".to_owned()),
        (OUTCOME.to_owned(), "Self service".to_owned()),
    ]);
    let pipeline = Pipeline::new(MemoryLedger::default(), sink).with_names(Arc::new(Names::new(fixed, None)));
    let report = pipeline.process_batch(&[PUBLIC_SAMPLE], now()).await;
    assert_eq!(report.tally.names_unresolved, 2);
    pipeline
        .sink()
        .flush(&PushContext {
            now: now(),
            deadline: None,
        })
        .await;
    let outcome_tags: Vec<Value> = intake
        .points("genesys.flow.outcome")
        .into_iter()
        .map(|(tags, _, _)| tags)
        .collect();
    assert_eq!(
        outcome_tags,
        [serde_json::json!([
            "flow:customer_routing",
            "outcome:self_service",
            "outcome_value:success",
            format!("flow_id:{FLOW}"),
            format!("outcome_id:{OUTCOME}"),
        ])]
    );
    let milestone_tags: Vec<Value> = intake
        .points("genesys.flow.milestone")
        .into_iter()
        .map(|(tags, _, _)| tags)
        .collect();
    assert!(
        milestone_tags
            .iter()
            .all(|tags| tags[0] == "flow:customer_routing"
                && tags[1].as_str().is_some_and(|tag| tag.starts_with("milestone:"))),
        "{milestone_tags:?}"
    );
    let unresolved: usize = intake
        .accepted()
        .iter()
        .flat_map(|body| body["series"].as_array().cloned().unwrap_or_default())
        .filter(|series| series["metric"] == "genesys.flow_metrics.names_unresolved")
        .map(|series| series["points"][0][1][0].as_f64().unwrap_or_default() as usize)
        .sum();
    assert_eq!(unresolved, 2);
}

/// The public sample through `lambda::handle`, as one direct invocation with `time_left`.
async fn invoke(names: Arc<dyn Directory>, time_left: Duration) {
    let pipeline = Pipeline::new(MemoryLedger::default(), JsonLinesSink::new(Vec::new())).with_names(names);
    let payload = serde_json::value::RawValue::from_string(PUBLIC_SAMPLE.to_owned()).expect("json");
    let time = BatchTime {
        now: now(),
        deadline: Some(tokio::time::Instant::now() + time_left),
    };
    flow_metrics::lambda::handle(&pipeline, &payload, time)
        .await
        .expect("handled");
}

#[tokio::test]
async fn a_lambda_invocation_lets_the_name_fetches_it_started_finish_before_it_returns() {
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    genesys.slow_down(Duration::from_millis(300));
    let directory = Arc::new(directory(&genesys));
    invoke(directory.clone(), Duration::from_secs(30)).await;
    // Lambda freezes the function now: what it asked Genesys has already come back.
    assert_eq!(directory.fetching(), 0);
    assert_eq!(
        directory.name(NameKind::Flow, FLOW).as_deref(),
        Some("Customer Routing")
    );
    assert_eq!(
        directory.name(NameKind::Outcome, OUTCOME).as_deref(),
        Some("Self service")
    );
}

#[tokio::test]
async fn a_lambda_invocation_never_waits_for_names_past_its_deadline() {
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    genesys.slow_down(Duration::from_secs(30));
    let directory = Arc::new(directory(&genesys));
    // 300 ms left beyond the time kept for confirming: the grace ends there, not with Genesys.
    invoke(directory.clone(), CONFIRM_RESERVE + Duration::from_millis(300)).await;
    assert!(
        directory.fetching() > 0,
        "the invocation returned while Genesys was still answering"
    );
    assert_eq!(directory.name(NameKind::Flow, FLOW), None);
}

/// `flow-metrics names ARGS…` against `genesys`, with `secret` as the OAuth client's secret:
/// (exit code, stdout).
async fn check_names(genesys: &FakeGenesys, secret: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flow-metrics"));
    command
        .arg("names")
        .args(args)
        .env("GENESYS_LOGIN_URL", genesys.uri())
        .env("GENESYS_API_URL", genesys.uri())
        .env("GENESYS_CLIENT_ID", CLIENT_ID)
        .env("GENESYS_CLIENT_SECRET", secret)
        .env(
            "FLOW_METRICS_NAMES",
            format!(r#"{{"{SECOND_MILESTONE}": "Billing menu (fixed)"}}"#),
        );
    let output = tokio::task::spawn_blocking(move || command.output().expect("run flow-metrics"))
        .await
        .expect("joined");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_names_command_checks_the_oauth_client_before_a_deployment() {
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    let (status, printed) = check_names(
        &genesys,
        CLIENT_SECRET,
        &[
            "--flow",
            FLOW,
            "--milestone",
            SECOND_MILESTONE,
            "--outcome",
            OUTCOME,
        ],
    )
    .await;
    assert_eq!(status, Some(0), "{printed}");
    assert_eq!(
        printed,
        format!(
            "flow {FLOW}: Customer Routing\nmilestone {SECOND_MILESTONE}: Billing menu (fixed) \
             (FLOW_METRICS_NAMES)\noutcome {OUTCOME}: Self service\n"
        )
    );

    // A role without the milestone permission: that line says which permission to add.
    genesys.forbid("milestones");
    let (status, printed) = check_names(
        &genesys,
        CLIENT_SECRET,
        &[
            "--flow",
            FLOW,
            "--milestone",
            FIRST_MILESTONE,
            "--outcome",
            OUTCOME,
        ],
    )
    .await;
    assert_eq!(status, Some(1));
    assert_eq!(
        printed,
        format!(
            "flow {FLOW}: Customer Routing\nmilestone {FIRST_MILESTONE}: not named: the OAuth client may \
             not read milestones (403): give its role the architect:flowMilestone:view permission\n\
             outcome {OUTCOME}: Self service\n"
        )
    );

    // A wrong secret: refused, and the secret is not printed.
    let (status, printed) = check_names(&genesys, "wrong secret", &["--flow", FLOW]).await;
    assert_eq!(status, Some(1));
    assert!(
        printed.contains("Genesys refused the OAuth client's credentials (401)"),
        "{printed}"
    );
    assert!(!printed.contains("wrong secret"));
}

#[tokio::test]
async fn the_wait_for_names_is_one_budget_for_the_whole_batch() {
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    genesys.slow_down(Duration::from_secs(30));
    // The outcome's key is held by an invocation that died; its claim ends 10 s into the batch
    // (a lease long enough that each push's own lease leaves room to wait for names).
    let ledger = MemoryLedger::new(jiff::SignedDuration::from_secs(10));
    let event = flow_metrics::event::decode(PUBLIC_SAMPLE).expect("event");
    let extracted = flow_metrics::count::extract(
        &event,
        flow_metrics::count::DEFAULT_MAX_KEY_AGE,
        flow_metrics::count::DEFAULT_RUN_GAP,
    );
    let outcome = extracted
        .fresh
        .iter()
        .copied()
        .filter(|key| key.key.starts_with("outcome:"))
        .collect::<Vec<_>>();
    assert_eq!(outcome.len(), 1);
    let dead = ledger
        .claim(ClaimRequest {
            conversation_id: CONVERSATION,
            event_time: now(),
            keys: &outcome,
            token: &ClaimToken::random(),
            now: now(),
        })
        .await
        .expect("claim");
    assert_eq!(dead.won, [0]);
    let pipeline = Pipeline::new(ledger, JsonLinesSink::new(Vec::new())).with_names(cold_names(&genesys));
    let started = tokio::time::Instant::now();
    let report = pipeline.process_batch(&[PUBLIC_SAMPLE], invocation()).await;
    let took = started.elapsed();
    // Two pushes: the milestones at once (after waiting the budget for names), the outcome once
    // the dead claim ended. The second push had no budget left, so it did not wait again (had it,
    // the batch would take the lease plus a second budget).
    assert_eq!((report.tally.keys_counted, report.tally.names_unresolved), (3, 6));
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(10) + NAME_WAIT,
        "took {took:?}"
    );
}

/// A replay of a fresh file against a reachable Genesys waits for the names before it pushes:
/// every line carries them, and none goes out as an id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_of_a_fresh_file_sends_names_on_every_point() {
    let genesys = FakeGenesys::start(Duration::from_secs(3600), &known_names()).await;
    genesys.slow_down(Duration::from_millis(50));
    let events = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(events.path(), PUBLIC_SAMPLE).expect("events");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flow-metrics"));
    command
        .arg("replay")
        .arg(events.path())
        .env("GENESYS_LOGIN_URL", genesys.uri())
        .env("GENESYS_API_URL", genesys.uri())
        .env("GENESYS_CLIENT_ID", CLIENT_ID)
        .env("GENESYS_CLIENT_SECRET", CLIENT_SECRET);
    let output = tokio::task::spawn_blocking(move || command.output().expect("run flow-metrics"))
        .await
        .expect("joined");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.trim_end().ends_with("names unresolved 0"), "{stderr}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("json"))
        .collect();
    assert_eq!(lines.len(), 3);
    for line in &lines {
        assert_eq!(line["flow"], "Customer Routing", "{line}");
        assert!(
            ["Identified customer", "Billing menu", "Self service"]
                .contains(&line["metric"].as_str().unwrap_or("")),
            "{line}"
        );
    }
}
