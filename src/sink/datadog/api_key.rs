//! The DataDog API key: where it comes from, and how it is kept out of every log and error.
//!
//! `DD_API_KEY` gives it directly; `DD_API_KEY_SECRET_ARN` names an AWS Secrets Manager secret
//! whose string is the key, read once per cold start. The key's `Debug` and `Display` print
//! `***`, and the HTTP header carrying it is marked sensitive.

use std::fmt;

use aws_sdk_secretsmanager::Client;

/// A DataDog API key. Printing it shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("the DataDog API key is empty")]
    Empty,
    #[error("cannot read the DataDog API key from secret {arn}: {message}")]
    Secret { arn: String, message: String },
    #[error("secret {0} holds no string: store the API key as the secret's plain text")]
    NotAString(String),
}

impl ApiKey {
    /// A key given as text (surrounding whitespace is dropped).
    pub fn new(key: &str) -> Result<ApiKey, ApiKeyError> {
        match key.trim() {
            "" => Err(ApiKeyError::Empty),
            key => Ok(ApiKey(key.to_owned())),
        }
    }

    /// Reads the key from a Secrets Manager secret's string.
    pub async fn from_secret(client: &Client, arn: &str) -> Result<ApiKey, ApiKeyError> {
        let text = crate::aws::secret_string(client, arn)
            .await
            .map_err(|error| ApiKeyError::Secret {
                arn: arn.to_owned(),
                message: error.reason,
            })?
            .ok_or_else(|| ApiKeyError::NotAString(arn.to_owned()))?;
        ApiKey::new(&text)
    }

    /// Whether the key has the form of DataDog's API keys: 32 hexadecimal digits. The secret the
    /// stack generated up to v0.1.0, a placeholder of 32 letters and digits, has not.
    pub fn has_datadog_form(&self) -> bool {
        self.0.len() == 32 && self.0.chars().all(|c| c.is_ascii_hexdigit())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datadog_keys_are_32_hex_digits_and_the_old_placeholder_is_not() {
        let key = |text: &str| ApiKey::new(text).expect("a key");
        assert!(key("0123456789abcdef0123456789abcdef").has_datadog_form());
        // What CDK's generateSecretString gave v0.1.0: 32 letters and digits.
        assert!(!key("Xq7pLm2RkT9vW4bN8cY3dF6gH1jK5sZa").has_datadog_form());
        assert!(!key("0123456789abcdef").has_datadog_form());
        assert!(!key("0123456789abcdef0123456789abcdef0").has_datadog_form());
    }
}
