//! The audit: what the ledger says was counted, per flow and metric (milestones and outcomes
//! per flow id and their own id, with their source), and optionally per time bucket of the
//! key's time, split into delivered, in-flight and stuck keys.
//!
//! Pure aggregation and formatting; reading the table is the DynamoDB ledger's scan.
//!
//! [`CustomMetrics`] counts what the delivered keys cost in DataDog: the distinct (metric name,
//! tags) pairs their points went to, each a distribution that DataDog bills as 5 custom metrics
//! (count, sum, min, max, avg), 5 more with percentile aggregations (p50, p75, p90, p95, p99).
//! - delivered: pushed to the sink and confirmed; DataDog should show exactly these.
//! - claimed: claimed by an invocation whose lease has not expired: in flight.
//! - stuck: claimed, lease expired, never confirmed (a crash, or a released claim waiting for
//!   its event's retry). `flow-metrics redrive` delivers them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use jiff::fmt::temporal::DateTimePrinter;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::count::{Occurrence, StepIds};
use crate::key::Source;
use crate::ledger::dynamodb::{LedgerItem, schema};
use crate::sink::datadog::MetricNames;
use crate::sink::datadog::payload::{DURATION_SUFFIX, ELAPSED_SUFFIX, series_of};

/// How to bucket key times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    fn millis(self) -> i64 {
        match self {
            Bucket::Minute => 60_000,
            Bucket::Hour => 3_600_000,
            Bucket::Day => 86_400_000,
        }
    }
}

/// The source of attribute keys, which their items leave unwritten.
const ATTRIBUTE: &str = "attribute";

/// Counts of one (source, flow, metric, bucket).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AuditRow {
    /// `attribute`, `milestone` or `outcome`; left out of JSON for attributes, and a column of
    /// the table and CSV only when some row is not an attribute's.
    #[serde(skip_serializing_if = "is_attribute")]
    pub source: String,
    pub flow: String,
    pub metric: String,
    /// Start of the bucket (UTC RFC 3339), when bucketing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    pub delivered: u64,
    pub claimed: u64,
    pub stuck: u64,
    /// Of `delivered`, keys delivered by a push that may have counted them twice (left out
    /// while none).
    #[serde(skip_serializing_if = "is_zero")]
    pub possibly_doubled: u64,
}

/// The aggregation of ledger items.
#[derive(Debug)]
pub struct Audit {
    bucket: Option<Bucket>,
    now_ms: i64,
    counts: BTreeMap<(String, String, String, Option<i64>), [u64; 4]>,
}

fn is_attribute(source: &str) -> bool {
    source == ATTRIBUTE
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

impl Audit {
    /// An empty audit; `now` decides which claims are still in flight.
    pub fn new(bucket: Option<Bucket>, now: Timestamp) -> Self {
        Audit {
            bucket,
            now_ms: now.as_millisecond(),
            counts: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, item: &LedgerItem) {
        let column = if item.state == schema::DELIVERED {
            0
        } else if item.lease_expires_ms.is_some_and(|lease| lease >= self.now_ms) {
            1
        } else {
            2
        };
        let bucket = self
            .bucket
            .map(|bucket| item.key_time_ms.div_euclid(bucket.millis()) * bucket.millis());
        let counts = self
            .counts
            .entry((
                item.source.clone().unwrap_or_else(|| ATTRIBUTE.to_owned()),
                item.flow.clone(),
                item.metric.clone(),
                bucket,
            ))
            .or_default();
        counts[column] += 1;
        if column == 0 && item.possibly_doubled {
            counts[3] += 1;
        }
    }

    /// One row per (source, flow, metric, bucket), sorted.
    pub fn rows(&self) -> Vec<AuditRow> {
        self.counts
            .iter()
            .map(
                |((source, flow, metric, bucket), [delivered, claimed, stuck, doubled])| AuditRow {
                    source: source.clone(),
                    flow: flow.clone(),
                    metric: metric.clone(),
                    bucket: bucket.map(bucket_label),
                    delivered: *delivered,
                    claimed: *claimed,
                    stuck: *stuck,
                    possibly_doubled: *doubled,
                },
            )
            .collect()
    }
}

fn bucket_label(start_ms: i64) -> String {
    Timestamp::from_millisecond(start_ms)
        .map(|start| DateTimePrinter::new().timestamp_to_string(&start))
        .unwrap_or_else(|_| start_ms.to_string())
}

/// The sum of every row.
pub fn totals(rows: &[AuditRow]) -> (u64, u64, u64) {
    rows.iter().fold((0, 0, 0), |(d, c, s), row| {
        (d + row.delivered, c + row.claimed, s + row.stuck)
    })
}

/// Which optional columns the rows need: the source, the bucket, the possible doubles.
struct Columns {
    sourced: bool,
    bucketed: bool,
    doubled: bool,
}

impl Columns {
    fn of(rows: &[AuditRow]) -> Columns {
        Columns {
            sourced: rows.iter().any(|row| !is_attribute(&row.source)),
            bucketed: rows.iter().any(|row| row.bucket.is_some()),
            doubled: rows.iter().any(|row| row.possibly_doubled > 0),
        }
    }

    /// How many count columns end the row.
    fn counts(&self) -> usize {
        if self.doubled { 4 } else { 3 }
    }

    fn header(&self) -> Vec<&'static str> {
        let mut header = Vec::with_capacity(6);
        if self.sourced {
            header.push("source");
        }
        header.extend(["flow", "metric"]);
        if self.bucketed {
            header.push("bucket");
        }
        header.extend(["delivered", "claimed", "stuck"]);
        if self.doubled {
            header.push("possibly doubled");
        }
        header
    }

    fn cells(&self, row: &AuditRow) -> Vec<String> {
        let mut cells = Vec::with_capacity(7);
        if self.sourced {
            cells.push(row.source.clone());
        }
        cells.extend([row.flow.clone(), row.metric.clone()]);
        if self.bucketed {
            cells.push(row.bucket.clone().unwrap_or_default());
        }
        cells.extend([row.delivered, row.claimed, row.stuck].map(|count| count.to_string()));
        if self.doubled {
            cells.push(row.possibly_doubled.to_string());
        }
        cells
    }
}

/// An aligned table for people, with a totals row.
pub fn write_table(rows: &[AuditRow], out: &mut dyn Write) -> std::io::Result<()> {
    let columns = Columns::of(rows);
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::ASCII_MARKDOWN);
    let header = columns.header();
    let width = header.len();
    table.set_header(header);
    for row in rows {
        table.add_row(columns.cells(row));
    }
    let (delivered, claimed, stuck) = totals(rows);
    let counts = columns.counts();
    let mut total = vec![String::new(); width - counts];
    total[0] = "total".to_owned();
    total.extend([delivered, claimed, stuck].map(|count| count.to_string()));
    if columns.doubled {
        let doubled: u64 = rows.iter().map(|row| row.possibly_doubled).sum();
        total.push(doubled.to_string());
    }
    table.add_row(total);
    for column in width - counts..width {
        if let Some(column) = table.column_mut(column) {
            column.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
    }
    writeln!(out, "{table}")
}

/// CSV with a header line.
pub fn write_csv(rows: &[AuditRow], out: &mut dyn Write) -> Result<(), csv::Error> {
    let columns = Columns::of(rows);
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(columns.header())?;
    for row in rows {
        writer.write_record(columns.cells(row))?;
    }
    writer.flush()?;
    Ok(())
}

/// A JSON array of `{"source"?,"flow","metric","bucket"?,"delivered","claimed","stuck"}`.
pub fn write_json(rows: &[AuditRow], out: &mut dyn Write) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, rows)?;
    writeln!(out)
}

/// Custom metrics DataDog bills per tag combination of a distribution: count, sum, min, max, avg.
pub const PER_DISTRIBUTION: u64 = 5;

/// Custom metrics percentile aggregations add per tag combination: p50, p75, p90, p95, p99.
pub const PER_PERCENTILES: u64 = 5;

/// The distinct series the delivered keys of a ledger went to, per metric name.
#[derive(Debug)]
pub struct CustomMetrics {
    metrics: MetricNames,
    static_tags: Vec<String>,
    series: BTreeMap<String, BTreeSet<Vec<String>>>,
}

/// One metric name's tag combinations and what they cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomMetricRow {
    pub metric: String,
    pub tag_combinations: u64,
    /// `5 ×` the combinations.
    pub custom_metrics: u64,
    /// `10 ×` the combinations, for a metric whose percentiles matter (time to a step, an
    /// outcome's duration); `None` for the counts, whose percentiles say nothing (every value
    /// is 1).
    pub with_percentiles: Option<u64>,
}

impl CustomMetrics {
    /// Series as the sink names them: `metrics` (with `.elapsed` on or off) and the static tags.
    pub fn new(metrics: MetricNames, static_tags: Vec<String>) -> Self {
        CustomMetrics {
            metrics,
            static_tags,
            series: BTreeMap::new(),
        }
    }

    /// Counts a delivered key's series. The ledger keeps ids of flows, milestones and outcomes
    /// where the tags carry names: each id counts once (an id sent while its name was unknown
    /// made a series of its own too). Attribute keys are counted with their `.elapsed`, which
    /// every live event carries (a redrive sends counts only).
    pub fn add(&mut self, item: &LedgerItem) {
        if item.state != schema::DELIVERED {
            return;
        }
        let source = match item.source.as_deref() {
            Some("milestone") => Source::Milestone,
            Some("outcome") => Source::Outcome {
                value: item.outcome_value.as_deref(),
                duration: item.duration_ms.map(SignedDuration::from_millis),
            },
            _ => Source::Attribute,
        };
        let occurrence = Occurrence {
            conversation_id: &item.conversation_id,
            flow: &item.flow,
            metric: &item.metric,
            ids: StepIds::of(source, &item.flow, &item.metric),
            key: &item.attribute_key,
            time: Timestamp::from_millisecond(item.key_time_ms).unwrap_or(Timestamp::UNIX_EPOCH),
            elapsed: Some(SignedDuration::ZERO),
            source,
        };
        for (metric, tags) in series_of(&occurrence, &self.metrics, &self.static_tags) {
            self.series.entry(metric).or_default().insert(tags);
        }
    }

    /// Whether a metric's percentiles are worth turning on.
    fn percentiles_matter(&self, metric: &str) -> bool {
        metric == format!("{}{ELAPSED_SUFFIX}", self.metrics.attribute)
            || metric == format!("{}{DURATION_SUFFIX}", self.metrics.outcome)
    }

    /// One row per metric name that received points, sorted by name.
    pub fn rows(&self) -> Vec<CustomMetricRow> {
        self.series
            .iter()
            .map(|(metric, combinations)| {
                let tag_combinations = combinations.len() as u64;
                let custom_metrics = PER_DISTRIBUTION * tag_combinations;
                CustomMetricRow {
                    metric: metric.clone(),
                    tag_combinations,
                    custom_metrics,
                    with_percentiles: self
                        .percentiles_matter(metric)
                        .then_some(custom_metrics + PER_PERCENTILES * tag_combinations),
                }
            })
            .collect()
    }

    /// The custom metrics of every row, without percentiles and with them where they matter.
    pub fn totals(&self) -> (u64, u64) {
        self.rows().iter().fold((0, 0), |(without, with), row| {
            (
                without + row.custom_metrics,
                with + row.with_percentiles.unwrap_or(row.custom_metrics),
            )
        })
    }

    /// What the rows come to, for people.
    pub fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let rows = self.rows();
        writeln!(
            out,
            "DataDog custom metrics of the delivered keys' series ({PER_DISTRIBUTION} per tag combination \
             of a distribution: count, sum, min, max, avg; percentiles p50, p75, p90, p95, p99 add \
             {PER_PERCENTILES} more):"
        )?;
        let width = rows.iter().map(|row| row.metric.len()).max().unwrap_or(0).max(5);
        for row in &rows {
            write!(
                out,
                "  {:<width$}  {:>7} tag combination(s)  {:>8} custom metrics",
                row.metric, row.tag_combinations, row.custom_metrics
            )?;
            match row.with_percentiles {
                Some(with) => writeln!(out, ", {with} with percentiles")?,
                None => writeln!(out)?,
            }
        }
        let (without, with) = self.totals();
        let percentiles: Vec<&str> = rows
            .iter()
            .filter(|row| row.with_percentiles.is_some())
            .map(|row| row.metric.as_str())
            .collect();
        write!(
            out,
            "  {:<width$}  {:>26}  {without:>8} custom metrics",
            "total", ""
        )?;
        if percentiles.is_empty() {
            writeln!(out)
        } else {
            writeln!(out, ", {with} with percentiles on {}", percentiles.join(" and "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(flow: &str, metric: &str, key_time: &str, state: &str, lease_ms: Option<i64>) -> LedgerItem {
        LedgerItem {
            conversation_id: "c".to_owned(),
            attribute_key: format!("{flow}Metric_{metric}({key_time})"),
            flow: flow.to_owned(),
            metric: metric.to_owned(),
            key_time_ms: key_time.parse::<Timestamp>().expect("time").as_millisecond(),
            first_seen_ms: 0,
            state: state.to_owned(),
            lease_expires_ms: lease_ms,
            source: None,
            outcome_value: None,
            duration_ms: None,
            possibly_doubled: false,
        }
    }

    fn now() -> Timestamp {
        "2026-03-07T12:00:00Z".parse().expect("time")
    }

    fn sample(bucket: Option<Bucket>) -> Vec<AuditRow> {
        let live = now().as_millisecond() + 1;
        let mut audit = Audit::new(bucket, now());
        for item in [
            item("Billing, IVR", "Menu", "2026-03-07T10:15:00Z", "delivered", None),
            item("Billing, IVR", "Menu", "2026-03-07T10:45:00Z", "delivered", None),
            item(
                "Billing, IVR",
                "Menu",
                "2026-03-07T11:05:00Z",
                "claimed",
                Some(live),
            ),
            item("Billing, IVR", "Menu", "2026-03-07T11:06:00Z", "claimed", Some(0)),
            item(
                "Routing",
                "Start",
                "2026-03-06T23:59:59Z",
                "claimed",
                Some(live - 2),
            ),
        ] {
            audit.add(&item);
        }
        audit.rows()
    }

    #[test]
    fn delivered_in_flight_and_stuck_are_told_apart() {
        let rows = sample(None);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].delivered, rows[0].claimed, rows[0].stuck), (2, 1, 1));
        assert_eq!((rows[1].delivered, rows[1].claimed, rows[1].stuck), (0, 0, 1));
        assert_eq!(totals(&rows), (2, 1, 2));
    }

    #[test]
    fn buckets_split_by_the_key_time_in_utc() {
        let by_hour = sample(Some(Bucket::Hour));
        let labels: Vec<_> = by_hour
            .iter()
            .map(|row| row.bucket.clone().expect("bucket"))
            .collect();
        assert_eq!(
            labels,
            [
                "2026-03-07T10:00:00Z",
                "2026-03-07T11:00:00Z",
                "2026-03-06T23:00:00Z"
            ]
        );
        let by_day = sample(Some(Bucket::Day));
        assert_eq!(by_day[1].bucket.as_deref(), Some("2026-03-06T00:00:00Z"));
    }

    #[test]
    fn json_rows_have_the_documented_fields() {
        let mut out = Vec::new();
        write_json(&sample(None), &mut out).expect("json");
        let rows: serde_json::Value = serde_json::from_slice(&out).expect("valid json");
        assert_eq!(
            rows[0],
            serde_json::json!({"flow": "Billing, IVR", "metric": "Menu", "delivered": 2, "claimed": 1, "stuck": 1})
        );
        let mut bucketed = Vec::new();
        write_json(&sample(Some(Bucket::Day)), &mut bucketed).expect("json");
        let rows: serde_json::Value = serde_json::from_slice(&bucketed).expect("valid json");
        assert_eq!(rows[0]["bucket"], "2026-03-07T00:00:00Z");
    }

    #[test]
    fn milestones_and_outcomes_are_rows_of_their_own_with_their_source() {
        let mut audit = Audit::new(None, now());
        audit.add(&item(
            "Routing",
            "Start",
            "2026-03-07T10:15:00Z",
            "delivered",
            None,
        ));
        for source in ["milestone", "outcome"] {
            audit.add(&LedgerItem {
                source: Some(source.to_owned()),
                ..item("flow-id", "its-id", "2026-03-07T10:15:00Z", "delivered", None)
            });
        }
        let rows = audit.rows();
        let sources: Vec<&str> = rows.iter().map(|row| row.source.as_str()).collect();
        assert_eq!(sources, ["attribute", "milestone", "outcome"]);
        let mut out = Vec::new();
        write_csv(&rows, &mut out).expect("csv");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "source,flow,metric,delivered,claimed,stuck\nattribute,Routing,Start,1,0,0\n\
             milestone,flow-id,its-id,1,0,0\noutcome,flow-id,its-id,1,0,0\n"
        );
        let mut json = Vec::new();
        write_json(&rows, &mut json).expect("json");
        let json: serde_json::Value = serde_json::from_slice(&json).expect("valid json");
        assert_eq!(json[0].get("source"), None);
        assert_eq!(json[1]["source"], "milestone");
    }

    #[test]
    fn custom_metrics_count_delivered_keys_only_and_add_up() {
        let mut custom = CustomMetrics::new(MetricNames::default(), vec!["env:prod".to_owned()]);
        custom.add(&item(
            "Routing",
            "Start",
            "2026-03-07T10:15:00Z",
            "delivered",
            None,
        ));
        custom.add(&item(
            "Routing",
            "Start",
            "2026-03-07T10:16:00Z",
            "delivered",
            None,
        ));
        custom.add(&item(
            "Routing",
            "Menu",
            "2026-03-07T10:16:00Z",
            "delivered",
            None,
        ));
        custom.add(&item(
            "Routing",
            "Stuck",
            "2026-03-07T10:16:00Z",
            "claimed",
            Some(0),
        ));
        let rows = custom.rows();
        assert_eq!(
            rows,
            [
                CustomMetricRow {
                    metric: "genesys.flow.metric".to_owned(),
                    tag_combinations: 2,
                    custom_metrics: 10,
                    with_percentiles: None,
                },
                CustomMetricRow {
                    metric: "genesys.flow.metric.elapsed".to_owned(),
                    tag_combinations: 2,
                    custom_metrics: 10,
                    with_percentiles: Some(20),
                },
            ]
        );
        assert_eq!(custom.totals(), (20, 30));
        let mut out = Vec::new();
        custom.write(&mut out).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        let total = text.lines().last().expect("a total line");
        assert!(total.starts_with("  total"), "{text}");
        assert!(
            total.ends_with("20 custom metrics, 30 with percentiles on genesys.flow.metric.elapsed"),
            "{text}"
        );
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut out = Vec::new();
        write_csv(&sample(None), &mut out).expect("csv");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "flow,metric,delivered,claimed,stuck\n\"Billing, IVR\",Menu,2,1,1\nRouting,Start,0,0,1\n"
        );
    }

    #[test]
    fn the_table_is_aligned_with_a_totals_row() {
        let mut out = Vec::new();
        write_table(&sample(None), &mut out).expect("table");
        let table = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(
            lines
                .iter()
                .all(|line| line.chars().count() == lines[0].chars().count()),
            "{table}"
        );
        assert!(lines[4].starts_with("| total"), "{table}");
        assert!(lines[4].trim_end().ends_with("2 |"), "{table}");
    }
}
