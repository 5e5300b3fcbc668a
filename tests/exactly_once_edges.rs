//! Exactly once at the edges, each a production scenario the property test's per-call faults
//! could not reach: a ledger brownout outlasting the invocation between push and confirm, the
//! time kept for confirming against a confirm's slowest call, a conversation of thousands of
//! keys under throttling, and pushes the sink may have delivered twice. Time is simulated (a
//! paused runtime), so leases and brownouts pass in no real time.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::attributes_event;
use common::logs::capture;
use flow_metrics::count::{Occurrence, Tally};
use flow_metrics::ledger::memory::MemoryStore;
use flow_metrics::ledger::store::{ItemStore, KeyRecord, NewClaim, PutClaim, Update};
use flow_metrics::ledger::{
    Claim, ClaimRequest, Held, KeyLedger, Ledger, LedgerError, LedgerTerms, MemoryLedger,
};
use flow_metrics::pipeline::{BatchTime, EventOutcome, Pipeline};
use flow_metrics::sink::{PushContext, PushFailure, Pushed, Sink};
use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(30);
const LEASE: SignedDuration = SignedDuration::from_secs(40);

fn transient(operation: &'static str) -> LedgerError {
    LedgerError::Transient {
        operation,
        message: "ServiceUnavailable".to_owned(),
    }
}

/// A ledger whose confirms fail while a brownout lasts (from its start, for `length`).
struct Brownout<L> {
    inner: L,
    started: Instant,
    length: Duration,
}

impl<L: Ledger> Ledger for Brownout<L> {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, LedgerError> {
        self.inner.claim(request).await
    }

    async fn confirm(&self, held: Held<'_>, possibly_doubled: bool) -> Result<Vec<String>, LedgerError> {
        if self.started.elapsed() < self.length {
            return Err(transient("UpdateItem"));
        }
        self.inner.confirm(held, possibly_doubled).await
    }

    async fn release(&self, held: Held<'_>, maybe_delivered: bool) -> Result<(), LedgerError> {
        self.inner.release(held, maybe_delivered).await
    }

    fn terms(&self) -> LedgerTerms {
        self.inner.terms()
    }
}

/// What DataDog received: every (conversation, key) of every accepted push, and what each push
/// reports as resent.
#[derive(Default)]
struct DataDog {
    received: Mutex<Vec<(String, String)>>,
    /// Answers for the next pushes: occurrences resent, and whether the push then failed.
    answers: Mutex<Vec<(Vec<usize>, bool)>>,
}

impl DataDog {
    fn times_received(&self, key: &str) -> usize {
        self.received
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, received)| received == key)
            .count()
    }
}

/// A sink of one process, sending to the shared DataDog.
struct ProcessSink(Arc<DataDog>);

impl Sink for ProcessSink {
    async fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        _context: &PushContext,
    ) -> Result<Pushed, PushFailure> {
        if occurrences.is_empty() {
            return Ok(Pushed::default());
        }
        let answer = {
            let mut answers = self.0.answers.lock().expect("lock");
            (!answers.is_empty()).then(|| answers.remove(0))
        };
        let (resent, fails) = answer.unwrap_or_default();
        let mut received = self.0.received.lock().expect("lock");
        received.extend(
            occurrences
                .iter()
                .map(|o| (o.conversation_id.to_owned(), o.key.to_owned())),
        );
        // A resent occurrence went out twice: DataDog took the first attempt too.
        received.extend(
            resent
                .iter()
                .filter_map(|&index| occurrences.get(index))
                .map(|o| (o.conversation_id.to_owned(), o.key.to_owned())),
        );
        if fails {
            let error = flow_metrics::sink::SinkError::Transient("DataDog answered 503".to_owned());
            let mut failure = PushFailure::nothing_delivered(occurrences.len(), error);
            failure.resent = resent;
            // The retry's answer was a failure: only the first attempt's copy is in DataDog.
            let kept = received.len() - occurrences.len();
            received.truncate(kept);
            return Err(failure);
        }
        Ok(Pushed { resent })
    }

    fn record(&self, _tally: &Tally, _now: Timestamp) {}

    async fn flush(&self, _context: &PushContext) {}
}

/// One Lambda invocation of `events` at `now` on the simulated clock, with the function's
/// timeout.
async fn invoke<L: Ledger, S: Sink>(pipeline: &Pipeline<L, S>, events: &[&str], now: Timestamp) -> Tally {
    let time = BatchTime {
        now,
        deadline: Some(Instant::now() + TIMEOUT),
    };
    pipeline.process_batch(events, time).await.tally
}

fn key_at(metric: &str, at: Timestamp) -> String {
    format!("RoutingMetric_{metric}({at})")
}

/// Wall time that moves with the paused runtime's clock.
struct SimulatedWall {
    at: Timestamp,
    started: Instant,
}

impl SimulatedWall {
    fn new() -> Self {
        SimulatedWall {
            at: Timestamp::now(),
            started: Instant::now(),
        }
    }

    fn now(&self) -> Timestamp {
        self.at + SignedDuration::try_from(self.started.elapsed()).expect("elapsed")
    }
}

/// A one-minute brownout from the first confirm: the event is acknowledged with its key
/// unconfirmed; 70 s later (its lease over) the conversation's next event reaches the same warm
/// function, which confirms the kept key first: DataDog has it once.
#[tokio::test(start_paused = true)]
async fn a_warm_function_confirms_its_kept_keys_before_the_next_event_claims_them() {
    let wall = SimulatedWall::new();
    let data_dog = Arc::new(DataDog::default());
    let ledger = Arc::new(MemoryLedger::new(LEASE));
    let brownout = Brownout {
        inner: Arc::clone(&ledger),
        started: Instant::now(),
        length: Duration::from_secs(60),
    };
    let function = Pipeline::new(brownout, ProcessSink(Arc::clone(&data_dog)));
    let start = key_at("Start", wall.now());
    let first = attributes_event("c-1", &wall.now().to_string(), &[&start]);
    let tally = invoke(&function, &[&first], wall.now()).await;
    assert_eq!((tally.keys_counted, tally.events_failed), (1, 0), "acknowledged");
    assert_eq!(function.unconfirmed_keys(), 1, "kept, not forgotten");

    tokio::time::sleep(Duration::from_secs(70)).await;
    let menu = key_at("Menu", wall.now());
    let next = attributes_event("c-1", &wall.now().to_string(), &[&start, &menu]);
    let tally = invoke(&function, &[&next], wall.now()).await;
    assert_eq!(function.unconfirmed_keys(), 0);
    assert_eq!(tally.keys_counted, 1, "only the new key");
    assert_eq!(tally.keys_possibly_doubled, 0);
    assert_eq!(data_dog.times_received(&start), 1, "no double");
}

/// The same brownout, but the conversation's next event reaches another instance once the lease
/// is over: it cannot know whether the key was pushed, pushes it again, and says so (log marker
/// and count); the first instance's late confirm then finds the key taken.
#[tokio::test(start_paused = true)]
async fn another_process_taking_an_unconfirmed_key_says_it_may_have_doubled_it() {
    let wall = SimulatedWall::new();
    let data_dog = Arc::new(DataDog::default());
    let ledger = Arc::new(MemoryLedger::new(LEASE));
    let first_instance = Pipeline::new(
        Brownout {
            inner: Arc::clone(&ledger),
            started: Instant::now(),
            length: Duration::from_secs(60),
        },
        ProcessSink(Arc::clone(&data_dog)),
    );
    let second_instance = Pipeline::new(Arc::clone(&ledger), ProcessSink(Arc::clone(&data_dog)));
    let start = key_at("Start", wall.now());
    let first = attributes_event("c-1", &wall.now().to_string(), &[&start]);
    invoke(&first_instance, &[&first], wall.now()).await;

    tokio::time::sleep(Duration::from_secs(70)).await;
    let (logs, _guard) = capture();
    let tally = invoke(&second_instance, &[&first], wall.now()).await;
    assert_eq!(data_dog.times_received(&start), 2, "no design can avoid this one");
    assert_eq!(tally.keys_possibly_doubled, 1, "but it is counted");
    let logged = logs.take();
    let marker = logged
        .lines()
        .find(|line| line.contains("possibly doubled"))
        .unwrap_or_else(|| panic!("no marker in {logged}"));
    assert!(
        marker.contains("\"conversation_id\":\"c-1\"") && marker.contains(&start),
        "{marker}"
    );

    let later = invoke(&first_instance, &[], wall.now()).await;
    assert_eq!(
        later.keys_possibly_doubled, 0,
        "counted once, by the process that pushed again"
    );
    assert_eq!(first_instance.unconfirmed_keys(), 0);
    assert!(logs.take().contains("confirmed too late"));
}

/// Records when each confirm ends.
struct SlowConfirms<L> {
    inner: L,
    calls: AtomicUsize,
    ended: Mutex<Vec<Instant>>,
}

impl<L: Ledger> Ledger for SlowConfirms<L> {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, LedgerError> {
        self.inner.claim(request).await
    }

    /// A confirm at the SDK's slowest: its first call fails after 6 s (two attempts cut at 2 s
    /// and a third that fails), the retry takes 6 s as well and succeeds.
    async fn confirm(&self, held: Held<'_>, possibly_doubled: bool) -> Result<Vec<String>, LedgerError> {
        tokio::time::sleep(Duration::from_secs(6)).await;
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = if call == 0 {
            Err(transient("UpdateItem"))
        } else {
            self.inner.confirm(held, possibly_doubled).await
        };
        self.ended.lock().expect("lock").push(Instant::now());
        answer
    }

    async fn release(&self, held: Held<'_>, maybe_delivered: bool) -> Result<(), LedgerError> {
        self.inner.release(held, maybe_delivered).await
    }

    fn terms(&self) -> LedgerTerms {
        self.inner.terms()
    }
}

/// A push as slow as its deadline allows.
struct PushUntilDeadline;

impl Sink for PushUntilDeadline {
    async fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        context: &PushContext,
    ) -> Result<Pushed, PushFailure> {
        if let (false, Some(deadline)) = (occurrences.is_empty(), context.deadline) {
            tokio::time::sleep_until(deadline).await;
        }
        Ok(Pushed::default())
    }

    fn record(&self, _tally: &Tally, _now: Timestamp) {}

    async fn flush(&self, _context: &PushContext) {}
}

/// A push accepted at the very end of its deadline, then a confirm whose every call takes the
/// SDK's 6 s: no confirm call outlives the invocation (Lambda would kill it mid-call, and the
/// retried event would push the key again).
#[tokio::test(start_paused = true)]
async fn no_confirm_call_outlives_the_invocation() {
    let ledger = SlowConfirms {
        inner: MemoryLedger::new(LEASE),
        calls: AtomicUsize::new(0),
        ended: Mutex::new(Vec::new()),
    };
    let pipeline = Pipeline::new(ledger, PushUntilDeadline);
    let now = Timestamp::now();
    let event = attributes_event("c-1", &now.to_string(), &[&key_at("Start", now)]);
    let deadline = Instant::now() + TIMEOUT;
    let time = BatchTime {
        now,
        deadline: Some(deadline),
    };
    pipeline.process_batch(&[&event], time).await;
    let ended = pipeline.ledger().ended.lock().expect("lock").clone();
    assert!(!ended.is_empty(), "a confirm was made");
    for end in &ended {
        assert!(
            *end <= deadline,
            "a confirm call ended {:?} after the invocation",
            *end - deadline
        );
    }
}

/// A store whose claim writes fail, after the SDK's retries, at a given rate (seeded).
struct ThrottledStore {
    inner: MemoryStore,
    rate: f64,
    random: Mutex<fastrand::Rng>,
    throttled: AtomicUsize,
}

impl ItemStore for ThrottledStore {
    async fn read(
        &self,
        conversation_id: &str,
    ) -> Result<std::collections::HashMap<String, KeyRecord>, LedgerError> {
        self.inner.read(conversation_id).await
    }

    async fn put_claim(&self, claim: &NewClaim<'_>, now_ms: i64) -> Result<PutClaim, LedgerError> {
        if self.random.lock().expect("lock").f64() < self.rate {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            return Err(transient("PutItem"));
        }
        self.inner.put_claim(claim, now_ms).await
    }

    async fn mark_delivered(
        &self,
        key: &Update<'_>,
        now_ms: i64,
        possibly_doubled: bool,
    ) -> Result<bool, LedgerError> {
        self.inner.mark_delivered(key, now_ms, possibly_doubled).await
    }

    async fn release(&self, key: &Update<'_>, maybe_delivered: bool) -> Result<bool, LedgerError> {
        self.inner.release(key, maybe_delivered).await
    }

    fn retention(&self) -> Option<SignedDuration> {
        None
    }
}

/// A conversation of 2,000 keys (a long messaging conversation, a loop in a flow) under 0.5%
/// throttles past the SDK's retries: all 2,000 succeeding at once has a chance of 0.995^2000,
/// about 1 in 22,000. Keys won stay won, the throttled ones are asked again, and one invocation
/// delivers every key once.
#[tokio::test(start_paused = true)]
async fn a_2000_key_conversation_under_throttling_is_delivered_key_by_key() {
    let store = ThrottledStore {
        inner: MemoryStore::default(),
        rate: 0.005,
        random: Mutex::new(fastrand::Rng::with_seed(22)),
        throttled: AtomicUsize::new(0),
    };
    let data_dog = Arc::new(DataDog::default());
    let pipeline = Pipeline::new(
        KeyLedger::with_store(store, LEASE),
        ProcessSink(Arc::clone(&data_dog)),
    );
    let now = Timestamp::now();
    let keys: Vec<String> = (0..2000)
        .map(|step| key_at(&format!("Step{step}"), now - SignedDuration::from_millis(step)))
        .collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let event = attributes_event("c-long", &now.to_string(), &refs);
    let report = pipeline
        .process_batch(
            &[&event],
            BatchTime {
                now,
                deadline: Some(Instant::now() + TIMEOUT),
            },
        )
        .await;
    assert!(
        pipeline.ledger().store().throttled.load(Ordering::SeqCst) > 0,
        "throttles happened"
    );
    assert!(
        matches!(report.outcomes[0], EventOutcome::Processed(_)),
        "{:?}",
        report.outcomes[0]
    );
    assert_eq!(report.tally.keys_counted, 2000);
    let received = data_dog.received.lock().expect("lock").clone();
    let distinct: std::collections::BTreeSet<_> = received.iter().collect();
    assert_eq!((received.len(), distinct.len()), (2000, 2000), "each key once");
}

/// DataDog's answer to a push was lost (or a 5xx) and the sink sent it again: the keys are
/// delivered, counted as possibly doubled, and said so. A push that then failed outright leaves
/// its keys marked as maybe delivered: whoever pushes them next says it may double them.
#[tokio::test(start_paused = true)]
async fn pushes_the_sink_may_have_delivered_twice_are_counted_and_logged() {
    let data_dog = Arc::new(DataDog::default());
    let ledger = Arc::new(MemoryLedger::new(LEASE));
    let pipeline = Pipeline::new(Arc::clone(&ledger), ProcessSink(Arc::clone(&data_dog)));
    let now = Timestamp::now();
    let (logs, _guard) = capture();

    data_dog.answers.lock().expect("lock").push((vec![0], false));
    let resent = attributes_event("c-resent", &now.to_string(), &[&key_at("Start", now)]);
    let tally = invoke(&pipeline, &[&resent], now).await;
    assert_eq!((tally.keys_counted, tally.keys_possibly_doubled), (1, 1));
    assert!(logs.take().contains("possibly doubled"));

    data_dog.answers.lock().expect("lock").push((vec![0], true));
    let failed = attributes_event("c-failed", &now.to_string(), &[&key_at("Menu", now)]);
    let tally = invoke(&pipeline, &[&failed], now).await;
    assert_eq!((tally.keys_counted, tally.events_failed), (0, 1), "retried later");
    let retry = invoke(&pipeline, &[&failed], now).await;
    assert_eq!((retry.keys_counted, retry.keys_possibly_doubled), (1, 1));
}
