//! The DataDog sink against a fake DataDog intake on 127.0.0.1: exact bodies, headers, grouping,
//! timestamp clamping, retries, the deadline, self-metrics, and the API key kept secret.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

mod common;

use common::intake;
use flow_metrics::count::{Occurrence, Tally};
use flow_metrics::sink::datadog::{ApiKey, DataDogSettings, RetryPolicy};
use flow_metrics::sink::{DataDogSink, PushContext, Sink};
use jiff::Timestamp;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "0123456789abcdef0123456789abcdef";
const INTAKE: &str = intake::DISTRIBUTION_POINTS;

fn now() -> Timestamp {
    "2026-03-07T12:00:00Z".parse().expect("timestamp")
}

fn settings(server: &MockServer, self_metrics: bool) -> DataDogSettings {
    DataDogSettings {
        base_url: server.uri(),
        api_key: ApiKey::new(KEY).expect("key"),
        metric: "genesys.flow.metric".to_owned(),
        static_tags: vec!["env:test".to_owned()],
        self_metrics,
    }
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 4,
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        request_timeout: Duration::from_secs(5),
    }
}

fn sink(server: &MockServer, self_metrics: bool) -> DataDogSink {
    DataDogSink::new(settings(server, self_metrics))
        .expect("sink")
        .with_retry(quick_retries())
}

fn occurrence<'a>(flow: &'a str, metric: &'a str, key: &'a str, time: &str) -> Occurrence<'a> {
    Occurrence {
        conversation_id: "c-1",
        flow,
        metric,
        key,
        time: time.parse().expect("timestamp"),
    }
}

fn context() -> PushContext {
    PushContext {
        now: now(),
        deadline: None,
    }
}

async fn accept_all(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(INTAKE))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"status": "ok"})))
        .mount(server)
        .await;
}

#[tokio::test]
async fn occurrences_become_distribution_points_grouped_per_series() {
    let server = MockServer::start().await;
    accept_all(&server).await;
    let at = now().as_second();
    let occurrences = [
        occurrence("CustomerRouting", "Unknown", "a", "2026-03-07T11:59:30.100Z"),
        occurrence("CustomerRouting", "Unknown", "b", "2026-03-07T11:59:30.900Z"),
        occurrence("CustomerRouting", "Unknown", "c", "2026-03-07T11:59:40Z"),
        occurrence("Billing IVR", "Menu Option 2", "d", "2026-03-07T11:59:30Z"),
    ];
    sink(&server, false)
        .push(&occurrences, &context())
        .await
        .expect("accepted");

    let requests = server.received_requests().await.expect("recording");
    assert_eq!(requests.len(), 1, "one request per push");
    let headers = &requests[0].headers;
    assert_eq!(
        headers.get("dd-api-key").map(|v| v.to_str().expect("ascii")),
        Some(KEY)
    );
    assert_eq!(
        headers
            .get("content-encoding")
            .map(|v| v.to_str().expect("ascii")),
        Some("gzip")
    );
    assert_eq!(
        headers.get("content-type").map(|v| v.to_str().expect("ascii")),
        Some("application/json")
    );
    assert_eq!(
        intake::bodies(&server).await,
        [json!({"series": [
            {
                "metric": "genesys.flow.metric",
                "points": [[at - 30, [1.0]]],
                "tags": ["flow:billing_ivr", "metric:menu_option_2", "env:test"],
                "type": "distribution"
            },
            {
                "metric": "genesys.flow.metric",
                "points": [[at - 30, [1.0, 1.0]], [at - 20, [1.0]]],
                "tags": ["flow:customerrouting", "metric:unknown", "env:test"],
                "type": "distribution"
            }
        ]})]
    );
}

#[tokio::test]
async fn old_and_future_keys_are_sent_at_the_processing_time() {
    let server = MockServer::start().await;
    accept_all(&server).await;
    let occurrences = [
        occurrence("F", "Old", "a", "2026-03-07T10:00:00Z"),
        occurrence("F", "Future", "b", "2026-03-07T13:00:00Z"),
    ];
    sink(&server, true)
        .push(&occurrences, &context())
        .await
        .expect("accepted");
    let body = &intake::bodies(&server).await[0];
    let series = body["series"].as_array().expect("series");
    let point_of = |tag: &str| {
        series
            .iter()
            .find(|series| series["tags"].as_array().expect("tags").contains(&json!(tag)))
            .map(|series| series["points"][0][0].clone())
    };
    assert_eq!(point_of("metric:old"), Some(json!(now().as_second())));
    assert_eq!(point_of("metric:future"), Some(json!(now().as_second())));
    let late = series.iter().find(|series| {
        series["metric"] == "genesys.flow_metrics.keys" && series["tags"][0] == "outcome:late"
    });
    assert_eq!(
        late.map(|series| series["points"][0][1].clone()),
        Some(json!([1.0]))
    );
}

#[tokio::test]
async fn transient_answers_are_retried_until_accepted() {
    let server = MockServer::start().await;
    for status in [500, 429, 408] {
        Mock::given(method("POST"))
            .and(path(INTAKE))
            .respond_with(ResponseTemplate::new(status))
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    accept_all(&server).await;
    let occurrences = [occurrence("F", "M", "a", "2026-03-07T11:59:30Z")];
    sink(&server, false)
        .push(&occurrences, &context())
        .await
        .expect("accepted on the fourth attempt");
    let bodies = intake::bodies(&server).await;
    assert_eq!(bodies.len(), 4);
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "the same payload each time"
    );
}

#[tokio::test]
async fn a_refusal_is_permanent_carries_datadogs_message_and_never_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(INTAKE))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"errors": ["Forbidden"]})))
        .mount(&server)
        .await;
    let occurrences = [occurrence("F", "M", "a", "2026-03-07T11:59:30Z")];
    let failure = sink(&server, false)
        .push(&occurrences, &context())
        .await
        .expect_err("refused");
    assert_eq!(
        server.received_requests().await.expect("recording").len(),
        1,
        "no retry"
    );
    assert!(!failure.error.is_transient());
    assert_eq!(failure.delivered, 0);
    let message = failure.to_string();
    assert!(
        message.contains("403") && message.contains("Forbidden"),
        "{message}"
    );
    assert!(!message.contains(KEY), "{message}");
    assert!(!format!("{:?}", settings(&server, false)).contains(KEY));
}

#[tokio::test]
async fn retries_stop_before_the_invocation_deadline() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(INTAKE))
        .respond_with(ResponseTemplate::new(503).set_delay(Duration::from_millis(200)))
        .mount(&server)
        .await;
    let sink = DataDogSink::new(settings(&server, false))
        .expect("sink")
        .with_retry(RetryPolicy {
            attempts: 1000,
            min_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(100),
            request_timeout: Duration::from_secs(30),
        });
    // Retries stop while an attempt still fits before the deadline.
    let deadline = Instant::now() + Duration::from_secs(5);
    let occurrences = [occurrence("F", "M", "a", "2026-03-07T11:59:30Z")];
    let failure = sink
        .push(
            &occurrences,
            &PushContext {
                now: now(),
                deadline: Some(deadline),
            },
        )
        .await
        .expect_err("unavailable");
    assert!(
        Instant::now() < deadline,
        "the push gave up in time to release its claims"
    );
    assert!(failure.error.is_transient());
    let attempts = server.received_requests().await.expect("recording").len();
    assert!((1..1000).contains(&attempts), "{attempts} attempts");
}

#[tokio::test]
async fn a_large_push_is_split_and_a_failure_says_what_was_delivered() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(INTAKE))
        .respond_with(ResponseTemplate::new(202))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(INTAKE))
        .respond_with(ResponseTemplate::new(413).set_body_string("payload too large"))
        .mount(&server)
        .await;
    let keys = ["a", "b", "c", "d", "e"];
    let occurrences: Vec<Occurrence<'_>> = keys
        .iter()
        .map(|key| occurrence("F", "M", key, "2026-03-07T11:59:30Z"))
        .collect();
    let failure = sink(&server, false)
        .with_occurrences_per_request(2)
        .push(&occurrences, &context())
        .await
        .expect_err("the second request is refused");
    assert_eq!(failure.delivered, 2);
    let bodies = intake::bodies(&server).await;
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["series"][0]["points"][0][1], json!([1.0, 1.0]));
}

#[tokio::test]
async fn self_metrics_ride_along_and_wait_when_nothing_else_is_sent() {
    let server = MockServer::start().await;
    accept_all(&server).await;
    let sink = sink(&server, true);
    let quiet = Tally {
        events_read: 3,
        events_ignored: 2,
        keys_seen: 4,
        keys_already_counted: 4,
        ..Tally::default()
    };
    sink.record(&quiet, now());
    sink.push(&[], &context()).await.expect("nothing to send");
    assert!(
        intake::bodies(&server).await.is_empty(),
        "no request just for self-metrics"
    );

    let busy = Tally {
        events_read: 1,
        keys_seen: 1,
        keys_counted: 1,
        ..Tally::default()
    };
    let occurrences = [occurrence("F", "M", "a", "2026-03-07T11:59:30Z")];
    sink.record(&busy, now());
    sink.push(&occurrences, &context()).await.expect("sent");
    let body = &intake::bodies(&server).await[0];
    let self_metric = |name: &str, outcome: &str| {
        body["series"]
            .as_array()
            .expect("series")
            .iter()
            .find(|series| series["metric"] == name && series["tags"][0] == format!("outcome:{outcome}"))
            .map(|series| (series["points"][0][1].clone(), series["tags"].clone()))
    };
    assert_eq!(
        self_metric("genesys.flow_metrics.events", "read"),
        Some((json!([4.0]), json!(["outcome:read", "env:test"])))
    );
    assert_eq!(
        self_metric("genesys.flow_metrics.keys", "already_counted").map(|p| p.0),
        Some(json!([4.0]))
    );
    assert_eq!(
        self_metric("genesys.flow_metrics.keys", "counted").map(|p| p.0),
        Some(json!([1.0]))
    );
    assert_eq!(
        self_metric("genesys.flow_metrics.keys", "invalid"),
        None,
        "zeros are left out"
    );

    let a_minute_later = PushContext {
        now: now() + jiff::SignedDuration::from_secs(61),
        deadline: None,
    };
    sink.record(&quiet, now());
    sink.push(&[], &context()).await.expect("pending");
    sink.push(&[], &a_minute_later).await.expect("flushed");
    let bodies = intake::bodies(&server).await;
    assert_eq!(bodies.len(), 2, "pending self-metrics are flushed after a minute");
    assert!(
        bodies[1]["series"]
            .as_array()
            .expect("series")
            .iter()
            .all(|series| {
                series["metric"]
                    .as_str()
                    .is_some_and(|name| name.starts_with("genesys.flow_metrics."))
            })
    );
}

#[tokio::test]
async fn the_key_never_reaches_the_logs() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(INTAKE))
        .respond_with(ResponseTemplate::new(500).set_body_string("internal error"))
        .mount(&server)
        .await;
    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = {
        let logs = Arc::clone(&logs);
        move || LogWriter(Arc::clone(&logs))
    };
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(writer)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let sink = sink(&server, true);
    tracing::debug!(?sink, "sink built");
    let occurrences = [occurrence("F", "M", "a", "2026-03-07T11:59:30Z")];
    let failure = sink
        .push(&occurrences, &context())
        .await
        .expect_err("unavailable");
    let logs = String::from_utf8(logs.lock().expect("lock").clone()).expect("utf-8");
    assert!(logs.contains("retrying"), "the retries were logged: {logs}");
    assert!(!logs.contains(KEY), "{logs}");
    assert!(!failure.to_string().contains(KEY));
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

mod secret {
    use aws_sdk_secretsmanager::Client;
    use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use flow_metrics::sink::datadog::{ApiKey, ApiKeyError};

    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:datadog-api-key-AbCdEf";

    #[tokio::test]
    async fn the_key_is_read_from_the_secrets_plain_text() {
        let read = mock!(Client::get_secret_value)
            .match_requests(|request| request.secret_id() == Some(ARN))
            .then_output(|| {
                GetSecretValueOutput::builder()
                    .secret_string(" 0123abcd\n")
                    .build()
            });
        let client = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&read]);
        let key = ApiKey::from_secret(&client, ARN).await.expect("key");
        assert_eq!(key, ApiKey::new("0123abcd").expect("key"));
        assert_eq!(format!("{key:?} {key}"), "ApiKey(***) ***");
    }

    #[tokio::test]
    async fn an_unreadable_or_empty_secret_is_a_clear_error() {
        let missing = mock!(Client::get_secret_value)
            .sequence()
            .http_status(
                400,
                Some(r#"{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#.to_owned()),
            )
            .build();
        let client = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&missing]);
        let error = ApiKey::from_secret(&client, ARN).await.expect_err("missing");
        assert!(matches!(error, ApiKeyError::Secret { .. }));
        assert!(error.to_string().contains(ARN), "{error}");

        let empty = mock!(Client::get_secret_value)
            .then_output(|| GetSecretValueOutput::builder().secret_string("").build());
        let client = mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&empty]);
        assert!(matches!(
            ApiKey::from_secret(&client, ARN).await,
            Err(ApiKeyError::Empty)
        ));
    }
}
