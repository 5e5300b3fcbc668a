//! A fake DataDog intake on 127.0.0.1 that holds requests to DataDog's published specification
//! of `POST /api/v1/distribution_points`, not to our sender: it refuses what the specification
//! does not allow, and records only what it accepted.
//!
//! - `DD-API-KEY` missing or empty: 403.
//! - `Content-Type` other than `application/json`, or a `Content-Encoding` the specification
//!   does not list for this endpoint (it lists `deflate`; none means identity): 400, the
//!   specification's answer for a request it cannot take (it lists only 202, 400, 403, 408, 413
//!   and 429 here).
//! - A body that does not inflate or is not JSON: 400.
//! - A series that breaks the schema (`metric` a non-empty string; `points` a list of
//!   `[timestamp, [values…]]` with numbers; `tags` strings; `host` a string; `type`
//!   `distribution`): 400, naming it.
//! - A point more than 10 minutes ahead or 1 hour behind the intake's clock: 400.
//!
//! `GET /api/v1/validate` is held to the specification's answers too: 200 `{"valid": true}` for
//! the one key this DataDog knows ([`API_KEY`]) in `DD-API-KEY`, 403 `{"errors": ["Forbidden"]}`
//! for any other key or none.
//!
//! Tests add what DataDog does under load or to a bad series: answers forced for the first
//! requests (5xx, 408, 429 with its rate-limit headers), 413 for a payload of too many series,
//! 400 for a series carrying a given tag; and answers lost after the points were taken (a 5xx
//! instead of the 202, or no answer before the client's timeout), which a client cannot tell
//! from a request that was never taken.

use std::collections::VecDeque;
use std::io::Read as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flate2::read::ZlibDecoder;
use flow_metrics::sink::datadog::{ApiKey, Compression, DataDogSettings, MetricNames};
use jiff::Timestamp;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const DISTRIBUTION_POINTS: &str = "/api/v1/distribution_points";

/// The API key this DataDog knows.
pub const API_KEY: &str = "0123456789abcdef0123456789abcdef";

/// What the intake does beyond the specification's rules.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// The intake's clock for the timestamp window (default: the real clock).
    pub now: Option<Timestamp>,
    /// Answers given, in order, to the first requests instead of judging them:
    /// (status, seconds until the rate limit resets, for a 429).
    pub forced: Vec<(u16, Option<u64>)>,
    /// More series than this in one payload: 413.
    pub max_series: Option<usize>,
    /// A series carrying this tag: 400.
    pub refused_tag: Option<String>,
    /// What the client gets, in order, for the first requests the intake accepts (after the
    /// forced answers): their points are taken, but the 202 never reaches the client.
    pub lost_answers: Vec<LostAnswer>,
}

/// How the answer to a request whose points were taken goes astray.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostAnswer {
    /// This status (a 5xx) instead of 202: what a load balancer in front of the intake answers
    /// when the intake's own answer is lost behind it.
    Status(u16),
    /// The 202 held back this long: past the client's timeout, the answer never comes.
    Stall(Duration),
}

/// One request as the intake saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The status answered (for a stalled answer, the one sent after the stall).
    pub status: u16,
    /// Whether the intake took the points: a 202, or an answer lost after taking them.
    pub accepted: bool,
    pub content_encoding: Option<String>,
    pub user_agent: Option<String>,
    /// The decoded body, if it decoded.
    pub body: Option<Value>,
}

#[derive(Debug, Default)]
struct State {
    forced: VecDeque<(u16, Option<u64>)>,
    lost_answers: VecDeque<LostAnswer>,
    received: Vec<Received>,
}

struct Strict {
    rules: Rules,
    state: Arc<Mutex<State>>,
}

/// A running intake and what it received.
pub struct Intake {
    pub server: MockServer,
    state: Arc<Mutex<State>>,
}

/// An answer: its status, its JSON body and its extra headers.
struct Answer {
    status: u16,
    body: Value,
    headers: Vec<(&'static str, String)>,
    /// The points were taken (whatever the status says).
    accepted: bool,
    /// How long the answer is held back.
    delay: Option<Duration>,
}

fn error(status: u16, message: &str) -> Answer {
    Answer {
        status,
        body: json!({"errors": [message]}),
        headers: Vec::new(),
        accepted: false,
        delay: None,
    }
}

use super::request_header as header;

/// The body as the specification reads it, or the answer refusing it.
fn decode(request: &Request) -> Result<Value, Answer> {
    let json = match header(request, "content-encoding").as_deref() {
        None | Some("identity") => request.body.clone(),
        Some("deflate") => {
            let mut inflated = Vec::new();
            ZlibDecoder::new(request.body.as_slice())
                .read_to_end(&mut inflated)
                .map_err(|_| error(400, "Payload could not be decompressed (deflate)"))?;
            inflated
        }
        Some(other) => {
            return Err(error(
                400,
                &format!("Unsupported Content-Encoding {other:?} for this endpoint"),
            ));
        }
    };
    serde_json::from_slice(&json).map_err(|_| error(400, "Payload is not valid JSON"))
}

fn is_number(value: &Value) -> bool {
    value.is_number()
}

/// Why a series breaks the schema, if it does.
fn schema_problem(series: &Value, now: i64) -> Option<String> {
    let metric = series.get("metric").and_then(Value::as_str);
    if metric.is_none_or(str::is_empty) {
        return Some("metric must be a non-empty string".to_owned());
    }
    let points = series.get("points").and_then(Value::as_array)?;
    for point in points {
        let [timestamp, values] = point.as_array().map(Vec::as_slice).unwrap_or_default() else {
            return Some(format!("point {point} is not [timestamp, [values]]"));
        };
        let values = values.as_array().filter(|values| !values.is_empty());
        if !is_number(timestamp) || values.is_none_or(|values| !values.iter().all(is_number)) {
            return Some(format!("point {point} is not [timestamp, [values]]"));
        }
        let seconds = timestamp.as_f64().unwrap_or_default() as i64;
        if seconds > now + 600 || seconds < now - 3600 {
            return Some(format!(
                "point at {seconds} is outside the accepted window (10 minutes ahead, 1 hour behind)"
            ));
        }
    }
    let tags_are_strings = match series.get("tags") {
        None => true,
        Some(tags) => tags
            .as_array()
            .is_some_and(|tags| tags.iter().all(Value::is_string)),
    };
    if !tags_are_strings {
        return Some("tags must be strings".to_owned());
    }
    if series.get("host").is_some_and(|host| !host.is_string()) {
        return Some("host must be a string".to_owned());
    }
    if series.get("type").is_some_and(|kind| kind != "distribution") {
        return Some("type must be distribution".to_owned());
    }
    None
}

impl Strict {
    fn judge(&self, request: &Request) -> (Answer, Option<Value>) {
        if header(request, "dd-api-key").is_none_or(|key| key.trim().is_empty()) {
            return (error(403, "Forbidden"), None);
        }
        if header(request, "content-type").as_deref() != Some("application/json") {
            return (error(400, "Unsupported Content-Type"), None);
        }
        let body = match decode(request) {
            Ok(body) => body,
            Err(refusal) => return (refusal, None),
        };
        let forced = self.state.lock().expect("lock").forced.pop_front();
        if let Some((status, reset)) = forced {
            let mut answer = error(status, "forced by the test");
            answer.accepted = status == 202;
            if let Some(reset) = reset {
                answer.headers = vec![
                    ("X-RateLimit-Limit", "100".to_owned()),
                    ("X-RateLimit-Period", "60".to_owned()),
                    ("X-RateLimit-Remaining", "0".to_owned()),
                    ("X-RateLimit-Reset", reset.to_string()),
                ];
            }
            return (answer, Some(body));
        }
        let Some(series) = body.get("series").and_then(Value::as_array) else {
            return (error(400, "series must be a list"), Some(body));
        };
        if self.rules.max_series.is_some_and(|max| series.len() > max) {
            return (error(413, "Payload too large"), Some(body));
        }
        let now = self.rules.now.unwrap_or_else(Timestamp::now).as_second();
        for series in series {
            if let Some(problem) = schema_problem(series, now) {
                return (error(400, &problem), Some(body));
            }
            let refused = self.rules.refused_tag.as_deref().is_some_and(|refused| {
                series["tags"]
                    .as_array()
                    .is_some_and(|tags| tags.iter().any(|tag| tag == refused))
            });
            if refused {
                return (error(400, "Invalid tag in series"), Some(body));
            }
        }
        let accepted = Answer {
            status: 202,
            body: json!({"status": "ok"}),
            headers: Vec::new(),
            accepted: true,
            delay: None,
        };
        let lost = self.state.lock().expect("lock").lost_answers.pop_front();
        let answer = match lost {
            None => accepted,
            Some(LostAnswer::Status(status)) => Answer {
                accepted: true,
                ..error(status, "the intake's answer was lost")
            },
            Some(LostAnswer::Stall(delay)) => Answer {
                delay: Some(delay),
                ..accepted
            },
        };
        (answer, Some(body))
    }
}

impl Respond for Strict {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let (answer, body) = self.judge(request);
        self.state.lock().expect("lock").received.push(Received {
            status: answer.status,
            accepted: answer.accepted,
            content_encoding: header(request, "content-encoding"),
            user_agent: header(request, "user-agent"),
            body,
        });
        let template = answer.headers.iter().fold(
            ResponseTemplate::new(answer.status).set_body_json(answer.body),
            |template, (name, value)| template.insert_header(*name, value.as_str()),
        );
        match answer.delay {
            Some(delay) => template.set_delay(delay),
            None => template,
        }
    }
}

/// `GET /api/v1/validate`: valid for [`API_KEY`] alone.
struct Validate;

impl Respond for Validate {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if header(request, "dd-api-key").as_deref() == Some(API_KEY) {
            ResponseTemplate::new(200).set_body_json(json!({"valid": true}))
        } else {
            ResponseTemplate::new(403).set_body_json(json!({"errors": ["Forbidden"]}))
        }
    }
}

impl Intake {
    /// An intake holding requests to the specification, and to `rules`.
    pub async fn start(rules: Rules) -> Intake {
        Intake::serve(MockServer::start().await, rules).await
    }

    /// The same, listening on `listener`: at an address known before the intake starts.
    pub async fn start_on(listener: std::net::TcpListener, rules: Rules) -> Intake {
        Intake::serve(MockServer::builder().listener(listener).start().await, rules).await
    }

    async fn serve(server: MockServer, rules: Rules) -> Intake {
        let state = Arc::new(Mutex::new(State {
            forced: rules.forced.iter().copied().collect(),
            lost_answers: rules.lost_answers.iter().copied().collect(),
            received: Vec::new(),
        }));
        Mock::given(method("POST"))
            .and(path(DISTRIBUTION_POINTS))
            .respond_with(Strict {
                rules,
                state: state.clone(),
            })
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/v1/validate"))
            .respond_with(Validate)
            .mount(&server)
            .await;
        Intake { server, state }
    }

    /// An intake with the real clock and nothing beyond the specification.
    pub async fn accepting() -> Intake {
        Intake::start(Rules::default()).await
    }

    /// An intake whose clock says `now`, and nothing beyond the specification.
    pub async fn at(now: Timestamp) -> Intake {
        Intake::start(Rules {
            now: Some(now),
            ..Rules::default()
        })
        .await
    }

    /// The settings of a sink posting here, deflated, with the default metric names.
    pub fn sink_settings(&self, static_tags: &[&str], self_metrics: bool) -> DataDogSettings {
        DataDogSettings {
            base_url: self.uri(),
            api_key: ApiKey::new(API_KEY).expect("key"),
            metrics: MetricNames::default(),
            static_tags: static_tags.iter().map(|tag| (*tag).to_owned()).collect(),
            self_metrics,
            compression: Compression::Deflate,
        }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Every request, in order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("lock").received.clone()
    }

    /// The statuses answered, in order.
    pub fn statuses(&self) -> Vec<u16> {
        self.received().iter().map(|received| received.status).collect()
    }

    /// The bodies accepted (202, or taken before the answer was lost), in order.
    pub fn accepted(&self) -> Vec<Value> {
        self.received()
            .into_iter()
            .filter(|received| received.accepted)
            .filter_map(|received| received.body)
            .collect()
    }

    /// Every accepted point of `metric`: (tags, timestamp, number of values).
    pub fn points(&self, metric: &str) -> Vec<(Value, Value, usize)> {
        let mut points = Vec::new();
        for body in self.accepted() {
            for series in body["series"].as_array().expect("series") {
                if series["metric"] != metric {
                    continue;
                }
                for point in series["points"].as_array().expect("points") {
                    let values = point[1].as_array().expect("values").len();
                    points.push((series["tags"].clone(), point[0].clone(), values));
                }
            }
        }
        points
    }
}
