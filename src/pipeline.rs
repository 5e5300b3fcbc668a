//! The pipeline: event → attribute → ledger → sink, for one batch of events.
//!
//! A batch is what one invocation handles (one EventBridge event, an SQS batch, a chunk of a
//! replay). Every event is decoded and its keys sorted by the pure rules in [`crate::count`];
//! the ledger is asked to claim each event's fresh keys; the sink receives the keys won, in one
//! push; then the claims are confirmed, or released if the push failed. Each event gets its own
//! outcome, so one bad event never blocks the others.

use std::time::Instant;

use futures::StreamExt;
use futures::stream;
use jiff::{SignedDuration, Timestamp};

use crate::attribute::InvalidKey;
use crate::count::{self, DEFAULT_MAX_KEY_AGE, Extracted, Occurrence, Tally};
use crate::event::{self, Event, EventError};
use crate::ledger::{Claim, ClaimRequest, ClaimToken, Held, Ledger, LedgerError};
use crate::sink::{PushContext, Sink, SinkError};

/// How many events of a batch talk to the ledger at once.
const EVENT_CONCURRENCY: usize = 8;

/// Joins a ledger and a sink under the counting rules.
#[derive(Debug)]
pub struct Pipeline<L, S> {
    ledger: L,
    sink: S,
    max_key_age: SignedDuration,
}

/// What happened to one event of a batch.
#[derive(Debug)]
pub enum EventOutcome {
    /// Another topic of the integration: nothing to do.
    Ignored { detail_type: String },
    /// Not a usable event: it should go to a dead-letter queue or a person.
    Rejected(EventError),
    /// Its keys were counted (or already had been).
    Processed(EventReport),
    /// Its new keys could not be counted now; retrying the event will count them.
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
    /// Fresh keys the ledger already had (delivered or claimed by someone else).
    pub already_counted: usize,
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
}

impl DeliveryError {
    pub fn is_transient(&self) -> bool {
        match self {
            DeliveryError::Ledger(error) => error.is_transient(),
            DeliveryError::Sink(error) => error.is_transient(),
        }
    }
}

/// When a batch runs: the wall clock (for leases and point times) and, in Lambda, when the
/// invocation ends (sinks stop retrying in time for the claims to be settled).
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

/// One attributes event of the batch: its sorted keys and what the ledger said.
struct Pending<'a> {
    /// Position in the batch.
    index: usize,
    conversation_id: &'a str,
    event_time: Timestamp,
    extracted: Extracted<'a>,
    claim: Option<Result<Claim, LedgerError>>,
}

impl<L: Ledger, S: Sink> Pipeline<L, S> {
    pub fn new(ledger: L, sink: S) -> Self {
        Pipeline {
            ledger,
            sink,
            max_key_age: DEFAULT_MAX_KEY_AGE,
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
        let BatchTime { now, deadline } = time;
        let mut tally = Tally {
            events_read: events.len() as u64,
            ..Tally::default()
        };
        let mut outcomes: Vec<Option<EventOutcome>> = Vec::with_capacity(events.len());
        let mut attributes = Vec::new();
        for (index, decoded) in events.into_iter().enumerate() {
            match decoded {
                Ok(Event::Attributes(event)) => {
                    attributes.push((index, event));
                    outcomes.push(None);
                }
                Ok(Event::OtherTopic { detail_type }) => {
                    tally.events_ignored += 1;
                    outcomes.push(Some(EventOutcome::Ignored {
                        detail_type: detail_type.into_owned(),
                    }));
                }
                Err(error) => {
                    tally.events_rejected += 1;
                    outcomes.push(Some(EventOutcome::Rejected(error)));
                }
            }
        }
        let mut pending: Vec<Pending<'_>> = attributes
            .iter()
            .map(|(index, event)| Pending {
                index: *index,
                conversation_id: &event.conversation_id,
                event_time: event.event_time,
                extracted: count::extract(event, self.max_key_age),
                claim: None,
            })
            .collect();

        self.claim_fresh_keys(&mut pending, now).await;
        let occurrences = won_occurrences(&pending);
        tally_keys(&mut tally, &pending, occurrences.len());
        let context = PushContext {
            tally: &tally,
            now,
            deadline,
        };
        let pushed = self.sink.push(&occurrences, &context).await;
        let delivered = match &pushed {
            Ok(()) => occurrences.len(),
            Err(failure) => {
                tracing::warn!(
                    error = %failure.error,
                    delivered = failure.delivered,
                    undelivered = occurrences.len().saturating_sub(failure.delivered),
                    "push failed; releasing the claims of undelivered keys"
                );
                failure.delivered
            }
        };
        drop(occurrences);
        tally.keys_counted = delivered as u64;
        let (delivered_keys, undelivered_keys) = split_held(&pending, delivered);
        self.confirm_claims(&delivered_keys, now).await;
        self.release_claims(&undelivered_keys, now).await;
        let failed_events: Vec<usize> = undelivered_keys.iter().map(|held| held.pending).collect();

        for (position, pending) in pending.into_iter().enumerate() {
            let index = pending.index;
            let failure = match &pushed {
                Err(failure) if failed_events.contains(&position) => Some(&failure.error),
                _ => None,
            };
            let outcome = outcome(pending, failure);
            if matches!(outcome, EventOutcome::Failed { .. }) {
                tally.events_failed += 1;
            }
            outcomes[index] = Some(outcome);
        }
        BatchReport {
            // Every slot was filled: by decoding, or by its pending event just above.
            outcomes: outcomes.into_iter().flatten().collect(),
            tally,
        }
    }

    /// Asks the ledger about every event that has fresh keys; the others make no ledger call.
    async fn claim_fresh_keys(&self, pending: &mut [Pending<'_>], now: Timestamp) {
        // Lists of futures rather than mapping closures: such closures trip rustc's proof that
        // the batch's future is Send (rust-lang/rust#110338).
        let claims: Vec<_> = pending.iter().map(|pending| self.claim(pending, now)).collect();
        let claims: Vec<Option<Result<Claim, LedgerError>>> =
            stream::iter(claims).buffered(EVENT_CONCURRENCY).collect().await;
        for (pending, claim) in pending.iter_mut().zip(claims) {
            pending.claim = claim;
        }
    }

    async fn claim(&self, pending: &Pending<'_>, now: Timestamp) -> Option<Result<Claim, LedgerError>> {
        if pending.extracted.fresh.is_empty() {
            return None;
        }
        let request = ClaimRequest {
            conversation_id: pending.conversation_id,
            event_time: pending.event_time,
            keys: &pending.extracted.fresh,
            now,
        };
        Some(self.ledger.claim(request).await)
    }

    async fn confirm_claims(&self, held: &[HeldKeys<'_>], now: Timestamp) {
        let confirms: Vec<_> = held.iter().map(|held| self.confirm(held.at(now))).collect();
        stream::iter(confirms)
            .buffer_unordered(EVENT_CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
    }

    async fn confirm(&self, held: Held<'_>) {
        match self.ledger.confirm(held).await {
            Ok(lost) if lost.is_empty() => {}
            Ok(lost) => tracing::warn!(
                conversation_id = held.conversation_id,
                ?lost,
                "claims expired before they were confirmed and were taken by another holder; \
                 these keys may have been pushed twice"
            ),
            // The push was accepted: failing the event would push it again after the lease.
            Err(error) => tracing::error!(
                conversation_id = held.conversation_id,
                %error,
                "pushed keys could not be confirmed; they stay claimed until the lease expires"
            ),
        }
    }

    async fn release_claims(&self, held: &[HeldKeys<'_>], now: Timestamp) {
        let releases: Vec<_> = held.iter().map(|held| self.release(held.at(now))).collect();
        stream::iter(releases)
            .buffer_unordered(EVENT_CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
    }

    async fn release(&self, held: Held<'_>) {
        if let Err(error) = self.ledger.release(held).await {
            tracing::warn!(
                conversation_id = held.conversation_id,
                %error,
                "claims could not be released; they will be re-claimed when the lease expires"
            );
        }
    }
}

/// Some keys one event won, under its claim token.
struct HeldKeys<'a> {
    /// Position of the event among the pending ones.
    pending: usize,
    conversation_id: &'a str,
    keys: Vec<&'a str>,
    token: &'a ClaimToken,
}

impl HeldKeys<'_> {
    fn at(&self, now: Timestamp) -> Held<'_> {
        Held {
            conversation_id: self.conversation_id,
            keys: &self.keys,
            token: self.token,
            now,
        }
    }
}

/// Splits the won keys into those among the first `delivered` occurrences (the order of
/// [`won_occurrences`]) and the rest, per event.
fn split_held<'a>(pending: &'a [Pending<'a>], delivered: usize) -> (Vec<HeldKeys<'a>>, Vec<HeldKeys<'a>>) {
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    let mut first_occurrence = 0;
    for (position, pending) in pending.iter().enumerate() {
        let Some(Ok(claim)) = &pending.claim else {
            continue;
        };
        let keys: Vec<&str> = claim
            .won
            .iter()
            .filter_map(|&index| pending.extracted.fresh.get(index))
            .map(|metric| metric.key)
            .collect();
        let accepted_here = delivered.saturating_sub(first_occurrence).min(keys.len());
        first_occurrence += keys.len();
        let (delivered_keys, undelivered_keys) = keys.split_at(accepted_here);
        for (keys, list) in [(delivered_keys, &mut accepted), (undelivered_keys, &mut refused)] {
            if !keys.is_empty() {
                list.push(HeldKeys {
                    pending: position,
                    conversation_id: pending.conversation_id,
                    keys: keys.to_vec(),
                    token: &claim.token,
                });
            }
        }
    }
    (accepted, refused)
}

fn won_occurrences<'a>(pending: &'a [Pending<'a>]) -> Vec<Occurrence<'a>> {
    pending
        .iter()
        .flat_map(|pending| {
            let won = match &pending.claim {
                Some(Ok(claim)) => claim.won.as_slice(),
                _ => &[],
            };
            won.iter()
                .filter_map(|&index| pending.extracted.fresh.get(index))
                .map(|metric| Occurrence::new(pending.conversation_id, metric))
        })
        .collect()
}

fn tally_keys(tally: &mut Tally, pending: &[Pending<'_>], counted: usize) {
    tally.keys_counted += counted as u64;
    for pending in pending {
        let extracted = &pending.extracted;
        tally.keys_seen += extracted.seen() as u64;
        tally.keys_invalid += extracted.invalid.len() as u64;
        tally.keys_stale += extracted.stale.len() as u64;
        if let Some(Ok(claim)) = &pending.claim {
            tally.keys_already_counted += (extracted.fresh.len() - claim.won.len()) as u64;
        }
    }
}

/// The event's outcome; `push_failure` is set if some of its won keys were not delivered.
fn outcome(pending: Pending<'_>, push_failure: Option<&SinkError>) -> EventOutcome {
    let extracted = pending.extracted;
    let mut report = EventReport {
        conversation_id: pending.conversation_id.to_owned(),
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
        ..EventReport::default()
    };
    match (pending.claim, push_failure) {
        (None, _) => EventOutcome::Processed(report),
        (Some(Err(error)), _) => EventOutcome::Failed {
            report,
            error: error.into(),
        },
        (Some(Ok(claim)), failure) => {
            report.already_counted = extracted.fresh.len() - claim.won.len();
            match failure {
                Some(error) => EventOutcome::Failed {
                    report,
                    error: error.clone().into(),
                },
                None => {
                    report.counted = claim.won.len();
                    EventOutcome::Processed(report)
                }
            }
        }
    }
}
