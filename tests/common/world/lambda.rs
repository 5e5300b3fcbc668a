//! The function as Lambda runs it, and the operator around it.
//!
//! - Instances: an invocation takes the instance idle the shortest time (one idle more than ten
//!   minutes is gone), else starts a new one, with its own clock (off AWS's by up to ±2 s) and
//!   its own pipeline, kept between invocations. A killed instance (a crash, out of memory) or
//!   one that ran into the function's timeout is gone with everything it held in memory.
//! - Direct mode: one event an invocation, retried about 1 and 2 minutes after a failure, then
//!   dead-lettered (the bucket keeps letters; they become too old to count after 23 days).
//!   Queued mode: batches; failed records come back after the visibility timeout, and after
//!   five receives go to the dead-letter queue, which deletes them 14 days after they were
//!   first enqueued.
//! - The operator drains the dead letters an hour after the start, then every day, from a
//!   laptop (its own clock, no invocation deadline), until none is left that can still count;
//!   and may replay the EventBridge archive of every event weeks later.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow_metrics::count::{Occurrence, Tally};
use flow_metrics::event::EventError;
use flow_metrics::ledger::{KeyLedger, Ledger};
use flow_metrics::pipeline::{BatchTime, DeliveryError, EventOutcome, Pipeline};
use flow_metrics::sink::{PushContext, PushFailure, Pushed, Sink};
use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

use super::datadog::http::{Bridge, RealSink};
use super::datadog::{DataDog, ModelSink};
use super::dynamodb::{Dynamo, WorldStore};
use super::trace::{Expected, Mode, PushFault, Trace};
use super::{Dice, LEASE, Mark, PROCESS, Pair, Process, Record, TIMEOUT};

/// Lambda's asynchronous retries: about a minute after the first failure, two after the second.
const ASYNC_RETRIES: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(120)];
/// The queue's visibility timeout (six times the function's timeout) and receive limit.
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(180);
const MAX_RECEIVES: usize = 5;
/// SQS's batching window (`timing.json`).
const BATCHING_WINDOW: u64 = 2_000;
/// How long the dead-letter queue keeps a message after it was first enqueued (the stack's
/// `QUEUE_RETENTION`).
const QUEUE_RETENTION: Duration = Duration::from_secs(14 * 86_400);
/// How long Lambda keeps an idle instance.
const IDLE_LIFETIME: Duration = Duration::from_secs(600);
/// When the operator first drains, and then how often.
const FIRST_DRAIN: Duration = Duration::from_secs(3_600);
const DRAIN_EVERY: Duration = Duration::from_secs(86_400);
/// The operator gives up draining after this long.
const LAST_DRAIN: Duration = Duration::from_secs(40 * 86_400);
/// Letters a drain receives at once (SQS's most).
const DRAIN_PAGE: usize = 10;

/// Which sink each process pushes through.
pub enum SinkChoice {
    /// The model of the DataDog sink's client ([`ModelSink`]).
    Model,
    /// The real DataDog sink over HTTP, through this bridge ([`RealSink`]).
    Real(Arc<Bridge>),
}

/// A process's sink.
pub enum WorldSink {
    Model(ModelSink),
    Real(RealSink),
}

impl Sink for WorldSink {
    async fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        context: &PushContext,
    ) -> Result<Pushed, PushFailure> {
        match self {
            WorldSink::Model(sink) => sink.push(occurrences, context).await,
            WorldSink::Real(sink) => sink.push(occurrences, context).await,
        }
    }

    fn record(&self, _tally: &Tally, _now: Timestamp) {}

    async fn flush(&self, _context: &PushContext) {}
}

/// Everything a run shares.
pub struct World {
    pub start: Instant,
    pub record: Arc<Record>,
    pub dynamo: Arc<Dynamo>,
    pub datadog: Arc<DataDog>,
    push_faults: Arc<Mutex<VecDeque<PushFault>>>,
    dice: Arc<Dice>,
    sink: SinkChoice,
}

impl World {
    pub fn new(trace: &Trace, expected: &Expected, base: Timestamp, sink: SinkChoice) -> Self {
        let start = Instant::now();
        super::started();
        let record = Arc::new(Record::default());
        let dynamo = Arc::new(Dynamo::new(trace, base, start, record.clone()));
        let clock: Arc<dyn Fn() -> Timestamp + Send + Sync> = {
            let dynamo = dynamo.clone();
            Arc::new(move || dynamo.now())
        };
        if let SinkChoice::Real(bridge) = &sink {
            let series = expected.series.clone();
            bridge.begin(&trace.http, trace.max_series, record.clone(), series, trace.seed);
        }
        World {
            start,
            datadog: Arc::new(DataDog {
                record: record.clone(),
                clock,
            }),
            record,
            dynamo,
            push_faults: Arc::new(Mutex::new(trace.pushes.iter().copied().collect())),
            dice: Arc::new(Dice::new(trace.seed ^ 0x1a3b_da5e)),
            sink,
        }
    }

    /// AWS's clock.
    pub fn now(&self) -> Timestamp {
        self.dynamo.now()
    }

    pub fn store(&self) -> WorldStore {
        WorldStore(self.dynamo.clone())
    }

    fn sink(&self, process: &Arc<Process>) -> WorldSink {
        match self.sink {
            SinkChoice::Model => WorldSink::Model(ModelSink {
                datadog: self.datadog.clone(),
                process: process.clone(),
                faults: self.push_faults.clone(),
                dice: self.dice.clone(),
            }),
            SinkChoice::Real(ref bridge) => WorldSink::Real(RealSink {
                bridge: bridge.clone(),
                process: process.clone(),
                clock: self.datadog.clock.clone(),
            }),
        }
    }
}

/// A Lambda instance between invocations.
struct Instance<L> {
    process: Arc<Process>,
    pipeline: Pipeline<L, WorldSink>,
    idle_since: Instant,
}

/// A dead letter: events, and when they were first enqueued.
#[derive(Debug, Clone)]
struct Letter {
    event: usize,
    enqueued: Instant,
}

/// How an invocation ended without its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Death {
    Killed,
    Timeout,
}

/// One trace's run.
pub struct Run<'t, L> {
    pub trace: &'t Trace,
    pub expected: &'t Expected,
    pub world: World,
    wrap: fn(KeyLedger<WorldStore>) -> L,
    idle: Mutex<Vec<Instance<L>>>,
    invocations: AtomicUsize,
    processes: AtomicUsize,
    dead_letters: Mutex<Vec<Letter>>,
    /// Deliveries not yet over (acknowledged or dead-lettered), the archive's replay included.
    delivering: AtomicUsize,
}

impl<'t, L: Ledger> Run<'t, L> {
    pub fn new(
        trace: &'t Trace,
        expected: &'t Expected,
        world: World,
        wrap: fn(KeyLedger<WorldStore>) -> L,
    ) -> Self {
        Run {
            trace,
            expected,
            world,
            wrap,
            idle: Mutex::default(),
            invocations: AtomicUsize::new(0),
            processes: AtomicUsize::new(0),
            dead_letters: Mutex::default(),
            delivering: AtomicUsize::new(0),
        }
    }

    fn record(&self) -> &Record {
        &self.world.record
    }

    /// A new process, with its own clock.
    fn process(&self) -> Arc<Process> {
        let offset = self.world.dice.offset();
        if offset >= SignedDuration::from_secs(1) {
            self.record().saw(|seen| seen.clocks_ahead += 1);
        } else if offset <= SignedDuration::from_secs(-1) {
            self.record().saw(|seen| seen.clocks_behind += 1);
        }
        let id = self.processes.fetch_add(1, Ordering::SeqCst);
        Arc::new(Process::new(id, offset))
    }

    /// The warmest idle instance, else a new one.
    fn instance(&self) -> Instance<L> {
        let mut idle = self.idle.lock().expect("lock");
        if let Some(instance) = idle.pop() {
            if instance.idle_since.elapsed() < IDLE_LIFETIME {
                self.record().saw(|seen| seen.warm_starts += 1);
                return instance;
            }
            // Older ones have been idle longer still: Lambda has reclaimed them all.
            idle.clear();
        }
        drop(idle);
        let process = self.process();
        let ledger = (self.wrap)(KeyLedger::with_store(self.world.store(), LEASE));
        Instance {
            pipeline: Pipeline::new(ledger, self.world.sink(&process)),
            process,
            idle_since: Instant::now(),
        }
    }

    fn texts(&self, events: &[usize]) -> Vec<&str> {
        events
            .iter()
            .map(|&event| self.expected.events[event].as_str())
            .collect()
    }

    /// Runs one invocation; returns the events it failed (or all, if it died).
    async fn invoke(&self, events: &[usize]) -> Vec<usize> {
        let number = self.invocations.fetch_add(1, Ordering::SeqCst);
        let kill_at = self
            .trace
            .kills
            .iter()
            .find(|(invocation, _)| *invocation == number)
            .map(|(_, step)| *step);
        let mut instance = self.instance();
        let process = instance.process.clone();
        process.begin(kill_at);
        let texts = self.texts(events);
        let deadline = Instant::now() + TIMEOUT;
        let time = BatchTime {
            now: self.world.now() + process.offset,
            deadline: Some(deadline),
        };
        let pipeline = &instance.pipeline;
        let run = async {
            tokio::select! {
                biased;
                report = pipeline.process_batch(&texts, time) => Ok(report),
                () = process.killed.notified() => Err(Death::Killed),
                () = tokio::time::sleep_until(deadline) => Err(Death::Timeout),
            }
        };
        crate::say!(
            "invocation {number}: process {} (clock {:+}ms) takes events {events:?}",
            process.id,
            process.offset.as_millis()
        );
        let report = PROCESS.scope(process.clone(), run).await;
        self.record().saw(|seen| seen.invocations += 1);
        let report = match report {
            Ok(report) => report,
            Err(death) => {
                self.died(&process, death);
                return events.to_vec();
            }
        };
        let failed = self.settle(events, report.outcomes);
        instance.idle_since = Instant::now();
        self.idle.lock().expect("lock").push(instance);
        failed
    }

    /// An instance died: the keys it had pushed and still held claimed are in flight.
    fn died(&self, process: &Process, death: Death) {
        let kept: BTreeSet<Pair> = self
            .record()
            .kept_from
            .lock()
            .expect("lock")
            .get(&process.id)
            .cloned()
            .unwrap_or_default();
        let in_flight: Vec<Pair> = self
            .world
            .dynamo
            .claimed_by(process.id)
            .into_iter()
            .filter(|pair| kept.contains(pair))
            .collect();
        let count = in_flight.len();
        self.record().died(process.id);
        crate::say!(
            "process {} dies ({death:?}) with {in_flight:?} in flight",
            process.id
        );
        match death {
            Death::Killed => {
                self.record().saw(|seen| {
                    seen.kills += 1;
                    seen.kills_in_flight += count;
                });
                let mut marks = self.record().marks.lock().expect("lock");
                for pair in in_flight {
                    marks.entry(pair).or_default().push(Mark::InFlightAtKill);
                }
            }
            Death::Timeout => self.record().saw(|seen| {
                seen.timeouts += 1;
                seen.timeouts_in_flight += count;
            }),
        }
    }

    /// Reads the outcomes of a batch; returns the events to retry.
    fn settle(&self, events: &[usize], outcomes: Vec<EventOutcome>) -> Vec<usize> {
        let mut failed = Vec::new();
        for (&event, outcome) in events.iter().zip(outcomes) {
            crate::say!("event {event}: {outcome:?}");
            if self.expected.fresh[event].len() >= 1_000 {
                self.record().saw(|seen| seen.large_events += 1);
            }
            match outcome {
                EventOutcome::Processed(_) => self.check_delivered(event),
                EventOutcome::Failed { error, .. } => {
                    if !error.is_transient() {
                        self.record().saw(|seen| seen.permanent_failures += 1);
                    }
                    if matches!(error, DeliveryError::Pending { .. }) {
                        self.record().saw(|seen| seen.gave_up_waiting += 1);
                    }
                    failed.push(event);
                }
                EventOutcome::Rejected(EventError::TooOld { .. }) => {
                    self.record().saw(|seen| seen.too_old += 1);
                    failed.push(event);
                }
                other => panic!("unexpected outcome: {other:?}"),
            }
        }
        failed
    }

    /// The promise: an acknowledged event's fresh keys are all delivered.
    fn check_delivered(&self, event: usize) {
        for pair in &self.expected.fresh[event] {
            if !self.record().delivered(pair) {
                self.record().broken_promises.lock().expect("lock").push(format!(
                    "event {event} acknowledged, but {pair:?} was never delivered"
                ));
            }
        }
    }

    /// Delivers `events` at `at`, then retries as the mode does until they succeed or are
    /// dead-lettered.
    async fn deliver(&self, mut events: Vec<usize>, at: Instant) {
        tokio::time::sleep_until(at).await;
        let enqueued = Instant::now();
        let mut attempts = 0;
        loop {
            events = self.invoke(&events).await;
            attempts += 1;
            if events.is_empty() {
                break;
            }
            let (retry_after, attempts_allowed) = match self.trace.mode {
                Mode::Direct => (ASYNC_RETRIES.get(attempts - 1).copied(), 1 + ASYNC_RETRIES.len()),
                // Only the failed records come back; together they are one delivery here.
                Mode::Queued(_) => (Some(VISIBILITY_TIMEOUT), MAX_RECEIVES),
            };
            match retry_after {
                Some(delay) if attempts < attempts_allowed => {
                    self.record().saw(|seen| seen.retries += 1);
                    tokio::time::sleep(delay).await;
                }
                _ => {
                    self.record().saw(|seen| seen.dead_letters += events.len());
                    let letters = events.iter().map(|&event| Letter { event, enqueued });
                    self.dead_letters.lock().expect("lock").extend(letters);
                    break;
                }
            }
        }
        self.delivering.fetch_sub(1, Ordering::SeqCst);
    }

    /// The live deliveries: one an event (direct), or batches of records (queued).
    fn batches(&self) -> Vec<(u64, Vec<usize>)> {
        let deliveries = &self.expected.deliveries;
        match self.trace.mode {
            Mode::Direct => deliveries.iter().map(|&(at, event)| (at, vec![event])).collect(),
            Mode::Queued(size) => {
                let mut batches: Vec<(u64, Vec<usize>)> = Vec::new();
                for &(at, event) in deliveries {
                    match batches.last_mut() {
                        Some((first, events)) if events.len() < size && at < *first + BATCHING_WINDOW => {
                            events.push(event);
                        }
                        _ => batches.push((at, vec![event])),
                    }
                }
                batches
            }
        }
    }

    /// Drains dead letters from the operator's laptop; returns those kept, and whether every
    /// one kept was refused as too old (it will never count: nothing more to drain).
    async fn drain(&self, letters: Vec<Letter>) -> (Vec<Letter>, bool) {
        self.record().saw(|seen| seen.drains += 1);
        let process = self.process();
        process.begin(None);
        let ledger = KeyLedger::with_store(self.world.store(), LEASE);
        let pipeline = Pipeline::new(ledger, self.world.sink(&process));
        let mut kept = Vec::new();
        let mut only_too_old = true;
        for page in letters.chunks(DRAIN_PAGE) {
            let events: Vec<usize> = page.iter().map(|letter| letter.event).collect();
            let texts = self.texts(&events);
            let time = BatchTime::from(self.world.now() + process.offset);
            let report = PROCESS
                .scope(process.clone(), pipeline.process_batch(&texts, time))
                .await;
            for (letter, outcome) in page.iter().zip(report.outcomes) {
                let event = letter.event;
                crate::say!("drained event {event}: {outcome:?}");
                match outcome {
                    EventOutcome::Processed(_) => self.check_delivered(event),
                    EventOutcome::Failed { error, .. } => {
                        if !error.is_transient() {
                            self.record().saw(|seen| seen.permanent_failures += 1);
                        }
                        only_too_old = false;
                        kept.push(letter.clone());
                    }
                    EventOutcome::Rejected(EventError::TooOld { .. }) => {
                        self.record().saw(|seen| seen.too_old += 1);
                        kept.push(letter.clone());
                    }
                    other => panic!("unexpected outcome of a drained letter: {other:?}"),
                }
            }
        }
        (kept, only_too_old)
    }

    /// Drains an hour after the start, then every day, until no letter can count any more.
    async fn drains(&self) {
        let mut next = self.world.start + FIRST_DRAIN;
        while next < self.world.start + LAST_DRAIN {
            tokio::time::sleep_until(next).await;
            next += DRAIN_EVERY;
            let letters = std::mem::take(&mut *self.dead_letters.lock().expect("lock"));
            let (alive, expired): (Vec<Letter>, Vec<Letter>) = letters.into_iter().partition(|letter| {
                self.trace.mode == Mode::Direct || letter.enqueued.elapsed() < QUEUE_RETENTION
            });
            self.record().saw(|seen| seen.letters_expired += expired.len());
            let over = self.delivering.load(Ordering::SeqCst) == 0;
            if alive.is_empty() {
                if over {
                    return;
                }
                continue;
            }
            let (kept, only_too_old) = self.drain(alive).await;
            let nothing_left = kept.is_empty() || only_too_old;
            self.dead_letters.lock().expect("lock").extend(kept);
            if over && nothing_left {
                return;
            }
        }
    }

    /// Delivers the whole trace, replays the archive if the trace says so, and drains.
    pub async fn run(&self) {
        let batches = self.batches();
        let replay = self.trace.archive_replay_days;
        self.delivering
            .store(batches.len() + usize::from(replay.is_some()), Ordering::SeqCst);
        let live = futures::future::join_all(
            batches
                .into_iter()
                .map(|(at, events)| self.deliver(events, self.world.start + Duration::from_millis(at))),
        );
        let archive = async {
            let Some(days) = replay else { return };
            tokio::time::sleep_until(self.world.start + Duration::from_secs(u64::from(days) * 86_400)).await;
            self.world.dynamo.sweep_all();
            let now = Instant::now();
            let all = (0..self.expected.events.len()).map(|event| {
                self.delivering.fetch_add(1, Ordering::SeqCst);
                self.deliver(vec![event], now + Duration::from_millis(event as u64 * 100))
            });
            futures::future::join_all(all).await;
            self.delivering.fetch_sub(1, Ordering::SeqCst);
        };
        futures::join!(live, archive, self.drains());
    }
}
