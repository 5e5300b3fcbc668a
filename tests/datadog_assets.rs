//! The importable DataDog dashboard and monitors: well-formed, and querying only metrics and
//! tags this tool sends.

use std::collections::BTreeSet;

use flow_metrics::datadog_setup::render::strings_at;
use flow_metrics::sink::datadog::{
    COVERAGE_METRIC, MetricNames, SELF_METRIC_PREFIX, SELF_METRICS, UNEXPLAINED_METRIC,
};
use serde_json::Value;

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path} is not JSON: {error}"))
}

/// Checks that a query names only metrics and outcomes that exist.
fn check_query(query: &str) {
    let known_metrics: BTreeSet<String> = SELF_METRICS
        .iter()
        .map(|(name, _)| format!("{SELF_METRIC_PREFIX}.{name}"))
        .chain(MetricNames::default().all())
        .chain([COVERAGE_METRIC.to_owned(), UNEXPLAINED_METRIC.to_owned()])
        .collect();
    let known_outcomes: BTreeSet<&str> = SELF_METRICS.iter().map(|(_, outcome)| *outcome).collect();
    let words = query.split(|c: char| !(c.is_alphanumeric() || c == '.' || c == '_' || c == ':'));
    let mut metrics = 0;
    for word in words {
        let word = word.trim_start_matches(':');
        let metric = word.rsplit(':').next().unwrap_or(word);
        if metric.starts_with("genesys.") {
            assert!(known_metrics.contains(metric), "{query}: unknown metric {metric}");
            metrics += 1;
        }
        if let Some(outcome) = word.strip_prefix("outcome:") {
            assert!(
                known_outcomes.contains(outcome),
                "{query}: unknown outcome {outcome}"
            );
        }
    }
    assert!(metrics > 0, "{query} queries none of our metrics");
}

#[test]
fn the_dashboard_is_importable_and_queries_our_metrics() {
    let dashboard = load("datadog/dashboard.json");
    assert!(dashboard["title"].is_string());
    assert_eq!(dashboard["layout_type"], "ordered");
    let widgets = dashboard["widgets"].as_array().expect("widgets");
    assert!(widgets.len() >= 4);
    let mut queries = Vec::new();
    strings_at(&dashboard, "query", &mut queries);
    assert!(queries.len() >= widgets.len());
    queries.iter().for_each(|query| check_query(query));
    assert!(
        queries
            .iter()
            .any(|query| query.contains("count:genesys.flow.metric") && query.contains("by {flow,metric}"))
    );
    assert!(
        queries
            .iter()
            .any(|query| query.starts_with("p95:genesys.flow.metric.elapsed")),
        "time-to-step percentiles"
    );
    assert!(
        queries
            .iter()
            .any(|query| query.starts_with("count:genesys.flow.milestone")
                && query.contains("by {flow,milestone}")),
        "the milestone funnel"
    );
    let mut formulas = Vec::new();
    strings_at(&dashboard, "formula", &mut formulas);
    assert!(
        queries
            .iter()
            .any(|query| query.contains("genesys.flow.outcome{outcome_value:success"))
            && formulas.iter().any(|formula| formula == "100 * success / all"),
        "the outcome success rate"
    );
    assert!(
        queries
            .iter()
            .any(|query| query.starts_with("p95:genesys.flow.outcome.duration")),
        "outcome duration percentiles"
    );
}

#[test]
fn the_monitors_are_importable_and_query_our_metrics() {
    let monitors = load("datadog/monitors.json");
    let monitors = monitors.as_array().expect("a list of monitors");
    let mut names = BTreeSet::new();
    for monitor in monitors {
        assert_eq!(monitor["type"], "query alert");
        assert!(monitor["name"].is_string() && monitor["message"].is_string());
        check_query(monitor["query"].as_str().expect("query"));
        // `datadog apply` finds each again by this tag.
        let name = monitor["tags"]
            .as_array()
            .expect("tags")
            .iter()
            .filter_map(Value::as_str)
            .find_map(|tag| tag.strip_prefix("flow-metrics-monitor:"))
            .unwrap_or_else(|| panic!("{} has no flow-metrics-monitor: tag", monitor["name"]));
        assert!(names.insert(name.to_owned()), "two monitors named {name}");
    }
    let queries: Vec<&str> = monitors.iter().filter_map(|m| m["query"].as_str()).collect();
    assert!(queries.iter().any(|q| q.contains("anomalies(")));
    // The scheduled reconciliation's coverage, per flow: keys Genesys counted and we did not.
    assert!(
        queries
            .iter()
            .any(|q| q.contains(&format!("avg:{COVERAGE_METRIC}{{*}} by {{flow}} <"))),
        "a monitor on each flow's coverage"
    );
    // And its unexplained keys, per side: a loss and a double cancel out in the coverage.
    assert!(
        queries
            .iter()
            .any(|q| q.contains(&format!("max:{UNEXPLAINED_METRIC}{{*}} by {{flow,side}} > 0"))),
        "a monitor on each flow's unexplained keys"
    );
    // Push failures are alarmed in CloudWatch: with a bad key, the self-metrics that would
    // report them to DataDog are refused with everything else.
    assert!(!queries.iter().any(|q| q.contains("push_failures")));
    // Silence is judged in CloudWatch, which knows the centre's opening hours: a monitor on no
    // data would fire every night and weekend.
    assert!(
        monitors
            .iter()
            .all(|m| m["options"]["notify_no_data"] != true
                && !m["query"].as_str().unwrap_or("").contains("< 1")),
        "no monitor alarms on a quiet night"
    );
}

#[test]
fn every_filter_is_a_list_of_terms_so_apply_can_scope_it() {
    // `datadog apply` adds the deployment's static tags to each filter as one more term: a
    // boolean filter (OR, AND, parentheses) would change meaning.
    let mut queries = Vec::new();
    strings_at(&load("datadog/dashboard.json"), "query", &mut queries);
    strings_at(&load("datadog/monitors.json"), "query", &mut queries);
    for query in &queries {
        for filter in query
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(filter, _)| filter))
        {
            assert!(
                !filter.contains(" OR ") && !filter.contains(" AND ") && !filter.contains('('),
                "{query}: filter {filter:?} is not a list of terms"
            );
        }
    }
}
