//! A warm function's memory of the keys it has itself seen delivered, so that an event whose
//! fresh keys are all known delivered costs no ledger call at all.
//!
//! Every event repeats all its conversation's attributes, so most events carry only keys
//! counted earlier. Remembering the keys this process confirmed lets it skip the Query for such
//! events. The cache can only say "delivered", and delivered is final (an item outlives every key
//! that can still count), so it never causes a key to be counted twice, nor skipped when it
//! should count. It is bounded (least recently used keys are forgotten) and lost with the
//! process, which only costs a Query.

use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use lru::LruCache;

use super::{Claim, ClaimRequest, Held, Ledger, LedgerError, LedgerTerms};
use crate::key::MetricKey;

/// Keys remembered by default: a few megabytes.
pub const DEFAULT_CAPACITY: NonZeroUsize = NonZeroUsize::new(50_000).expect("not zero");

/// Wraps a ledger with the memory of keys confirmed through it.
#[derive(Debug)]
pub struct DeliveredCache<L> {
    inner: L,
    delivered: Mutex<LruCache<String, ()>>,
}

/// One string per (conversation, key): conversation ids never hold control characters, so
/// the NUL separator cannot be ambiguous.
fn entry(conversation_id: &str, key: &str) -> String {
    let mut entry = String::with_capacity(conversation_id.len() + 1 + key.len());
    entry.push_str(conversation_id);
    entry.push('\0');
    entry.push_str(key);
    entry
}

impl<L: Ledger> DeliveredCache<L> {
    pub fn new(inner: L, capacity: NonZeroUsize) -> Self {
        DeliveredCache {
            inner,
            delivered: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// Indexes of the request's keys not known to be delivered.
    fn unknown(&self, request: &ClaimRequest<'_>) -> Vec<usize> {
        let mut delivered = self.delivered.lock().unwrap_or_else(PoisonError::into_inner);
        request
            .keys
            .iter()
            .enumerate()
            .filter(|(_, metric)| {
                delivered
                    .get(&entry(request.conversation_id, metric.key))
                    .is_none()
            })
            .map(|(index, _)| index)
            .collect()
    }
}

impl<L: Ledger> Ledger for DeliveredCache<L> {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, LedgerError> {
        let unknown = self.unknown(&request);
        if unknown.len() == request.keys.len() {
            return self.inner.claim(request).await;
        }
        if unknown.is_empty() {
            return Ok(Claim::default());
        }
        let keys: Vec<MetricKey<'_>> = unknown
            .iter()
            .filter_map(|&index| request.keys.get(index).copied())
            .collect();
        let claim = self
            .inner
            .claim(ClaimRequest {
                keys: &keys,
                ..request
            })
            .await?;
        let original = |index: usize| unknown.get(index).copied();
        let originals = |indexes: &[usize]| indexes.iter().filter_map(|&index| original(index)).collect();
        Ok(Claim {
            won: originals(&claim.won),
            taken_over: originals(&claim.taken_over),
            pending: claim
                .pending
                .iter()
                .filter_map(|&(index, lease)| Some((original(index)?, lease)))
                .collect(),
            failed: originals(&claim.failed),
            failure: claim.failure,
            lease_expires: claim.lease_expires,
        })
    }

    async fn confirm(&self, held: Held<'_>, possibly_doubled: bool) -> Result<Vec<String>, LedgerError> {
        let lost = self.inner.confirm(held, possibly_doubled).await?;
        let mut delivered = self.delivered.lock().unwrap_or_else(PoisonError::into_inner);
        for key in held
            .keys
            .iter()
            .filter(|key| !lost.iter().any(|lost| lost == *key))
        {
            delivered.put(entry(held.conversation_id, key), ());
        }
        Ok(lost)
    }

    async fn release(&self, held: Held<'_>, maybe_delivered: bool) -> Result<(), LedgerError> {
        self.inner.release(held, maybe_delivered).await
    }

    fn terms(&self) -> LedgerTerms {
        self.inner.terms()
    }
}
