//! Whether DataDog takes an API key on a site: `GET /api/v1/validate` with the key in
//! `DD-API-KEY`, as DataDog's API specification describes it (`AuthenticationApi.validate`):
//! 200 `{"valid": true}` for a key of the site's organisation, 403 `{"errors": ["Forbidden"]}`
//! for any other, 429 when rate-limited (waited out as DataDog says, a few times). A key belongs
//! to one site: the same key is refused on every other.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderValue};
use serde::Deserialize;

use super::request::rate_limit_wait;
use super::{ApiKey, USER_AGENT};
use crate::error_text::with_causes;

/// Longest wait for DataDog's answer.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts while DataDog answers 429, each after the wait it names (at most
/// [`MAX_RATE_LIMIT_WAIT`]).
const RATE_LIMITED_ATTEMPTS: u32 = 3;
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(10);

/// What DataDog said of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    /// 200 `{"valid": true}`.
    Valid,
    /// 403, or 200 without `"valid": true`: with DataDog's status and message.
    Refused { status: u16, message: String },
}

/// Why DataDog's verdict could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidateError {
    #[error("the DataDog API key holds characters a header cannot carry")]
    UnusableKey,
    #[error("cannot reach DataDog at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("DataDog is rate-limiting requests (429): ask again in a minute")]
    RateLimited,
    #[error("DataDog answered {status}: {message}")]
    Status { status: u16, message: String },
}

#[derive(Deserialize)]
struct Validation {
    #[serde(default)]
    valid: bool,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

/// DataDog's message: its `{"errors": [...]}` joined, else the start of the body.
fn message_of(body: &str) -> String {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(error) if !error.errors.is_empty() => error.errors.join("; "),
        _ => body.trim().chars().take(200).collect(),
    }
}

/// Asks DataDog at `base_url` (`https://api.<site>`, or `DD_URL`) whether it takes `key`.
pub async fn validate_key(base_url: &str, key: &ApiKey) -> Result<KeyVerdict, ValidateError> {
    let url = format!("{}/api/v1/validate", base_url.trim_end_matches('/'));
    let unreachable = |error: reqwest::Error| ValidateError::Unreachable {
        url: url.clone(),
        reason: with_causes(&error.without_url()),
    };
    let mut header = HeaderValue::from_str(key.expose()).map_err(|_| ValidateError::UnusableKey)?;
    header.set_sensitive(true);
    let client = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(VALIDATE_TIMEOUT)
        .build()
        .map_err(unreachable)?;
    let mut attempt = 1;
    let response = loop {
        let response = client
            .get(&url)
            .header("DD-API-KEY", header.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        if response.status() != StatusCode::TOO_MANY_REQUESTS || attempt == RATE_LIMITED_ATTEMPTS {
            break response;
        }
        attempt += 1;
        let wait = rate_limit_wait(response.headers()).unwrap_or(Duration::from_secs(1));
        tokio::time::sleep(wait.min(MAX_RATE_LIMIT_WAIT)).await;
    };
    let status = response.status();
    let body = response.text().await.map_err(unreachable)?;
    match status {
        StatusCode::OK => match serde_json::from_str::<Validation>(&body) {
            Ok(Validation { valid: true }) => Ok(KeyVerdict::Valid),
            _ => Ok(KeyVerdict::Refused {
                status: status.as_u16(),
                message: message_of(&body),
            }),
        },
        StatusCode::FORBIDDEN => Ok(KeyVerdict::Refused {
            status: status.as_u16(),
            message: message_of(&body),
        }),
        StatusCode::TOO_MANY_REQUESTS => Err(ValidateError::RateLimited),
        _ => Err(ValidateError::Status {
            status: status.as_u16(),
            message: message_of(&body),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datadogs_message_is_its_errors_else_the_start_of_the_body() {
        assert_eq!(message_of(r#"{"errors": ["Forbidden"]}"#), "Forbidden");
        assert_eq!(message_of(r#"{"errors": ["a", "b"]}"#), "a; b");
        assert_eq!(
            message_of(" <html>bad gateway</html>\n"),
            "<html>bad gateway</html>"
        );
    }
}
