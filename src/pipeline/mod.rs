//! The pipeline: event → attribute → ledger → sink, for one batch of events.
//!
//! A batch is what one invocation handles (one EventBridge event, an SQS batch, a chunk of a
//! replay). This module owns the batch's flow and its public API: every event is decoded and its
//! keys sorted by the pure rules in [`crate::count`]; events too old for the ledger to remember
//! are rejected; the fresh keys of the rest are counted by the rounds of `protocol` (claim,
//! push, confirm or release, wait for keys other invocations hold); then each event gets its
//! outcome and the batch its tally.
//!
//! The promise: **an event succeeds only when every fresh key it carries is delivered**, by this
//! invocation or another. A key held by another invocation's live claim is waited for (polling
//! with backoff and jitter) until that holder confirms it, or its lease ends and this invocation
//! claims and pushes it itself; if neither happens before the invocation must stop, the event
//! fails as transient and is retried. Each event gets its own outcome, so one bad event never
//! blocks the others.

mod naming;
mod protocol;
mod unconfirmed;

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

use crate::attribute::InvalidKey;
use crate::count::{self, DEFAULT_MAX_KEY_AGE, DEFAULT_RUN_GAP, Tally};
use crate::event::{self, Event, EventError};
use crate::ledger::{Ledger, LedgerError};
use crate::names::{Directory, NAME_WAIT, Names};
use crate::sink::{Sink, SinkError};
use protocol::EventKeys;
use unconfirmed::Unconfirmed;

/// Pause between two looks at name fetches still in flight.
const FETCH_POLL: Duration = Duration::from_millis(10);

/// Joins a ledger and a sink under the counting rules.
#[derive(Debug)]
pub struct Pipeline<L, S> {
    ledger: L,
    sink: S,
    max_key_age: SignedDuration,
    run_gap: SignedDuration,
    names: Arc<dyn Directory>,
    /// Keys pushed and accepted whose confirm failed: confirmed first by the next batch.
    unconfirmed: Unconfirmed,
}

/// What happened to one event of a batch.
#[derive(Debug)]
pub enum EventOutcome {
    /// Another topic of the integration: nothing to do.
    Ignored { detail_type: String },
    /// Not a usable event: it should go to a dead-letter queue or a person.
    Rejected(EventError),
    /// Every fresh key it carries is delivered (by this invocation or another).
    Processed(EventReport),
    /// Some fresh keys are not delivered yet; retrying the event will count them.
    Failed {
        report: EventReport,
        error: DeliveryError,
    },
}

/// What one attributes event's metric keys came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EventReport {
    pub conversation_id: String,
    /// New keys delivered by this event.
    pub counted: usize,
    /// Fresh keys another invocation delivered.
    pub already_counted: usize,
    /// Fresh keys another invocation still held when this one stopped waiting.
    pub pending: usize,
    /// Metric candidates that break the grammar, with why.
    pub invalid: Vec<(String, InvalidKey)>,
    /// Valid keys too old to count, with their time.
    pub stale: Vec<(String, Timestamp)>,
}

/// Why an event's new keys could not be counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(
        "{keys} key(s) are held by another invocation that has not confirmed them, and its claim \
         outlasts the time this one may wait"
    )]
    Pending { keys: usize },
}

impl DeliveryError {
    pub fn is_transient(&self) -> bool {
        match self {
            DeliveryError::Ledger(error) => error.is_transient(),
            DeliveryError::Sink(error) => error.is_transient(),
            DeliveryError::Pending { .. } => true,
        }
    }
}

/// When a batch runs: the wall clock at its start (for leases and point times) and, in Lambda,
/// when the invocation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchTime {
    pub now: Timestamp,
    pub deadline: Option<Instant>,
}

impl From<Timestamp> for BatchTime {
    fn from(now: Timestamp) -> Self {
        BatchTime { now, deadline: None }
    }
}

/// The outcome of every event of a batch, in input order, and their tally.
#[derive(Debug)]
pub struct BatchReport {
    pub outcomes: Vec<EventOutcome>,
    pub tally: Tally,
}

/// The batch's wall clock, advancing with the runtime's (so a paused test runtime simulates it).
#[derive(Debug, Clone, Copy)]
struct Clock {
    at: Timestamp,
    started: Instant,
    deadline: Option<Instant>,
    /// The batch's pushes wait for names being fetched until then at most ([`NAME_WAIT`]).
    names_until: Instant,
}

impl Clock {
    fn new(time: BatchTime) -> Self {
        let started = Instant::now();
        Clock {
            at: time.now,
            started,
            deadline: time.deadline,
            names_until: started + NAME_WAIT,
        }
    }

    fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.started.elapsed()).unwrap_or(SignedDuration::MAX);
        self.at.saturating_add(elapsed).unwrap_or(Timestamp::MAX)
    }

    /// The instant a wall-clock time falls on.
    fn instant_at(&self, time: Timestamp) -> Instant {
        let offset = time.duration_since(self.at);
        match Duration::try_from(offset) {
            Ok(ahead) => self.started + ahead,
            Err(_) => {
                let behind = Duration::try_from(offset.abs()).unwrap_or(Duration::MAX);
                self.started.checked_sub(behind).unwrap_or(self.started)
            }
        }
    }

    /// The invocation's deadline less `reserve`.
    fn before_deadline(&self, reserve: Duration) -> Option<Instant> {
        self.deadline
            .map(|deadline| deadline.checked_sub(reserve).unwrap_or(self.started))
    }
}

impl<L: Ledger, S: Sink> Pipeline<L, S> {
    pub fn new(ledger: L, sink: S) -> Self {
        Pipeline {
            ledger,
            sink,
            max_key_age: DEFAULT_MAX_KEY_AGE,
            run_gap: DEFAULT_RUN_GAP,
            names: Arc::new(Names::default()),
            unconfirmed: Unconfirmed::default(),
        }
    }

    /// Where the names of flows, milestones and outcomes come from (by default, nowhere: their
    /// ids are shown).
    pub fn with_names(mut self, names: Arc<dyn Directory>) -> Self {
        self.names = names;
        self
    }

    /// Waits until no name is being fetched, or until `until`: for a Lambda invocation about to
    /// return (see [`crate::names::FETCH_GRACE`]). Counting is over by then; nothing waits on it.
    pub async fn finish_name_fetches(&self, until: Instant) {
        while self.names.fetching() > 0 && Instant::now() < until {
            tokio::time::sleep(FETCH_POLL.min(until.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// Keys older than this, relative to their event's time, are stale.
    pub fn with_max_key_age(mut self, max_key_age: SignedDuration) -> Self {
        self.max_key_age = max_key_age;
        self
    }

    /// Keys of a flow more than this apart are in different runs: each key's `.elapsed` is timed
    /// from the start of its run.
    pub fn with_run_gap(mut self, run_gap: SignedDuration) -> Self {
        self.run_gap = run_gap;
        self
    }

    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    pub fn sink(&self) -> &S {
        &self.sink
    }

    pub fn into_parts(self) -> (L, S) {
        (self.ledger, self.sink)
    }

    /// Processes a batch of EventBridge events given as JSON texts.
    pub async fn process_batch(&self, events: &[&str], time: impl Into<BatchTime>) -> BatchReport {
        let decoded = events.iter().map(|json| event::decode(json)).collect();
        self.process_decoded(decoded, time.into()).await
    }

    /// Processes a batch of decoded events (the redrive builds its own).
    pub async fn process_decoded(
        &self,
        events: Vec<Result<Event<'_>, EventError>>,
        time: BatchTime,
    ) -> BatchReport {
        let clock = Clock::new(time);
        // Keys this process pushed and could not confirm are confirmed before anything is
        // claimed: otherwise their own conversation's next event would push them again.
        self.confirm_kept(clock.now()).await;
        let oldest_safe = count::oldest_safe_event_age(self.ledger.terms().retention, self.max_key_age)
            .and_then(|age| time.now.checked_sub(age).ok());
        // Asked first, so that a setup due another try starts as early as it can.
        let names_unavailable = self.names.unavailable().is_some();
        let mut tally = Tally {
            events_read: events.len() as u64,
            names_unavailable: u64::from(names_unavailable),
            ..Tally::default()
        };
        let mut outcomes: Vec<Option<EventOutcome>> = Vec::with_capacity(events.len());
        // Events that carry keys, with their place in the batch.
        let mut counted = Vec::new();
        for (index, decoded) in events.into_iter().enumerate() {
            let outcome = match decoded {
                Ok(Event::OtherTopic { detail_type }) => EventOutcome::Ignored {
                    detail_type: detail_type.into_owned(),
                },
                Ok(event) => match (event.conversation(), oldest_safe) {
                    (Some((_, event_time)), Some(oldest)) if event_time < oldest => {
                        EventOutcome::Rejected(EventError::TooOld {
                            event_time,
                            limit: format!("{:#}", time.now.duration_since(oldest)),
                        })
                    }
                    _ => {
                        counted.push((index, event));
                        outcomes.push(None);
                        continue;
                    }
                },
                Err(error) => EventOutcome::Rejected(error),
            };
            match outcome {
                EventOutcome::Ignored { .. } => tally.events_ignored += 1,
                _ => tally.events_rejected += 1,
            }
            outcomes.push(Some(outcome));
        }
        let mut events: Vec<EventKeys<'_>> = counted
            .iter()
            .filter_map(|(index, event)| {
                // Only events of a conversation were kept above: other topics are ignored there.
                let (conversation_id, event_time) = event.conversation()?;
                let extracted = count::extract(event, self.max_key_age, self.run_gap);
                Some(EventKeys::new(*index, conversation_id, event_time, extracted))
            })
            .collect();

        self.count_keys(&mut events, &clock).await;

        for event in events {
            let index = event.index;
            let outcome = outcome(event, &mut tally);
            if matches!(outcome, EventOutcome::Failed { .. }) {
                tally.events_failed += 1;
            }
            outcomes[index] = Some(outcome);
        }
        self.sink.record(&tally, clock.now());
        BatchReport {
            // Every slot was filled: by decoding, or by its event's keys just above.
            outcomes: outcomes.into_iter().flatten().collect(),
            tally,
        }
    }
}

/// The event's outcome, added to the tally.
fn outcome(event: EventKeys<'_>, tally: &mut Tally) -> EventOutcome {
    let extracted = event.extracted;
    tally.keys_seen += extracted.seen() as u64;
    tally.keys_invalid += extracted.invalid.len() as u64;
    tally.keys_stale += extracted.stale.len() as u64;
    tally.keys_counted += event.counted as u64;
    tally.keys_possibly_doubled += event.possibly_doubled as u64;
    tally.keys_already_counted += event.already_counted as u64;
    tally.names_unresolved += event.names_unresolved as u64;
    let pending = match event.error {
        Some(DeliveryError::Pending { keys }) => keys,
        _ => 0,
    };
    tally.keys_pending += pending as u64;
    let report = EventReport {
        conversation_id: event.conversation_id.to_owned(),
        counted: event.counted,
        already_counted: event.already_counted,
        pending,
        invalid: extracted
            .invalid
            .into_iter()
            .map(|(key, reason)| (key.to_owned(), reason))
            .collect(),
        stale: extracted
            .stale
            .iter()
            .map(|metric| (metric.key.to_owned(), metric.time))
            .collect(),
    };
    match event.error {
        None => EventOutcome::Processed(report),
        Some(error) => EventOutcome::Failed { report, error },
    }
}
