//! AWS setup shared by the entry points: the SDK configuration from the standard chain
//! (environment, profile, container or instance role), checked up front so that a missing
//! region or missing credentials is one clear message rather than a failure on the first call.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::ProvideCredentials as _;

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

/// Loads the SDK configuration. `endpoint_url` (or the standard `AWS_ENDPOINT_URL`) points the
/// clients at an emulator.
pub async fn load_config(endpoint_url: Option<&str>) -> Result<SdkConfig, AwsSetupError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
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
