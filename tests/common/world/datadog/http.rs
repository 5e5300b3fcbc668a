//! The real DataDog sink (`sink::DataDogSink`, with its retries, halving and 429 waits) over
//! HTTP on 127.0.0.1, against a model of DataDog's intake.
//!
//! The model (`wiremock`, on its own thread) refuses a payload of more series than the trace
//! allows with 413, else gives the trace's next answer (202 by default): 202, 503 after keeping
//! the points, 503 keeping nothing, 429 resetting at once, or 202 held past the client's
//! timeout (the points kept). It keeps the `genesys.flow.metric` points inside its window and
//! drops the others silently, as DataDog does.
//!
//! Real HTTP and a paused clock do not mix: the runtime would let simulated time jump while a
//! request waits on its socket, and timeouts would fire early. So the sink runs on a thread of
//! its own with a real clock, given what is left of the push's deadline; while it pushes, the
//! world waits in a blocking task, which stops its simulated clock. The push then takes, in
//! simulated time, 40 ms a request and the sink's request timeout for an answer held back. The
//! sink's pauses are short (milliseconds), so that a trace costs little real time.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::Read as _;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use flate2::read::ZlibDecoder;
use flow_metrics::count::{Occurrence, Tally};
use flow_metrics::key::Source;
use flow_metrics::sink::datadog::{ApiKey, Compression, DataDogSettings, MetricNames, RetryPolicy};
use flow_metrics::sink::{DataDogSink, PushContext, PushFailure, Pushed, Sink};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use tokio::time::Instant;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::super::trace::HttpAnswer;
use super::super::{Pair, Process, Record};
use super::DataDog;

/// The sink's retries in real time: quick, so that a trace costs milliseconds.
const RETRY: RetryPolicy = RetryPolicy {
    attempts: 5,
    min_delay: Duration::from_millis(1),
    max_delay: Duration::from_millis(4),
    request_timeout: Duration::from_millis(150),
};
/// How long the model holds an answer it holds back (past the client's timeout).
const HOLD: Duration = Duration::from_millis(400);
/// Occurrences per request: small, so that a push makes several requests.
const OCCURRENCES_PER_REQUEST: usize = 3;
/// What a request costs in simulated time, and an answer held back.
const REQUEST_COST: Duration = Duration::from_millis(40);
const HELD_COST: Duration = Duration::from_secs(10);

/// What one trace's DataDog does, shared with the model's thread.
struct Script {
    answers: VecDeque<HttpAnswer>,
    max_series: Option<usize>,
    record: Arc<Record>,
    /// Each key's series: (flow tag, metric tag) → the key, and its time.
    series: Arc<BTreeMap<(String, String), (Pair, Timestamp)>>,
    /// The pushing process, and AWS's time during its push.
    process: usize,
    now: Timestamp,
    requests: usize,
    held: usize,
    kept: usize,
}

/// The model of DataDog's intake.
struct Model(Arc<Mutex<Option<Script>>>);

/// The body as the sink sent it.
fn decode(request: &Request) -> Option<Value> {
    let mut json = Vec::new();
    ZlibDecoder::new(request.body.as_slice())
        .read_to_end(&mut json)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

/// Keeps the count points of `body` that fall in DataDog's window.
fn keep(script: &mut Script, body: &Value) {
    let datadog = DataDog {
        record: script.record.clone(),
        clock: Arc::new(|| Timestamp::UNIX_EPOCH),
    };
    for series in body["series"].as_array().into_iter().flatten() {
        if series["metric"] != "genesys.flow.metric" {
            continue;
        }
        let tags: Vec<String> = series["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|tag| tag.as_str().map(str::to_owned))
            .collect();
        let [flow, metric] = tags.as_slice() else { continue };
        let Some((pair, time)) = script.series.get(&(flow.clone(), metric.clone())).cloned() else {
            panic!("DataDog received a series the trace never made: {tags:?}");
        };
        for point in series["points"].as_array().into_iter().flatten() {
            let second = point[0].as_i64().expect("a point's time");
            if second != time.as_second() {
                script.record.saw(|seen| seen.retimed_points += 1);
            }
            for _value in point[1].as_array().into_iter().flatten() {
                datadog.keep(pair.clone(), second, script.now, script.process);
                script.kept += 1;
            }
        }
    }
}

impl Respond for Model {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut guard = self.0.lock().expect("lock");
        let script = guard.as_mut().expect("a trace is running");
        script.requests += 1;
        let body = decode(request).expect("the sink sends deflated JSON");
        let series = body["series"].as_array().map_or(0, Vec::len);
        if script.max_series.is_some_and(|max| series > max) {
            script.record.saw(|seen| seen.http_too_large += 1);
            return ResponseTemplate::new(413)
                .set_body_json(serde_json::json!({"errors": ["Payload too large"]}));
        }
        let accepted = ResponseTemplate::new(202).set_body_json(serde_json::json!({"status": "ok"}));
        let unavailable =
            ResponseTemplate::new(503).set_body_json(serde_json::json!({"errors": ["Service Unavailable"]}));
        match script.answers.pop_front().unwrap_or(HttpAnswer::Accept) {
            HttpAnswer::Accept => {
                keep(script, &body);
                accepted
            }
            HttpAnswer::Kept503 => {
                keep(script, &body);
                script.record.saw(|seen| seen.http_ingested_5xx += 1);
                unavailable
            }
            HttpAnswer::Refused503 => unavailable,
            HttpAnswer::RateLimited => {
                script.record.saw(|seen| seen.http_rate_limited += 1);
                ResponseTemplate::new(429)
                    .insert_header("X-RateLimit-Limit", "100")
                    .insert_header("X-RateLimit-Period", "60")
                    .insert_header("X-RateLimit-Remaining", "0")
                    .insert_header("X-RateLimit-Reset", "0")
                    .set_body_json(serde_json::json!({"errors": ["Too many requests"]}))
            }
            HttpAnswer::KeptHeld => {
                keep(script, &body);
                script.held += 1;
                script.record.saw(|seen| seen.http_held += 1);
                accepted.set_delay(HOLD)
            }
        }
    }
}

/// An occurrence that can cross to the sink's thread.
struct Owned {
    conversation_id: String,
    flow: String,
    metric: String,
    key: String,
    time: Timestamp,
    elapsed: Option<SignedDuration>,
}

impl Owned {
    fn of(occurrence: &Occurrence<'_>) -> Self {
        assert_eq!(
            occurrence.source,
            Source::Attribute,
            "the world makes attribute keys"
        );
        Owned {
            conversation_id: occurrence.conversation_id.to_owned(),
            flow: occurrence.flow.to_owned(),
            metric: occurrence.metric.to_owned(),
            key: occurrence.key.to_owned(),
            time: occurrence.time,
            elapsed: occurrence.elapsed,
        }
    }

    fn occurrence(&self) -> Occurrence<'_> {
        Occurrence {
            conversation_id: &self.conversation_id,
            flow: &self.flow,
            metric: &self.metric,
            ids: None,
            key: &self.key,
            time: self.time,
            elapsed: self.elapsed,
            source: Source::Attribute,
        }
    }
}

type Reply = mpsc::Sender<Result<Pushed, PushFailure>>;

/// What the sink's thread is asked.
enum Job {
    /// A new trace: the sinks' randomness, and where `possibly doubled` logs go.
    Trace {
        seed: u64,
        logged: Arc<Mutex<BTreeSet<Pair>>>,
    },
    Push {
        process: usize,
        occurrences: Vec<Owned>,
        now: Timestamp,
        left: Option<Duration>,
        reply: Reply,
    },
    /// The process died: its sink (and its connections) with it.
    Forget { process: usize },
}

/// The sink's thread and the model, for the traces run on one test thread.
pub struct Bridge {
    jobs: Mutex<mpsc::Sender<Job>>,
    script: Arc<Mutex<Option<Script>>>,
}

/// Runs the jobs: each process's `DataDogSink`, on a real clock.
fn sink_thread(jobs: mpsc::Receiver<Job>, script: Arc<Mutex<Option<Script>>>, ready: mpsc::Sender<()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime.block_on(async {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/api/v1/distribution_points"))
            .respond_with(Model(script))
            .mount(&server)
            .await;
        server
    });
    let settings = DataDogSettings {
        base_url: server.uri(),
        api_key: ApiKey::new("0123456789abcdef0123456789abcdef").expect("key"),
        metrics: MetricNames::default(),
        static_tags: Vec::new(),
        self_metrics: false,
        compression: Compression::Deflate,
    };
    ready.send(()).expect("the world waits");
    let mut sinks: HashMap<usize, DataDogSink> = HashMap::new();
    let mut _logs = None;
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Trace { seed, logged } => {
                sinks.clear();
                fastrand::seed(seed);
                _logs = Some(super::super::capture_doubles(logged));
            }
            Job::Forget { process } => {
                sinks.remove(&process);
            }
            Job::Push {
                process,
                occurrences,
                now,
                left,
                reply,
            } => {
                let sink = sinks.entry(process).or_insert_with(|| {
                    DataDogSink::new(settings.clone())
                        .expect("sink")
                        .with_retry(RETRY)
                        .with_occurrences_per_request(OCCURRENCES_PER_REQUEST)
                });
                let occurrences: Vec<Occurrence<'_>> = occurrences.iter().map(Owned::occurrence).collect();
                let pushed = runtime.block_on(async {
                    let context = PushContext {
                        now,
                        deadline: left.map(|left| Instant::now() + left),
                    };
                    sink.push(&occurrences, &context).await
                });
                // The world may have stopped waiting (its process died): nothing to tell.
                let _ = reply.send(pushed);
            }
        }
    }
}

impl Bridge {
    pub fn start() -> Arc<Bridge> {
        let (jobs, receiver) = mpsc::channel();
        let script = Arc::new(Mutex::new(None));
        let (ready, started) = mpsc::channel();
        let shared = script.clone();
        std::thread::spawn(move || sink_thread(receiver, shared, ready));
        started.recv().expect("the sink's thread started");
        Arc::new(Bridge {
            jobs: Mutex::new(jobs),
            script,
        })
    }

    /// The bridge of this test thread.
    pub fn here() -> Arc<Bridge> {
        thread_local! {
            static BRIDGE: Arc<Bridge> = Bridge::start();
        }
        BRIDGE.with(Arc::clone)
    }

    fn send(&self, job: Job) {
        self.jobs
            .lock()
            .expect("lock")
            .send(job)
            .expect("the sink's thread runs");
    }

    /// A new trace's DataDog.
    pub fn begin(
        &self,
        answers: &[HttpAnswer],
        max_series: Option<usize>,
        record: Arc<Record>,
        series: Arc<BTreeMap<(String, String), (Pair, Timestamp)>>,
        seed: u64,
    ) {
        self.send(Job::Trace {
            seed,
            logged: record.logged.clone(),
        });
        *self.script.lock().expect("lock") = Some(Script {
            answers: answers.iter().copied().collect(),
            max_series,
            record,
            series,
            process: 0,
            now: Timestamp::UNIX_EPOCH,
            requests: 0,
            held: 0,
            kept: 0,
        });
    }
}

/// A process's real DataDog sink, seen from the world.
pub struct RealSink {
    pub bridge: Arc<Bridge>,
    pub process: Arc<Process>,
    /// AWS's clock.
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
}

impl Drop for RealSink {
    fn drop(&mut self) {
        self.bridge.send(Job::Forget {
            process: self.process.id,
        });
    }
}

impl Sink for RealSink {
    async fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        context: &PushContext,
    ) -> Result<Pushed, PushFailure> {
        if occurrences.is_empty() {
            return Ok(Pushed::default());
        }
        self.process.step().await;
        let (before, held_before, kept_before) = {
            let mut guard = self.bridge.script.lock().expect("lock");
            let script = guard.as_mut().expect("a trace is running");
            script.record.push_starts(self.process.id);
            script.process = self.process.id;
            script.now = (self.clock)();
            (script.requests, script.held, script.kept)
        };
        let (reply, answer) = mpsc::channel();
        self.bridge.send(Job::Push {
            process: self.process.id,
            occurrences: occurrences.iter().map(Owned::of).collect(),
            now: context.now,
            left: context
                .deadline
                .map(|deadline| deadline.saturating_duration_since(Instant::now())),
            reply,
        });
        // A blocking task stops the simulated clock while the sink pushes in real time.
        let pushed = tokio::task::spawn_blocking(move || answer.recv())
            .await
            .expect("the waiting task")
            .expect("the sink's thread answers");
        let (requests, held, kept) = {
            let guard = self.bridge.script.lock().expect("lock");
            let script = guard.as_ref().expect("a trace is running");
            (
                script.requests - before,
                script.held - held_before,
                script.kept - kept_before,
            )
        };
        let took = REQUEST_COST * requests as u32 + HELD_COST * held as u32;
        let took = context.deadline.map_or(took, |deadline| {
            took.min(deadline.saturating_duration_since(Instant::now()))
        });
        tokio::time::sleep(took).await;
        if kept > 0 {
            // The process may die after DataDog accepted the push and before it is confirmed.
            self.process.step().await;
        }
        if let Some(script) = self.bridge.script.lock().expect("lock").as_ref() {
            script.record.push_returns(self.process.id);
        }
        pushed
    }

    fn record(&self, _tally: &Tally, _now: Timestamp) {}

    async fn flush(&self, _context: &PushContext) {}
}
