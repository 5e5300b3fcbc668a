//! The DataDog sink's settings, read from the environment: where to send (`DD_SITE`, one of
//! DataDog's documented sites, or `DD_URL`), the key or its secret, the series' names and static
//! tags, self-metrics and compression.

use crate::config::{ConfigError, Env, setting};
use crate::sites;

use super::payload::{DURATION_SUFFIX, ELAPSED_SUFFIX};
use super::{ApiKey, ApiKeyError, Compression, DataDogSettings, MetricNames, tags};

/// Where the DataDog API key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeySource {
    /// `DD_API_KEY`.
    Key(ApiKey),
    /// `DD_API_KEY_SECRET_ARN`: read from Secrets Manager once per cold start.
    SecretArn(String),
}

impl ApiKeySource {
    /// The key: as given, or read from its secret with `secrets`.
    pub async fn key(&self, secrets: &aws_sdk_secretsmanager::Client) -> Result<ApiKey, ApiKeyError> {
        match self {
            ApiKeySource::Key(key) => Ok(key.clone()),
            ApiKeySource::SecretArn(arn) => ApiKey::from_secret(secrets, arn).await,
        }
    }
}

/// The DataDog settings as configured, before the API key is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDogConfig {
    pub base_url: String,
    pub api_key: ApiKeySource,
    pub metrics: MetricNames,
    pub static_tags: Vec<String>,
    pub self_metrics: bool,
    pub compression: Compression,
}

impl DataDogConfig {
    /// Reads `DD_SITE` (default `datadoghq.com`) or `DD_URL`, `DD_API_KEY` or
    /// `DD_API_KEY_SECRET_ARN`, `DD_TAGS`, the metric names (`FLOW_METRICS_METRIC`, …),
    /// `FLOW_METRICS_ELAPSED`, `FLOW_METRICS_SELF_METRICS` and `FLOW_METRICS_COMPRESSION`.
    pub fn from_env(env: Env<'_>) -> Result<DataDogConfig, ConfigError> {
        let base_url = match (setting(env, "DD_URL"), setting(env, "DD_SITE")) {
            (Some(url), _) if url.starts_with("http://") || url.starts_with("https://") => {
                url.trim_end_matches('/').to_owned()
            }
            (Some(_), _) => return Err(ConfigError::new("DD_URL", "must start with http:// or https://")),
            (None, site) => format!(
                "https://api.{}",
                check_site(site.as_deref().unwrap_or("datadoghq.com"))?
            ),
        };
        let api_key = match (setting(env, "DD_API_KEY"), setting(env, "DD_API_KEY_SECRET_ARN")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "DD_API_KEY_SECRET_ARN",
                    "set either DD_API_KEY or DD_API_KEY_SECRET_ARN, not both",
                ));
            }
            (Some(key), None) => {
                ApiKeySource::Key(ApiKey::new(&key).map_err(|error| ConfigError::new("DD_API_KEY", error))?)
            }
            (None, Some(arn)) if arn.starts_with("arn:") && arn.contains(":secretsmanager:") => {
                ApiKeySource::SecretArn(arn)
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "DD_API_KEY_SECRET_ARN",
                    "is not a Secrets Manager secret ARN",
                ));
            }
            (None, None) => {
                return Err(ConfigError::new(
                    "DD_API_KEY",
                    "is not set: set DD_API_KEY, or DD_API_KEY_SECRET_ARN to a secret holding the key",
                ));
            }
        };
        let SeriesConfig { metrics, static_tags } = SeriesConfig::from_env(env)?;
        let self_metrics = match setting(env, "FLOW_METRICS_SELF_METRICS").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(ConfigError::new(
                    "FLOW_METRICS_SELF_METRICS",
                    format!("{other:?} is neither true nor false"),
                ));
            }
        };
        let compression = match setting(env, "FLOW_METRICS_COMPRESSION").as_deref() {
            None | Some("deflate") => Compression::Deflate,
            Some("none") => Compression::None,
            Some(other) => {
                return Err(ConfigError::new(
                    "FLOW_METRICS_COMPRESSION",
                    format!("{other:?} is neither deflate nor none"),
                ));
            }
        };
        Ok(DataDogConfig {
            base_url,
            api_key,
            metrics,
            static_tags,
            self_metrics,
            compression,
        })
    }

    /// The sink settings, once the key is known.
    pub fn with_key(self, api_key: ApiKey) -> DataDogSettings {
        DataDogSettings {
            base_url: self.base_url,
            api_key,
            metrics: self.metrics,
            static_tags: self.static_tags,
            self_metrics: self.self_metrics,
            compression: self.compression,
        }
    }
}

/// What names the series: the metric names (`FLOW_METRICS_METRIC`, …, `FLOW_METRICS_ELAPSED`)
/// and the static tags (`DD_TAGS`). The sink sends them; the audit counts them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesConfig {
    pub metrics: MetricNames,
    pub static_tags: Vec<String>,
}

impl SeriesConfig {
    pub fn from_env(env: Env<'_>) -> Result<SeriesConfig, ConfigError> {
        let defaults = MetricNames::default();
        let metric_name = |variable: &'static str, default: String, suffix: &str| {
            let name = setting(env, variable).unwrap_or(default);
            tags::check_metric_name(&name)
                .and_then(|()| tags::check_metric_name(&format!("{name}{suffix}")))
                .map(|()| name)
                .map_err(|error| ConfigError::new(variable, error))
        };
        let metrics = MetricNames {
            attribute: metric_name("FLOW_METRICS_METRIC", defaults.attribute, ELAPSED_SUFFIX)?,
            milestone: metric_name("FLOW_METRICS_MILESTONE_METRIC", defaults.milestone, "")?,
            outcome: metric_name("FLOW_METRICS_OUTCOME_METRIC", defaults.outcome, DURATION_SUFFIX)?,
            elapsed: match setting(env, "FLOW_METRICS_ELAPSED").as_deref() {
                None | Some("on") => true,
                Some("off") => false,
                Some(other) => {
                    return Err(ConfigError::new(
                        "FLOW_METRICS_ELAPSED",
                        format!("{other:?} is neither on nor off"),
                    ));
                }
            },
        };
        let static_tags = tags::parse_static_tags(&setting(env, "DD_TAGS").unwrap_or_default())
            .map_err(|error| ConfigError::new("DD_TAGS", error))?;
        Ok(SeriesConfig { metrics, static_tags })
    }
}

/// `DD_SITE`, one of DataDog's documented sites.
fn check_site(site: &str) -> Result<String, ConfigError> {
    sites::check_datadog_site(site)
        .map(|site| site.site)
        .map_err(|error| ConfigError::new("DD_SITE", error))
}
