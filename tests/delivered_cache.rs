//! The warm function's cache of delivered keys: it skips the ledger only for keys this process
//! confirmed, and never hides a key that still has to count.

mod common;

use std::sync::atomic::Ordering;

use common::{FlakyLedger, RecordingSink, attributes_event};
use flow_metrics::ledger::{DeliveredCache, Held, Ledger, MemoryLedger};
use flow_metrics::pipeline::{EventOutcome, Pipeline};
use jiff::Timestamp;

const START: &str = "RoutingMetric_Start(2026-03-07T04:08:00.000Z)";
const MENU: &str = "RoutingMetric_Menu(2026-03-07T04:08:10.000Z)";

type Cached = Pipeline<DeliveredCache<FlakyLedger<MemoryLedger>>, RecordingSink>;

fn pipeline() -> Cached {
    let ledger = DeliveredCache::new(
        FlakyLedger::new(MemoryLedger::default()),
        100.try_into().expect("not zero"),
    );
    Pipeline::new(ledger, RecordingSink::default())
}

fn claims(pipeline: &Cached) -> usize {
    pipeline.ledger().inner().claims.load(Ordering::SeqCst)
}

#[tokio::test]
async fn events_carrying_only_delivered_keys_make_no_ledger_call() {
    let pipeline = pipeline();
    let first = attributes_event("c-1", "2026-03-07T04:08:01Z", &[START]);
    let repeat = attributes_event("c-1", "2026-03-07T04:08:05Z", &[START, "AccountID"]);
    pipeline.process_batch(&[&first], Timestamp::now()).await;
    assert_eq!(claims(&pipeline), 1);
    let report = pipeline.process_batch(&[&repeat, &first], Timestamp::now()).await;
    assert_eq!(claims(&pipeline), 1, "no ledger call for known keys");
    assert_eq!(report.tally.keys_already_counted, 2);
}

#[tokio::test]
async fn only_unknown_keys_go_to_the_ledger_and_win_under_their_own_index() {
    let pipeline = pipeline();
    pipeline
        .process_batch(
            &[&attributes_event("c-1", "2026-03-07T04:08:01Z", &[START])],
            Timestamp::now(),
        )
        .await;
    let grown = attributes_event("c-1", "2026-03-07T04:08:11Z", &[START, MENU]);
    let report = pipeline.process_batch(&[&grown], Timestamp::now()).await;
    match &report.outcomes[..] {
        [EventOutcome::Processed(event)] => assert_eq!((event.counted, event.already_counted), (1, 1)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        pipeline.sink().pushed(),
        [
            ("c-1".to_owned(), MENU.to_owned()),
            ("c-1".to_owned(), START.to_owned())
        ]
    );
}

#[tokio::test]
async fn keys_delivered_elsewhere_or_released_are_not_remembered() {
    let pipeline = pipeline();
    let event = attributes_event("c-1", "2026-03-07T04:08:01Z", &[START]);
    // A failed push releases the claim: nothing is remembered, the retry goes to the ledger.
    pipeline.sink().failing.store(true, Ordering::SeqCst);
    pipeline.process_batch(&[&event], Timestamp::now()).await;
    pipeline.sink().failing.store(false, Ordering::SeqCst);
    pipeline.process_batch(&[&event], Timestamp::now()).await;
    assert_eq!(claims(&pipeline), 2);
    assert_eq!(pipeline.sink().pushed().len(), 1);

    // A confirm refused because another holder took the key over is not remembered either.
    let cache = DeliveredCache::new(MemoryLedger::default(), 10.try_into().expect("not zero"));
    let token = flow_metrics::ledger::ClaimToken::random();
    let lost = cache
        .confirm(
            Held {
                conversation_id: "c-2",
                keys: &[MENU],
                token: &token,
                now: Timestamp::now(),
            },
            false,
        )
        .await
        .expect("confirm");
    assert_eq!(lost, [MENU]);
    let claim = cache
        .claim(flow_metrics::ledger::ClaimRequest {
            conversation_id: "c-2",
            event_time: Timestamp::now(),
            keys: &[match flow_metrics::attribute::classify(MENU) {
                flow_metrics::attribute::Attribute::Metric(metric) => metric,
                other => panic!("{other:?}"),
            }],
            token: &token,
            now: Timestamp::now(),
        })
        .await
        .expect("claim");
    assert_eq!(claim.won, [0], "the ledger, not the cache, answered");
}
