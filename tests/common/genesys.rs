//! A fake Genesys Cloud (login and Platform API) on 127.0.0.1 that holds requests to Genesys's
//! published rules, not to our client's:
//!
//! - `POST /oauth/token` takes only HTTP Basic credentials of the org's OAuth client and the form
//!   body `grant_type=client_credentials`; anything else is 400 (bad grant) or 401 (bad client),
//!   with OAuth 2's error body as Genesys sends it (`error`, `description`, `error_description`).
//!   It answers `{"access_token", "token_type": "bearer", "expires_in"}`.
//! - `GET /api/v2/flows/{id}`, `/api/v2/flows/milestones/{id}`, `/api/v2/flows/outcomes/{id}`
//!   take only a bearer token it issued and that has not expired (else 401), and answer the
//!   object with its `name`, or 404.
//! - The lists `GET /api/v2/flows`, `/api/v2/flows/milestones`, `/api/v2/flows/outcomes` take the
//!   same token and a `pageSize` of 1 to 100 (else 400), and answer a page as Genesys pages its
//!   lists: `entities`, `pageSize`, `pageNumber`, `total`, `pageCount`.
//!
//! The analytics API (flow aggregates, conversation details jobs) is `genesys_analytics.rs`'s,
//! mounted on the same server and taking the same tokens.
//!
//! Tests add what Genesys does under load or in trouble: answers forced for the next API
//! requests (429 with `Retry-After`, 5xx), slow answers, a revocation of every token issued, and
//! a role missing the permission for one kind (403 naming the permission).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use serde_json::json;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub const CLIENT_ID: &str = "5f0e9d8c-7b6a-4594-8382-716a5b4c3d2e";
pub const CLIENT_SECRET: &str = "s3cr3t-Genesys-client-secret";

#[derive(Debug, Default)]
struct State {
    tokens: HashMap<String, Instant>,
    token_lifetime: Duration,
    tokens_issued: usize,
    token_requests: usize,
    names: HashMap<String, String>,
    /// Answers for the next API requests: (status, Retry-After seconds).
    forced: VecDeque<(u16, Option<u64>)>,
    /// Every API request: (path, status).
    api_requests: Vec<(String, u16)>,
    /// How long the API takes to answer.
    delay: Duration,
    /// Kinds (`flows`, `milestones`, `outcomes`) the OAuth client's role may not read.
    forbidden: Vec<&'static str>,
}

/// A running fake Genesys.
pub struct FakeGenesys {
    pub server: MockServer,
    state: Arc<Mutex<State>>,
}

struct TokenEndpoint(Arc<Mutex<State>>);
struct Api(Arc<Mutex<State>>);

/// The Platform API's error body.
fn error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"message": message, "code": code, "status": status}))
}

/// The login service's error body: OAuth 2's (RFC 6749 5.2), with Genesys's extra
/// `description`, as it answers a refused client.
fn oauth_error(status: u16, error: &str, description: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": error,
        "description": description,
        "error_description": description,
    }))
}

use super::request_header as header;

impl Respond for TokenEndpoint {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.0.lock().expect("lock").token_requests += 1;
        let basic = format!(
            "Basic {}",
            BASE64_STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
        );
        if header(request, "authorization").as_deref() != Some(basic.as_str()) {
            return oauth_error(401, "invalid_client", "authentication failed");
        }
        let form = header(request, "content-type")
            .is_some_and(|kind| kind.starts_with("application/x-www-form-urlencoded"));
        if !form || request.body != b"grant_type=client_credentials" {
            return oauth_error(
                400,
                "invalid_request",
                "grant_type=client_credentials is required",
            );
        }
        let mut state = self.0.lock().expect("lock");
        state.tokens_issued += 1;
        let token = format!("token-{}", state.tokens_issued);
        let lifetime = state.token_lifetime;
        state.tokens.insert(token.clone(), Instant::now() + lifetime);
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": lifetime.as_secs(),
        }))
    }
}

/// Whether a request carries a bearer token this fake issued and that has not expired.
fn bearer_is_valid(state: &State, request: &Request) -> bool {
    header(request, "authorization")
        .and_then(|value| value.strip_prefix("Bearer ").map(str::to_owned))
        .and_then(|token| state.tokens.get(&token).copied())
        .is_some_and(|expires| Instant::now() < expires)
}

impl Respond for Api {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut state = self.0.lock().expect("lock");
        let path = request.url.path().to_owned();
        let valid = bearer_is_valid(&state, request);
        let (status, template) = if !valid {
            (401, error(401, "bad.credentials", "Invalid login credentials."))
        } else if let Some((status, retry_after)) = state.forced.pop_front() {
            let template = error(status, "forced", "forced by the test");
            (
                status,
                match retry_after {
                    Some(seconds) => template.insert_header("Retry-After", seconds.to_string().as_str()),
                    None => template,
                },
            )
        } else if let Some(kind) = state.forbidden.iter().find(|kind| **kind == kind_of(&path)) {
            let permission = match *kind {
                "milestones" => "architect:flowMilestone:view",
                "outcomes" => "architect:flowOutcome:view",
                _ => "architect:flow:view",
            };
            let message = format!(
                "Unable to perform the requested action. You are missing the following permission(s): [{permission}]"
            );
            (403, error(403, "missing.permissions", &message))
        } else if let Some(kind) = list_of(&path) {
            list(&state, kind, request)
        } else {
            let id = path.rsplit('/').next().unwrap_or_default().to_owned();
            match state.names.get(&format!("{}:{id}", kind_of(&path))) {
                Some(name) => (
                    200,
                    ResponseTemplate::new(200)
                        .set_body_json(json!({"id": id, "name": name, "selfUri": path})),
                ),
                None => (
                    404,
                    error(404, "not.found", "The requested resource was not found."),
                ),
            }
        };
        state.api_requests.push((path, status));
        template.set_delay(state.delay)
    }
}

/// `flows`, `milestones` or `outcomes`, from an API path (an entity's or a list's).
fn kind_of(path: &str) -> &'static str {
    let rest = path.trim_start_matches("/api/v2/flows");
    if rest == "/milestones" || rest.starts_with("/milestones/") {
        "milestones"
    } else if rest == "/outcomes" || rest.starts_with("/outcomes/") {
        "outcomes"
    } else {
        "flows"
    }
}

/// The kind whose list a path is, if it is one.
fn list_of(path: &str) -> Option<&'static str> {
    matches!(
        path,
        "/api/v2/flows" | "/api/v2/flows/milestones" | "/api/v2/flows/outcomes"
    )
    .then(|| kind_of(path))
}

/// A page of a kind's list, `pageSize` of them (1 to 100), as Genesys pages it.
fn list(state: &State, kind: &str, request: &Request) -> (u16, ResponseTemplate) {
    let size = request
        .url
        .query_pairs()
        .find(|(name, _)| name == "pageSize")
        .map_or(Ok(25), |(_, value)| value.parse::<usize>());
    let Ok(size @ 1..=100) = size else {
        return (400, error(400, "bad.request", "pageSize must be from 1 to 100"));
    };
    let mut entities: Vec<serde_json::Value> = state
        .names
        .iter()
        .filter_map(|(key, name)| {
            let id = key.strip_prefix(kind)?.strip_prefix(':')?;
            Some(json!({"id": id, "name": name, "selfUri": format!("{}/{id}", request.url.path())}))
        })
        .collect();
    let total = entities.len();
    entities.truncate(size);
    let page = json!({
        "entities": entities,
        "pageSize": size,
        "pageNumber": 1,
        "total": total,
        "pageCount": total.div_ceil(size),
    });
    (200, ResponseTemplate::new(200).set_body_json(page))
}

impl FakeGenesys {
    /// A Genesys whose tokens last `token_lifetime`, knowing these (kind, id, name):
    /// kind is `flows`, `milestones` or `outcomes`.
    pub async fn start(token_lifetime: Duration, names: &[(&str, &str, &str)]) -> FakeGenesys {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            token_lifetime,
            names: names
                .iter()
                .map(|(kind, id, name)| (format!("{kind}:{id}"), (*name).to_owned()))
                .collect(),
            ..State::default()
        }));
        Mock::given(method("POST"))
            .and(path("/oauth/token"))
            .respond_with(TokenEndpoint(state.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/api/v2/flows(/|$)"))
            .respond_with(Api(state.clone()))
            .mount(&server)
            .await;
        FakeGenesys { server, state }
    }

    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// Checks a request's bearer token as the Platform API does: for the other APIs this fake
    /// serves (`genesys_analytics.rs`).
    pub fn token_check(&self) -> impl Fn(&Request) -> bool + Send + Sync + 'static {
        let state = self.state.clone();
        move |request| bearer_is_valid(&state.lock().expect("lock"), request)
    }

    /// The next API requests get these answers: (status, Retry-After seconds).
    pub fn force(&self, answers: &[(u16, Option<u64>)]) {
        self.state
            .lock()
            .expect("lock")
            .forced
            .extend(answers.iter().copied());
    }

    /// The API answers after `delay` from now on (the token endpoint does not wait).
    pub fn slow_down(&self, delay: Duration) {
        self.state.lock().expect("lock").delay = delay;
    }

    /// The OAuth client's role lacks the permission to read this kind (`flows`, `milestones`,
    /// `outcomes`): 403 with Genesys's message.
    pub fn forbid(&self, kind: &'static str) {
        self.state.lock().expect("lock").forbidden.push(kind);
    }

    /// Every token issued so far stops working, as when an admin revokes them.
    pub fn revoke_tokens(&self) {
        self.state.lock().expect("lock").tokens.clear();
    }

    pub fn tokens_issued(&self) -> usize {
        self.state.lock().expect("lock").tokens_issued
    }

    /// Requests to the token endpoint, granted or not.
    pub fn token_requests(&self) -> usize {
        self.state.lock().expect("lock").token_requests
    }

    /// Every API request: (path, status).
    pub fn api_requests(&self) -> Vec<(String, u16)> {
        self.state.lock().expect("lock").api_requests.clone()
    }
}
