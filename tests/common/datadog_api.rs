//! A fake of DataDog's management API on 127.0.0.1, held to DataDog's published specification
//! (its OpenAPI documents v1 and v2, and the answers its API clients recorded) for the endpoints
//! `flow-metrics datadog apply` uses, not to our client's habits:
//!
//! - Every request needs `DD-API-KEY`; every one but `GET /api/v1/validate` also
//!   `DD-APPLICATION-KEY`, whose user (or scopes) must hold the endpoint's permission
//!   (`monitors_read`, `dashboards_write`, `monitors_downtime`, `metric_tags_write`, …): else
//!   403 `{"errors": ["Forbidden"]}`.
//! - Monitors (`/api/v1/monitor`): the list is a bare array filtered by `monitor_tags` (all of
//!   them) and paged by `page`/`page_size` (at most 1000); a create needs `type` and `query`, a
//!   query alert's critical threshold must be the query's and a warning below it; DataDog fills
//!   its option defaults, echoes thresholds as floats, and a `PUT` keeps omitted top-level fields
//!   but replaces `options` whole.
//! - Dashboards (`/api/v1/dashboard`): `title`, `layout_type` and `widgets` are required; `tags`
//!   may only be `team:`; a template variable takes `default` or `defaults`, not both;
//!   `display_type` is for timeseries requests only, and a query value takes one request. Each
//!   widget gets an `id`; the list gives summaries (with `description`), paged by `start`/`count`.
//! - Downtimes (`/api/v2/downtime`): JSON:API bodies; `scope` and `monitor_identifier` required,
//!   no other attribute than the specification's; at most 5 recurrences, each with a duration
//!   `<n>[mhdw]`, an RRULE without `DTSTART`/`DTEND`/`DURATION`, a start without offset; an
//!   exact duplicate of a live downtime is refused (400); a cancel (204) leaves it listed as
//!   `canceled`.
//! - Metric tag configurations (`/api/v2/metrics/{metric}/tags`): `GET` 404 when there is none;
//!   `POST` 201, or 409 when one exists, or 400 for a metric DataDog has no point of; `PATCH`
//!   422 when none exists and 400 with `metric_type`; `include_percentiles` only for
//!   distributions.
//! - `POST /api/v1/monitor/validate` checks a monitor as a create would: 200 `{}` or 400.
//! - A test can have the next requests rate-limited: 429 with `X-RateLimit-*` headers, `Reset`
//!   in seconds.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use serde_json::{Value, json};

use super::local_server::LocalServer;

/// The API key: the one the deployment's secret holds.
pub const API_KEY: &str = super::intake::API_KEY;
/// An application key of a user whose role has every permission.
pub const APP_KEY: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4";
/// An application key scoped to reading only.
pub const READ_ONLY_APP_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c";
/// An application key that reads everything and schedules downtimes, but writes nothing else.
pub const NO_WRITE_APP_KEY: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d";

/// The permission each endpoint needs (DataDog's `x-permission`).
fn permission(method: &Method, path: &str) -> &'static str {
    // Validating a monitor is a read: it changes nothing.
    let read = method == Method::GET || path == "/api/v1/monitor/validate";
    match path {
        p if p.starts_with("/api/v1/monitor") => {
            if read {
                "monitors_read"
            } else {
                "monitors_write"
            }
        }
        p if p.starts_with("/api/v1/dashboard") => {
            if read {
                "dashboards_read"
            } else {
                "dashboards_write"
            }
        }
        p if p.starts_with("/api/v2/downtime") => "monitors_downtime",
        _ => {
            if read {
                "metrics_read"
            } else {
                "metric_tags_write"
            }
        }
    }
}

#[derive(Default)]
struct State {
    monitors: BTreeMap<i64, Value>,
    dashboards: Vec<Value>,
    downtimes: Vec<Value>,
    tag_configurations: BTreeMap<String, Value>,
    requests: Vec<(String, String, u16)>,
    rate_limited: usize,
    /// Metrics DataDog has points of: only those take a tag configuration.
    metrics: BTreeSet<String>,
    /// Queries DataDog refuses, by a piece of them, with why.
    refused_queries: Vec<(String, String)>,
    serial: u64,
}

/// The fake API; it stops when dropped.
pub struct FakeDataDogApi {
    server: LocalServer,
    state: Arc<Mutex<State>>,
}

type Answer = (u16, Value);

fn error(status: u16, message: impl Into<String>) -> Answer {
    (status, json!({"errors": [message.into()]}))
}

impl FakeDataDogApi {
    pub fn start() -> FakeDataDogApi {
        let state = Arc::new(Mutex::new(State {
            serial: 1000,
            ..State::default()
        }));
        let server = LocalServer::start(state.clone(), serve);
        FakeDataDogApi { server, state }
    }

    pub fn uri(&self) -> String {
        self.server.endpoint.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every request: method, path with query, status answered.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.state().requests.clone()
    }

    /// Requests that change something (not reads, nor a monitor's validation).
    pub fn writes(&self) -> Vec<(String, String, u16)> {
        self.requests()
            .into_iter()
            .filter(|(method, path, _)| method != "GET" && path != "/api/v1/monitor/validate")
            .collect()
    }

    pub fn monitors(&self) -> Vec<Value> {
        self.state().monitors.values().cloned().collect()
    }

    pub fn dashboards(&self) -> Vec<Value> {
        self.state().dashboards.clone()
    }

    /// Downtimes not cancelled.
    pub fn live_downtimes(&self) -> Vec<Value> {
        self.state()
            .downtimes
            .iter()
            .filter(|downtime| downtime["attributes"]["status"] != "canceled")
            .cloned()
            .collect()
    }

    pub fn tag_configuration(&self, metric: &str) -> Option<Value> {
        self.state().tag_configurations.get(metric).cloned()
    }

    /// Someone changes monitor `id` in DataDog's pages.
    pub fn edit_monitor(&self, id: i64, edit: impl FnOnce(&mut Value)) {
        edit(self.state().monitors.get_mut(&id).expect("a monitor"));
    }

    /// Someone deletes monitor `id`.
    pub fn delete_monitor(&self, id: i64) {
        self.state().monitors.remove(&id);
    }

    /// Someone configures a metric's tags (with percentiles off).
    pub fn configure_tags(&self, metric: &str, tags: &[&str]) {
        self.state().tag_configurations.insert(
            metric.to_owned(),
            json!({"tags": tags, "metric_type": "distribution", "include_percentiles": false}),
        );
    }

    /// DataDog receives points of `metrics`.
    pub fn receive_points(&self, metrics: &[&str]) {
        self.state()
            .metrics
            .extend(metrics.iter().map(|metric| (*metric).to_owned()));
    }

    /// DataDog refuses a monitor query holding `piece`, saying `why`.
    pub fn refuse_queries_with(&self, piece: &str, why: &str) {
        self.state()
            .refused_queries
            .push((piece.to_owned(), why.to_owned()));
    }

    /// The next `requests` are answered 429.
    pub fn rate_limit_next(&self, requests: usize) {
        self.state().rate_limited = requests;
    }
}

async fn serve(
    state: Arc<Mutex<State>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let path = parts.uri.path().to_owned();
    // Decoded as a URL's query.
    let query: BTreeMap<String, String> = reqwest::Url::parse(&format!("http://fake{}", parts.uri))
        .map(|url| {
            url.query_pairs()
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let mut state = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (status, body, rate_limited) = if state.rate_limited > 0 {
        state.rate_limited -= 1;
        let (status, body) = error(429, "Too many requests");
        (status, body, true)
    } else {
        let (status, body) = answer(
            &mut state,
            &parts.method,
            &path,
            &query,
            &bytes,
            header("DD-API-KEY"),
            header("DD-APPLICATION-KEY"),
        );
        (status, body, false)
    };
    let shown = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.clone(),
    };
    state.requests.push((parts.method.to_string(), shown, status));
    let mut response = Response::builder().status(status);
    if rate_limited {
        for (name, value) in [
            ("X-RateLimit-Limit", "60"),
            ("X-RateLimit-Period", "10"),
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset", "1"),
            ("X-RateLimit-Name", "monitors"),
        ] {
            response = response.header(name, value);
        }
    }
    let body = if status == 204 {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    Ok(response
        .header("Content-Type", "application/json")
        .body(Full::new(body))
        .expect("a response"))
}

fn answer(
    state: &mut State,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    body: &[u8],
    api_key: Option<String>,
    app_key: Option<String>,
) -> Answer {
    if api_key.as_deref() != Some(API_KEY) {
        return error(403, "Forbidden");
    }
    if path == "/api/v1/validate" && method == Method::GET {
        return (200, json!({"valid": true}));
    }
    let permissions: Option<BTreeSet<&str>> = match app_key.as_deref() {
        Some(APP_KEY) => None,
        Some(READ_ONLY_APP_KEY) => Some(["monitors_read", "dashboards_read", "metrics_read"].into()),
        Some(NO_WRITE_APP_KEY) => Some(
            [
                "monitors_read",
                "dashboards_read",
                "metrics_read",
                "monitors_downtime",
            ]
            .into(),
        ),
        _ => return error(403, "Forbidden"),
    };
    if permissions.is_some_and(|held| !held.contains(permission(method, path))) {
        return error(403, "Forbidden");
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(_) => return error(400, "Invalid JSON"),
        }
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    state.serial += 1;
    let serial = state.serial;
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["api", "v1", "monitor"]) => list_monitors(state, query),
        ("POST", ["api", "v1", "monitor", "validate"]) => match check_monitor(state, &body, true) {
            Ok(()) => (200, json!({})),
            Err(answer) => answer,
        },
        ("POST", ["api", "v1", "monitor"]) => create_monitor(state, body, serial),
        ("PUT", ["api", "v1", "monitor", id]) => update_monitor(state, id, body),
        ("DELETE", ["api", "v1", "monitor", id]) => {
            match id.parse::<i64>().ok().and_then(|id| state.monitors.remove(&id)) {
                Some(monitor) => (200, json!({"deleted_monitor_id": monitor["id"]})),
                None => error(404, "Monitor not found"),
            }
        }
        ("GET", ["api", "v1", "dashboard"]) => list_dashboards(state, query),
        ("POST", ["api", "v1", "dashboard"]) => match check_dashboard(&body) {
            Err(answer) => answer,
            Ok(()) => {
                let id = format!(
                    "{:03x}-{:03x}-{:03x}",
                    serial % 4096,
                    (serial * 7) % 4096,
                    (serial * 13) % 4096
                );
                let stored = stored_dashboard(&id, body, serial);
                state.dashboards.push(stored.clone());
                (200, stored)
            }
        },
        ("GET", ["api", "v1", "dashboard", id]) => {
            match state.dashboards.iter().find(|found| found["id"] == *id) {
                Some(found) => (200, found.clone()),
                None => error(404, format!("Dashboard with ID {id} not found")),
            }
        }
        ("PUT", ["api", "v1", "dashboard", id]) => {
            match state.dashboards.iter().position(|found| found["id"] == *id) {
                None => error(404, format!("Dashboard with ID {id} not found")),
                Some(at) => match check_dashboard(&body) {
                    Err(answer) => answer,
                    Ok(()) => {
                        let mut stored = stored_dashboard(id, body, serial);
                        stored["created_at"] = state.dashboards[at]["created_at"].clone();
                        state.dashboards[at] = stored.clone();
                        (200, stored)
                    }
                },
            }
        }
        ("GET", ["api", "v2", "downtime"]) => {
            let offset: usize = query
                .get("page[offset]")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let limit: usize = query
                .get("page[limit]")
                .and_then(|v| v.parse().ok())
                .unwrap_or(30);
            let page: Vec<Value> = state.downtimes.iter().skip(offset).take(limit).cloned().collect();
            (
                200,
                json!({"data": page, "meta": {"page": {"total_filtered_count": state.downtimes.len()}}}),
            )
        }
        ("POST", ["api", "v2", "downtime"]) => create_downtime(state, body, serial),
        ("DELETE", ["api", "v2", "downtime", id]) => {
            if !is_uuid(id) {
                return error(400, "Invalid URL param: downtime_id must be an uuid");
            }
            match state.downtimes.iter_mut().find(|found| found["id"] == *id) {
                None => error(404, format!("Downtime {id} not found")),
                Some(found) => {
                    found["attributes"]["status"] = json!("canceled");
                    found["attributes"]["canceled"] = json!("2026-12-01T12:00:00.000000+00:00");
                    (204, Value::Null)
                }
            }
        }
        ("GET", ["api", "v2", "metrics", metric, "tags"]) => match state.tag_configurations.get(*metric) {
            Some(attributes) => (
                200,
                json!({"data": {"type": "manage_tags", "id": metric, "attributes": attributes}}),
            ),
            None => error(404, format!("{metric} not found")),
        },
        ("POST" | "PATCH", ["api", "v2", "metrics", metric, "tags"]) => {
            configure_tags(state, method, metric, &body)
        }
        _ => error(404, "Not found"),
    }
}

const MONITOR_FIELDS: [&str; 10] = [
    "name",
    "message",
    "tags",
    "options",
    "priority",
    "restricted_roles",
    "draft_status",
    "assets",
    "type",
    "query",
];
const MONITOR_TYPES: [&str; 6] = [
    "composite",
    "event alert",
    "log alert",
    "metric alert",
    "query alert",
    "service check",
];

fn list_monitors(state: &State, query: &BTreeMap<String, String>) -> Answer {
    let wanted: Vec<&str> = query
        .get("monitor_tags")
        .map(|tags| tags.split(',').collect())
        .unwrap_or_default();
    let matching: Vec<Value> = state
        .monitors
        .values()
        .filter(|monitor| {
            let tags = monitor["tags"].as_array().cloned().unwrap_or_default();
            wanted.iter().all(|tag| tags.contains(&json!(tag)))
        })
        .cloned()
        .collect();
    let Some(page) = query.get("page") else {
        return (200, json!(matching));
    };
    let size: usize = query.get("page_size").and_then(|v| v.parse().ok()).unwrap_or(100);
    if size > 1000 {
        return error(400, "page_size must be at most 1000");
    }
    let page: usize = page.parse().unwrap_or(0);
    (
        200,
        json!(
            matching
                .into_iter()
                .skip(page * size)
                .take(size)
                .collect::<Vec<_>>()
        ),
    )
}

/// A query alert's checks, as DataDog makes them.
fn check_monitor(state: &State, monitor: &Value, creating: bool) -> Result<(), Answer> {
    let Some(fields) = monitor.as_object() else {
        return Err(error(400, "Invalid JSON"));
    };
    if let Some(unknown) = fields.keys().find(|key| !MONITOR_FIELDS.contains(&key.as_str())) {
        return Err(error(400, format!("Invalid parameter '{unknown}'")));
    }
    if creating && (!monitor["type"].is_string() || !monitor["query"].is_string()) {
        return Err(error(400, "The parameters 'type' and 'query' are required"));
    }
    if let Some(kind) = monitor["type"].as_str()
        && !MONITOR_TYPES.contains(&kind)
    {
        return Err(error(400, format!("Invalid monitor type: {kind}")));
    }
    if let Some(priority) = monitor.get("priority")
        && !(priority.is_null() || priority.as_i64().is_some_and(|p| (1..=5).contains(&p)))
    {
        return Err(error(400, "priority must be an integer from 1 to 5"));
    }
    if monitor.get("tags").is_some_and(|tags| {
        !tags
            .as_array()
            .is_some_and(|tags| tags.iter().all(Value::is_string))
    }) {
        return Err(error(400, "tags must be a list of strings"));
    }
    let Some(query) = monitor["query"].as_str() else {
        return Ok(());
    };
    if let Some((_, why)) = state
        .refused_queries
        .iter()
        .find(|(piece, _)| query.contains(piece.as_str()))
    {
        return Err(error(
            400,
            format!("The value provided for parameter 'query' is invalid: {why}"),
        ));
    }
    // time_aggr(time_window):… operator #
    let window_ok = ["avg(last_", "sum(last_", "min(last_", "max(last_"]
        .iter()
        .any(|start| query.starts_with(start));
    let threshold = query.rsplit_once(' ').and_then(|(head, number)| {
        let op = head.rsplit_once(' ')?.1;
        ["<", "<=", ">", ">=", "==", "!="]
            .contains(&op)
            .then_some(number.parse::<f64>().ok()?)
    });
    let (true, Some(threshold)) = (window_ok, threshold) else {
        return Err(error(
            400,
            format!("The value provided for parameter 'query' is invalid: {query}"),
        ));
    };
    let thresholds = &monitor["options"]["thresholds"];
    match thresholds["critical"].as_f64() {
        Some(critical) if critical != threshold => {
            return Err(error(
                400,
                format!("Alert threshold ({critical}) does not match that used in the query ({threshold})."),
            ));
        }
        None => return Err(error(400, "Alert threshold (critical) is required")),
        _ => {}
    }
    if let Some(warning) = thresholds["warning"].as_f64()
        && query.contains(" > ")
        && warning >= threshold
    {
        return Err(error(
            400,
            format!("Warning threshold ({warning}) must be less than the alert threshold ({threshold})."),
        ));
    }
    Ok(())
}

/// The options DataDog fills in, and its floats.
fn with_defaults(options: &Value) -> Value {
    let mut stored = json!({"notify_no_data": false, "notify_audit": false, "new_host_delay": 300, "include_tags": true, "silenced": {}});
    for (key, value) in options.as_object().into_iter().flatten() {
        stored[key] = value.clone();
    }
    for (_, value) in stored["thresholds"].as_object_mut().into_iter().flatten() {
        if let Some(number) = value.as_f64() {
            *value = json!(number);
        }
    }
    stored
}

fn create_monitor(state: &mut State, body: Value, serial: u64) -> Answer {
    if let Err(answer) = check_monitor(state, &body, true) {
        return answer;
    }
    let id = 100_000 + serial as i64;
    let mut stored = body;
    stored["id"] = json!(id);
    if stored["type"] == "metric alert" {
        stored["type"] = json!("query alert");
    }
    stored["options"] = with_defaults(&stored["options"]);
    stored["overall_state"] = json!("No Data");
    stored["created"] = json!("2026-12-01T12:00:00.000000+00:00");
    stored["creator"] = json!({"email": "ops@example.com", "handle": "ops@example.com", "name": "Ops"});
    state.monitors.insert(id, stored.clone());
    (200, stored)
}

fn update_monitor(state: &mut State, id: &str, body: Value) -> Answer {
    let Some(mut merged) = id
        .parse::<i64>()
        .ok()
        .and_then(|id| state.monitors.get(&id))
        .cloned()
    else {
        return error(404, "Monitor not found");
    };
    for (key, value) in body.as_object().into_iter().flatten() {
        merged[key] = value.clone();
    }
    // Checked as DataDog checks the monitor it would hold.
    let mut candidate = merged.clone();
    if let Some(fields) = candidate.as_object_mut() {
        fields.retain(|key, _| MONITOR_FIELDS.contains(&key.as_str()));
    }
    if let Err(answer) =
        check_monitor(state, &body, false).and_then(|()| check_monitor(state, &candidate, true))
    {
        return answer;
    }
    if body.get("options").is_some() {
        merged["options"] = with_defaults(&body["options"]);
    }
    merged["modified"] = json!("2026-12-01T12:30:00.000000+00:00");
    state
        .monitors
        .insert(merged["id"].as_i64().unwrap_or_default(), merged.clone());
    (200, merged)
}

const DASHBOARD_FIELDS: [&str; 13] = [
    "title",
    "layout_type",
    "widgets",
    "description",
    "template_variables",
    "template_variable_presets",
    "tags",
    "notify_list",
    "reflow_type",
    "restricted_roles",
    "is_read_only",
    "default_timeframe",
    "tabs",
];
const LIVE_SPANS: [&str; 17] = [
    "1m",
    "5m",
    "10m",
    "15m",
    "30m",
    "1h",
    "4h",
    "1d",
    "2d",
    "1w",
    "1mo",
    "3mo",
    "6mo",
    "week_to_date",
    "month_to_date",
    "1y",
    "alert",
];

fn check_dashboard(dashboard: &Value) -> Result<(), Answer> {
    let Some(fields) = dashboard.as_object() else {
        return Err(error(400, "Invalid JSON"));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|key| !DASHBOARD_FIELDS.contains(&key.as_str()))
    {
        return Err(error(400, format!("Invalid parameter '{unknown}'")));
    }
    if !dashboard["title"].is_string() || !dashboard["widgets"].is_array() {
        return Err(error(400, "'title', 'layout_type' and 'widgets' are required"));
    }
    if !matches!(dashboard["layout_type"].as_str(), Some("ordered" | "free")) {
        return Err(error(400, "'layout_type' must be ordered or free"));
    }
    let tags = dashboard["tags"].as_array().cloned().unwrap_or_default();
    if tags.len() > 5
        || tags
            .iter()
            .any(|tag| !tag.as_str().is_some_and(|tag| tag.starts_with("team:")))
    {
        return Err(error(400, "Invalid tag format. Valid tag keys are: team."));
    }
    for variable in dashboard["template_variables"].as_array().into_iter().flatten() {
        if !variable["name"].is_string()
            || (variable.get("default").is_some() && variable.get("defaults").is_some())
        {
            return Err(error(400, "'template_variables' is invalid"));
        }
        if variable["defaults"].as_array().is_some_and(|values| {
            values
                .iter()
                .any(|value| value.as_str().is_none_or(str::is_empty))
        }) {
            return Err(error(400, "Minimum length of parameter 'defaults' should be 1"));
        }
    }
    for widget in dashboard["widgets"].as_array().into_iter().flatten() {
        check_widget(&widget["definition"])?;
    }
    Ok(())
}

fn check_widget(definition: &Value) -> Result<(), Answer> {
    let kind = definition["type"].as_str().unwrap_or_default();
    let invalid = |why: &str| Err(error(400, format!("Invalid widget definition ({kind}): {why}")));
    if !["timeseries", "toplist", "query_value", "note", "group"].contains(&kind) {
        return invalid("unknown type");
    }
    if let Some(span) = definition["time"].get("live_span")
        && !span.as_str().is_some_and(|span| LIVE_SPANS.contains(&span))
    {
        return invalid("live_span");
    }
    if !["timeseries", "toplist", "query_value"].contains(&kind) {
        return Ok(());
    }
    let Some(requests) = definition["requests"]
        .as_array()
        .filter(|requests| !requests.is_empty())
    else {
        return invalid("requests are required");
    };
    if kind == "query_value" && requests.len() > 1 {
        return invalid("a query value takes one request");
    }
    for request in requests {
        if kind != "timeseries" && request.get("display_type").is_some() {
            return invalid("display_type is for timeseries requests");
        }
        for query in request["queries"].as_array().into_iter().flatten() {
            if query["data_source"] != "metrics" || !query["name"].is_string() || !query["query"].is_string()
            {
                return invalid("a metric query needs data_source, name and query");
            }
        }
        for formula in request["formulas"].as_array().into_iter().flatten() {
            if !formula["formula"].is_string() {
                return invalid("a formula needs formula");
            }
        }
    }
    Ok(())
}

fn stored_dashboard(id: &str, body: Value, serial: u64) -> Value {
    let mut stored = body;
    let slug: String = stored["title"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    stored["id"] = json!(id);
    stored["url"] = json!(format!("/dashboard/{id}/{slug}"));
    stored["author_handle"] = json!("ops@example.com");
    stored["created_at"] = json!("2026-12-01T12:00:00.000000+00:00");
    stored["modified_at"] = json!(format!("2026-12-01T12:{:02}:00.000000+00:00", serial % 60));
    if stored.get("description").is_none() {
        stored["description"] = Value::Null;
    }
    for (index, widget) in stored["widgets"].as_array_mut().into_iter().flatten().enumerate() {
        widget["id"] = json!(3_025_185_757_829_094_u64 + serial * 100 + index as u64);
    }
    stored
}

fn list_dashboards(state: &State, query: &BTreeMap<String, String>) -> Answer {
    let start: usize = query.get("start").and_then(|v| v.parse().ok()).unwrap_or(0);
    let count: usize = query.get("count").and_then(|v| v.parse().ok()).unwrap_or(100);
    let summaries: Vec<Value> = state
        .dashboards
        .iter()
        .skip(start)
        .take(count)
        .map(|dashboard| {
            let mut summary = json!({});
            for key in [
                "id",
                "title",
                "description",
                "url",
                "layout_type",
                "author_handle",
                "created_at",
                "modified_at",
            ] {
                summary[key] = dashboard[key].clone();
            }
            summary["is_read_only"] = json!(false);
            summary["deleted_at"] = Value::Null;
            summary
        })
        .collect();
    (200, json!({"dashboards": summaries}))
}

const DOWNTIME_FIELDS: [&str; 8] = [
    "display_timezone",
    "message",
    "monitor_identifier",
    "mute_first_recovery_notification",
    "notify_end_states",
    "notify_end_types",
    "schedule",
    "scope",
];

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|group| group.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|group| group.chars().all(|c| c.is_ascii_hexdigit()))
}

fn check_downtime(attributes: &Value) -> Result<(), Answer> {
    let Some(fields) = attributes.as_object() else {
        return Err(error(400, "attributes are required"));
    };
    if let Some(unknown) = fields.keys().find(|key| !DOWNTIME_FIELDS.contains(&key.as_str())) {
        return Err(error(
            400,
            format!("Additional properties are not allowed ('{unknown}' was unexpected)"),
        ));
    }
    if !attributes["scope"].is_string() {
        return Err(error(400, "scope is required"));
    }
    let identifier = &attributes["monitor_identifier"];
    let by_tags = identifier["monitor_tags"]
        .as_array()
        .is_some_and(|tags| !tags.is_empty() && tags.iter().all(Value::is_string));
    if !(by_tags || identifier["monitor_id"].is_i64()) {
        return Err(error(400, "monitor_identifier needs monitor_id or monitor_tags"));
    }
    let states_ok = attributes["notify_end_states"].as_array().is_none_or(|states| {
        states
            .iter()
            .all(|state| matches!(state.as_str(), Some("alert" | "no data" | "warn")))
    });
    let types_ok = attributes["notify_end_types"].as_array().is_none_or(|types| {
        types
            .iter()
            .all(|kind| matches!(kind.as_str(), Some("canceled" | "expired")))
    });
    if !states_ok || !types_ok {
        return Err(error(
            400,
            "notify_end_states or notify_end_types holds an unknown value",
        ));
    }
    let Some(recurrences) = attributes["schedule"].get("recurrences") else {
        return Ok(());
    };
    let recurrences = recurrences.as_array().cloned().unwrap_or_default();
    if recurrences.is_empty() || recurrences.len() > 5 {
        return Err(error(
            400,
            "Recurring schedules may have up to five RRULE-based recurrences",
        ));
    }
    for recurrence in recurrences {
        let duration = recurrence["duration"].as_str().unwrap_or_default();
        let (number, unit) = duration.split_at(duration.len().saturating_sub(1));
        if number.is_empty()
            || !number.chars().all(|c| c.is_ascii_digit())
            || !["m", "h", "d", "w"].contains(&unit)
        {
            return Err(error(400, format!("Invalid duration: {duration:?}")));
        }
        let rrule = recurrence["rrule"].as_str().unwrap_or_default();
        if !rrule.contains("FREQ=")
            || ["DTSTART", "DTEND", "DURATION"]
                .iter()
                .any(|part| rrule.contains(part))
        {
            return Err(error(400, format!("Invalid rrule: {rrule:?}")));
        }
        if let Some(start) = recurrence["start"].as_str() {
            let local = start.len() >= 16
                && start.as_bytes()[10] == b'T'
                && !start[10..].contains(['+', 'Z'])
                && !start[11..].contains('-');
            if !local {
                return Err(error(
                    400,
                    format!("Invalid start (a recurrence's start has no UTC offset): {start:?}"),
                ));
            }
        }
    }
    Ok(())
}

fn create_downtime(state: &mut State, body: Value, serial: u64) -> Answer {
    if body["data"]["type"] != "downtime" {
        return error(400, "data.type must be downtime");
    }
    let attributes = body["data"]["attributes"].clone();
    if let Err(answer) = check_downtime(&attributes) {
        return answer;
    }
    let duplicate: Vec<String> = state
        .downtimes
        .iter()
        .filter(|held| held["attributes"]["status"] != "canceled")
        .filter(|held| {
            DOWNTIME_FIELDS
                .iter()
                .all(|key| attributes.get(*key).is_none() || held["attributes"][*key] == attributes[*key])
        })
        .filter_map(|held| held["id"].as_str().map(str::to_owned))
        .collect();
    if !duplicate.is_empty() {
        return error(
            400,
            format!(
                "The downtime being created is a duplicate of one or more existing downtimes: {duplicate:?}"
            ),
        );
    }
    let mut stored = json!({
        "display_timezone": "UTC",
        "notify_end_states": ["warn", "alert", "no data"],
        "notify_end_types": ["expired"],
        "mute_first_recovery_notification": false,
        "message": null,
        "canceled": null,
        "created": "2026-12-01T12:00:00.000000+00:00",
        "modified": "2026-12-01T12:00:00.000000+00:00",
        "status": "active",
    });
    for (key, value) in attributes.as_object().into_iter().flatten() {
        stored[key] = value.clone();
    }
    stored["schedule"]["current_downtime"] =
        json!({"start": "2026-12-01T18:00:00+00:00", "end": "2026-12-02T08:00:00+00:00"});
    let id = format!("{:08x}-0000-4000-8000-{:012x}", serial, serial);
    let downtime = json!({"id": id, "type": "downtime", "attributes": stored});
    state.downtimes.push(downtime.clone());
    (200, json!({"data": downtime}))
}

fn configure_tags(state: &mut State, method: &Method, metric: &str, body: &Value) -> Answer {
    let data = &body["data"];
    if data["type"] != "manage_tags" || data["id"] != metric {
        return error(400, "data.type must be manage_tags and data.id the metric's name");
    }
    let attributes = &data["attributes"];
    if !attributes["tags"]
        .as_array()
        .is_some_and(|tags| tags.iter().all(Value::is_string))
    {
        return error(400, "tags must be a list of tag keys");
    }
    let existing = state.tag_configurations.get(metric).cloned();
    let metric_type = if *method == Method::POST {
        if !state.metrics.contains(metric) {
            return error(400, "Cannot configure tags on a metric that does not exist.");
        }
        if existing.is_some() {
            return error(409, format!("A tag configuration for {metric} already exists"));
        }
        match attributes["metric_type"].as_str() {
            Some(kind @ ("gauge" | "count" | "rate" | "distribution")) => kind.to_owned(),
            _ => return error(400, "metric_type is required: gauge, count, rate or distribution"),
        }
    } else {
        let Some(existing) = &existing else {
            return error(
                422,
                format!("No tag configuration exists for {metric}: create one first"),
            );
        };
        if attributes.get("metric_type").is_some() {
            return error(400, "metric_type cannot be updated");
        }
        existing["metric_type"].as_str().unwrap_or_default().to_owned()
    };
    if attributes["include_percentiles"] == true && metric_type != "distribution" {
        return error(
            400,
            "include_percentiles can only be applied to distribution metrics",
        );
    }
    let mut stored = existing.unwrap_or_else(|| json!({"created_at": "2026-12-01T12:00:00.000000+00:00"}));
    stored["metric_type"] = json!(metric_type);
    // DataDog keeps tags as a set: their order is not kept.
    let mut tags: Vec<&str> = attributes["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    tags.sort_unstable_by(|a, b| b.cmp(a));
    stored["tags"] = json!(tags);
    for key in ["include_percentiles", "exclude_tags_mode"] {
        if let Some(value) = attributes.get(key) {
            stored[key] = value.clone();
        }
    }
    stored["modified_at"] = json!("2026-12-01T12:30:00.000000+00:00");
    state.tag_configurations.insert(metric.to_owned(), stored.clone());
    let status = if *method == Method::POST { 201 } else { 200 };
    (
        status,
        json!({"data": {"type": "manage_tags", "id": metric, "attributes": stored}}),
    )
}
