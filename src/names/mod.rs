//! Names for the ids that flow milestones and outcomes carry: the flow's, the milestone's and the
//! outcome's. Tags and stdout lines show a name where one is known and the id otherwise.
//!
//! A [`Directory`] answers at once from what it knows: one that must fetch a name starts
//! fetching it in the background and answers `None` until it has it. A push waits for such
//! fetches a bounded time only ([`NAME_WAIT`] per batch), then sends ids for what is missing.
//! [`Names`] puts a fixed id → name map (a setting) ahead of the Genesys Cloud Platform API
//! ([`genesys::GenesysDirectory`]), either of which may be absent.
//!
//! Names belong to the fleet: where a [`store::NameStore`] is given (the ledger table, in
//! Lambda), the names it keeps are learnt at start, so that a cold start asks Genesys only for
//! what no instance has fetched, and each name fetched is kept there for the others.
//!
//! A missing name is never worth an event: where the API cannot be set up (its OAuth client's
//! secret cannot be read), [`Names::from_config_or_ids`] starts with the fixed map alone, says so
//! in the log (`names unavailable`, the marker of `src/log_markers.json`), and tries the setup
//! again in the background at most every [`SETUP_RETRY`], so that a mended permission heals
//! without a restart.

pub mod genesys;
mod settings;
pub mod store;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use genesys::GenesysDirectory;
pub use settings::{CredentialsSource, DEFAULT_NAMES_TTL, GenesysConfig, NamesConfig};
use store::NameStore;

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

impl NameKind {
    /// The kind a [`fmt::Display`] of it names (`flow`, `milestone`, `outcome`).
    pub fn parse(text: &str) -> Option<NameKind> {
        match text {
            "flow" => Some(NameKind::Flow),
            "milestone" => Some(NameKind::Milestone),
            "outcome" => Some(NameKind::Outcome),
            _ => None,
        }
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

    /// Whether the name of `id` is being fetched right now, so that a push about to send the id
    /// in its place may wait a little for it (see [`NAME_WAIT`]).
    fn is_fetching(&self, _kind: NameKind, _id: &str) -> bool {
        false
    }

    /// Why names cannot be fetched at all right now (their setup failed), if so. When the setup
    /// is due another try, this starts one in the background (counted by [`Self::fetching`]).
    fn unavailable(&self) -> Option<Arc<str>> {
        None
    }
}

/// How often a failed setup of the Genesys API is tried again, at most.
pub const SETUP_RETRY: Duration = Duration::from_secs(300);

/// Longest a background try of the setup may take, so that a hung one never stops the next.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The words every log line about names being unavailable carries: the cdk stack's metric
/// filter counts them (`namesUnavailable` in `src/log_markers.json`).
pub const UNAVAILABLE_MARKER: &str = "names unavailable";

/// How long a Lambda invocation, its events settled, lets the name fetches it started finish:
/// Lambda freezes the function once the handler returns, and a fetch frozen mid-request would
/// fail on thaw, so that a quiet function would never learn a name.
pub const FETCH_GRACE: Duration = Duration::from_secs(1);

/// How long a batch (one Lambda invocation, one chunk of a replay) may wait, in all, for the
/// names of the ids it is about to push: ids still without a name then go out as ids (counted as
/// unresolved). Never past the push's own deadline less [`crate::timing::MIN_ATTEMPT`].
pub const NAME_WAIT: Duration = Duration::from_secs(1);

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
    #[error("setting up the Genesys API took longer than {}s", .0.as_secs())]
    TimedOut(Duration),
}

impl Names {
    /// The names a configuration gives, reading the OAuth client from Secrets Manager if it is
    /// kept there, and learning the names `store` keeps (one load). Says in the log where names
    /// will come from.
    pub async fn from_config(
        config: &NamesConfig,
        secrets: Option<&aws_sdk_secretsmanager::Client>,
        store: Option<Arc<dyn NameStore>>,
    ) -> Result<Names, NamesSetupError> {
        let fetched: Option<Arc<dyn Directory>> = match &config.genesys {
            None => None,
            Some(genesys) => Some(Arc::new(
                GenesysDirectory::from_config(genesys, secrets)
                    .await?
                    .with_store_seeded(store)
                    .await,
            )),
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

    fn is_fetching(&self, kind: NameKind, id: &str) -> bool {
        !self.fixed.contains_key(id)
            && self
                .fetched
                .as_ref()
                .is_some_and(|fetched| fetched.is_fetching(kind, id))
    }

    fn unavailable(&self) -> Option<Arc<str>> {
        self.fetched.as_ref()?.unavailable()
    }
}

impl Names {
    /// The names a configuration gives, never failing: for the Lambda, where a missing name is
    /// never worth an event. If the Genesys API cannot be set up (its OAuth client's secret
    /// cannot be read, say), the fixed map alone is used and ids stand in for the other names;
    /// the failure is logged with the marker [`UNAVAILABLE_MARKER`] and why (never the secret's
    /// content), and the setup is tried again in the background at most every `retry_every`.
    pub async fn from_config_or_ids(
        config: &NamesConfig,
        secrets: Option<aws_sdk_secretsmanager::Client>,
        store: Option<Arc<dyn NameStore>>,
        retry_every: Duration,
    ) -> Names {
        let Some(genesys) = &config.genesys else {
            return Names::from_config(config, None, None)
                .await
                .unwrap_or_else(|_| Names::new(config.fixed.clone(), None));
        };
        match Names::from_config(config, secrets.as_ref(), store.clone()).await {
            Ok(names) => names,
            Err(error) => {
                let why: Arc<str> = Arc::from(error.to_string());
                log_unavailable(&why, retry_every);
                let deferred = Deferred {
                    inner: Arc::new(DeferredInner {
                        config: genesys.clone(),
                        secrets,
                        store,
                        retry_every,
                        state: Mutex::new(SetupState::Failed {
                            why,
                            retry_at: Instant::now() + retry_every,
                        }),
                        trying: AtomicBool::new(false),
                    }),
                };
                Names::new(config.fixed.clone(), Some(Arc::new(deferred)))
            }
        }
    }
}

fn log_unavailable(why: &str, retry_every: Duration) {
    tracing::error!(
        error = why,
        retry_in_s = retry_every.as_secs(),
        "{UNAVAILABLE_MARKER}: the Genesys API cannot be set up, so ids stand in for names not \
         in FLOW_METRICS_NAMES; counting goes on, and the setup is tried again later"
    );
}

/// The Genesys API whose setup failed: no names until a later try succeeds.
#[derive(Debug)]
struct Deferred {
    inner: Arc<DeferredInner>,
}

#[derive(Debug)]
struct DeferredInner {
    config: GenesysConfig,
    secrets: Option<aws_sdk_secretsmanager::Client>,
    /// Where names are kept, learnt once the setup succeeds.
    store: Option<Arc<dyn NameStore>>,
    retry_every: Duration,
    state: Mutex<SetupState>,
    /// A setup try is running in the background.
    trying: AtomicBool,
}

#[derive(Debug)]
enum SetupState {
    Ready(GenesysDirectory),
    Failed { why: Arc<str>, retry_at: Instant },
}

impl DeferredInner {
    async fn try_setup(&self) {
        // One bound over the whole setup, the table's names included: a hung read must not
        // leave `trying` set, or no setup would be tried again.
        let setup = async {
            let directory = GenesysDirectory::from_config(&self.config, self.secrets.as_ref()).await?;
            Ok(directory.with_store_seeded(self.store.clone()).await)
        };
        let attempt = tokio::time::timeout(SETUP_TIMEOUT, setup)
            .await
            .unwrap_or_else(|_| Err(NamesSetupError::TimedOut(SETUP_TIMEOUT)));
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state = match attempt {
            Ok(directory) => {
                tracing::info!(
                    api = self.config.api_url,
                    "names of flows, milestones and outcomes are available again from the Genesys API"
                );
                SetupState::Ready(directory)
            }
            Err(error) => {
                let why: Arc<str> = Arc::from(error.to_string());
                log_unavailable(&why, self.retry_every);
                SetupState::Failed {
                    why,
                    retry_at: Instant::now() + self.retry_every,
                }
            }
        };
        self.trying.store(false, Ordering::SeqCst);
    }
}

impl Directory for Deferred {
    fn name(&self, kind: NameKind, id: &str) -> Option<Arc<str>> {
        match &*self.inner.state.lock().unwrap_or_else(PoisonError::into_inner) {
            SetupState::Ready(directory) => directory.name(kind, id),
            SetupState::Failed { .. } => None,
        }
    }

    fn fetching(&self) -> usize {
        let trying = usize::from(self.inner.trying.load(Ordering::SeqCst));
        match &*self.inner.state.lock().unwrap_or_else(PoisonError::into_inner) {
            SetupState::Ready(directory) => directory.fetching() + trying,
            SetupState::Failed { .. } => trying,
        }
    }

    fn is_fetching(&self, kind: NameKind, id: &str) -> bool {
        match &*self.inner.state.lock().unwrap_or_else(PoisonError::into_inner) {
            SetupState::Ready(directory) => directory.is_fetching(kind, id),
            SetupState::Failed { .. } => false,
        }
    }

    fn unavailable(&self) -> Option<Arc<str>> {
        let state = self.inner.state.lock().unwrap_or_else(PoisonError::into_inner);
        let SetupState::Failed { why, retry_at } = &*state else {
            return None;
        };
        let why = why.clone();
        let due = Instant::now() >= *retry_at;
        drop(state);
        // Without a runtime nothing can be tried; one try at a time.
        if let (true, Ok(runtime)) = (due, tokio::runtime::Handle::try_current())
            && !self.inner.trying.swap(true, Ordering::SeqCst)
        {
            let inner = self.inner.clone();
            runtime.spawn(async move { inner.try_setup().await });
        }
        Some(why)
    }
}
