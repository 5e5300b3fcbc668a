//! The ledger: the per-key record of which metric occurrences have been counted.
//!
//! Each (conversation id, attribute key) is recorded on its own. Counting is a three-step
//! protocol so that a key is neither lost nor counted twice when a push fails or a process dies:
//! **claim** the keys nobody has recorded (the winner alone pushes them), then **confirm** them as
//! delivered once the sink has accepted them, or **release** them if it has not. A claim carries a
//! lease: if its holder dies before confirming, the key can be claimed again after the lease.
//! A key held by another holder's live claim is *pending*: its event is not done until that
//! holder confirms it, or its lease ends and the key can be claimed again.
//!
//! [`KeyLedger`] runs the protocol over any [`ItemStore`] of per-key conditional writes: DynamoDB
//! in production, a map in memory for replays and tests.

pub mod cache;
pub mod dynamodb;
pub mod memory;
pub mod store;

use std::future::Future;

use jiff::{SignedDuration, Timestamp};

use crate::key::MetricKey;

pub use cache::DeliveredCache;
pub use dynamodb::DynamoDbLedger;
pub use memory::MemoryLedger;
pub use store::{ItemStore, KeyLedger};

/// What one event asks of the ledger: claim these keys of this conversation for this holder.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    pub conversation_id: &'a str,
    /// The event's own time, kept as the key's first-seen time.
    pub event_time: Timestamp,
    /// Valid, non-stale keys of the conversation, each once.
    pub keys: &'a [MetricKey<'a>],
    /// The holder: one per invocation, so that its own earlier writes are recognised as its own.
    pub token: &'a ClaimToken,
    /// The wall clock, for leases.
    pub now: Timestamp,
}

/// What the ledger answered for each key of a request. Keys in none of the lists are delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    /// Indexes into the request's `keys` that the holder now has claimed, in order.
    pub won: Vec<usize>,
    /// Of `won`, the keys taken from a claim whose push may have reached the sink: abandoned by
    /// a holder that stopped between claim and confirm, or given back after a push whose answer
    /// never came. Pushing them again may count them twice.
    pub taken_over: Vec<usize>,
    /// Indexes of keys another holder's live claim keeps, with when that lease ends.
    pub pending: Vec<(usize, Timestamp)>,
    /// Indexes of keys whose claim could not be written (after the store's own retries): ask
    /// again. The keys won stay won.
    pub failed: Vec<usize>,
    /// Why the first of `failed` failed.
    pub failure: Option<LedgerError>,
    /// When the earliest lease of the won keys ends.
    pub lease_expires: Option<Timestamp>,
}

/// Identifies the holder of a claim, so that only the holder can confirm or release it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimToken(pub String);

impl ClaimToken {
    /// A fresh random token (128 bits): unique across concurrent invocations.
    pub fn random() -> Self {
        ClaimToken(format!("{:032x}", fastrand::u128(..)))
    }
}

/// The keys of one claim to confirm or release.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    pub conversation_id: &'a str,
    pub keys: &'a [&'a str],
    pub token: &'a ClaimToken,
    pub now: Timestamp,
}

/// How long the ledger's records last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerTerms {
    /// How long a claim holds before another holder may take the key.
    pub lease: SignedDuration,
    /// How long a record is kept after its key's time; `None` if never forgotten.
    pub retention: Option<SignedDuration>,
}

/// Why the ledger could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// Throttling, a timeout, a 5xx: retrying the event later can succeed.
    #[error("the ledger is unavailable ({operation}): {message}")]
    Transient {
        operation: &'static str,
        message: String,
    },
    /// Misconfiguration or a bug (missing table, invalid request): retrying will not help.
    #[error("the ledger refused {operation}: {message}")]
    Permanent {
        operation: &'static str,
        message: String,
    },
}

impl LedgerError {
    pub fn is_transient(&self) -> bool {
        matches!(self, LedgerError::Transient { .. })
    }
}

/// The per-key store. Implementations must make `claim` atomic per key: of any number of
/// concurrent holders, exactly one wins a key that is unrecorded or whose lease has expired.
pub trait Ledger: Send + Sync {
    /// Claims every key of the request that is neither delivered nor held by another live
    /// claim. A key the same holder claimed before (even by a write whose answer was lost) is
    /// won. Keys are claimed one by one: one whose write fails is `failed`, and the others stay
    /// won. It fails only if the conversation cannot be read, or a write is refused for good
    /// (every key it tried is then given back).
    fn claim(&self, request: ClaimRequest<'_>) -> impl Future<Output = Result<Claim, LedgerError>> + Send;

    /// Marks held keys as delivered; idempotent for the same holder. Returns the keys whose
    /// claim was no longer ours (the lease expired and another holder re-claimed them): they
    /// may have been pushed twice. With `possibly_doubled`, the records say so (the audit
    /// counts them).
    fn confirm(
        &self,
        held: Held<'_>,
        possibly_doubled: bool,
    ) -> impl Future<Output = Result<Vec<String>, LedgerError>> + Send;

    /// Gives held keys back after a failed push, so that the retried event claims them again.
    /// With `maybe_delivered` (a push's answer never came), the records say the sink may hold
    /// them, so that whoever pushes them again knows it may count them twice.
    fn release(
        &self,
        held: Held<'_>,
        maybe_delivered: bool,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// The lease and retention the ledger works with.
    fn terms(&self) -> LedgerTerms;
}

/// A ledger shared by several pipelines, as concurrent invocations share one table.
impl<L: Ledger> Ledger for std::sync::Arc<L> {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, LedgerError> {
        L::claim(self, request).await
    }

    async fn confirm(&self, held: Held<'_>, possibly_doubled: bool) -> Result<Vec<String>, LedgerError> {
        L::confirm(self, held, possibly_doubled).await
    }

    async fn release(&self, held: Held<'_>, maybe_delivered: bool) -> Result<(), LedgerError> {
        L::release(self, held, maybe_delivered).await
    }

    fn terms(&self) -> LedgerTerms {
        L::terms(self)
    }
}
