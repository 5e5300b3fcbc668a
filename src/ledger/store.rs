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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub delivered: bool,
    /// The holder that claimed (and, once delivered, confirmed) it; none once released.
    pub token: Option<String>,
    /// When a claim's lease ends (epoch ms); 0 once released; none once delivered.
    pub lease_expires_ms: Option<i64>,
}

/// A claim to write.
#[derive(Debug, Clone, Copy)]
pub struct NewClaim<'a> {
    pub conversation_id: &'a str,
    pub key: &'a MetricKey<'a>,
    pub first_seen_ms: i64,
    pub token: &'a ClaimToken,
    pub lease_expires_ms: i64,
}

/// Per-item conditional operations: what DynamoDB offers, and a map can mimic.
pub trait ItemStore: Send + Sync {
    /// The conversation's recorded keys. May be eventually consistent: it can miss recent writes.
    fn read(
        &self,
        conversation_id: &str,
    ) -> impl Future<Output = Result<HashMap<String, KeyRecord>, LedgerError>> + Send;

    /// Writes the claim unless the key is delivered or claimed with a lease not expired at
    /// `now_ms`. Returns `None` if written, else the record found.
    fn put_claim(
        &self,
        claim: &NewClaim<'_>,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<KeyRecord>, LedgerError>> + Send;

    /// Marks the key delivered if its token is `token` (claimed, or already delivered by the
    /// same holder). `false` if another holder has it.
    fn mark_delivered(
        &self,
        conversation_id: &str,
        key: &str,
        token: &ClaimToken,
        now_ms: i64,
    ) -> impl Future<Output = Result<bool, LedgerError>> + Send;

    /// Ends the claim of `token` on the key, if it still holds it. `false` if it did not.
    fn release(
        &self,
        conversation_id: &str,
        key: &str,
        token: &ClaimToken,
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
    /// Claimed by this holder, lease ending then.
    Ours(Option<i64>),
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
        return Standing::Ours(record.lease_expires_ms);
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
    ) -> (usize, Result<Option<KeyRecord>, LedgerError>) {
        (index, self.store.put_claim(&claim, now_ms).await)
    }

    async fn keyed_update<'k>(
        &self,
        key: &'k str,
        held: &Held<'_>,
        deliver: bool,
    ) -> (&'k str, Result<bool, LedgerError>) {
        let result = if deliver {
            self.store
                .mark_delivered(held.conversation_id, key, held.token, held.now.as_millisecond())
                .await
        } else {
            self.store.release(held.conversation_id, key, held.token).await
        };
        (key, result)
    }

    /// Runs the update on every held key, concurrently; returns the keys not ours.
    async fn update_all(&self, held: &Held<'_>, deliver: bool) -> Result<Vec<String>, LedgerError> {
        // A list of futures rather than a mapping closure: such closures trip rustc's proof that
        // the future is Send (rust-lang/rust#110338).
        let updates: Vec<_> = held
            .keys
            .iter()
            .map(|key| self.keyed_update(key, held, deliver))
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

impl<S: ItemStore> Ledger for KeyLedger<S> {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, LedgerError> {
        let now_ms = request.now.as_millisecond();
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let lease_expires_ms = now_ms.saturating_add(lease_ms);
        let recorded = self.store.read(request.conversation_id).await?;
        let mut answers = Answers::default();
        let mut puts = Vec::new();
        let mut attempted = Vec::new();
        for (index, metric) in request.keys.iter().enumerate() {
            let found = recorded
                .get(metric.key)
                .map(|record| standing(record, request.token, now_ms));
            match found {
                None | Some(Standing::Free) => {
                    attempted.push(metric.key);
                    let new = NewClaim {
                        conversation_id: request.conversation_id,
                        key: metric,
                        first_seen_ms: request.event_time.as_millisecond(),
                        token: request.token,
                        lease_expires_ms,
                    };
                    puts.push(self.indexed_put(index, new, now_ms));
                }
                Some(standing) => {
                    if matches!(standing, Standing::Ours(_)) {
                        attempted.push(metric.key);
                    }
                    answers.judge(index, standing, now_ms, lease_expires_ms);
                }
            }
        }
        let results: Vec<(usize, Result<Option<KeyRecord>, LedgerError>)> = stream::iter(puts)
            .buffer_unordered(KEY_CONCURRENCY)
            .collect()
            .await;
        let mut failure = None;
        for (index, result) in results {
            match result {
                Ok(None) => answers.won.push((index, lease_expires_ms)),
                Ok(Some(record)) => answers.judge(
                    index,
                    standing(&record, request.token, now_ms),
                    now_ms,
                    lease_expires_ms,
                ),
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        let Some(error) = failure else {
            return Ok(answers.into_claim());
        };
        // The event will be retried: give back every key tried, including those whose write
        // may have been applied unseen. Only our own claims are touched.
        let held = Held {
            conversation_id: request.conversation_id,
            keys: &attempted,
            token: request.token,
            now: request.now,
        };
        if let Err(release_error) = self.update_all(&held, false).await {
            tracing::warn!(%release_error, "claims of a failed event could not be released; they wait for their lease");
        }
        Err(error)
    }

    async fn confirm(&self, held: Held<'_>) -> Result<Vec<String>, LedgerError> {
        self.update_all(&held, true).await
    }

    async fn release(&self, held: Held<'_>) -> Result<(), LedgerError> {
        // A key not ours any more needs no giving back.
        self.update_all(&held, false).await.map(drop)
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
    pending: Vec<(usize, Timestamp)>,
}

impl Answers {
    fn judge(&mut self, index: usize, standing: Standing, now_ms: i64, lease_expires_ms: i64) {
        match standing {
            Standing::Delivered => {}
            Standing::Ours(lease) => self.won.push((index, lease.unwrap_or(lease_expires_ms))),
            Standing::Held(lease) => self.pending.push((index, timestamp(lease))),
            // The condition failed, yet the record looks free: a lease ending this very
            // millisecond, or an item that expired meanwhile. Ask again within a second.
            Standing::Free => self
                .pending
                .push((index, timestamp(now_ms.saturating_add(1_000)))),
        }
    }

    fn into_claim(mut self) -> Claim {
        self.won.sort_unstable();
        self.pending.sort_unstable();
        Claim {
            lease_expires: self.won.iter().map(|(_, lease)| *lease).min().map(timestamp),
            won: self.won.into_iter().map(|(index, _)| index).collect(),
            pending: self.pending,
        }
    }
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 { Timestamp::MIN } else { Timestamp::MAX })
}
