//! Exactly once under the faults AWS really produces, proven on generated traces.
//!
//! Conversations whose attribute maps grow event by event (with invalid, stale and non-metric
//! keys) are delivered several times, in any order, to concurrent invocations, as EventBridge
//! invokes the Lambda (one event, retried about 1 and then 2 minutes after a failure, then
//! dead-lettered) or as an SQS queue feeds it (batches; failed records come back after the
//! visibility timeout; dead-lettered after five receives). Time is simulated: the runtime's
//! clock is paused, so a lease, a retry delay or a deadline passes in no real time.
//!
//! The fault model is the real one, injected into the ledger's per-item store and the sink:
//! - a conditional write applied but answered with an error, which the SDK then retries (the
//!   retry meets the caller's own item); writes applied but answered with a timeout after the
//!   SDK's retries; throttles past the SDK's retries; slow calls;
//! - DataDog answering 5xx, accepting part of a push, or accepting a push while the client times
//!   out;
//! - the process killed at any step (as a Lambda dies on a timeout or out of memory), and
//!   invocations that run into the function's timeout.
//!
//! Invariants checked:
//! - when an event is acknowledged, every fresh key it carries has been delivered;
//! - every valid, recent key is delivered in the end (dead-lettered events are drained);
//! - nothing else is delivered;
//! - nothing is delivered twice, except where the sink accepted a push reported as failed or a
//!   process died after a push was accepted: each such case allows one double of its keys.
//!
//! `EXACTLY_ONCE_CASES` sets the number of traces per test (default: 5000 in all), and
//! `EXACTLY_ONCE_SEED` which (default: the same ones on every run, so CI is deterministic).

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::attributes_event;
use flow_metrics::count::{Occurrence, Tally};
use flow_metrics::ledger::memory::MemoryStore;
use flow_metrics::ledger::store::{ItemStore, KeyRecord, NewClaim, PutClaim, Update};
use flow_metrics::ledger::{DeliveredCache, KeyLedger, Ledger, LedgerError};
use flow_metrics::pipeline::{BatchTime, DeliveryError, EventOutcome, Pipeline};
use flow_metrics::sink::{PushContext, PushFailure, Pushed, Sink, SinkError};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use tokio::time::Instant;

/// The function's timeout, and its lease as the cdk stack sets it.
const TIMEOUT: Duration = Duration::from_secs(30);
const LEASE: SignedDuration = SignedDuration::from_secs(40);
/// Lambda's asynchronous retries: about a minute after the first failure, two after the second.
const ASYNC_RETRIES: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(120)];
/// The queue's visibility timeout (six times the function's timeout) and receive limit.
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(180);
const MAX_RECEIVES: usize = 5;
/// When an operator drains the dead-letter queue.
const DRAIN_AFTER: Duration = Duration::from_secs(3600);

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

/// A fault of one ledger call, as the store's caller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreFault {
    None,
    /// Applied, answered with a 500; the SDK retries the same request and returns its answer.
    AppliedThenRetried,
    /// Applied, but every answer was lost: the SDK gives up with a timeout.
    AppliedThenTimeout,
    /// Throttled on every attempt, never applied.
    Throttled,
    /// Answered after a long pause.
    Slow,
}

/// A fault of one push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SinkFault {
    None,
    /// 5xx on every attempt.
    Unavailable,
    /// The first half accepted, then a failure.
    Partial,
    /// Accepted, but the client timed out waiting for the answer.
    AcceptedButTimedOut,
    /// Accepted after a long pause.
    Slow,
}

/// How events reach the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// EventBridge → Lambda, one event an invocation.
    Direct,
    /// EventBridge → SQS → Lambda, batches of up to this many records.
    Queued(usize),
}

/// A generated trace and how it is delivered.
#[derive(Debug, Clone)]
struct Trace {
    /// Per conversation, the attributes added one event at a time.
    conversations: Vec<Vec<KeyKind>>,
    /// How many times each event is delivered (1 to 3), in event order.
    copies: Vec<u8>,
    /// Arrival of each delivery, in ms after the start (dense, so deliveries overlap).
    arrivals: Vec<u64>,
    mode: Mode,
    /// Faults of successive ledger calls and pushes; once used up, calls succeed.
    store_faults: Vec<StoreFault>,
    sink_faults: Vec<SinkFault>,
    /// Invocations (by number) killed, and at which of their steps.
    kills: Vec<(usize, usize)>,
    /// Seeds the randomness inside the run (tokens, jitter, latencies).
    seed: u64,
}

fn store_fault() -> impl Strategy<Value = StoreFault> {
    prop_oneof![
        10 => Just(StoreFault::None),
        2 => Just(StoreFault::AppliedThenRetried),
        1 => Just(StoreFault::AppliedThenTimeout),
        2 => Just(StoreFault::Throttled),
        1 => Just(StoreFault::Slow),
    ]
}

fn sink_fault() -> impl Strategy<Value = SinkFault> {
    prop_oneof![
        6 => Just(SinkFault::None),
        1 => Just(SinkFault::Unavailable),
        1 => Just(SinkFault::Partial),
        1 => Just(SinkFault::AcceptedButTimedOut),
        1 => Just(SinkFault::Slow),
    ]
}

fn key_kind() -> impl Strategy<Value = KeyKind> {
    prop_oneof![6 => Just(KeyKind::Valid), 1 => Just(KeyKind::Invalid), 1 => Just(KeyKind::Stale), 1 => Just(KeyKind::Other)]
}

fn trace() -> impl Strategy<Value = Trace> {
    prop::collection::vec(prop::collection::vec(key_kind(), 1..6), 1..5)
        .prop_flat_map(|conversations| {
            let events: usize = conversations.iter().map(Vec::len).sum();
            (Just(conversations), prop::collection::vec(1u8..=3, events))
        })
        .prop_flat_map(|(conversations, copies)| {
            let deliveries: usize = copies.iter().map(|&c| usize::from(c)).sum();
            (
                Just(conversations),
                Just(copies),
                prop::collection::vec(0u64..3000, deliveries),
                prop_oneof![Just(Mode::Direct), (2usize..=10).prop_map(Mode::Queued)],
                prop::collection::vec(store_fault(), 0..40),
                prop::collection::vec(sink_fault(), 0..8),
                prop::collection::vec((0usize..30, 0usize..12), 0..4),
                any::<u64>(),
            )
        })
        .prop_map(
            |(conversations, copies, arrivals, mode, store_faults, sink_faults, kills, seed)| Trace {
                conversations,
                copies,
                arrivals,
                mode,
                store_faults,
                sink_faults,
                kills,
                seed,
            },
        )
}

/// The events of a trace, in event order; the fresh keys of each; the keys that must count.
struct Expected {
    events: Vec<String>,
    fresh: Vec<Vec<(String, String)>>,
    all: BTreeSet<(String, String)>,
}

fn expected(trace: &Trace, base: Timestamp) -> Expected {
    let mut expected = Expected {
        events: Vec::new(),
        fresh: Vec::new(),
        all: BTreeSet::new(),
    };
    for (c, steps) in trace.conversations.iter().enumerate() {
        let conversation = format!("c{c}");
        let flow = ["Routing", "Billing IVR", "SupportBot"][c % 3];
        let mut keys: Vec<(String, KeyKind)> = Vec::new();
        for (step, kind) in steps.iter().enumerate() {
            let event_time = base + SignedDuration::from_secs(10 * step as i64);
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
            keys.push((key, *kind));
            let fresh: Vec<(String, String)> = keys
                .iter()
                .filter(|(_, kind)| *kind == KeyKind::Valid)
                .map(|(key, _)| (conversation.clone(), key.clone()))
                .collect();
            expected.all.extend(fresh.iter().cloned());
            expected.fresh.push(fresh);
            let refs: Vec<&str> = keys.iter().map(|(key, _)| key.as_str()).collect();
            expected
                .events
                .push(attributes_event(&conversation, &event_time.to_string(), &refs));
        }
    }
    expected
}

/// What the run observed, shared by every invocation.
#[derive(Default)]
struct Record {
    /// Every (conversation, key) the sink accepted, with repeats.
    accepted: Mutex<Vec<(String, String)>>,
    /// Keys of pushes accepted but reported as failed, or accepted by an invocation that was
    /// killed or timed out before it finished: each occurrence allows one double.
    residual: Mutex<Vec<(String, String)>>,
    /// Events acknowledged while some fresh key of theirs was not delivered.
    broken_promises: Mutex<Vec<String>>,
    store_faults: Mutex<Vec<StoreFault>>,
    sink_faults: Mutex<Vec<SinkFault>>,
    seen: Mutex<Seen>,
}

/// What the runs exercised: a model that never reached a fault would prove nothing.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    invocations: usize,
    kills: usize,
    timeouts: usize,
    retries: usize,
    dead_letters: usize,
    /// Events that failed because keys were still held by another invocation.
    gave_up_waiting: usize,
    applied_then_retried: usize,
    accepted_but_unreported: usize,
}

impl std::ops::AddAssign for Seen {
    fn add_assign(&mut self, other: Seen) {
        self.invocations += other.invocations;
        self.kills += other.kills;
        self.timeouts += other.timeouts;
        self.retries += other.retries;
        self.dead_letters += other.dead_letters;
        self.gave_up_waiting += other.gave_up_waiting;
        self.applied_then_retried += other.applied_then_retried;
        self.accepted_but_unreported += other.accepted_but_unreported;
    }
}

impl Record {
    fn next_store_fault(&self) -> StoreFault {
        let fault = self
            .store_faults
            .lock()
            .expect("lock")
            .pop()
            .unwrap_or(StoreFault::None);
        if fault == StoreFault::AppliedThenRetried {
            self.saw(|seen| seen.applied_then_retried += 1);
        }
        fault
    }

    fn next_sink_fault(&self) -> SinkFault {
        let fault = self
            .sink_faults
            .lock()
            .expect("lock")
            .pop()
            .unwrap_or(SinkFault::None);
        if fault == SinkFault::AcceptedButTimedOut {
            self.saw(|seen| seen.accepted_but_unreported += 1);
        }
        fault
    }

    fn saw(&self, count: impl FnOnce(&mut Seen)) {
        count(&mut self.seen.lock().expect("lock"));
    }
}

/// One invocation's process: counts its steps and dies at the chosen one.
struct Process {
    steps: AtomicUsize,
    kill_at: Option<usize>,
    killed: tokio::sync::Notify,
}

impl Process {
    /// Called at every step; never returns if the process dies here.
    async fn step(&self) {
        let step = self.steps.fetch_add(1, Ordering::SeqCst);
        if Some(step) == self.kill_at {
            self.killed.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

tokio::task_local! {
    /// The process whose invocation is running.
    static PROCESS: Arc<Process>;
}

/// Steps the current process; never returns if it dies here.
async fn step() {
    let process = PROCESS.with(Arc::clone);
    process.step().await;
}

/// The ledger's store, through the faults of the real one, shared by every process.
struct FaultyStore {
    inner: MemoryStore,
    record: Arc<Record>,
}

fn unavailable(operation: &'static str, message: &str) -> LedgerError {
    LedgerError::Transient {
        operation,
        message: message.to_owned(),
    }
}

impl FaultyStore {
    /// Runs a write under the next fault: `write` is the request, repeatable as the SDK repeats it.
    async fn write<T, F, Fut>(&self, operation: &'static str, write: F) -> Result<T, LedgerError>
    where
        F: Fn() -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, LedgerError>> + Send,
        T: Send,
    {
        step().await;
        latency().await;
        match self.record.next_store_fault() {
            StoreFault::None => write().await,
            StoreFault::Slow => {
                tokio::time::sleep(Duration::from_secs(4)).await;
                write().await
            }
            StoreFault::Throttled => Err(unavailable(
                operation,
                "ThrottlingException past the SDK's retries",
            )),
            StoreFault::AppliedThenTimeout => {
                write().await?;
                Err(unavailable(
                    operation,
                    "timed out: the write may have been applied",
                ))
            }
            StoreFault::AppliedThenRetried => {
                write().await?;
                // The process may die between the applied write and the SDK's retry.
                step().await;
                write().await
            }
        }
    }
}

/// A little time for every call, so that concurrent invocations interleave.
async fn latency() {
    tokio::time::sleep(Duration::from_millis(fastrand::u64(1..25))).await;
}

impl ItemStore for FaultyStore {
    async fn read(&self, conversation_id: &str) -> Result<HashMap<String, KeyRecord>, LedgerError> {
        step().await;
        latency().await;
        match self.record.next_store_fault() {
            StoreFault::Throttled | StoreFault::AppliedThenTimeout => {
                Err(unavailable("Query", "ThrottlingException past the SDK's retries"))
            }
            StoreFault::Slow => {
                tokio::time::sleep(Duration::from_secs(4)).await;
                self.inner.read(conversation_id).await
            }
            _ => self.inner.read(conversation_id).await,
        }
    }

    async fn put_claim(&self, claim: &NewClaim<'_>, now_ms: i64) -> Result<PutClaim, LedgerError> {
        self.write("PutItem", || self.inner.put_claim(claim, now_ms))
            .await
    }

    async fn mark_delivered(
        &self,
        key: &Update<'_>,
        now_ms: i64,
        possibly_doubled: bool,
    ) -> Result<bool, LedgerError> {
        self.write("UpdateItem", || {
            self.inner.mark_delivered(key, now_ms, possibly_doubled)
        })
        .await
    }

    async fn release(&self, key: &Update<'_>, maybe_delivered: bool) -> Result<bool, LedgerError> {
        self.write("UpdateItem", || self.inner.release(key, maybe_delivered))
            .await
    }

    fn retention(&self) -> Option<SignedDuration> {
        None
    }
}

/// The sink of one process.
struct ProcessSink {
    record: Arc<Record>,
    process: Arc<Process>,
    /// What this process had accepted: residual if it dies before it finishes.
    accepted: Mutex<Vec<(String, String)>>,
}

impl ProcessSink {
    fn accept(&self, occurrences: &[Occurrence<'_>]) {
        let pairs: Vec<(String, String)> = occurrences
            .iter()
            .map(|o| (o.conversation_id.to_owned(), o.key.to_owned()))
            .collect();
        self.record
            .accepted
            .lock()
            .expect("lock")
            .extend(pairs.iter().cloned());
        self.accepted.lock().expect("lock").extend(pairs);
    }
}

impl Sink for ProcessSink {
    async fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        context: &PushContext,
    ) -> Result<Pushed, PushFailure> {
        if occurrences.is_empty() {
            return Ok(Pushed::default());
        }
        self.process.step().await;
        latency().await;
        let refused = |message: &str| {
            PushFailure::nothing_delivered(occurrences.len(), SinkError::Transient(message.to_owned()))
        };
        match self.record.next_sink_fault() {
            SinkFault::None => {}
            SinkFault::Unavailable => return Err(refused("DataDog answered 503")),
            SinkFault::Partial => {
                let half = occurrences.len() / 2;
                self.accept(&occurrences[..half]);
                let error = SinkError::Transient("the second request timed out".to_owned());
                return Err(PushFailure::after(half, occurrences.len(), error));
            }
            SinkFault::AcceptedButTimedOut => {
                self.accept(occurrences);
                let pairs = occurrences
                    .iter()
                    .map(|o| (o.conversation_id.to_owned(), o.key.to_owned()));
                self.record.residual.lock().expect("lock").extend(pairs);
                return Err(refused("timed out waiting for DataDog's answer"));
            }
            SinkFault::Slow => {
                // A real client gives up at the push's deadline.
                let slow = Instant::now() + Duration::from_secs(20);
                let give_up = context.deadline.map_or(slow, |deadline| deadline.min(slow));
                tokio::time::sleep_until(give_up).await;
                if give_up < slow {
                    return Err(refused("timed out at the push's deadline"));
                }
            }
        }
        self.accept(occurrences);
        // The process may die after DataDog accepted the push and before it is confirmed.
        self.process.step().await;
        Ok(Pushed::default())
    }

    fn record(&self, _tally: &Tally, _now: Timestamp) {}

    async fn flush(&self, _context: &PushContext) {}
}

/// A message or event waiting to be delivered.
#[derive(Debug, Clone)]
struct Delivery {
    events: Vec<usize>,
    /// Attempts so far.
    attempts: usize,
}

/// Everything a run shares.
struct Run<'t, L> {
    trace: &'t Trace,
    expected: &'t Expected,
    base: Timestamp,
    start: Instant,
    record: Arc<Record>,
    ledger: Arc<L>,
    invocations: AtomicUsize,
    dead_letters: Mutex<Vec<Delivery>>,
}

impl<L: Ledger> Run<'_, L> {
    /// The wall clock: the start of the trace plus simulated time.
    fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.start.elapsed()).expect("elapsed");
        self.base + elapsed
    }

    /// Runs one invocation; returns the events it failed (or all, if it died or timed out).
    async fn invoke(&self, delivery: &Delivery) -> Vec<usize> {
        let number = self.invocations.fetch_add(1, Ordering::SeqCst);
        let kill_at = self
            .trace
            .kills
            .iter()
            .find(|(invocation, _)| *invocation == number)
            .map(|(_, step)| *step);
        let process = Arc::new(Process {
            steps: AtomicUsize::new(0),
            kill_at,
            killed: tokio::sync::Notify::new(),
        });
        let sink = ProcessSink {
            record: self.record.clone(),
            process: process.clone(),
            accepted: Mutex::default(),
        };
        let pipeline = Pipeline::new(self.ledger.clone(), sink);
        let texts: Vec<&str> = delivery
            .events
            .iter()
            .map(|&event| self.expected.events[event].as_str())
            .collect();
        let deadline = Instant::now() + TIMEOUT;
        let time = BatchTime {
            now: self.now(),
            deadline: Some(deadline),
        };
        let run = async {
            tokio::select! {
                report = pipeline.process_batch(&texts, time) => Some(report),
                () = process.killed.notified() => None,
                () = tokio::time::sleep_until(deadline) => None,
            }
        };
        let report = PROCESS.scope(process.clone(), run).await;
        self.record.saw(|seen| seen.invocations += 1);
        let Some(report) = report else {
            if Instant::now() >= deadline {
                self.record.saw(|seen| seen.timeouts += 1);
            } else {
                self.record.saw(|seen| seen.kills += 1);
            }
            // Dead: what it had pushed may be doubled by whoever takes its claims.
            let accepted = pipeline.sink().accepted.lock().expect("lock").clone();
            self.record.residual.lock().expect("lock").extend(accepted);
            return delivery.events.clone();
        };
        let mut failed = Vec::new();
        for (&event, outcome) in delivery.events.iter().zip(&report.outcomes) {
            match outcome {
                EventOutcome::Processed(_) => self.check_delivered(event),
                EventOutcome::Failed { error, .. } => {
                    assert!(error.is_transient(), "a permanent failure: {error}");
                    if matches!(error, DeliveryError::Pending { .. }) {
                        self.record.saw(|seen| seen.gave_up_waiting += 1);
                    }
                    failed.push(event);
                }
                other => panic!("unexpected outcome: {other:?}"),
            }
        }
        failed
    }

    /// The promise: an acknowledged event's fresh keys are all delivered.
    fn check_delivered(&self, event: usize) {
        let accepted = self.record.accepted.lock().expect("lock");
        for pair in &self.expected.fresh[event] {
            if !accepted.contains(pair) {
                self.record.broken_promises.lock().expect("lock").push(format!(
                    "event {event} acknowledged, but {pair:?} was never delivered"
                ));
            }
        }
    }

    /// Delivers at `after`, then retries as the mode does until it succeeds or is dead-lettered.
    async fn deliver(&self, mut delivery: Delivery, after: Duration) {
        tokio::time::sleep(after).await;
        loop {
            let failed = self.invoke(&delivery).await;
            delivery.attempts += 1;
            if failed.is_empty() {
                return;
            }
            let (retry_after, attempts_allowed) = match self.trace.mode {
                Mode::Direct => (
                    ASYNC_RETRIES.get(delivery.attempts - 1).copied(),
                    1 + ASYNC_RETRIES.len(),
                ),
                // Only the failed records come back; together they are one delivery here.
                Mode::Queued(_) => (Some(VISIBILITY_TIMEOUT), MAX_RECEIVES),
            };
            delivery.events = failed;
            match retry_after {
                Some(delay) if delivery.attempts < attempts_allowed => {
                    self.record.saw(|seen| seen.retries += 1);
                    tokio::time::sleep(delay).await;
                }
                _ => {
                    self.record.saw(|seen| seen.dead_letters += 1);
                    self.dead_letters.lock().expect("lock").push(delivery);
                    return;
                }
            }
        }
    }

    /// Delivers the whole trace, then drains the dead-letter queue until it stays empty.
    async fn run(&self) {
        let mut deliveries: Vec<usize> = Vec::new();
        for (event, copies) in self.trace.copies.iter().enumerate() {
            deliveries.extend(std::iter::repeat_n(event, usize::from(*copies)));
        }
        let mut arrivals: Vec<(u64, usize)> = self.trace.arrivals.iter().copied().zip(deliveries).collect();
        arrivals.sort_unstable();
        let batches: Vec<(u64, Vec<usize>)> = match self.trace.mode {
            Mode::Direct => arrivals
                .into_iter()
                .map(|(at, event)| (at, vec![event]))
                .collect(),
            Mode::Queued(size) => arrivals
                .chunks(size)
                .map(|chunk| (chunk[0].0, chunk.iter().map(|(_, event)| *event).collect()))
                .collect(),
        };
        let first = batches.iter().map(|(at, events)| {
            let delivery = Delivery {
                events: events.clone(),
                attempts: 0,
            };
            self.deliver(delivery, Duration::from_millis(*at))
        });
        futures::future::join_all(first).await;
        for _ in 0..10 {
            let dead: Vec<Delivery> = std::mem::take(&mut *self.dead_letters.lock().expect("lock"));
            if dead.is_empty() {
                return;
            }
            let drains = dead.into_iter().map(|delivery| {
                let delivery = Delivery {
                    attempts: 0,
                    ..delivery
                };
                self.deliver(delivery, DRAIN_AFTER)
            });
            futures::future::join_all(drains).await;
        }
        panic!("the dead-letter queue never emptied");
    }
}

/// Checks the promises against what the sink accepted.
fn check(expected: &Expected, record: &Record) -> Result<(), TestCaseError> {
    let broken = record.broken_promises.lock().expect("lock");
    prop_assert!(broken.is_empty(), "{}", broken.join("\n"));
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
            expected.all.contains(pair),
            "pushed but not a valid, recent key: {pair:?}"
        );
        let allowed = 1 + residual.get(pair).copied().unwrap_or(0);
        prop_assert!(
            *count <= allowed,
            "{pair:?} pushed {count} times, at most {allowed} allowed"
        );
    }
    for pair in &expected.all {
        prop_assert!(accepted.contains_key(pair), "lost: {pair:?}");
    }
    Ok(())
}

fn cases(share: u32) -> u32 {
    let total = std::env::var("EXACTLY_ONCE_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(5000);
    (total * share / 100).max(1)
}

/// Runs generated traces on a paused-clock runtime each; `wrap` puts the ledger behind what the
/// Lambda puts it behind.
fn run_traces<L: Ledger>(
    cases: u32,
    strategy: impl Strategy<Value = Trace>,
    wrap: fn(KeyLedger<FaultyStore>) -> L,
    check: impl Fn(&Expected, &Record) -> Result<(), TestCaseError>,
) -> Seen {
    let total = Mutex::new(Seen::default());
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    // The same traces on every CI run; `EXACTLY_ONCE_SEED` explores others.
    let rng = match std::env::var("EXACTLY_ONCE_SEED")
        .ok()
        .and_then(|seed| seed.parse::<u64>().ok())
    {
        Some(seed) => {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
        }
        None => TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let base: Timestamp = "2026-03-07T08:00:00Z".parse().expect("time");
    runner
        .run(&strategy, |trace| {
            fastrand::seed(trace.seed);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("runtime");
            let expected = expected(&trace, base);
            let record = Arc::new(Record::default());
            *record.store_faults.lock().expect("lock") = trace.store_faults.iter().rev().copied().collect();
            *record.sink_faults.lock().expect("lock") = trace.sink_faults.iter().rev().copied().collect();
            runtime.block_on(async {
                let run = Run {
                    trace: &trace,
                    expected: &expected,
                    base,
                    start: Instant::now(),
                    record: record.clone(),
                    ledger: Arc::new(wrap(KeyLedger::with_store(
                        FaultyStore {
                            inner: MemoryStore::default(),
                            record: record.clone(),
                        },
                        LEASE,
                    ))),
                    invocations: AtomicUsize::new(0),
                    dead_letters: Mutex::default(),
                };
                run.run().await;
            });
            *total.lock().expect("lock") += *record.seen.lock().expect("lock");
            check(&expected, &record)
        })
        .expect("no discrepancy");
    let seen = total.into_inner().expect("lock");
    eprintln!("{cases} traces exercised: {seen:?}");
    seen
}

/// Fails unless the traces reached each of these situations (when there were enough of them).
/// A situation the traces must reach: its name, and how often it happened.
type Situation = (&'static str, fn(&Seen) -> usize);

fn assert_exercised(seen: Seen, cases: u32, situations: &[Situation]) {
    if cases < 100 {
        return;
    }
    for (name, count) in situations {
        assert!(count(&seen) > 0, "no trace exercised {name}: {seen:?}");
    }
}

const EVERY_FAULT: &[Situation] = &[
    ("a killed process", |seen| seen.kills),
    ("a write applied and retried by the SDK", |seen| {
        seen.applied_then_retried
    }),
    ("a push accepted but reported as failed", |seen| {
        seen.accepted_but_unreported
    }),
    ("a retry", |seen| seen.retries),
    ("a dead letter", |seen| seen.dead_letters),
    ("an event that gave up waiting for another holder", |seen| {
        seen.gave_up_waiting
    }),
];

#[test]
fn every_valid_key_is_delivered_once_under_real_faults() {
    let cases = cases(70);
    let seen = run_traces(cases, trace(), |ledger| ledger, check);
    assert_exercised(seen, cases, EVERY_FAULT);
}

#[test]
fn every_valid_key_is_delivered_once_behind_the_warm_functions_cache() {
    // One warm instance's cache, seen by every invocation.
    let cases = cases(15);
    let seen = run_traces(
        cases,
        trace(),
        |ledger| DeliveredCache::new(ledger, 64.try_into().expect("not zero")),
        check,
    );
    assert_exercised(seen, cases, EVERY_FAULT);
}

#[test]
fn without_accepted_but_unreported_pushes_or_kills_the_count_is_exact() {
    let strict = trace().prop_map(|mut trace| {
        trace
            .sink_faults
            .retain(|fault| *fault != SinkFault::AcceptedButTimedOut);
        trace.kills.clear();
        trace
    });
    let cases = cases(15);
    let seen = run_traces(
        cases,
        strict,
        |ledger| ledger,
        |expected, record| {
            check(expected, record)?;
            let accepted = record.accepted.lock().expect("lock").clone();
            prop_assert_eq!(accepted.len(), expected.all.len(), "a key was doubled");
            Ok(())
        },
    );
    assert_exercised(
        seen,
        cases,
        &[
            ("a write applied and retried by the SDK", |seen| {
                seen.applied_then_retried
            }),
            ("a retry", |seen| seen.retries),
        ],
    );
}
