//! Names from the Genesys Cloud Platform API, fetched in the background and cached.
//!
//! An OAuth client-credentials grant (`oauth.rs`) at `https://login.<region domain>/oauth/token` gives a
//! bearer token, kept and refreshed before it expires; then `GET /api/v2/flows/{flowId}`,
//! `/api/v2/flows/milestones/{milestoneId}` and `/api/v2/flows/outcomes/{flowOutcomeId}` at
//! `https://api.<region domain>` give the names. A name is kept for a TTL (then refreshed, the
//! old name used meanwhile). A failure is logged with why and not asked again for a while: a
//! 429 for as long as `Retry-After` says; a 401 fetches a new token and tries once more. At most
//! [`MAX_CACHED`] ids of each kind are remembered. To check a client's permissions without an
//! id, [`GenesysDirectory::check_access`] reads one entry of a kind's list.
//!
//! With a [`NameStore`] (the ledger table, in Lambda), the names it keeps are learnt at start
//! ([`GenesysDirectory::seed_from_store`]): fresh ones are never asked of Genesys, stale ones are
//! used while they are fetched again, and every name fetched is written back for the fleet.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use lru::LruCache;
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

mod answer;
mod oauth;

pub use answer::{message, retry_after};
use oauth::TokenState;
pub use oauth::{Credentials, CredentialsError};

use super::store::{NameStore, StoredName};
use super::{CredentialsSource, GenesysConfig};
use super::{Directory, NameKind, NamesSetupError, RETRY_AFTER_FAILURE};
use crate::error_text::with_causes;
use crate::sink::datadog::USER_AGENT;

/// Ids of each kind remembered at most (names and failures).
pub const MAX_CACHED: usize = 10_000;

/// Names fetched at once.
const CONCURRENT_FETCHES: usize = 4;

/// Longest wait for one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the API is and who asks.
#[derive(Debug, Clone)]
pub struct GenesysSettings {
    /// `https://login.<region domain>`.
    pub login_url: String,
    /// `https://api.<region domain>`.
    pub api_url: String,
    pub credentials: Credentials,
    /// How long a name is used before it is fetched again.
    pub ttl: Duration,
    /// How long an id whose name could not be had is not asked again (unless a 429 says longer).
    pub retry_after_failure: Duration,
}

impl GenesysSettings {
    /// The login and API hosts of a region, from its domain (`mypurecloud.com`,
    /// `mypurecloud.ie`, `euw2.pure.cloud`, …).
    pub fn region_urls(domain: &str) -> (String, String) {
        (format!("https://login.{domain}"), format!("https://api.{domain}"))
    }
}

/// Why a name could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("Genesys refused the OAuth client's credentials ({status}): {message}")]
    Credentials { status: u16, message: String },
    #[error("the OAuth client may not read {kind}s ({status}): give its role the {permission} permission")]
    Forbidden {
        kind: NameKind,
        status: u16,
        permission: &'static str,
    },
    #[error("Genesys has no {kind} with this id (404)")]
    NotFound { kind: NameKind },
    #[error("Genesys is rate-limiting requests (429); asking again in {}s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    #[error("Genesys answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("cannot reach Genesys: {0}")]
    Unreachable(String),
    #[error("the id is not one Genesys gives (letters, digits and '-' only)")]
    UnusableId,
    #[error("Genesys's answer has no name: {0}")]
    NoName(String),
}

impl NameError {
    /// How long to leave the id alone, if the error says.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            NameError::RateLimited { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}

/// What is known of one id.
#[derive(Debug, Clone)]
enum Entry {
    Known {
        name: Arc<str>,
        fresh_until: Instant,
    },
    /// Being fetched; the name known before, if any, is used meanwhile.
    Fetching {
        previous: Option<Arc<str>>,
    },
    /// Not to be asked again before `retry_at`.
    Failed {
        retry_at: Instant,
        previous: Option<Arc<str>>,
    },
}

impl Entry {
    fn previous(&self) -> Option<Arc<str>> {
        match self {
            Entry::Known { name, .. } => Some(name.clone()),
            Entry::Fetching { previous } | Entry::Failed { previous, .. } => previous.clone(),
        }
    }
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug)]
struct Shared {
    client: reqwest::Client,
    settings: GenesysSettings,
    entries: Mutex<Entries>,
    token: tokio::sync::Mutex<TokenState>,
    fetches: Semaphore,
    /// Fetches spawned and not finished.
    in_flight: AtomicUsize,
    /// Where names are kept for every instance, if anywhere: read at start, written after fetches.
    store: OnceLock<Arc<dyn NameStore>>,
}

/// What is known of each kind's ids: one cache per kind, so that a lookup borrows its id.
#[derive(Debug)]
struct Entries {
    flows: LruCache<String, Entry>,
    milestones: LruCache<String, Entry>,
    outcomes: LruCache<String, Entry>,
}

impl Entries {
    fn new() -> Self {
        let capacity = NonZeroUsize::new(MAX_CACHED).unwrap_or(NonZeroUsize::MIN);
        Entries {
            flows: LruCache::new(capacity),
            milestones: LruCache::new(capacity),
            outcomes: LruCache::new(capacity),
        }
    }

    fn of(&mut self, kind: NameKind) -> &mut LruCache<String, Entry> {
        match kind {
            NameKind::Flow => &mut self.flows,
            NameKind::Milestone => &mut self.milestones,
            NameKind::Outcome => &mut self.outcomes,
        }
    }
}

/// Counts a fetch as in flight until it ends, however it ends.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Names from the Genesys Cloud Platform API.
#[derive(Debug, Clone)]
pub struct GenesysDirectory {
    shared: Arc<Shared>,
}

impl GenesysDirectory {
    pub fn new(settings: GenesysSettings) -> Result<Self, NameError> {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|error| NameError::Unreachable(with_causes(&error)))?;
        Ok(GenesysDirectory {
            shared: Arc::new(Shared {
                client,
                settings,
                entries: Mutex::new(Entries::new()),
                token: tokio::sync::Mutex::new(TokenState::default()),
                fetches: Semaphore::new(CONCURRENT_FETCHES),
                in_flight: AtomicUsize::new(0),
                store: OnceLock::new(),
            }),
        })
    }

    /// With `store`, if any, learnt (see [`Self::seed_from_store`]) and kept up to date.
    pub async fn with_store_seeded(self, store: Option<Arc<dyn NameStore>>) -> Self {
        let Some(store) = store else {
            return self;
        };
        let directory = self.with_store(store);
        let learnt = directory.seed_from_store().await;
        tracing::info!(learnt, "names learnt from the table");
        directory
    }

    /// Keeps every name fetched in `store` too (see [`Self::seed_from_store`]).
    pub fn with_store(self, store: Arc<dyn NameStore>) -> Self {
        // Set once, before any fetch: a second store is ignored.
        let _ = self.shared.store.set(store);
        self
    }

    /// Learns every name the store keeps (one load): fresh ones are used without asking Genesys;
    /// those older than the TTL are used while they are fetched again. A store that cannot be
    /// read is logged and leaves Genesys to ask. Returns how many names were learnt.
    pub async fn seed_from_store(&self) -> usize {
        let Some(store) = self.shared.store.get() else {
            return 0;
        };
        let stored = match store.load_all().await {
            Ok(stored) => stored,
            Err(error) => {
                tracing::warn!(%error, "stored names could not be read; they will be asked of Genesys");
                return 0;
            }
        };
        let (now, wall) = (Instant::now(), Timestamp::now());
        let mut entries = self.shared.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for name in &stored {
            let age = Duration::try_from(wall.duration_since(name.fetched_at)).unwrap_or_default();
            let fresh_for = self.shared.settings.ttl.saturating_sub(age);
            entries.of(name.kind).put(
                name.id.clone(),
                Entry::Known {
                    name: Arc::from(name.name.as_str()),
                    fresh_until: now.checked_add(fresh_for).unwrap_or(now),
                },
            );
        }
        stored.len()
    }

    /// The directory a configuration describes, reading the OAuth client from Secrets Manager
    /// if it is kept there.
    pub async fn from_config(
        genesys: &GenesysConfig,
        secrets: Option<&aws_sdk_secretsmanager::Client>,
    ) -> Result<GenesysDirectory, NamesSetupError> {
        let credentials = match &genesys.credentials {
            CredentialsSource::Given(credentials) => credentials.clone(),
            CredentialsSource::SecretArn(arn) => {
                let client = secrets.ok_or(NamesSetupError::NoSecretsClient)?;
                Credentials::from_secret(client, arn)
                    .await
                    .map_err(|error| NamesSetupError::Secret {
                        arn: arn.clone(),
                        message: error.to_string(),
                    })?
            }
        };
        let settings = GenesysSettings {
            login_url: genesys.login_url.clone(),
            api_url: genesys.api_url.clone(),
            credentials,
            ttl: Duration::try_from(genesys.ttl).unwrap_or(Duration::MAX),
            retry_after_failure: RETRY_AFTER_FAILURE,
        };
        Ok(GenesysDirectory::new(settings)?)
    }

    /// Asks Genesys for a name now, and waits: for checking an OAuth client, never for counting.
    pub async fn look_up(&self, kind: NameKind, id: &str) -> Result<Arc<str>, NameError> {
        self.shared.fetch_name(kind, id).await
    }

    /// Sends a request of the Platform API with the OAuth client's bearer token (the same token
    /// names are fetched with, renewed once on a 401): for other callers of the API, such as
    /// the reconciliation's analytics queries. `request` builds it from the client and the API's
    /// base URL (`https://api.<region domain>`). Genesys's answer, whatever its status.
    pub async fn send(
        &self,
        request: &(dyn Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder + Sync),
    ) -> Result<reqwest::Response, NameError> {
        self.shared.authorized(request).await
    }

    /// Whether the OAuth client is granted a token (a client-credentials grant, now).
    pub async fn check_token(&self) -> Result<(), NameError> {
        self.shared.token(false).await.map(|_| ())
    }

    /// Whether the OAuth client's role may read `kind`: one harmless read of the kind's list
    /// (`GET /api/v2/flows?pageSize=1`, `/api/v2/flows/milestones?pageSize=1`,
    /// `/api/v2/flows/outcomes?pageSize=1`), which needs the same permission as a name.
    pub async fn check_access(&self, kind: NameKind) -> Result<(), NameError> {
        let url = format!("{}?pageSize=1", self.shared.list_url(kind));
        self.shared.get(kind, &url).await.map(|_| ())
    }
}

impl Directory for GenesysDirectory {
    fn name(&self, kind: NameKind, id: &str) -> Option<Arc<str>> {
        let now = Instant::now();
        let mut entries = self.shared.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entries = entries.of(kind);
        let previous = match entries.get(id) {
            Some(Entry::Known { name, fresh_until }) if now < *fresh_until => return Some(name.clone()),
            Some(entry @ Entry::Fetching { .. }) => return entry.previous(),
            Some(Entry::Failed { retry_at, previous }) if now < *retry_at => return previous.clone(),
            Some(entry) => entry.previous(),
            None => None,
        };
        // Without a runtime nothing can be fetched; the id stands in.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return previous;
        };
        let id = id.to_owned();
        entries.put(
            id.clone(),
            Entry::Fetching {
                previous: previous.clone(),
            },
        );
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let in_flight = InFlight(self.shared.clone());
        runtime.spawn(async move { in_flight.0.fetch(kind, id).await });
        previous
    }

    fn fetching(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    fn is_fetching(&self, kind: NameKind, id: &str) -> bool {
        let mut entries = self.shared.entries.lock().unwrap_or_else(PoisonError::into_inner);
        matches!(entries.of(kind).peek(id), Some(Entry::Fetching { .. }))
    }
}

impl Shared {
    async fn fetch(&self, kind: NameKind, id: String) {
        let fetched = match self.fetches.acquire().await {
            Ok(_permit) => self.fetch_name(kind, &id).await,
            Err(_) => return,
        };
        let kept = match (&fetched, self.store.get()) {
            (Ok(name), Some(store)) => Some((
                store,
                StoredName {
                    kind,
                    id: id.clone(),
                    name: name.to_string(),
                    fetched_at: Timestamp::now(),
                },
            )),
            _ => None,
        };
        self.learn(kind, id, fetched);
        // Kept for the fleet while this fetch still counts as in flight, so that a Lambda
        // invocation's grace covers the write too.
        if let Some((store, kept)) = kept
            && let Err(error) = store.put(&kept).await
        {
            tracing::warn!(kind = %kind, id = kept.id, %error, "a fetched name could not be kept in the table");
        }
    }

    /// Records what a fetch brought.
    fn learn(&self, kind: NameKind, id: String, fetched: Result<Arc<str>, NameError>) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entries = entries.of(kind);
        let previous = entries.peek(&id).and_then(Entry::previous);
        let entry = match fetched {
            Ok(name) => Entry::Known {
                name,
                fresh_until: now.checked_add(self.settings.ttl).unwrap_or(now),
            },
            Err(error) => {
                tracing::warn!(
                    kind = %kind,
                    id,
                    %error,
                    "name not resolved; the id is used in its place"
                );
                Entry::Failed {
                    retry_at: now + error.retry_after().unwrap_or(self.settings.retry_after_failure),
                    previous,
                }
            }
        };
        entries.put(id, entry);
    }

    async fn fetch_name(&self, kind: NameKind, id: &str) -> Result<Arc<str>, NameError> {
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(NameError::UnusableId);
        }
        let url = format!("{}/{id}", self.list_url(kind));
        let body = self.get(kind, &url).await?;
        let named: Named =
            serde_json::from_str(&body).map_err(|error| NameError::NoName(error.to_string()))?;
        named
            .name
            .filter(|name| !name.trim().is_empty())
            .map(Arc::from)
            .ok_or_else(|| NameError::NoName("no \"name\" field".to_owned()))
    }

    /// `https://api.<region>/api/v2/flows`, `…/flows/milestones` or `…/flows/outcomes`.
    fn list_url(&self, kind: NameKind) -> String {
        let path = match kind {
            NameKind::Flow => "flows",
            NameKind::Milestone => "flows/milestones",
            NameKind::Outcome => "flows/outcomes",
        };
        format!("{}/api/v2/{path}", self.settings.api_url.trim_end_matches('/'))
    }

    /// A request of the Platform API (`request` builds it from the client and the API's base
    /// URL) with the bearer token, renewed once if Genesys no longer takes it (401): Genesys's
    /// answer, whatever its status.
    async fn authorized(
        &self,
        request: &(dyn Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder + Sync),
    ) -> Result<reqwest::Response, NameError> {
        let base = self.settings.api_url.trim_end_matches('/');
        // A token Genesys no longer takes (revoked, or expired early) is renewed once.
        let mut renew = false;
        loop {
            let token = self.token(renew).await?;
            let response = request(&self.client, base)
                .bearer_auth(token)
                .send()
                .await
                .map_err(|error| NameError::Unreachable(with_causes(&error)))?;
            if response.status() == StatusCode::UNAUTHORIZED && !renew {
                renew = true;
                continue;
            }
            return Ok(response);
        }
    }

    /// A GET of the Platform API about `kind`, with the bearer token: its body on 200, else
    /// what Genesys's answer means.
    async fn get(&self, kind: NameKind, url: &str) -> Result<String, NameError> {
        let response = self.authorized(&|client, _| client.get(url)).await?;
        let status = response.status();
        match status {
            StatusCode::OK => response
                .text()
                .await
                .map_err(|error| NameError::Unreachable(with_causes(&error))),
            StatusCode::UNAUTHORIZED => Err(NameError::Credentials {
                status: status.as_u16(),
                message: message(response).await,
            }),
            StatusCode::FORBIDDEN => Err(NameError::Forbidden {
                kind,
                status: status.as_u16(),
                permission: permission(kind),
            }),
            StatusCode::NOT_FOUND => Err(NameError::NotFound { kind }),
            StatusCode::TOO_MANY_REQUESTS => Err(NameError::RateLimited {
                retry_after: retry_after(&response).unwrap_or(self.settings.retry_after_failure),
            }),
            _ => Err(NameError::Status {
                status: status.as_u16(),
                message: message(response).await,
            }),
        }
    }
}

/// The permission the OAuth client's role needs to read names of a kind.
pub fn permission(kind: NameKind) -> &'static str {
    match kind {
        NameKind::Flow => "architect:flow:view",
        NameKind::Milestone => "architect:flowMilestone:view",
        NameKind::Outcome => "architect:flowOutcome:view",
    }
}
