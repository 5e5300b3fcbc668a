//! Settings shared by the entry points, read from environment variables, each checked with a
//! message that names the variable.
//!
//! Durations are written as jiff spans: `7d`, `36h`, `15m`, `90s`, `1h 30m`, or ISO 8601
//! (`P7D`, `PT15M`). A day is always 24 hours here: these settings bound ages, not calendars.

use jiff::{SignedDuration, Span, SpanRelativeTo};

use crate::count::DEFAULT_MAX_KEY_AGE;
use crate::ledger::dynamodb::DEFAULT_RETENTION;
use crate::sink::datadog::payload::{DURATION_SUFFIX, ELAPSED_SUFFIX};
use crate::sink::datadog::{ApiKey, Compression, DataDogSettings, MetricNames, tags};
use crate::timing::DEFAULT_LEASE;

/// Looks a variable up; the entry points pass the process environment, tests a map.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A setting that cannot be used, named by its variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(variable: &'static str, problem: impl ToString) -> Self {
        ConfigError {
            variable,
            problem: problem.to_string(),
        }
    }
}

/// Where the DataDog API key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeySource {
    /// `DD_API_KEY`.
    Key(ApiKey),
    /// `DD_API_KEY_SECRET_ARN`: read from Secrets Manager once per cold start.
    SecretArn(String),
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
    /// `DD_API_KEY_SECRET_ARN`, `DD_TAGS`, `FLOW_METRICS_METRIC`, `FLOW_METRICS_SELF_METRICS` and
    /// `FLOW_METRICS_COMPRESSION`.
    pub fn from_env(env: Env<'_>) -> Result<DataDogConfig, ConfigError> {
        let base_url = match (set(env, "DD_URL"), set(env, "DD_SITE")) {
            (Some(url), _) if url.starts_with("http://") || url.starts_with("https://") => {
                url.trim_end_matches('/').to_owned()
            }
            (Some(_), _) => return Err(ConfigError::new("DD_URL", "must start with http:// or https://")),
            (None, site) => format!(
                "https://api.{}",
                check_site(site.as_deref().unwrap_or("datadoghq.com"))?
            ),
        };
        let api_key = match (set(env, "DD_API_KEY"), set(env, "DD_API_KEY_SECRET_ARN")) {
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
        let defaults = MetricNames::default();
        let metric_name = |variable: &'static str, default: String, suffix: &str| {
            let name = set(env, variable).unwrap_or(default);
            tags::check_metric_name(&name)
                .and_then(|()| tags::check_metric_name(&format!("{name}{suffix}")))
                .map(|()| name)
                .map_err(|error| ConfigError::new(variable, error))
        };
        let metrics = MetricNames {
            attribute: metric_name("FLOW_METRICS_METRIC", defaults.attribute, ELAPSED_SUFFIX)?,
            milestone: metric_name("FLOW_METRICS_MILESTONE_METRIC", defaults.milestone, "")?,
            outcome: metric_name("FLOW_METRICS_OUTCOME_METRIC", defaults.outcome, DURATION_SUFFIX)?,
        };
        let static_tags = tags::parse_static_tags(&set(env, "DD_TAGS").unwrap_or_default())
            .map_err(|error| ConfigError::new("DD_TAGS", error))?;
        let self_metrics = match set(env, "FLOW_METRICS_SELF_METRICS").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(ConfigError::new(
                    "FLOW_METRICS_SELF_METRICS",
                    format!("{other:?} is neither true nor false"),
                ));
            }
        };
        let compression = match set(env, "FLOW_METRICS_COMPRESSION").as_deref() {
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

/// Everything the Lambda reads at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaConfig {
    /// `FLOW_METRICS_TABLE`.
    pub table: String,
    pub datadog: DataDogConfig,
    /// `FLOW_METRICS_MAX_KEY_AGE` (default 7d).
    pub max_key_age: SignedDuration,
    /// `FLOW_METRICS_LEASE` (default 40s: the default timeout plus a margin).
    pub lease: SignedDuration,
    /// `FLOW_METRICS_RETENTION` (default 30d, above the max key age).
    pub retention: SignedDuration,
}

impl LambdaConfig {
    pub fn from_env(env: Env<'_>) -> Result<LambdaConfig, ConfigError> {
        let table = set(env, "FLOW_METRICS_TABLE")
            .ok_or_else(|| ConfigError::new("FLOW_METRICS_TABLE", "is not set: name the ledger table"))?;
        let max_key_age = duration_setting(env, "FLOW_METRICS_MAX_KEY_AGE", DEFAULT_MAX_KEY_AGE)?;
        let lease = duration_setting(env, "FLOW_METRICS_LEASE", DEFAULT_LEASE)?;
        let retention = duration_setting(env, "FLOW_METRICS_RETENTION", DEFAULT_RETENTION)?;
        check_retention(retention, max_key_age)
            .map_err(|error| ConfigError::new("FLOW_METRICS_RETENTION", error))?;
        Ok(LambdaConfig {
            table,
            datadog: DataDogConfig::from_env(env)?,
            max_key_age,
            lease,
            retention,
        })
    }
}

/// A variable's value, if set and not blank.
fn set(env: Env<'_>, variable: &str) -> Option<String> {
    env(variable)
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

fn duration_setting(
    env: Env<'_>,
    variable: &'static str,
    default: SignedDuration,
) -> Result<SignedDuration, ConfigError> {
    match set(env, variable) {
        None => Ok(default),
        Some(text) => parse_duration(&text).map_err(|error| ConfigError::new(variable, error)),
    }
}

fn check_site(site: &str) -> Result<&str, ConfigError> {
    let hostname = site.contains('.')
        && site
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    if hostname {
        Ok(site)
    } else {
        Err(ConfigError::new(
            "DD_SITE",
            format!("{site:?} is not a DataDog site such as datadoghq.com or datadoghq.eu"),
        ))
    }
}

/// Why a duration setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{text:?} is not a duration (write e.g. 7d, 36h, 15m, 90s or P7D): {reason}")]
    Syntax { text: String, reason: String },
    #[error("{text:?} must be longer than zero")]
    NotPositive { text: String },
}

/// Why the ledger's retention cannot be used with the stale age.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "retention ({retention}) must be longer than the maximum key age ({max_key_age}): an item that \
     expires while its key can still arrive would be counted again"
)]
pub struct RetentionTooShort {
    pub retention: String,
    pub max_key_age: String,
}

/// Checks that ledger items outlive every key that can still count.
pub fn check_retention(
    retention: SignedDuration,
    max_key_age: SignedDuration,
) -> Result<(), RetentionTooShort> {
    if retention > max_key_age {
        Ok(())
    } else {
        Err(RetentionTooShort {
            retention: format!("{retention:#}"),
            max_key_age: format!("{max_key_age:#}"),
        })
    }
}

/// Parses a positive duration such as `7d` or `15m`.
pub fn parse_duration(text: &str) -> Result<SignedDuration, DurationError> {
    let syntax = |reason: jiff::Error| DurationError::Syntax {
        text: text.to_owned(),
        reason: reason.to_string(),
    };
    let span: Span = text.trim().parse().map_err(syntax)?;
    let duration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(syntax)?;
    if duration.is_positive() {
        Ok(duration)
    } else {
        Err(DurationError::NotPositive {
            text: text.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lambda_config(variables: &[(&str, &str)]) -> Result<LambdaConfig, ConfigError> {
        let variables: HashMap<String, String> = variables
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        LambdaConfig::from_env(&|name| variables.get(name).cloned())
    }

    #[test]
    fn the_lambda_needs_only_a_table_and_a_key() {
        let config = lambda_config(&[("FLOW_METRICS_TABLE", "ledger"), ("DD_API_KEY", "k")]).expect("config");
        assert_eq!(config.table, "ledger");
        assert_eq!(config.datadog.base_url, "https://api.datadoghq.com");
        assert_eq!(config.datadog.metrics, MetricNames::default());
        assert!(config.datadog.self_metrics);
        assert_eq!(config.datadog.compression, Compression::Deflate);
        assert_eq!(config.max_key_age, DEFAULT_MAX_KEY_AGE);
        assert_eq!(config.retention, DEFAULT_RETENTION);
        assert_eq!(config.lease, DEFAULT_LEASE);
    }

    #[test]
    fn every_setting_is_read() {
        let config = lambda_config(&[
            ("FLOW_METRICS_TABLE", "ledger"),
            (
                "DD_API_KEY_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dd-abc",
            ),
            ("DD_SITE", "datadoghq.eu"),
            ("DD_TAGS", "env:prod,team:Contact Centre"),
            ("FLOW_METRICS_METRIC", "ivr.flow"),
            ("FLOW_METRICS_SELF_METRICS", "false"),
            ("FLOW_METRICS_COMPRESSION", "none"),
            ("FLOW_METRICS_MAX_KEY_AGE", "3d"),
            ("FLOW_METRICS_LEASE", "90s"),
            ("FLOW_METRICS_RETENTION", "14d"),
        ])
        .expect("config");
        assert_eq!(config.datadog.base_url, "https://api.datadoghq.eu");
        assert!(matches!(config.datadog.api_key, ApiKeySource::SecretArn(_)));
        assert_eq!(config.datadog.static_tags, ["env:prod", "team:contact_centre"]);
        assert_eq!(config.datadog.metrics.attribute, "ivr.flow");
        assert!(!config.datadog.self_metrics);
        assert_eq!(config.datadog.compression, Compression::None);
        assert_eq!(config.max_key_age, SignedDuration::from_hours(72));
        assert_eq!(config.lease, SignedDuration::from_secs(90));
        assert_eq!(config.retention, SignedDuration::from_hours(14 * 24));
    }

    #[test]
    fn dd_url_overrides_the_site() {
        let config = lambda_config(&[
            ("FLOW_METRICS_TABLE", "t"),
            ("DD_API_KEY", "k"),
            ("DD_SITE", "datadoghq.eu"),
            ("DD_URL", "http://127.0.0.1:9000/"),
        ])
        .expect("config");
        assert_eq!(config.datadog.base_url, "http://127.0.0.1:9000");
    }

    #[test]
    fn bad_settings_name_their_variable() {
        let base = [("FLOW_METRICS_TABLE", "t"), ("DD_API_KEY", "k")];
        let variable_of = |extra: &[(&str, &str)], without: &str| {
            let mut variables: Vec<(&str, &str)> = base
                .iter()
                .copied()
                .filter(|(name, _)| *name != without)
                .collect();
            variables.extend_from_slice(extra);
            lambda_config(&variables).expect_err("refused").variable
        };
        assert_eq!(variable_of(&[], "FLOW_METRICS_TABLE"), "FLOW_METRICS_TABLE");
        assert_eq!(variable_of(&[], "DD_API_KEY"), "DD_API_KEY");
        assert_eq!(
            variable_of(&[("DD_API_KEY_SECRET_ARN", "arn:aws:secretsmanager:x")], ""),
            "DD_API_KEY_SECRET_ARN"
        );
        assert_eq!(
            variable_of(&[("DD_API_KEY_SECRET_ARN", "my-secret")], "DD_API_KEY"),
            "DD_API_KEY_SECRET_ARN"
        );
        assert_eq!(
            variable_of(&[("DD_SITE", "https://datadoghq.com")], ""),
            "DD_SITE"
        );
        assert_eq!(variable_of(&[("DD_URL", "datadog.local")], ""), "DD_URL");
        assert_eq!(variable_of(&[("DD_TAGS", "1bad:tag")], ""), "DD_TAGS");
        assert_eq!(
            variable_of(&[("FLOW_METRICS_METRIC", "bad metric")], ""),
            "FLOW_METRICS_METRIC"
        );
        assert_eq!(
            variable_of(&[("FLOW_METRICS_SELF_METRICS", "yes")], ""),
            "FLOW_METRICS_SELF_METRICS"
        );
        // The elapsed metric's name (`<metric>.elapsed`) and the duration's
        // (`<outcome>.duration`) must fit DataDog's 200 characters too.
        let long_name = format!("m{}", "x".repeat(194));
        assert_eq!(
            variable_of(&[("FLOW_METRICS_METRIC", long_name.as_str())], ""),
            "FLOW_METRICS_METRIC"
        );
        assert_eq!(
            variable_of(&[("FLOW_METRICS_OUTCOME_METRIC", long_name.as_str())], ""),
            "FLOW_METRICS_OUTCOME_METRIC"
        );
        assert_eq!(
            variable_of(&[("FLOW_METRICS_MILESTONE_METRIC", "bad milestone")], ""),
            "FLOW_METRICS_MILESTONE_METRIC"
        );
        assert_eq!(
            variable_of(&[("FLOW_METRICS_COMPRESSION", "gzip")], ""),
            "FLOW_METRICS_COMPRESSION"
        );
        assert_eq!(
            variable_of(&[("FLOW_METRICS_LEASE", "soon")], ""),
            "FLOW_METRICS_LEASE"
        );
        assert_eq!(
            variable_of(&[("FLOW_METRICS_RETENTION", "5d")], ""),
            "FLOW_METRICS_RETENTION"
        );
        let message = lambda_config(&[("DD_API_KEY", "k")])
            .expect_err("no table")
            .to_string();
        assert_eq!(message, "FLOW_METRICS_TABLE: is not set: name the ledger table");
    }

    #[test]
    fn days_are_24_hours() {
        assert_eq!(parse_duration("7d"), Ok(SignedDuration::from_hours(168)));
        assert_eq!(parse_duration("P7D"), Ok(SignedDuration::from_hours(168)));
        assert_eq!(parse_duration("15m"), Ok(SignedDuration::from_mins(15)));
        assert_eq!(parse_duration("1h 30m"), Ok(SignedDuration::from_mins(90)));
    }

    #[test]
    fn retention_must_outlive_the_stale_age() {
        let week = SignedDuration::from_hours(168);
        assert!(check_retention(SignedDuration::from_hours(720), week).is_ok());
        let error = check_retention(week, week).expect_err("equal is too short");
        assert_eq!(
            error.to_string(),
            "retention (168h) must be longer than the maximum key age (168h): an item that expires \
             while its key can still arrive would be counted again"
        );
    }

    #[test]
    fn refuses_nonsense_and_zero() {
        assert!(matches!(
            parse_duration("seven days"),
            Err(DurationError::Syntax { .. })
        ));
        assert!(matches!(
            parse_duration("0s"),
            Err(DurationError::NotPositive { .. })
        ));
        assert!(matches!(
            parse_duration("-3d"),
            Err(DurationError::NotPositive { .. })
        ));
    }
}
