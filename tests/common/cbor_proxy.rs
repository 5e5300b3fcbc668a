//! moto's CloudWatch on the protocol the Rust SDK speaks. The SDK calls CloudWatch with Smithy's
//! RPC v2 CBOR protocol (`POST /service/GraniteServiceVersion20100801/operation/<Operation>`,
//! `smithy-protocol: rpc-v2-cbor`, CBOR bodies), which moto does not route; moto serves the same
//! operations on CloudWatch's JSON protocol (`POST /`, `X-Amz-Target:
//! GraniteServiceVersion20100801.<Operation>`, `application/x-amz-json-1.0`), which CloudWatch
//! also lists. This proxy on 127.0.0.1 translates each request's body from CBOR to JSON and the
//! answer back, so that moto keeps, aggregates and judges the metrics.
//!
//! Timestamps travel as CBOR tag 1 (epoch seconds) and as JSON epoch seconds. An answer's
//! numbers become CBOR floats, which is what the operations used here answer with
//! (`GetMetricStatistics`' datapoints are doubles); a `Timestamp` becomes a tag 1 timestamp.

use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use ciborium::Value as Cbor;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::Value as Json;

use super::local_server::LocalServer;

/// A running proxy to moto's CloudWatch; stops when dropped.
pub struct CborProxy {
    pub endpoint: String,
    _server: LocalServer,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
}

impl CborProxy {
    /// Starts a proxy to moto at `upstream`.
    pub fn start(upstream: &str) -> CborProxy {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: reqwest::Client::new(),
        });
        let server = LocalServer::start(shared, translate);
        CborProxy {
            endpoint: server.endpoint.clone(),
            _server: server,
        }
    }
}

/// A CBOR value as JSON: tag 1 timestamps as epoch seconds, bytes as base64.
fn to_json(value: Cbor) -> Json {
    match value {
        Cbor::Integer(integer) => Json::from(i64::try_from(i128::from(integer)).unwrap_or_default()),
        Cbor::Float(float) => serde_json::Number::from_f64(float).map_or(Json::Null, Json::Number),
        Cbor::Text(text) => Json::String(text),
        Cbor::Bool(flag) => Json::Bool(flag),
        Cbor::Bytes(bytes) => Json::String(BASE64_STANDARD.encode(bytes)),
        Cbor::Tag(_, inner) => to_json(*inner),
        Cbor::Array(items) => Json::Array(items.into_iter().map(to_json).collect()),
        Cbor::Map(pairs) => Json::Object(
            pairs
                .into_iter()
                .filter_map(|(key, value)| Some((key.into_text().ok()?, to_json(value))))
                .collect(),
        ),
        _ => Json::Null,
    }
}

/// A JSON answer as CBOR: numbers as floats, a `Timestamp` as a tag 1 timestamp.
fn to_cbor(key: Option<&str>, value: Json) -> Cbor {
    let timestamp = key == Some("Timestamp");
    match value {
        Json::Number(number) if timestamp => {
            Cbor::Tag(1, Box::new(Cbor::Float(number.as_f64().unwrap_or_default())))
        }
        Json::String(text) if timestamp => {
            let seconds = text
                .parse::<jiff::Timestamp>()
                .map_or(0.0, |at| at.as_millisecond() as f64 / 1000.0);
            Cbor::Tag(1, Box::new(Cbor::Float(seconds)))
        }
        Json::Number(number) => Cbor::Float(number.as_f64().unwrap_or_default()),
        Json::String(text) => Cbor::Text(text),
        Json::Bool(flag) => Cbor::Bool(flag),
        Json::Null => Cbor::Null,
        Json::Array(items) => Cbor::Array(items.into_iter().map(|item| to_cbor(None, item)).collect()),
        Json::Object(fields) => Cbor::Map(
            fields
                .into_iter()
                .map(|(key, value)| {
                    let value = to_cbor(Some(&key), value);
                    (Cbor::Text(key), value)
                })
                .collect(),
        ),
    }
}

fn cbor_response(status: StatusCode, body: &Cbor) -> Response<Full<Bytes>> {
    let mut encoded = Vec::new();
    ciborium::into_writer(body, &mut encoded).expect("CBOR");
    Response::builder()
        .status(status)
        .header("content-type", "application/cbor")
        .header("smithy-protocol", "rpc-v2-cbor")
        .body(Full::new(Bytes::from(encoded)))
        .expect("response")
}

async fn translate(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let Some((service, operation)) = parts
        .uri
        .path()
        .strip_prefix("/service/")
        .and_then(|rest| rest.split_once("/operation/"))
        .map(|(service, operation)| (service.to_owned(), operation.to_owned()))
    else {
        let error = Cbor::Map(vec![(
            Cbor::Text("__type".into()),
            Cbor::Text("UnknownOperation".into()),
        )]);
        return Ok(cbor_response(StatusCode::NOT_FOUND, &error));
    };
    let body = body
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let json = if body.is_empty() {
        Json::Object(serde_json::Map::new())
    } else {
        ciborium::from_reader::<Cbor, _>(body.as_ref()).map_or(Json::Null, to_json)
    };
    let mut forward = shared
        .client
        .post(format!("{}/", shared.upstream))
        .header("x-amz-target", format!("{service}.{operation}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(json.to_string());
    for name in ["authorization", "x-amz-date", "x-amz-security-token"] {
        if let Some(value) = parts.headers.get(name) {
            forward = forward.header(name, value);
        }
    }
    let answer = match forward.send().await {
        Ok(answer) => answer,
        Err(error) => {
            let error = Cbor::Map(vec![
                (Cbor::Text("__type".into()), Cbor::Text("InternalFailure".into())),
                (
                    Cbor::Text("message".into()),
                    Cbor::Text(format!("moto is unreachable: {error}")),
                ),
            ]);
            return Ok(cbor_response(StatusCode::INTERNAL_SERVER_ERROR, &error));
        }
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = answer.text().await.unwrap_or_default();
    let json = if text.trim().is_empty() {
        Json::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|_| serde_json::json!({"__type": "InternalFailure", "message": text}))
    };
    Ok(cbor_response(status, &to_cbor(None, json)))
}
