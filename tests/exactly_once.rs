//! Exactly once, proven on generated traces: conversations whose attribute maps grow event by
//! event (with invalid, stale and non-metric keys), delivered several times, in any order, to
//! several concurrent handlers, with faults injected at every step of the protocol and failed
//! deliveries retried as Lambda and EventBridge would.
//!
//! The promise checked: every valid, non-stale (conversation, key) reaches the sink, and nothing
//! else does. Exactly once, except for the one residual case the design cannot rule out without
//! an idempotent sink: a push the sink accepted but that was never confirmed in the ledger (the
//! response was lost, the process died right after the push, or the confirm write failed). Such a
//! key stays claimed; once its lease expires, a later delivery of an event of its conversation
//! claims and pushes it again. So a key may be pushed at most once more per such fault, and only
//! after a lease has passed; with no such fault, every key is pushed exactly once.
//!
//! `EXACTLY_ONCE_CASES` raises the number of generated traces (default 1000 over the in-memory
//! ledger, 12 over the DynamoDB emulator).

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::attributes_event;
use common::emulator::Dynalite;
use flow_metrics::count::Occurrence;
use flow_metrics::ledger::dynamodb::create_table;
use flow_metrics::ledger::{
    Claim, ClaimRequest, DeliveredCache, DynamoDbLedger, Held, Ledger, LedgerError, MemoryLedger,
};
use flow_metrics::pipeline::{EventOutcome, Pipeline};
use flow_metrics::sink::{PushContext, PushFailure, Sink, SinkError};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const LEASE: SignedDuration = SignedDuration::from_secs(60);
/// Attempts of one delivery after which no more faults are injected into it.
const MAX_FAULTY_ATTEMPTS: usize = 3;

/// What one attribute added to a conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Valid,
    /// Breaks the grammar (an impossible date).
    Invalid,
    /// Valid, but a month older than every event that carries it.
    Stale,
    /// Not a metric at all.
    Other,
}

/// A fault injected into one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The ledger's Query is throttled past the SDK's retries.
    QueryThrottled,
    /// A conditional put is throttled: the claims won are given back, the event fails.
    ClaimThrottled,
    /// The sink refuses the push (5xx, timeout) before accepting anything.
    SinkUnavailable,
    /// The sink accepts the push but the answer is lost: residual.
    ResponseLost,
    /// The process dies between claim and push.
    CrashBeforePush,
    /// The process dies between push and confirm: residual.
    CrashAfterPush,
    /// The confirm write fails after a successful push: residual.
    ConfirmFails,
}

impl Fault {
    fn is_residual(self) -> bool {
        matches!(
            self,
            Fault::ResponseLost | Fault::CrashAfterPush | Fault::ConfirmFails
        )
    }
}

/// A generated trace and how it is delivered.
#[derive(Debug, Clone)]
struct Trace {
    /// Per conversation, the attributes added one event at a time.
    conversations: Vec<Vec<KeyKind>>,
    /// How many times each event is delivered (1 to 3), in event order.
    copies: Vec<u8>,
    /// A permutation of the deliveries.
    order: Vec<usize>,
    /// Concurrent handlers.
    handlers: usize,
    /// Events per invocation (1: EventBridge direct; more: an SQS batch).
    batch: usize,
    /// Faults for successive delivery attempts, cycled.
    faults: Vec<Fault>,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        8 => Just(Fault::None),
        1 => Just(Fault::QueryThrottled),
        1 => Just(Fault::ClaimThrottled),
        1 => Just(Fault::SinkUnavailable),
        1 => Just(Fault::ResponseLost),
        1 => Just(Fault::CrashBeforePush),
        1 => Just(Fault::CrashAfterPush),
        1 => Just(Fault::ConfirmFails),
    ]
}

fn key_kind() -> impl Strategy<Value = KeyKind> {
    prop_oneof![6 => Just(KeyKind::Valid), 1 => Just(KeyKind::Invalid), 1 => Just(KeyKind::Stale), 1 => Just(KeyKind::Other)]
}

fn trace() -> impl Strategy<Value = Trace> {
    prop::collection::vec(prop::collection::vec(key_kind(), 1..6), 1..6)
        .prop_flat_map(|conversations| {
            let events: usize = conversations.iter().map(Vec::len).sum();
            (Just(conversations), prop::collection::vec(1u8..=3, events))
        })
        .prop_flat_map(|(conversations, copies)| {
            let deliveries: usize = copies.iter().map(|&c| usize::from(c)).sum();
            let order = Just((0..deliveries).collect::<Vec<_>>()).prop_shuffle();
            (
                Just(conversations),
                Just(copies),
                order,
                1usize..=4,
                1usize..=3,
                prop::collection::vec(fault(), 1..12),
            )
        })
        .prop_map(|(conversations, copies, order, handlers, batch, faults)| Trace {
            conversations,
            copies,
            order,
            handlers,
            batch,
            faults,
        })
}

/// The events of a trace, in event order, and the (conversation, key) pairs that must count.
fn events_of(trace: &Trace, prefix: &str) -> (Vec<String>, BTreeSet<(String, String)>) {
    let base: Timestamp = "2026-03-07T08:00:00Z".parse().expect("time");
    let mut events = Vec::new();
    let mut expected = BTreeSet::new();
    for (c, steps) in trace.conversations.iter().enumerate() {
        let conversation = format!("{prefix}c{c}");
        let flow = ["Routing", "Billing IVR", "SupportBot"][c % 3];
        let mut keys: Vec<String> = Vec::new();
        for (step, kind) in steps.iter().enumerate() {
            let event_time =
                base + SignedDuration::from_hours(c as i64) + SignedDuration::from_secs(10 * step as i64);
            let key_time = event_time - SignedDuration::from_secs(1);
            let key = match kind {
                KeyKind::Valid => format!("{flow}Metric_Step{step}({key_time})"),
                KeyKind::Invalid => format!("{flow}Metric_Step{step}(2026-02-30T00:00:00Z)"),
                KeyKind::Stale => format!(
                    "{flow}Metric_Step{step}({})",
                    key_time - SignedDuration::from_hours(24 * 30)
                ),
                KeyKind::Other => format!("Attribute{step}"),
            };
            if *kind == KeyKind::Valid {
                expected.insert((conversation.clone(), key.clone()));
            }
            keys.push(key);
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            events.push(attributes_event(&conversation, &event_time.to_string(), &refs));
        }
    }
    (events, expected)
}

/// What every handler shares: the points accepted, and the keys a residual fault touched.
#[derive(Default)]
struct Record {
    accepted: Mutex<Vec<(String, String)>>,
    residual: Mutex<Vec<(String, String)>>,
}

/// The sink for one attempt: accepts into the record, or fails as the fault says.
struct FaultySink {
    fault: Fault,
    record: Arc<Record>,
    crashed: Arc<tokio::sync::Notify>,
}

impl Sink for FaultySink {
    async fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        _context: &PushContext<'_>,
    ) -> Result<(), PushFailure> {
        if occurrences.is_empty() {
            return Ok(());
        }
        let pairs = || {
            occurrences
                .iter()
                .map(|o| (o.conversation_id.to_owned(), o.key.to_owned()))
        };
        match self.fault {
            Fault::SinkUnavailable => {
                return Err(PushFailure::nothing_delivered(SinkError::Transient(
                    "503".to_owned(),
                )));
            }
            Fault::CrashBeforePush => {
                self.crashed.notify_one();
                return std::future::pending().await;
            }
            _ => {}
        }
        self.record.accepted.lock().expect("lock").extend(pairs());
        if self.fault.is_residual() && self.fault != Fault::ConfirmFails {
            self.record.residual.lock().expect("lock").extend(pairs());
        }
        match self.fault {
            Fault::ResponseLost => Err(PushFailure::nothing_delivered(SinkError::Transient(
                "timeout".to_owned(),
            ))),
            Fault::CrashAfterPush => {
                self.crashed.notify_one();
                std::future::pending().await
            }
            _ => Ok(()),
        }
    }
}

/// The ledger for one attempt: the shared ledger, with the attempt's fault.
struct FaultyLedger<L> {
    inner: Arc<L>,
    fault: Fault,
    record: Arc<Record>,
}

impl<L: Ledger> Ledger for FaultyLedger<L> {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, LedgerError> {
        let throttled = || LedgerError::Transient {
            operation: "claim",
            message: "throttled".to_owned(),
        };
        match self.fault {
            Fault::QueryThrottled => Err(throttled()),
            Fault::ClaimThrottled => {
                // As the DynamoDB ledger does when one put fails: give back what was won.
                let claim = self.inner.claim(request).await?;
                let keys: Vec<&str> = claim.won.iter().map(|&i| request.keys[i].key).collect();
                let held = Held {
                    conversation_id: request.conversation_id,
                    keys: &keys,
                    token: &claim.token,
                    now: request.now,
                };
                self.inner.release(held).await?;
                Err(throttled())
            }
            _ => self.inner.claim(request).await,
        }
    }

    async fn confirm(&self, held: Held<'_>) -> Result<Vec<String>, LedgerError> {
        if self.fault == Fault::ConfirmFails {
            let pairs = held
                .keys
                .iter()
                .map(|key| (held.conversation_id.to_owned(), (*key).to_owned()));
            self.record.residual.lock().expect("lock").extend(pairs);
            return Err(LedgerError::Transient {
                operation: "confirm",
                message: "throttled".to_owned(),
            });
        }
        self.inner.confirm(held).await
    }

    async fn release(&self, held: Held<'_>) -> Result<(), LedgerError> {
        self.inner.release(held).await
    }
}

/// One invocation's worth of deliveries, and how often they were tried.
struct Delivery {
    events: Vec<usize>,
    attempts: usize,
    not_before_ms: i64,
}

/// Delivers the trace to `handlers` concurrent handlers sharing `ledger`, retrying failures,
/// until every delivery has succeeded. Returns the record.
async fn deliver<L: Ledger + 'static>(trace: &Trace, events: &[String], ledger: Arc<L>) -> Arc<Record> {
    let record = Arc::new(Record::default());
    let mut deliveries: Vec<usize> = Vec::new();
    for (event, copies) in trace.copies.iter().enumerate() {
        deliveries.extend(std::iter::repeat_n(event, usize::from(*copies)));
    }
    let ordered: Vec<usize> = trace.order.iter().map(|&i| deliveries[i]).collect();
    let queue: VecDeque<Delivery> = ordered
        .chunks(trace.batch)
        .map(|events| Delivery {
            events: events.to_vec(),
            attempts: 0,
            not_before_ms: 0,
        })
        .collect();
    let queue = Arc::new(Mutex::new(queue));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let clock_ms = Arc::new(AtomicI64::new(Timestamp::now().as_millisecond()));
    let attempt_number = Arc::new(AtomicUsize::new(0));

    let handler = |_: usize| {
        let (queue, in_flight, clock_ms, attempt_number) = (
            queue.clone(),
            in_flight.clone(),
            clock_ms.clone(),
            attempt_number.clone(),
        );
        let (record, ledger) = (record.clone(), ledger.clone());
        async move {
            loop {
                let delivery = {
                    let mut queue = queue.lock().expect("lock");
                    let next = queue.pop_front();
                    if next.is_some() {
                        in_flight.fetch_add(1, Ordering::SeqCst);
                    }
                    next
                };
                let Some(mut delivery) = delivery else {
                    if in_flight.load(Ordering::SeqCst) == 0 {
                        return;
                    }
                    tokio::task::yield_now().await;
                    continue;
                };
                let now_ms = clock_ms
                    .fetch_max(delivery.not_before_ms, Ordering::SeqCst)
                    .max(delivery.not_before_ms);
                clock_ms.fetch_add(1000, Ordering::SeqCst);
                let fault = if delivery.attempts < MAX_FAULTY_ATTEMPTS {
                    trace.faults[attempt_number.fetch_add(1, Ordering::SeqCst) % trace.faults.len()]
                } else {
                    Fault::None
                };
                delivery.attempts += 1;
                let crashed = Arc::new(tokio::sync::Notify::new());
                let pipeline = Pipeline::new(
                    FaultyLedger {
                        inner: ledger.clone(),
                        fault,
                        record: record.clone(),
                    },
                    FaultySink {
                        fault,
                        record: record.clone(),
                        crashed: crashed.clone(),
                    },
                );
                let texts: Vec<&str> = delivery.events.iter().map(|&i| events[i].as_str()).collect();
                let now = Timestamp::from_millisecond(now_ms).expect("time");
                let retry_after_ms = tokio::select! {
                    report = pipeline.process_batch(&texts, now) => {
                        let failed = report.outcomes.iter().any(|o| matches!(o, EventOutcome::Failed { .. }));
                        assert!(!report.outcomes.iter().any(|o| matches!(o, EventOutcome::Rejected(_))));
                        failed.then_some(now_ms + 1000)
                    }
                    () = crashed.notified() => Some(now_ms + LEASE.as_millis() as i64 + 1000),
                };
                if let Some(not_before_ms) = retry_after_ms {
                    delivery.not_before_ms = not_before_ms;
                    queue.lock().expect("lock").push_back(delivery);
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
    };
    futures::future::join_all((0..trace.handlers).map(handler)).await;
    record
}

/// Checks the promise against what the sink accepted.
fn check(expected: &BTreeSet<(String, String)>, record: &Record) -> Result<(), TestCaseError> {
    let mut accepted: BTreeMap<(String, String), usize> = BTreeMap::new();
    for pair in record.accepted.lock().expect("lock").iter() {
        *accepted.entry(pair.clone()).or_default() += 1;
    }
    let mut residual: BTreeMap<(String, String), usize> = BTreeMap::new();
    for pair in record.residual.lock().expect("lock").iter() {
        *residual.entry(pair.clone()).or_default() += 1;
    }
    for (pair, count) in &accepted {
        prop_assert!(
            expected.contains(pair),
            "pushed but not a valid, recent key: {pair:?}"
        );
        let allowed = 1 + residual.get(pair).copied().unwrap_or(0);
        prop_assert!(
            *count <= allowed,
            "{pair:?} pushed {count} times, at most {allowed} allowed"
        );
    }
    for pair in expected {
        prop_assert!(accepted.contains_key(pair), "lost: {pair:?}");
    }
    Ok(())
}

fn cases(default: u32) -> u32 {
    std::env::var("EXACTLY_ONCE_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

/// Runs `cases` generated traces, each delivered on its own runtime to a fresh ledger.
fn run_in_memory<L: Ledger + 'static>(
    cases: u32,
    strategy: impl Strategy<Value = Trace>,
    new_ledger: impl Fn() -> L,
    check: impl Fn(&BTreeSet<(String, String)>, &Record) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    runner
        .run(&strategy, |trace| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let (events, expected) = events_of(&trace, "");
            let record = runtime.block_on(deliver(&trace, &events, Arc::new(new_ledger())));
            check(&expected, &record)
        })
        .expect("no discrepancy");
}

#[test]
fn every_valid_key_is_pushed_exactly_once_over_the_memory_ledger() {
    run_in_memory(cases(1000), trace(), || MemoryLedger::new(LEASE), check);
}

#[test]
fn every_valid_key_is_pushed_exactly_once_with_the_delivered_cache() {
    let cached = || DeliveredCache::new(MemoryLedger::new(LEASE), 64.try_into().expect("not zero"));
    run_in_memory(cases(1000) / 2, trace(), cached, check);
}

#[test]
fn without_residual_faults_the_count_is_exact() {
    let strict = trace().prop_map(|mut trace| {
        trace.faults.retain(|fault| !fault.is_residual());
        if trace.faults.is_empty() {
            trace.faults.push(Fault::None);
        }
        trace
    });
    run_in_memory(
        cases(1000) / 4,
        strict,
        || MemoryLedger::new(LEASE),
        |expected, record| {
            let accepted: Vec<(String, String)> = record.accepted.lock().expect("lock").clone();
            prop_assert_eq!(accepted.len(), expected.len(), "a key was lost or doubled");
            prop_assert_eq!(&accepted.into_iter().collect::<BTreeSet<_>>(), expected);
            Ok(())
        },
    );
}

#[test]
fn every_valid_key_is_pushed_exactly_once_over_dynamodb() {
    let emulator = Dynalite::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let table = "flow-metrics-exactly-once";
    runtime
        .block_on(create_table(&emulator.client(), table))
        .expect("table");
    // As in the Lambda: the DynamoDB ledger behind the warm function's cache.
    let ledger = DynamoDbLedger::new(emulator.client(), table).with_lease(LEASE);
    let ledger = Arc::new(DeliveredCache::new(ledger, 1000.try_into().expect("not zero")));
    let case = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: cases(1000) / 80,
        ..Config::default()
    });
    runner
        .run(&trace(), |trace| {
            // Each case in its own conversations, so cases share the table but not keys.
            let prefix = format!("case{}-", case.fetch_add(1, Ordering::SeqCst));
            let (events, expected) = events_of(&trace, &prefix);
            let record = runtime.block_on(deliver(&trace, &events, ledger.clone()));
            check(&expected, &record)
        })
        .expect("no discrepancy");
}
