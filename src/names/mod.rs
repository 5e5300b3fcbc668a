//! Names for the ids that flow milestones and outcomes carry: the flow's, the milestone's and the
//! outcome's. Tags and stdout lines show a name where one is known and the id otherwise.
//!
//! A [`Directory`] answers at once from what it knows and never makes counting wait: one that
//! must fetch a name starts fetching it in the background and answers `None` until it has it.
//! [`Names`] puts a fixed id → name map (a setting) ahead of the Genesys Cloud Platform API
//! ([`genesys::GenesysDirectory`]), either of which may be absent.

pub mod genesys;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::config::NamesConfig;
use genesys::GenesysDirectory;

/// How long an id whose name could not be had is left alone (unless Genesys says longer).
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// What an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameKind {
    Flow,
    Milestone,
    Outcome,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameKind::Flow => "flow",
            NameKind::Milestone => "milestone",
            NameKind::Outcome => "outcome",
        })
    }
}

/// Where names come from.
pub trait Directory: Send + Sync + fmt::Debug {
    /// The name of `id`, if known now. Never waits.
    fn name(&self, kind: NameKind, id: &str) -> Option<Arc<str>>;

    /// How many names are being fetched in the background right now.
    fn fetching(&self) -> usize {
        0
    }
}

/// How long a Lambda invocation, its events settled, lets the name fetches it started finish:
/// Lambda freezes the function once the handler returns, and a fetch frozen mid-request would
/// fail on thaw, so that a quiet function would never learn a name.
pub const FETCH_GRACE: Duration = Duration::from_secs(1);

/// The fixed map first, then the fetching directory.
#[derive(Debug, Default)]
pub struct Names {
    fixed: HashMap<String, Arc<str>>,
    fetched: Option<Arc<dyn Directory>>,
}

/// Why the fixed map cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("is not a JSON object of id → name strings: {0}")]
pub struct FixedNamesError(#[source] serde_json::Error);

impl Names {
    pub fn new(fixed: HashMap<String, String>, fetched: Option<Arc<dyn Directory>>) -> Self {
        Names {
            fixed: fixed
                .into_iter()
                .map(|(id, name)| (id, Arc::from(name)))
                .collect(),
            fetched,
        }
    }

    /// Reads a fixed map: `{"<id>": "<name>", …}`.
    pub fn parse_fixed(json: &str) -> Result<HashMap<String, String>, FixedNamesError> {
        serde_json::from_str(json).map_err(FixedNamesError)
    }
}

/// Why names cannot be set up as configured.
#[derive(Debug, thiserror::Error)]
pub enum NamesSetupError {
    #[error("cannot read the Genesys OAuth client from secret {arn}: {message}")]
    Secret { arn: String, message: String },
    #[error("the Genesys OAuth client is in a secret, but no AWS client was given to read it")]
    NoSecretsClient,
    #[error(transparent)]
    Client(#[from] genesys::NameError),
}

impl Names {
    /// The names a configuration gives, reading the OAuth client from Secrets Manager if it is
    /// kept there. Says in the log where names will come from.
    pub async fn from_config(
        config: &NamesConfig,
        secrets: Option<&aws_sdk_secretsmanager::Client>,
    ) -> Result<Names, NamesSetupError> {
        let fetched: Option<Arc<dyn Directory>> = match &config.genesys {
            None => None,
            Some(genesys) => Some(Arc::new(GenesysDirectory::from_config(genesys, secrets).await?)),
        };
        match &config.genesys {
            Some(genesys) => tracing::info!(
                api = genesys.api_url,
                fixed = config.fixed.len(),
                "names of flows, milestones and outcomes come from the Genesys API"
            ),
            None if config.fixed.is_empty() => tracing::info!(
                "names of flows, milestones and outcomes are not configured (FLOW_METRICS_NAMES, \
                 GENESYS_REGION): their ids are used"
            ),
            None => tracing::info!(
                fixed = config.fixed.len(),
                "names of flows, milestones and outcomes come from FLOW_METRICS_NAMES only"
            ),
        }
        Ok(Names::new(config.fixed.clone(), fetched))
    }
}

impl Directory for Names {
    fn name(&self, kind: NameKind, id: &str) -> Option<Arc<str>> {
        if let Some(name) = self.fixed.get(id) {
            return Some(name.clone());
        }
        self.fetched.as_ref()?.name(kind, id)
    }

    fn fetching(&self) -> usize {
        self.fetched.as_ref().map_or(0, |fetched| fetched.fetching())
    }
}
