//! The pipeline's promise: each valid, recent (conversation, key) is delivered exactly once,
//! whatever the duplicates, order and failures of the events.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{FlakyLedger, RecordingSink, SlowSink, attributes_event, other_topic_event};
use flow_metrics::ledger::{ClaimRequest, ClaimToken, Ledger, MemoryLedger};
use flow_metrics::pipeline::{BatchTime, DeliveryError, EventOutcome, Pipeline};
use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

const C1: &str = "11111111-1111-1111-1111-111111111111";
const C2: &str = "22222222-2222-2222-2222-222222222222";
const START: &str = "RoutingMetric_Start(2026-03-07T04:08:00.000Z)";
const MENU: &str = "RoutingMetric_Menu(2026-03-07T04:08:10.000Z)";
const MENU_AGAIN: &str = "RoutingMetric_Menu(2026-03-07T04:08:20.000Z)";

fn now() -> Timestamp {
    "2026-03-07T04:10:00Z".parse().expect("timestamp")
}

fn pipeline() -> Pipeline<FlakyLedger<MemoryLedger>, RecordingSink> {
    Pipeline::new(
        FlakyLedger::new(MemoryLedger::default()),
        RecordingSink::default(),
    )
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = items
        .iter()
        .map(|(c, k)| ((*c).to_owned(), (*k).to_owned()))
        .collect();
    pairs.sort();
    pairs
}

async fn run(
    pipeline: &Pipeline<FlakyLedger<MemoryLedger>, RecordingSink>,
    events: &[String],
) -> Vec<EventOutcome> {
    let texts: Vec<&str> = events.iter().map(String::as_str).collect();
    pipeline.process_batch(&texts, now()).await.outcomes
}

#[tokio::test]
async fn growing_attribute_maps_count_each_key_once() {
    let pipeline = pipeline();
    let first = attributes_event(C1, "2026-03-07T04:08:01Z", &["AccountID", START]);
    let second = attributes_event(C1, "2026-03-07T04:08:11Z", &["AccountID", START, MENU]);
    let third = attributes_event(
        C1,
        "2026-03-07T04:08:21Z",
        &["AccountID", START, MENU, MENU_AGAIN],
    );
    run(&pipeline, &[first]).await;
    run(&pipeline, &[second]).await;
    let outcomes = run(&pipeline, &[third]).await;
    assert_eq!(
        pipeline.sink().pushed(),
        pairs(&[(C1, START), (C1, MENU), (C1, MENU_AGAIN)])
    );
    match &outcomes[..] {
        [EventOutcome::Processed(report)] => {
            assert_eq!((report.counted, report.already_counted), (1, 2));
        }
        other => panic!("unexpected outcomes {other:?}"),
    }
}

#[tokio::test]
async fn duplicates_and_reordering_never_count_twice() {
    let pipeline = pipeline();
    let older = attributes_event(C1, "2026-03-07T04:08:01Z", &[START]);
    let newer = attributes_event(C1, "2026-03-07T04:08:11Z", &[START, MENU]);
    // Newer first, then the older one, then both again, some in the same batch.
    run(&pipeline, std::slice::from_ref(&newer)).await;
    run(&pipeline, &[older.clone(), older.clone()]).await;
    run(&pipeline, &[newer.clone(), older, newer]).await;
    assert_eq!(pipeline.sink().pushed(), pairs(&[(C1, START), (C1, MENU)]));
}

#[tokio::test]
async fn the_same_key_in_two_conversations_counts_twice() {
    let pipeline = pipeline();
    let events = [
        attributes_event(C1, "2026-03-07T04:08:01Z", &[START]),
        attributes_event(C2, "2026-03-07T04:08:01Z", &[START]),
    ];
    run(&pipeline, &events).await;
    assert_eq!(pipeline.sink().pushed(), pairs(&[(C1, START), (C2, START)]));
}

#[tokio::test]
async fn stale_keys_are_judged_by_the_event_time_not_the_wall_clock() {
    let pipeline = pipeline().with_max_key_age(SignedDuration::from_hours(24 * 7));
    let ten_days_old = "RoutingMetric_Start(2026-02-25T04:08:00Z)";
    let six_days_old = "RoutingMetric_Menu(2026-03-01T04:08:00Z)";
    // An event from 2020 whose key is from the same minute: recent for its event, so it counts.
    let old_but_recent = "RoutingMetric_Start(2020-01-01T00:00:00Z)";
    let events = [
        attributes_event(C1, "2026-03-07T04:08:00Z", &[ten_days_old, six_days_old]),
        attributes_event(C2, "2020-01-01T00:00:30Z", &[old_but_recent]),
    ];
    let outcomes = run(&pipeline, &events).await;
    assert_eq!(
        pipeline.sink().pushed(),
        pairs(&[(C1, six_days_old), (C2, old_but_recent)])
    );
    match &outcomes[0] {
        EventOutcome::Processed(report) => {
            assert_eq!(report.stale.len(), 1);
            assert_eq!(report.stale[0].0, ten_days_old);
        }
        other => panic!("unexpected outcome {other:?}"),
    }
}

#[tokio::test]
async fn invalid_keys_are_reported_and_never_counted() {
    let pipeline = pipeline();
    let impossible = "RoutingMetric_Callback(2026-02-30T04:09:00.000Z)";
    let events = [attributes_event(C1, "2026-03-07T04:08:01Z", &[START, impossible])];
    let outcomes = run(&pipeline, &events).await;
    assert_eq!(pipeline.sink().pushed(), pairs(&[(C1, START)]));
    match &outcomes[0] {
        EventOutcome::Processed(report) => {
            assert_eq!(report.invalid.len(), 1);
            assert_eq!(report.invalid[0].0, impossible);
        }
        other => panic!("unexpected outcome {other:?}"),
    }
}

#[tokio::test]
async fn bad_and_foreign_events_do_not_block_the_batch() {
    let pipeline = pipeline();
    let events = [
        "{not json".to_owned(),
        other_topic_event(C1),
        attributes_event(C2, "2026-03-07T04:08:01Z", &[START]),
    ];
    let report = {
        let texts: Vec<&str> = events.iter().map(String::as_str).collect();
        pipeline.process_batch(&texts, now()).await
    };
    assert!(matches!(report.outcomes[0], EventOutcome::Rejected(_)));
    assert!(matches!(report.outcomes[1], EventOutcome::Ignored { .. }));
    assert!(matches!(report.outcomes[2], EventOutcome::Processed(_)));
    assert_eq!(pipeline.sink().pushed(), pairs(&[(C2, START)]));
    let tally = report.tally;
    assert_eq!(
        (tally.events_read, tally.events_rejected, tally.events_ignored),
        (3, 1, 1)
    );
    assert_eq!((tally.keys_seen, tally.keys_counted), (1, 1));
}

#[tokio::test]
async fn events_without_metric_keys_make_no_ledger_call() {
    let pipeline = pipeline();
    let events = [
        attributes_event(C1, "2026-03-07T04:08:01Z", &["AccountID", "Language"]),
        attributes_event(C1, "2026-03-07T04:08:01Z", &["RoutingMetric_Bad(yesterday)"]),
        other_topic_event(C1),
    ];
    run(&pipeline, &events).await;
    assert_eq!(pipeline.ledger().claims.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failed_push_releases_the_claims_and_the_retry_counts_them_once() {
    let pipeline = pipeline();
    let event = attributes_event(C1, "2026-03-07T04:08:11Z", &[START, MENU]);
    pipeline.sink().failing.store(true, Ordering::SeqCst);
    let outcomes = run(&pipeline, std::slice::from_ref(&event)).await;
    match &outcomes[..] {
        [
            EventOutcome::Failed {
                error: DeliveryError::Sink(error),
                ..
            },
        ] => assert!(error.is_transient()),
        other => panic!("expected a failed event, got {other:?}"),
    }
    assert!(pipeline.sink().pushed().is_empty());
    // The counts the sink reports are the settled ones: failed, and nothing counted.
    let recorded = pipeline
        .sink()
        .last_tally
        .lock()
        .expect("lock")
        .expect("recorded");
    assert_eq!((recorded.events_failed, recorded.keys_counted), (1, 0));

    pipeline.sink().failing.store(false, Ordering::SeqCst);
    run(&pipeline, std::slice::from_ref(&event)).await;
    run(&pipeline, &[event]).await;
    assert_eq!(pipeline.sink().pushed(), pairs(&[(C1, START), (C1, MENU)]));
    assert_eq!(pipeline.ledger().inner.delivered(), 2);
}

#[tokio::test]
async fn a_push_that_fails_part_way_confirms_what_was_delivered_and_retries_the_rest() {
    let pipeline = pipeline();
    let events = [
        attributes_event(C1, "2026-03-07T04:08:11Z", &[START, MENU]),
        attributes_event(C2, "2026-03-07T04:08:11Z", &[START]),
    ];
    *pipeline.sink().fail_after.lock().expect("lock") = Some(1);
    let outcomes = run(&pipeline, &events).await;
    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, EventOutcome::Failed { .. })),
        "{outcomes:?}"
    );
    assert_eq!(
        pipeline.ledger().inner.delivered(),
        1,
        "the delivered key is confirmed"
    );

    let retried = run(&pipeline, &events).await;
    assert!(
        retried
            .iter()
            .all(|outcome| matches!(outcome, EventOutcome::Processed(_)))
    );
    assert_eq!(
        pipeline.sink().pushed(),
        pairs(&[(C1, MENU), (C1, START), (C2, START)])
    );
    assert_eq!(
        pipeline.sink().pushed.lock().expect("lock").len(),
        3,
        "nothing pushed twice"
    );
}

#[tokio::test]
async fn a_ledger_failure_fails_only_its_event_and_the_retry_counts_it() {
    let pipeline = pipeline();
    let event = attributes_event(C1, "2026-03-07T04:08:11Z", &[START]);
    pipeline.ledger().failing.store(true, Ordering::SeqCst);
    let outcomes = run(&pipeline, std::slice::from_ref(&event)).await;
    match &outcomes[..] {
        [EventOutcome::Failed { error, .. }] => assert!(error.is_transient()),
        other => panic!("expected a failed event, got {other:?}"),
    }
    pipeline.ledger().failing.store(false, Ordering::SeqCst);
    run(&pipeline, &[event]).await;
    assert_eq!(pipeline.sink().pushed(), pairs(&[(C1, START)]));
}

/// A pipeline whose key START of C1 is claimed by a process that then died.
async fn claimed_by_a_dead_process(
    lease: SignedDuration,
) -> Pipeline<FlakyLedger<MemoryLedger>, RecordingSink> {
    let pipeline = Pipeline::new(
        FlakyLedger::new(MemoryLedger::new(lease)),
        RecordingSink::default(),
    );
    let metric = match flow_metrics::attribute::classify(START) {
        flow_metrics::attribute::Attribute::Metric(metric) => metric,
        other => panic!("{other:?}"),
    };
    let crashed = pipeline
        .ledger()
        .claim(ClaimRequest {
            conversation_id: C1,
            event_time: now(),
            keys: &[metric],
            token: &ClaimToken::random(),
            now: now(),
        })
        .await
        .expect("claim");
    assert_eq!(crashed.won, [0]);
    pipeline
}

#[tokio::test(start_paused = true)]
async fn a_key_held_by_a_dead_invocation_fails_the_event_until_the_lease_ends() {
    // A lease longer than what the invocation may wait: the event must not succeed, or the
    // key would be lost with its dead holder.
    let lease = SignedDuration::from_secs(40);
    let pipeline = claimed_by_a_dead_process(lease).await;
    let event = attributes_event(C1, "2026-03-07T04:08:11Z", &[START]);
    let texts = [event.as_str()];
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    let report = pipeline
        .process_batch(
            &texts,
            BatchTime {
                now: now(),
                deadline: Some(deadline),
            },
        )
        .await;
    assert!(Instant::now() < deadline, "it stopped waiting in time");
    // It waits until a last push and its confirm can no longer fit, within a second.
    let last_wait = flow_metrics::timing::MIN_ATTEMPT + flow_metrics::timing::CONFIRM_RESERVE;
    assert!(
        Instant::now() >= deadline - last_wait - Duration::from_secs(1),
        "it waited for the holder while it could"
    );
    match &report.outcomes[0] {
        EventOutcome::Failed { report, error } => {
            assert_eq!(*error, DeliveryError::Pending { keys: 1 });
            assert!(error.is_transient());
            assert_eq!(report.pending, 1);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(report.tally.keys_pending, 1);
    assert_eq!(report.tally.events_failed, 1);
    assert!(pipeline.sink().pushed().is_empty());

    // Lambda retries about a minute later: the lease has ended, the key counts.
    let retry = now() + SignedDuration::from_secs(60);
    let report = pipeline.process_batch(&texts, retry).await;
    assert!(matches!(report.outcomes[0], EventOutcome::Processed(_)));
    assert_eq!(pipeline.sink().pushed(), pairs(&[(C1, START)]));
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_the_batch_waits_out_a_dead_holders_lease() {
    let lease = SignedDuration::from_secs(40);
    let pipeline = claimed_by_a_dead_process(lease).await;
    let event = attributes_event(C1, "2026-03-07T04:08:11Z", &[START]);
    let started = Instant::now();
    let report = pipeline.process_batch(&[event.as_str()], now()).await;
    assert!(matches!(report.outcomes[0], EventOutcome::Processed(_)));
    assert_eq!(pipeline.sink().pushed(), pairs(&[(C1, START)]));
    let waited = Instant::now() - started;
    assert!(
        waited >= Duration::from_secs(40) && waited < Duration::from_secs(45),
        "waited {waited:?}: until the lease ended, not longer"
    );
}

#[tokio::test(start_paused = true)]
async fn a_key_another_invocation_is_pushing_is_waited_for_not_acknowledged() {
    // Two invocations get the same event at once; one wins the key, its push is slow. The
    // other must not succeed before the key is delivered.
    let ledger = std::sync::Arc::new(MemoryLedger::default());
    let slow = Pipeline::new(ledger.clone(), SlowSink::default());
    let waiting = Pipeline::new(ledger.clone(), RecordingSink::default());
    let event = attributes_event(C1, "2026-03-07T04:08:11Z", &[START]);
    let texts = [event.as_str()];
    let (first, (second, second_done)) = tokio::join!(slow.process_batch(&texts, now()), async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let report = waiting.process_batch(&texts, now()).await;
        (report, Instant::now())
    });
    assert!(matches!(first.outcomes[0], EventOutcome::Processed(_)));
    assert!(matches!(second.outcomes[0], EventOutcome::Processed(_)));
    assert_eq!(second.tally.keys_already_counted, 1);
    let accepted_at = slow.sink().accepted_at.lock().expect("lock").expect("accepted");
    assert!(
        second_done >= accepted_at,
        "acknowledged only after the key was delivered"
    );
    assert!(waiting.sink().pushed().is_empty(), "and never pushed twice");
}

#[tokio::test]
async fn the_sink_receives_the_batch_tally() {
    let pipeline = pipeline();
    let events = [
        attributes_event(C1, "2026-03-07T04:08:11Z", &[START, "RoutingMetric_X(bad)"]),
        attributes_event(C1, "2026-03-07T04:08:11Z", &[START]),
    ];
    run(&pipeline, &events).await;
    let tally = pipeline.sink().last_tally.lock().expect("lock").expect("pushed");
    assert_eq!(tally.events_read, 2);
    assert_eq!(tally.keys_seen, 3);
    assert_eq!(tally.keys_counted, 1);
    assert_eq!(tally.keys_already_counted, 1);
    assert_eq!(tally.keys_invalid, 1);
}

#[test]
fn a_batch_can_run_on_any_runtime_thread() {
    fn assert_send<T: Send>(_: &T) {}
    let pipeline = pipeline();
    let batch = pipeline.process_batch(&[], now());
    assert_send(&batch);
}

#[test]
fn the_time_from_a_flows_first_key_is_a_pure_function_of_a_complete_event() {
    let event = attributes_event(
        C1,
        "2026-03-07T04:08:31Z",
        &[
            START,      // Routing, 04:08:00
            MENU,       // Routing, 04:08:10
            MENU_AGAIN, // Routing, 04:08:20
            "BillingMetric_Start(2026-03-07T04:08:25.500Z)",
            "BillingMetric_Paid(2026-03-07T04:08:30Z)",
            "RoutingMetric_X(bad)",
        ],
    );
    let decoded = flow_metrics::event::decode(&event).expect("an attributes event");
    let extracted = flow_metrics::count::extract(
        &decoded,
        flow_metrics::count::DEFAULT_MAX_KEY_AGE,
        flow_metrics::count::DEFAULT_RUN_GAP,
    );
    let elapsed: Vec<(&str, &str, Option<SignedDuration>)> = extracted
        .fresh
        .iter()
        .map(|key| (key.flow, key.metric, extracted.elapsed(key)))
        .collect();
    let seconds = |ms: i64| Some(SignedDuration::from_millis(ms));
    assert_eq!(
        elapsed,
        [
            ("Billing", "Paid", seconds(4_500)),
            ("Billing", "Start", seconds(0)),
            ("Routing", "Menu", seconds(10_000)),
            ("Routing", "Menu", seconds(20_000)),
            ("Routing", "Start", seconds(0)),
        ]
    );

    // A redrive's event carries some keys only: the times between keys are unknown, not wrong.
    let flow_metrics::event::Event::Attributes(decoded) = decoded else {
        panic!("an attributes event");
    };
    let partial = flow_metrics::event::Event::Attributes(flow_metrics::event::AttributesEvent {
        complete: false,
        ..decoded
    });
    let extracted = flow_metrics::count::extract(
        &partial,
        flow_metrics::count::DEFAULT_MAX_KEY_AGE,
        flow_metrics::count::DEFAULT_RUN_GAP,
    );
    assert!(extracted.fresh.iter().all(|key| extracted.elapsed(key).is_none()));
}

/// Each fresh key of a complete attributes event at `event_time`, in key time order, with its
/// seconds since the start of its flow run (`None`: unknown), the run gap being the default.
fn elapsed_of(event_time: &str, keys: &[&str]) -> Vec<(String, Option<f64>)> {
    elapsed_with_gap(flow_metrics::count::DEFAULT_RUN_GAP, event_time, keys)
}

fn elapsed_with_gap(run_gap: SignedDuration, event_time: &str, keys: &[&str]) -> Vec<(String, Option<f64>)> {
    let event = attributes_event(C1, event_time, keys);
    let decoded = flow_metrics::event::decode(&event).expect("an attributes event");
    let extracted = flow_metrics::count::extract(&decoded, flow_metrics::count::DEFAULT_MAX_KEY_AGE, run_gap);
    let mut fresh = extracted.fresh.clone();
    fresh.sort_by_key(|key| (key.time, key.key));
    fresh
        .iter()
        .map(|key| {
            let elapsed = extracted.elapsed(key).map(|elapsed| elapsed.as_secs_f64());
            (format!("{}.{}", key.flow, key.metric), elapsed)
        })
        .collect()
}

fn seconds_of(elapsed: &[(String, Option<f64>)]) -> Vec<Option<f64>> {
    elapsed.iter().map(|(_, seconds)| *seconds).collect()
}

#[test]
fn a_stale_key_never_starts_a_run() {
    // A conversation still carrying an attribute of four weeks ago: the key is stale (older than
    // the 7 days allowed), so it neither counts nor starts the run its flow's fresh keys make.
    let elapsed = elapsed_of(
        "2026-03-07T04:09:00Z",
        &[
            "RoutingMetric_Start(2026-02-07T04:08:00.000Z)",
            START,      // 04:08:00
            MENU,       // 04:08:10
            MENU_AGAIN, // 04:08:20
        ],
    );
    assert_eq!(
        elapsed,
        [
            ("Routing.Start".to_owned(), Some(0.0)),
            ("Routing.Menu".to_owned(), Some(10.0)),
            ("Routing.Menu".to_owned(), Some(20.0)),
        ]
    );
}

#[test]
fn a_flow_gone_through_again_hours_later_starts_a_new_run() {
    // A messaging conversation through the same flow twice, three hours apart: each run is
    // measured from its own start, not the second from the first's.
    let elapsed = elapsed_of(
        "2026-03-07T07:10:00Z",
        &[
            "ChatMetric_Start(2026-03-07T04:00:00.000Z)",
            "ChatMetric_Menu(2026-03-07T04:00:20.000Z)",
            "ChatMetric_Agent(2026-03-07T04:00:40.000Z)",
            "ChatMetric_Start(2026-03-07T07:00:40.000Z)",
            "ChatMetric_Menu(2026-03-07T07:00:55.000Z)",
        ],
    );
    assert_eq!(
        seconds_of(&elapsed),
        [Some(0.0), Some(20.0), Some(40.0), Some(0.0), Some(15.0)]
    );
}

#[test]
fn keys_exactly_the_gap_apart_share_a_run_and_one_second_more_splits_it() {
    // The default gap is one hour.
    let within = elapsed_of(
        "2026-03-07T06:00:00Z",
        &[
            "ChatMetric_Start(2026-03-07T04:00:00.000Z)",
            "ChatMetric_Menu(2026-03-07T05:00:00.000Z)",
        ],
    );
    assert_eq!(seconds_of(&within), [Some(0.0), Some(3600.0)]);
    let beyond = elapsed_of(
        "2026-03-07T06:00:00Z",
        &[
            "ChatMetric_Start(2026-03-07T04:00:00.000Z)",
            "ChatMetric_Menu(2026-03-07T05:00:01.000Z)",
        ],
    );
    assert_eq!(seconds_of(&beyond), [Some(0.0), Some(0.0)]);

    // A gap of 90 minutes, as FLOW_METRICS_RUN_GAP=90m sets it.
    let gap = SignedDuration::from_mins(90);
    let keys = |second: &str| {
        [
            "ChatMetric_Start(2026-03-07T04:00:00.000Z)".to_owned(),
            format!("ChatMetric_Menu(2026-03-07T05:30:{second}.000Z)"),
            format!("ChatMetric_Agent(2026-03-07T05:30:{second}.500Z)"),
        ]
    };
    let elapsed = |second: &str| {
        let keys = keys(second);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        seconds_of(&elapsed_with_gap(gap, "2026-03-07T06:00:00Z", &keys))
    };
    assert_eq!(elapsed("00"), [Some(0.0), Some(5400.0), Some(5400.5)]);
    assert_eq!(elapsed("01"), [Some(0.0), Some(0.0), Some(0.5)]);
}

#[tokio::test]
async fn the_pipeline_times_runs_with_its_gap() {
    // Keys 30 minutes apart: one run by default, two with a 20-minute gap.
    let event = attributes_event(
        C1,
        "2026-03-07T04:09:00Z",
        &[
            "ChatMetric_Start(2026-03-07T03:30:00.000Z)",
            "ChatMetric_Menu(2026-03-07T04:00:00.000Z)",
        ],
    );
    let pipeline = Pipeline::new(MemoryLedger::default(), ElapsedSink::default())
        .with_run_gap(SignedDuration::from_mins(20));
    pipeline.process_batch(&[event.as_str()], now()).await;
    let mut elapsed = pipeline.sink().0.lock().expect("lock").clone();
    elapsed.sort();
    assert_eq!(
        elapsed,
        [
            ("Menu".to_owned(), Some(SignedDuration::ZERO)),
            ("Start".to_owned(), Some(SignedDuration::ZERO)),
        ]
    );
}

/// Remembers each pushed occurrence's metric and elapsed time.
#[derive(Default)]
struct ElapsedSink(std::sync::Mutex<Vec<(String, Option<SignedDuration>)>>);

impl flow_metrics::sink::Sink for ElapsedSink {
    async fn push(
        &self,
        occurrences: &[flow_metrics::count::Occurrence<'_>],
        _context: &flow_metrics::sink::PushContext,
    ) -> Result<flow_metrics::sink::Pushed, flow_metrics::sink::PushFailure> {
        let mut elapsed = self.0.lock().expect("lock");
        elapsed.extend(occurrences.iter().map(|o| (o.metric.to_owned(), o.elapsed)));
        Ok(flow_metrics::sink::Pushed::default())
    }

    fn record(&self, _tally: &flow_metrics::count::Tally, _now: Timestamp) {}

    async fn flush(&self, _context: &flow_metrics::sink::PushContext) {}
}
