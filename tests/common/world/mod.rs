//! A world as unkind as AWS's, for the exactly-once property tests: simulated time (a paused
//! tokio clock), Lambda instances kept warm and killed, each with its own clock, a DynamoDB
//! model with the SDK's attempts, outages and eventual consistency, DataDog (a model of the
//! sink's client, or the real sink over HTTP on 127.0.0.1), dead letters drained by an operator,
//! and what was observed, for the invariants.
//!
//! - [`trace`]: what a generated trace is (conversations, deliveries, faults) and what it must
//!   deliver.
//! - [`dynamodb`]: the ledger's store as DynamoDB behaves behind the SDK's retries.
//! - [`datadog`]: DataDog, its window, and the sinks that reach it.
//! - [`lambda`]: instances, invocations, retries, dead letters, drains and archive replays.
//! - [`check`]: the invariants, and what the traces must have exercised.

pub mod check;
pub mod datadog;
pub mod dynamodb;
pub mod lambda;
pub mod trace;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::SignedDuration;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

/// The function's timeout, and its lease as the cdk stack sets it.
pub const TIMEOUT: Duration = Duration::from_secs(30);
pub const LEASE: SignedDuration = SignedDuration::from_secs(40);
/// How long the ledger keeps an item after its key's time (the stack's default).
pub const RETENTION: SignedDuration = SignedDuration::from_hours(30 * 24);
/// The largest offset of a process's clock from AWS's (`aws::clock::MAX_CLOCK_OFFSET`).
pub const MAX_CLOCK_OFFSET_MS: i64 = 2_000;

/// One process: a Lambda instance (kept warm between invocations) or an operator's command.
/// It counts the steps of its current invocation, and dies at the chosen one.
pub struct Process {
    pub id: usize,
    /// Its clock's offset from AWS's.
    pub offset: SignedDuration,
    steps: AtomicUsize,
    kill_at: Mutex<Option<usize>>,
    pub killed: tokio::sync::Notify,
}

impl Process {
    pub fn new(id: usize, offset: SignedDuration) -> Self {
        Process {
            id,
            offset,
            steps: AtomicUsize::new(0),
            kill_at: Mutex::new(None),
            killed: tokio::sync::Notify::new(),
        }
    }

    /// A new invocation, to be killed at this step of it.
    pub fn begin(&self, kill_at: Option<usize>) {
        self.steps.store(0, Ordering::SeqCst);
        *self.kill_at.lock().expect("lock") = kill_at;
    }

    /// Called at every step; never returns if the process dies here.
    pub async fn step(&self) {
        let step = self.steps.fetch_add(1, Ordering::SeqCst);
        if Some(step) == *self.kill_at.lock().expect("lock") {
            self.killed.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

tokio::task_local! {
    /// The process whose invocation is running.
    pub static PROCESS: Arc<Process>;
}

/// The running process (every store call and push happens inside one).
pub fn current() -> Arc<Process> {
    PROCESS.with(Arc::clone)
}

/// A (conversation, key) occurrence.
pub type Pair = (String, String);

/// What happened to one occurrence, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// DataDog kept a point of it (inside its window), from this push.
    Kept(Push),
    /// A process was killed while it had pushed the key and not confirmed it: the next holder
    /// may push it again.
    InFlightAtKill,
}

/// What the runs exercised: a world that never reached a fault would prove nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Seen {
    pub invocations: usize,
    pub warm_starts: usize,
    pub kills: usize,
    /// Keys pushed and not confirmed when their process was killed.
    pub kills_in_flight: usize,
    pub timeouts: usize,
    /// Keys pushed and not confirmed when Lambda's timeout ended their invocation.
    pub timeouts_in_flight: usize,
    pub retries: usize,
    pub dead_letters: usize,
    pub drains: usize,
    pub letters_expired: usize,
    pub gave_up_waiting: usize,
    /// Events failed by a permanent ledger error (AccessDenied).
    pub permanent_failures: usize,
    pub applied_then_retried: usize,
    /// Store calls failed by an outage window, and those that were confirms.
    pub window_failures: usize,
    pub confirms_failed_in_windows: usize,
    pub calls_denied: usize,
    /// Calls failed past the SDK's retries under the steady throttle rate.
    pub steady_throttles: usize,
    /// Confirm calls slower than the time the pipeline keeps for them (3 s).
    pub slow_confirms: usize,
    /// Queries whose eventually consistent answer missed a write.
    pub stale_reads: usize,
    pub clocks_ahead: usize,
    pub clocks_behind: usize,
    pub ttl_deletions: usize,
    pub too_old: usize,
    /// Events carrying a thousand fresh keys or more, processed.
    pub large_events: usize,
    /// Pushes the sink reported as possibly doubled (`resent`).
    pub resent_pushes: usize,
    /// Keys DataDog kept twice.
    pub doubles_at_datadog: usize,
    /// Pushes DataDog accepted within a second of their deadline.
    pub edge_accepts: usize,
    /// Points the sink re-timed to stay in DataDog's window.
    pub retimed_points: usize,
    /// Points DataDog dropped silently (outside its window).
    pub points_dropped: usize,
    /// Requests the DataDog model answered over HTTP: 5xx after keeping the points, 429, 413,
    /// and answers held past the client's timeout.
    pub http_ingested_5xx: usize,
    pub http_rate_limited: usize,
    pub http_too_large: usize,
    pub http_held: usize,
}

impl std::ops::AddAssign for Seen {
    fn add_assign(&mut self, other: Seen) {
        macro_rules! add {
            ($($field:ident),*) => { $(self.$field += other.$field;)* };
        }
        add!(
            invocations,
            warm_starts,
            kills,
            kills_in_flight,
            timeouts,
            timeouts_in_flight,
            retries,
            dead_letters,
            drains,
            letters_expired,
            gave_up_waiting,
            permanent_failures,
            applied_then_retried,
            window_failures,
            confirms_failed_in_windows,
            calls_denied,
            steady_throttles,
            slow_confirms,
            stale_reads,
            clocks_ahead,
            clocks_behind,
            ttl_deletions,
            too_old,
            large_events,
            resent_pushes,
            doubles_at_datadog,
            edge_accepts,
            retimed_points,
            points_dropped,
            http_ingested_5xx,
            http_rate_limited,
            http_too_large,
            http_held
        );
    }
}

/// One push: its process, and its number among the process's pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Push {
    pub process: usize,
    pub number: usize,
}

impl Mark {
    pub fn is_kept(self) -> bool {
        matches!(self, Mark::Kept(_))
    }
}

/// What the run observed, shared by every process.
#[derive(Default)]
pub struct Record {
    /// Each process's latest push, and whether it has returned to the pipeline.
    pub pushes: Mutex<BTreeMap<usize, (usize, bool)>>,
    /// Pushes that never returned: their process died first, so nothing could say what they
    /// did (DataDog keeping a request twice, say).
    pub unreturned: Mutex<BTreeSet<Push>>,
    /// Per occurrence, what DataDog kept of it and the kills that left it in flight, in order.
    pub marks: Mutex<BTreeMap<Pair, Vec<Mark>>>,
    /// Per process, the occurrences DataDog kept from its pushes.
    pub kept_from: Mutex<BTreeMap<usize, BTreeSet<Pair>>>,
    /// Events acknowledged while some fresh key of theirs was not delivered.
    pub broken_promises: Mutex<Vec<String>>,
    /// Occurrences the function logged as `possibly doubled`.
    pub logged: Arc<Mutex<BTreeSet<Pair>>>,
    pub seen: Mutex<Seen>,
}

impl Record {
    pub fn saw(&self, count: impl FnOnce(&mut Seen)) {
        count(&mut self.seen.lock().expect("lock"));
    }

    /// A process starts a push.
    pub fn push_starts(&self, process: usize) {
        let mut pushes = self.pushes.lock().expect("lock");
        let entry = pushes.entry(process).or_insert((0, true));
        *entry = (entry.0 + 1, false);
    }

    /// The push has returned to the pipeline.
    pub fn push_returns(&self, process: usize) {
        if let Some(entry) = self.pushes.lock().expect("lock").get_mut(&process) {
            entry.1 = true;
        }
    }

    /// The process died: its push in progress, if any, never returns.
    pub fn died(&self, process: usize) {
        if let Some(&(number, false)) = self.pushes.lock().expect("lock").get(&process) {
            self.unreturned
                .lock()
                .expect("lock")
                .insert(Push { process, number });
        }
    }

    /// DataDog kept a point of `pair`, pushed by `process`.
    pub fn kept(&self, pair: Pair, process: usize) {
        crate::say!("DataDog keeps {pair:?} from process {process}");
        let number = self
            .pushes
            .lock()
            .expect("lock")
            .get(&process)
            .map_or(0, |(number, _)| *number);
        let mut marks = self.marks.lock().expect("lock");
        let entry = marks.entry(pair.clone()).or_default();
        if entry.iter().any(|mark| mark.is_kept()) {
            self.saw(|seen| seen.doubles_at_datadog += 1);
        }
        entry.push(Mark::Kept(Push { process, number }));
        self.kept_from
            .lock()
            .expect("lock")
            .entry(process)
            .or_default()
            .insert(pair);
    }

    pub fn delivered(&self, pair: &Pair) -> bool {
        self.marks
            .lock()
            .expect("lock")
            .get(pair)
            .is_some_and(|marks| marks.iter().any(|mark| mark.is_kept()))
    }
}

/// A fixed-seed random source for the world's own draws, apart from the library's.
pub struct Dice(Mutex<fastrand::Rng>);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Dice(Mutex::new(fastrand::Rng::with_seed(seed)))
    }

    pub fn below(&self, n: u64) -> u64 {
        self.0.lock().expect("lock").u64(..n.max(1))
    }

    pub fn ms(&self, from: u64, to: u64) -> Duration {
        Duration::from_millis(self.0.lock().expect("lock").u64(from..to.max(from + 1)))
    }

    pub fn chance(&self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    pub fn offset(&self) -> SignedDuration {
        let ms = self
            .0
            .lock()
            .expect("lock")
            .i64(-MAX_CLOCK_OFFSET_MS..=MAX_CLOCK_OFFSET_MS);
        SignedDuration::from_millis(ms)
    }
}

/// Hears every WARN or ERROR event whose message says `possibly doubled`, with the
/// conversation and key it names.
pub struct DoublesLayer(pub Arc<Mutex<BTreeSet<Pair>>>);

#[derive(Default)]
struct DoubleFields {
    message: String,
    conversation_id: Option<String>,
    key: Option<String>,
}

/// A field's text: a string as recorded, or its Debug form without the quotes.
fn unquoted(text: String) -> String {
    match text.strip_prefix('"').and_then(|inner| inner.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => text,
    }
}

impl Visit for DoubleFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field.name(), unquoted(format!("{value:?}")));
    }
}

impl DoubleFields {
    fn record(&mut self, name: &str, value: String) {
        match name {
            "message" => self.message = value,
            "conversation_id" => self.conversation_id = Some(value),
            "key" => self.key = Some(value),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for DoublesLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
        if *event.metadata().level() > tracing::Level::WARN {
            return;
        }
        let mut fields = DoubleFields::default();
        event.record(&mut fields);
        if !fields.message.to_lowercase().contains("possibly doubled") {
            return;
        }
        if let (Some(conversation_id), Some(key)) = (fields.conversation_id, fields.key) {
            self.0.lock().expect("lock").insert((conversation_id, key));
        }
    }
}

thread_local! {
    /// Whether the world tells what happens on this thread.
    static VERBOSE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the world tells what happens: when replaying a failing trace and
/// `EXACTLY_ONCE_VERBOSE` is set.
pub fn verbose() -> bool {
    VERBOSE.with(std::cell::Cell::get)
}

/// Makes the world on this thread tell what happens, or stop.
pub fn set_verbose(on: bool) {
    VERBOSE.with(|verbose| verbose.set(on));
}

thread_local! {
    /// When the trace running on this thread started.
    static STARTED: std::cell::Cell<Option<tokio::time::Instant>> = const { std::cell::Cell::new(None) };
}

/// The trace running on this thread starts now.
pub fn started() {
    STARTED.with(|started| started.set(Some(tokio::time::Instant::now())));
}

/// Simulated time since the running trace started.
pub fn elapsed() -> Duration {
    STARTED.with(|started| started.get().map_or(Duration::ZERO, |at| at.elapsed()))
}

/// Tells what happens in the world, at the simulated time, when [`verbose`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        if $crate::world::verbose() {
            eprintln!("[{:>10.3}s] {}", $crate::world::elapsed().as_secs_f64(), format!($($arg)*));
        }
    };
}

/// Captures `possibly doubled` events on this thread into `logged` while the guard lives (and,
/// when [`verbose`], writes every WARN and ERROR of the function to stderr).
pub fn capture_doubles(logged: Arc<Mutex<BTreeSet<Pair>>>) -> tracing::subscriber::DefaultGuard {
    use tracing_subscriber::layer::SubscriberExt as _;
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::WARN)
        .with(DoublesLayer(logged))
        .with(verbose().then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr)));
    tracing::subscriber::set_default(subscriber)
}
