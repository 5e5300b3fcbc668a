//! What the Lambda reads at cold start: the ledger table, its lease, retention and stale age,
//! the flow runs' gap, and the sink's and names' own settings, each read where it is owned.

use jiff::SignedDuration;

use crate::config::{ConfigError, Env, check_retention, duration_setting, setting};
use crate::count::{DEFAULT_MAX_KEY_AGE, DEFAULT_RUN_GAP};
use crate::ledger::dynamodb::DEFAULT_RETENTION;
use crate::names::NamesConfig;
use crate::sink::datadog::DataDogConfig;
use crate::timing::DEFAULT_LEASE;

/// Everything the Lambda reads at cold start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LambdaConfig {
    /// `FLOW_METRICS_TABLE`.
    pub table: String,
    pub datadog: DataDogConfig,
    /// `FLOW_METRICS_MAX_KEY_AGE` (default 7d).
    pub max_key_age: SignedDuration,
    /// `FLOW_METRICS_RUN_GAP` (default 1h): keys of a flow further apart are in different runs.
    pub run_gap: SignedDuration,
    /// `FLOW_METRICS_LEASE` (default 40s: the default timeout plus a margin).
    pub lease: SignedDuration,
    /// `FLOW_METRICS_RETENTION` (default 30d, above the max key age).
    pub retention: SignedDuration,
    pub names: NamesConfig,
}

impl LambdaConfig {
    pub fn from_env(env: Env<'_>) -> Result<LambdaConfig, ConfigError> {
        let table = setting(env, "FLOW_METRICS_TABLE")
            .ok_or_else(|| ConfigError::new("FLOW_METRICS_TABLE", "is not set: name the ledger table"))?;
        let max_key_age = duration_setting(env, "FLOW_METRICS_MAX_KEY_AGE", DEFAULT_MAX_KEY_AGE)?;
        let run_gap = duration_setting(env, "FLOW_METRICS_RUN_GAP", DEFAULT_RUN_GAP)?;
        let lease = duration_setting(env, "FLOW_METRICS_LEASE", DEFAULT_LEASE)?;
        let retention = duration_setting(env, "FLOW_METRICS_RETENTION", DEFAULT_RETENTION)?;
        check_retention(retention, max_key_age)
            .map_err(|error| ConfigError::new("FLOW_METRICS_RETENTION", error))?;
        Ok(LambdaConfig {
            table,
            datadog: DataDogConfig::from_env(env)?,
            max_key_age,
            run_gap,
            lease,
            retention,
            names: NamesConfig::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::env_of;
    use crate::sink::datadog::{ApiKeySource, Compression, MetricNames};

    use super::*;

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
        assert_eq!(config.run_gap, SignedDuration::from_hours(1));
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
            ("FLOW_METRICS_RUN_GAP", "90m"),
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
        assert_eq!(config.run_gap, SignedDuration::from_mins(90));
        assert_eq!(config.lease, SignedDuration::from_secs(90));
        assert_eq!(config.retention, SignedDuration::from_hours(14 * 24));
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
        assert_eq!(
            variable_of(&[("FLOW_METRICS_RUN_GAP", "an hour")], ""),
            "FLOW_METRICS_RUN_GAP"
        );
        assert_eq!(
            variable_of(&[("FLOW_METRICS_RUN_GAP", "0s")], ""),
            "FLOW_METRICS_RUN_GAP"
        );
        let message = lambda_config(&[
            ("FLOW_METRICS_TABLE", "t"),
            ("DD_API_KEY", "k"),
            ("FLOW_METRICS_RUN_GAP", "an hour"),
        ])
        .expect_err("refused")
        .to_string();
        assert!(
            message.starts_with("FLOW_METRICS_RUN_GAP: \"an hour\" is not a duration"),
            "{message}"
        );
        let message = lambda_config(&[("DD_API_KEY", "k")])
            .expect_err("no table")
            .to_string();
        assert_eq!(message, "FLOW_METRICS_TABLE: is not set: name the ledger table");
    }
}
