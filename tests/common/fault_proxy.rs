//! A proxy on 127.0.0.1 in front of a DynamoDB emulator that injects the faults DynamoDB really
//! produces: a write applied but answered with a 500 (its answer lost), which the SDK then
//! retries; and throttling, answered without applying anything. It can also answer with a
//! `Date` header that is off, as from a server whose clock is not this machine's.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};

use super::local_server::LocalServer;

/// How often each fault happens.
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    /// Share of writes (PutItem, UpdateItem) applied but answered with a 500.
    pub lost_write_answers: f64,
    /// Share of all requests answered with a throttle, not forwarded.
    pub throttles: f64,
}

impl FaultRates {
    /// No faults.
    pub const NONE: FaultRates = FaultRates {
        lost_write_answers: 0.0,
        throttles: 0.0,
    };
}

/// What the proxy did.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub forwarded: AtomicUsize,
    pub lost_write_answers: AtomicUsize,
    pub throttles: AtomicUsize,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    pub endpoint: String,
    pub counts: Arc<FaultCounts>,
    _server: LocalServer,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    rates: FaultRates,
    random: Mutex<fastrand::Rng>,
    counts: Arc<FaultCounts>,
    date_shift: Option<jiff::SignedDuration>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (the emulator's endpoint); `seed` fixes which requests fail.
    pub fn start(upstream: &str, rates: FaultRates, seed: u64) -> FaultProxy {
        FaultProxy::spawn(upstream, rates, seed, None)
    }

    /// Starts a proxy to `upstream` that forwards every request and answers with the `Date` of a
    /// clock `shift` ahead of this machine's, made when the answer is. (The emulator's own
    /// `Date` is not shifted: Node caches it for a second, refreshed by a timer that can fire
    /// late, so it can lag the second it names.)
    pub fn shifting_dates(upstream: &str, shift: jiff::SignedDuration) -> FaultProxy {
        FaultProxy::spawn(upstream, FaultRates::NONE, 0, Some(shift))
    }

    fn spawn(
        upstream: &str,
        rates: FaultRates,
        seed: u64,
        date_shift: Option<jiff::SignedDuration>,
    ) -> FaultProxy {
        let counts = Arc::new(FaultCounts::default());
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
            rates,
            random: Mutex::new(fastrand::Rng::with_seed(seed)),
            counts: counts.clone(),
            date_shift,
        });
        let server = LocalServer::start(shared, handle);
        FaultProxy {
            endpoint: server.endpoint.clone(),
            counts,
            _server: server,
        }
    }
}

fn dynamodb_error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"{message}"}}"#);
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.0")
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let is_write = target.ends_with(".PutItem") || target.ends_with(".UpdateItem");
    let (throttle, lose_answer) = {
        let mut random = shared.random.lock().expect("lock");
        let throttle = random.f64() < shared.rates.throttles;
        (
            throttle,
            is_write && random.f64() < shared.rates.lost_write_answers,
        )
    };
    if throttle {
        shared.counts.throttles.fetch_add(1, Ordering::SeqCst);
        return Ok(dynamodb_error(
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Rate of requests exceeds the allowed throughput.",
        ));
    }
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let mut forward = shared
        .client
        .request(
            parts.method.clone(),
            format!("{}{}", shared.upstream, parts.uri.path()),
        )
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            forward = forward.header(name, value);
        }
    }
    let answer = match forward.send().await {
        Ok(answer) => answer,
        Err(error) => {
            return Ok(dynamodb_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                &format!("the emulator is unreachable: {error}"),
            ));
        }
    };
    shared.counts.forwarded.fetch_add(1, Ordering::SeqCst);
    if lose_answer {
        // Applied upstream; the caller sees a server error and retries.
        shared.counts.lost_write_answers.fetch_add(1, Ordering::SeqCst);
        return Ok(dynamodb_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "Internal server error",
        ));
    }
    let status = answer.status();
    let content_type = answer.headers().get("content-type").cloned();
    let body = answer.bytes().await.unwrap_or_default();
    let mut response = Response::builder().status(status);
    if let Some(content_type) = content_type {
        response = response.header("content-type", content_type);
    }
    // Without a Date of its own, hyper adds the proxy's.
    if let Some(shift) = shared.date_shift {
        let date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&(jiff::Timestamp::now() + shift))
            .expect("an HTTP date");
        response = response.header("date", date);
    }
    Ok(response.body(Full::new(body)).expect("response"))
}
