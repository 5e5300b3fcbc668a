//! One request to DataDog: its attempts, retried while the push's deadline allows, and what
//! each answer means (delivered, worth retrying, refused for its content, or refused outright).

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
}

impl AttemptError {
    pub(super) fn final_error(error: SinkError) -> Self {
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
    /// Sends one request, retrying what may pass later while the deadline allows: after the
    /// wait DataDog names for a 429, else with exponential backoff and jitter.
    pub(super) async fn send(&self, units: &[Unit], deadline: Option<Instant>) -> Result<(), AttemptError> {
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
}
