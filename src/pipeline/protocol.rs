//! The protocol rounds that count a batch's fresh keys: claim them in the ledger, push the keys
//! won to the sink under their names, then confirm those delivered or release the rest. Keys
//! another invocation holds are asked again, with backoff and jitter, until that holder confirms
//! them, or their lease ends and this invocation claims them itself, or the wait must end.
//!
//! [`crate::ledger`] keeps the protocol for one event's keys; this module runs it for a whole
//! batch at once, and owns each event's place in it ([`EventKeys`]). The names the keys are
//! pushed under come from `naming`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use futures::stream;
use jiff::Timestamp;
use tokio::time::Instant;

use super::naming;
use super::{Clock, DeliveryError, Pipeline};
use crate::count::{Extracted, Occurrence};
use crate::key::MetricKey;
use crate::ledger::{Claim, ClaimRequest, ClaimToken, Held, Ledger, LedgerError};
use crate::sink::{PushContext, Sink, SinkError};
use crate::timing::{CONFIRM_RESERVE, LEASE_SAFETY, MIN_ATTEMPT, jittered};

/// How many events of a batch talk to the ledger at once.
const EVENT_CONCURRENCY: usize = 8;

/// First and longest pause between two looks at keys another invocation holds.
const FIRST_POLL: Duration = Duration::from_millis(100);
const LONGEST_POLL: Duration = Duration::from_secs(2);

/// Pauses between confirm attempts.
const FIRST_CONFIRM_RETRY: Duration = Duration::from_millis(50);
const LONGEST_CONFIRM_RETRY: Duration = Duration::from_secs(1);

/// One attributes event of the batch, and where its keys stand. The batch flow builds it and
/// reads its results (the `pub(super)` fields); the rounds fill them in.
pub(super) struct EventKeys<'a> {
    /// Position in the batch.
    pub(super) index: usize,
    pub(super) conversation_id: &'a str,
    event_time: Timestamp,
    pub(super) extracted: Extracted<'a>,
    /// This event's claims: its own, so that two events of a batch never share a claim.
    token: ClaimToken,
    /// Indexes into `extracted.fresh` to ask the ledger about next.
    asking: Vec<usize>,
    /// When the latest lease of the keys it waits for ends.
    waiting_until: Option<Timestamp>,
    /// Why some keys of `asking` could not be claimed last round: asked again until the wait
    /// ends, since the keys won meanwhile stay won.
    failure: Option<LedgerError>,
    /// Indexes into `extracted.fresh` of keys taken from a claim whose push may have reached the
    /// sink: pushing them again may count them twice.
    taken_over: Vec<usize>,
    pub(super) counted: usize,
    /// Keys delivered by a push that may have counted them twice.
    pub(super) possibly_doubled: usize,
    pub(super) already_counted: usize,
    /// Names of delivered milestones and outcomes that went out as ids.
    pub(super) names_unresolved: usize,
    pub(super) error: Option<DeliveryError>,
}

impl<'a> EventKeys<'a> {
    /// An event none of whose fresh keys has been asked about yet.
    pub(super) fn new(
        index: usize,
        conversation_id: &'a str,
        event_time: Timestamp,
        extracted: Extracted<'a>,
    ) -> Self {
        EventKeys {
            index,
            conversation_id,
            event_time,
            asking: (0..extracted.fresh.len()).collect(),
            extracted,
            token: ClaimToken::random(),
            waiting_until: None,
            failure: None,
            taken_over: Vec::new(),
            counted: 0,
            possibly_doubled: 0,
            already_counted: 0,
            names_unresolved: 0,
            error: None,
        }
    }

    fn waiting(&self) -> bool {
        self.error.is_none() && !self.asking.is_empty()
    }
}

/// What becomes of keys after a push.
enum Settle {
    /// Delivered: confirm them, retrying until the deadline; with `possibly_doubled`, by a push
    /// that may have counted them twice.
    Confirm {
        deadline: Option<Instant>,
        possibly_doubled: bool,
    },
    /// Not delivered, for this reason: give them back; with `maybe_delivered`, saying the sink
    /// may hold them all the same.
    Release { error: SinkError, maybe_delivered: bool },
}

/// Keys one event won in a round.
struct Won {
    /// Position among the batch's attributes events.
    event: usize,
    /// Indexes into its `extracted.fresh`.
    keys: Vec<usize>,
}

impl<L: Ledger, S: Sink> Pipeline<L, S> {
    /// Claims, pushes and confirms every event's fresh keys, in rounds: a round claims what is
    /// asked, pushes what was won, confirms what was delivered; keys held by other invocations
    /// are asked again after a pause, until they are delivered or the wait must end.
    pub(super) async fn count_keys(&self, events: &mut [EventKeys<'_>], clock: &Clock) {
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
            // Keys whose claim could not be written are asked again until the wait must end;
            // keys held by others, until their holders' leases end.
            let retrying = events
                .iter()
                .any(|event| event.waiting() && event.failure.is_some());
            let waited_for = events
                .iter()
                .filter(|event| event.waiting())
                .filter_map(|event| event.waiting_until)
                .max()
                .map_or(clock.started, |lease| {
                    clock.instant_at(lease) + Duration::from_millis(1)
                });
            let give_up = if retrying {
                wait_cap
            } else {
                waited_for.min(wait_cap)
            };
            let now = Instant::now();
            if now >= give_up {
                for event in events.iter_mut().filter(|event| event.waiting()) {
                    event.error = Some(match event.failure.take() {
                        Some(failure) => failure.into(),
                        None => DeliveryError::Pending {
                            keys: event.asking.len(),
                        },
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
                    let fresh = |indexes: &[usize]| -> Vec<usize> {
                        indexes.iter().filter_map(|&i| asked.get(i).copied()).collect()
                    };
                    let keys = fresh(&claim.won);
                    event.taken_over.extend(fresh(&claim.taken_over));
                    event.asking = claim
                        .pending
                        .iter()
                        .filter_map(|&(i, _)| asked.get(i).copied())
                        .chain(fresh(&claim.failed))
                        .collect();
                    event.waiting_until = claim.pending.iter().map(|&(_, lease)| lease).max();
                    event.failure = claim.failure;
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
    ) -> (usize, Result<Claim, LedgerError>) {
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
        // Names being fetched are waited for within the batch's budget, leaving the push its
        // minimal attempt.
        let names_until = deadline.map_or(clock.names_until, |deadline| {
            clock
                .names_until
                .min(deadline.checked_sub(MIN_ATTEMPT).unwrap_or(clock.started))
        });
        let names = naming::resolve_all(&*self.names, &by_id, names_until).await;
        let occurrences = naming::with_names(by_id, &names);
        let context = PushContext {
            now: clock.now(),
            deadline,
        };
        let pushed = self.sink.push(&occurrences, &context).await;
        drop(occurrences);
        let (refused, resent): (HashMap<usize, SinkError>, HashSet<usize>) = match pushed {
            Ok(pushed) => (HashMap::new(), pushed.resent.into_iter().collect()),
            Err(failure) => {
                tracing::warn!(
                    error = %failure,
                    "push failed; releasing the claims of undelivered keys"
                );
                (
                    failure.undelivered.into_iter().collect(),
                    failure.resent.into_iter().collect(),
                )
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
            let mut doubled = Vec::new();
            let mut refused_keys = Vec::new();
            let mut maybe_delivered = Vec::new();
            let mut first_refusal = None;
            let mut unresolved = 0;
            for &key in &won.keys {
                let Some(metric) = event.extracted.fresh.get(key) else {
                    continue;
                };
                // Pushed before by a holder that never confirmed it, or sent twice by this push.
                let resent_here = resent.contains(&index);
                let pushed_before = resent_here || event.taken_over.contains(&key);
                match refused.get(&index) {
                    None => {
                        if pushed_before {
                            log_possible_double(event.conversation_id, metric.key, resent_here);
                            doubled.push(metric.key);
                        } else {
                            accepted.push(metric.key);
                        }
                        unresolved += names.get(index).map_or(0, |names| names.unresolved);
                    }
                    Some(error) => {
                        if pushed_before {
                            maybe_delivered.push(metric.key);
                        } else {
                            refused_keys.push(metric.key);
                        }
                        first_refusal.get_or_insert_with(|| error.clone());
                    }
                }
                index += 1;
            }
            events[won.event].names_unresolved += unresolved;
            events[won.event].possibly_doubled += doubled.len();
            for (keys, possibly_doubled) in [(accepted, false), (doubled, true)] {
                if !keys.is_empty() {
                    let confirm = Settle::Confirm {
                        deadline: confirm_deadline,
                        possibly_doubled,
                    };
                    settles.push((won.event, keys, confirm));
                }
            }
            if let Some(error) = first_refusal {
                for (keys, maybe_delivered) in [(refused_keys, false), (maybe_delivered, true)] {
                    if !keys.is_empty() {
                        let release = Settle::Release {
                            error: error.clone(),
                            maybe_delivered,
                        };
                        settles.push((won.event, keys, release));
                    }
                }
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
                Settle::Release { error, .. } => {
                    events[event].error.get_or_insert(error.into());
                }
            }
        }
        confirmed_any
    }

    async fn settle(&self, event: &EventKeys<'_>, keys: &[&str], clock: &Clock, settle: &Settle) {
        match settle {
            Settle::Confirm {
                deadline,
                possibly_doubled,
            } => {
                self.confirm(event, keys, clock, *deadline, *possibly_doubled)
                    .await
            }
            Settle::Release { maybe_delivered, .. } => {
                self.release(event, keys, clock, *maybe_delivered).await
            }
        }
    }

    /// Confirms delivered keys, retrying transient failures while a call can still end before
    /// the deadline. The push was accepted, so the event succeeds either way; keys it could not
    /// confirm are kept, and confirmed first by the next batch (see `unconfirmed`).
    async fn confirm(
        &self,
        event: &EventKeys<'_>,
        keys: &[&str],
        clock: &Clock,
        deadline: Option<Instant>,
        possibly_doubled: bool,
    ) {
        let mut pause = FIRST_CONFIRM_RETRY;
        loop {
            let held = Held {
                conversation_id: event.conversation_id,
                keys,
                token: &event.token,
                now: clock.now(),
            };
            match self.ledger.confirm(held, possibly_doubled).await {
                Ok(lost) if lost.is_empty() => return,
                Ok(lost) => {
                    // The holder that took them logged and counted them as possible doubles.
                    tracing::warn!(
                        conversation_id = event.conversation_id,
                        ?lost,
                        "claims expired before they were confirmed and were taken by another \
                         holder, which pushed them again"
                    );
                    return;
                }
                Err(error) => {
                    // A retry must be able to end, at its slowest, before the deadline.
                    let retry_at = Instant::now() + jittered(pause);
                    let too_late = deadline.is_none_or(|deadline| retry_at + CONFIRM_RESERVE > deadline);
                    if !error.is_transient() || too_late {
                        self.unconfirmed.keep(
                            event.conversation_id,
                            keys,
                            &event.token,
                            possibly_doubled,
                            &error,
                        );
                        return;
                    }
                    tokio::time::sleep_until(retry_at).await;
                    pause = (pause * 2).min(LONGEST_CONFIRM_RETRY);
                }
            }
        }
    }

    async fn release(&self, event: &EventKeys<'_>, keys: &[&str], clock: &Clock, maybe_delivered: bool) {
        let held = Held {
            conversation_id: event.conversation_id,
            keys,
            token: &event.token,
            now: clock.now(),
        };
        if let Err(error) = self.ledger.release(held, maybe_delivered).await {
            tracing::warn!(
                conversation_id = event.conversation_id,
                %error,
                "claims could not be released; they will be re-claimed when the lease ends"
            );
        }
    }
}

/// Logs a key delivered by a push that may have counted it twice, with the marker the stack's
/// metric filter counts (`src/log_markers.json`, `possiblyDoubled`).
fn log_possible_double(conversation_id: &str, key: &str, resent_by_this_push: bool) {
    let why = if resent_by_this_push {
        "sent again after an attempt whose answer was lost or a server error"
    } else {
        "taken from a claim whose holder may have pushed it, and never confirmed it"
    };
    tracing::warn!(
        conversation_id,
        key,
        why,
        "possibly doubled: a key was delivered by a push that may have counted it twice"
    );
}
