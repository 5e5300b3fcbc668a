//! AWS setup shared by the entry points: the SDK configuration from the standard chain
//! (environment, profile, container or instance role), checked up front so that a missing
//! region or missing credentials is one clear message rather than a failure on the first call.
//! [`clock`] checks this machine's clock against AWS's before a command writes to a live table.

pub mod clock;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::ProvideCredentials as _;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};

use crate::error_text::with_causes;

/// Why AWS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AwsSetupError {
    #[error("no AWS region is configured: set AWS_REGION (or a region in your AWS profile)")]
    NoRegion,
    #[error(
        "no AWS credentials were found ({0}): set AWS_PROFILE or AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY; an emulator accepts any values"
    )]
    NoCredentials(String),
}

/// Why an AWS call failed, as people and checks read it: the service's error code
/// (`AccessDeniedException`, `ResourceNotFoundException`, …) when it answered, and the whole
/// reason on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct AwsCallError {
    pub code: Option<String>,
    pub reason: String,
}

impl AwsCallError {
    /// The failure an SDK call answered with.
    pub fn of<E, R>(error: &SdkError<E, R>) -> AwsCallError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        match error.as_service_error() {
            Some(service) => AwsCallError {
                code: service.code().map(str::to_owned),
                reason: format!(
                    "{}: {}",
                    service.code().unwrap_or("service error"),
                    service.message().unwrap_or_default()
                ),
            },
            None => AwsCallError {
                code: None,
                reason: with_causes(error),
            },
        }
    }

    /// Whether the caller's identity may not make the call.
    pub fn denied(&self) -> bool {
        self.code.as_deref().is_some_and(|code| {
            code.starts_with("AccessDenied")
                || code.starts_with("AuthorizationError")
                || code == "UnauthorizedOperation"
        })
    }
}

/// A Secrets Manager secret's string (`None` if it holds binary), or why it cannot be read.
pub async fn secret_string(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<Option<String>, AwsCallError> {
    let secret = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|error| AwsCallError::of(&error))?;
    Ok(secret.secret_string().map(str::to_owned))
}

/// Loads the SDK configuration. `endpoint_url` (or the standard `AWS_ENDPOINT_URL`) points the
/// clients at an emulator.
pub async fn load_config(endpoint_url: Option<&str>) -> Result<SdkConfig, AwsSetupError> {
    load_config_in(endpoint_url, None).await
}

/// Loads the SDK configuration, in `region` when given rather than the chain's.
pub async fn load_config_in(
    endpoint_url: Option<&str>,
    region: Option<&str>,
) -> Result<SdkConfig, AwsSetupError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(AwsSetupError::NoRegion);
    }
    let provider = config
        .credentials_provider()
        .ok_or_else(|| AwsSetupError::NoCredentials("no credentials provider".to_owned()))?;
    provider
        .provide_credentials()
        .await
        .map_err(|error| AwsSetupError::NoCredentials(error.to_string()))?;
    Ok(config)
}

/// Per-attempt and per-call time limits of ledger calls.
pub const DYNAMODB_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
pub const DYNAMODB_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(6);

/// A DynamoDB client whose calls fit inside an invocation: an attempt that hangs is cut after
/// two seconds and retried (three attempts, backoff from 50 ms, under the standard mode's retry
/// budget, which stops retrying when most calls fail), and no call takes more than six seconds,
/// so a ledger outage fails the event in time for its claims to be given back.
pub fn dynamodb_client(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
    let timeouts = TimeoutConfig::builder()
        .operation_attempt_timeout(DYNAMODB_ATTEMPT_TIMEOUT)
        .operation_timeout(DYNAMODB_CALL_TIMEOUT)
        .build();
    let retries = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(std::time::Duration::from_millis(50))
        .with_max_backoff(std::time::Duration::from_secs(1));
    let config = aws_sdk_dynamodb::config::Builder::from(config)
        .timeout_config(timeouts)
        .retry_config(retries)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Whether S3 buckets must be addressed path-style: an emulator's endpoint (`--endpoint-url`,
/// `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`) serves buckets under its own host, not as host names
/// of their own.
pub fn emulated_s3(config: &SdkConfig) -> bool {
    config.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
}

/// An S3 client. With `path_style`, buckets are addressed as `ENDPOINT/BUCKET/KEY` rather than
/// as a host name of their own: what an emulator's endpoint (`--endpoint-url`,
/// `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`) serves.
pub fn s3_client(config: &SdkConfig, path_style: bool) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_calls_are_bounded_in_time_and_attempts() {
        let config = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_config::Region::new("eu-west-1"))
            .build();
        let client = dynamodb_client(&config);
        let timeouts = client.config().timeout_config().expect("timeouts");
        assert_eq!(
            timeouts.operation_attempt_timeout(),
            Some(DYNAMODB_ATTEMPT_TIMEOUT)
        );
        assert_eq!(timeouts.operation_timeout(), Some(DYNAMODB_CALL_TIMEOUT));
        let retries = client.config().retry_config().expect("retries");
        assert_eq!(retries.max_attempts(), 3);
        // Every attempt fits in the call's limit, and a failing call ends well inside the
        // default invocation, leaving time to give its claims back.
        assert!(DYNAMODB_ATTEMPT_TIMEOUT * 3 <= DYNAMODB_CALL_TIMEOUT);
        assert!(DYNAMODB_CALL_TIMEOUT.as_secs() * 2 < crate::timing::DEFAULT_TIMEOUT.as_secs() as u64);
    }

    /// Each timing relation holds for the slowest ledger call the client allows.
    #[test]
    fn confirming_fits_the_slowest_ledger_call() {
        use crate::timing::{CONFIRM_RESERVE, LEASE_SAFETY};
        let second = std::time::Duration::from_secs(1);
        // A confirm (or release) starting at the push's deadline ends, at its slowest, a second
        // before the invocation's: Lambda never kills a process between push and confirm.
        assert!(CONFIRM_RESERVE >= DYNAMODB_CALL_TIMEOUT + second);
        // A confirm starting as a push ends at its lease bound ends before any process whose
        // clock is within the allowed offset of AWS's (so of ours, twice that) sees the lease over.
        assert!(LEASE_SAFETY >= DYNAMODB_CALL_TIMEOUT + 2 * clock::MAX_CLOCK_OFFSET + second);
    }
}
