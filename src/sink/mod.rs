//! Sinks: where counted occurrences go once the ledger has granted them.
//!
//! A push delivers the batch's occurrences. If some are not delivered, it says which, and why:
//! the pipeline confirms the others and releases the claims of these, whose events alone fail
//! and are retried. So nothing is lost. What may have been sent twice, it says too: occurrences
//! sent again after an attempt whose answer never came, or was a server error, which the
//! destination may have taken all the same.

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

/// What a push that delivered everything says beyond that.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Indexes into the push's occurrences sent again after an attempt whose answer was lost or
    /// a server error: the destination may have taken them twice.
    pub resent: Vec<usize>,
}

/// A push that did not deliver everything: which occurrences were not delivered, and why.
/// The pipeline confirms every other occurrence, and fails only the events of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({} occurrence(s) not delivered)", self.first_error(), self.undelivered.len())]
pub struct PushFailure {
    /// Indexes into the push's occurrences, in order, each with why it was not delivered.
    pub undelivered: Vec<(usize, SinkError)>,
    /// Indexes of occurrences sent in an attempt whose answer was lost or a server error, and
    /// then sent again (delivered) or given up (undelivered, yet the destination may have them).
    pub resent: Vec<usize>,
}

impl PushFailure {
    /// None of `count` occurrences was delivered.
    pub fn nothing_delivered(count: usize, error: SinkError) -> Self {
        PushFailure::after(0, count, error)
    }

    /// The first `delivered` of `count` occurrences were delivered, the rest not.
    pub fn after(delivered: usize, count: usize, error: SinkError) -> Self {
        PushFailure {
            undelivered: (delivered..count).map(|index| (index, error.clone())).collect(),
            resent: Vec::new(),
        }
    }

    /// Why the first undelivered occurrence was not delivered.
    pub fn first_error(&self) -> SinkError {
        self.undelivered.first().map_or_else(
            || SinkError::Transient("nothing was refused".to_owned()),
            |(_, error)| error.clone(),
        )
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
    /// Delivers the batch's occurrences (possibly none), in order, saying which it may have
    /// delivered twice.
    fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        context: &PushContext,
    ) -> impl Future<Output = Result<Pushed, PushFailure>> + Send;

    /// Takes the counts of a settled batch (every event's fate known), which the sink may
    /// report with a later push.
    fn record(&self, tally: &Tally, now: Timestamp);

    /// Sends what the sink holds back, in one best-effort attempt: at the end of a replay.
    fn flush(&self, context: &PushContext) -> impl Future<Output = ()> + Send;
}
