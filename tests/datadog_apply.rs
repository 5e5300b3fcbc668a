//! `flow-metrics datadog apply` against a deployment on moto and a fake DataDog API held to
//! DataDog's published specification: the first apply creates the dashboard, the monitors, the
//! closed-hours downtime and the percentiles; a second changes nothing; a monitor changed in
//! DataDog is put back, not duplicated; a missing or unauthorised application key stops the
//! command with what to do.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use common::datadog_api::{APP_KEY, FakeDataDogApi, NO_WRITE_APP_KEY, READ_ONLY_APP_KEY};
use common::deployment::deploy;
use common::emulator::{Moto, environment_for};
use serde_json::{Value, json};

const STACK: &str = "CentreFlows";

/// The distributions the deployment has sent points of (step 6's test event).
const SENT: [&str; 2] = ["genesys.flow.metric.elapsed", "ivr.flow.outcome.duration"];

const HOURS: &str = r#"{"text":"Mon-Fri 08:00-18:00","timeZone":"Europe/Dublin","windows":[{"days":["MON","TUE","WED","THU","FRI"],"start":480,"end":1080}]}"#;

struct World {
    moto: Moto,
    datadog: FakeDataDogApi,
    _outputs: BTreeMap<String, String>,
}

/// A deployment with static tags, its own outcome metric name, opening hours and a handle.
async fn deployed(hours: &str) -> World {
    deployed_reconciling(hours, false).await
}

/// The same, with `reconcileSchedule` on when `reconciling` (the stack then outputs its
/// reconciliation's log group).
async fn deployed_reconciling(hours: &str, reconciling: bool) -> World {
    let moto = Moto::start();
    let datadog = FakeDataDogApi::start();
    let variables = json!({
        "FLOW_METRICS_TABLE": "CentreFlows-Ledger",
        "DD_URL": datadog.uri(),
        "DD_API_KEY_SECRET_ARN": {"Ref": "ApiKeySecret"},
        "DD_TAGS": "env:prod,team:ivr",
        "FLOW_METRICS_OUTCOME_METRIC": "ivr.flow.outcome",
    });
    let mut outputs = json!({
        "OpeningHours": {"Value": hours},
        "DataDogNotify": {"Value": "@slack-contact-centre"},
    });
    if reconciling {
        outputs["ReconcileLogGroupName"] = json!({"Value": "CentreFlows-ReconcileLogs"});
    }
    let outputs = deploy(&moto, STACK, variables, json!({}), outputs).await;
    World {
        moto,
        datadog,
        _outputs: outputs,
    }
}

impl World {
    /// `flow-metrics datadog apply --stack CentreFlows ARGS…` with `app_key` as DD_APP_KEY.
    async fn apply(&self, app_key: Option<&str>, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flow-metrics"));
        command
            .args(["datadog", "apply", "--stack", STACK])
            .args(args)
            .env_clear()
            .envs(environment_for(&self.moto.endpoint))
            // The operator's shell: its tags are not the deployment's.
            .env("DD_TAGS", "env:laptop");
        if let Some(key) = app_key {
            command.env("DD_APP_KEY", key);
        }
        tokio::task::spawn_blocking(move || command.output().expect("run flow-metrics"))
            .await
            .expect("joined")
    }
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn monitor_named<'a>(monitors: &'a [Value], name: &str) -> &'a Value {
    let tag = json!(format!("flow-metrics-monitor:{name}"));
    monitors
        .iter()
        .find(|monitor| monitor["tags"].as_array().is_some_and(|tags| tags.contains(&tag)))
        .unwrap_or_else(|| panic!("monitor {name} in {monitors:#?}"))
}

#[tokio::test]
async fn a_first_apply_creates_everything_and_a_second_changes_nothing() {
    let world = deployed(HOURS).await;
    world.datadog.receive_points(&SENT);

    let dry = world.apply(Some(APP_KEY), &["--dry-run"]).await;
    let (stdout, stderr) = text(&dry);
    assert!(dry.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("would create"), "{stdout}");
    assert!(
        world.datadog.writes().is_empty(),
        "a dry run writes nothing: {:?}",
        world.datadog.writes()
    );

    let first = world.apply(Some(APP_KEY), &[]).await;
    let (stdout, stderr) = text(&first);
    assert!(first.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("API key: valid"), "{stdout}");
    assert!(stdout.contains("7 change(s) made"), "{stdout}");

    let dashboards = world.datadog.dashboards();
    assert_eq!(dashboards.len(), 1);
    let dashboard = &dashboards[0];
    assert_eq!(
        dashboard["title"],
        "Genesys flow metrics (CentreFlows, eu-west-1)"
    );
    assert!(
        stdout.contains(&format!(
            "dashboard: {}{}",
            world.datadog.uri(),
            dashboard["url"].as_str().expect("url")
        )),
        "{stdout}"
    );
    let env = dashboard["template_variables"]
        .as_array()
        .expect("variables")
        .iter()
        .find(|variable| variable["prefix"] == "env")
        .expect("env");
    assert_eq!(
        env["defaults"],
        json!(["prod"]),
        "the deployment's env, not the shell's"
    );
    let dashboard_text = dashboard.to_string();
    assert!(
        dashboard_text.contains("p95:ivr.flow.outcome.duration{$flow,$env,team:ivr}"),
        "{dashboard_text}"
    );

    let monitors = world.datadog.monitors();
    assert_eq!(monitors.len(), 3);
    let failing = monitor_named(&monitors, "outcome-failures");
    assert!(
        failing["query"]
            .as_str()
            .expect("query")
            .contains("count:ivr.flow.outcome{outcome_value:failure,env:prod,team:ivr}")
    );
    assert!(
        failing["message"]
            .as_str()
            .expect("message")
            .contains("@slack-contact-centre")
    );
    assert!(failing["tags"].as_array().expect("tags").contains(&json!(
        "flow-metrics-deployment:123456789012/eu-west-1/centreflows"
    )));

    // Muted while the centre is closed, in its time zone.
    let downtimes = world.datadog.live_downtimes();
    assert_eq!(downtimes.len(), 1);
    let attributes = &downtimes[0]["attributes"];
    assert_eq!(
        attributes["monitor_identifier"],
        json!({"monitor_tags": ["flow-metrics-deployment:123456789012/eu-west-1/centreflows"]})
    );
    assert_eq!(attributes["schedule"]["timezone"], "Europe/Dublin");
    let rules: Vec<(&str, &str)> = attributes["schedule"]["recurrences"]
        .as_array()
        .expect("recurrences")
        .iter()
        .map(|recurrence| {
            (
                recurrence["rrule"].as_str().expect("rule"),
                recurrence["duration"].as_str().expect("length"),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA,SU", "5h"),
            ("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "4h"),
            ("FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "7h"),
            ("FREQ=WEEKLY;BYDAY=SA,SU", "21h")
        ]
    );

    for (metric, keys) in [
        ("genesys.flow.metric.elapsed", ["env", "flow", "metric", "team"]),
        ("ivr.flow.outcome.duration", ["env", "flow", "outcome", "team"]),
    ] {
        let configured = world
            .datadog
            .tag_configuration(metric)
            .unwrap_or_else(|| panic!("{metric} configured"));
        assert_eq!(configured["include_percentiles"], true);
        let mut tags: Vec<&str> = configured["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        tags.sort_unstable();
        assert_eq!(tags, keys, "{metric}: queryable by the dashboard's tags alone");
    }

    let writes = world.datadog.writes().len();
    let second = world.apply(Some(APP_KEY), &[]).await;
    let (stdout, stderr) = text(&second);
    assert!(second.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("nothing changed"), "{stdout}");
    assert!(
        !stdout.contains("created") && !stdout.contains("updated"),
        "{stdout}"
    );
    assert_eq!(
        world.datadog.writes().len(),
        writes,
        "a second apply writes nothing"
    );
    assert_eq!(world.datadog.dashboards().len(), 1);
    assert_eq!(world.datadog.monitors().len(), 3);
    assert_eq!(world.datadog.live_downtimes().len(), 1);
}

#[tokio::test]
async fn a_monitor_changed_or_deleted_in_datadog_is_put_back_not_duplicated() {
    let world = deployed(HOURS).await;
    world.datadog.receive_points(&SENT);
    assert!(world.apply(Some(APP_KEY), &[]).await.status.success());
    let monitors = world.datadog.monitors();
    let failing_id = monitor_named(&monitors, "outcome-failures")["id"]
        .as_i64()
        .expect("id");
    let anomaly_id = monitor_named(&monitors, "rate-anomaly")["id"]
        .as_i64()
        .expect("id");
    world.datadog.edit_monitor(failing_id, |monitor| {
        let query = monitor["query"].as_str().expect("query").replace("> 50", "> 80");
        monitor["query"] = json!(query);
        monitor["options"]["thresholds"]["critical"] = json!(80.0);
    });
    world.datadog.delete_monitor(anomaly_id);
    // DataDog rate-limits the first requests of the next apply: they are waited out.
    world.datadog.rate_limit_next(2);

    let again = world.apply(Some(APP_KEY), &[]).await;
    let (stdout, stderr) = text(&again);
    assert!(again.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("monitor     outcome-failures: updated (query, options.thresholds.critical)"),
        "{stdout}"
    );
    assert!(stdout.contains("monitor     rate-anomaly: created"), "{stdout}");
    assert!(
        world
            .datadog
            .requests()
            .iter()
            .any(|(_, _, status)| *status == 429)
    );
    let monitors = world.datadog.monitors();
    assert_eq!(monitors.len(), 3, "updated in place, not duplicated");
    let failing = monitor_named(&monitors, "outcome-failures");
    assert_eq!(failing["id"], failing_id);
    assert!(failing["query"].as_str().expect("query").ends_with("> 50"));
}

#[tokio::test]
async fn without_an_application_key_apply_stops_and_says_how_to_get_one() {
    let world = deployed(HOURS).await;
    let output = world.apply(None, &[]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("set DD_APP_KEY"), "{stderr}");
    assert!(
        stderr.contains("organization-settings/application-keys"),
        "{stderr}"
    );
    assert!(
        stderr.contains("monitors_write") && stderr.contains("metric_tags_write"),
        "{stderr}"
    );
    assert!(
        world.datadog.requests().is_empty(),
        "nothing asked of DataDog: {:?}",
        world.datadog.requests()
    );
}

#[tokio::test]
async fn a_wrong_application_key_or_one_without_the_permission_stops_apply() {
    let world = deployed(HOURS).await;

    let wrong = world
        .apply(Some("ffffffffffffffffffffffffffffffffffffffff"), &[])
        .await;
    let (stdout, stderr) = text(&wrong);
    assert_eq!(wrong.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("DataDog refuses the application key"), "{stderr}");
    assert!(stderr.contains("Check DD_APP_KEY"), "{stderr}");
    assert!(world.datadog.writes().is_empty());

    let read_only = world.apply(Some(READ_ONLY_APP_KEY), &[]).await;
    let (stdout, stderr) = text(&read_only);
    assert_eq!(read_only.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("lacks the permission monitors_downtime"),
        "{stderr}"
    );
    assert!(stderr.contains("safe to run twice"), "{stderr}");
    assert!(world.datadog.monitors().is_empty());

    // Validating a monitor is a read (DataDog's spec: monitors_read): the key gets as far as
    // the first write, and stops there.
    let no_write = world.apply(Some(NO_WRITE_APP_KEY), &[]).await;
    let (stdout, stderr) = text(&no_write);
    assert_eq!(no_write.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("refused to create or change monitors")
            && stderr.contains("lacks the permission monitors_write"),
        "{stderr}"
    );
    assert!(world.datadog.monitors().is_empty());
}

#[tokio::test]
async fn a_centre_that_never_closes_has_no_downtime_and_changed_hours_replace_it() {
    let world = deployed(HOURS).await;
    world.datadog.receive_points(&SENT);
    assert!(world.apply(Some(APP_KEY), &[]).await.status.success());
    assert_eq!(world.datadog.live_downtimes().len(), 1);

    // The stack is deployed again, open around the clock.
    let cloudformation =
        aws_sdk_cloudformation::Client::new(&common::deployment::emulator_config(&world.moto.endpoint));
    let template = cloudformation
        .get_template()
        .stack_name(STACK)
        .send()
        .await
        .expect("the template")
        .template_body()
        .expect("a body")
        .to_owned();
    let mut template: Value = serde_json::from_str(&template).expect("JSON");
    template["Outputs"]["OpeningHours"]["Value"] =
        json!(r#"{"text":"always","timeZone":"Europe/Dublin","windows":null}"#);
    cloudformation
        .update_stack()
        .stack_name(STACK)
        .template_body(template.to_string())
        .send()
        .await
        .expect("updated");

    let output = world.apply(Some(APP_KEY), &[]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("(hours since changed): removed"), "{stdout}");
    assert!(world.datadog.live_downtimes().is_empty());
}

#[tokio::test]
async fn percentiles_wait_for_the_first_point_and_are_turned_on_by_the_next_apply() {
    let world = deployed(HOURS).await;
    world.datadog.receive_points(&["genesys.flow.metric.elapsed"]);
    let output = world.apply(Some(APP_KEY), &[]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ivr.flow.outcome.duration (queryable by env, flow, outcome, team): not yet: DataDog has no point of it yet"),
        "{stdout}"
    );
    assert!(stdout.contains("6 change(s) made"), "{stdout}");
    assert!(stderr.contains("apply again once"), "{stderr}");
    assert!(
        world
            .datadog
            .tag_configuration("ivr.flow.outcome.duration")
            .is_none()
    );

    world.datadog.receive_points(&["ivr.flow.outcome.duration"]);
    let output = world.apply(Some(APP_KEY), &[]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 change(s) made"), "{stdout}");
    assert_eq!(
        world
            .datadog
            .tag_configuration("ivr.flow.outcome.duration")
            .expect("configured")["include_percentiles"],
        true
    );
}

#[tokio::test]
async fn what_is_not_ours_is_left_alone() {
    let world = deployed(HOURS).await;
    world.datadog.receive_points(&SENT);
    assert!(world.apply(Some(APP_KEY), &[]).await.status.success());
    let monitors = world.datadog.monitors();
    let deployment_tag = "flow-metrics-deployment:123456789012/eu-west-1/centreflows";
    // An admin's own monitor, tagged with the deployment to share its downtime, and a copy of
    // ours, renamed.
    let mut own = monitor_named(&monitors, "invalid-keys").clone();
    own["name"] = json!("Queue wait too long");
    own["tags"] = json!([deployment_tag]);
    let mut copy = monitor_named(&monitors, "outcome-failures").clone();
    copy["name"] = json!("[Copy] outcome failures, for the night team");
    for monitor in [&mut own, &mut copy] {
        let fields = monitor.as_object_mut().expect("a monitor");
        fields.retain(|key, _| {
            ["name", "type", "query", "message", "tags", "options", "priority"].contains(&key.as_str())
        });
    }
    let client = reqwest::Client::new();
    for monitor in [&own, &copy] {
        let created = client
            .post(format!("{}/api/v1/monitor", world.datadog.uri()))
            .header("DD-API-KEY", common::datadog_api::API_KEY)
            .header("DD-APPLICATION-KEY", APP_KEY)
            .body(monitor.to_string())
            .send()
            .await
            .expect("created");
        assert_eq!(created.status(), 200);
    }
    let output = world.apply(Some(APP_KEY), &[]).await;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("left as it is: it differs from ours"), "{stdout}");
    assert_eq!(world.datadog.monitors().len(), 5, "nothing removed: {stdout}");
    assert!(stdout.contains("nothing changed"), "{stdout}");
}

#[tokio::test]
async fn a_monitor_datadog_would_refuse_stops_apply_before_anything_is_written() {
    let world = deployed(HOURS).await;
    world.datadog.receive_points(&SENT);
    world
        .datadog
        .refuse_queries_with("anomalies(", "anomaly detection is not available for this metric");
    let output = world.apply(Some(APP_KEY), &[]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("DataDog finds monitor rate-anomaly of datadog/monitors.json invalid"),
        "{stderr}"
    );
    assert!(stderr.contains("anomaly detection is not available"), "{stderr}");
    assert!(world.datadog.writes().is_empty(), "{:?}", world.datadog.writes());
}

#[tokio::test]
async fn a_stack_that_reconciles_gets_the_coverage_monitor_scoped_to_its_tags() {
    let world = deployed_reconciling(HOURS, true).await;
    let applied = world.apply(Some(APP_KEY), &[]).await;
    let (stdout, stderr) = text(&applied);
    assert!(applied.status.success(), "{stdout}\n{stderr}");
    let monitors = world.datadog.monitors();
    assert_eq!(monitors.len(), 5);
    let coverage = monitor_named(&monitors, "coverage");
    assert_eq!(
        coverage["query"],
        "avg(last_2h):avg:genesys.flow_metrics.coverage{env:prod,team:ivr} by {flow} < 0.98"
    );
    let unexplained = monitor_named(&monitors, "reconcile-unexplained");
    assert_eq!(
        unexplained["query"],
        "max(last_2h):max:genesys.flow_metrics.reconcile.unexplained{env:prod,team:ivr} by {flow,side} > 0"
    );
}
