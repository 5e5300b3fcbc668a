//! A fake Lambda Runtime API on 127.0.0.1: the three calls a function makes (the next
//! invocation, its response, an init error), handing out one invocation, then keeping the
//! function waiting.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::emulator::Running;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
pub const REQUEST_ID: &str = "4f0c2b7e-0d1a-4a7b-9c3e-2b1d0e9f8a76";

/// A runtime API that hands out one invocation of `event` (30 s left), then keeps the function
/// waiting.
pub async fn runtime_api(event: &str) -> MockServer {
    runtime_api_with(event, Duration::from_secs(30)).await
}

/// The same, the invocation having `left` before its deadline (the function's timeout).
pub async fn runtime_api_with(event: &str, left: Duration) -> MockServer {
    let server = MockServer::start().await;
    let left_ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX);
    let deadline_ms = jiff::Timestamp::now().as_millisecond() + left_ms;
    Mock::given(method("GET"))
        .and(path(NEXT))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("lambda-runtime-aws-request-id", REQUEST_ID)
                .insert_header("lambda-runtime-deadline-ms", deadline_ms.to_string().as_str())
                .insert_header(
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:eu-west-1:123456789012:function:flow-metrics",
                )
                .set_body_raw(event.to_owned(), "application/json"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(NEXT))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(120)))
        .with_priority(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(
            "^/2018-06-01/runtime/(invocation/[^/]+/(response|error)|init/error)$",
        ))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    server
}

/// The function's first answer (the path it posted to, and the body), or its exit, whichever
/// comes first (within 30 s).
pub async fn first_answer(
    runtime: &MockServer,
    function: &mut Running,
) -> (Option<(String, String)>, Option<ExitStatus>) {
    let answered_by = Instant::now() + Duration::from_secs(30);
    loop {
        let received = runtime.received_requests().await.unwrap_or_default();
        let posted = received
            .iter()
            .find(|request| request.method.as_str() == "POST")
            .map(|request| {
                (
                    request.url.path().to_owned(),
                    String::from_utf8_lossy(&request.body).into_owned(),
                )
            });
        let exited = function.0.try_wait().expect("the function's status");
        if posted.is_some() || exited.is_some() || Instant::now() > answered_by {
            return (posted, exited);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
