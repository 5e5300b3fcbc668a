//! Genesys Cloud's analytics API, faked on a [`FakeGenesys`]'s server (127.0.0.1) from the
//! conversations a test gives it, and held to the published request and response schemas
//! (the Platform API's `FlowAggregationQuery`, `AsyncConversationQuery`, `AsyncQueryStatus`,
//! `AnalyticsConversationAsyncQueryResponse`, `DataAvailabilityResponse`), not to our client's:
//!
//! - `POST /api/v2/analytics/flows/aggregates/query` takes an `interval` (required, ISO 8601
//!   `<start>/<end>`), `metrics` (required, of the published enum), `groupBy` (of the published
//!   enum), `alternateTimeDimension` (only `eventTime`) and the schema's other properties, and
//!   nothing else; it answers `results[].group` (only the dimensions asked that the data has)
//!   and `results[].data[].metrics[].stats.count`. As Genesys counts: `nFlowMilestone` each
//!   milestone reached, `nFlowOutcome` an outcome's last result per conversation,
//!   `nFlowOutcomeFailed` those that failed.
//! - `POST /api/v2/analytics/conversations/details/jobs` takes an `AsyncConversationQuery`
//!   (`interval` required; `order`, `orderBy` of their enums) and answers 202 `{"jobId"}`.
//!   `GET …/jobs/{jobId}` answers `{"state"}`, going through the states the test scripts
//!   (`QUEUED`, `PENDING`, then `FULFILLED` by default; `FAILED` with `errorMessage`).
//!   `GET …/jobs/{jobId}/results` (only once fulfilled; `cursor` as it gave it, `pageSize` 1
//!   to 1000) answers `conversations` (those with activity in the interval, each participant's
//!   `attributes` as they stood when the conversation ended), `cursor` while more pages
//!   follow, and `dataAvailabilityDate`.
//! - `GET …/jobs/availability` answers `DataAvailabilityResponse`: `{"dataAvailabilityDate"}`
//!   as the test sets it (an optional field, left out until it does).
//! - Every request needs a bearer token the fake's login issued (else 401); a request breaking
//!   the schema gets 400 with the Platform API's error body; tests can force the next answers
//!   (429 with `Retry-After`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use serde_json::{Map, Value, json};
use wiremock::matchers::path_regex;
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::genesys::FakeGenesys;

/// The published `FlowAggregationQuery.metrics` enum.
const FLOW_METRICS: &[&str] = &[
    "nFlow",
    "nFlowMilestone",
    "nFlowOutcome",
    "nFlowOutcomeFailed",
    "oFlowMilestone",
    "tFlow",
    "tFlowDisconnect",
    "tFlowExit",
    "tFlowOutcome",
];

/// The flow dimensions of the published `FlowAggregationQuery.groupBy` enum (it has many
/// more, about routing and media, which this fake's conversations never carry).
const FLOW_DIMENSIONS: &[&str] = &[
    "conversationId",
    "flowId",
    "flowMilestoneId",
    "flowName",
    "flowOutcome",
    "flowOutcomeId",
    "flowOutcomeValue",
    "flowType",
    "flowVersion",
    "mediaType",
    "purpose",
];

const AGGREGATION_PROPERTIES: &[&str] = &[
    "interval",
    "granularity",
    "timeZone",
    "groupBy",
    "filter",
    "metrics",
    "flattenMultivaluedDimensions",
    "views",
    "alternateTimeDimension",
];

const JOB_PROPERTIES: &[&str] = &[
    "conversationFilters",
    "segmentFilters",
    "evaluationFilters",
    "surveyFilters",
    "resolutionFilters",
    "order",
    "orderBy",
    "interval",
    "limit",
    "startOfDayIntervalMatching",
];

/// One conversation as analytics holds it.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: String,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    /// Participant data as it stood at the end: attribute keys (values "1").
    pub attributes: Vec<String>,
    /// (flowId, milestoneId, time).
    pub milestones: Vec<(String, String, Timestamp)>,
    /// (flowId, outcomeId, `SUCCESS`/`FAILURE`, time).
    pub outcomes: Vec<(String, String, String, Timestamp)>,
}

/// A job's state and, for `FAILED`, its error message.
type JobState = (String, Option<String>);

/// The dimensions of a group, as (name, value).
type Group = Vec<(String, String)>;

/// A job: its interval, and the states it has still to go through.
#[derive(Debug)]
struct Job {
    interval: (Timestamp, Timestamp),
    states: VecDeque<JobState>,
}

#[derive(Debug, Default)]
struct State {
    conversations: Vec<Conversation>,
    /// Conversations per results page.
    page_size: usize,
    data_availability: Option<Timestamp>,
    /// The states a new job goes through, one per status request; the last one stays.
    job_script: Vec<JobState>,
    jobs: BTreeMap<String, Job>,
    /// Answers for the next requests: (status, Retry-After seconds).
    forced: VecDeque<(u16, u64)>,
    /// Every request: (method path, status).
    requests: Vec<(String, u16)>,
}

/// The analytics API of a fake Genesys.
pub struct FakeAnalytics {
    state: Arc<Mutex<State>>,
}

struct Analytics {
    state: Arc<Mutex<State>>,
    token_valid: Box<dyn Fn(&Request) -> bool + Send + Sync>,
}

fn error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"message": message, "code": code, "status": status}))
}

fn bad_request(message: &str) -> (u16, ResponseTemplate) {
    (400, error(400, "bad.request", message))
}

fn interval(text: Option<&Value>) -> Result<(Timestamp, Timestamp), String> {
    let text = text.and_then(Value::as_str).ok_or("interval is required")?;
    let (start, end) = text.split_once('/').ok_or("interval must be <start>/<end>")?;
    let parse = |part: &str| part.parse::<Timestamp>().map_err(|e| format!("interval: {e}"));
    let (start, end) = (parse(start)?, parse(end)?);
    if end <= start {
        return Err("interval must end after it starts".to_owned());
    }
    Ok((start, end))
}

fn only_properties(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match body.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(unknown) => Err(format!("Unrecognized field \"{unknown}\"")),
        None => Ok(()),
    }
}

fn strings<'a>(value: Option<&'a Value>, field: &str) -> Result<Vec<&'a str>, String> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(|| format!("{field} must hold strings")))
            .collect(),
        Some(_) => Err(format!("{field} must be an array")),
    }
}

impl Analytics {
    fn aggregates(&self, state: &State, body: &Map<String, Value>) -> Result<Value, String> {
        only_properties(body, AGGREGATION_PROPERTIES)?;
        let (start, end) = interval(body.get("interval"))?;
        let metrics = strings(body.get("metrics"), "metrics")?;
        if metrics.is_empty() {
            return Err("metrics is required".to_owned());
        }
        if let Some(unknown) = metrics.iter().find(|metric| !FLOW_METRICS.contains(metric)) {
            return Err(format!("metrics: {unknown} is not a flow metric"));
        }
        let group_by = strings(body.get("groupBy"), "groupBy")?;
        if let Some(unknown) = group_by
            .iter()
            .find(|dimension| !FLOW_DIMENSIONS.contains(dimension))
        {
            return Err(format!("groupBy: {unknown} is not a flow dimension"));
        }
        match body.get("alternateTimeDimension") {
            None => {}
            Some(Value::String(dimension)) if dimension == "eventTime" => {}
            Some(other) => return Err(format!("alternateTimeDimension: {other} is not eventTime")),
        }
        let within = |time: &Timestamp| start <= *time && *time < end;
        // (group, metric) → count
        let mut counts: BTreeMap<(Group, &str), u64> = BTreeMap::new();
        let mut add = |dimensions: &[(&str, &str)], metric: &'static str| {
            if !metrics.contains(&metric) {
                return;
            }
            let group = dimensions
                .iter()
                .filter(|(name, _)| group_by.contains(name))
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect();
            *counts.entry((group, metric)).or_default() += 1;
        };
        for conversation in &state.conversations {
            for (flow, milestone, _) in conversation.milestones.iter().filter(|(.., time)| within(time)) {
                add(
                    &[("flowId", flow), ("flowMilestoneId", milestone)],
                    "nFlowMilestone",
                );
            }
            // An outcome's last result per conversation.
            let mut last: BTreeMap<(&str, &str), (&str, Timestamp)> = BTreeMap::new();
            for (flow, outcome, value, time) in &conversation.outcomes {
                let entry = last.entry((flow, outcome)).or_insert((value, *time));
                if *time >= entry.1 {
                    *entry = (value, *time);
                }
            }
            for ((flow, outcome), (value, _)) in last.iter().filter(|(_, (_, time))| within(time)) {
                let dimensions = [
                    ("flowId", *flow),
                    ("flowOutcomeId", *outcome),
                    ("flowOutcomeValue", *value),
                ];
                add(&dimensions, "nFlowOutcome");
                if *value == "FAILURE" {
                    add(&dimensions, "nFlowOutcomeFailed");
                }
            }
        }
        let mut groups: BTreeMap<Group, Vec<Value>> = BTreeMap::new();
        for ((group, metric), count) in counts {
            groups
                .entry(group)
                .or_default()
                .push(json!({"metric": metric, "stats": {"count": count}}));
        }
        let interval_text = body.get("interval").cloned().unwrap_or_default();
        let results: Vec<Value> = groups
            .into_iter()
            .map(|(group, metrics)| {
                let group: Map<String, Value> =
                    group.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
                json!({"group": group, "data": [{"interval": interval_text, "metrics": metrics}]})
            })
            .collect();
        Ok(if results.is_empty() {
            json!({})
        } else {
            json!({"results": results})
        })
    }

    fn create_job(&self, state: &mut State, body: &Map<String, Value>) -> Result<Value, String> {
        only_properties(body, JOB_PROPERTIES)?;
        let interval = interval(body.get("interval"))?;
        let enumerated = |field: &str, allowed: &[&str]| match body.get(field) {
            None => Ok(()),
            Some(Value::String(value)) if allowed.contains(&value.as_str()) => Ok(()),
            Some(other) => Err(format!("{field}: {other} is not one of {allowed:?}")),
        };
        enumerated("order", &["asc", "desc", "unordered"])?;
        enumerated(
            "orderBy",
            &[
                "conversationStart",
                "conversationEnd",
                "segmentStart",
                "segmentEnd",
            ],
        )?;
        let job = format!("job-{}", state.jobs.len() + 1);
        let states = state.job_script.iter().cloned().collect();
        state.jobs.insert(job.clone(), Job { interval, states });
        Ok(json!({"jobId": job}))
    }

    fn results(&self, state: &State, job: &str, request: &Request) -> (u16, ResponseTemplate) {
        let Some(Job {
            interval: (start, end),
            states,
        }) = state.jobs.get(job)
        else {
            return (404, error(404, "not.found", "The requested job was not found."));
        };
        if states.front().is_some_and(|(state, _)| state != "FULFILLED") {
            return bad_request("the job is not FULFILLED");
        }
        let query: BTreeMap<String, String> = request.url.query_pairs().into_owned().collect();
        if let Some(size) = query.get("pageSize")
            && !matches!(size.parse::<usize>(), Ok(1..=1000))
        {
            return bad_request("pageSize must be from 1 to 1000");
        }
        let from = match query
            .get("cursor")
            .map(|cursor| cursor.strip_prefix("after-").map(str::parse::<usize>))
        {
            None => 0,
            Some(Some(Ok(from))) => from,
            Some(_) => return bad_request("the cursor is not one this job gave"),
        };
        let active: Vec<&Conversation> = state
            .conversations
            .iter()
            .filter(|c| c.start < *end && c.end.is_none_or(|ended| ended >= *start))
            .collect();
        let size = state.page_size.max(1);
        let page: Vec<Value> = active
            .iter()
            .skip(from)
            .take(size)
            .map(|c| {
                let attributes: Map<String, Value> =
                    c.attributes.iter().map(|key| (key.clone(), json!("1"))).collect();
                let mut conversation = json!({
                    "conversationId": c.id,
                    "conversationStart": c.start.to_string(),
                    "originatingDirection": "inbound",
                    "participants": [
                        {"participantId": format!("{}-customer", c.id), "purpose": "customer"},
                        {"participantId": format!("{}-ivr", c.id), "purpose": "ivr", "attributes": attributes},
                    ],
                });
                if let Some(end) = c.end {
                    conversation["conversationEnd"] = json!(end.to_string());
                }
                conversation
            })
            .collect();
        let mut answer = json!({"conversations": page});
        if from + size < active.len() {
            answer["cursor"] = json!(format!("after-{}", from + size));
        }
        if let Some(available) = state.data_availability {
            answer["dataAvailabilityDate"] = json!(available.to_string());
        }
        (200, ResponseTemplate::new(200).set_body_json(answer))
    }

    fn answer(&self, state: &mut State, request: &Request) -> (u16, ResponseTemplate) {
        if !(self.token_valid)(request) {
            return (401, error(401, "bad.credentials", "Invalid login credentials."));
        }
        if let Some((status, seconds)) = state.forced.pop_front() {
            let template = error(status, "too.many.requests", "Rate limit exceeded the maximum");
            return (
                status,
                template.insert_header("Retry-After", seconds.to_string().as_str()),
            );
        }
        let path = request.url.path();
        let body = || -> Result<Map<String, Value>, String> {
            match serde_json::from_slice::<Value>(&request.body) {
                Ok(Value::Object(body)) => Ok(body),
                _ => Err("the body must be a JSON object".to_owned()),
            }
        };
        let post = request.method.as_str() == "POST";
        let jobs = "/api/v2/analytics/conversations/details/jobs";
        let answered = if post && path == "/api/v2/analytics/flows/aggregates/query" {
            body()
                .and_then(|body| self.aggregates(state, &body))
                .map(|answer| (200, answer))
        } else if !post && path == format!("{jobs}/availability") {
            let mut answer = json!({});
            if let Some(available) = state.data_availability {
                answer["dataAvailabilityDate"] = json!(available.to_string());
            }
            Ok((200, answer))
        } else if post && path == jobs {
            body()
                .and_then(|body| self.create_job(state, &body))
                .map(|answer| (202, answer))
        } else if let Some(rest) = path.strip_prefix(jobs).and_then(|rest| rest.strip_prefix('/')) {
            match rest.split_once('/') {
                Some((job, "results")) => return self.results(state, job, request),
                Some(_) => return (404, error(404, "not.found", "Not found")),
                None => match state.jobs.get_mut(rest) {
                    None => return (404, error(404, "not.found", "The requested job was not found.")),
                    Some(Job { states, .. }) => {
                        let (now, message) =
                            states.front().cloned().unwrap_or(("FULFILLED".to_owned(), None));
                        if states.len() > 1 {
                            states.pop_front();
                        }
                        let mut status = json!({"state": now, "submissionDate": "2026-12-01T11:05:00Z"});
                        if let Some(message) = message {
                            status["errorMessage"] = json!(message);
                        }
                        Ok((200, status))
                    }
                },
            }
        } else {
            return (404, error(404, "not.found", "Not found"));
        };
        match answered {
            Ok((status, answer)) => (status, ResponseTemplate::new(status).set_body_json(answer)),
            Err(message) => bad_request(&message),
        }
    }
}

impl Respond for Analytics {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.state.lock().expect("lock");
        let (status, template) = self.answer(&mut state, request);
        state
            .requests
            .push((format!("{} {}", request.method, request.url.path()), status));
        template
    }
}

impl FakeAnalytics {
    /// Serves the analytics API of `conversations` on `genesys`'s server, with its tokens; job
    /// results in pages of `page_size` conversations.
    pub async fn mount(
        genesys: &FakeGenesys,
        conversations: Vec<Conversation>,
        page_size: usize,
    ) -> FakeAnalytics {
        let state = Arc::new(Mutex::new(State {
            conversations,
            page_size,
            job_script: ["QUEUED", "PENDING", "FULFILLED"]
                .map(|state| (state.to_owned(), None))
                .to_vec(),
            ..State::default()
        }));
        Mock::given(path_regex(r"^/api/v2/analytics/"))
            .respond_with(Analytics {
                state: state.clone(),
                token_valid: Box::new(genesys.token_check()),
            })
            .mount(&genesys.server)
            .await;
        FakeAnalytics { state }
    }

    /// Each results page, and the availability endpoint, say the data is available up to
    /// `until`.
    pub fn data_available_until(&self, until: Timestamp) {
        self.state.lock().expect("lock").data_availability = Some(until);
    }

    /// New jobs go through these states (with an error message for `FAILED`).
    pub fn script_jobs(&self, states: &[(&str, Option<&str>)]) {
        self.state.lock().expect("lock").job_script = states
            .iter()
            .map(|(state, message)| ((*state).to_owned(), message.map(str::to_owned)))
            .collect();
    }

    /// The next requests get these statuses, each with `Retry-After` seconds.
    pub fn force(&self, answers: &[(u16, u64)]) {
        self.state
            .lock()
            .expect("lock")
            .forced
            .extend(answers.iter().copied());
    }

    /// Every request: ("METHOD path", status).
    pub fn requests(&self) -> Vec<(String, u16)> {
        self.state.lock().expect("lock").requests.clone()
    }
}
