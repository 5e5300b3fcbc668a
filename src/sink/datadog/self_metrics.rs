//! The pipeline's own metrics (`genesys.flow_metrics.*`): the counts of settled batches waiting
//! to ride with a later push, and the distribution series they become (zeros left out).

use jiff::Timestamp;

use super::payload::Series;
use super::tags;
use crate::count::Tally;

/// Prefix of the pipeline's own metrics.
pub const SELF_METRIC_PREFIX: &str = "genesys.flow_metrics";

/// The scheduled reconciliation's metric: per flow, the ledger's count over Genesys's for the
/// previous hour (see `reconcile::scheduled`).
pub const COVERAGE_METRIC: &str = "genesys.flow_metrics.coverage";

/// The scheduled reconciliation's other metric: per flow and `side` (`lacking`: Genesys counted
/// them, the ledger lacks them; `extra`: the reverse), the keys no known reason explains.
pub const UNEXPLAINED_METRIC: &str = "genesys.flow_metrics.reconcile.unexplained";

/// Self-metrics waiting longer than this are sent even by a push with no occurrence.
pub(super) const SELF_METRICS_FLUSH: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// Counts not yet sent as self-metrics.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct SelfMetrics {
    pub(super) tally: Tally,
    pub(super) late: u64,
    pub(super) push_failures: u64,
    pub(super) oldest: Option<Timestamp>,
}

/// The pipeline's own metrics: name (after `genesys.flow_metrics.`) and `outcome` tag, in the
/// order of `self_metric_values`.
pub const SELF_METRICS: [(&str, &str); 14] = [
    ("events", "read"),
    ("events", "ignored"),
    ("events", "rejected"),
    ("events", "failed"),
    ("keys", "counted"),
    ("keys", "already_counted"),
    ("keys", "pending"),
    ("keys", "invalid"),
    ("keys", "stale"),
    ("keys", "late"),
    ("keys", "possibly_doubled"),
    ("push_failures", ""),
    ("names_unresolved", ""),
    ("names_unavailable", ""),
];

fn self_metric_values(pending: &SelfMetrics) -> [u64; 14] {
    let tally = &pending.tally;
    [
        tally.events_read,
        tally.events_ignored,
        tally.events_rejected,
        tally.events_failed,
        tally.keys_counted,
        tally.keys_already_counted,
        tally.keys_pending,
        tally.keys_invalid,
        tally.keys_stale,
        pending.late,
        tally.keys_possibly_doubled,
        pending.push_failures,
        tally.names_unresolved,
        tally.names_unavailable,
    ]
}

/// The pipeline's own metrics, each a distribution value of the count at `now`; zeros are left
/// out. Query them with `sum:`.
pub(super) fn self_metric_series(
    pending: &SelfMetrics,
    now: Timestamp,
    static_tags: &[String],
) -> Vec<Series> {
    SELF_METRICS
        .into_iter()
        .zip(self_metric_values(pending))
        .filter(|(_, count)| *count > 0)
        .map(|((name, outcome), count)| {
            let mut tags = Vec::with_capacity(static_tags.len() + 1);
            if !outcome.is_empty() {
                tags.push(tags::tag("outcome", outcome));
            }
            tags.extend(static_tags.iter().cloned());
            Series::distribution(
                &format!("{SELF_METRIC_PREFIX}.{name}"),
                tags,
                vec![(now.as_second(), vec![count as f64])],
            )
        })
        .collect()
}
