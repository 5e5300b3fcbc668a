//! DataDog and the sinks that reach it.
//!
//! DataDog answers 202 to a well-formed payload and silently drops the points outside its
//! window (more than an hour old, or more than ten minutes ahead, by its own clock, which is
//! AWS's): a point kept is a key delivered. Two sinks reach it:
//! - [`ModelSink`], a model of the DataDog sink's client (`sink::DataDogSink`): requests,
//!   attempts cut at 10 s or the push's deadline, none started with less than 3 s left,
//!   backoff with jitter, 429's wait, and what it reports as possibly sent twice (`resent`);
//!   DataDog's answers come from the trace's push faults. It is fast, and runs in every trace.
//! - [`http::RealSink`]: the real `DataDogSink`, over HTTP on 127.0.0.1, against a DataDog model
//!   (`wiremock`) whose answers come from the trace.

pub mod http;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow_metrics::count::{Occurrence, Tally};
use flow_metrics::sink::datadog::payload::PointTime;
use flow_metrics::sink::{PushContext, PushFailure, Pushed, Sink, SinkError};
use jiff::Timestamp;
use tokio::time::Instant;

use super::trace::PushFault;
use super::{Dice, Process, Record};

/// No attempt starts with less than this left (`timing::MIN_ATTEMPT`).
const MIN_ATTEMPT: Duration = Duration::from_secs(3);
/// The sink's retries (`sink::datadog::RetryPolicy::default`).
const ATTEMPTS: usize = 5;
const MIN_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether DataDog, at `now`, keeps a point at `second`.
pub fn in_window(second: i64, now: Timestamp) -> bool {
    let now = now.as_second();
    second >= now - 3_600 && second <= now + 600
}

/// DataDog as the world's sinks reach it: keeps what falls in its window.
pub struct DataDog {
    pub record: Arc<Record>,
    /// AWS's clock (DataDog's).
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
}

impl DataDog {
    /// DataDog receives these occurrences, their points timed as a sink whose clock says
    /// `sink_now` times them.
    pub fn receive(&self, occurrences: &[Occurrence<'_>], sink_now: Timestamp, process: usize) {
        let now = (self.clock)();
        for occurrence in occurrences {
            let point = PointTime::of(occurrence.time, sink_now);
            if !matches!(point, PointTime::OnTime(_)) {
                self.record.saw(|seen| seen.retimed_points += 1);
            }
            let pair = (occurrence.conversation_id.to_owned(), occurrence.key.to_owned());
            self.keep(pair, point.second(), now, process);
        }
    }

    /// DataDog keeps a point of `pair` at `second`, if its window allows.
    pub fn keep(&self, pair: (String, String), second: i64, now: Timestamp, process: usize) {
        if in_window(second, now) {
            self.record.kept(pair, process);
        } else {
            self.record.saw(|seen| seen.points_dropped += 1);
        }
    }
}

/// What DataDog answers to one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Accept,
    /// 202 after this long (past the attempt's timeout: the client gave up, nothing kept).
    Slow(Duration),
    /// 202 just before the attempt's timeout.
    Late,
    Kept5xx,
    Refused5xx,
    /// Kept, and no answer before the attempt's timeout.
    KeptLost,
    RateLimited(Duration),
}

/// The answers each request of a push meets, request by request (the last list repeats).
fn answers(fault: PushFault) -> Vec<(Vec<Answer>, bool)> {
    // (answers, whether the last one repeats)
    match fault {
        PushFault::None => vec![(vec![Answer::Accept], false)],
        PushFault::Unavailable => vec![(vec![Answer::Refused5xx], true)],
        PushFault::Recovering => vec![(vec![Answer::Refused5xx, Answer::Accept], false)],
        PushFault::KeptThen5xx => vec![(vec![Answer::Kept5xx, Answer::Accept], false)],
        PushFault::AnswerLost => vec![(vec![Answer::KeptLost, Answer::Accept], false)],
        PushFault::RateLimitedThenLate { wait_s } => vec![(
            vec![
                Answer::RateLimited(Duration::from_secs(u64::from(wait_s))),
                Answer::Late,
            ],
            false,
        )],
        PushFault::Slow { ms } => vec![(vec![Answer::Slow(Duration::from_millis(u64::from(ms)))], false)],
        PushFault::Partial => vec![(vec![Answer::Accept], false), (vec![Answer::Refused5xx], true)],
    }
}

/// A model of the DataDog sink's client, for one process.
pub struct ModelSink {
    pub datadog: Arc<DataDog>,
    pub process: Arc<Process>,
    pub faults: Arc<Mutex<VecDeque<PushFault>>>,
    pub dice: Arc<Dice>,
}

/// How one request went: delivered or not, whether DataDog kept any of it, and whether it may
/// have been sent twice.
#[derive(Default)]
struct Sent {
    error: Option<SinkError>,
    kept: bool,
    resent: bool,
}

impl ModelSink {
    /// One request, with the sink's retries, as `DataDogSink::send` makes them.
    async fn send(
        &self,
        occurrences: &[Occurrence<'_>],
        context: &PushContext,
        script: &mut (VecDeque<Answer>, bool),
    ) -> Sent {
        let mut backoff = MIN_DELAY;
        let mut sent = Sent::default();
        let mut attempt = 1;
        loop {
            let left = context
                .deadline
                .map(|deadline| deadline.saturating_duration_since(Instant::now()));
            if left.is_some_and(|left| left < MIN_ATTEMPT) {
                sent.error = Some(SinkError::Transient("too little time left to push".to_owned()));
                return sent;
            }
            let timeout = left.map_or(REQUEST_TIMEOUT, |left| left.min(REQUEST_TIMEOUT));
            let answer = match script.0.len() {
                0 => Answer::Accept,
                1 if script.1 => script.0[0],
                _ => script.0.pop_front().unwrap_or(Answer::Accept),
            };
            let latency = self.dice.ms(20, 150).min(timeout);
            let mut retry_after = None;
            let failure = match answer {
                Answer::Accept => {
                    tokio::time::sleep(latency).await;
                    self.keep(occurrences, context);
                    None
                }
                Answer::Slow(after) if after < timeout => {
                    tokio::time::sleep(after).await;
                    self.keep(occurrences, context);
                    None
                }
                Answer::Slow(_) => {
                    tokio::time::sleep(timeout).await;
                    sent.resent = true;
                    Some("timed out waiting for DataDog's answer")
                }
                Answer::Late => {
                    tokio::time::sleep(timeout.saturating_sub(Duration::from_millis(50))).await;
                    self.keep(occurrences, context);
                    if context.deadline.is_some_and(|deadline| {
                        deadline.saturating_duration_since(Instant::now()) < Duration::from_secs(1)
                    }) {
                        self.datadog.record.saw(|seen| seen.edge_accepts += 1);
                    }
                    None
                }
                Answer::Kept5xx => {
                    tokio::time::sleep(latency).await;
                    self.keep(occurrences, context);
                    sent.kept = true;
                    sent.resent = true;
                    Some("DataDog answered 503")
                }
                Answer::Refused5xx => {
                    tokio::time::sleep(latency).await;
                    sent.resent = true;
                    Some("DataDog answered 503")
                }
                Answer::KeptLost => {
                    self.keep(occurrences, context);
                    sent.kept = true;
                    tokio::time::sleep(timeout).await;
                    sent.resent = true;
                    Some("timed out waiting for DataDog's answer")
                }
                Answer::RateLimited(wait) => {
                    tokio::time::sleep(latency).await;
                    retry_after = Some(wait);
                    Some("DataDog answered 429")
                }
            };
            let Some(failure) = failure else {
                sent.kept = true;
                return sent;
            };
            sent.error = Some(SinkError::Transient(failure.to_owned()));
            if attempt >= ATTEMPTS {
                return sent;
            }
            let wait = retry_after.unwrap_or_else(|| flow_metrics::timing::jittered(backoff));
            if context
                .deadline
                .is_some_and(|deadline| Instant::now() + wait + MIN_ATTEMPT > deadline)
            {
                return sent;
            }
            sent.error = None;
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_DELAY);
            attempt += 1;
        }
    }

    fn keep(&self, occurrences: &[Occurrence<'_>], context: &PushContext) {
        self.datadog.receive(occurrences, context.now, self.process.id);
    }
}

impl Sink for ModelSink {
    async fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        context: &PushContext,
    ) -> Result<Pushed, PushFailure> {
        if occurrences.is_empty() {
            return Ok(Pushed::default());
        }
        self.process.step().await;
        let record = &self.datadog.record;
        record.push_starts(self.process.id);
        let fault = self
            .faults
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(PushFault::None);
        let scripts = answers(fault);
        // The push's requests: the whole push, or its halves.
        let whole = 0..occurrences.len();
        let halves = if scripts.len() > 1 && occurrences.len() > 1 {
            let half = occurrences.len() / 2;
            vec![0..half, half..occurrences.len()]
        } else {
            vec![whole]
        };
        let mut undelivered = Vec::new();
        let mut resent = Vec::new();
        let mut kept_any = false;
        for (number, range) in halves.into_iter().enumerate() {
            let (answers, repeats) = scripts[number.min(scripts.len() - 1)].clone();
            let mut script = (VecDeque::from(answers), repeats);
            let sent = self.send(&occurrences[range.clone()], context, &mut script).await;
            kept_any |= sent.kept;
            if sent.resent {
                resent.extend(range.clone());
            }
            if let Some(error) = sent.error {
                undelivered.extend(range.map(|index| (index, error.clone())));
            }
        }
        if !resent.is_empty() {
            record.saw(|seen| seen.resent_pushes += 1);
        }
        if kept_any {
            // The process may die after DataDog accepted the push and before it is confirmed.
            self.process.step().await;
        }
        record.push_returns(self.process.id);
        if undelivered.is_empty() {
            Ok(Pushed { resent })
        } else {
            Err(PushFailure { undelivered, resent })
        }
    }

    fn record(&self, _tally: &Tally, _now: Timestamp) {}

    async fn flush(&self, _context: &PushContext) {}
}
