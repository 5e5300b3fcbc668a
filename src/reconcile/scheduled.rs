//! The scheduled reconciliation, run hourly by the stack's schedule when `reconcileSchedule` is
//! on: the latest whole hour that ends both by the scheduled time's hour and by Genesys's
//! `dataAvailabilityDate` reconciled as `flow-metrics reconcile` does, each flow's coverage
//! (the ledger's count over Genesys's) sent to DataDog as [`COVERAGE_METRIC`] timed at the run,
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
use crate::sink::datadog::{COVERAGE_METRIC, DataDogSink, UNEXPLAINED_METRIC};

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

/// The latest whole hour that ends at or before both the start of the hour `scheduled_at` is in
/// and `available` (Genesys's `dataAvailabilityDate`, when it says).
pub fn hour_to_reconcile(scheduled_at: Timestamp, available: Option<Timestamp>) -> Interval {
    Interval::previous_hour(available.map_or(scheduled_at, |until| until.min(scheduled_at)))
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

/// Each flow's unexplained keys as two distribution points at `at`, tagged with the flow,
/// `side:lacking` or `side:extra`, and `static_tags` (zeros too: an hour that heals shows so).
pub fn unexplained_series(report: &Report, at: Timestamp, static_tags: &[String]) -> Vec<Series> {
    report
        .unexplained_by_flow()
        .into_iter()
        .flat_map(|(flow, keys)| {
            [("lacking", keys.lacking), ("extra", keys.extra)].map(|(side, count)| {
                let mut tags = vec![tag("flow", flow), tag("side", side)];
                tags.extend(static_tags.iter().cloned());
                Series::distribution(
                    UNEXPLAINED_METRIC,
                    tags,
                    vec![(at.as_second(), vec![count as f64])],
                )
            })
        })
        .collect()
}

impl ScheduledReconcile {
    /// Reconciles the latest whole hour ending by both the hour `scheduled_at` is in and the
    /// details' availability, sends the coverage (timed at `now`: DataDog takes points up to an
    /// hour old, and a late run's hour may be older) before `deadline`, and logs what is
    /// unexplained. A failure is logged too, before it is returned.
    pub async fn run(
        &self,
        scheduled_at: Timestamp,
        now: Timestamp,
        deadline: Option<Instant>,
    ) -> Result<Report, ScheduledError> {
        let ran = self.reconcile(scheduled_at, now, deadline).await;
        if let Err(error) = &ran {
            tracing::error!(
                error = %error,
                scheduled_at = %scheduled_at,
                "reconcile failed"
            );
        }
        ran
    }

    async fn reconcile(
        &self,
        scheduled_at: Timestamp,
        now: Timestamp,
        deadline: Option<Instant>,
    ) -> Result<Report, ScheduledError> {
        let available = self.analytics.data_availability().await?;
        let interval = hour_to_reconcile(scheduled_at, available);
        tracing::info!(
            scheduled_at = %scheduled_at,
            available_until = available.map(|until| until.to_string()),
            interval = %interval,
            "reconcile: the latest whole hour before the scheduled hour that Genesys's details hold"
        );
        let genesys = self.analytics.side(interval, deadline).await?;
        if genesys.skipped.any() {
            tracing::warn!(
                conversations = genesys.skipped.conversations,
                metrics = genesys.skipped.metrics,
                "reconcile: {}",
                genesys.skipped
            );
        }
        let (keys, _) = keys_in(&self.ledger, SEGMENTS, interval).await?;
        let report = reconcile(interval, now, &genesys, &keys);
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
        let mut series = coverage_series(&report, now, self.sink.static_tags());
        let flows = series.len();
        series.extend(unexplained_series(&report, now, self.sink.static_tags()));
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

    #[test]
    fn the_hour_ends_by_both_the_scheduled_hour_and_genesyss_availability() {
        let at = |text: &str| -> Timestamp { text.parse().expect("a time") };
        let hour = |text: &str| -> Interval { text.parse().expect("an hour") };
        let scheduled = at("2026-12-01T11:15:00Z");
        assert_eq!(
            hour_to_reconcile(scheduled, None),
            hour("2026-12-01T10:00:00Z/PT1H")
        );
        assert_eq!(
            hour_to_reconcile(scheduled, Some(at("2026-12-01T11:10:00Z"))),
            hour("2026-12-01T10:00:00Z/PT1H")
        );
        assert_eq!(
            hour_to_reconcile(scheduled, Some(at("2026-12-01T11:00:00Z"))),
            hour("2026-12-01T10:00:00Z/PT1H"),
            "an hour ending just when the data does"
        );
        assert_eq!(
            hour_to_reconcile(scheduled, Some(at("2026-12-01T10:59:00Z"))),
            hour("2026-12-01T09:00:00Z/PT1H")
        );
    }
}
