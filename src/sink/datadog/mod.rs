//! The DataDog sink: each counted occurrence becomes a distribution point of value 1, posted to
//! `POST /api/v1/distribution_points` (gzip, `DD-API-KEY`).
//!
//! Distributions, not `count` series: DataDog keeps only the last count point per (metric,
//! tags, second), so two Lambda instances posting `1` in the same second would undercount;
//! distribution values aggregate on DataDog's side. Query them as
//! `count:genesys.flow.metric{*} by {flow,metric}`.
//!
//! Transient failures (connection errors, timeouts, 408, 429, 5xx) are retried with exponential
//! backoff and jitter, but only within the push's deadline (which ends before the claims'
//! lease), and no attempt starts with less than [`MIN_ATTEMPT`] left; 400, 403 and 413 are
//! permanent and carry DataDog's message. Self-metrics (`genesys.flow_metrics.*`) count settled
//! batches, so they ride along with a later push; when there is no point to carry them, they
//! go alone once a minute, in one attempt that never holds an invocation up.

mod api_key;
pub mod payload;
pub mod tags;

use std::io::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use flate2::Compression;
use flate2::write::GzEncoder;
use jiff::Timestamp;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use tokio::time::Instant;

pub use api_key::{ApiKey, ApiKeyError};
use payload::{Payload, Series};

use super::{PushContext, PushFailure, Sink, SinkError};
use crate::count::{Occurrence, Tally};
use crate::error_text::with_causes;
use crate::timing::MIN_ATTEMPT;

/// The metric counted occurrences are submitted as, by default.
pub const DEFAULT_METRIC: &str = "genesys.flow.metric";

/// Prefix of the pipeline's own metrics.
pub const SELF_METRIC_PREFIX: &str = "genesys.flow_metrics";

/// Self-metrics waiting longer than this are sent even by a push with no occurrence.
const SELF_METRICS_FLUSH: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// How the sink talks to DataDog.
#[derive(Debug, Clone)]
pub struct DataDogSettings {
    /// `https://api.<DD_SITE>`, or `DD_URL` (any base URL, e.g. a local fake intake).
    pub base_url: String,
    pub api_key: ApiKey,
    /// Validated with [`tags::check_metric_name`].
    pub metric: String,
    /// Normalised with [`tags::parse_static_tags`].
    pub static_tags: Vec<String>,
    pub self_metrics: bool,
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

/// Counts not yet sent as self-metrics.
#[derive(Debug, Default, Clone, Copy)]
struct SelfMetrics {
    tally: Tally,
    late: u64,
    push_failures: u64,
    oldest: Option<Timestamp>,
}

/// A failed attempt, and whether another attempt may help.
#[derive(Debug)]
struct AttemptError {
    error: SinkError,
    retryable: bool,
}

impl DataDogSink {
    /// A sink with its own HTTP client (built once, reused by every push).
    pub fn new(settings: DataDogSettings) -> Result<DataDogSink, SinkError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("genesys-flow-metrics/", env!("CARGO_PKG_VERSION")))
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

    /// Sends one payload, retrying transient failures while the deadline allows.
    async fn send(&self, payload: &Payload, deadline: Option<Instant>) -> Result<(), SinkError> {
        let body = gzip(payload)?;
        let total_delay = deadline.map(|deadline| {
            deadline
                .saturating_duration_since(Instant::now())
                .saturating_sub(MIN_ATTEMPT)
        });
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.retry.min_delay)
            .with_max_delay(self.retry.max_delay)
            .with_max_times(self.retry.attempts.saturating_sub(1))
            .with_total_delay(total_delay)
            .with_jitter();
        (|| self.attempt(&body, deadline))
            .retry(backoff)
            .when(|failure: &AttemptError| failure.retryable)
            .notify(|failure: &AttemptError, delay: Duration| {
                tracing::warn!(error = %failure.error, ?delay, "DataDog push failed; retrying");
            })
            .await
            .map_err(|failure| failure.error)
    }

    async fn attempt(&self, body: &[u8], deadline: Option<Instant>) -> Result<(), AttemptError> {
        let timeout = match deadline {
            None => self.retry.request_timeout,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left < MIN_ATTEMPT {
                    return Err(AttemptError {
                        error: SinkError::Transient(format!(
                            "{} ms left to push, less than an attempt needs: the claims' lease or \
                             the invocation ends first",
                            left.as_millis()
                        )),
                        retryable: false,
                    });
                }
                left.min(self.retry.request_timeout)
            }
        };
        let response = self
            .client
            .post(&self.endpoint)
            .header("DD-API-KEY", self.api_key_header.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, "gzip")
            .timeout(timeout)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|error| AttemptError {
                error: SinkError::Transient(format!(
                    "cannot reach DataDog: {}",
                    with_causes(&error.without_url())
                )),
                retryable: true,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
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
        Err(AttemptError { error, retryable })
    }
}

impl Sink for DataDogSink {
    async fn push(&self, occurrences: &[Occurrence<'_>], context: &PushContext) -> Result<(), PushFailure> {
        let plan = payload::plan(
            occurrences,
            &self.settings.metric,
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
        let mut requests = plan.requests;
        if requests.is_empty() {
            let (taken, series) = self.take_self_metrics(context.now, plan.late, false);
            if !series.is_empty() {
                self.send_self_metrics(taken, series, context).await;
            }
            return Ok(());
        }
        let (taken, series) = self.take_self_metrics(context.now, plan.late, true);
        if let Some(last) = requests.last_mut() {
            last.payload.series.extend(series);
        }
        let mut delivered = 0;
        for request in &requests {
            if let Err(error) = self.send(&request.payload, context.deadline).await {
                self.restore_self_metrics(taken);
                return Err(PushFailure { error, delivered });
            }
            delivered += request.occurrences;
        }
        Ok(())
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

impl DataDogSink {
    /// Self-metrics alone: one attempt, never a wait through an outage; put back on failure.
    async fn send_self_metrics(&self, taken: SelfMetrics, series: Vec<Series>, context: &PushContext) {
        let payload = Payload { series };
        let sent = match gzip(&payload) {
            Ok(body) => self
                .attempt(&body, context.deadline)
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

fn gzip(payload: &Payload) -> Result<Vec<u8>, SinkError> {
    let json = serde_json::to_vec(payload)
        .map_err(|error| SinkError::Permanent(format!("cannot encode: {error}")))?;
    let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::fast());
    encoder
        .write_all(&json)
        .and_then(|()| encoder.finish())
        .map_err(|error| SinkError::Permanent(format!("cannot compress: {error}")))
}

/// The pipeline's own metrics: name (after `genesys.flow_metrics.`) and `outcome` tag, in the
/// order of [`self_metric_values`].
pub const SELF_METRICS: [(&str, &str); 11] = [
    ("events", "read"),
    ("events", "ignored"),
    ("events", "rejected"),
    ("events", "failed"),
    ("keys", "counted"),
    ("keys", "already_counted"),
    ("keys", "pending"),
    ("keys", "invalid"),
    ("keys", "stale"),
    ("keys", "late"),
    ("push_failures", ""),
];

fn self_metric_values(pending: &SelfMetrics) -> [u64; 11] {
    let tally = &pending.tally;
    [
        tally.events_read,
        tally.events_ignored,
        tally.events_rejected,
        tally.events_failed,
        tally.keys_counted,
        tally.keys_already_counted,
        tally.keys_pending,
        tally.keys_invalid,
        tally.keys_stale,
        pending.late,
        pending.push_failures,
    ]
}

/// The pipeline's own metrics, each a distribution value of the count at `now`; zeros are left
/// out. Query them with `sum:`.
fn self_metric_series(pending: &SelfMetrics, now: Timestamp, static_tags: &[String]) -> Vec<Series> {
    SELF_METRICS
        .into_iter()
        .zip(self_metric_values(pending))
        .filter(|(_, count)| *count > 0)
        .map(|((name, outcome), count)| {
            let mut tags = Vec::with_capacity(static_tags.len() + 1);
            if !outcome.is_empty() {
                tags.push(tags::tag("outcome", outcome));
            }
            tags.extend(static_tags.iter().cloned());
            Series::distribution(
                &format!("{SELF_METRIC_PREFIX}.{name}"),
                tags,
                vec![(now.as_second(), vec![count as f64])],
            )
        })
        .collect()
}
