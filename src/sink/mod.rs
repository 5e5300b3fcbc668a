//! Sinks: where counted occurrences go once the ledger has granted them.
//!
//! A push delivers the batch's occurrences in order. If it fails part-way, it says how many of
//! the first occurrences were accepted: the pipeline confirms those and releases the claims of
//! the rest, whose events fail and are retried. So nothing is lost and nothing is sent twice.

pub mod datadog;
pub mod stdout;

use std::future::Future;

use jiff::Timestamp;
use tokio::time::Instant;

use crate::count::{Occurrence, Tally};

pub use datadog::DataDogSink;
pub use stdout::JsonLinesSink;

/// Why a push failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The destination may accept the same push later (timeouts, 429, 5xx).
    #[error("the sink is unavailable: {0}")]
    Transient(String),
    /// The destination refused the push (bad key, bad payload, closed output).
    #[error("the sink refused the push: {0}")]
    Permanent(String),
}

impl SinkError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient(_))
    }
}

/// A push that did not deliver everything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error} ({delivered} occurrences were delivered first)")]
pub struct PushFailure {
    pub error: SinkError,
    /// How many of the first occurrences were accepted before the failure.
    pub delivered: usize,
}

impl PushFailure {
    /// A failure before anything was delivered.
    pub fn nothing_delivered(error: SinkError) -> Self {
        PushFailure { error, delivered: 0 }
    }
}

/// When a push happens.
#[derive(Debug, Clone, Copy)]
pub struct PushContext {
    /// The wall clock.
    pub now: Timestamp,
    /// When the push must be over: before the invocation's end (less the time to confirm) and
    /// before the lease of the claims it carries. No attempt may outlast it.
    pub deadline: Option<Instant>,
}

/// A destination for counted occurrences.
pub trait Sink: Send + Sync {
    /// Delivers the batch's occurrences (possibly none), in order.
    fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        context: &PushContext,
    ) -> impl Future<Output = Result<(), PushFailure>> + Send;

    /// Takes the counts of a settled batch (every event's fate known), which the sink may
    /// report with a later push.
    fn record(&self, tally: &Tally, now: Timestamp);

    /// Sends what the sink holds back, in one best-effort attempt: at the end of a replay.
    fn flush(&self, context: &PushContext) -> impl Future<Output = ()> + Send;
}
