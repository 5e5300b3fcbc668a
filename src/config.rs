//! Settings shared by the entry points, read from environment variables, each checked with a
//! message that names the variable.
//!
//! Durations are written as jiff spans: `7d`, `36h`, `15m`, `90s`, `1h 30m`, or ISO 8601
//! (`P7D`, `PT15M`). A day is always 24 hours here: these settings bound ages, not calendars.

use std::collections::HashMap;

use jiff::{SignedDuration, Span, SpanRelativeTo};

use crate::count::DEFAULT_MAX_KEY_AGE;
use crate::ledger::dynamodb::DEFAULT_RETENTION;
use crate::names::Names;
use crate::names::genesys::{Credentials, GenesysSettings};
use crate::sink::datadog::payload::{DURATION_SUFFIX, ELAPSED_SUFFIX};
use crate::sink::datadog::{ApiKey, Compression, DataDogSettings, MetricNames, tags};
use crate::sites;
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
    /// `DD_API_KEY_SECRET_ARN`, `DD_TAGS`, the metric names (`FLOW_METRICS_METRIC`, …),
    /// `FLOW_METRICS_ELAPSED`, `FLOW_METRICS_SELF_METRICS` and `FLOW_METRICS_COMPRESSION`.
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
        let SeriesConfig { metrics, static_tags } = SeriesConfig::from_env(env)?;
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
            elapsed: match set(env, "FLOW_METRICS_ELAPSED").as_deref() {
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
        let static_tags = tags::parse_static_tags(&set(env, "DD_TAGS").unwrap_or_default())
            .map_err(|error| ConfigError::new("DD_TAGS", error))?;
        Ok(SeriesConfig { metrics, static_tags })
    }
}

/// Where the names of flows, milestones and outcomes come from, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamesConfig {
    /// `FLOW_METRICS_NAMES`: a JSON object of id → name, used ahead of the API.
    pub fixed: HashMap<String, String>,
    pub genesys: Option<GenesysConfig>,
}

/// The Genesys Cloud Platform API, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenesysConfig {
    /// `https://login.<GENESYS_REGION>`, or `GENESYS_LOGIN_URL`.
    pub login_url: String,
    /// `https://api.<GENESYS_REGION>`, or `GENESYS_API_URL`.
    pub api_url: String,
    pub credentials: CredentialsSource,
    /// `FLOW_METRICS_NAMES_TTL` (default 1h).
    pub ttl: SignedDuration,
}

/// Where the OAuth client's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsSource {
    /// `GENESYS_CLIENT_ID` and `GENESYS_CLIENT_SECRET`.
    Given(Credentials),
    /// `GENESYS_CREDENTIALS_SECRET_ARN`: a secret of `{"clientId", "clientSecret"}`.
    SecretArn(String),
}

/// How long a fetched name is used before it is fetched again, by default.
pub const DEFAULT_NAMES_TTL: SignedDuration = SignedDuration::from_hours(1);

impl NamesConfig {
    pub fn from_env(env: Env<'_>) -> Result<NamesConfig, ConfigError> {
        let fixed = match set(env, "FLOW_METRICS_NAMES") {
            None => HashMap::new(),
            Some(json) => {
                Names::parse_fixed(&json).map_err(|error| ConfigError::new("FLOW_METRICS_NAMES", error))?
            }
        };
        let urls = match (
            set(env, "GENESYS_REGION"),
            set(env, "GENESYS_LOGIN_URL"),
            set(env, "GENESYS_API_URL"),
        ) {
            (None, None, None) => None,
            (_, Some(login), Some(api)) => Some((login, api)),
            (Some(region), login, api) => {
                check_region(&region)?;
                let (default_login, default_api) = GenesysSettings::region_urls(&region);
                Some((login.unwrap_or(default_login), api.unwrap_or(default_api)))
            }
            (None, _, _) => {
                return Err(ConfigError::new(
                    "GENESYS_REGION",
                    "is not set: set it (e.g. mypurecloud.ie), or both GENESYS_LOGIN_URL and GENESYS_API_URL",
                ));
            }
        };
        let credentials = match (
            set(env, "GENESYS_CLIENT_ID"),
            set(env, "GENESYS_CLIENT_SECRET"),
            set(env, "GENESYS_CREDENTIALS_SECRET_ARN"),
        ) {
            (Some(client_id), Some(client_secret), None) => Some(CredentialsSource::Given(Credentials {
                client_id,
                client_secret,
            })),
            (None, None, Some(arn)) => Some(CredentialsSource::SecretArn(arn)),
            (None, None, None) => None,
            _ => {
                return Err(ConfigError::new(
                    "GENESYS_CLIENT_ID",
                    "give the OAuth client either as GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET, \
                     or as GENESYS_CREDENTIALS_SECRET_ARN, not both and not half",
                ));
            }
        };
        let genesys = match (urls, credentials) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "GENESYS_CREDENTIALS_SECRET_ARN",
                    "is not set: the Genesys API needs an OAuth client (or GENESYS_CLIENT_ID and \
                     GENESYS_CLIENT_SECRET)",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "GENESYS_REGION",
                    "is not set: name the org's region domain (e.g. mypurecloud.ie) for its OAuth client",
                ));
            }
            (Some((login_url, api_url)), Some(credentials)) => Some(GenesysConfig {
                login_url,
                api_url,
                credentials,
                ttl: duration_setting(env, "FLOW_METRICS_NAMES_TTL", DEFAULT_NAMES_TTL)?,
            }),
        };
        Ok(NamesConfig { fixed, genesys })
    }
}

fn check_region(region: &str) -> Result<(), ConfigError> {
    sites::check_genesys_region(region).map_err(|error| ConfigError::new("GENESYS_REGION", error))
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
    pub names: NamesConfig,
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
            names: NamesConfig::from_env(env)?,
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

/// `DD_SITE`, one of DataDog's documented sites.
fn check_site(site: &str) -> Result<String, ConfigError> {
    sites::check_datadog_site(site)
        .map(|site| site.site)
        .map_err(|error| ConfigError::new("DD_SITE", error))
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

    /// An environment of exactly these variables.
    fn env_of(variables: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let variables: HashMap<String, String> = variables
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| variables.get(name).cloned()
    }

    fn lambda_config(variables: &[(&str, &str)]) -> Result<LambdaConfig, ConfigError> {
        LambdaConfig::from_env(&env_of(variables))
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
            ("FLOW_METRICS_ELAPSED", "off"),
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
        assert!(!config.datadog.metrics.elapsed);
        assert_eq!(config.datadog.compression, Compression::None);
        assert_eq!(config.max_key_age, SignedDuration::from_hours(72));
        assert_eq!(config.lease, SignedDuration::from_secs(90));
        assert_eq!(config.retention, SignedDuration::from_hours(14 * 24));
    }

    fn names_config(variables: &[(&str, &str)]) -> Result<NamesConfig, ConfigError> {
        NamesConfig::from_env(&env_of(variables))
    }

    #[test]
    fn names_are_optional_and_read_from_a_map_a_region_and_a_client() {
        assert_eq!(names_config(&[]).expect("none"), NamesConfig::default());
        let config = names_config(&[
            ("FLOW_METRICS_NAMES", r#"{"d2c1": "Customer Routing"}"#),
            ("GENESYS_REGION", "mypurecloud.ie"),
            (
                "GENESYS_CREDENTIALS_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:1:secret:genesys",
            ),
            ("FLOW_METRICS_NAMES_TTL", "15m"),
        ])
        .expect("config");
        assert_eq!(config.fixed["d2c1"], "Customer Routing");
        let genesys = config.genesys.expect("the API");
        assert_eq!(genesys.login_url, "https://login.mypurecloud.ie");
        assert_eq!(genesys.api_url, "https://api.mypurecloud.ie");
        assert!(matches!(genesys.credentials, CredentialsSource::SecretArn(_)));
        assert_eq!(genesys.ttl, SignedDuration::from_mins(15));

        let given = names_config(&[
            ("GENESYS_LOGIN_URL", "http://127.0.0.1:1"),
            ("GENESYS_API_URL", "http://127.0.0.1:2"),
            ("GENESYS_CLIENT_ID", "id"),
            ("GENESYS_CLIENT_SECRET", "secret"),
        ])
        .expect("config")
        .genesys
        .expect("the API");
        assert_eq!(
            (given.login_url.as_str(), given.api_url.as_str()),
            ("http://127.0.0.1:1", "http://127.0.0.1:2")
        );
        assert_eq!(given.ttl, DEFAULT_NAMES_TTL);
        assert!(
            !format!("{given:?}").contains("secret\""),
            "the secret is never printed"
        );
    }

    #[test]
    fn half_configured_names_are_refused_with_the_variable_to_fix() {
        let variable_of = |variables: &[(&str, &str)]| names_config(variables).expect_err("refused").variable;
        assert_eq!(
            variable_of(&[("FLOW_METRICS_NAMES", "[1]")]),
            "FLOW_METRICS_NAMES"
        );
        assert_eq!(variable_of(&[("GENESYS_REGION", "Ireland")]), "GENESYS_REGION");
        assert_eq!(
            variable_of(&[("GENESYS_REGION", "mypurecloud.ie")]),
            "GENESYS_CREDENTIALS_SECRET_ARN"
        );
        assert_eq!(
            variable_of(&[("GENESYS_CLIENT_ID", "id"), ("GENESYS_CLIENT_SECRET", "s")]),
            "GENESYS_REGION"
        );
        assert_eq!(
            variable_of(&[("GENESYS_REGION", "mypurecloud.ie"), ("GENESYS_CLIENT_ID", "id")]),
            "GENESYS_CLIENT_ID"
        );
        assert_eq!(variable_of(&[("GENESYS_API_URL", "http://x")]), "GENESYS_REGION");
    }

    #[test]
    fn dd_site_must_be_a_documented_site_and_an_address_names_the_one_meant() {
        let base_url = |site: &str| {
            lambda_config(&[
                ("FLOW_METRICS_TABLE", "t"),
                ("DD_API_KEY", "k"),
                ("DD_SITE", site),
            ])
            .map(|config| config.datadog.base_url)
        };
        assert_eq!(
            base_url("us5.datadoghq.com"),
            Ok("https://api.us5.datadoghq.com".to_owned())
        );
        assert_eq!(
            base_url("ddog-gov.com"),
            Ok("https://api.ddog-gov.com".to_owned())
        );
        let refused = |site: &str| base_url(site).expect_err("refused").to_string();
        assert_eq!(
            refused("app.datadoghq.eu"),
            "DD_SITE: \"app.datadoghq.eu\" is not a DataDog site parameter: use datadoghq.eu (its \
             site, whose pages a browser shows there)"
        );
        assert!(
            refused("https://app.datadoghq.com/dashboard").contains("use datadoghq.com"),
            "{}",
            refused("https://app.datadoghq.com/dashboard")
        );
        assert!(refused("api.us5.datadoghq.com").contains("use us5.datadoghq.com"));
        let unknown = refused("datadoghq.de");
        assert!(unknown.starts_with("DD_SITE: \"datadoghq.de\" is not a DataDog site: the nearest is datadoghq.eu; the sites are datadoghq.com, "), "{unknown}");
    }

    #[test]
    fn genesys_region_is_the_domain_not_the_address_a_browser_shows() {
        let refused = |region: &str| {
            names_config(&[
                ("GENESYS_REGION", region),
                ("GENESYS_CLIENT_ID", "id"),
                ("GENESYS_CLIENT_SECRET", "s"),
            ])
            .expect_err("refused")
        };
        let error = refused("apps.mypurecloud.ie");
        assert_eq!(error.variable, "GENESYS_REGION");
        assert!(error.problem.contains("use mypurecloud.ie"), "{error}");
        assert!(
            refused("https://login.mypurecloud.de")
                .problem
                .contains("use mypurecloud.de")
        );
        assert!(
            refused("api.euw2.pure.cloud")
                .problem
                .contains("use euw2.pure.cloud")
        );
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
        assert_eq!(
            variable_of(&[("FLOW_METRICS_ELAPSED", "false")], ""),
            "FLOW_METRICS_ELAPSED"
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
