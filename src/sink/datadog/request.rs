//! One request to DataDog: its attempts, retried while the push's deadline allows, and what
//! each answer means (delivered, worth retrying, refused for its content, or refused outright).
//!
//! An attempt that ends with a server error (5xx), or without an answer after the request may
//! have reached DataDog (a timeout, a broken connection), may have been taken all the same. If
//! the request is then sent again, or given up (its keys go back to be pushed again), DataDog
//! may count its points twice: [`Sent::possibly_doubled`] says so, and each such attempt is
//! logged. The pipeline then logs each of its keys with the marker `possibly doubled`, which the
//! stack's metric filter counts (`possiblyDoubled` in `src/log_markers.json`), once per key.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderMap};
use tokio::time::Instant;

use super::DataDogSink;
use super::payload::{Payload, Unit};
use crate::error_text::with_causes;
use crate::sink::SinkError;
use crate::timing::{MIN_ATTEMPT, jittered};

/// A failed attempt, and what may help.
#[derive(Debug)]
pub(super) struct AttemptError {
    pub(super) error: SinkError,
    retryable: bool,
    /// DataDog refused the content (400, 413): a smaller request may pass.
    pub(super) content_refused: bool,
    /// How long DataDog asks to wait (429).
    retry_after: Option<Duration>,
    /// DataDog may have taken the points: a server error, or no answer after the request left.
    possibly_taken: bool,
}

impl AttemptError {
    pub(super) fn final_error(error: SinkError) -> Self {
        AttemptError {
            error,
            retryable: false,
            content_refused: false,
            retry_after: None,
            possibly_taken: false,
        }
    }
}

/// What sending one request came to.
#[derive(Debug)]
pub(super) struct Sent {
    pub(super) result: Result<(), AttemptError>,
    /// An attempt that DataDog may have taken was followed by another, or by giving up: the
    /// request's points may be counted twice.
    pub(super) possibly_doubled: bool,
}

/// Logs an attempt DataDog may have taken, whose points go again: now (`sent_again`), or when
/// their events are retried. (The keys are counted by the pipeline, each on a line of its own.)
fn log_possibly_doubled(error: &SinkError, points: usize, sent_again: bool) {
    if sent_again {
        tracing::warn!(
            %error,
            points,
            "DataDog may have taken this request though its answer was a server error or never \
             came: its points may be counted twice; sent again"
        );
    } else {
        tracing::warn!(
            %error,
            points,
            "DataDog may have taken this request though its answer was a server error or never \
             came: its points may be counted twice; given up, its keys are pushed again when their \
             events are retried"
        );
    }
}

/// How long a 429 asks to wait: the seconds until the limit resets, else its period.
pub fn rate_limit_wait(headers: &HeaderMap) -> Option<Duration> {
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
    /// Sends one request, retrying what may pass later while the deadline allows: after the
    /// wait DataDog names for a 429, else with exponential backoff and jitter.
    pub(super) async fn send(&self, units: &[Unit], deadline: Option<Instant>) -> Sent {
        let payload = Payload {
            series: units.iter().flat_map(|unit| &unit.series).collect(),
        };
        let (body, encoding) = match self.encode(&payload) {
            Ok(encoded) => encoded,
            Err(error) => {
                return Sent {
                    result: Err(AttemptError::final_error(error)),
                    possibly_doubled: false,
                };
            }
        };
        let points: usize = units.iter().map(|unit| unit.occurrences.len()).sum();
        let mut possibly_doubled = false;
        let mut backoff = self.retry.min_delay;
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(&body, encoding, deadline).await {
                Ok(()) => {
                    return Sent {
                        result: Ok(()),
                        possibly_doubled,
                    };
                }
                Err(failure) => failure,
            };
            possibly_doubled |= failure.possibly_taken;
            let give_up = |failure: AttemptError| {
                if failure.possibly_taken {
                    log_possibly_doubled(&failure.error, points, false);
                }
                Sent {
                    result: Err(failure),
                    possibly_doubled,
                }
            };
            if !failure.retryable || attempt >= self.retry.attempts {
                return give_up(failure);
            }
            let wait = failure.retry_after.unwrap_or_else(|| jittered(backoff));
            if deadline.is_some_and(|deadline| Instant::now() + wait + MIN_ATTEMPT > deadline) {
                return give_up(AttemptError {
                    error: SinkError::Transient(format!(
                        "{}; the next attempt ({} ms later) would not end before the push's deadline",
                        failure.error,
                        wait.as_millis()
                    )),
                    ..failure
                });
            }
            if failure.possibly_taken {
                log_possibly_doubled(&failure.error, points, true);
            }
            tracing::warn!(error = %failure.error, ?wait, "DataDog push failed; retrying");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.retry.max_delay);
            attempt += 1;
        }
    }

    pub(super) async fn attempt(
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
                // A connection that failed or was refused sent nothing. Anything else (a
                // timeout, a reset, a broken answer) may come after DataDog read the whole
                // request. A timeout of the whole attempt that fires while still connecting is
                // counted too: reqwest does not say in which phase it fired, and reporting a
                // double that did not happen is the safe mistake.
                possibly_taken: !error.is_connect(),
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
            // A server error may come after DataDog took the points (its answer lost behind
            // its load balancer). Not a 408: the specification lists it as "Request timeout",
            // which HTTP defines (RFC 9110, 15.5.9) as the server not having received the
            // whole request in time, so nothing was taken. Nor 429, 400, 403 or 413: refusals
            // DataDog answers without taking the points.
            possibly_taken: status.is_server_error(),
        })
    }
}
