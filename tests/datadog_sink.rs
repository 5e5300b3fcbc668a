//! The DataDog sink against a fake DataDog intake on 127.0.0.1 that holds requests to DataDog's
//! published specification (`common::intake`): exact bodies and headers, the encoding, grouping,
//! timestamp clamping, retries, 429 with its rate-limit headers, 413 and 400 isolated to the
//! series refused, the deadline, self-metrics, the API key kept secret, and which points a push
//! may have had DataDog count twice (`resent`).

use std::time::Duration;

use tokio::time::Instant;

mod common;

use common::intake::{Intake, LostAnswer, Rules};
use flow_metrics::count::{Occurrence, Tally};
use flow_metrics::key::Source;
use flow_metrics::sink::datadog::{
    ApiKey, Compression, DataDogSettings, MetricNames, RetryPolicy, USER_AGENT,
};
use flow_metrics::sink::{DataDogSink, PushContext, PushFailure, Pushed, Sink, SinkError};
use jiff::Timestamp;
use serde_json::json;

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn now() -> Timestamp {
    "2026-03-07T12:00:00Z".parse().expect("timestamp")
}

/// An intake whose clock is the tests' `now()`, with these extra rules.
async fn intake(rules: Rules) -> Intake {
    Intake::start(Rules {
        now: Some(now()),
        ..rules
    })
    .await
}

async fn accepting() -> Intake {
    intake(Rules::default()).await
}

fn settings(intake: &Intake, self_metrics: bool) -> DataDogSettings {
    DataDogSettings {
        api_key: ApiKey::new(KEY).expect("key"),
        ..intake.sink_settings(&["env:test"], self_metrics)
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

fn sink(intake: &Intake, self_metrics: bool) -> DataDogSink {
    DataDogSink::new(settings(intake, self_metrics))
        .expect("sink")
        .with_retry(quick_retries())
}

fn occurrence<'a>(flow: &'a str, metric: &'a str, key: &'a str, time: &str) -> Occurrence<'a> {
    Occurrence {
        conversation_id: "c-1",
        flow,
        metric,
        ids: None,
        key,
        time: time.parse().expect("timestamp"),
        elapsed: None,
        source: Source::Attribute,
    }
}

fn context() -> PushContext {
    PushContext {
        now: now(),
        deadline: None,
    }
}

#[tokio::test]
async fn occurrences_become_distribution_points_grouped_per_series() {
    let intake = accepting().await;
    let at = now().as_second();
    let occurrences = [
        occurrence("CustomerRouting", "Unknown", "a", "2026-03-07T11:59:30.100Z"),
        occurrence("CustomerRouting", "Unknown", "b", "2026-03-07T11:59:30.900Z"),
        occurrence("CustomerRouting", "Unknown", "c", "2026-03-07T11:59:40Z"),
        occurrence("Billing IVR", "Menu Option 2", "d", "2026-03-07T11:59:30Z"),
    ];
    sink(&intake, false)
        .push(&occurrences, &context())
        .await
        .expect("accepted");

    let received = intake.received();
    assert_eq!(received.len(), 1, "one request per push");
    assert_eq!(received[0].content_encoding.as_deref(), Some("deflate"));
    assert_eq!(received[0].user_agent.as_deref(), Some(USER_AGENT));
    assert!(USER_AGENT.starts_with("genesys-flow-metrics/0."), "{USER_AGENT}");
    assert_eq!(
        intake.accepted(),
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
async fn the_intake_refuses_what_the_specification_does_not_list() {
    // The bug this sink had: gzip is listed for /api/v1/series, not for this endpoint.
    let intake = accepting().await;
    let client = reqwest::Client::new();
    let url = format!("{}{}", intake.uri(), common::intake::DISTRIBUTION_POINTS);
    let body =
        json!({"series": [{"metric": "m", "points": [[now().as_second(), [1.0]]], "type": "distribution"}]});
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gzip, body.to_string().as_bytes()).expect("gzip");
    let post = |body: Vec<u8>, encoding: Option<&str>, key: Option<&str>| {
        let mut request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        if let Some(key) = key {
            request = request.header("dd-api-key", key);
        }
        request.send()
    };
    let status = |response: reqwest::Result<reqwest::Response>| response.expect("answer").status().as_u16();
    assert_eq!(
        status(post(gzip.finish().expect("gzip"), Some("gzip"), Some(KEY)).await),
        400
    );
    assert_eq!(
        status(post(b"not zlib".to_vec(), Some("deflate"), Some(KEY)).await),
        400
    );
    assert_eq!(status(post(body.to_string().into_bytes(), None, None).await), 403);
    let stale = json!({"series": [{"metric": "m", "points": [[now().as_second() - 3601, [1.0]]]}]});
    assert_eq!(
        status(post(stale.to_string().into_bytes(), None, Some(KEY)).await),
        400
    );
    let bad_point = json!({"series": [{"metric": "m", "points": [[now().as_second(), 1.0]]}]});
    assert_eq!(
        status(post(bad_point.to_string().into_bytes(), None, Some(KEY)).await),
        400
    );
    assert_eq!(
        status(post(body.to_string().into_bytes(), None, Some(KEY)).await),
        202
    );
    assert_eq!(intake.accepted().len(), 1);
}

#[tokio::test]
async fn uncompressed_bodies_are_plain_json_on_request() {
    let intake = accepting().await;
    let sink = DataDogSink::new(DataDogSettings {
        compression: Compression::None,
        ..settings(&intake, false)
    })
    .expect("sink");
    let occurrences = [occurrence("F", "M", "a", "2026-03-07T11:59:30Z")];
    sink.push(&occurrences, &context()).await.expect("accepted");
    assert_eq!(intake.received()[0].content_encoding, None);
    assert_eq!(intake.accepted().len(), 1);
}

#[tokio::test]
async fn old_and_future_keys_are_sent_at_the_processing_time() {
    let intake = accepting().await;
    let occurrences = [
        occurrence("F", "Old", "a", "2026-03-07T10:00:00Z"),
        occurrence("F", "Future", "b", "2026-03-07T13:00:00Z"),
    ];
    sink(&intake, true)
        .push(&occurrences, &context())
        .await
        .expect("accepted: every point inside DataDog's window");
    let body = &intake.accepted()[0];
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
    let intake = intake(Rules {
        forced: vec![(500, None), (503, None), (408, None)],
        ..Rules::default()
    })
    .await;
    let occurrences = [occurrence("F", "M", "a", "2026-03-07T11:59:30Z")];
    sink(&intake, false)
        .push(&occurrences, &context())
        .await
        .expect("accepted on the fourth attempt");
    assert_eq!(intake.statuses(), [500, 503, 408, 202]);
    let bodies: Vec<_> = intake
        .received()
        .into_iter()
        .map(|received| received.body)
        .collect();
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "the same payload each time"
    );
}

/// One push, 20 s before its deadline, to an intake that first answers 429 with
/// `X-RateLimit-Reset: reset`. Returns the intake, the push's result and how long it took.
async fn push_rate_limited(reset: u64) -> (Intake, Result<Pushed, PushFailure>, Duration) {
    let intake = intake(Rules {
        forced: vec![(429, Some(reset))],
        ..Rules::default()
    })
    .await;
    let occurrences = [occurrence("F", "M", "a", "2026-03-07T11:59:30Z")];
    let started = Instant::now();
    let context = PushContext {
        now: now(),
        deadline: Some(started + Duration::from_secs(20)),
    };
    let pushed = sink(&intake, false).push(&occurrences, &context).await;
    (intake, pushed, Instant::now() - started)
}

#[tokio::test]
async fn a_rate_limit_is_waited_out_as_datadog_says_within_the_deadline() {
    let (intake, pushed, took) = push_rate_limited(1).await;
    pushed.expect("accepted after the reset");
    assert_eq!(intake.statuses(), [429, 202]);
    // The quick retry policy's backoff is 5 ms: only the header can make it wait a second.
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(10)).contains(&took),
        "took {took:?}: the seconds X-RateLimit-Reset named, not a blind backoff"
    );
}

#[tokio::test]
async fn a_rate_limit_that_outlasts_the_deadline_fails_at_once_as_transient() {
    let (intake, pushed, took) = push_rate_limited(60).await;
    let failure = pushed.expect_err("the reset comes after the deadline");
    assert!(took < Duration::from_secs(1), "no pointless wait");
    assert!(failure.first_error().is_transient());
    assert!(failure.to_string().contains("push's deadline"), "{failure}");
    assert_eq!(intake.statuses(), [429]);
}

#[tokio::test]
async fn a_refusal_is_permanent_carries_datadogs_message_and_never_the_key() {
    let intake = intake(Rules {
        forced: vec![(403, None)],
        ..Rules::default()
    })
    .await;
    let occurrences = [occurrence("F", "M", "a", "2026-03-07T11:59:30Z")];
    let failure = sink(&intake, false)
        .push(&occurrences, &context())
        .await
        .expect_err("refused");
    assert_eq!(intake.statuses(), [403], "no retry");
    assert!(!failure.first_error().is_transient());
    assert_eq!(failure.undelivered.len(), 1);
    let message = failure.to_string();
    assert!(
        message.contains("403") && message.contains("forced by the test"),
        "{message}"
    );
    assert!(!message.contains(KEY), "{message}");
    assert!(!format!("{:?}", settings(&intake, false)).contains(KEY));
}

#[tokio::test]
async fn retries_stop_before_the_invocation_deadline() {
    let intake = intake(Rules {
        forced: vec![(503, None); 1000],
        ..Rules::default()
    })
    .await;
    let sink = DataDogSink::new(settings(&intake, false))
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
    assert!(failure.first_error().is_transient());
    let attempts = intake.received().len();
    assert!((1..1000).contains(&attempts), "{attempts} attempts");
}

#[tokio::test]
async fn a_payload_too_large_is_split_in_halves_until_it_passes() {
    // At most two series a request: four series are sent as two halves.
    let intake = intake(Rules {
        max_series: Some(2),
        ..Rules::default()
    })
    .await;
    let occurrences: Vec<Occurrence<'_>> = ["A", "B", "C", "D"]
        .iter()
        .map(|metric| occurrence("F", metric, "k", "2026-03-07T11:59:30Z"))
        .collect();
    sink(&intake, false)
        .push(&occurrences, &context())
        .await
        .expect("every series delivered");
    assert_eq!(intake.statuses(), [413, 202, 202]);
    let series: usize = intake
        .accepted()
        .iter()
        .map(|body| body["series"].as_array().expect("series").len())
        .sum();
    assert_eq!(series, 4);
}

#[tokio::test]
async fn a_series_datadog_refuses_fails_alone_and_the_rest_is_delivered() {
    let intake = intake(Rules {
        refused_tag: Some("metric:poison".to_owned()),
        ..Rules::default()
    })
    .await;
    let occurrences = [
        occurrence("F", "A", "a", "2026-03-07T11:59:30Z"),
        occurrence("F", "Poison", "p", "2026-03-07T11:59:30Z"),
        occurrence("F", "B", "b", "2026-03-07T11:59:30Z"),
        occurrence("F", "C", "c", "2026-03-07T11:59:30Z"),
        occurrence("F", "Poison", "q", "2026-03-07T11:59:31Z"),
    ];
    let failure = sink(&intake, false)
        .push(&occurrences, &context())
        .await
        .expect_err("the poison series is refused");
    let undelivered: Vec<usize> = failure.undelivered.iter().map(|(index, _)| *index).collect();
    assert_eq!(undelivered, [1, 4], "only the poison series' occurrences");
    assert!(
        failure
            .undelivered
            .iter()
            .all(|(_, error)| matches!(error, SinkError::Permanent(message) if message.contains("400") && message.contains("Invalid tag"))),
        "{failure}"
    );
    let delivered: Vec<String> = intake
        .accepted()
        .iter()
        .flat_map(|body| body["series"].as_array().expect("series").clone())
        .map(|series| series["tags"][1].as_str().expect("metric tag").to_owned())
        .collect();
    assert_eq!(delivered.len(), 3);
    assert!(!delivered.contains(&"metric:poison".to_owned()));
}

#[tokio::test]
async fn a_large_push_is_cut_into_requests_and_a_failure_names_what_was_not_delivered() {
    let intake = intake(Rules {
        forced: vec![(202, None), (403, None)],
        ..Rules::default()
    })
    .await;
    let keys = ["a", "b", "c", "d", "e"];
    let occurrences: Vec<Occurrence<'_>> = keys
        .iter()
        .map(|key| occurrence("F", "M", key, "2026-03-07T11:59:30Z"))
        .collect();
    let failure = sink(&intake, false)
        .with_occurrences_per_request(2)
        .push(&occurrences, &context())
        .await
        .expect_err("the second request is refused");
    let undelivered: Vec<usize> = failure.undelivered.iter().map(|(index, _)| *index).collect();
    assert_eq!(
        undelivered,
        [2, 3, 4],
        "a bad key fails what is left without trying it"
    );
    assert_eq!(intake.statuses(), [202, 403]);
    let first = &intake.received()[0];
    assert_eq!(
        first.body.as_ref().expect("body")["series"][0]["points"][0][1],
        json!([1.0, 1.0])
    );
}

#[tokio::test]
async fn self_metrics_ride_along_and_wait_when_nothing_else_is_sent() {
    let intake = accepting().await;
    let sink = sink(&intake, true);
    let quiet = Tally {
        events_read: 3,
        events_ignored: 2,
        keys_seen: 4,
        keys_already_counted: 4,
        ..Tally::default()
    };
    sink.record(&quiet, now());
    sink.push(&[], &context()).await.expect("nothing to send");
    assert!(intake.received().is_empty(), "no request just for self-metrics");

    let busy = Tally {
        events_read: 1,
        keys_seen: 1,
        keys_counted: 1,
        ..Tally::default()
    };
    let occurrences = [occurrence("F", "M", "a", "2026-03-07T11:59:30Z")];
    sink.record(&busy, now());
    sink.push(&occurrences, &context()).await.expect("sent");
    let body = &intake.accepted()[0];
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
    let bodies = intake.accepted();
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
async fn self_metrics_alone_get_one_attempt_and_wait_for_the_next_push() {
    let intake = intake(Rules {
        forced: vec![(503, None)],
        ..Rules::default()
    })
    .await;
    let sink = sink(&intake, true);
    let tally = Tally {
        events_read: 2,
        ..Tally::default()
    };
    sink.record(&tally, now());
    let a_minute_later = PushContext {
        now: now() + jiff::SignedDuration::from_secs(61),
        deadline: None,
    };
    sink.push(&[], &a_minute_later).await.expect("never fails a push");
    assert_eq!(intake.statuses(), [503], "one attempt, no retry");
    let occurrences = [occurrence("F", "M", "a", "2026-03-07T11:59:30Z")];
    sink.push(&occurrences, &context()).await.expect("sent");
    let body = &intake.accepted()[0];
    let events_read = body["series"]
        .as_array()
        .expect("series")
        .iter()
        .find(|series| series["metric"] == "genesys.flow_metrics.events")
        .map(|series| series["points"][0][1].clone());
    assert_eq!(
        events_read,
        Some(json!([2.0])),
        "kept, and sent with the next push"
    );
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

#[tokio::test]
async fn the_time_since_the_flows_first_key_travels_with_each_count() {
    let intake = intake(Rules {
        refused_tag: Some("metric:poison".to_owned()),
        ..Rules::default()
    })
    .await;
    let at = now().as_second();
    let timed = |metric: &'static str, key: &'static str, time: &str, elapsed_ms: i64| Occurrence {
        elapsed: Some(jiff::SignedDuration::from_millis(elapsed_ms)),
        ..occurrence("Routing", metric, key, time)
    };
    let occurrences = [
        timed("Start", "a", "2026-03-07T11:59:30Z", 0),
        timed("Menu", "b", "2026-03-07T11:59:40Z", 10_000),
        timed("Menu", "c", "2026-03-07T11:59:40Z", 12_500),
        timed("Poison", "p", "2026-03-07T11:59:45Z", 15_000),
    ];
    let failure = sink(&intake, false)
        .push(&occurrences, &context())
        .await
        .expect_err("the poison metric is refused");
    let undelivered: Vec<usize> = failure.undelivered.iter().map(|(index, _)| *index).collect();
    assert_eq!(undelivered, [3]);
    let series: Vec<serde_json::Value> = intake
        .accepted()
        .iter()
        .flat_map(|body| body["series"].as_array().expect("series").clone())
        .collect();
    let of = |metric: &str, tag: &str| {
        series
            .iter()
            .find(|series| series["metric"] == metric && series["tags"][1] == tag)
            .map(|series| series["points"].clone())
    };
    assert_eq!(
        of("genesys.flow.metric", "metric:menu"),
        Some(json!([[at - 20, [1.0, 1.0]]]))
    );
    assert_eq!(
        of("genesys.flow.metric.elapsed", "metric:menu"),
        Some(json!([[at - 20, [10.0, 12.5]]])),
        "seconds since the flow's first key, at the key's time"
    );
    assert_eq!(
        of("genesys.flow.metric.elapsed", "metric:start"),
        Some(json!([[at - 30, [0.0]]]))
    );
    // The refused metric's count and elapsed series were refused together: neither was sent.
    assert!(of("genesys.flow.metric", "metric:poison").is_none());
    assert!(of("genesys.flow.metric.elapsed", "metric:poison").is_none());
}

#[tokio::test]
async fn with_elapsed_off_only_the_counts_are_sent() {
    let intake = accepting().await;
    let timed = |metric: &'static str, key: &'static str, elapsed_ms: i64| Occurrence {
        elapsed: Some(jiff::SignedDuration::from_millis(elapsed_ms)),
        ..occurrence("Routing", metric, key, "2026-03-07T11:59:40Z")
    };
    let occurrences = [
        timed("Start", "a", 0),
        timed("Menu", "b", 10_000),
        timed("Menu", "c", 12_500),
    ];
    let mut settings = settings(&intake, false);
    settings.metrics.elapsed = false;
    DataDogSink::new(settings)
        .expect("sink")
        .with_retry(quick_retries())
        .push(&occurrences, &context())
        .await
        .expect("delivered");
    let metrics: Vec<String> = intake
        .accepted()
        .iter()
        .flat_map(|body| body["series"].as_array().expect("series").clone())
        .map(|series| series["metric"].as_str().expect("a name").to_owned())
        .collect();
    assert_eq!(metrics, ["genesys.flow.metric", "genesys.flow.metric"]);
    let counted: usize = intake
        .points("genesys.flow.metric")
        .iter()
        .map(|point| point.2)
        .sum();
    assert_eq!(counted, 3, "the counts are unchanged");
}

#[tokio::test]
async fn each_flow_run_is_timed_from_its_own_start_and_stale_keys_start_none() {
    use flow_metrics::ledger::MemoryLedger;
    use flow_metrics::pipeline::Pipeline;

    let intake = accepting().await;
    let pipeline = Pipeline::new(MemoryLedger::default(), sink(&intake, false));
    // A messaging conversation through the same flow twice, three hours apart, still carrying
    // an attribute of that flow from four weeks ago (stale: never counted, never a run's start).
    let event = common::attributes_event(
        "c-1",
        "2026-03-07T11:59:00Z",
        &[
            "ChatMetric_Start(2026-02-07T08:00:00.000Z)",
            "ChatMetric_Start(2026-03-07T08:00:00.000Z)",
            "ChatMetric_Menu(2026-03-07T08:00:20.000Z)",
            "ChatMetric_Agent(2026-03-07T08:00:40.000Z)",
            "ChatMetric_Start(2026-03-07T11:00:00.000Z)",
            "ChatMetric_Menu(2026-03-07T11:00:15.000Z)",
        ],
    );
    let report = pipeline.process_batch(&[event.as_str()], now()).await;
    assert_eq!((report.tally.keys_counted, report.tally.keys_stale), (5, 1));
    let elapsed_of = |tag: &str| {
        let mut seconds: Vec<f64> = intake
            .accepted()
            .iter()
            .flat_map(|body| body["series"].as_array().expect("series").clone())
            .filter(|series| series["metric"] == "genesys.flow.metric.elapsed" && series["tags"][1] == tag)
            .flat_map(|series| series["points"].as_array().expect("points").clone())
            .flat_map(|point| point[1].as_array().expect("values").clone())
            .map(|value| value.as_f64().expect("seconds"))
            .collect();
        seconds.sort_by(f64::total_cmp);
        seconds
    };
    // The first run's keys 0, 20 and 40 s from its start; the second's 0 and 15 s from its own.
    assert_eq!(elapsed_of("metric:start"), [0.0, 0.0]);
    assert_eq!(elapsed_of("metric:menu"), [15.0, 20.0]);
    assert_eq!(elapsed_of("metric:agent"), [40.0]);
}

/// Three occurrences in two series: one request.
fn three_occurrences() -> [Occurrence<'static>; 3] {
    [
        occurrence("F", "A", "a", "2026-03-07T11:59:30Z"),
        occurrence("F", "A", "b", "2026-03-07T11:59:31Z"),
        occurrence("F", "B", "c", "2026-03-07T11:59:30Z"),
    ]
}

/// How many points of value 1 (counted keys) the intake took, duplicates included.
fn counted(intake: &Intake) -> usize {
    intake
        .points("genesys.flow.metric")
        .iter()
        .map(|point| point.2)
        .sum()
}

#[tokio::test]
async fn points_taken_before_a_503_are_counted_twice_and_reported_as_resent() {
    // DataDog took the request, but its answer was lost behind the load balancer: a 503.
    let intake = intake(Rules {
        lost_answers: vec![LostAnswer::Status(503)],
        ..Rules::default()
    })
    .await;
    let pushed = sink(&intake, false)
        .push(&three_occurrences(), &context())
        .await
        .expect("delivered on the retry");
    assert_eq!(
        pushed,
        Pushed {
            resent: vec![0, 1, 2]
        }
    );
    assert_eq!(intake.statuses(), [503, 202]);
    assert_eq!(
        counted(&intake),
        6,
        "the double now reported: each point taken twice"
    );
}

#[tokio::test]
async fn a_503_that_took_nothing_is_reported_as_resent_too_since_the_sink_cannot_tell() {
    // The same 503, with nothing taken: the sink sees exactly what it saw above.
    let intake = intake(Rules {
        forced: vec![(503, None)],
        ..Rules::default()
    })
    .await;
    let pushed = sink(&intake, false)
        .push(&three_occurrences(), &context())
        .await
        .expect("delivered on the retry");
    assert_eq!(
        pushed,
        Pushed {
            resent: vec![0, 1, 2]
        }
    );
    assert_eq!(
        counted(&intake),
        3,
        "no double this time, but only the intake knows"
    );
}

#[tokio::test]
async fn only_the_request_that_got_the_server_error_is_reported() {
    let intake = intake(Rules {
        forced: vec![(202, None), (500, None)],
        ..Rules::default()
    })
    .await;
    let occurrences: Vec<Occurrence<'_>> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|key| occurrence("F", "M", key, "2026-03-07T11:59:30Z"))
        .collect();
    let pushed = sink(&intake, false)
        .with_occurrences_per_request(2)
        .push(&occurrences, &context())
        .await
        .expect("delivered");
    assert_eq!(intake.statuses(), [202, 500, 202, 202]);
    assert_eq!(
        pushed,
        Pushed { resent: vec![2, 3] },
        "the second request's occurrences"
    );
}

#[tokio::test]
async fn a_refused_connection_sent_nothing_and_is_not_reported_as_resent() {
    // A closed port on 127.0.0.1: connecting is refused until the intake opens it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = closed.local_addr().expect("its address");
    drop(closed);
    let sink = DataDogSink::new(DataDogSettings {
        base_url: format!("http://{address}"),
        api_key: ApiKey::new(KEY).expect("key"),
        metrics: MetricNames::default(),
        static_tags: Vec::new(),
        self_metrics: false,
        compression: Compression::Deflate,
    })
    .expect("sink")
    .with_retry(RetryPolicy {
        attempts: 4,
        min_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
    });
    let started = Instant::now();
    let push = tokio::spawn(async move { sink.push(&three_occurrences(), &context()).await });
    // The first attempt is refused at once; the retry waits 0.5 to 1 s (jittered).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let listener = std::net::TcpListener::bind(address).expect("the same port, now open");
    let intake = Intake::start_on(
        listener,
        Rules {
            now: Some(now()),
            ..Rules::default()
        },
    )
    .await;
    let pushed = push.await.expect("the push's task");
    assert_eq!(pushed, Ok(Pushed::default()));
    assert_eq!(intake.statuses(), [202], "only the retry reached the intake");
    assert!(
        Instant::now() - started >= Duration::from_millis(500),
        "the first attempt failed and was retried"
    );
}

#[tokio::test]
async fn a_rate_limit_or_a_408_took_nothing_and_is_not_reported_as_resent() {
    for status in [429, 408] {
        let intake = intake(Rules {
            forced: vec![(status, (status == 429).then_some(0))],
            ..Rules::default()
        })
        .await;
        let pushed = sink(&intake, false)
            .push(&three_occurrences(), &context())
            .await
            .expect("delivered on the retry");
        assert_eq!(intake.statuses(), [status, 202]);
        assert_eq!(pushed, Pushed::default(), "{status}");
    }
}

#[tokio::test]
async fn requests_halved_after_a_refusal_are_not_reported_as_resent() {
    let intake = intake(Rules {
        refused_tag: Some("metric:poison".to_owned()),
        ..Rules::default()
    })
    .await;
    let occurrences = [
        occurrence("F", "A", "a", "2026-03-07T11:59:30Z"),
        occurrence("F", "Poison", "p", "2026-03-07T11:59:30Z"),
        occurrence("F", "B", "b", "2026-03-07T11:59:30Z"),
    ];
    let failure = sink(&intake, false)
        .push(&occurrences, &context())
        .await
        .expect_err("the poison series is refused");
    assert_eq!(intake.statuses().first(), Some(&400));
    assert_eq!(failure.undelivered.len(), 1);
    assert_eq!(failure.resent, Vec::<usize>::new(), "a 400 takes nothing");
}

#[tokio::test]
async fn points_taken_while_the_answer_never_comes_are_reported_as_resent_when_given_up() {
    // Each request taken, and its 202 held back past the client's 1 s timeout.
    let intake = intake(Rules {
        lost_answers: vec![LostAnswer::Stall(Duration::from_secs(30)); 10],
        ..Rules::default()
    })
    .await;
    let sink = DataDogSink::new(settings(&intake, false))
        .expect("sink")
        .with_retry(RetryPolicy {
            request_timeout: Duration::from_secs(1),
            ..quick_retries()
        });
    // Room for two attempts: a third would start with less than 3 s before the deadline.
    let deadline = Instant::now() + Duration::from_millis(4_500);
    let failure = sink
        .push(
            &three_occurrences(),
            &PushContext {
                now: now(),
                deadline: Some(deadline),
            },
        )
        .await
        .expect_err("no answer before the deadline");
    assert!(Instant::now() < deadline);
    assert_eq!(failure.resent, [0, 1, 2]);
    let undelivered: Vec<usize> = failure.undelivered.iter().map(|(index, _)| *index).collect();
    assert_eq!(undelivered, [0, 1, 2]);
    assert!(failure.first_error().is_transient());
    assert_eq!(intake.accepted().len(), 2, "DataDog took both attempts");
    assert_eq!(counted(&intake), 6);
}
