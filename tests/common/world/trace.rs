//! What a generated trace is: conversations whose attribute maps grow event by event, how each
//! event reaches the function (copies, delays, direct or through a queue), the faults of the
//! ledger and of DataDog, the kills, an archive replayed weeks later; and what it must deliver.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

use super::Pair;
use crate::common::attributes_event;

/// What one attribute added to a conversation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Valid, a second before its event.
    Valid,
    /// Valid and fresh, but minutes to days older than its event: older than DataDog's window,
    /// and its item expires sooner.
    Old { minutes: u32 },
    /// Valid, seconds ahead of its event (Genesys's clock ahead of AWS's).
    Ahead { seconds: u32 },
    /// Breaks the grammar (an impossible date).
    Invalid,
    /// Valid, but a month older than every event that carries it.
    Stale,
    /// Not a metric at all.
    Other,
}

impl KeyKind {
    pub fn is_valid(self) -> bool {
        matches!(self, KeyKind::Valid | KeyKind::Old { .. } | KeyKind::Ahead { .. })
    }
}

/// One event of a conversation.
#[derive(Debug, Clone)]
pub struct Step {
    /// Seconds after the previous event (the first: after the conversation's start).
    pub gap_s: u32,
    /// Attributes it adds.
    pub adds: Vec<KeyKind>,
    /// Valid keys it adds besides, all at once: a flow that writes hundreds or thousands.
    pub bulk: u16,
    /// Each delivery of the event, as its delay after the event's time (ms): EventBridge
    /// delivers at least once, sometimes much later.
    pub copies: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct Conversation {
    /// Seconds after the trace's start.
    pub start_s: u32,
    pub steps: Vec<Step>,
}

/// The DynamoDB operations the ledger makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Query,
    PutItem,
    /// Confirms and releases.
    UpdateItem,
}

/// What goes wrong for every call during a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// Every attempt throttled.
    Throttling,
    /// Every attempt hangs until the SDK's attempt timeout (applied or not): a brownout.
    Brownout,
    /// Every attempt answered with a 500 (applied or not).
    ServerErrors,
    /// AccessDenied: a policy lost a permission until an operator restored it.
    AccessDenied,
}

/// A time when every call (or every call of one operation) fails alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_s: u32,
    pub length_s: u32,
    pub kind: WindowKind,
    pub only: Option<Operation>,
}

/// A fault of one ledger call, as the SDK's attempts meet it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFault {
    None,
    /// Applied, answered with a 500; the SDK retries and the retry meets the write.
    AppliedThenRetried,
    /// Applied, then every attempt's answer lost: the SDK gives up after its call timeout.
    AppliedThenTimedOut,
    /// Throttled on every attempt, never applied.
    Throttled,
    /// One attempt times out (2 s), the retry answers slowly: about 3 to 4 s.
    Slow,
    /// Two attempts time out, the third answers just inside the call's 6 s.
    VerySlow,
}

/// What DataDog does with one push (as the sink's requests and retries meet it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFault {
    None,
    /// 5xx on every attempt, nothing kept.
    Unavailable,
    /// One 5xx (nothing kept), then 202.
    Recovering,
    /// Kept the points, answered 5xx; the retry is kept again: a double.
    KeptThen5xx,
    /// Kept the points, the answer never came (the client's timeout); the retry, if it fits,
    /// is kept again.
    AnswerLost,
    /// 429 asking to wait this long, then a slow 202 at the very end of the attempt.
    RateLimitedThenLate {
        wait_s: u32,
    },
    /// A slow 202.
    Slow {
        ms: u32,
    },
    /// The first half of the push's requests accepted, the rest 5xx until the sink gives up.
    Partial,
}

impl PushFault {
    /// Whether DataDog may keep a point of this push twice, or keep it while the sink reports
    /// a failure.
    pub fn may_double(self) -> bool {
        matches!(self, PushFault::KeptThen5xx | PushFault::AnswerLost)
    }
}

/// An answer of the DataDog model over HTTP, to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAnswer {
    Accept,
    /// Keeps the points, answers 503.
    Kept503,
    /// 503, nothing kept.
    Refused503,
    /// 429, resetting at once.
    RateLimited,
    /// Keeps the points and holds the answer past the client's timeout.
    KeptHeld,
}

/// How events reach the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// EventBridge → Lambda, one event an invocation; retried twice; then the dead-letter bucket.
    Direct,
    /// EventBridge → SQS → Lambda, batches of up to this many records; the dead-letter queue.
    Queued(usize),
}

/// A generated trace and how it is delivered.
#[derive(Debug, Clone)]
pub struct Trace {
    pub conversations: Vec<Conversation>,
    pub mode: Mode,
    /// Faults of successive ledger calls; once used up, calls succeed (but for windows and the
    /// steady throttle rate).
    pub calls: Vec<CallFault>,
    /// Whether those throttles spare confirms (a world where no confirm can fail for good).
    pub confirms_never_throttled: bool,
    pub windows: Vec<Window>,
    /// Calls (in a thousand) throttled past the SDK's retries, all along.
    pub throttle_per_mille: u16,
    /// Faults of successive pushes (the modelled sink).
    pub pushes: Vec<PushFault>,
    /// Answers of successive requests (the DataDog model over HTTP), and the most series it
    /// takes in one payload (413 beyond).
    pub http: Vec<HttpAnswer>,
    pub max_series: Option<usize>,
    /// Invocations (by number) killed, and at which of their steps.
    pub kills: Vec<(usize, usize)>,
    /// Days after the start at which an operator replays the EventBridge archive of every
    /// event.
    pub archive_replay_days: Option<u32>,
    /// Seeds the randomness inside the run (tokens, jitter, latencies, clocks).
    pub seed: u64,
}

fn key_kind() -> impl Strategy<Value = KeyKind> {
    prop_oneof![
        10 => Just(KeyKind::Valid),
        2 => (55u32..(6 * 24 * 60 + 22 * 60)).prop_map(|minutes| KeyKind::Old { minutes }),
        1 => (5u32..600).prop_map(|seconds| KeyKind::Ahead { seconds }),
        2 => Just(KeyKind::Invalid),
        2 => Just(KeyKind::Stale),
        2 => Just(KeyKind::Other),
    ]
}

/// Delay of a delivery after its event: most within seconds, some minutes or hours late.
fn delay() -> impl Strategy<Value = u32> {
    prop_oneof![
        16 => 0u32..3_000,
        3 => 3_000u32..120_000,
        1 => 120_000u32..6 * 3_600_000,
    ]
}

fn step(bulk: std::ops::RangeInclusive<u16>) -> impl Strategy<Value = Step> {
    (
        prop_oneof![1 => Just(0u32), 6 => 1u32..90],
        prop::collection::vec(key_kind(), 1..3),
        bulk,
        prop::collection::vec(delay(), 1..=3),
    )
        .prop_map(|(gap_s, adds, bulk, copies)| Step {
            gap_s,
            adds,
            bulk,
            copies,
        })
}

fn conversation() -> impl Strategy<Value = Conversation> {
    // One conversation in about 250 writes hundreds or thousands of keys at once.
    let steps = prop_oneof![
        250 => prop::collection::vec(step(0..=0), 1..6),
        1 => (step(300..=2_500), prop::collection::vec(step(0..=0), 0..2)).prop_map(|(bulk, rest)| {
            let mut steps = vec![bulk];
            steps.extend(rest);
            steps
        }),
    ];
    (0u32..240, steps).prop_map(|(start_s, steps)| Conversation { start_s, steps })
}

fn call_fault() -> impl Strategy<Value = CallFault> {
    prop_oneof![
        10 => Just(CallFault::None),
        3 => Just(CallFault::AppliedThenRetried),
        1 => Just(CallFault::AppliedThenTimedOut),
        2 => Just(CallFault::Throttled),
        1 => Just(CallFault::Slow),
        1 => Just(CallFault::VerySlow),
    ]
}

fn window() -> impl Strategy<Value = Window> {
    let kind = prop_oneof![
        3 => Just(WindowKind::Throttling),
        4 => Just(WindowKind::Brownout),
        2 => Just(WindowKind::ServerErrors),
        2 => Just(WindowKind::AccessDenied),
    ];
    let only = prop_oneof![
        3 => Just(None),
        2 => Just(Some(Operation::UpdateItem)),
        1 => Just(Some(Operation::PutItem)),
    ];
    (0u32..400, kind, only)
        .prop_flat_map(|(start_s, kind, only)| {
            let length = match kind {
                WindowKind::AccessDenied => 60u32..7_200,
                WindowKind::Brownout => 20u32..90,
                _ => 5u32..120,
            };
            (Just(start_s), length, Just(kind), Just(only))
        })
        .prop_map(|(start_s, length_s, kind, only)| Window {
            start_s,
            length_s,
            kind,
            only,
        })
}

fn push_fault() -> impl Strategy<Value = PushFault> {
    prop_oneof![
        12 => Just(PushFault::None),
        1 => Just(PushFault::Unavailable),
        1 => Just(PushFault::Recovering),
        1 => Just(PushFault::KeptThen5xx),
        1 => Just(PushFault::AnswerLost),
        2 => (5u32..30).prop_map(|wait_s| PushFault::RateLimitedThenLate { wait_s }),
        1 => (500u32..12_000).prop_map(|ms| PushFault::Slow { ms }),
        1 => Just(PushFault::Partial),
    ]
}

fn http_answer() -> impl Strategy<Value = HttpAnswer> {
    prop_oneof![
        8 => Just(HttpAnswer::Accept),
        2 => Just(HttpAnswer::Kept503),
        2 => Just(HttpAnswer::Refused503),
        2 => Just(HttpAnswer::RateLimited),
        1 => Just(HttpAnswer::KeptHeld),
    ]
}

/// Events straight from EventBridge.
pub fn direct() -> impl Strategy<Value = Mode> {
    Just(Mode::Direct)
}

/// Events through a queue, in batches of 2 to 10.
pub fn queued() -> impl Strategy<Value = Mode> {
    (2usize..=10).prop_map(Mode::Queued)
}

/// Every trace the world can make.
pub fn trace() -> impl Strategy<Value = Trace> {
    trace_in(prop_oneof![direct(), queued()])
}

/// Every trace the world can make, with events reaching the function in these modes.
pub fn trace_in(mode: impl Strategy<Value = Mode>) -> impl Strategy<Value = Trace> {
    (
        prop::collection::vec(conversation(), 1..5),
        mode,
        prop::collection::vec(call_fault(), 0..40),
        prop::collection::vec(window(), 0..3),
        prop_oneof![6 => Just(0u16), 3 => Just(5u16), 1 => Just(10u16)],
        prop::collection::vec(push_fault(), 0..8),
        (
            prop::collection::vec(http_answer(), 0..8),
            prop_oneof![Just(None), (2usize..8).prop_map(Some)],
        ),
        prop::collection::vec((0usize..40, 0usize..40), 0..4),
        prop_oneof![3 => Just(None), 1 => (22u32..28).prop_map(Some)],
        any::<u64>(),
    )
        .prop_map(
            |(
                conversations,
                mode,
                calls,
                windows,
                throttle_per_mille,
                pushes,
                (http, max_series),
                kills,
                archive_replay_days,
                seed,
            )| Trace {
                conversations,
                mode,
                calls,
                confirms_never_throttled: false,
                windows,
                throttle_per_mille,
                pushes,
                http,
                max_series,
                kills,
                archive_replay_days,
                seed,
            },
        )
}

impl Trace {
    /// A trace of these conversations and nothing else: no fault, direct mode.
    pub fn calm(conversations: Vec<Conversation>) -> Trace {
        Trace {
            conversations,
            mode: Mode::Direct,
            calls: Vec::new(),
            confirms_never_throttled: false,
            windows: Vec::new(),
            throttle_per_mille: 0,
            pushes: Vec::new(),
            http: Vec::new(),
            max_series: None,
            kills: Vec::new(),
            archive_replay_days: None,
            seed: 0,
        }
    }
}

/// The events of a trace, in event order, when each is delivered, and what must count.
pub struct Expected {
    pub events: Vec<String>,
    pub event_times: Vec<Timestamp>,
    /// The fresh keys of each event.
    pub fresh: Vec<Vec<Pair>>,
    /// Every key that must be delivered.
    pub all: BTreeSet<Pair>,
    /// (ms after the start, event), sorted.
    pub deliveries: Vec<(u64, usize)>,
    /// Each key's series as DataDog tags it: (flow tag, metric tag) → the key, and its time.
    pub series: Arc<BTreeMap<(String, String), (Pair, Timestamp)>>,
}

/// The flow of a conversation's keys.
fn flow(conversation: usize) -> &'static str {
    ["Routing", "Billing IVR", "SupportBot"][conversation % 3]
}

pub fn expected(trace: &Trace, base: Timestamp) -> Expected {
    use flow_metrics::sink::datadog::tags::tag;
    let mut expected = Expected {
        events: Vec::new(),
        event_times: Vec::new(),
        fresh: Vec::new(),
        all: BTreeSet::new(),
        deliveries: Vec::new(),
        series: Arc::default(),
    };
    let mut series = BTreeMap::new();
    for (c, conversation) in trace.conversations.iter().enumerate() {
        let id = format!("c{c}");
        let flow = flow(c);
        let mut at_s = i64::from(conversation.start_s);
        // Every key so far, with its time, and whether it can count.
        let mut keys: Vec<(String, Option<Timestamp>)> = Vec::new();
        for (s, step) in conversation.steps.iter().enumerate() {
            at_s += i64::from(step.gap_s);
            let event_time = base + SignedDuration::from_secs(at_s);
            let before = event_time - SignedDuration::from_secs(1);
            let mut add = |metric: String, kind: KeyKind| {
                let key_time = match kind {
                    KeyKind::Valid | KeyKind::Invalid | KeyKind::Other => before,
                    KeyKind::Old { minutes } => event_time - SignedDuration::from_mins(i64::from(minutes)),
                    KeyKind::Ahead { seconds } => event_time + SignedDuration::from_secs(i64::from(seconds)),
                    KeyKind::Stale => before - SignedDuration::from_hours(24 * 30),
                };
                let key = match kind {
                    KeyKind::Invalid => format!("{flow}Metric_{metric}(2026-02-30T00:00:00Z)"),
                    KeyKind::Other => format!("Attribute{metric}"),
                    _ => format!("{flow}Metric_{metric}({key_time})"),
                };
                if kind.is_valid() {
                    let pair = (id.clone(), key.clone());
                    series.insert((tag("flow", flow), tag("metric", &metric)), (pair, key_time));
                }
                keys.push((key, kind.is_valid().then_some(key_time)));
            };
            for (k, kind) in step.adds.iter().enumerate() {
                add(format!("C{c}S{s}K{k}"), *kind);
            }
            for b in 0..step.bulk {
                add(format!("C{c}S{s}B{b}"), KeyKind::Valid);
            }
            let oldest = event_time - flow_metrics::count::DEFAULT_MAX_KEY_AGE;
            let fresh: Vec<Pair> = keys
                .iter()
                .filter(|(_, time)| time.is_some_and(|time| time >= oldest))
                .map(|(key, _)| (id.clone(), key.clone()))
                .collect();
            expected.all.extend(fresh.iter().cloned());
            expected.fresh.push(fresh);
            let refs: Vec<&str> = keys.iter().map(|(key, _)| key.as_str()).collect();
            let event = expected.events.len();
            expected
                .events
                .push(attributes_event(&id, &event_time.to_string(), &refs));
            expected.event_times.push(event_time);
            for delay in &step.copies {
                let at = u64::try_from(at_s).expect("after the start") * 1000 + u64::from(*delay);
                expected.deliveries.push((at, event));
            }
        }
    }
    expected.deliveries.sort_unstable();
    expected.series = Arc::new(series);
    expected
}
