//! The cost model behind `flow-metrics simulate`: a generated month-like trace run through the
//! real pipeline, with DynamoDB request units metered by DynamoDB's sizing rules, side by side
//! with the snapshot-diff design of the seed article (read the conversation's previous attribute
//! snapshot, diff, write the whole snapshot back, on every event with a metric attribute).
//!
//! The pipeline runs as one warm function with its cache of delivered keys; with several
//! concurrent instances, fewer Queries are skipped (at worst every event with a fresh key makes
//! one, as without the cache).
//!
//! Sizing rules: an item's size is the UTF-8 length of its attribute names plus its values
//! (numbers ~ 1 byte per 2 digits + 1, maps 3 bytes + 1 per element); reads cost 0.5 read unit
//! per 4 KB (eventually consistent), writes 1 write unit per 1 KB, and a write whose condition
//! fails is charged like one that succeeds.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, json};

use crate::attribute::{Attribute, classify};
use crate::count::{Occurrence, Tally};
use crate::event::{Event, decode};
use crate::ledger::dynamodb::schema;
use crate::ledger::{
    Claim, ClaimRequest, DeliveredCache, Held, Ledger, LedgerError, LedgerTerms, MemoryLedger, cache,
};
use crate::pipeline::Pipeline;
use crate::sink::{PushContext, PushFailure, Pushed, Sink};

/// Public on-demand prices used (us-east-1), and when they were read.
pub mod prices {
    pub const AS_OF: &str = "2025 (us-east-1 on-demand price lists)";
    pub const DYNAMODB_WRITE_UNIT: f64 = 0.625 / 1e6;
    pub const DYNAMODB_READ_UNIT: f64 = 0.125 / 1e6;
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    pub const LAMBDA_ARM_GB_SECOND: f64 = 0.000_013_333_4;
    pub const EVENTBRIDGE_EVENT: f64 = 1.0 / 1e6;
}

/// Latencies assumed for the Lambda duration model (same region), in milliseconds.
pub mod latency {
    pub const DYNAMODB_CALL_MS: f64 = 6.0;
    pub const DATADOG_PUSH_MS: f64 = 25.0;
    /// The least Lambda bills (1 ms granularity), for an invocation with nothing to do.
    pub const MINIMUM_MS: f64 = 1.0;
}

/// The shape of the generated trace.
#[derive(Debug, Clone, Copy)]
pub struct TraceShape {
    pub conversations: usize,
    /// Attribute events per conversation, inclusive range.
    pub events: (usize, usize),
    /// Attributes a conversation ends with (metric keys included).
    pub attributes: (usize, usize),
    /// Metric keys set per conversation.
    pub metric_keys: (usize, usize),
    /// Share of events delivered twice (EventBridge is at-least-once).
    pub duplicate_rate: f64,
    pub seed: u64,
}

impl Default for TraceShape {
    /// About 100,000 deliveries: 5,000 conversations of 10 to 30 events, ending with 20 to 60
    /// attributes of which 2 to 6 are metric keys; 5% of events delivered twice.
    fn default() -> Self {
        TraceShape {
            conversations: 5000,
            events: (10, 30),
            attributes: (20, 60),
            metric_keys: (2, 6),
            duplicate_rate: 0.05,
            seed: 7,
        }
    }
}

/// Generates the trace's EventBridge events, one at a time, conversation after conversation.
pub fn generate(shape: TraceShape) -> impl Iterator<Item = String> {
    let mut rng = fastrand::Rng::with_seed(shape.seed);
    let start: Timestamp = "2026-03-01T00:00:00Z".parse().unwrap_or(Timestamp::UNIX_EPOCH);
    (0..shape.conversations).flat_map(move |index| {
        let conversation = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            rng.u32(..),
            rng.u16(..),
            rng.u16(..4096),
            rng.u16(..4096),
            rng.u64(..1 << 48)
        );
        let flow = [
            "CustomerRouting",
            "Billing IVR",
            "SupportBot",
            "Collections",
            "Outbound Survey",
        ][index % 5];
        let events = rng.usize(shape.events.0..=shape.events.1);
        let final_attributes = rng.usize(shape.attributes.0..=shape.attributes.1);
        let metric_keys = rng.usize(shape.metric_keys.0..=shape.metric_keys.1).min(events);
        // Attributes present from the first event; the rest arrive one per event.
        let initial = final_attributes.saturating_sub(events).max(3);
        let mut attributes = Map::new();
        for i in 0..initial {
            attributes.insert(format!("Attribute{i}"), json!(format!("value-{}", rng.u32(..))));
        }
        let metric_steps: Vec<usize> = {
            let mut steps: Vec<usize> = (0..events).collect();
            rng.shuffle(&mut steps);
            steps.truncate(metric_keys);
            steps
        };
        let mut time = start + SignedDuration::from_secs(index as i64 * 45);
        let mut out = Vec::with_capacity(events * 2);
        for step in 0..events {
            time += SignedDuration::from_millis(rng.i64(2_000..20_000));
            if metric_steps.contains(&step) {
                let metric = ["Start", "Menu", "Identified", "Transfer", "Callback", "End"][step % 6];
                attributes.insert(format!("{flow}Metric_{metric}({time})"), json!("1"));
            } else {
                attributes.insert(
                    format!("Attribute{}", initial + step),
                    json!(format!("value-{}", rng.u32(..))),
                );
            }
            let event = crate::event::attributes_event_json(&conversation, time, &attributes);
            if rng.f64() < shape.duplicate_rate {
                out.push(event.clone());
            }
            out.push(event);
        }
        out
    })
}

/// DynamoDB units spent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    pub reads: f64,
    pub writes: f64,
}

impl Units {
    pub fn cost(&self) -> f64 {
        self.reads * prices::DYNAMODB_READ_UNIT + self.writes * prices::DYNAMODB_WRITE_UNIT
    }
}

fn read_units(bytes: usize) -> f64 {
    (bytes.div_ceil(4096).max(1)) as f64 * 0.5
}

fn write_units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

/// A number's size as DynamoDB counts it.
fn number_bytes(value: i64) -> usize {
    value.unsigned_abs().to_string().len().div_ceil(2) + 1
}

/// The in-memory ledger, charging what the DynamoDB ledger would.
#[derive(Debug)]
pub struct MeteredLedger {
    inner: MemoryLedger,
    state: Mutex<MeterState>,
}

#[derive(Debug, Default)]
struct MeterState {
    units: Units,
    /// Per conversation: bytes the Query projects (sort key, state, lease) for its items.
    projected: HashMap<String, usize>,
    dynamodb_calls: u64,
}

impl MeteredLedger {
    pub fn new() -> Self {
        MeteredLedger {
            inner: MemoryLedger::default(),
            state: Mutex::default(),
        }
    }

    pub fn units(&self) -> Units {
        self.lock().units
    }

    pub fn dynamodb_calls(&self) -> u64 {
        self.lock().dynamodb_calls
    }

    fn charge_updates(&self, keys: usize) {
        let mut state = self.lock();
        state.units.writes += keys as f64;
        state.dynamodb_calls += keys as u64;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MeterState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for MeteredLedger {
    fn default() -> Self {
        MeteredLedger::new()
    }
}

/// The size of a claim item as the DynamoDB ledger writes it.
fn claim_item_bytes(conversation_id: &str, key: &str, flow: &str, metric: &str, now_ms: i64) -> usize {
    schema::PARTITION_KEY.len()
        + conversation_id.len()
        + schema::SORT_KEY.len()
        + key.len()
        + schema::FLOW.len()
        + flow.len()
        + schema::METRIC.len()
        + metric.len()
        + schema::KEY_TIME_MS.len()
        + schema::FIRST_SEEN_MS.len()
        + schema::LEASE_EXPIRES_MS.len()
        + 3 * number_bytes(now_ms)
        + schema::TIME_TO_LIVE.len()
        + number_bytes(now_ms / 1000)
        + schema::STATE.len()
        + schema::CLAIMED.len()
        + schema::CLAIM_TOKEN.len()
        + 32
}

impl Ledger for MeteredLedger {
    async fn claim(&self, request: ClaimRequest<'_>) -> Result<Claim, LedgerError> {
        let claim = self.inner.claim(request).await?;
        let now_ms = request.now.as_millisecond();
        let mut state = self.lock();
        let projected = state.projected.get(request.conversation_id).copied().unwrap_or(0);
        state.units.reads += read_units(projected);
        state.dynamodb_calls += 1 + claim.won.len() as u64;
        let mut added = 0;
        for metric in claim.won.iter().filter_map(|&index| request.keys.get(index)) {
            let bytes = claim_item_bytes(
                request.conversation_id,
                metric.key,
                metric.flow,
                metric.metric,
                now_ms,
            );
            state.units.writes += write_units(bytes);
            // The Query projects the sort key, state, claim token and lease.
            added += schema::SORT_KEY.len()
                + metric.key.len()
                + schema::STATE.len()
                + 9
                + schema::CLAIM_TOKEN.len()
                + 32;
        }
        *state
            .projected
            .entry(request.conversation_id.to_owned())
            .or_default() += added;
        Ok(claim)
    }

    async fn confirm(&self, held: Held<'_>, possibly_doubled: bool) -> Result<Vec<String>, LedgerError> {
        // An update is charged on the larger of the item before and after: one unit here.
        self.charge_updates(held.keys.len());
        self.inner.confirm(held, possibly_doubled).await
    }

    async fn release(&self, held: Held<'_>, maybe_delivered: bool) -> Result<(), LedgerError> {
        self.charge_updates(held.keys.len());
        self.inner.release(held, maybe_delivered).await
    }

    fn terms(&self) -> LedgerTerms {
        self.inner.terms()
    }
}

/// A sink that accepts everything and counts its pushes.
#[derive(Debug, Default)]
pub struct CountingSink {
    pushes: std::sync::atomic::AtomicU64,
}

impl CountingSink {
    pub fn pushes(&self) -> u64 {
        self.pushes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Sink for CountingSink {
    async fn push(
        &self,
        occurrences: &[Occurrence<'_>],
        _context: &PushContext,
    ) -> Result<Pushed, PushFailure> {
        if !occurrences.is_empty() {
            self.pushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(Pushed::default())
    }

    fn record(&self, _tally: &Tally, _now: Timestamp) {}

    async fn flush(&self, _context: &PushContext) {}
}

/// What the snapshot-diff design would spend on the same events.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SnapshotCost {
    pub units: Units,
    pub events_with_metrics: u64,
}

/// What the snapshot-diff design keeps per conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Snapshot {
    /// The whole event, as the seed article describes ("save the event to DynamoDB").
    #[default]
    WholeEvent,
    /// All the event's attributes.
    AllAttributes,
    /// Only its metric attributes: the leanest snapshot that still works.
    MetricAttributes,
}

/// The snapshot-diff design: on every event with a metric attribute, read the conversation's
/// previous snapshot and write the new one.
#[derive(Debug, Default)]
pub struct SnapshotModel {
    sizes: HashMap<String, usize>,
    snapshot: Snapshot,
    cost: SnapshotCost,
}

impl SnapshotModel {
    pub fn new(snapshot: Snapshot) -> Self {
        SnapshotModel {
            snapshot,
            ..SnapshotModel::default()
        }
    }

    pub fn observe(&mut self, json: &str) {
        let Ok(Event::Attributes(event)) = decode(json) else {
            return;
        };
        let mut has_metric = false;
        let mut bytes = 0;
        for key in &event.attribute_keys {
            let is_metric = matches!(classify(key), Attribute::Metric(_));
            has_metric |= is_metric;
            if is_metric || self.snapshot == Snapshot::AllAttributes {
                // Name, value ("1" or a short string), and the map element's byte.
                bytes += key.len() + if is_metric { 1 } else { 16 } + 1;
            }
        }
        if !has_metric {
            return;
        }
        let stored = match self.snapshot {
            Snapshot::WholeEvent => "event".len() + json.len(),
            Snapshot::AllAttributes | Snapshot::MetricAttributes => "attributes".len() + 3 + bytes,
        };
        let item = schema::PARTITION_KEY.len() + event.conversation_id.len() + stored;
        let previous = self.sizes.insert(event.conversation_id.into_owned(), item);
        self.cost.units.reads += read_units(previous.unwrap_or(0));
        self.cost.units.writes += write_units(item);
        self.cost.events_with_metrics += 1;
    }

    pub fn cost(&self) -> SnapshotCost {
        self.cost
    }
}

/// The whole comparison for one trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct Comparison {
    pub deliveries: u64,
    pub tally: Tally,
    pub ours: Units,
    pub ours_dynamodb_calls: u64,
    pub ours_pushes: u64,
    /// Invocations that made at least one DynamoDB call, and those that pushed.
    pub invocations_with_query: u64,
    pub snapshot_event: SnapshotCost,
    pub snapshot_all: SnapshotCost,
    pub snapshot_metrics_only: SnapshotCost,
}

/// Runs the trace through the pipeline (one event per invocation, as EventBridge delivers
/// directly) and through both snapshot models.
pub async fn compare(shape: TraceShape) -> Comparison {
    // One warm function, remembering the keys it delivered, as the Lambda does.
    let ledger = DeliveredCache::new(MeteredLedger::new(), cache::DEFAULT_CAPACITY);
    let pipeline = Pipeline::new(ledger, CountingSink::default());
    let mut whole_event = SnapshotModel::new(Snapshot::WholeEvent);
    let mut all = SnapshotModel::new(Snapshot::AllAttributes);
    let mut metrics_only = SnapshotModel::new(Snapshot::MetricAttributes);
    let mut comparison = Comparison::default();
    let now = Timestamp::now();
    for event in generate(shape) {
        whole_event.observe(&event);
        all.observe(&event);
        metrics_only.observe(&event);
        let calls_before = pipeline.ledger().inner().dynamodb_calls();
        let report = pipeline.process_batch(&[&event], now).await;
        if pipeline.ledger().inner().dynamodb_calls() > calls_before {
            comparison.invocations_with_query += 1;
        }
        comparison.tally += report.tally;
        comparison.deliveries += 1;
    }
    comparison.ours = pipeline.ledger().inner().units();
    comparison.ours_dynamodb_calls = pipeline.ledger().inner().dynamodb_calls();
    comparison.ours_pushes = pipeline.sink().pushes();
    comparison.snapshot_event = whole_event.cost();
    comparison.snapshot_all = all.cost();
    comparison.snapshot_metrics_only = metrics_only.cost();
    comparison
}

impl Comparison {
    /// Modelled billed Lambda milliseconds: ours waits on its Query, claims, push and
    /// confirms; the snapshot design on its read and write (its DataDog submission goes through
    /// the Lambda extension, not counted).
    pub fn lambda_ms(&self) -> (f64, f64) {
        let quiet = self.deliveries - self.invocations_with_query;
        let ours = quiet as f64 * latency::MINIMUM_MS
            + self.invocations_with_query as f64 * latency::DYNAMODB_CALL_MS
            + self.ours_pushes as f64 * (latency::DATADOG_PUSH_MS + 2.0 * latency::DYNAMODB_CALL_MS);
        let with = self.snapshot_all.events_with_metrics;
        let snapshot = (self.deliveries - with) as f64 * latency::MINIMUM_MS
            + with as f64 * 2.0 * latency::DYNAMODB_CALL_MS;
        (ours, snapshot)
    }

    /// The comparison as a text table, in dollars per million events.
    pub fn render(&self, memory_mb: f64) -> String {
        let per_million = 1e6 / self.deliveries.max(1) as f64;
        let (ours_ms, snapshot_ms) = self.lambda_ms();
        let lambda = |ms: f64| {
            self.deliveries as f64 * prices::LAMBDA_REQUEST
                + ms / 1000.0 * memory_mb / 1024.0 * prices::LAMBDA_ARM_GB_SECOND
        };
        let eventbridge = self.deliveries as f64 * prices::EVENTBRIDGE_EVENT;
        let row = |name: &str, units: Units, lambda_cost: f64| {
            let dynamodb = units.cost();
            format!(
                "| {name} | {:.0} | {:.0} | ${:.3} | ${:.3} | ${:.3} |\n",
                units.reads * per_million,
                units.writes * per_million,
                dynamodb * per_million,
                lambda_cost * per_million,
                (dynamodb + lambda_cost + eventbridge) * per_million,
            )
        };
        let mut out = String::new();
        out.push_str(&format!(
            "trace: {} deliveries ({} events with a metric key), {} keys counted, {} DataDog requests\n\n",
            self.deliveries, self.snapshot_all.events_with_metrics, self.tally.keys_counted, self.ours_pushes
        ));
        out.push_str("| design (per million events) | read units | write units | DynamoDB | Lambda | total with EventBridge |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        out.push_str(&row("per-key ledger (this tool)", self.ours, lambda(ours_ms)));
        out.push_str(&row(
            "snapshot of the whole event (seed)",
            self.snapshot_event.units,
            lambda(snapshot_ms),
        ));
        out.push_str(&row(
            "snapshot of all attributes",
            self.snapshot_all.units,
            lambda(snapshot_ms),
        ));
        out.push_str(&row(
            "snapshot of metric attributes only",
            self.snapshot_metrics_only.units,
            lambda(snapshot_ms),
        ));
        let ratio = |snapshot: &SnapshotCost| self.ours.cost() / snapshot.units.cost().max(f64::MIN_POSITIVE);
        out.push_str(&format!(
            "\nDynamoDB cost of the per-key ledger: {:.2}× the whole-event snapshot, {:.2}× the all-attribute \
             snapshot, {:.2}× the metric-only snapshot.\n",
            ratio(&self.snapshot_event),
            ratio(&self.snapshot_all),
            ratio(&self.snapshot_metrics_only),
        ));
        out.push_str(&format!(
            "Prices: {}; Lambda arm64 at {memory_mb} MB; {} ms per DynamoDB call, {} ms per DataDog push.\n",
            prices::AS_OF,
            latency::DYNAMODB_CALL_MS,
            latency::DATADOG_PUSH_MS
        ));
        out
    }
}
