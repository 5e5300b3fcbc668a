//! Sinks: where counted occurrences go once the ledger has granted them.
//!
//! A push either succeeds for the whole batch or fails; on failure the pipeline releases the
//! batch's claims and reports its events as failed, so they are retried and nothing is lost.

pub mod stdout;

use std::future::Future;

use crate::count::{Occurrence, Tally};

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

/// A destination for counted occurrences.
pub trait Sink: Send + Sync {
    /// Delivers the batch's occurrences (possibly none) with the batch's tally, which a sink may
    /// report as self-metrics.
    fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        tally: &Tally,
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
}
