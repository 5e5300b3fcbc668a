//! The stdout sink: one JSON object per counted occurrence, one per line.
//!
//! `{"conversation_id","flow","metric","key","time"}`, with `time` in UTC RFC 3339. Generic over
//! the writer so tests can read what a replay prints.

use std::io::Write;
use std::sync::{Mutex, PoisonError};

use super::{PushContext, PushFailure, Pushed, Sink, SinkError};
use crate::count::{Occurrence, Tally};

/// Writes occurrences as JSON Lines.
#[derive(Debug)]
pub struct JsonLinesSink<W> {
    writer: Mutex<W>,
}

impl JsonLinesSink<std::io::Stdout> {
    pub fn stdout() -> Self {
        JsonLinesSink::new(std::io::stdout())
    }
}

impl<W: Write + Send> JsonLinesSink<W> {
    pub fn new(writer: W) -> Self {
        JsonLinesSink {
            writer: Mutex::new(writer),
        }
    }

    pub fn into_inner(self) -> W {
        self.writer.into_inner().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes one line per occurrence; on failure, says how many lines were written whole.
    fn write_batch(&self, occurrences: &[Occurrence<'_>]) -> Result<(), PushFailure> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut line = Vec::with_capacity(256);
        for (written, occurrence) in occurrences.iter().enumerate() {
            line.clear();
            serde_json::to_writer(&mut line, occurrence)
                .map_err(std::io::Error::from)
                .and_then(|()| {
                    line.push(b'\n');
                    writer.write_all(&line)
                })
                .map_err(|error| {
                    let error = SinkError::Permanent(format!("cannot write occurrences: {error}"));
                    PushFailure::after(written, occurrences.len(), error)
                })?;
        }
        // Every line was handed to the writer whole; a failed flush shows in the next write,
        // whose lines then count as undelivered.
        if let Err(error) = writer.flush() {
            tracing::warn!(%error, "cannot flush the occurrences written");
        }
        Ok(())
    }
}

impl<W: Write + Send> Sink for JsonLinesSink<W> {
    async fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        _context: &PushContext,
    ) -> Result<Pushed, PushFailure> {
        if occurrences.is_empty() {
            return Ok(Pushed::default());
        }
        self.write_batch(occurrences).map(|()| Pushed::default())
    }

    /// The replay prints its own summary.
    fn record(&self, _tally: &Tally, _now: jiff::Timestamp) {}

    /// Every line is flushed as it is pushed.
    async fn flush(&self, _context: &PushContext) {}
}
