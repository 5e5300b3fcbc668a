//! `flow-metrics reconcile` against a fake Genesys analytics API (held to the published
//! schemas) and ledgers replayed into the DynamoDB emulator: one holding exactly Genesys's keys
//! is complete, one missing a conversation's keys (a loss) and one holding keys Genesys never
//! counted (a double) are found with their conversations; differences Genesys's own rules
//! explain are said to be expected; an hour Genesys has not made available to its end is
//! partial; 429s are waited out as `Retry-After` says; a failed job is an error. The scheduled
//! run reconciles the latest hour Genesys's details hold, times its coverage and unexplained
//! keys at the run, and gives a slow job up before its invocation ends.

mod common;

use std::process::Output;

use common::emulator::{Dynalite, environment_for, replay_into_dynamodb};
use common::genesys::{CLIENT_ID, CLIENT_SECRET, FakeGenesys};
use common::genesys_analytics::{Conversation, FakeAnalytics};
use flow_metrics::flow_outcome::flow_outcome_event_json;
use jiff::Timestamp;
use serde_json::{Value, json};

const INTERVAL: &str = "2026-03-07T10:00:00Z/2026-03-07T11:00:00Z";

fn at(time: &str) -> Timestamp {
    format!("2026-03-07T{time}Z").parse().expect("a test time")
}

fn key(flow_metric: &str, time: &str) -> String {
    format!("{flow_metric}({})", at(time))
}

/// What Genesys's analytics hold: three conversations of the hour.
fn conversations() -> Vec<Conversation> {
    vec![
        Conversation {
            id: "conv-a".to_owned(),
            start: at("10:04:00"),
            end: Some(at("10:15:00")),
            attributes: vec![
                key("Billing IVRMetric_Start", "10:05:00"),
                key("Billing IVRMetric_Menu", "10:06:00"),
                "AccountID".to_owned(),
            ],
            milestones: vec![("flow-1".to_owned(), "milestone-1".to_owned(), at("10:05:30"))],
            outcomes: vec![(
                "flow-1".to_owned(),
                "outcome-1".to_owned(),
                "SUCCESS".to_owned(),
                at("10:07:00"),
            )],
        },
        Conversation {
            id: "conv-b".to_owned(),
            start: at("10:19:00"),
            end: Some(at("10:30:00")),
            attributes: vec![key("RoutingMetric_Start", "10:20:00")],
            milestones: vec![
                ("flow-1".to_owned(), "milestone-1".to_owned(), at("10:21:00")),
                ("flow-1".to_owned(), "milestone-1".to_owned(), at("10:24:00")),
            ],
            // Failed, then succeeded: Genesys keeps the last result.
            outcomes: vec![
                (
                    "flow-1".to_owned(),
                    "outcome-1".to_owned(),
                    "FAILURE".to_owned(),
                    at("10:22:00"),
                ),
                (
                    "flow-1".to_owned(),
                    "outcome-1".to_owned(),
                    "SUCCESS".to_owned(),
                    at("10:25:00"),
                ),
            ],
        },
        Conversation {
            id: "conv-c".to_owned(),
            start: at("10:39:00"),
            end: Some(at("10:45:00")),
            // The survey key set at 10:50, after the end, is not in analytics.
            attributes: vec![key("RoutingMetric_Start", "10:40:00")],
            milestones: Vec::new(),
            outcomes: Vec::new(),
        },
    ]
}

fn outcome_event(conversation: &str, milestone_at: &str, ended: &str, value: &str) -> String {
    let text = flow_outcome_event_json(
        conversation,
        "flow-1",
        "milestone-1",
        "outcome-1",
        at(milestone_at),
        at(ended),
    );
    let mut event: Value = serde_json::from_str(&text).expect("an event");
    event["detail"]["eventBody"]["flowOutcomeValue"] = json!(value);
    event.to_string()
}

/// The events Genesys sent for those conversations: counted, they are exactly Genesys's keys.
fn events() -> Vec<String> {
    let attributes = |conversation: &str, time: &str, keys: &[String]| {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        common::attributes_event(conversation, &at(time).to_string(), &keys)
    };
    let [a, b, c] = <[Conversation; 3]>::try_from(conversations()).expect("three");
    vec![
        attributes("conv-a", "10:06:00", &a.attributes),
        outcome_event("conv-a", "10:05:30", "10:07:00", "SUCCESS"),
        attributes("conv-b", "10:20:00", &b.attributes),
        outcome_event("conv-b", "10:21:00", "10:22:00", "FAILURE"),
        outcome_event("conv-b", "10:24:00", "10:25:00", "SUCCESS"),
        attributes("conv-c", "10:40:00", &c.attributes),
        attributes(
            "conv-c",
            "10:50:00",
            &[c.attributes[0].clone(), key("RoutingMetric_Survey", "10:50:00")],
        ),
    ]
}

/// A table holding what `events` count.
fn replayed(emulator: &Dynalite, table: &str, events: &[String]) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, events.join("\n")).expect("events written");
    let output = replay_into_dynamodb(
        &emulator.endpoint,
        table,
        &[
            "--create-table",
            "--sink",
            "stdout",
            "--retention",
            "3650d",
            file.to_str().expect("a path"),
        ],
    )
    .output()
    .expect("replay");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn reconcile(emulator: &Dynalite, genesys: &FakeGenesys, table: &str, format: &str) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_flow-metrics"))
        .args([
            "reconcile",
            "--table",
            table,
            "--interval",
            INTERVAL,
            "--format",
            format,
            "--segments",
            "2",
        ])
        .env_clear()
        .envs(environment_for(&emulator.endpoint))
        .envs([
            ("GENESYS_LOGIN_URL", genesys.uri()),
            ("GENESYS_API_URL", genesys.uri()),
            ("GENESYS_CLIENT_ID", CLIENT_ID.to_owned()),
            ("GENESYS_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
        ])
        .output()
        .expect("run flow-metrics reconcile")
}

fn rows(output: &Output) -> Vec<Value> {
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("a JSON report: {}", String::from_utf8_lossy(&output.stderr)));
    report["rows"].as_array().expect("rows").clone()
}

fn row<'a>(rows: &'a [Value], source: &str, flow: &str, metric: &str) -> &'a Value {
    rows.iter()
        .find(|row| row["source"] == source && row["flow"] == flow && row["metric"] == metric)
        .unwrap_or_else(|| panic!("no {source} row {flow}/{metric} in {rows:#?}"))
}

async fn genesys() -> (FakeGenesys, FakeAnalytics) {
    let genesys = FakeGenesys::start(std::time::Duration::from_secs(3600), &[]).await;
    // Two conversations a page: three conversations take a cursor.
    let analytics = FakeAnalytics::mount(&genesys, conversations(), 2).await;
    (genesys, analytics)
}

/// No request of ours broke the published schema (the fake answers those 400).
fn every_request_was_well_formed(analytics: &FakeAnalytics) {
    let requests = analytics.requests();
    assert!(
        requests
            .iter()
            .all(|(_, status)| matches!(status, 200 | 202 | 429)),
        "{requests:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_holding_exactly_genesyss_keys_is_complete() {
    let emulator = Dynalite::start();
    let (genesys, analytics) = genesys().await;
    replayed(&emulator, "exact", &events());

    let output = reconcile(&emulator, &genesys, "exact", "json");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["verdict"], "complete");
    assert_eq!(
        report["coverage"],
        json!({"Billing IVR": 1.0, "Routing": 1.0, "flow-1": 1.0})
    );
    let rows = rows(&output);
    assert!(rows.iter().all(|row| row["unexplained"] == 0), "{rows:#?}");
    assert_eq!(
        row(&rows, "attribute", "Routing", "Start"),
        &json!({"source": "attribute", "flow": "Routing", "metric": "Start", "genesys": 2, "ours": 2,
                "difference": 0, "expected": {}, "unexplained": 0, "stuck": 0, "lacking": [], "extra": []})
    );
    // Set after its conversation ended: counted by us, not in analytics.
    let survey = row(&rows, "attribute", "Routing", "Survey");
    assert_eq!((&survey["genesys"], &survey["ours"]), (&json!(0), &json!(1)));
    assert_eq!(survey["expected"], json!({"set_after_conversation_end": 1}));
    assert_eq!(
        (
            row(&rows, "milestone", "flow-1", "milestone-1")["genesys"].as_u64(),
            row(&rows, "milestone", "flow-1", "milestone-1")["ours"].as_u64()
        ),
        (Some(3), Some(3))
    );
    // conv-b failed, then succeeded: Genesys counts only the success.
    let failed = rows
        .iter()
        .find(|row| row["source"] == "outcome" && row["value"] == "FAILURE")
        .expect("a FAILURE row");
    assert_eq!((&failed["genesys"], &failed["ours"]), (&json!(0), &json!(1)));
    assert_eq!(failed["expected"], json!({"last_outcome_only": 1}));
    every_request_was_well_formed(&analytics);
    assert!(
        analytics
            .requests()
            .iter()
            .filter(|(request, _)| request.ends_with("/results"))
            .count()
            >= 2,
        "the results were paged by cursor"
    );

    let table = reconcile(&emulator, &genesys, "exact", "table");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("flow Routing: coverage 100.0%"), "{text}");
    assert!(text.contains("complete: every difference is explained"), "{text}");
    println!("{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_genesys_has_not_made_available_yet_is_partial_and_the_exit_status_is_1() {
    let emulator = Dynalite::start();
    let (genesys, analytics) = genesys().await;
    analytics.data_available_until(at("10:30:00"));
    replayed(&emulator, "lagging", &events());

    let output = reconcile(&emulator, &genesys, "lagging", "table");
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "partial: Genesys's details are available only until 2026-03-07T10:30:00Z; \
             reconcile again after it"
        ),
        "{text}"
    );
    assert!(!text.contains("complete: every difference"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_conversation_is_found_and_the_exit_status_is_1() {
    let emulator = Dynalite::start();
    let (genesys, analytics) = genesys().await;
    // conv-a's attributes event never arrived.
    let events: Vec<String> = events().into_iter().skip(1).collect();
    replayed(&emulator, "too-few", &events);

    let output = reconcile(&emulator, &genesys, "too-few", "json");
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows = rows(&output);
    for metric in ["Start", "Menu"] {
        let lost = row(&rows, "attribute", "Billing IVR", metric);
        assert_eq!(
            (&lost["genesys"], &lost["ours"], &lost["unexplained"]),
            (&json!(1), &json!(0), &json!(1))
        );
        assert_eq!(lost["lacking"], json!(["conv-a"]));
    }
    assert_eq!(row(&rows, "attribute", "Routing", "Start")["unexplained"], 0);
    every_request_was_well_formed(&analytics);

    let table = reconcile(&emulator, &genesys, "too-few", "table");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("flow Billing IVR: coverage 0.0%"), "{text}");
    assert!(text.contains("incomplete: 2 key(s)"), "{text}");
    println!("{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_genesys_never_counted_are_found_and_the_exit_status_is_1() {
    let emulator = Dynalite::start();
    let (genesys, analytics) = genesys().await;
    let mut events = events();
    // A conversation analytics does not know, and conv-a's milestone and outcome counted a
    // second time under another time.
    events.push(common::attributes_event(
        "conv-x",
        &at("10:30:00").to_string(),
        &[&key("RoutingMetric_Start", "10:30:00")],
    ));
    events.push(outcome_event("conv-a", "10:05:31", "10:07:00", "SUCCESS"));
    replayed(&emulator, "too-many", &events);

    let output = reconcile(&emulator, &genesys, "too-many", "csv");
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let csv = String::from_utf8_lossy(&output.stdout);
    assert!(
        csv.lines()
            .next()
            .is_some_and(|header| header.ends_with(",extra,stuck,coverage")),
        "{csv}"
    );
    assert!(
        csv.contains("attribute,Routing,Start,,2,3,1,,1,,conv-x,0,1.5"),
        "{csv}"
    );
    assert!(csv.contains("milestone,flow-1,milestone-1,,3,4,1,,1,,"), "{csv}");
    assert!(
        csv.contains("outcome,flow-1,outcome-1,SUCCESS,2,3,1,,1,,"),
        "{csv}"
    );
    every_request_was_well_formed(&analytics);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out_and_a_failed_job_is_an_error() {
    let emulator = Dynalite::start();
    let (genesys, analytics) = genesys().await;
    replayed(&emulator, "limited", &events());

    analytics.force(&[(429, 1), (429, 0)]);
    let output = reconcile(&emulator, &genesys, "limited", "json");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let requests = analytics.requests();
    assert_eq!(requests[0].1, 429);
    assert_eq!(requests[1].1, 429);
    assert_eq!(requests[0].0, requests[2].0, "the same request, asked again");
    assert_eq!(requests[2].1, 200);

    // Five 429s in a row: given up, saying so.
    analytics.force(&[(429, 0); 5]);
    let output = reconcile(&emulator, &genesys, "limited", "json");
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Genesys kept rate-limiting the flow aggregates query (429, 5 times)"),
        "{stderr}"
    );

    analytics.script_jobs(&[("QUEUED", None), ("FAILED", Some("The query timed out"))]);
    let output = reconcile(&emulator, &genesys, "limited", "json");
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ended FAILED: The query timed out"), "{stderr}");
}

/// The scheduled run on `table`, with `genesys`'s analytics and `intake` as DataDog.
fn scheduled_run(
    emulator: &Dynalite,
    genesys: &FakeGenesys,
    table: &str,
    intake: &common::intake::Intake,
) -> flow_metrics::reconcile::scheduled::ScheduledReconcile {
    use flow_metrics::ledger::DynamoDbLedger;
    use flow_metrics::names::genesys::{Credentials, GenesysDirectory, GenesysSettings};
    use flow_metrics::reconcile::genesys::GenesysAnalytics;
    use flow_metrics::reconcile::scheduled::ScheduledReconcile;
    use flow_metrics::sink::DataDogSink;

    let directory = GenesysDirectory::new(GenesysSettings {
        login_url: genesys.uri(),
        api_url: genesys.uri(),
        credentials: Credentials {
            client_id: CLIENT_ID.to_owned(),
            client_secret: CLIENT_SECRET.to_owned(),
        },
        ttl: std::time::Duration::from_secs(3600),
        retry_after_failure: std::time::Duration::from_secs(60),
    })
    .expect("a directory");
    ScheduledReconcile {
        analytics: GenesysAnalytics::new(directory),
        ledger: DynamoDbLedger::new(emulator.client(), table),
        sink: DataDogSink::new(intake.sink_settings(&["env:test"], false)).expect("a sink"),
    }
}

/// Each coverage point the intake took: (tags, time, value), by tags.
fn coverage_points(intake: &common::intake::Intake) -> Vec<(Value, Value, Value)> {
    let mut coverage: Vec<(Value, Value, Value)> = intake
        .accepted()
        .iter()
        .flat_map(|body| body["series"].as_array().expect("series").clone())
        .filter(|series| series["metric"] == flow_metrics::sink::datadog::COVERAGE_METRIC)
        .map(|series| {
            (
                series["tags"].clone(),
                series["points"][0][0].clone(),
                series["points"][0][1][0].clone(),
            )
        })
        .collect();
    coverage.sort_by_key(|(tags, ..)| tags.to_string());
    coverage
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_run_sends_each_flows_coverage_of_the_previous_hour_timed_at_the_run() {
    use common::intake::Intake;

    let emulator = Dynalite::start();
    let (genesys, _analytics) = genesys().await;
    // conv-a's attributes event never arrived.
    replayed(&emulator, "scheduled", &events()[1..]);
    // Scheduled at 11:15, run late at 12:10: a point at the hour's end (11:00) would be more
    // than DataDog's hour old, and dropped.
    let now = at("12:10:00");
    let intake = Intake::at(now).await;
    let scheduled = scheduled_run(&emulator, &genesys, "scheduled", &intake);

    let report = scheduled
        .run(at("11:15:00"), now, None)
        .await
        .expect("reconciled");
    assert_eq!(report.interval, INTERVAL, "the hour before 11:15");
    // Billing IVR's two keys of conv-a, which the ledger lacks, as unexplained keys by side.
    let unexplained: Vec<(Value, Value)> = intake
        .accepted()
        .iter()
        .flat_map(|body| body["series"].as_array().expect("series").clone())
        .filter(|series| series["metric"] == flow_metrics::sink::datadog::UNEXPLAINED_METRIC)
        .filter(|series| series["points"][0][1][0] != 0.0)
        .map(|series| (series["tags"].clone(), series["points"][0][1][0].clone()))
        .collect();
    assert_eq!(
        unexplained,
        [(
            json!(["flow:billing_ivr", "side:lacking", "env:test"]),
            json!(2.0)
        )]
    );
    let ran = json!(now.as_second());
    assert_eq!(
        coverage_points(&intake),
        [
            (json!(["flow:billing_ivr", "env:test"]), ran.clone(), json!(0.0)),
            (json!(["flow:flow-1", "env:test"]), ran.clone(), json!(1.0)),
            (json!(["flow:routing", "env:test"]), ran, json!(1.0)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_run_reconciles_the_latest_hour_genesyss_details_hold() {
    use common::intake::Intake;

    let emulator = Dynalite::start();
    let (genesys, analytics) = genesys().await;
    replayed(&emulator, "lagging-schedule", &events());
    // At 13:15, Genesys's details go only to 11:05, two hours behind: 10:00 to 11:00 is the
    // latest whole hour they hold (12:00 to 13:00 would be all `not_yet_available`).
    analytics.data_available_until(at("11:05:00"));
    let now = at("13:15:00");
    let intake = Intake::at(now).await;
    let scheduled = scheduled_run(&emulator, &genesys, "lagging-schedule", &intake);

    let report = scheduled.run(now, now, None).await.expect("reconciled");
    assert_eq!(report.interval, INTERVAL);
    assert!(
        analytics.requests()[0]
            .0
            .ends_with("/analytics/conversations/details/jobs/availability"),
        "availability asked first: {:#?}",
        analytics.requests()
    );
    every_request_was_well_formed(&analytics);
    let ran = json!(now.as_second());
    assert_eq!(
        coverage_points(&intake),
        [
            (json!(["flow:billing_ivr", "env:test"]), ran.clone(), json!(1.0)),
            (json!(["flow:flow-1", "env:test"]), ran.clone(), json!(1.0)),
            (json!(["flow:routing", "env:test"]), ran, json!(1.0)),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_details_job_is_given_up_before_the_invocation_ends_saying_so() {
    use common::intake::Intake;
    use flow_metrics::reconcile::genesys::AnalyticsError;
    use flow_metrics::reconcile::scheduled::ScheduledError;

    let emulator = Dynalite::start();
    let (genesys, analytics) = genesys().await;
    replayed(&emulator, "slow-job", &events());
    analytics.script_jobs(&[("QUEUED", None)]);
    let now = at("11:15:00");
    let intake = Intake::at(now).await;
    let scheduled = scheduled_run(&emulator, &genesys, "slow-job", &intake);

    // 32 s left: 30 s are kept to report, so the job may take 2 s (not the usual 10 minutes).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(32);
    let ran = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        scheduled.run(now, now, Some(deadline)),
    )
    .await
    .expect("given up before the invocation's end");
    let error = ran.expect_err("the job never finished");
    assert!(
        matches!(
            error,
            ScheduledError::Genesys(AnalyticsError::JobOutlastsInvocation { .. })
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("all the invocation had left"),
        "{error}"
    );
    assert!(coverage_points(&intake).is_empty());
}

/// The fake refuses what Genesys's published schemas refuse, so that a client passing against it
/// sends what Genesys takes.
#[tokio::test]
async fn the_fake_analytics_api_refuses_what_the_schema_refuses() {
    let (genesys, _analytics) = genesys().await;
    let client = reqwest::Client::new();
    let token: Value = serde_json::from_str(
        &client
            .post(format!("{}/oauth/token", genesys.uri()))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .expect("a token")
            .text()
            .await
            .expect("its body"),
    )
    .expect("JSON");
    let token = token["access_token"].as_str().expect("access_token").to_owned();
    let post = |path: &'static str, body: Value| {
        let request = client
            .post(format!("{}{path}", genesys.uri()))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body.to_string());
        async move {
            let response = request.send().await.expect("an answer");
            let status = response.status().as_u16();
            let body: Value = serde_json::from_str(&response.text().await.expect("a body")).expect("JSON");
            (status, body)
        }
    };
    let aggregates = "/api/v2/analytics/flows/aggregates/query";
    for (body, why) in [
        (json!({"metrics": ["nFlowMilestone"]}), "interval is required"),
        (json!({"interval": INTERVAL}), "metrics is required"),
        (
            json!({"interval": INTERVAL, "metrics": ["nMilestone"]}),
            "nMilestone is not a flow metric",
        ),
        (
            json!({"interval": INTERVAL, "metrics": ["nFlow"], "groupBy": ["milestoneId"]}),
            "milestoneId is not a flow dimension",
        ),
        (
            json!({"interval": INTERVAL, "metrics": ["nFlow"], "alternateTimeDimension": "conversationStart"}),
            "is not eventTime",
        ),
        (
            json!({"interval": INTERVAL, "metrics": ["nFlow"], "group": ["flowId"]}),
            "Unrecognized field \"group\"",
        ),
    ] {
        let (status, answer) = post(aggregates, body).await;
        assert_eq!(status, 400);
        assert!(
            answer["message"].as_str().expect("message").contains(why),
            "{answer}"
        );
        assert_eq!(answer["status"], 400);
    }
    let jobs = "/api/v2/analytics/conversations/details/jobs";
    let (status, _) = post(jobs, json!({"interval": INTERVAL, "orderBy": "flowId"})).await;
    assert_eq!(status, 400);
    let (status, created) = post(jobs, json!({"interval": INTERVAL})).await;
    assert_eq!(status, 202);
    let get = |path: String, token: Option<&str>| {
        let mut request = client.get(format!("{}{path}", genesys.uri()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.expect("an answer").status().as_u16() }
    };
    let job = format!("{jobs}/{}", created["jobId"].as_str().expect("jobId"));
    let results = format!("{job}/results");
    assert_eq!(get(results.clone(), Some(&token)).await, 400, "not FULFILLED yet");
    for _ in ["QUEUED", "PENDING", "FULFILLED"] {
        assert_eq!(get(job.clone(), Some(&token)).await, 200);
    }
    assert_eq!(get(results.clone(), Some(&token)).await, 200);
    assert_eq!(
        get(format!("{results}?cursor=mine"), Some(&token)).await,
        400,
        "a cursor it never gave"
    );
    assert_eq!(get(format!("{results}?pageSize=0"), Some(&token)).await, 400);
    assert_eq!(get(results, None).await, 401);
}

/// The real Lambda binary in its reconcile mode, invoked as the stack's schedule invokes it
/// (`{"time": <scheduled time>}`), against the fake runtime API, Genesys, the emulator and a fake
/// DataDog intake: it reconciles the hour before the scheduled time, sends the coverage, and
/// answers with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_in_its_reconcile_mode_reconciles_the_hour_before_its_scheduled_time() {
    use common::emulator::Running;
    use common::intake::{API_KEY, Intake};
    use common::lambda_runtime::{REQUEST_ID, first_answer, runtime_api_with};
    use flow_metrics::sink::datadog::COVERAGE_METRIC;

    let emulator = Dynalite::start();
    let (genesys, _analytics) = genesys().await;
    replayed(&emulator, "lambda", &events()[1..]);
    // The function times the coverage at its own clock's now.
    let intake = Intake::accepting().await;
    // The stack gives the function 15 minutes.
    let runtime = runtime_api_with(
        &json!({"time": at("11:15:00").to_string()}).to_string(),
        std::time::Duration::from_secs(900),
    )
    .await;
    let mut function = Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_flow-metrics-lambda"))
            .env_clear()
            .envs(environment_for(&emulator.endpoint))
            .envs([
                ("AWS_LAMBDA_RUNTIME_API", runtime.uri()),
                ("AWS_LAMBDA_FUNCTION_NAME", "flow-metrics-reconcile".to_owned()),
                ("AWS_LAMBDA_FUNCTION_VERSION", "1".to_owned()),
                ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
                ("FLOW_METRICS_RUN", "reconcile".to_owned()),
                ("FLOW_METRICS_TABLE", "lambda".to_owned()),
                ("DD_API_KEY", API_KEY.to_owned()),
                ("DD_URL", intake.uri()),
                ("GENESYS_LOGIN_URL", genesys.uri()),
                ("GENESYS_API_URL", genesys.uri()),
                ("GENESYS_CLIENT_ID", CLIENT_ID.to_owned()),
                ("GENESYS_CLIENT_SECRET", CLIENT_SECRET.to_owned()),
                ("RUST_LOG", "warn".to_owned()),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the function"),
    );

    let (posted, exited) = first_answer(&runtime, &mut function).await;
    assert_eq!(exited, None, "the function keeps running");
    let (path, body) = posted.expect("an answer");
    assert_eq!(
        path,
        format!("/2018-06-01/runtime/invocation/{REQUEST_ID}/response"),
        "{body}"
    );
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        answer,
        json!({"interval": INTERVAL, "coverage": {"Billing IVR": 0.0, "Routing": 1.0, "flow-1": 1.0}})
    );
    let flows: Vec<Value> = intake
        .points(COVERAGE_METRIC)
        .into_iter()
        .map(|(tags, ..)| tags)
        .collect();
    assert_eq!(flows.len(), 3, "{flows:?}");
}
