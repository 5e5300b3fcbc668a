//! Where the names of flows, milestones and outcomes come from, read from the environment: the
//! fixed map (`FLOW_METRICS_NAMES`) and the Genesys Cloud Platform API (`GENESYS_REGION` or its
//! URLs, the OAuth client given or in a secret, `FLOW_METRICS_NAMES_TTL`).

use std::collections::HashMap;

use jiff::SignedDuration;

use crate::config::{ConfigError, Env, duration_setting, setting};
use crate::sites;

use super::Names;
use super::genesys::{Credentials, GenesysSettings};

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
        let fixed = match setting(env, "FLOW_METRICS_NAMES") {
            None => HashMap::new(),
            Some(json) => {
                Names::parse_fixed(&json).map_err(|error| ConfigError::new("FLOW_METRICS_NAMES", error))?
            }
        };
        let urls = match (
            setting(env, "GENESYS_REGION"),
            setting(env, "GENESYS_LOGIN_URL"),
            setting(env, "GENESYS_API_URL"),
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
            setting(env, "GENESYS_CLIENT_ID"),
            setting(env, "GENESYS_CLIENT_SECRET"),
            setting(env, "GENESYS_CREDENTIALS_SECRET_ARN"),
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

#[cfg(test)]
mod tests {
    use crate::config::env_of;

    use super::*;

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
}
