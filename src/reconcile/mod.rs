//! Reconciliation: what Genesys's own analytics counted in an interval beside what the ledger
//! delivered, per flow and metric (milestones and outcomes per flow, milestone or outcome and
//! value), with each difference either explained by a known way the two count differently or
//! left unexplained, and the conversations behind an attribute metric's difference.
//!
//! Pure: [`reconcile`] takes Genesys's side ([`GenesysSide`], from `genesys.rs`, its analytics
//! API) and the ledger's ([`LedgerKey`], from `ledger.rs`, a scan of the table) and gives a
//! [`Report`], which `report.rs` writes as a table, CSV or JSON. `scheduled.rs` is the hourly
//! run that sends each flow's coverage to DataDog.

pub mod genesys;
mod interval;
pub mod ledger;
mod report;
pub mod scheduled;

pub use interval::{EDGE_MARGIN, Interval, IntervalError};
pub use report::{write_csv, write_json, write_table};

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::Timestamp;
use serde::Serialize;

/// What a row counts: an attribute metric, a milestone or an outcome with its value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Subject {
    /// `attribute`, `milestone` or `outcome`.
    pub source: &'static str,
    /// The flow's name (attributes) or id (milestones, outcomes).
    pub flow: String,
    /// The metric's name, or the milestone's or outcome's id.
    pub metric: String,
    /// An outcome's value (`SUCCESS`, `FAILURE`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl Subject {
    pub fn attribute(flow: &str, metric: &str) -> Subject {
        Subject {
            source: "attribute",
            flow: flow.to_owned(),
            metric: metric.to_owned(),
            value: None,
        }
    }
}

/// One attribute key as Genesys's conversation details show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenesysKey {
    pub conversation_id: String,
    pub key: String,
    pub flow: String,
    pub metric: String,
    pub time: Timestamp,
}

/// What Genesys's analytics counted in the interval.
#[derive(Debug, Clone, Default)]
pub struct GenesysSide {
    /// Milestones and outcomes: the flow aggregates' counts.
    pub aggregates: BTreeMap<Subject, u64>,
    /// Attribute metric keys of the conversation details, with times in the interval.
    pub keys: Vec<GenesysKey>,
    /// When each conversation the details hold ended, if it has.
    pub conversation_ends: HashMap<String, Option<Timestamp>>,
    /// The details hold data up to this (the earliest `dataAvailabilityDate` of their pages).
    pub available_until: Option<Timestamp>,
    /// Records of Genesys's answers left out for lacking a field that says what they are.
    pub skipped: Skipped,
}

/// Records of Genesys's answers left out: the published schema makes every field optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Conversations without a `conversationId`.
    pub conversations: u64,
    /// Aggregate metrics without their `metric`.
    pub metrics: u64,
}

impl Skipped {
    pub fn any(&self) -> bool {
        self.conversations > 0 || self.metrics > 0
    }
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "skipped {} conversation(s) without a conversationId and {} aggregate metric(s) \
             without a metric name in Genesys's answers",
            self.conversations, self.metrics
        )
    }
}

/// One key of the ledger, with its time in the interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerKey {
    pub conversation_id: String,
    pub key: String,
    pub subject: Subject,
    pub time: Timestamp,
    /// Delivered (counted); otherwise claimed and not yet confirmed.
    pub delivered: bool,
    /// When a claim's lease runs out: until then its delivery may still be under way; after, the
    /// key is stuck until `flow-metrics redrive` delivers it.
    pub lease_expires: Option<Timestamp>,
}

impl LedgerKey {
    /// Claimed, and its claim's lease still live at `now`: expected to be delivered shortly.
    fn in_flight(&self, now: Timestamp) -> bool {
        !self.delivered && self.lease_expires.is_some_and(|expires| expires > now)
    }

    /// Claimed, and its claim's lease over at `now`: a loss until it is redriven.
    fn stuck(&self, now: Timestamp) -> bool {
        !self.delivered && !self.in_flight(now)
    }
}

/// A known way Genesys's analytics and the ledger count differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Genesys's outcome metrics count an outcome's last result per conversation; the ledger
    /// counts each time the flow reached it.
    LastOutcomeOnly,
    /// An attribute set after its conversation ended is in the events, not in analytics.
    SetAfterConversationEnd,
    /// A milestone or outcome within [`EDGE_MARGIN`] of the interval's start or end.
    IntervalEdge,
    /// Later than the details' `dataAvailabilityDate`: Genesys has not made it available yet.
    NotYetAvailable,
    /// Claimed in the ledger, not yet confirmed delivered, and its claim's lease still live. (A
    /// claim whose lease is over is stuck: not expected, see [`Row::stuck`].)
    InFlight,
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::LastOutcomeOnly => "Genesys counts an outcome's last result per conversation",
            Reason::SetAfterConversationEnd => "set after the conversation ended: not in analytics",
            Reason::IntervalEdge => "at the interval's edge",
            Reason::NotYetAvailable => "not yet available in Genesys's analytics",
            Reason::InFlight => "claimed, being delivered (its lease is live)",
        }
    }
}

/// Which side a key counted on one side only is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Genesys,
    Ours,
}

/// One subject's counts on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    #[serde(flatten)]
    pub subject: Subject,
    pub genesys: u64,
    pub ours: u64,
    /// `ours − genesys`.
    pub difference: i64,
    /// The part of the difference each known reason accounts for.
    pub expected: BTreeMap<Reason, u64>,
    /// Keys counted on one side only for no known reason.
    pub unexplained: u64,
    /// Of `unexplained`, Genesys's keys the ledger holds claimed with its lease over: stuck, lost
    /// until `flow-metrics redrive` delivers them.
    pub stuck: u64,
    /// Conversations whose keys Genesys has and the ledger lacks (attribute metrics).
    pub lacking: Vec<String>,
    /// Conversations whose keys the ledger has and Genesys does not (attribute metrics).
    pub extra: Vec<String>,
    /// Of `genesys` and `ours`, the keys a known reason puts on that side only.
    #[serde(skip)]
    explained: [u64; 2],
    /// Of `unexplained`, the keys on each side only: Genesys's (the ledger lacks them), ours
    /// (Genesys never counted them).
    #[serde(skip)]
    unexplained_on: [u64; 2],
}

/// A flow's unexplained keys, by the side they are on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unexplained {
    /// Genesys counted them; the ledger lacks them (lost or stuck).
    pub lacking: u64,
    /// The ledger counted them; Genesys did not.
    pub extra: u64,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub interval: String,
    /// Genesys's details hold data up to this, if it said.
    pub available_until: Option<Timestamp>,
    pub rows: Vec<Row>,
    /// The interval's end.
    #[serde(skip)]
    end: Timestamp,
}

/// What a reconciliation says of its interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every difference is explained (within the threshold).
    Complete,
    /// A row's unexplained difference exceeds the threshold.
    Incomplete,
    /// Genesys's details end before the interval does: its later keys cannot be checked yet.
    Partial,
}

impl Report {
    /// When Genesys's details end, if that is before the interval's end: the keys after it are
    /// `not_yet_available`, and the interval cannot be called complete.
    pub fn available_only_until(&self) -> Option<Timestamp> {
        self.available_until.filter(|until| *until < self.end)
    }

    /// Per flow (every flow with a row), its unexplained keys by side.
    pub fn unexplained_by_flow(&self) -> BTreeMap<&str, Unexplained> {
        let mut flows: BTreeMap<&str, Unexplained> = BTreeMap::new();
        for row in &self.rows {
            let flow = flows.entry(row.subject.flow.as_str()).or_default();
            flow.lacking += row.unexplained_on[Side::Genesys as usize];
            flow.extra += row.unexplained_on[Side::Ours as usize];
        }
        flows
    }

    /// Incomplete when a row's unexplained difference exceeds `threshold`; else partial while
    /// Genesys's details end before the interval does; else complete.
    pub fn verdict(&self, threshold: u64) -> Verdict {
        if self.exceeds(threshold) {
            Verdict::Incomplete
        } else if self.available_only_until().is_some() {
            Verdict::Partial
        } else {
            Verdict::Complete
        }
    }

    /// Whether a row's unexplained difference is more than `threshold` keys.
    pub fn exceeds(&self, threshold: u64) -> bool {
        self.rows.iter().any(|row| row.unexplained > threshold)
    }

    /// Per flow, the ledger's count over Genesys's, each without the keys a known reason puts
    /// on its side only: 1 when every difference is explained, below 1 for keys the ledger
    /// lacks, above for keys Genesys never counted. Flows Genesys counted nothing for are left
    /// out.
    pub fn coverage(&self) -> BTreeMap<&str, f64> {
        let mut sums: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for row in &self.rows {
            let sum = sums.entry(row.subject.flow.as_str()).or_default();
            // A side's explained keys are among its own (saturating only for safety's sake).
            sum.0 += row.ours.saturating_sub(row.explained[Side::Ours as usize]);
            sum.1 += row.genesys.saturating_sub(row.explained[Side::Genesys as usize]);
        }
        sums.into_iter()
            .filter(|(_, (_, genesys))| *genesys > 0)
            .map(|(flow, (ours, genesys))| (flow, ours as f64 / genesys as f64))
            .collect()
    }
}

/// Compares Genesys's counts with the ledger's keys in `interval`, the ledger read at `now` (a
/// claim is in flight only while its lease is live at `now`).
pub fn reconcile(interval: Interval, now: Timestamp, genesys: &GenesysSide, ledger: &[LedgerKey]) -> Report {
    let ours: Vec<&LedgerKey> = ledger.iter().filter(|key| interval.contains(key.time)).collect();
    let mut rows: BTreeMap<Subject, Row> = BTreeMap::new();
    for (subject, count) in &genesys.aggregates {
        row_of(&mut rows, subject).genesys += count;
    }
    for key in &genesys.keys {
        row_of(&mut rows, &Subject::attribute(&key.flow, &key.metric)).genesys += 1;
    }
    for key in ours.iter().filter(|key| key.delivered) {
        row_of(&mut rows, &key.subject).ours += 1;
    }
    for row in rows.values_mut() {
        row.difference = row.ours as i64 - row.genesys as i64;
    }
    match_attribute_keys(now, genesys, &ours, &mut rows);
    explain_aggregates(interval, now, &ours, &mut rows);
    Report {
        interval: interval.to_string(),
        available_until: genesys.available_until,
        rows: rows.into_values().collect(),
        end: interval.end,
    }
}

fn row_of<'a>(rows: &'a mut BTreeMap<Subject, Row>, subject: &Subject) -> &'a mut Row {
    rows.entry(subject.clone())
        .or_insert_with(|| Row::new(subject.clone()))
}

impl Row {
    fn new(subject: Subject) -> Row {
        Row {
            subject,
            genesys: 0,
            ours: 0,
            difference: 0,
            expected: BTreeMap::new(),
            unexplained: 0,
            stuck: 0,
            lacking: Vec::new(),
            extra: Vec::new(),
            explained: [0; 2],
            unexplained_on: [0; 2],
        }
    }

    /// `keys` on `side` only, for `reason`.
    fn explain(&mut self, reason: Reason, side: Side, keys: u64) {
        if keys > 0 {
            *self.expected.entry(reason).or_default() += keys;
            self.explained[side as usize] += keys;
        }
    }
}

/// Attribute metrics, key by key: each key on one side only is explained or listed. No key is
/// excused for being near the interval's edge: both sides time an attribute key by its own text.
fn match_attribute_keys(
    now: Timestamp,
    genesys: &GenesysSide,
    ours: &[&LedgerKey],
    rows: &mut BTreeMap<Subject, Row>,
) {
    let identity = |conversation: &str, key: &str| (conversation.to_owned(), key.to_owned());
    let theirs: BTreeSet<(String, String)> = genesys
        .keys
        .iter()
        .map(|key| identity(&key.conversation_id, &key.key))
        .collect();
    let attributes = || ours.iter().filter(|key| key.subject.source == "attribute");
    let delivered: BTreeSet<(String, String)> = attributes()
        .filter(|key| key.delivered)
        .map(|key| identity(&key.conversation_id, &key.key))
        .collect();
    let in_flight: BTreeSet<(String, String)> = attributes()
        .filter(|key| key.in_flight(now))
        .map(|key| identity(&key.conversation_id, &key.key))
        .collect();
    let stuck: BTreeSet<(String, String)> = attributes()
        .filter(|key| key.stuck(now))
        .map(|key| identity(&key.conversation_id, &key.key))
        .collect();
    for key in genesys.keys.iter() {
        let id = identity(&key.conversation_id, &key.key);
        if delivered.contains(&id) {
            continue;
        }
        let Some(row) = rows.get_mut(&Subject::attribute(&key.flow, &key.metric)) else {
            continue;
        };
        if in_flight.contains(&id) {
            row.explain(Reason::InFlight, Side::Genesys, 1);
        } else {
            row.stuck += u64::from(stuck.contains(&id));
            row.unexplained += 1;
            row.unexplained_on[Side::Genesys as usize] += 1;
            row.lacking.push(key.conversation_id.clone());
        }
    }
    for key in attributes().filter(|key| key.delivered) {
        if theirs.contains(&identity(&key.conversation_id, &key.key)) {
            continue;
        }
        let Some(row) = rows.get_mut(&key.subject) else {
            continue;
        };
        let ended = genesys
            .conversation_ends
            .get(&key.conversation_id)
            .copied()
            .flatten();
        if genesys.available_until.is_some_and(|until| key.time >= until) {
            row.explain(Reason::NotYetAvailable, Side::Ours, 1);
        } else if ended.is_some_and(|end| key.time > end) {
            row.explain(Reason::SetAfterConversationEnd, Side::Ours, 1);
        } else {
            row.unexplained += 1;
            row.unexplained_on[Side::Ours as usize] += 1;
            row.extra.push(key.conversation_id.clone());
        }
    }
    for row in rows.values_mut() {
        row.lacking.sort();
        row.lacking.dedup();
        row.extra.sort();
        row.extra.dedup();
    }
}

/// Milestones and outcomes, by count (Genesys gives no keys): the difference is explained as far
/// as the ledger's keys can account for it, the rest is unexplained.
fn explain_aggregates(
    interval: Interval,
    now: Timestamp,
    ours: &[&LedgerKey],
    rows: &mut BTreeMap<Subject, Row>,
) {
    // An outcome reached again in a conversation: Genesys keeps only the last result.
    let mut last: HashMap<(&str, &str, &str), Timestamp> = HashMap::new();
    for key in ours
        .iter()
        .filter(|key| key.delivered && key.subject.source == "outcome")
    {
        let at = last
            .entry((&key.conversation_id, &key.subject.flow, &key.subject.metric))
            .or_insert(key.time);
        *at = (*at).max(key.time);
    }
    for row in rows.values_mut().filter(|row| row.subject.source != "attribute") {
        let subject = row.subject.clone();
        let keys = || ours.iter().filter(|key| key.subject == subject);
        let mut left = row.difference.unsigned_abs();
        let side = if row.difference > 0 {
            Side::Ours
        } else {
            Side::Genesys
        };
        let mut take = |row: &mut Row, reason: Reason, available: usize| {
            let taken = left.min(available as u64);
            row.explain(reason, side, taken);
            left -= taken;
        };
        if row.difference > 0 {
            let repeated = keys()
                .filter(|key| key.delivered)
                .filter(|key| {
                    last.get(&(
                        key.conversation_id.as_str(),
                        key.subject.flow.as_str(),
                        key.subject.metric.as_str(),
                    ))
                    .is_some_and(|latest| key.time < *latest)
                })
                .count();
            take(row, Reason::LastOutcomeOnly, repeated);
            let edge = keys()
                .filter(|key| key.delivered && interval.near_edge(key.time))
                .count();
            take(row, Reason::IntervalEdge, edge);
        } else if row.difference < 0 {
            take(
                row,
                Reason::InFlight,
                keys().filter(|key| key.in_flight(now)).count(),
            );
        }
        row.unexplained = left;
        row.unexplained_on[side as usize] = left;
        if row.difference < 0 {
            row.stuck = left.min(keys().filter(|key| key.stuck(now)).count() as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("a test time")
    }

    fn hour() -> Interval {
        "2026-12-01T10:00:00Z/2026-12-01T11:00:00Z"
            .parse()
            .expect("interval")
    }

    /// When the ledger is read: the scheduled run's time, 15 minutes after the hour.
    fn read_at() -> Timestamp {
        at("2026-12-01T11:15:00Z")
    }

    fn key(conversation: &str, time: &str) -> (String, String) {
        (conversation.to_owned(), format!("IVRMetric_Menu({time})"))
    }

    fn theirs(keys: &[(String, String)]) -> GenesysSide {
        GenesysSide {
            keys: keys
                .iter()
                .map(|(conversation, key)| GenesysKey {
                    conversation_id: conversation.clone(),
                    key: key.clone(),
                    flow: "IVR".to_owned(),
                    metric: "Menu".to_owned(),
                    time: at(&key["IVRMetric_Menu(".len()..key.len() - 1]),
                })
                .collect(),
            ..GenesysSide::default()
        }
    }

    fn ours(keys: &[(String, String)]) -> Vec<LedgerKey> {
        keys.iter()
            .map(|(conversation, key)| LedgerKey {
                conversation_id: conversation.clone(),
                key: key.clone(),
                subject: Subject::attribute("IVR", "Menu"),
                time: at(&key["IVRMetric_Menu(".len()..key.len() - 1]),
                delivered: true,
                lease_expires: None,
            })
            .collect()
    }

    fn outcome(conversation: &str, time: &str, value: &str) -> LedgerKey {
        LedgerKey {
            conversation_id: conversation.to_owned(),
            key: format!("outcome:o1:{time}"),
            subject: Subject {
                source: "outcome",
                flow: "f1".to_owned(),
                metric: "o1".to_owned(),
                value: Some(value.to_owned()),
            },
            time: at(time),
            delivered: true,
            lease_expires: None,
        }
    }

    #[test]
    fn an_interval_is_start_and_end_or_start_and_duration() {
        let hour = hour();
        assert_eq!(hour.to_string(), "2026-12-01T10:00:00Z/2026-12-01T11:00:00Z");
        assert_eq!("2026-12-01T10:00:00Z/PT1H".parse::<Interval>(), Ok(hour));
        let day: Interval = "2026-12-01T00:00:00Z/P1D".parse().expect("a day");
        assert_eq!(day.to_string(), "2026-12-01T00:00:00Z/2026-12-02T00:00:00Z");
        assert_eq!(
            "2026-12-01T00:00:00Z/P1W"
                .parse::<Interval>()
                .map(|week| week.end),
            Ok(at("2026-12-08T00:00:00Z"))
        );
        // A month has no one length.
        assert_eq!(
            "2026-12-01T00:00:00Z/P1M".parse::<Interval>(),
            Err(IntervalError::Syntax)
        );
        assert_eq!(
            "2026-12-01T10:00:00Z".parse::<Interval>(),
            Err(IntervalError::Syntax)
        );
        assert!(matches!(
            "2026-12-01T11:00:00Z/2026-12-01T10:00:00Z".parse::<Interval>(),
            Err(IntervalError::Backwards { .. })
        ));
        assert_eq!(Interval::previous_hour(at("2026-12-01T11:07:00Z")), hour);
    }

    #[test]
    fn the_same_keys_on_both_sides_are_complete() {
        let keys = [
            key("c1", "2026-12-01T10:10:00Z"),
            key("c2", "2026-12-01T10:20:00Z"),
        ];
        let report = reconcile(hour(), read_at(), &theirs(&keys), &ours(&keys));
        assert_eq!(report.rows.len(), 1);
        let row = &report.rows[0];
        assert_eq!(
            (row.genesys, row.ours, row.difference, row.unexplained),
            (2, 2, 0, 0)
        );
        assert!(!report.exceeds(0));
        assert_eq!(report.coverage().get("IVR"), Some(&1.0));
    }

    #[test]
    fn a_lost_key_and_a_key_genesys_lacks_are_listed_with_their_conversations() {
        let genesys = [
            key("c1", "2026-12-01T10:10:00Z"),
            key("lost", "2026-12-01T10:20:00Z"),
        ];
        let ledger = [
            key("c1", "2026-12-01T10:10:00Z"),
            key("extra", "2026-12-01T10:30:00Z"),
        ];
        let report = reconcile(hour(), read_at(), &theirs(&genesys), &ours(&ledger));
        let row = &report.rows[0];
        // Equal counts hide nothing: one key lost, another counted that Genesys never had.
        assert_eq!((row.difference, row.unexplained), (0, 2));
        assert_eq!(row.lacking, ["lost"]);
        assert_eq!(row.extra, ["extra"]);
        assert!(report.exceeds(1));
        assert!(!report.exceeds(2));
        assert_eq!(
            report.unexplained_by_flow().get("IVR"),
            Some(&Unexplained { lacking: 1, extra: 1 })
        );
        assert_eq!(
            report.coverage().get("IVR"),
            Some(&1.0),
            "a loss and a double cancel out"
        );
    }

    #[test]
    fn known_differences_are_explained() {
        let mut genesys = theirs(&[
            key("c1", "2026-12-01T10:10:00Z"),
            key("flying", "2026-12-01T10:20:00Z"),
        ]);
        genesys
            .conversation_ends
            .insert("c1".to_owned(), Some(at("2026-12-01T10:11:00Z")));
        genesys.available_until = Some(at("2026-12-01T10:50:00Z"));
        let mut ledger = ours(&[
            key("c1", "2026-12-01T10:10:00Z"),
            key("c1", "2026-12-01T10:12:00Z"),
            key("late", "2026-12-01T10:55:00Z"),
            key("flying", "2026-12-01T10:20:00Z"),
        ]);
        ledger[3].delivered = false;
        ledger[3].lease_expires = Some(at("2026-12-01T11:15:30Z"));
        let report = reconcile(hour(), read_at(), &genesys, &ledger);
        let row = &report.rows[0];
        assert_eq!((row.genesys, row.ours, row.unexplained), (2, 3, 0));
        assert_eq!(
            row.expected,
            BTreeMap::from([
                (Reason::SetAfterConversationEnd, 1),
                (Reason::NotYetAvailable, 1),
                (Reason::InFlight, 1),
            ])
        );
        assert_eq!(report.coverage().get("IVR"), Some(&1.0));
    }

    #[test]
    fn a_claim_whose_lease_is_over_is_stuck_a_loss_not_in_flight() {
        let keys = [
            key("c1", "2026-12-01T10:10:00Z"),
            key("stuck", "2026-12-01T10:20:00Z"),
        ];
        let mut ledger = ours(&keys);
        ledger[1].delivered = false;
        // Its lease ran out some 40 s after the claim, long before the ledger is read.
        ledger[1].lease_expires = Some(at("2026-12-01T10:20:40Z"));
        let report = reconcile(hour(), read_at(), &theirs(&keys), &ledger);
        let row = &report.rows[0];
        assert_eq!((row.unexplained, row.stuck), (1, 1));
        assert!(row.expected.is_empty(), "{:?}", row.expected);
        assert_eq!(row.lacking, ["stuck"]);
        assert!(report.exceeds(0));
        assert_eq!(report.coverage().get("IVR"), Some(&0.5));
        let mut table = Vec::new();
        write_table(&report, 0, &mut table).expect("written");
        let table = String::from_utf8(table).expect("UTF-8");
        assert!(table.contains("1 (1 stuck: run flow-metrics redrive)"), "{table}");
    }

    #[test]
    fn a_stuck_milestone_is_a_loss_and_a_live_claim_is_in_flight() {
        let milestone = Subject {
            source: "milestone",
            flow: "f1".to_owned(),
            metric: "m1".to_owned(),
            value: None,
        };
        let genesys = GenesysSide {
            aggregates: BTreeMap::from([(milestone.clone(), 2)]),
            ..GenesysSide::default()
        };
        let claimed = |conversation: &str, lease: &str| LedgerKey {
            conversation_id: conversation.to_owned(),
            key: "milestone:m1".to_owned(),
            subject: milestone.clone(),
            time: at("2026-12-01T10:30:00Z"),
            delivered: false,
            lease_expires: Some(at(lease)),
        };
        let ledger = [
            claimed("c1", "2026-12-01T10:30:40Z"),
            claimed("c2", "2026-12-01T11:15:20Z"),
        ];
        let report = reconcile(hour(), read_at(), &genesys, &ledger);
        let row = &report.rows[0];
        assert_eq!(row.expected, BTreeMap::from([(Reason::InFlight, 1)]));
        assert_eq!((row.unexplained, row.stuck), (1, 1));
        assert_eq!(report.coverage().get("f1"), Some(&0.0));
    }

    #[test]
    fn an_attribute_key_near_the_edge_that_the_ledger_lacks_is_a_loss() {
        // Both sides time an attribute key by its text: at 10:00:30 it is in the hour for both.
        let genesys = theirs(&[
            key("c1", "2026-12-01T10:10:00Z"),
            key("edge", "2026-12-01T10:00:30Z"),
        ]);
        let ledger = ours(&[
            key("c1", "2026-12-01T10:10:00Z"),
            key("doubled", "2026-12-01T10:59:40Z"),
        ]);
        let report = reconcile(hour(), read_at(), &genesys, &ledger);
        let row = &report.rows[0];
        assert!(row.expected.is_empty(), "{:?}", row.expected);
        assert_eq!(row.unexplained, 2);
        assert_eq!(row.lacking, ["edge"]);
        assert_eq!(row.extra, ["doubled"]);
    }

    #[test]
    fn each_flows_table_is_written_once() {
        // Rows are ordered by source first: f1's attribute row, f2's, then f1's milestone row.
        let genesys = GenesysSide {
            aggregates: BTreeMap::from([(
                Subject {
                    source: "milestone",
                    flow: "f1".to_owned(),
                    metric: "m1".to_owned(),
                    value: None,
                },
                1,
            )]),
            keys: ["f1", "f2"]
                .map(|flow| GenesysKey {
                    conversation_id: "c1".to_owned(),
                    key: format!("{flow}Metric_Menu(2026-12-01T10:10:00Z)"),
                    flow: flow.to_owned(),
                    metric: "Menu".to_owned(),
                    time: at("2026-12-01T10:10:00Z"),
                })
                .to_vec(),
            ..GenesysSide::default()
        };
        let report = reconcile(hour(), read_at(), &genesys, &[]);
        let mut table = Vec::new();
        write_table(&report, 0, &mut table).expect("written");
        let table = String::from_utf8(table).expect("UTF-8");
        assert_eq!(table.matches("flow f1:").count(), 1, "{table}");
        assert_eq!(table.matches("flow f2:").count(), 1, "{table}");
    }

    #[test]
    fn an_outcome_reached_twice_is_counted_once_by_genesys() {
        let failure = Subject {
            source: "outcome",
            flow: "f1".to_owned(),
            metric: "o1".to_owned(),
            value: Some("FAILURE".to_owned()),
        };
        let success = Subject {
            value: Some("SUCCESS".to_owned()),
            ..failure.clone()
        };
        let genesys = GenesysSide {
            aggregates: BTreeMap::from([(success.clone(), 1), (failure.clone(), 1)]),
            ..GenesysSide::default()
        };
        let ledger = [
            outcome("c1", "2026-12-01T10:10:00Z", "FAILURE"),
            outcome("c1", "2026-12-01T10:12:00Z", "SUCCESS"),
            // c2's failure is the one Genesys counts.
            outcome("c2", "2026-12-01T10:20:00Z", "FAILURE"),
        ];
        let report = reconcile(hour(), read_at(), &genesys, &ledger);
        let row = |subject: &Subject| {
            report
                .rows
                .iter()
                .find(|row| &row.subject == subject)
                .expect("a row")
        };
        assert_eq!(row(&success).unexplained, 0);
        let failed = row(&failure);
        assert_eq!((failed.ours, failed.genesys, failed.difference), (2, 1, 1));
        assert_eq!(failed.expected, BTreeMap::from([(Reason::LastOutcomeOnly, 1)]));
        assert_eq!(failed.unexplained, 0);
        assert_eq!(report.coverage().get("f1"), Some(&1.0));
    }

    #[test]
    fn a_milestone_genesys_counted_and_the_ledger_lacks_is_unexplained() {
        let milestone = Subject {
            source: "milestone",
            flow: "f1".to_owned(),
            metric: "m1".to_owned(),
            value: None,
        };
        let genesys = GenesysSide {
            aggregates: BTreeMap::from([(milestone, 3)]),
            ..GenesysSide::default()
        };
        let report = reconcile(hour(), read_at(), &genesys, &[]);
        assert_eq!((report.rows[0].difference, report.rows[0].unexplained), (-3, 3));
        assert_eq!(report.coverage().get("f1"), Some(&0.0));
    }
}
