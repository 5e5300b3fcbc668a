//! What Genesys's answers say besides their body: how long a 429 asks to wait (`Retry-After`),
//! and the error message of the Platform API or of the login service.

use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use serde::Deserialize;

/// `Retry-After` in seconds.
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// Genesys's error message: the Platform API's `{"message": …}` or the login service's OAuth 2
/// `{"error_description": …}`; else the start of the body.
pub async fn message(response: reqwest::Response) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(alias = "error_description")]
        message: String,
    }
    let body = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&body) {
        Ok(error) => error.message,
        Err(_) => body.chars().take(200).collect(),
    }
}
