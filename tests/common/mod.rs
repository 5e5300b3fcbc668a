//! Helpers shared by the integration tests: event builders and test doubles for the adapters.
#![allow(dead_code)] // each test binary uses its own subset

pub mod cbor_proxy;
pub mod datadog_api;
pub mod deployment;
pub mod emulator;
pub mod fault_proxy;
pub mod genesys;
pub mod genesys_analytics;
pub mod intake;
pub mod lambda_runtime;
pub mod local_server;
pub mod logs;
pub mod public_sample;
pub mod secrets;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use flow_metrics::count::{Occurrence, Tally};
use flow_metrics::ledger::{Claim, ClaimRequest, Held, Ledger, LedgerError, LedgerTerms};
use flow_metrics::sink::{PushContext, PushFailure, Pushed, Sink, SinkError};
use serde_json::json;

/// A request header's value, if present and text: what the local fake servers read.
pub fn request_header(request: &wiremock::Request, name: &str) -> Option<String> {
    request
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The samples and traces are from March 2026. Records kept this long after their keys make
/// such old events safe to count today (see `count::oldest_safe_event_age`).
pub const ARCHIVE_RETENTION: jiff::SignedDuration = jiff::SignedDuration::from_hours(3650 * 24);

/// The bundled sample events, one JSON text each.
pub fn sample_lines() -> Vec<String> {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/genesys-events.jsonl"
    ))
    .expect("samples")
    .lines()
    .map(str::to_owned)
    .collect()
}

/// An attributes event of `conversation_id` at `event_time` carrying `keys` (values "1").
pub fn attributes_event(conversation_id: &str, event_time: &str, keys: &[&str]) -> String {
    let time: jiff::Timestamp = event_time.parse().expect("test event time");
    let attributes: serde_json::Map<String, serde_json::Value> =
        keys.iter().map(|key| ((*key).to_owned(), json!("1"))).collect();
    json!({
        "version": "0",
        "id": format!("{conversation_id}-{event_time}"),
        "detail-type": "v2.detail.events.conversation.{id}.attributes",
        "source": "aws.partner/genesys.com/cloud/org/flow-metrics",
        "account": "123456789012",
        "time": event_time,
        "region": "eu-west-1",
        "resources": [],
        "detail": {
            "topicName": format!("v2.detail.events.conversation.{conversation_id}.attributes"),
            "version": "2",
            "eventBody": {
                "eventTime": time.as_millisecond(),
                "conversationId": conversation_id,
                "participantId": "p-1",
                "attributes": attributes,
            },
            "timestamp": event_time,
        }
    })
    .to_string()
}

/// An event of another topic of the integration.
pub fn other_topic_event(conversation_id: &str) -> String {
    json!({
        "version": "0",
        "detail-type": "v2.detail.events.conversation.{id}.customer.start",
        "time": "2026-03-07T04:09:16Z",
        "detail": {"eventBody": {"conversationId": conversation_id}}
    })
    .to_string()
}

/// Records every pushed occurrence; fails pushes while `failing` is set.
#[derive(Default)]
pub struct RecordingSink {
    pub pushed: Mutex<Vec<(String, String)>>,
    pub failing: AtomicBool,
    /// While set, accepts this many occurrences of the next push, then fails it.
    pub fail_after: Mutex<Option<usize>>,
    pub pushes: AtomicUsize,
    /// The tally of the last settled batch.
    pub last_tally: Mutex<Option<Tally>>,
}

impl RecordingSink {
    pub fn pushed(&self) -> Vec<(String, String)> {
        let mut pushed = self.pushed.lock().expect("lock").clone();
        pushed.sort();
        pushed
    }
}

impl Sink for RecordingSink {
    async fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        _context: &PushContext,
    ) -> Result<Pushed, PushFailure> {
        self.pushes.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            let error = SinkError::Transient("intake answered 503".to_owned());
            return Err(PushFailure::nothing_delivered(occurrences.len(), error));
        }
        let accepted = self.fail_after.lock().expect("lock").take();
        let delivered = accepted.unwrap_or(occurrences.len()).min(occurrences.len());
        let mut pushed = self.pushed.lock().expect("lock");
        pushed.extend(
            occurrences[..delivered]
                .iter()
                .map(|o| (o.conversation_id.to_owned(), o.key.to_owned())),
        );
        match accepted {
            Some(_) => {
                let error = SinkError::Transient("the second request timed out".to_owned());
                Err(PushFailure::after(delivered, occurrences.len(), error))
            }
            None => Ok(Pushed::default()),
        }
    }

    fn record(&self, tally: &Tally, _now: jiff::Timestamp) {
        *self.last_tally.lock().expect("lock") = Some(*tally);
    }

    async fn flush(&self, _context: &PushContext) {}
}

/// Accepts every push after five seconds, and remembers when it accepted the last.
#[derive(Default)]
pub struct SlowSink {
    pub accepted_at: Mutex<Option<tokio::time::Instant>>,
}

impl Sink for SlowSink {
    async fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        _context: &PushContext,
    ) -> Result<Pushed, PushFailure> {
        if !occurrences.is_empty() {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            *self.accepted_at.lock().expect("lock") = Some(tokio::time::Instant::now());
        }
        Ok(Pushed::default())
    }

    fn record(&self, _tally: &Tally, _now: jiff::Timestamp) {}

    async fn flush(&self, _context: &PushContext) {}
}

/// Wraps a ledger: counts calls, and fails claims with a transient error while `failing` is set.
pub struct FlakyLedger<L> {
    pub inner: L,
    pub failing: AtomicBool,
    pub claims: AtomicUsize,
}

impl<L> FlakyLedger<L> {
    pub fn new(inner: L) -> Self {
        FlakyLedger {
            inner,
            failing: AtomicBool::new(false),
            claims: AtomicUsize::new(0),
        }
    }
}

impl<L: Ledger> Ledger for FlakyLedger<L> {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, LedgerError> {
        self.claims.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(LedgerError::Transient {
                operation: "claim",
                message: "throttled".to_owned(),
            });
        }
        self.inner.claim(request).await
    }

    async fn confirm(&self, held: Held<'_>, possibly_doubled: bool) -> Result<Vec<String>, LedgerError> {
        self.inner.confirm(held, possibly_doubled).await
    }

    async fn release(&self, held: Held<'_>, maybe_delivered: bool) -> Result<(), LedgerError> {
        self.inner.release(held, maybe_delivered).await
    }

    fn terms(&self) -> LedgerTerms {
        self.inner.terms()
    }
}
