//! The claim protocol over per-key conditional writes, written once for every store.
//!
//! An [`ItemStore`] offers the few operations DynamoDB offers on one item: read a conversation's
//! items, put a claim unless the key is taken (answering with the item found when it is), and
//! update a key only if a given holder holds it. [`KeyLedger`] decides what the answers mean.
//! That is where the faults of a real store matter: a conditional put that was applied but whose
//! answer was lost is retried by the SDK, and the retry then fails its condition against the
//! holder's own item. The item carries the holder's token, so the key is recognised as won.

use std::collections::HashMap;
use std::future::Future;

use futures::{StreamExt, stream};
use jiff::{SignedDuration, Timestamp};

use super::{Claim, ClaimRequest, ClaimToken, Held, Ledger, LedgerError, LedgerTerms};
use crate::key::MetricKey;

/// Per-key requests of one event in flight at once.
const KEY_CONCURRENCY: usize = 16;

/// A key as a store records it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRecord {
    pub delivered: bool,
    /// The holder that claimed (and, once delivered, confirmed) it; none once released.
    pub token: Option<String>,
    /// When a claim's lease ends (epoch ms); 0 once released; none once delivered.
    pub lease_expires_ms: Option<i64>,
    /// Released after a push whose answer never came: the sink may hold the key already.
    pub maybe_delivered: bool,
}

impl KeyRecord {
    /// Whether a push of the key may have reached the sink before this record was replaced: a
    /// claim abandoned between claim and confirm (another holder's, its lease over, never
    /// released), or one released after a push whose answer never came.
    fn maybe_pushed(&self) -> bool {
        !self.delivered
            && (self.maybe_delivered
                || (self.token.is_some() && self.lease_expires_ms.is_some_and(|lease| lease > 0)))
    }
}

/// What a conditional claim write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutClaim {
    /// Written, replacing this record if there was one (a released or expired claim).
    Written { replaced: Option<KeyRecord> },
    /// Not written: the key is delivered or validly claimed, as this record says.
    Found(KeyRecord),
}

/// One key of a holder's, to update.
#[derive(Debug, Clone, Copy)]
pub struct Update<'a> {
    pub conversation_id: &'a str,
    pub key: &'a str,
    pub token: &'a ClaimToken,
}

/// A claim to write.
#[derive(Debug, Clone, Copy)]
pub struct NewClaim<'a> {
    pub conversation_id: &'a str,
    pub key: &'a MetricKey<'a>,
    pub first_seen_ms: i64,
    pub token: &'a ClaimToken,
    pub lease_expires_ms: i64,
    /// The record it replaces, as last read, says the sink may hold the key already: the claim
    /// says so too, so that even a holder whose write's answer was lost, finding the claim its
    /// own, knows it.
    pub maybe_delivered: bool,
}

/// Per-item conditional operations: what DynamoDB offers, and a map can mimic.
pub trait ItemStore: Send + Sync {
    /// The conversation's recorded keys. May be eventually consistent: it can miss recent writes.
    fn read(
        &self,
        conversation_id: &str,
    ) -> impl Future<Output = Result<HashMap<String, KeyRecord>, LedgerError>> + Send;

    /// Writes the claim unless the key is delivered or claimed with a lease not expired at
    /// `now_ms`: says what it replaced, or what it found.
    fn put_claim(
        &self,
        claim: &NewClaim<'_>,
        now_ms: i64,
    ) -> impl Future<Output = Result<PutClaim, LedgerError>> + Send;

    /// Marks the key delivered if its token is `token` (claimed, or already delivered by the
    /// same holder), and possibly doubled if said. `false` if another holder has it.
    fn mark_delivered(
        &self,
        key: &Update<'_>,
        now_ms: i64,
        possibly_doubled: bool,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    /// Ends the claim of `token` on the key, if it still holds it, noting whether the sink may
    /// hold the key already. `false` if it did not hold it.
    fn release(
        &self,
        key: &Update<'_>,
        maybe_delivered: bool,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    /// How long records are kept after their key's time; `None` if never forgotten.
    fn retention(&self) -> Option<SignedDuration>;
}

/// The ledger over a store: claims, confirms and releases per key.
#[derive(Debug, Clone)]
pub struct KeyLedger<S> {
    store: S,
    lease: SignedDuration,
}

/// What a record means to a holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Standing {
    Delivered,
    /// Claimed by this holder, lease ending then; whether the sink may hold the key already.
    Ours(Option<i64>, bool),
    /// Claimed by another holder whose lease ends then.
    Held(i64),
    /// Released, or a lease that has expired: claimable.
    Free,
}

fn standing(record: &KeyRecord, token: &ClaimToken, now_ms: i64) -> Standing {
    if record.delivered {
        return Standing::Delivered;
    }
    if record.token.as_deref() == Some(token.0.as_str()) {
        return Standing::Ours(record.lease_expires_ms, record.maybe_delivered);
    }
    match record.lease_expires_ms {
        Some(lease) if lease >= now_ms => Standing::Held(lease),
        _ => Standing::Free,
    }
}

impl<S: ItemStore> KeyLedger<S> {
    pub fn with_store(store: S, lease: SignedDuration) -> Self {
        KeyLedger { store, lease }
    }

    /// How long a claim holds before another holder may take the key.
    pub fn with_lease(mut self, lease: SignedDuration) -> Self {
        self.lease = lease;
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub(super) fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    async fn indexed_put(
        &self,
        index: usize,
        claim: NewClaim<'_>,
        now_ms: i64,
    ) -> (usize, bool, Result<PutClaim, LedgerError>) {
        let result = self.store.put_claim(&claim, now_ms).await;
        (index, claim.maybe_delivered, result)
    }

    async fn keyed_update<'k>(
        &self,
        key: &'k str,
        held: &Held<'_>,
        change: Change,
    ) -> (&'k str, Result<bool, LedgerError>) {
        let update = Update {
            conversation_id: held.conversation_id,
            key,
            token: held.token,
        };
        let result = match change {
            Change::Deliver { possibly_doubled } => {
                self.store
                    .mark_delivered(&update, held.now.as_millisecond(), possibly_doubled)
                    .await
            }
            Change::Release { maybe_delivered } => self.store.release(&update, maybe_delivered).await,
        };
        (key, result)
    }

    /// Runs the update on every held key, concurrently; returns the keys not ours.
    async fn update_all(&self, held: &Held<'_>, change: Change) -> Result<Vec<String>, LedgerError> {
        // A list of futures rather than a mapping closure: such closures trip rustc's proof that
        // the future is Send (rust-lang/rust#110338).
        let updates: Vec<_> = held
            .keys
            .iter()
            .map(|key| self.keyed_update(key, held, change))
            .collect();
        let results: Vec<(&str, Result<bool, LedgerError>)> = stream::iter(updates)
            .buffer_unordered(KEY_CONCURRENCY)
            .collect()
            .await;
        let mut lost = Vec::new();
        let mut failure = None;
        for (key, result) in results {
            match result {
                Ok(true) => {}
                Ok(false) => lost.push(key.to_owned()),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        failure.map_or(Ok(lost), Err)
    }
}

/// What an update does to a held key.
#[derive(Debug, Clone, Copy)]
enum Change {
    Deliver { possibly_doubled: bool },
    Release { maybe_delivered: bool },
}

impl<S: ItemStore> Ledger for KeyLedger<S> {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, LedgerError> {
        let now_ms = request.now.as_millisecond();
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let lease_expires_ms = now_ms.saturating_add(lease_ms);
        let recorded = self.store.read(request.conversation_id).await?;
        let mut answers = Answers::default();
        let mut puts = Vec::new();
        // Keys put or already ours: what a refusal gives back (the others are not ours).
        let mut attempted = Vec::new();
        for (index, metric) in request.keys.iter().enumerate() {
            let found = recorded
                .get(metric.key)
                .map(|record| standing(record, request.token, now_ms));
            match found {
                None | Some(Standing::Free) => {
                    attempted.push(metric.key);
                    let maybe_delivered = recorded.get(metric.key).is_some_and(KeyRecord::maybe_pushed);
                    let new = NewClaim {
                        conversation_id: request.conversation_id,
                        key: metric,
                        first_seen_ms: request.event_time.as_millisecond(),
                        token: request.token,
                        lease_expires_ms,
                        maybe_delivered,
                    };
                    puts.push(self.indexed_put(index, new, now_ms));
                }
                Some(standing) => {
                    if matches!(standing, Standing::Ours(..)) {
                        attempted.push(metric.key);
                    }
                    answers.judge(index, standing, now_ms, lease_expires_ms);
                }
            }
        }
        let results: Vec<(usize, bool, Result<PutClaim, LedgerError>)> = stream::iter(puts)
            .buffer_unordered(KEY_CONCURRENCY)
            .collect()
            .await;
        for (index, read_so, result) in results {
            match result {
                Ok(PutClaim::Written { replaced }) => {
                    answers.won.push((index, lease_expires_ms));
                    if read_so || replaced.as_ref().is_some_and(KeyRecord::maybe_pushed) {
                        answers.taken_over.push(index);
                    }
                }
                Ok(PutClaim::Found(record)) => answers.judge(
                    index,
                    standing(&record, request.token, now_ms),
                    now_ms,
                    lease_expires_ms,
                ),
                // Asked again by the next round, whose read finds the key ours if this write
                // was applied after all.
                Err(error) if error.is_transient() => answers.fail(index, error),
                Err(error) => answers.refuse(error),
            }
        }
        let Some(error) = answers.refused.take() else {
            return Ok(answers.into_claim());
        };
        // Refused for good (a permission, a missing table): no round will do better. Give back
        // every key tried, including those whose write may have been applied unseen.
        let held = Held {
            conversation_id: request.conversation_id,
            keys: &attempted,
            token: request.token,
            now: request.now,
        };
        let release = Change::Release {
            maybe_delivered: false,
        };
        if let Err(release_error) = self.update_all(&held, release).await {
            tracing::warn!(%release_error, "claims of a failed event could not be released; they wait for their lease");
        }
        Err(error)
    }

    async fn confirm(&self, held: Held<'_>, possibly_doubled: bool) -> Result<Vec<String>, LedgerError> {
        self.update_all(&held, Change::Deliver { possibly_doubled }).await
    }

    async fn release(&self, held: Held<'_>, maybe_delivered: bool) -> Result<(), LedgerError> {
        // A key not ours any more needs no giving back.
        self.update_all(&held, Change::Release { maybe_delivered })
            .await
            .map(drop)
    }

    fn terms(&self) -> LedgerTerms {
        LedgerTerms {
            lease: self.lease,
            retention: self.store.retention(),
        }
    }
}

/// What the ledger found for each key of a claim, as it comes in.
#[derive(Default)]
struct Answers {
    /// Keys won, with when their lease ends.
    won: Vec<(usize, i64)>,
    taken_over: Vec<usize>,
    pending: Vec<(usize, Timestamp)>,
    failed: Vec<usize>,
    failure: Option<LedgerError>,
    /// A write refused for good.
    refused: Option<LedgerError>,
}

impl Answers {
    fn judge(&mut self, index: usize, standing: Standing, now_ms: i64, lease_expires_ms: i64) {
        match standing {
            Standing::Delivered => {}
            Standing::Ours(lease, maybe_delivered) => {
                self.won.push((index, lease.unwrap_or(lease_expires_ms)));
                if maybe_delivered {
                    self.taken_over.push(index);
                }
            }
            Standing::Held(lease) => self.pending.push((index, timestamp(lease))),
            // The condition failed, yet the record looks free: a lease ending this very
            // millisecond, or an item that expired meanwhile. Ask again within a second.
            Standing::Free => self
                .pending
                .push((index, timestamp(now_ms.saturating_add(1_000)))),
        }
    }

    fn fail(&mut self, index: usize, error: LedgerError) {
        self.failed.push(index);
        self.failure.get_or_insert(error);
    }

    fn refuse(&mut self, error: LedgerError) {
        self.refused.get_or_insert(error);
    }

    fn into_claim(mut self) -> Claim {
        self.won.sort_unstable();
        self.taken_over.sort_unstable();
        self.pending.sort_unstable();
        self.failed.sort_unstable();
        Claim {
            lease_expires: self.won.iter().map(|(_, lease)| *lease).min().map(timestamp),
            won: self.won.into_iter().map(|(index, _)| index).collect(),
            taken_over: self.taken_over,
            pending: self.pending,
            failed: self.failed,
            failure: self.failure,
        }
    }
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 { Timestamp::MIN } else { Timestamp::MAX })
}
