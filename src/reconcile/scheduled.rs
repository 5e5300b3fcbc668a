//! The scheduled reconciliation, run hourly by the stack's schedule when `reconcileSchedule` is
//! on: the hour before the scheduled time reconciled as `flow-metrics reconcile` does, each
//! flow's coverage (the ledger's count over Genesys's) sent to DataDog as [`COVERAGE_METRIC`],
//! and each difference no known reason explains logged with its conversations. The scheduled
//! time comes with the invocation (`{"time": …}`), so that a late or repeated invocation
//! reconciles the hour it was meant for.

use jiff::Timestamp;
use tokio::time::Instant;

use super::genesys::{AnalyticsError, GenesysAnalytics};
use super::{Interval, Report, ledger::keys_in, reconcile};
use crate::ledger::{DynamoDbLedger, LedgerError};
use crate::sink::SinkError;
use crate::sink::datadog::payload::Series;
use crate::sink::datadog::tags::tag;
use crate::sink::datadog::{COVERAGE_METRIC, DataDogSink};

/// Scan segments the function reads the hour's keys with.
const SEGMENTS: u32 = 4;

/// Why a scheduled run failed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduledError {
    #[error("cannot read Genesys's analytics: {0}")]
    Genesys(#[from] AnalyticsError),
    #[error("cannot scan the ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("cannot send the coverage to DataDog: {0}")]
    DataDog(#[from] SinkError),
    #[error(
        "the invocation's payload is not {{\"time\": \"<RFC 3339>\"}} (the hour before that time is \
         reconciled; without a time, the hour before now): {0}"
    )]
    Payload(String),
}

/// When the run was scheduled: the payload's `time` (EventBridge Scheduler's
/// `<aws.scheduler.scheduled-time>`, or a scheduled event's own), else `now`.
pub fn scheduled_time(payload: &str, now: Timestamp) -> Result<Timestamp, ScheduledError> {
    #[derive(serde::Deserialize)]
    struct Scheduled {
        time: Option<Timestamp>,
    }
    if payload.trim().is_empty() || payload.trim() == "null" {
        return Ok(now);
    }
    serde_json::from_str::<Scheduled>(payload)
        .map(|scheduled| scheduled.time.unwrap_or(now))
        .map_err(|error| ScheduledError::Payload(error.to_string()))
}

/// What the scheduled run works with, built once per cold start.
pub struct ScheduledReconcile {
    pub analytics: GenesysAnalytics,
    pub ledger: DynamoDbLedger,
    pub sink: DataDogSink,
}

/// Each flow's coverage as a distribution point at `at`, tagged with the flow and `static_tags`.
pub fn coverage_series(report: &Report, at: Timestamp, static_tags: &[String]) -> Vec<Series> {
    report
        .coverage()
        .into_iter()
        .map(|(flow, share)| {
            let mut tags = vec![tag("flow", flow)];
            tags.extend(static_tags.iter().cloned());
            Series::distribution(COVERAGE_METRIC, tags, vec![(at.as_second(), vec![share])])
        })
        .collect()
}

impl ScheduledReconcile {
    /// Reconciles the hour before the one `scheduled_at` is in, sends the coverage (timed at
    /// the hour's end) before `deadline`, and logs what is unexplained.
    pub async fn run(
        &self,
        scheduled_at: Timestamp,
        deadline: Option<Instant>,
    ) -> Result<Report, ScheduledError> {
        let interval = Interval::previous_hour(scheduled_at);
        let genesys = self.analytics.side(interval).await?;
        let (keys, _) = keys_in(&self.ledger, SEGMENTS, interval).await?;
        let report = reconcile(interval, &genesys, &keys);
        for row in report.rows.iter().filter(|row| row.unexplained > 0) {
            tracing::warn!(
                interval = report.interval,
                source = row.subject.source,
                flow = row.subject.flow,
                metric = row.subject.metric,
                value = row.subject.value,
                genesys = row.genesys,
                ours = row.ours,
                unexplained = row.unexplained,
                lacking = ?row.lacking,
                extra = ?row.extra,
                "reconcile: a difference no known reason explains"
            );
        }
        let series = coverage_series(&report, interval.end, self.sink.static_tags());
        let flows = series.len();
        if !series.is_empty() {
            self.sink.send_series(series, deadline).await?;
        }
        tracing::info!(
            interval = report.interval,
            rows = report.rows.len(),
            flows,
            unexplained = report.rows.iter().map(|row| row.unexplained).sum::<u64>(),
            "reconciled"
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hour_is_the_one_before_the_scheduled_time() {
        let now: Timestamp = "2026-12-01T13:40:00Z".parse().expect("now");
        let time = |payload: &str| scheduled_time(payload, now).map_err(|error| error.to_string());
        assert_eq!(
            time(r#"{"time": "2026-12-01T11:15:00Z"}"#),
            Ok("2026-12-01T11:15:00Z".parse().expect("time"))
        );
        // A scheduled event of EventBridge's, with its other fields.
        assert_eq!(
            time(r#"{"detail-type": "Scheduled Event", "time": "2026-12-01T11:15:00Z", "detail": {}}"#),
            Ok("2026-12-01T11:15:00Z".parse().expect("time"))
        );
        assert_eq!(time("{}"), Ok(now));
        assert_eq!(time("null"), Ok(now));
        assert!(time(r#"{"time": "eleven"}"#).is_err_and(|error| error.contains("RFC 3339")));
    }
}
