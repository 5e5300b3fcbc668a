//! The ledger's table as DynamoDB keeps it and as the function's SDK client reaches it.
//!
//! - Items keep their history, so that a Query (eventually consistent) may answer as of up to a
//!   second ago; conditional writes always see the latest state.
//! - TTL deletes an item some time (up to two days) after `expires_at` (key time + retention);
//!   until then the item is still read and still fails conditions.
//! - Each call goes through the SDK's standard retries as `aws::dynamodb_client` configures
//!   them: three attempts, each cut at 2 s, the call at 6 s, backoff from 50 ms with full
//!   jitter. An attempt may be throttled, answered with a 500 after the write was applied, or
//!   hang (applied or not) until its timeout.
//! - Faults come from the trace's script (one per call), from windows of time (every attempt
//!   alike: throttles, a brownout, 500s, or AccessDenied, for every operation or one), and from
//!   a steady rate of calls throttled past the SDK's retries.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flow_metrics::ledger::store::{ItemStore, KeyRecord, NewClaim, PutClaim, Update};
use flow_metrics::ledger::{ClaimToken, LedgerError};
use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

use super::trace::{CallFault, Operation, Trace, Window, WindowKind};
use super::{Dice, RETENTION, Record, current};

/// The SDK's bounds (`aws::DYNAMODB_ATTEMPT_TIMEOUT`, `DYNAMODB_CALL_TIMEOUT`, three attempts).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_secs(6);
const ATTEMPTS: usize = 3;
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long after its `expires_at` TTL may take to delete an item.
const TTL_LAG_MS: u64 = 48 * 3_600_000;
/// How far behind an eventually consistent read may be.
const READ_LAG_MS: u64 = 1_000;
/// The time the pipeline keeps for confirming after a push (`timing::CONFIRM_RESERVE`).
const CONFIRM_RESERVE: Duration = Duration::from_secs(3);

/// What one attempt meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Answered after this long.
    Answer(Duration),
    Throttled,
    ServerError {
        applied: bool,
    },
    /// No answer before the attempt's timeout.
    Hang {
        applied: bool,
    },
    Denied,
}

struct Item {
    /// Each state the item had, from when; `None`: deleted.
    versions: Vec<(Instant, Option<KeyRecord>)>,
    /// When TTL deletes it (`expires_at` plus TTL's lag).
    deleted_at: Timestamp,
}

impl Item {
    fn latest(&self) -> Option<&KeyRecord> {
        self.versions.last().and_then(|(_, record)| record.as_ref())
    }

    fn as_of(&self, at: Instant) -> Option<&KeyRecord> {
        self.versions
            .iter()
            .rev()
            .find(|(since, _)| *since <= at)
            .and_then(|(_, record)| record.as_ref())
    }
}

#[derive(Default)]
struct Table {
    conversations: BTreeMap<String, BTreeMap<String, Item>>,
    /// Which process wrote each claim token.
    tokens: HashMap<String, usize>,
}

/// The table and the faults of reaching it, shared by every process.
pub struct Dynamo {
    table: Mutex<Table>,
    calls: Mutex<VecDeque<CallFault>>,
    /// Whether the scripted throttles spare confirms.
    confirms_never_throttled: bool,
    windows: Vec<Window>,
    throttle_per_mille: u64,
    dice: Dice,
    base: Timestamp,
    start: Instant,
    record: Arc<Record>,
}

/// A handle on the shared table: what each process's ledger is built over.
#[derive(Clone)]
pub struct WorldStore(pub Arc<Dynamo>);

fn transient(operation: &'static str, message: &str) -> LedgerError {
    LedgerError::Transient {
        operation,
        message: message.to_owned(),
    }
}

/// What the ledger asks of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Read,
    Claim,
    Confirm,
    Release,
}

impl Call {
    fn operation(self) -> Operation {
        match self {
            Call::Read => Operation::Query,
            Call::Claim => Operation::PutItem,
            Call::Confirm | Call::Release => Operation::UpdateItem,
        }
    }
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Query => "Query",
            Operation::PutItem => "PutItem",
            Operation::UpdateItem => "UpdateItem",
        }
    }
}

impl Dynamo {
    pub fn new(trace: &Trace, base: Timestamp, start: Instant, record: Arc<Record>) -> Self {
        Dynamo {
            table: Mutex::default(),
            calls: Mutex::new(trace.calls.iter().copied().collect()),
            confirms_never_throttled: trace.confirms_never_throttled,
            windows: trace.windows.clone(),
            throttle_per_mille: u64::from(trace.throttle_per_mille),
            dice: Dice::new(trace.seed ^ 0xd1a0_0d8b),
            base,
            start,
            record,
        }
    }

    /// AWS's clock.
    pub fn now(&self) -> Timestamp {
        self.base + SignedDuration::try_from(self.start.elapsed()).expect("elapsed")
    }

    fn instant_of(&self, time: Timestamp) -> Instant {
        let after = Duration::try_from(time.duration_since(self.base)).unwrap_or(Duration::ZERO);
        self.start + after
    }

    /// The window in force now for this operation, if any.
    fn window(&self, operation: Operation) -> Option<WindowKind> {
        let now = self.start.elapsed().as_secs();
        self.windows
            .iter()
            .find(|window| {
                let start = u64::from(window.start_s);
                now >= start
                    && now < start + u64::from(window.length_s)
                    && window.only.is_none_or(|only| only == operation)
            })
            .map(|window| window.kind)
    }

    /// The attempts a call will meet, but for windows.
    fn plan(&self, confirm: bool) -> VecDeque<Attempt> {
        let fast = || Attempt::Answer(self.dice.ms(1, 25));
        let scripted =
            self.calls.lock().expect("lock").pop_front().filter(|fault| {
                !(confirm && self.confirms_never_throttled && *fault == CallFault::Throttled)
            });
        let fault = match scripted {
            Some(fault) => fault,
            None if self.dice.chance(self.throttle_per_mille) => {
                self.record.saw(|seen| seen.steady_throttles += 1);
                CallFault::Throttled
            }
            None => CallFault::None,
        };
        let plan = match fault {
            CallFault::None => vec![fast()],
            CallFault::AppliedThenRetried => vec![Attempt::ServerError { applied: true }, fast()],
            CallFault::AppliedThenTimedOut => vec![Attempt::Hang { applied: true }; ATTEMPTS],
            CallFault::Throttled => vec![Attempt::Throttled; ATTEMPTS],
            CallFault::Slow => vec![
                Attempt::Hang { applied: false },
                Attempt::Answer(self.dice.ms(900, 1_950)),
            ],
            CallFault::VerySlow => vec![
                Attempt::Hang { applied: false },
                Attempt::Hang { applied: false },
                Attempt::Answer(self.dice.ms(1_000, 1_950)),
            ],
        };
        plan.into()
    }

    /// One call through the SDK: attempts, each cut at 2 s, retried with backoff while the
    /// call's 6 s allow. `apply` is the request, run each time DynamoDB applies it.
    async fn call<T, F, Fut>(&self, call: Call, apply: F) -> Result<T, LedgerError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = T>,
    {
        let process = current();
        let operation = call.operation();
        let name = operation.name();
        let started = Instant::now();
        let call_ends = started + CALL_TIMEOUT;
        let mut plan = self.plan(call == Call::Confirm);
        let mut backoff = INITIAL_BACKOFF;
        let mut last_error = String::new();
        let mut window = None;
        let result = 'attempts: {
            for attempt in 1..=ATTEMPTS {
                // The process may die between two attempts (after an applied write, too).
                process.step().await;
                let timeout = ATTEMPT_TIMEOUT.min(call_ends.saturating_duration_since(Instant::now()));
                window = self.window(operation);
                let planned = plan.pop_front().unwrap_or(Attempt::Answer(self.dice.ms(1, 25)));
                let met = match window {
                    None => planned,
                    Some(WindowKind::Throttling) => Attempt::Throttled,
                    Some(WindowKind::Brownout) => Attempt::Hang {
                        applied: self.dice.chance(500),
                    },
                    Some(WindowKind::ServerErrors) => Attempt::ServerError {
                        applied: self.dice.chance(500),
                    },
                    Some(WindowKind::AccessDenied) => Attempt::Denied,
                };
                let latency = self.dice.ms(1, 25);
                match met {
                    Attempt::Answer(after) if after < timeout => {
                        tokio::time::sleep(after / 2).await;
                        let answer = apply().await;
                        tokio::time::sleep(after - after / 2).await;
                        break 'attempts Ok(answer);
                    }
                    Attempt::Answer(_) => {
                        // Applied, answered too late: the SDK gave up on the attempt.
                        tokio::time::sleep(latency).await;
                        apply().await;
                        tokio::time::sleep(timeout.saturating_sub(latency)).await;
                        last_error = format!("{name}: the attempt timed out after {timeout:?}");
                    }
                    Attempt::Throttled => {
                        tokio::time::sleep(latency).await;
                        last_error = format!(
                            "{name}: ThrottlingException: Rate of requests exceeds the allowed throughput"
                        );
                    }
                    Attempt::ServerError { applied } => {
                        tokio::time::sleep(latency).await;
                        if applied {
                            apply().await;
                            if attempt < ATTEMPTS {
                                self.record.saw(|seen| seen.applied_then_retried += 1);
                            }
                        }
                        last_error = format!("{name}: InternalServerError (500)");
                    }
                    Attempt::Hang { applied } => {
                        tokio::time::sleep(latency.min(timeout)).await;
                        if applied {
                            apply().await;
                        }
                        tokio::time::sleep(timeout.saturating_sub(latency)).await;
                        last_error = format!("{name}: the attempt timed out after {timeout:?}");
                    }
                    Attempt::Denied => {
                        tokio::time::sleep(latency).await;
                        self.record.saw(|seen| seen.calls_denied += 1);
                        break 'attempts Err(LedgerError::Permanent {
                            operation: name,
                            message: format!(
                                "on table ledger: AccessDeniedException: User: \
                                 arn:aws:sts::123456789012:assumed-role/GenesysFlowMetrics/function \
                                 is not authorized to perform: dynamodb:{name}"
                            ),
                        });
                    }
                }
                if window.is_some() {
                    self.record.saw(|seen| seen.window_failures += 1);
                }
                // Full jitter, as the SDK's standard retries.
                let pause = backoff.mul_f64(self.dice.below(1_000) as f64 / 1_000.0);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if attempt == ATTEMPTS || Instant::now() + pause >= call_ends {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            Err(transient(
                name,
                &format!("{last_error} (after the SDK's retries)"),
            ))
        };
        crate::say!(
            "process {}: {name} took {:?}: {}",
            process.id,
            started.elapsed(),
            match &result {
                Ok(_) => "ok".to_owned(),
                Err(error) => error.to_string(),
            }
        );
        if call == Call::Confirm && started.elapsed() > CONFIRM_RESERVE {
            self.record.saw(|seen| seen.slow_confirms += 1);
        }
        if call == Call::Confirm && result.is_err() && window.is_some() {
            self.record.saw(|seen| seen.confirms_failed_in_windows += 1);
        }
        result
    }

    /// TTL's deletions due by now, in `conversation`.
    fn sweep(&self, table: &mut Table, conversation_id: &str) {
        let now = self.now();
        let Some(items) = table.conversations.get_mut(conversation_id) else {
            return;
        };
        for item in items.values_mut() {
            if item.latest().is_some() && item.deleted_at <= now {
                let at = self.instant_of(item.deleted_at);
                item.versions.push((at, None));
                self.record.saw(|seen| seen.ttl_deletions += 1);
            }
        }
    }

    /// Every item TTL has deleted by now.
    pub fn sweep_all(&self) {
        let mut table = self.table.lock().expect("lock");
        let conversations: Vec<String> = table.conversations.keys().cloned().collect();
        for conversation in conversations {
            self.sweep(&mut table, &conversation);
        }
    }

    /// The occurrences a process holds claimed (not delivered) right now.
    pub fn claimed_by(&self, process: usize) -> Vec<(String, String)> {
        let table = self.table.lock().expect("lock");
        let mut held = Vec::new();
        for (conversation, items) in &table.conversations {
            for (key, item) in items {
                let Some(record) = item.latest() else { continue };
                let ours = record
                    .token
                    .as_ref()
                    .and_then(|token| table.tokens.get(token))
                    .is_some_and(|holder| *holder == process);
                if ours && !record.delivered {
                    held.push((conversation.clone(), key.clone()));
                }
            }
        }
        held
    }

    fn read_now(&self, conversation_id: &str) -> HashMap<String, KeyRecord> {
        let lag = if self.dice.chance(500) {
            Duration::ZERO
        } else {
            self.dice.ms(0, READ_LAG_MS)
        };
        let mut table = self.table.lock().expect("lock");
        self.sweep(&mut table, conversation_id);
        let Some(items) = table.conversations.get(conversation_id) else {
            return HashMap::new();
        };
        let at = Instant::now().checked_sub(lag).unwrap_or(self.start);
        let mut stale = false;
        let mut read = HashMap::new();
        for (key, item) in items {
            let seen = item.as_of(at);
            stale |= seen != item.latest();
            if let Some(record) = seen {
                read.insert(key.clone(), record.clone());
            }
        }
        if stale {
            self.record.saw(|seen| seen.stale_reads += 1);
        }
        read
    }

    fn put_now(&self, claim: &NewClaim<'_>, now_ms: i64) -> PutClaim {
        let now = Instant::now();
        let mut table = self.table.lock().expect("lock");
        self.sweep(&mut table, claim.conversation_id);
        let items = table
            .conversations
            .entry(claim.conversation_id.to_owned())
            .or_default();
        let replaced = items.get(claim.key.key).and_then(Item::latest).cloned();
        if let Some(found) = &replaced {
            let expired = !found.delivered && found.lease_expires_ms.is_some_and(|lease| lease < now_ms);
            if !expired {
                crate::say!(
                    "claim of {}/{} by process {} finds {found:?}",
                    claim.conversation_id,
                    claim.key.key,
                    current().id
                );
                return PutClaim::Found(found.clone());
            }
        }
        let record = KeyRecord {
            delivered: false,
            token: Some(claim.token.0.clone()),
            lease_expires_ms: Some(claim.lease_expires_ms),
            maybe_delivered: claim.maybe_delivered,
        };
        let expires_at = claim.key.time.saturating_add(RETENTION).expect("in range");
        let lag = SignedDuration::from_millis(self.dice.below(TTL_LAG_MS) as i64);
        let deleted_at = expires_at.saturating_add(lag).expect("in range");
        let item = items.entry(claim.key.key.to_owned()).or_insert_with(|| Item {
            versions: Vec::new(),
            deleted_at,
        });
        item.deleted_at = deleted_at;
        crate::say!(
            "claimed {}/{} by process {} token {}, replacing {replaced:?}",
            claim.conversation_id,
            claim.key.key,
            current().id,
            &claim.token.0[..6]
        );
        item.versions.push((now, Some(record)));
        table.tokens.insert(claim.token.0.clone(), current().id);
        PutClaim::Written { replaced }
    }

    /// Updates the key if `condition` holds for its latest state; whether it held.
    fn update_now(
        &self,
        conversation_id: &str,
        key: &str,
        condition: impl Fn(&KeyRecord) -> bool,
        update: impl Fn(&mut KeyRecord),
    ) -> bool {
        let now = Instant::now();
        let mut table = self.table.lock().expect("lock");
        self.sweep(&mut table, conversation_id);
        let Some(item) = table
            .conversations
            .get_mut(conversation_id)
            .and_then(|items| items.get_mut(key))
        else {
            return false;
        };
        let Some(mut record) = item.latest().cloned().filter(|record| condition(record)) else {
            return false;
        };
        update(&mut record);
        crate::say!("updated {conversation_id}/{key}: {record:?}");
        item.versions.push((now, Some(record)));
        true
    }
}

fn held_by(record: &KeyRecord, token: &ClaimToken) -> bool {
    record.token.as_deref() == Some(token.0.as_str())
}

impl ItemStore for WorldStore {
    async fn read(&self, conversation_id: &str) -> Result<HashMap<String, KeyRecord>, LedgerError> {
        let dynamo = &self.0;
        dynamo
            .call(Call::Read, || async { dynamo.read_now(conversation_id) })
            .await
    }

    async fn put_claim(&self, claim: &NewClaim<'_>, now_ms: i64) -> Result<PutClaim, LedgerError> {
        let dynamo = &self.0;
        dynamo
            .call(Call::Claim, || async { dynamo.put_now(claim, now_ms) })
            .await
    }

    async fn mark_delivered(
        &self,
        key: &Update<'_>,
        _now_ms: i64,
        _possibly_doubled: bool,
    ) -> Result<bool, LedgerError> {
        let dynamo = &self.0;
        dynamo
            .call(Call::Confirm, || async {
                dynamo.update_now(
                    key.conversation_id,
                    key.key,
                    |record| held_by(record, key.token),
                    |record| {
                        record.delivered = true;
                        record.lease_expires_ms = None;
                    },
                )
            })
            .await
    }

    async fn release(&self, key: &Update<'_>, maybe_delivered: bool) -> Result<bool, LedgerError> {
        let dynamo = &self.0;
        dynamo
            .call(Call::Release, || async {
                dynamo.update_now(
                    key.conversation_id,
                    key.key,
                    |record| !record.delivered && held_by(record, key.token),
                    |record| {
                        record.token = None;
                        record.lease_expires_ms = Some(0);
                        record.maybe_delivered |= maybe_delivered;
                    },
                )
            })
            .await
    }

    fn retention(&self) -> Option<SignedDuration> {
        Some(RETENTION)
    }
}
