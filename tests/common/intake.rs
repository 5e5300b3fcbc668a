//! A fake DataDog intake on 127.0.0.1, and what it received.

use std::io::Read as _;

use flate2::read::GzDecoder;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const DISTRIBUTION_POINTS: &str = "/api/v1/distribution_points";

/// An intake that accepts every request.
pub async fn accepting() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(DISTRIBUTION_POINTS))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"status": "ok"})))
        .mount(&server)
        .await;
    server
}

/// The JSON bodies the intake received, gunzipped, in order.
pub async fn bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .expect("recording")
        .iter()
        .map(|request| {
            let mut json = String::new();
            GzDecoder::new(request.body.as_slice())
                .read_to_string(&mut json)
                .expect("a gzip body");
            serde_json::from_str(&json).expect("a JSON body")
        })
        .collect()
}

/// Every point of `metric` received: (tags, timestamp, number of values).
pub async fn points(server: &MockServer, metric: &str) -> Vec<(Value, Value, usize)> {
    let mut points = Vec::new();
    for body in bodies(server).await {
        for series in body["series"].as_array().expect("series") {
            if series["metric"] != metric {
                continue;
            }
            for point in series["points"].as_array().expect("points") {
                let values = point[1].as_array().expect("values").len();
                points.push((series["tags"].clone(), point[0].clone(), values));
            }
        }
    }
    points
}
