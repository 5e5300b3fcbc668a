//! The dashboard, monitors, closed-hours downtime and percentile settings one deployment needs,
//! rendered from the importable files in `datadog/` (written for the default metric names and
//! no static tags): each query renamed to the deployment's metric names and scoped to its static
//! tags (`DD_TAGS`), the dashboard's template variables defaulting to them, every monitor tagged
//! with its stack and its own name, and its message ending with whom it notifies.

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use serde_json::{Value, json};

use super::hours::{MAX_RECURRENCES, OpeningHours};
use crate::sink::datadog::tags;
use crate::sink::datadog::{
    COVERAGE_METRIC, MetricNames, SELF_METRIC_PREFIX, SELF_METRICS, UNEXPLAINED_METRIC,
};

/// The importable dashboard, and the monitors: also the fallback for importing by hand.
pub const DASHBOARD_TEMPLATE: &str = include_str!("../../datadog/dashboard.json");
pub const MONITORS_TEMPLATE: &str = include_str!("../../datadog/monitors.json");

/// The tag key naming each monitor in `datadog/monitors.json`: how it is found again.
pub const MONITOR_TAG: &str = "flow-metrics-monitor";
/// The tag key naming the deployment (account, region, stack) of everything applied: what
/// `apply` manages, and no more. Two deployments of one stack name (staging and production
/// accounts) sharing a DataDog organisation stay apart.
pub const DEPLOYMENT_TAG: &str = "flow-metrics-deployment";

/// What the assets are rendered for: a deployment's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetSettings {
    pub stack: String,
    pub region: String,
    pub account: String,
    pub metrics: MetricNames,
    /// `DD_TAGS`: every series carries them, so every query is scoped to them.
    pub static_tags: Vec<String>,
    /// `FLOW_METRICS_SELF_METRICS`: without them, the monitors on them would judge nothing.
    pub self_metrics: bool,
    /// The stack's `reconcileSchedule`: without it no coverage is sent, and the monitor on it
    /// would judge nothing.
    pub reconcile: bool,
    /// Notification handles (`@slack-…`), from the stack's `datadogNotify`.
    pub notify: Vec<String>,
    pub hours: OpeningHours,
}

/// Everything `apply` puts in DataDog for one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Assets {
    pub dashboard: Value,
    pub monitors: Vec<MonitorAsset>,
    /// The downtimes muting the monitors while the centre is closed (one, unless the week needs
    /// more than [`MAX_RECURRENCES`] recurrences); none when it never closes.
    pub downtimes: Vec<Value>,
    pub percentiles: Vec<Percentiles>,
}

/// A monitor and the name (`flow-metrics-monitor:<name>`) it is found by.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorAsset {
    pub name: String,
    pub body: Value,
}

/// A distribution whose percentiles the dashboard or monitors query, and the tags they query it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Percentiles {
    pub metric: String,
    pub tags: BTreeSet<String>,
}

/// Why the embedded files cannot be rendered (a build with broken files; tests keep them whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("datadog/{file} is not valid: {reason}")]
    Template { file: &'static str, reason: String },
}

impl AssetSettings {
    /// The tag every applied monitor carries: `flow-metrics-deployment:<account>/<region>/<stack>`.
    pub fn deployment_tag(&self) -> String {
        tags::tag(
            DEPLOYMENT_TAG,
            &format!("{}/{}/{}", self.account, self.region, self.stack),
        )
    }

    /// How titles name the deployment.
    fn suffix(&self) -> String {
        format!("({}, {})", self.stack, self.region)
    }

    /// The words that mark what `apply` manages, in descriptions and messages.
    pub fn managed_note(&self) -> String {
        format!(
            "Managed by `flow-metrics datadog apply` for stack {} in {} ({}): a change made here to \
             what the repository sets is undone by the next apply; change datadog/ in the \
             repository instead.",
            self.stack,
            self.region,
            self.deployment_tag()
        )
    }

    /// Renders every asset; `today` dates the downtime's first recurrences.
    pub fn render(&self, today: Date) -> Result<Assets, RenderError> {
        let dashboard = self.dashboard()?;
        let monitors = self.monitors()?;
        let mut queries = Vec::new();
        strings_at(&dashboard, "query", &mut queries);
        queries.extend(
            monitors
                .iter()
                .filter_map(|monitor| monitor.body["query"].as_str().map(str::to_owned)),
        );
        Ok(Assets {
            percentiles: percentiles_queried(&queries, &self.metrics),
            downtimes: self.downtimes(today),
            dashboard,
            monitors,
        })
    }

    fn dashboard(&self) -> Result<Value, RenderError> {
        let invalid = |reason: String| RenderError::Template {
            file: "dashboard.json",
            reason,
        };
        let mut dashboard: Value =
            serde_json::from_str(DASHBOARD_TEMPLATE).map_err(|error| invalid(error.to_string()))?;
        let variables: BTreeSet<String> = dashboard["template_variables"]
            .as_array()
            .ok_or_else(|| invalid("no template_variables".to_owned()))?
            .iter()
            .filter_map(|variable| variable["prefix"].as_str().map(str::to_owned))
            .collect();
        // A static tag whose key a template variable filters becomes its default; the others
        // scope every query.
        let (defaults, scope): (Vec<&String>, Vec<&String>) = self.static_tags.iter().partition(|tag| {
            tag.split_once(':')
                .is_some_and(|(key, _)| variables.contains(key))
        });
        for variable in dashboard["template_variables"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            let prefix = variable["prefix"].as_str().unwrap_or_default().to_owned();
            let values: Vec<&str> = defaults
                .iter()
                .filter_map(|tag| tag.strip_prefix(&format!("{prefix}:")))
                .collect();
            if !values.is_empty() {
                variable["defaults"] = json!(values);
            }
        }
        let scope: Vec<String> = scope.into_iter().cloned().collect();
        rewrite_queries(&mut dashboard, &|query| {
            scoped_query(query, &self.metrics, &scope)
        });
        let title = dashboard["title"]
            .as_str()
            .unwrap_or("Genesys flow metrics")
            .to_owned();
        dashboard["title"] = json!(format!("{title} {}", self.suffix()));
        let description = dashboard["description"].as_str().unwrap_or_default().to_owned();
        dashboard["description"] = json!(format!("{description}\n\n{}", self.managed_note()));
        Ok(dashboard)
    }

    fn monitors(&self) -> Result<Vec<MonitorAsset>, RenderError> {
        let invalid = |reason: String| RenderError::Template {
            file: "monitors.json",
            reason,
        };
        let templates: Vec<Value> =
            serde_json::from_str(MONITORS_TEMPLATE).map_err(|error| invalid(error.to_string()))?;
        let self_metrics: BTreeSet<String> = SELF_METRICS
            .iter()
            .map(|(name, _)| format!("{SELF_METRIC_PREFIX}.{name}"))
            .collect();
        let mut monitors = Vec::new();
        for mut monitor in templates {
            let query = monitor["query"].as_str().unwrap_or_default().to_owned();
            let queried = metrics_in(&query);
            if !self.self_metrics && queried.iter().any(|metric| self_metrics.contains(metric)) {
                continue;
            }
            if !self.reconcile
                && queried
                    .iter()
                    .any(|metric| metric == COVERAGE_METRIC || metric == UNEXPLAINED_METRIC)
            {
                continue;
            }
            let name = monitor_name(&monitor)
                .ok_or_else(|| invalid(format!("monitor {:?} has no {MONITOR_TAG}: tag", monitor["name"])))?
                .to_owned();
            monitor["query"] = json!(scoped_query(&query, &self.metrics, &self.static_tags));
            let title = monitor["name"].as_str().unwrap_or_default().to_owned();
            monitor["name"] = json!(format!("{title} {}", self.suffix()));
            let mut message = monitor["message"].as_str().unwrap_or_default().to_owned();
            if !self.notify.is_empty() {
                message = format!("{message}\n\nNotify: {}", self.notify.join(" "));
            }
            monitor["message"] = json!(format!("{message}\n\n{}", self.managed_note()));
            let tags = monitor["tags"]
                .as_array_mut()
                .ok_or_else(|| invalid("tags is not a list".to_owned()))?;
            tags.push(json!(self.deployment_tag()));
            tags.extend(self.static_tags.iter().map(|tag| json!(tag)));
            monitors.push(MonitorAsset { name, body: monitor });
        }
        Ok(monitors)
    }

    /// The recurring downtimes of the centre's closed periods, on every monitor of the stack, in
    /// the centre's time zone (DataDog follows its daylight saving). A monitor still alerting
    /// when the centre opens notifies then.
    fn downtimes(&self, today: Date) -> Vec<Value> {
        let recurrences: Vec<Value> = self
            .hours
            .recurrences()
            .iter()
            .map(|recurrence| {
                json!({
                    "rrule": recurrence.rrule(),
                    "start": recurrence.first_start(today),
                    "duration": recurrence.duration(),
                })
            })
            .collect();
        recurrences
            .chunks(MAX_RECURRENCES)
            .map(|recurrences| {
                json!({
                    "message": format!(
                        "The contact centre is closed ({}, {}): its flow metrics monitors are muted.\n\n{}",
                        self.hours.text,
                        self.hours.time_zone,
                        self.managed_note()
                    ),
                    "monitor_identifier": {"monitor_tags": [self.deployment_tag()]},
                    "scope": "*",
                    "display_timezone": self.hours.time_zone,
                    "mute_first_recovery_notification": true,
                    "notify_end_states": ["alert", "warn", "no data"],
                    "notify_end_types": ["expired"],
                    "schedule": {
                        "recurrences": recurrences,
                        "timezone": self.hours.time_zone,
                    }
                })
            })
            .collect()
    }
}

/// A monitor's name among the deployment's: its `flow-metrics-monitor:` tag.
pub fn monitor_name(monitor: &Value) -> Option<&str> {
    monitor["tags"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|tag| tag.strip_prefix(MONITOR_TAG)?.strip_prefix(':'))
}

/// Every string under `key` anywhere in `value`.
pub fn strings_at(value: &Value, key: &str, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (name, inner) in map {
                match inner {
                    Value::String(text) if name == key => found.push(text.clone()),
                    _ => strings_at(inner, key, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| strings_at(item, key, found)),
        _ => {}
    }
}

/// Rewrites every `query` string in `value`.
fn rewrite_queries(value: &mut Value, rewrite: &dyn Fn(&str) -> String) {
    match value {
        Value::Object(map) => {
            for (name, inner) in map.iter_mut() {
                match inner {
                    Value::String(text) if name == "query" => *text = rewrite(text),
                    _ => rewrite_queries(inner, rewrite),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite_queries(item, rewrite)),
        _ => {}
    }
}

/// A metric in a query: where its name starts, where its `{` is, and its `}`.
struct MetricAt {
    name: (usize, usize),
    filter: (usize, usize),
}

/// Each `<metric>{<filter>}` of a query: a `{` right after a dotted name (a `by {…}` follows a space).
fn metrics_at(query: &str) -> Vec<MetricAt> {
    let bytes = query.as_bytes();
    let mut found = Vec::new();
    for (open, _) in query.match_indices('{') {
        let start = query[..open]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .map_or(0, |at| at + 1);
        let name = &query[start..open];
        if !name.contains('.') || !bytes[start].is_ascii_alphabetic() {
            continue;
        }
        if let Some(close) = query[open..].find('}') {
            found.push(MetricAt {
                name: (start, open),
                filter: (open + 1, open + close),
            });
        }
    }
    found
}

/// The metrics a query names.
pub fn metrics_in(query: &str) -> Vec<String> {
    metrics_at(query)
        .iter()
        .map(|at| query[at.name.0..at.name.1].to_owned())
        .collect()
}

/// `query` with the default metric names replaced by `metrics`', and `scope` added to each
/// metric's filter (`{*}` becomes the scope alone).
pub fn scoped_query(query: &str, metrics: &MetricNames, scope: &[String]) -> String {
    let renamed: BTreeMap<String, String> = MetricNames::default()
        .all()
        .into_iter()
        .zip(metrics.all())
        .collect();
    let mut out = String::with_capacity(query.len());
    let mut at = 0;
    for metric in metrics_at(query) {
        let name = &query[metric.name.0..metric.name.1];
        out.push_str(&query[at..metric.name.0]);
        out.push_str(renamed.get(name).map_or(name, String::as_str));
        out.push('{');
        let filter = query[metric.filter.0..metric.filter.1].trim();
        let mut terms: Vec<&str> = filter
            .split(',')
            .map(str::trim)
            .filter(|term| *term != "*" && !term.is_empty())
            .collect();
        terms.extend(scope.iter().map(String::as_str));
        out.push_str(&if terms.is_empty() {
            "*".to_owned()
        } else {
            terms.join(",")
        });
        out.push('}');
        at = metric.filter.1 + 1;
    }
    out.push_str(&query[at..]);
    out
}

/// The distributions queried for percentiles (`p50:`, `p95:`, …), each with every tag key any
/// query filters or groups it by (a template variable `$flow` filters by `flow`): a tag
/// configuration makes only those queryable, for every aggregation.
fn percentiles_queried(queries: &[String], metrics: &MetricNames) -> Vec<Percentiles> {
    let sent: BTreeSet<String> = metrics
        .all()
        .into_iter()
        .filter(|name| metrics.elapsed || *name != format!("{}.elapsed", metrics.attribute))
        .collect();
    let mut percentiles = BTreeSet::new();
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for query in queries {
        for metric in metrics_at(query) {
            let name = query[metric.name.0..metric.name.1].to_owned();
            let aggregator = query[..metric.name.0]
                .rsplit(|c: char| !(c.is_ascii_alphanumeric()))
                .nth(1)
                .unwrap_or_default();
            if aggregator.len() > 1
                && aggregator.starts_with('p')
                && aggregator[1..].chars().all(|c| c.is_ascii_digit())
            {
                percentiles.insert(name.clone());
            }
            let keys = tags.entry(name).or_default();
            for term in query[metric.filter.0..metric.filter.1].split(',') {
                let term = term.trim().trim_start_matches(['!', '$']);
                let key = term.split(':').next().unwrap_or_default();
                if !key.is_empty() && key != "*" {
                    keys.insert(key.to_owned());
                }
            }
            if let Some((group, _)) = query[metric.filter.1..]
                .split_once("by {")
                .and_then(|(_, group)| group.split_once('}'))
            {
                keys.extend(
                    group
                        .split(',')
                        .map(|key| key.trim().to_owned())
                        .filter(|key| !key.is_empty()),
                );
            }
        }
    }
    percentiles
        .into_iter()
        .filter(|metric| sent.contains(metric))
        .map(|metric| Percentiles {
            tags: tags.remove(&metric).unwrap_or_default(),
            metric,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AssetSettings {
        AssetSettings {
            stack: "CentreFlows".to_owned(),
            region: "eu-west-1".to_owned(),
            account: "123456789012".to_owned(),
            metrics: MetricNames::default(),
            static_tags: vec!["env:prod".to_owned(), "team:contact_centre".to_owned()],
            self_metrics: true,
            reconcile: false,
            notify: vec!["@slack-cc-ops".to_owned()],
            hours: OpeningHours::from_output(
                r#"{"text":"Mon-Fri 08:00-18:00","timeZone":"Europe/Dublin","windows":[{"days":["MON","TUE","WED","THU","FRI"],"start":480,"end":1080}]}"#,
            )
            .expect("hours"),
        }
    }

    #[test]
    fn queries_take_the_deployments_names_and_static_tags() {
        let metrics = MetricNames {
            attribute: "cc.step".to_owned(),
            outcome: "cc.outcome".to_owned(),
            ..MetricNames::default()
        };
        let scope = ["team:cc".to_owned()];
        assert_eq!(
            scoped_query(
                "p95:genesys.flow.metric.elapsed{$flow,$env} by {flow,metric}",
                &metrics,
                &scope
            ),
            "p95:cc.step.elapsed{$flow,$env,team:cc} by {flow,metric}"
        );
        assert_eq!(
            scoped_query(
                "sum(last_30m):100 * count:genesys.flow.outcome{outcome_value:failure} by {flow}.as_count() / count:genesys.flow.outcome{*} by {flow}.as_count() > 50",
                &metrics,
                &scope
            ),
            "sum(last_30m):100 * count:cc.outcome{outcome_value:failure,team:cc} by {flow}.as_count() / count:cc.outcome{team:cc} by {flow}.as_count() > 50"
        );
        assert_eq!(
            scoped_query("count:genesys.flow.milestone{*} by {flow}", &metrics, &[]),
            "count:genesys.flow.milestone{*} by {flow}"
        );
    }

    #[test]
    fn the_dashboard_defaults_its_template_variables_to_the_static_tags() {
        let assets = settings()
            .render(jiff::civil::date(2026, 12, 1))
            .expect("rendered");
        let env = assets.dashboard["template_variables"]
            .as_array()
            .expect("variables")
            .iter()
            .find(|variable| variable["prefix"] == "env")
            .expect("env");
        assert_eq!(env["defaults"], json!(["prod"]));
        let mut queries = Vec::new();
        strings_at(&assets.dashboard, "query", &mut queries);
        // `team` has no template variable: it scopes every query; `env` goes through `$env`.
        assert!(
            queries
                .iter()
                .all(|query| query.contains("team:contact_centre") && !query.contains("env:prod"))
        );
        assert_eq!(
            assets.dashboard["title"],
            "Genesys flow metrics (CentreFlows, eu-west-1)"
        );
        assert!(
            assets.dashboard["description"]
                .as_str()
                .expect("text")
                .contains("flow-metrics-deployment:123456789012/eu-west-1/centreflows")
        );
    }

    #[test]
    fn monitors_carry_the_stack_their_name_and_whom_they_notify() {
        let assets = settings()
            .render(jiff::civil::date(2026, 12, 1))
            .expect("rendered");
        let names: Vec<&str> = assets
            .monitors
            .iter()
            .map(|monitor| monitor.name.as_str())
            .collect();
        assert_eq!(names, ["rate-anomaly", "outcome-failures", "invalid-keys"]);
        for monitor in &assets.monitors {
            let tags = monitor.body["tags"].as_array().expect("tags");
            assert!(
                tags.contains(&json!(
                    "flow-metrics-deployment:123456789012/eu-west-1/centreflows"
                )),
                "{tags:?}"
            );
            assert!(tags.contains(&json!(format!("flow-metrics-monitor:{}", monitor.name))));
            assert!(tags.contains(&json!("env:prod")));
            let message = monitor.body["message"].as_str().expect("message");
            assert!(message.contains("Notify: @slack-cc-ops"), "{message}");
            assert!(
                monitor.body["query"]
                    .as_str()
                    .expect("query")
                    .contains("env:prod")
            );
        }
    }

    #[test]
    fn the_coverage_monitor_only_where_the_stack_reconciles() {
        let names = |settings: AssetSettings| -> Vec<String> {
            let assets = settings.render(jiff::civil::date(2026, 12, 1)).expect("rendered");
            assets.monitors.into_iter().map(|monitor| monitor.name).collect()
        };
        assert!(!names(settings()).contains(&"coverage".to_owned()));
        assert!(!names(settings()).contains(&"reconcile-unexplained".to_owned()));
        let reconciling = AssetSettings {
            reconcile: true,
            ..settings()
        };
        assert_eq!(
            names(reconciling),
            [
                "rate-anomaly",
                "outcome-failures",
                "invalid-keys",
                "coverage",
                "reconcile-unexplained"
            ]
        );
    }

    #[test]
    fn without_self_metrics_no_monitor_watches_them() {
        let quiet = AssetSettings {
            self_metrics: false,
            ..settings()
        };
        let assets = quiet.render(jiff::civil::date(2026, 12, 1)).expect("rendered");
        assert!(
            assets
                .monitors
                .iter()
                .all(|monitor| monitor.name != "invalid-keys")
        );
    }

    #[test]
    fn percentiles_are_asked_for_the_two_distributions_by_the_tags_the_dashboard_queries() {
        let assets = settings()
            .render(jiff::civil::date(2026, 12, 1))
            .expect("rendered");
        let asked: Vec<(String, Vec<String>)> = assets
            .percentiles
            .iter()
            .map(|p| (p.metric.clone(), p.tags.iter().cloned().collect()))
            .collect();
        let keys = |list: &[&str]| list.iter().map(|key| (*key).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            asked,
            [
                (
                    "genesys.flow.metric.elapsed".to_owned(),
                    keys(&["env", "flow", "metric", "team"])
                ),
                (
                    "genesys.flow.outcome.duration".to_owned(),
                    keys(&["env", "flow", "outcome", "team"])
                ),
            ]
        );
        let no_elapsed = AssetSettings {
            metrics: MetricNames {
                elapsed: false,
                ..MetricNames::default()
            },
            ..settings()
        };
        let assets = no_elapsed
            .render(jiff::civil::date(2026, 12, 1))
            .expect("rendered");
        assert_eq!(
            assets.percentiles.len(),
            1,
            "elapsed is not sent, so not configured"
        );
    }

    #[test]
    fn the_downtime_mutes_the_stacks_monitors_while_closed() {
        let assets = settings()
            .render(jiff::civil::date(2026, 12, 1))
            .expect("rendered");
        let [downtime] = assets.downtimes.as_slice() else {
            panic!("one downtime: {:?}", assets.downtimes)
        };
        assert_eq!(
            downtime["monitor_identifier"]["monitor_tags"],
            json!(["flow-metrics-deployment:123456789012/eu-west-1/centreflows"])
        );
        assert_eq!(downtime["schedule"]["timezone"], "Europe/Dublin");
        assert_eq!(
            downtime["schedule"]["recurrences"],
            json!([
                {"rrule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR,SA,SU", "start": "2026-11-30T00:00", "duration": "5h"},
                {"rrule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "start": "2026-11-30T04:00", "duration": "4h"},
                {"rrule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "start": "2026-11-30T18:00", "duration": "7h"},
                {"rrule": "FREQ=WEEKLY;BYDAY=SA,SU", "start": "2026-11-29T04:00", "duration": "21h"},
            ])
        );
        let always = AssetSettings {
            hours: OpeningHours::from_output(r#"{"text":"always","timeZone":"UTC","windows":null}"#)
                .expect("hours"),
            ..settings()
        };
        assert!(
            always
                .render(jiff::civil::date(2026, 12, 1))
                .expect("rendered")
                .downtimes
                .is_empty()
        );
    }

    #[test]
    fn a_week_of_many_closed_periods_takes_several_downtimes_of_five_recurrences() {
        // Seven different closing times: nine recurrences, in two downtimes.
        let windows: Vec<Value> = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]
            .iter()
            .enumerate()
            .map(|(index, day)| json!({"days": [day], "start": 480, "end": 1000 + 5 * index}))
            .collect();
        let busy = AssetSettings {
            hours: OpeningHours::from_output(
                &json!({"text": "t", "timeZone": "UTC", "windows": windows}).to_string(),
            )
            .expect("hours"),
            ..settings()
        };
        let assets = busy.render(jiff::civil::date(2026, 12, 1)).expect("rendered");
        let sizes: Vec<usize> = assets
            .downtimes
            .iter()
            .map(|downtime| downtime["schedule"]["recurrences"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, [5, 4]);
    }
}
