//! The pipeline: event → attribute → ledger → sink, for one batch of events.
//!
//! A batch is what one invocation handles (one EventBridge event, an SQS batch, a chunk of a
//! replay). Every event is decoded and its keys sorted by the pure rules in [`crate::count`];
//! the ledger is asked to claim each event's fresh keys; the sink receives the keys won, in one
//! push; then the claims are confirmed, or released if the push failed.
//!
//! The promise: **an event succeeds only when every fresh key it carries is delivered**, by this
//! invocation or another. A key held by another invocation's live claim is waited for (polling
//! with backoff and jitter) until that holder confirms it, or its lease ends and this invocation
//! claims and pushes it itself; if neither happens before the invocation must stop, the event
//! fails as transient and is retried. Each event gets its own outcome, so one bad event never
//! blocks the others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream;
use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

use crate::attribute::InvalidKey;
use crate::count::{self, DEFAULT_MAX_KEY_AGE, Extracted, Occurrence, Tally};
use crate::event::{self, Event, EventError};
use crate::key::{MetricKey, Source};
use crate::ledger::{ClaimRequest, ClaimToken, Held, Ledger, LedgerError};
use crate::names::{Directory, NameKind, Names};
use crate::sink::{PushContext, Sink, SinkError};
use crate::timing::{CONFIRM_RESERVE, LEASE_SAFETY, MIN_ATTEMPT, jittered};

/// How many events of a batch talk to the ledger at once.
const EVENT_CONCURRENCY: usize = 8;

/// First and longest pause between two looks at keys another invocation holds.
const FIRST_POLL: Duration = Duration::from_millis(100);
const LONGEST_POLL: Duration = Duration::from_secs(2);

/// Pause between two looks at name fetches still in flight.
const FETCH_POLL: Duration = Duration::from_millis(10);

/// Pauses between confirm attempts.
const FIRST_CONFIRM_RETRY: Duration = Duration::from_millis(50);
const LONGEST_CONFIRM_RETRY: Duration = Duration::from_secs(1);

/// Joins a ledger and a sink under the counting rules.
#[derive(Debug)]
pub struct Pipeline<L, S> {
    ledger: L,
    sink: S,
    max_key_age: SignedDuration,
    names: Arc<dyn Directory>,
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
}

impl Clock {
    fn new(time: BatchTime) -> Self {
        Clock {
            at: time.now,
            started: Instant::now(),
            deadline: time.deadline,
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

/// One attributes event of the batch, and where its keys stand.
struct EventKeys<'a> {
    /// Position in the batch.
    index: usize,
    conversation_id: &'a str,
    event_time: Timestamp,
    extracted: Extracted<'a>,
    /// This event's claims: its own, so that two events of a batch never share a claim.
    token: ClaimToken,
    /// Indexes into `extracted.fresh` to ask the ledger about next.
    asking: Vec<usize>,
    /// When the latest lease of the keys it waits for ends.
    waiting_until: Option<Timestamp>,
    counted: usize,
    already_counted: usize,
    /// Names of delivered milestones and outcomes that went out as ids.
    names_unresolved: usize,
    error: Option<DeliveryError>,
}

impl EventKeys<'_> {
    fn waiting(&self) -> bool {
        self.error.is_none() && !self.asking.is_empty()
    }
}

/// What becomes of keys after a push.
enum Settle {
    /// Delivered: confirm them, retrying until the deadline.
    Confirm { deadline: Option<Instant> },
    /// Not delivered, for this reason: give them back.
    Release(SinkError),
}

/// The names found for an occurrence's ids, and how many were not.
#[derive(Default)]
struct Resolved {
    flow: Option<Arc<str>>,
    metric: Option<Arc<str>>,
    unresolved: usize,
}

/// Keys one event won in a round.
struct Won {
    /// Position among the batch's attributes events.
    event: usize,
    /// Indexes into its `extracted.fresh`.
    keys: Vec<usize>,
}

impl<L: Ledger, S: Sink> Pipeline<L, S> {
    pub fn new(ledger: L, sink: S) -> Self {
        Pipeline {
            ledger,
            sink,
            max_key_age: DEFAULT_MAX_KEY_AGE,
            names: Arc::new(Names::default()),
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
                let extracted = count::extract(event, self.max_key_age);
                Some(EventKeys {
                    index: *index,
                    conversation_id,
                    event_time,
                    asking: (0..extracted.fresh.len()).collect(),
                    extracted,
                    token: ClaimToken::random(),
                    waiting_until: None,
                    counted: 0,
                    already_counted: 0,
                    names_unresolved: 0,
                    error: None,
                })
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

    /// Claims, pushes and confirms every event's fresh keys, in rounds: a round claims what is
    /// asked, pushes what was won, confirms what was delivered; keys held by other invocations
    /// are asked again after a pause, until they are delivered or the wait must end.
    async fn count_keys(&self, events: &mut [EventKeys<'_>], clock: &Clock) {
        let lease = Duration::try_from(self.ledger.terms().lease).unwrap_or(Duration::MAX);
        // Without an invocation deadline (a replay), a wait ends after two leases at most.
        let wait_cap = clock
            .before_deadline(MIN_ATTEMPT + CONFIRM_RESERVE)
            .unwrap_or_else(|| clock.started + lease.saturating_mul(2));
        let mut pause = Duration::ZERO;
        loop {
            let (won, lease_expires) = self.claim_round(events, clock).await;
            let confirmed_any = self.push_round(events, &won, lease_expires, clock).await;
            if !events.iter().any(EventKeys::waiting) {
                return;
            }
            let waited_for = events
                .iter()
                .filter(|event| event.waiting())
                .filter_map(|event| event.waiting_until)
                .max()
                .map_or(clock.started, |lease| {
                    clock.instant_at(lease) + Duration::from_millis(1)
                });
            let give_up = waited_for.min(wait_cap);
            let now = Instant::now();
            if now >= give_up {
                for event in events.iter_mut().filter(|event| event.waiting()) {
                    event.error = Some(DeliveryError::Pending {
                        keys: event.asking.len(),
                    });
                }
                return;
            }
            // Keys another event of this batch just confirmed are delivered now: look again at
            // once. Otherwise back off, with jitter so that waiters do not ask in step.
            pause = if confirmed_any {
                Duration::ZERO
            } else {
                jittered(pause.saturating_mul(2).clamp(FIRST_POLL, LONGEST_POLL))
            };
            if !pause.is_zero() {
                tokio::time::sleep_until((now + pause).min(give_up)).await;
            }
        }
    }

    /// Asks the ledger about every event's keys still in question. Returns the keys won, per
    /// event, and when the earliest of their leases ends.
    async fn claim_round(
        &self,
        events: &mut [EventKeys<'_>],
        clock: &Clock,
    ) -> (Vec<Won>, Option<Timestamp>) {
        // Lists of futures rather than mapping closures: such closures trip rustc's proof that
        // the batch's future is Send (rust-lang/rust#110338).
        let claims: Vec<_> = events
            .iter()
            .enumerate()
            .filter(|(_, event)| event.waiting())
            .map(|(position, event)| self.claim(position, event, clock))
            .collect();
        let answers: Vec<_> = stream::iter(claims).buffered(EVENT_CONCURRENCY).collect().await;
        let mut won = Vec::new();
        let mut earliest_lease: Option<Timestamp> = None;
        for (position, answer) in answers {
            let event = &mut events[position];
            let asked = std::mem::take(&mut event.asking);
            match answer {
                Err(error) => event.error = Some(error.into()),
                Ok(claim) => {
                    let keys: Vec<usize> = claim.won.iter().filter_map(|&i| asked.get(i).copied()).collect();
                    event.asking = claim
                        .pending
                        .iter()
                        .filter_map(|&(i, _)| asked.get(i).copied())
                        .collect();
                    event.waiting_until = claim.pending.iter().map(|&(_, lease)| lease).max();
                    event.already_counted += asked.len().saturating_sub(keys.len() + event.asking.len());
                    if let Some(lease) = claim.lease_expires {
                        earliest_lease = Some(earliest_lease.map_or(lease, |earliest| earliest.min(lease)));
                    }
                    if !keys.is_empty() {
                        won.push(Won {
                            event: position,
                            keys,
                        });
                    }
                }
            }
        }
        (won, earliest_lease)
    }

    async fn claim(
        &self,
        position: usize,
        event: &EventKeys<'_>,
        clock: &Clock,
    ) -> (usize, Result<crate::ledger::Claim, LedgerError>) {
        let keys: Vec<MetricKey<'_>> = event
            .asking
            .iter()
            .filter_map(|&index| event.extracted.fresh.get(index).copied())
            .collect();
        let request = ClaimRequest {
            conversation_id: event.conversation_id,
            event_time: event.event_time,
            keys: &keys,
            token: &event.token,
            now: clock.now(),
        };
        (position, self.ledger.claim(request).await)
    }

    /// Pushes the keys won in a round, then confirms those delivered and releases the rest.
    /// Returns whether anything was confirmed.
    async fn push_round(
        &self,
        events: &mut [EventKeys<'_>],
        won: &[Won],
        lease_expires: Option<Timestamp>,
        clock: &Clock,
    ) -> bool {
        let by_id: Vec<Occurrence<'_>> = won
            .iter()
            .flat_map(|won| {
                let event = &events[won.event];
                won.keys
                    .iter()
                    .filter_map(|&index| event.extracted.fresh.get(index))
                    .map(|metric| {
                        Occurrence::new(event.conversation_id, metric, event.extracted.elapsed(metric))
                    })
            })
            .collect();
        // Attribute keys carry their names: a push of them alone is sent as it is.
        let names: Vec<Resolved> = if by_id
            .iter()
            .all(|occurrence| occurrence.source == Source::Attribute)
        {
            Vec::new()
        } else {
            by_id.iter().map(|occurrence| self.resolve(occurrence)).collect()
        };
        let occurrences: Vec<Occurrence<'_>> = if names.is_empty() {
            by_id
        } else {
            by_id
                .iter()
                .zip(&names)
                .map(|(occurrence, names)| Occurrence {
                    flow: names.flow.as_deref().unwrap_or(occurrence.flow),
                    metric: names.metric.as_deref().unwrap_or(occurrence.metric),
                    ..*occurrence
                })
                .collect()
        };
        // No push may outlive its claims: it ends before their lease (less a margin), and
        // before the invocation's end less the time to confirm.
        let lease_bound = lease_expires.map(|lease| {
            let end = clock.instant_at(lease);
            end.checked_sub(LEASE_SAFETY).unwrap_or(clock.started)
        });
        let deadline = match (clock.before_deadline(CONFIRM_RESERVE), lease_bound) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let context = PushContext {
            now: clock.now(),
            deadline,
        };
        let pushed = self.sink.push(&occurrences, &context).await;
        drop(occurrences);
        let refused: HashMap<usize, SinkError> = match pushed {
            Ok(()) => HashMap::new(),
            Err(failure) => {
                tracing::warn!(
                    error = %failure,
                    "push failed; releasing the claims of undelivered keys"
                );
                failure.undelivered.into_iter().collect()
            }
        };

        // Occurrences were laid out in the order of `won`: the n-th is the n-th key won.
        let confirm_deadline = clock
            .deadline
            .or(lease_expires.map(|lease| clock.instant_at(lease)));
        let mut settles: Vec<(usize, Vec<&str>, Settle)> = Vec::new();
        let mut index = 0usize;
        for won in won {
            let event = &events[won.event];
            let mut accepted = Vec::new();
            let mut refused_keys = Vec::new();
            let mut first_refusal = None;
            let mut unresolved = 0;
            for metric in won.keys.iter().filter_map(|&key| event.extracted.fresh.get(key)) {
                match refused.get(&index) {
                    None => {
                        accepted.push(metric.key);
                        unresolved += names.get(index).map_or(0, |names| names.unresolved);
                    }
                    Some(error) => {
                        refused_keys.push(metric.key);
                        first_refusal.get_or_insert_with(|| error.clone());
                    }
                }
                index += 1;
            }
            events[won.event].names_unresolved += unresolved;
            if !accepted.is_empty() {
                let confirm = Settle::Confirm {
                    deadline: confirm_deadline,
                };
                settles.push((won.event, accepted, confirm));
            }
            if let Some(error) = first_refusal {
                settles.push((won.event, refused_keys, Settle::Release(error)));
            }
        }
        let work: Vec<_> = settles
            .iter()
            .map(|(event, keys, settle)| self.settle(&events[*event], keys, clock, settle))
            .collect();
        stream::iter(work)
            .buffer_unordered(EVENT_CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
        let mut confirmed_any = false;
        for (event, keys, settle) in settles {
            match settle {
                Settle::Confirm { .. } => {
                    events[event].counted += keys.len();
                    confirmed_any = true;
                }
                // The event fails with why its first key was not delivered (DataDog's message).
                Settle::Release(error) => {
                    events[event].error.get_or_insert(error.into());
                }
            }
        }
        confirmed_any
    }

    /// The names of a milestone's or outcome's flow and id, where known.
    fn resolve(&self, occurrence: &Occurrence<'_>) -> Resolved {
        let kind = match occurrence.source {
            Source::Attribute => return Resolved::default(),
            Source::Milestone => NameKind::Milestone,
            Source::Outcome { .. } => NameKind::Outcome,
        };
        let flow = self.names.name(NameKind::Flow, occurrence.flow);
        let metric = self.names.name(kind, occurrence.metric);
        Resolved {
            unresolved: usize::from(flow.is_none()) + usize::from(metric.is_none()),
            flow,
            metric,
        }
    }

    async fn settle(&self, event: &EventKeys<'_>, keys: &[&str], clock: &Clock, settle: &Settle) {
        match settle {
            Settle::Confirm { deadline } => self.confirm(event, keys, clock, *deadline).await,
            Settle::Release(_) => self.release(event, keys, clock).await,
        }
    }

    /// Confirms delivered keys, retrying transient failures until the deadline: the push was
    /// accepted, so the event succeeds either way; an unconfirmed key stays claimed until its
    /// lease ends, and may be counted again by a later event.
    async fn confirm(&self, event: &EventKeys<'_>, keys: &[&str], clock: &Clock, deadline: Option<Instant>) {
        let mut pause = FIRST_CONFIRM_RETRY;
        loop {
            let held = Held {
                conversation_id: event.conversation_id,
                keys,
                token: &event.token,
                now: clock.now(),
            };
            match self.ledger.confirm(held).await {
                Ok(lost) if lost.is_empty() => return,
                Ok(lost) => {
                    tracing::warn!(
                        conversation_id = event.conversation_id,
                        ?lost,
                        "claims expired before they were confirmed and were taken by another \
                         holder; these keys may have been pushed twice"
                    );
                    return;
                }
                Err(error) => {
                    let retry_at = Instant::now() + jittered(pause);
                    if !error.is_transient() || deadline.is_none_or(|deadline| retry_at >= deadline) {
                        tracing::error!(
                            conversation_id = event.conversation_id,
                            %error,
                            "pushed keys could not be confirmed; they stay claimed until the \
                             lease ends, and a later event of the conversation may count them again"
                        );
                        return;
                    }
                    tokio::time::sleep_until(retry_at).await;
                    pause = (pause * 2).min(LONGEST_CONFIRM_RETRY);
                }
            }
        }
    }

    async fn release(&self, event: &EventKeys<'_>, keys: &[&str], clock: &Clock) {
        let held = Held {
            conversation_id: event.conversation_id,
            keys,
            token: &event.token,
            now: clock.now(),
        };
        if let Err(error) = self.ledger.release(held).await {
            tracing::warn!(
                conversation_id = event.conversation_id,
                %error,
                "claims could not be released; they will be re-claimed when the lease ends"
            );
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
