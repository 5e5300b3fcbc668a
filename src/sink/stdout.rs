//! The stdout sink: one JSON object per counted occurrence, one per line.
//!
//! `{"conversation_id","flow","metric","key","time"}`, with `time` in UTC RFC 3339. Generic over
//! the writer so tests can read what a replay prints.

use std::io::Write;
use std::sync::{Mutex, PoisonError};

use super::{Sink, SinkError};
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

    fn write_batch(&self, occurrences: &[Occurrence<'_>]) -> std::io::Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        for occurrence in occurrences {
            serde_json::to_writer(&mut *writer, occurrence)?;
            writer.write_all(b"\n")?;
        }
        writer.flush()
    }
}

impl<W: Write + Send> Sink for JsonLinesSink<W> {
    async fn push(&self, occurrences: &[Occurrence<'_>], _tally: &Tally) -> Result<(), SinkError> {
        if occurrences.is_empty() {
            return Ok(());
        }
        self.write_batch(occurrences)
            .map_err(|error| SinkError::Permanent(format!("cannot write occurrences: {error}")))
    }
}
