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
//!   than [`MIN_ATTEMPT`](crate::timing::MIN_ATTEMPT) left. A 5xx, or a timeout or broken
//!   connection after the request may have reached DataDog, may have been taken all the same:
//!   the occurrences of such an attempt, sent again or given up, are reported as `resent` (they
//!   may be counted twice), and the pipeline logs each key `possibly doubled`. A refused connection, 408 and 429
//!   took nothing.
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
mod request;
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
use reqwest::header::HeaderValue;
use tokio::time::Instant;

pub use api_key::{ApiKey, ApiKeyError};
pub use payload::MetricNames;
use payload::{Payload, Series, Unit};
use request::AttemptError;
pub use request::rate_limit_wait;
pub use self_metrics::{COVERAGE_METRIC, SELF_METRIC_PREFIX, SELF_METRICS, UNEXPLAINED_METRIC};
use self_metrics::{SELF_METRICS_FLUSH, SelfMetrics, self_metric_series};
pub use settings::{ApiKeySource, DataDogConfig, SeriesConfig};

use super::{PushContext, PushFailure, Pushed, Sink, SinkError};
use crate::count::{Occurrence, Tally};

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

/// What delivering a push's requests came to.
struct Delivery {
    /// The occurrences not delivered, each with why.
    undelivered: Vec<(usize, SinkError)>,
    /// The occurrences of requests that DataDog may have taken and that were then sent again or
    /// given up: sorted, each once.
    resent: Vec<usize>,
    /// Whether the self-metrics (the unit carrying no occurrence) were delivered.
    self_metrics_sent: bool,
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

    /// Sends series of the caller's own (the scheduled reconciliation's coverage), with a
    /// push's retries, until `deadline`.
    pub async fn send_series(&self, series: Vec<Series>, deadline: Option<Instant>) -> Result<(), SinkError> {
        let unit = Unit {
            series,
            occurrences: Vec::new(),
        };
        self.send(std::slice::from_ref(&unit), deadline)
            .await
            .result
            .map_err(|failure| failure.error)
    }

    /// The static tags every series carries (`DD_TAGS`).
    pub fn static_tags(&self) -> &[String] {
        &self.settings.static_tags
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

    /// Sends every request, isolating what DataDog refuses: a request refused for its content
    /// is split in halves, down to single units (a flow and metric's series).
    async fn deliver(&self, requests: Vec<Vec<Unit>>, deadline: Option<Instant>) -> Delivery {
        let mut undelivered = Vec::new();
        let mut resent = Vec::new();
        let mut self_metrics_sent = true;
        // A failure that is not about content (an outage, a bad key) fails what is left alike.
        let mut outage: Option<SinkError> = None;
        let mut stack: Vec<Vec<Unit>> = requests.into_iter().rev().collect();
        while let Some(mut part) = stack.pop() {
            let result = match &outage {
                Some(error) => Err(AttemptError::final_error(error.clone())),
                None => {
                    let sent = self.send(&part, deadline).await;
                    if sent.possibly_doubled {
                        resent.extend(part.iter().flat_map(|unit| unit.occurrences.iter().copied()));
                    }
                    sent.result
                }
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
        // A request halved after an attempt DataDog may have taken carried its halves' keys.
        resent.sort_unstable();
        resent.dedup();
        Delivery {
            undelivered,
            resent,
            self_metrics_sent,
        }
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
    async fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        context: &PushContext,
    ) -> Result<Pushed, PushFailure> {
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
            return Ok(Pushed::default());
        }
        let mut requests: Vec<Vec<Unit>> = plan.requests.into_iter().map(|request| request.units).collect();
        let (taken, self_series) = self.take_self_metrics(context.now, plan.late, true);
        if let (Some(last), false) = (requests.last_mut(), self_series.is_empty()) {
            last.push(Unit {
                series: self_series,
                occurrences: Vec::new(),
            });
        }
        let Delivery {
            undelivered,
            resent,
            self_metrics_sent,
        } = self.deliver(requests, context.deadline).await;
        if !self_metrics_sent || !undelivered.is_empty() {
            // Counted again with the next push: the failure, and the counts not sent.
            self.restore_self_metrics(if self_metrics_sent {
                SelfMetrics::default()
            } else {
                taken
            });
        }
        if undelivered.is_empty() {
            Ok(Pushed { resent })
        } else {
            Err(PushFailure { undelivered, resent })
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
