//! The org's OAuth client: its credentials (from a secret or given), and the bearer token a
//! client-credentials grant at `https://login.<region domain>/oauth/token` gives, kept and
//! renewed before it expires; refused credentials are not tried again for every id.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use tokio::time::Instant;

use super::{NameError, Shared, message, retry_after};
use crate::aws::AwsCallError;
use crate::error_text::with_causes;

/// A token is renewed when less than this part of its life is left (at most five minutes).
const TOKEN_RENEWAL: Duration = Duration::from_secs(300);

/// An OAuth client of the org (client credentials grant). Printing it hides the secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish()
    }
}

/// Why the OAuth client could not be had from its secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error(transparent)]
    Read(#[from] AwsCallError),
    #[error("the secret holds no string")]
    NotAString,
    // Where, not what: serde_json's own message can quote the secret's text.
    #[error("the secret is not {{\"clientId\": …, \"clientSecret\": …}} (line {line}, column {column})")]
    NotClient { line: usize, column: usize },
    #[error("clientId and clientSecret must not be empty")]
    Empty,
}

impl Credentials {
    /// Reads `{"clientId": …, "clientSecret": …}` from a Secrets Manager secret.
    pub async fn from_secret(
        client: &aws_sdk_secretsmanager::Client,
        arn: &str,
    ) -> Result<Self, CredentialsError> {
        let text = crate::aws::secret_string(client, arn)
            .await?
            .ok_or(CredentialsError::NotAString)?;
        let credentials =
            serde_json::from_str::<Credentials>(&text).map_err(|error| CredentialsError::NotClient {
                line: error.line(),
                column: error.column(),
            })?;
        if credentials.client_id.trim().is_empty() || credentials.client_secret.trim().is_empty() {
            return Err(CredentialsError::Empty);
        }
        Ok(credentials)
    }
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    renew_at: Instant,
}

/// The token, or why there is none (kept so that refused credentials are not tried for every id).
#[derive(Debug, Default)]
pub(super) struct TokenState {
    token: Option<Token>,
    refused: Option<(Instant, NameError)>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Shared {
    /// The bearer token, fetched or renewed when needed (or when `renew` says Genesys refused it).
    pub(super) async fn token(&self, renew: bool) -> Result<String, NameError> {
        let mut state = self.token.lock().await;
        let now = Instant::now();
        if let Some((until, error)) = &state.refused
            && now < *until
        {
            return Err(error.clone());
        }
        if let Some(current) = state
            .token
            .as_ref()
            .filter(|current| !renew && now < current.renew_at)
        {
            return Ok(current.value.clone());
        }
        match self.new_token().await {
            Ok(token) => {
                let value = token.value.clone();
                *state = TokenState {
                    token: Some(token),
                    refused: None,
                };
                Ok(value)
            }
            Err(error) => {
                let wait = error.retry_after().unwrap_or(self.settings.retry_after_failure);
                state.token = None;
                state.refused = Some((Instant::now() + wait, error.clone()));
                Err(error)
            }
        }
    }

    /// A client-credentials grant.
    async fn new_token(&self) -> Result<Token, NameError> {
        let settings = &self.settings;
        let response = self
            .client
            .post(format!(
                "{}/oauth/token",
                settings.login_url.trim_end_matches('/')
            ))
            .basic_auth(
                &settings.credentials.client_id,
                Some(&settings.credentials.client_secret),
            )
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .map_err(|error| NameError::Unreachable(with_causes(&error)))?;
        let status = response.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(NameError::RateLimited {
                retry_after: retry_after(&response).unwrap_or(settings.retry_after_failure),
            });
        }
        if !status.is_success() {
            let message = message(response).await;
            return Err(if status.is_client_error() {
                NameError::Credentials {
                    status: status.as_u16(),
                    message,
                }
            } else {
                NameError::Status {
                    status: status.as_u16(),
                    message,
                }
            });
        }
        let body = response
            .text()
            .await
            .map_err(|error| NameError::Unreachable(with_causes(&error)))?;
        let answer: TokenAnswer = serde_json::from_str(&body).map_err(|error| NameError::Status {
            status: status.as_u16(),
            message: format!("the token answer is not understood: {error}"),
        })?;
        // Genesys's tokens last a day by default; renew one before its last tenth (or five
        // minutes) so that no request carries an expired token.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(0));
        Ok(Token {
            value: answer.access_token,
            renew_at: Instant::now() + lifetime.saturating_sub((lifetime / 10).min(TOKEN_RENEWAL)),
        })
    }
}
