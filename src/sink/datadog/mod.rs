//! The DataDog sink: each counted occurrence becomes a distribution point of value 1, posted to
//! `POST /api/v1/distribution_points` as DataDog's API specification describes it: a JSON body
//! compressed with zlib (`Content-Encoding: deflate`, the only encoding the specification lists
//! for this endpoint; uncompressed on request), the key in `DD-API-KEY`, and a `User-Agent`
//! naming this tool and its version.
//!
//! Distributions, not `count` series: DataDog keeps only the last count point per (metric,
//! tags, second), so two Lambda instances posting `1` in the same second would undercount;
//! distribution values aggregate on DataDog's side. Query them as
//! `count:genesys.flow.metric{*} by {flow,metric}`. Beside each count, `<metric>.elapsed` holds
//! the seconds since the start of the key's flow run in the conversation, for time-to-step
//! percentiles; the two series of a (flow, metric) always travel in the same request.
//!
//! Each answer the specification lists is handled:
//! - 202: delivered.
//! - 408, 5xx and connection errors: retried with exponential backoff and jitter; 429: retried
//!   after the time DataDog names (`X-RateLimit-Reset`, else `X-RateLimit-Period`); always within
//!   the push's deadline, which ends before the claims' lease, and no attempt starts with less
//!   than [`MIN_ATTEMPT`] left.
//! - 400 and 413: the request is split in halves and each half sent, down to a single (flow,
//!   metric), so that only what DataDog refuses fails (with DataDog's message) and the rest is
//!   delivered: one bad series never fails the other events of a batch.
//! - 403: permanent, for the whole push (the key is wrong).
//!
//! Self-metrics (`genesys.flow_metrics.*`) count settled batches, so they ride along with a
//! later push; when there is no point to carry them, they go alone once a minute, in one attempt
//! that never holds an invocation up.
//!
//! `validate.rs` asks DataDog whether a key is valid on its site (`GET /api/v1/validate`), for
//! `flow-metrics doctor`.

mod api_key;
pub mod payload;
mod self_metrics;
mod settings;
pub mod tags;
pub mod validate;

use std::io::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use flate2::write::ZlibEncoder;
use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderValue};
use tokio::time::Instant;

pub use api_key::{ApiKey, ApiKeyError};
pub use payload::MetricNames;
use payload::{Payload, Series, Unit};
pub use self_metrics::{SELF_METRIC_PREFIX, SELF_METRICS};
use self_metrics::{SELF_METRICS_FLUSH, SelfMetrics, self_metric_series};
pub use settings::{ApiKeySource, DataDogConfig, SeriesConfig};

use super::{PushContext, PushFailure, Sink, SinkError};
use crate::count::{Occurrence, Tally};
use crate::error_text::with_causes;
use crate::timing::{MIN_ATTEMPT, jittered};

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("genesys-flow-metrics/", env!("CARGO_PKG_VERSION"));

/// How request bodies are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// zlib (RFC 1950), `Content-Encoding: deflate`: what the specification lists.
    #[default]
    Deflate,
    /// Plain JSON, for proxies that want to read it.
    None,
}

/// How the sink talks to DataDog.
#[derive(Debug, Clone)]
pub struct DataDogSettings {
    /// `https://api.<DD_SITE>`, or `DD_URL` (any base URL, e.g. a local fake intake).
    pub base_url: String,
    pub api_key: ApiKey,
    /// Each validated with [`tags::check_metric_name`].
    pub metrics: MetricNames,
    /// Normalised with [`tags::parse_static_tags`].
    pub static_tags: Vec<String>,
    pub self_metrics: bool,
    pub compression: Compression,
}

/// How hard a request is tried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Posts occurrences to DataDog.
#[derive(Debug)]
pub struct DataDogSink {
    client: reqwest::Client,
    endpoint: String,
    settings: DataDogSettings,
    retry: RetryPolicy,
    occurrences_per_request: usize,
    self_metrics: Mutex<SelfMetrics>,
    /// The key as a header value marked sensitive, built once.
    api_key_header: HeaderValue,
}

/// A failed attempt, and what may help.
#[derive(Debug)]
struct AttemptError {
    error: SinkError,
    retryable: bool,
    /// DataDog refused the content (400, 413): a smaller request may pass.
    content_refused: bool,
    /// How long DataDog asks to wait (429).
    retry_after: Option<Duration>,
}

impl AttemptError {
    fn final_error(error: SinkError) -> Self {
        AttemptError {
            error,
            retryable: false,
            content_refused: false,
            retry_after: None,
        }
    }
}

/// How long a 429 asks to wait: the seconds until the limit resets, else its period.
fn rate_limit_wait(headers: &HeaderMap) -> Option<Duration> {
    let seconds = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<f64>().ok())
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
    };
    seconds("x-ratelimit-reset")
        .or_else(|| seconds("x-ratelimit-period"))
        .map(Duration::from_secs_f64)
}

impl DataDogSink {
    /// A sink with its own HTTP client (built once, reused by every push).
    pub fn new(settings: DataDogSettings) -> Result<DataDogSink, SinkError> {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|error| SinkError::Permanent(format!("cannot build the HTTP client: {error}")))?;
        let mut api_key_header = HeaderValue::from_str(settings.api_key.expose()).map_err(|_| {
            SinkError::Permanent("the DataDog API key holds characters a header cannot carry".to_owned())
        })?;
        api_key_header.set_sensitive(true);
        Ok(DataDogSink {
            api_key_header,
            client,
            endpoint: format!(
                "{}/api/v1/distribution_points",
                settings.base_url.trim_end_matches('/')
            ),
            settings,
            retry: RetryPolicy::default(),
            occurrences_per_request: payload::DEFAULT_OCCURRENCES_PER_REQUEST,
            self_metrics: Mutex::default(),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// At most this many occurrences per request (DataDog's payload limits; tests use small ones).
    pub fn with_occurrences_per_request(mut self, occurrences: usize) -> Self {
        self.occurrences_per_request = occurrences.max(1);
        self
    }

    /// The self-metrics to send with this push, if it is time, and the counts they take
    /// (to put back if the push fails).
    fn take_self_metrics(&self, now: Timestamp, late: u64, has_points: bool) -> (SelfMetrics, Vec<Series>) {
        if !self.settings.self_metrics {
            return (SelfMetrics::default(), Vec::new());
        }
        let mut pending = self.self_metrics.lock().unwrap_or_else(PoisonError::into_inner);
        pending.late += late;
        if late > 0 {
            pending.oldest.get_or_insert(now);
        }
        let Some(oldest) = pending.oldest else {
            return (SelfMetrics::default(), Vec::new());
        };
        let due = has_points || now.duration_since(oldest) >= SELF_METRICS_FLUSH;
        if !due {
            return (SelfMetrics::default(), Vec::new());
        }
        let taken = *pending;
        *pending = SelfMetrics::default();
        (taken, self_metric_series(&taken, now, &self.settings.static_tags))
    }

    /// Puts back what a failed push took, counting the failure.
    fn restore_self_metrics(&self, taken: SelfMetrics) {
        if !self.settings.self_metrics {
            return;
        }
        let mut pending = self.self_metrics.lock().unwrap_or_else(PoisonError::into_inner);
        pending.tally += taken.tally;
        pending.late += taken.late;
        pending.push_failures += taken.push_failures + 1;
        pending.oldest = match (taken.oldest, pending.oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    /// The body as sent, with its `Content-Encoding`.
    /// The request body, and its `Content-Encoding`. Shared, so that a retry sends it again
    /// without a copy.
    fn encode(&self, payload: &Payload<'_>) -> Result<(Bytes, Option<&'static str>), SinkError> {
        let json = serde_json::to_vec(payload)
            .map_err(|error| SinkError::Permanent(format!("cannot encode: {error}")))?;
        match self.settings.compression {
            Compression::None => Ok((Bytes::from(json), None)),
            Compression::Deflate => {
                let mut encoder =
                    ZlibEncoder::new(Vec::with_capacity(json.len() / 4), flate2::Compression::fast());
                encoder
                    .write_all(&json)
                    .and_then(|()| encoder.finish())
                    .map(|body| (Bytes::from(body), Some("deflate")))
                    .map_err(|error| SinkError::Permanent(format!("cannot compress: {error}")))
            }
        }
    }

    /// Sends one request, retrying what may pass later while the deadline allows: after the
    /// wait DataDog names for a 429, else with exponential backoff and jitter.
    async fn send(&self, units: &[Unit], deadline: Option<Instant>) -> Result<(), AttemptError> {
        let payload = Payload {
            series: units.iter().flat_map(|unit| &unit.series).collect(),
        };
        let (body, encoding) = self.encode(&payload).map_err(AttemptError::final_error)?;
        let mut backoff = self.retry.min_delay;
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(&body, encoding, deadline).await {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            if !failure.retryable || attempt >= self.retry.attempts {
                return Err(failure);
            }
            let wait = failure.retry_after.unwrap_or_else(|| jittered(backoff));
            if deadline.is_some_and(|deadline| Instant::now() + wait + MIN_ATTEMPT > deadline) {
                return Err(AttemptError {
                    error: SinkError::Transient(format!(
                        "{}; the next attempt ({} ms later) would not end before the push's deadline",
                        failure.error,
                        wait.as_millis()
                    )),
                    ..failure
                });
            }
            tracing::warn!(error = %failure.error, ?wait, "DataDog push failed; retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.retry.max_delay);
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        body: &Bytes,
        encoding: Option<&'static str>,
        deadline: Option<Instant>,
    ) -> Result<(), AttemptError> {
        let timeout = match deadline {
            None => self.retry.request_timeout,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left < MIN_ATTEMPT {
                    return Err(AttemptError::final_error(SinkError::Transient(format!(
                        "{} ms left to push, less than an attempt needs: the claims' lease or \
                         the invocation ends first",
                        left.as_millis()
                    ))));
                }
                left.min(self.retry.request_timeout)
            }
        };
        let mut request = self
            .client
            .post(&self.endpoint)
            .header("DD-API-KEY", self.api_key_header.clone())
            .header(CONTENT_TYPE, "application/json");
        if let Some(encoding) = encoding {
            request = request.header(CONTENT_ENCODING, encoding);
        }
        let response = request
            .timeout(timeout)
            .body(body.clone())
            .send()
            .await
            .map_err(|error| AttemptError {
                error: SinkError::Transient(format!(
                    "cannot reach DataDog: {}",
                    with_causes(&error.without_url())
                )),
                retryable: true,
                content_refused: false,
                retry_after: None,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = (status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| rate_limit_wait(response.headers()))
            .flatten();
        // DataDog explains refusals in the body (`{"errors": [...]}`); it never echoes the key.
        let message = response.text().await.unwrap_or_default();
        let message = format!("DataDog answered {status}: {}", message.trim());
        let retryable = status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error();
        let error = if retryable {
            SinkError::Transient(message)
        } else {
            SinkError::Permanent(message)
        };
        Err(AttemptError {
            error,
            retryable,
            content_refused: status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE,
            retry_after,
        })
    }

    /// Sends every request, isolating what DataDog refuses: a request refused for its content
    /// is split in halves, down to single units (a flow and metric's series). Returns the
    /// occurrences not delivered, and whether the self-metrics (the unit carrying none) were.
    async fn deliver(
        &self,
        requests: Vec<Vec<Unit>>,
        deadline: Option<Instant>,
    ) -> (Vec<(usize, SinkError)>, bool) {
        let mut undelivered = Vec::new();
        let mut self_metrics_sent = true;
        // A failure that is not about content (an outage, a bad key) fails what is left alike.
        let mut outage: Option<SinkError> = None;
        let mut stack: Vec<Vec<Unit>> = requests.into_iter().rev().collect();
        while let Some(mut part) = stack.pop() {
            let result = match &outage {
                Some(error) => Err(AttemptError::final_error(error.clone())),
                None => self.send(&part, deadline).await,
            };
            let Err(failure) = result else { continue };
            if failure.content_refused && part.len() > 1 {
                let second = part.split_off(part.len() / 2);
                tracing::info!(
                    error = %failure.error,
                    series = part.len() + second.len(),
                    "DataDog refused a request; sending each half to isolate what it refuses"
                );
                stack.push(second);
                stack.push(part);
                continue;
            }
            if !failure.content_refused {
                outage.get_or_insert_with(|| failure.error.clone());
            }
            for unit in part {
                if unit.occurrences.is_empty() {
                    self_metrics_sent = false;
                }
                undelivered.extend(
                    unit.occurrences
                        .into_iter()
                        .map(|index| (index, failure.error.clone())),
                );
            }
        }
        undelivered.sort_unstable_by_key(|(index, _)| *index);
        (undelivered, self_metrics_sent)
    }

    /// Self-metrics alone: one attempt, never a wait through an outage; put back on failure.
    async fn send_self_metrics(&self, taken: SelfMetrics, series: Vec<Series>, context: &PushContext) {
        let sent = match self.encode(&Payload {
            series: series.iter().collect(),
        }) {
            Ok((body, encoding)) => self
                .attempt(&body, encoding, context.deadline)
                .await
                .map_err(|failure| failure.error),
            Err(error) => Err(error),
        };
        if let Err(error) = sent {
            tracing::warn!(%error, "self-metrics not sent; they wait for the next push");
            self.restore_self_metrics(taken);
        }
    }
}

impl Sink for DataDogSink {
    async fn push(&self, occurrences: &[Occurrence<'_>], context: &PushContext) -> Result<(), PushFailure> {
        let plan = payload::plan(
            occurrences,
            &self.settings.metrics,
            &self.settings.static_tags,
            context.now,
            self.occurrences_per_request,
        );
        if plan.late > 0 {
            tracing::info!(
                late = plan.late,
                "keys too old for DataDog's window were sent at the processing time"
            );
        }
        if plan.requests.is_empty() {
            let (taken, series) = self.take_self_metrics(context.now, plan.late, false);
            if !series.is_empty() {
                self.send_self_metrics(taken, series, context).await;
            }
            return Ok(());
        }
        let mut requests: Vec<Vec<Unit>> = plan.requests.into_iter().map(|request| request.units).collect();
        let (taken, self_series) = self.take_self_metrics(context.now, plan.late, true);
        if let (Some(last), false) = (requests.last_mut(), self_series.is_empty()) {
            last.push(Unit {
                series: self_series,
                occurrences: Vec::new(),
            });
        }
        let (undelivered, self_metrics_sent) = self.deliver(requests, context.deadline).await;
        if !self_metrics_sent || !undelivered.is_empty() {
            // Counted again with the next push: the failure, and the counts not sent.
            self.restore_self_metrics(if self_metrics_sent {
                SelfMetrics::default()
            } else {
                taken
            });
        }
        if undelivered.is_empty() {
            Ok(())
        } else {
            Err(PushFailure { undelivered })
        }
    }

    fn record(&self, tally: &Tally, now: Timestamp) {
        if !self.settings.self_metrics {
            return;
        }
        let mut pending = self.self_metrics.lock().unwrap_or_else(PoisonError::into_inner);
        pending.tally += *tally;
        pending.oldest.get_or_insert(now);
    }

    async fn flush(&self, context: &PushContext) {
        let (taken, series) = self.take_self_metrics(context.now, 0, true);
        if !series.is_empty() {
            self.send_self_metrics(taken, series, context).await;
        }
    }
}
