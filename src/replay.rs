//! Replays event files through the pipeline: the job behind `flow-metrics replay`.
//!
//! Each source is read on a blocking thread and cut into events ([`crate::input`]); events
//! reach the pipeline in batches over a bounded channel, so a file of any size streams in
//! constant memory. What the sink prints is the output; this module writes the diagnostics
//! (one line per rejected event and per invalid key, with file and line) to a report writer.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::num::NonZeroUsize;
use std::ops::ControlFlow;

use jiff::Timestamp;
use tokio::sync::mpsc;

use crate::attribute::{InvalidKey, excerpt};
use crate::count::Tally;
use crate::input::{self, FramingError, RawEvent};
use crate::ledger::Ledger;
use crate::pipeline::{DeliveryError, EventOutcome, Pipeline};
use crate::sink::{PushContext, Sink};

/// Events per pipeline batch by default: one sink push per batch.
pub const DEFAULT_BATCH_SIZE: NonZeroUsize = NonZeroUsize::new(256).expect("256 is not zero");

/// Somewhere events are read from.
pub struct Source {
    /// How diagnostics name it: a path, `-` for stdin.
    pub name: String,
    pub reader: Box<dyn BufRead + Send>,
}

/// Why a replay stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{source_name}:{line}: could not count the event's keys: {error}")]
    Delivery {
        source_name: String,
        line: u64,
        error: DeliveryError,
    },
    #[error("{source_name}: {error}")]
    Read {
        source_name: String,
        error: std::io::Error,
    },
    #[error("cannot write the report: {0}")]
    Report(#[from] std::io::Error),
    #[error(
        "{keys} key(s) were delivered but could not be confirmed in the ledger, even after \
         waiting {waited}: they stay claimed, and once their lease ends another process may push \
         them again (it logs them as possibly doubled); `flow-metrics audit` shows them as stuck"
    )]
    Unconfirmed { keys: usize, waited: String },
}

/// How long a replay waits, at its end, for the ledger to take the confirms it could not: a
/// brownout of DynamoDB's usually lasts seconds to a few minutes.
pub const UNCONFIRMED_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

enum Framed {
    Event(RawEvent),
    End(Result<(), FramingError>),
}

/// How a replay went.
#[derive(Debug)]
pub struct Replayed {
    pub tally: Tally,
    /// Why it stopped early, if it did.
    pub stopped: Option<ReplayError>,
}

/// Replays `sources` in order. Stops at the first event whose keys could not be delivered (the
/// ledger has released them, so a rerun counts them) or source that cannot be read.
pub async fn replay<L: Ledger, S: Sink>(
    pipeline: &Pipeline<L, S>,
    sources: Vec<Source>,
    batch_size: NonZeroUsize,
    report: &mut (dyn Write + Send),
) -> Replayed {
    let mut run = Run {
        report,
        tally: Tally::default(),
        reported_invalid: HashSet::new(),
    };
    let mut stopped = None;
    for source in sources {
        if let Err(error) = run.replay_source(pipeline, source, batch_size.get()).await {
            stopped = Some(error);
            break;
        }
    }
    // Keys delivered whose confirm failed are confirmed before the process ends: once the
    // ledger is back, nothing about them is uncertain.
    if pipeline.unconfirmed_keys() > 0 {
        let until = tokio::time::Instant::now() + UNCONFIRMED_WAIT;
        let keys = pipeline.confirm_kept_until(until).await;
        if keys > 0 && stopped.is_none() {
            stopped = Some(ReplayError::Unconfirmed {
                keys,
                waited: format!(
                    "{:#}",
                    jiff::SignedDuration::try_from(UNCONFIRMED_WAIT).unwrap_or_default()
                ),
            });
        }
    }
    // What the sink held back (self-metrics) would die with the process.
    let context = PushContext {
        now: Timestamp::now(),
        deadline: None,
    };
    pipeline.sink().flush(&context).await;
    Replayed {
        tally: run.tally,
        stopped,
    }
}

struct Run<'w> {
    report: &'w mut (dyn Write + Send),
    tally: Tally,
    /// (conversation, key) pairs already reported invalid: every event repeats them.
    reported_invalid: HashSet<(String, String)>,
}

impl Run<'_> {
    async fn replay_source<L: Ledger, S: Sink>(
        &mut self,
        pipeline: &Pipeline<L, S>,
        source: Source,
        batch_size: usize,
    ) -> Result<(), ReplayError> {
        let (sender, mut receiver) = mpsc::channel(batch_size * 2);
        let reader = source.reader;
        tokio::task::spawn_blocking(move || {
            let end = input::read_events(reader, |event| match sender.blocking_send(Framed::Event(event)) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            });
            // The receiver is gone only if the replay already stopped: nothing to tell it.
            let _ = sender.blocking_send(Framed::End(end));
        });

        let mut batch = Vec::with_capacity(batch_size);
        loop {
            let end = match receiver.recv().await {
                Some(Framed::Event(event)) => {
                    batch.push(event);
                    if batch.len() < batch_size {
                        continue;
                    }
                    None
                }
                Some(Framed::End(end)) => Some(end),
                None => Some(Err(FramingError::Io(std::io::Error::other(
                    "the reader stopped unexpectedly",
                )))),
            };
            self.process(pipeline, &source.name, &mut batch).await?;
            match end {
                None => {}
                Some(Ok(())) => return Ok(()),
                Some(Err(FramingError::Io(error))) => {
                    return Err(ReplayError::Read {
                        source_name: source.name,
                        error,
                    });
                }
                Some(Err(broken @ FramingError::Syntax { line, .. })) => {
                    self.tally.events_rejected += 1;
                    writeln!(self.report, "{}:{line}: rejected: {broken}", source.name)?;
                    return Ok(());
                }
            }
        }
    }

    async fn process<L: Ledger, S: Sink>(
        &mut self,
        pipeline: &Pipeline<L, S>,
        source_name: &str,
        batch: &mut Vec<RawEvent>,
    ) -> Result<(), ReplayError> {
        if batch.is_empty() {
            return Ok(());
        }
        let texts: Vec<&str> = batch.iter().map(|event| event.json.as_str()).collect();
        let result = pipeline.process_batch(&texts, Timestamp::now()).await;
        self.tally += result.tally;
        let mut first_failure = None;
        for (event, outcome) in batch.iter().zip(result.outcomes) {
            let line = event.line;
            match outcome {
                EventOutcome::Ignored { .. } => {}
                EventOutcome::Rejected(error) => {
                    writeln!(self.report, "{source_name}:{line}: rejected: {error}")?;
                }
                EventOutcome::Processed(report) => {
                    for (key, reason) in report.invalid {
                        self.report_invalid(source_name, line, &report.conversation_id, key, &reason)?;
                    }
                    for (key, time) in report.stale {
                        tracing::info!(conversation_id = report.conversation_id, key, %time, "stale key not counted");
                    }
                }
                EventOutcome::Failed { error, .. } => {
                    first_failure.get_or_insert(ReplayError::Delivery {
                        source_name: source_name.to_owned(),
                        line,
                        error,
                    });
                }
            }
        }
        batch.clear();
        first_failure.map_or(Ok(()), Err)
    }

    fn report_invalid(
        &mut self,
        source_name: &str,
        line: u64,
        conversation_id: &str,
        key: String,
        reason: &InvalidKey,
    ) -> Result<(), ReplayError> {
        let pair = (conversation_id.to_owned(), key);
        if !self.reported_invalid.contains(&pair) {
            writeln!(
                self.report,
                "{source_name}:{line}: invalid metric key {:?} in conversation {conversation_id}: {reason}",
                excerpt(&pair.1)
            )?;
            self.reported_invalid.insert(pair);
        }
        Ok(())
    }
}
