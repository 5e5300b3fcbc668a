//! The body of a DataDog `POST /api/v1/distribution_points`: occurrences grouped per series.
//!
//! Each counted occurrence is one distribution value `1` at its key's time, in the series of its
//! source's metric name and tags (attributes: `flow:…`, `metric:…`; milestones: `flow:…`,
//! `milestone:…`; outcomes: `flow:…`, `outcome:…`, `outcome_value:…`; then static tags); values
//! at the same second share a point. Beside a count, the seconds it carries go in a second series
//! of the same tags: an attribute key's time since the start of its flow run, an outcome's duration. DataDog takes points up to about an hour old and ten minutes ahead, so an older key is
//! sent at the processing time (and counted as late) and a future one at now. A large push is cut
//! into requests over contiguous runs of occurrences; every series knows which occurrences it
//! carries, so a refusal can say exactly which were not delivered.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::tags;
use crate::count::Occurrence;
use crate::key::Source;

/// Points older than this are sent at the processing time: DataDog drops points over an hour old.
pub const MAX_POINT_AGE: SignedDuration = SignedDuration::from_mins(50);

/// Points further ahead than this are sent at the processing time.
pub const MAX_POINT_LEAD: SignedDuration = SignedDuration::from_mins(5);

/// Occurrences per request: with 200-byte names this keeps a body under DataDog's limits.
pub const DEFAULT_OCCURRENCES_PER_REQUEST: usize = 5000;

/// `{"series": [...]}`: the body of one request, borrowing the series it sends.
#[derive(Debug, Serialize, PartialEq)]
pub struct Payload<'a> {
    pub series: Vec<&'a Series>,
}

/// One distribution series: a metric name, its tags and its points.
#[derive(Debug, Serialize, PartialEq)]
pub struct Series {
    pub metric: String,
    /// `[[timestamp, [1.0, 1.0, …]], …]`, one entry per second.
    pub points: Vec<(i64, Vec<f64>)>,
    pub tags: Vec<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl Series {
    pub fn distribution(metric: &str, tags: Vec<String>, points: Vec<(i64, Vec<f64>)>) -> Self {
        Series {
            metric: metric.to_owned(),
            points,
            tags,
            kind: "distribution",
        }
    }
}

/// The series of one (flow, metric) of a source: the count, and its seconds, which stand or fall
/// together so that a key is never counted in one and retried for the other.
#[derive(Debug, PartialEq)]
pub struct Unit {
    pub series: Vec<Series>,
    /// Indexes (into the push) of the occurrences it carries: what is not delivered if DataDog
    /// refuses it.
    pub occurrences: Vec<usize>,
}

/// One request's worth of occurrences.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub units: Vec<Unit>,
}

/// What the time since the start of the key's flow run is sent as: `<metric>.elapsed`, in seconds.
pub const ELAPSED_SUFFIX: &str = ".elapsed";

/// What an outcome's duration is sent as: `<outcome metric>.duration`, in seconds.
pub const DURATION_SUFFIX: &str = ".duration";

/// The metric each source's occurrences are counted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricNames {
    pub attribute: String,
    pub milestone: String,
    pub outcome: String,
    /// Whether `<attribute>.elapsed` goes beside each attribute count (`FLOW_METRICS_ELAPSED`).
    pub elapsed: bool,
}

impl Default for MetricNames {
    fn default() -> Self {
        MetricNames {
            attribute: "genesys.flow.metric".to_owned(),
            milestone: "genesys.flow.milestone".to_owned(),
            outcome: "genesys.flow.outcome".to_owned(),
            elapsed: true,
        }
    }
}

impl MetricNames {
    /// Every metric name occurrences can be sent as (`.elapsed` whether or not it is on).
    pub fn all(&self) -> [String; 5] {
        [
            self.attribute.clone(),
            format!("{}{ELAPSED_SUFFIX}", self.attribute),
            self.milestone.clone(),
            self.outcome.clone(),
            format!("{}{DURATION_SUFFIX}", self.outcome),
        ]
    }

    /// The count metric of a source, and the metric of the seconds it carries.
    fn of(&self, source: &Source<'_>) -> (&str, Option<String>) {
        match source {
            Source::Attribute => (
                &self.attribute,
                self.elapsed
                    .then(|| format!("{}{ELAPSED_SUFFIX}", self.attribute)),
            ),
            Source::Milestone => (&self.milestone, None),
            Source::Outcome { .. } => (&self.outcome, Some(format!("{}{DURATION_SUFFIX}", self.outcome))),
        }
    }
}

/// The tags that name an occurrence's series, before the static ones. A milestone's and an
/// outcome's carry their ids beside their names (`flow_id`, `milestone_id`, `outcome_id`), so
/// that a renamed flow, or an id sent before its name was known, still groups as one.
fn series_tags(occurrence: &Occurrence<'_>) -> Vec<String> {
    let flow = tags::tag("flow", occurrence.flow);
    let ids = |step_key: &'static str| -> Vec<String> {
        occurrence.ids.map_or_else(Vec::new, |ids| {
            vec![tags::tag("flow_id", ids.flow), tags::tag(step_key, ids.step)]
        })
    };
    match occurrence.source {
        Source::Attribute => vec![flow, tags::tag("metric", occurrence.metric)],
        Source::Milestone => {
            let mut tags = vec![flow, tags::tag("milestone", occurrence.metric)];
            tags.extend(ids("milestone_id"));
            tags
        }
        Source::Outcome { value, .. } => {
            let mut tags = vec![flow, tags::tag("outcome", occurrence.metric)];
            tags.extend(value.map(|value| tags::tag("outcome_value", value)));
            tags.extend(ids("outcome_id"));
            tags
        }
    }
}

/// The seconds an occurrence carries beside its count.
fn seconds(occurrence: &Occurrence<'_>) -> Option<f64> {
    match occurrence.source {
        Source::Attribute => occurrence.elapsed,
        Source::Milestone => None,
        Source::Outcome { duration, .. } => duration,
    }
    .map(|seconds| seconds.as_secs_f64())
}

/// The series an occurrence goes in, as (metric name, tags): its count's, and beside it the
/// seconds' when it carries seconds. To DataDog each distinct pair is a distribution, billed as
/// custom metrics; two occurrences whose pairs are equal share one.
pub fn series_of(
    occurrence: &Occurrence<'_>,
    metrics: &MetricNames,
    static_tags: &[String],
) -> Vec<(String, Vec<String>)> {
    let (count_metric, seconds_metric) = metrics.of(&occurrence.source);
    let mut tags = series_tags(occurrence);
    tags.extend(static_tags.iter().cloned());
    let mut series = Vec::with_capacity(2);
    if let Some(seconds_metric) = seconds_metric.filter(|_| seconds(occurrence).is_some()) {
        series.push((seconds_metric, tags.clone()));
    }
    series.insert(0, (count_metric.to_owned(), tags));
    series
}

/// The requests for a push and how many of its occurrences were late.
#[derive(Debug, PartialEq)]
pub struct Plan {
    pub requests: Vec<Request>,
    pub late: u64,
}

/// Where a key's point goes in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointTime {
    OnTime(i64),
    /// Too old for DataDog: sent at the processing time.
    Late(i64),
    /// Ahead of DataDog's window: sent at the processing time.
    Early(i64),
}

impl PointTime {
    pub fn of(key_time: Timestamp, now: Timestamp) -> PointTime {
        if key_time < now - MAX_POINT_AGE {
            PointTime::Late(now.as_second())
        } else if key_time > now + MAX_POINT_LEAD {
            PointTime::Early(now.as_second())
        } else {
            PointTime::OnTime(key_time.as_second())
        }
    }

    pub fn second(self) -> i64 {
        match self {
            PointTime::OnTime(second) | PointTime::Late(second) | PointTime::Early(second) => second,
        }
    }
}

/// A (flow, metric) of a source being built: its metrics and tags, counts and seconds per
/// second, and the occurrences it carries.
struct Grouped<'m> {
    count_metric: &'m str,
    seconds_metric: Option<String>,
    tags: Vec<String>,
    counts: BTreeMap<i64, usize>,
    seconds: BTreeMap<i64, Vec<f64>>,
    occurrences: Vec<usize>,
}

/// Groups occurrences into requests of at most `per_request` occurrences each.
pub fn plan(
    occurrences: &[Occurrence<'_>],
    metrics: &MetricNames,
    static_tags: &[String],
    now: Timestamp,
    per_request: usize,
) -> Plan {
    let per_request = per_request.max(1);
    let mut late = 0;
    let requests = occurrences
        .chunks(per_request)
        .enumerate()
        .map(|(chunk_number, chunk)| {
            let first = chunk_number * per_request;
            // (source, flow, metric, value) → series; two whose metric and tags normalise
            // alike share a series.
            let mut series_of: HashMap<(&str, &str, &str, Option<&str>), usize> = HashMap::new();
            let mut series_with_tags: HashMap<(&str, Vec<String>), usize> = HashMap::new();
            let mut grouped: Vec<Grouped<'_>> = Vec::new();
            for (offset, occurrence) in chunk.iter().enumerate() {
                let value = match occurrence.source {
                    Source::Outcome { value, .. } => value,
                    _ => None,
                };
                let identity = (
                    occurrence.source.name(),
                    occurrence.flow,
                    occurrence.metric,
                    value,
                );
                let index = *series_of.entry(identity).or_insert_with(|| {
                    let (count_metric, seconds_metric) = metrics.of(&occurrence.source);
                    let mut tags = series_tags(occurrence);
                    tags.extend(static_tags.iter().cloned());
                    *series_with_tags
                        .entry((count_metric, tags.clone()))
                        .or_insert_with(|| {
                            grouped.push(Grouped {
                                count_metric,
                                seconds_metric,
                                tags,
                                counts: BTreeMap::new(),
                                seconds: BTreeMap::new(),
                                occurrences: Vec::new(),
                            });
                            grouped.len() - 1
                        })
                });
                let time = PointTime::of(occurrence.time, now);
                if matches!(time, PointTime::Late(_)) {
                    late += 1;
                }
                let group = &mut grouped[index];
                *group.counts.entry(time.second()).or_default() += 1;
                if let Some(seconds) = seconds(occurrence) {
                    group.seconds.entry(time.second()).or_default().push(seconds);
                }
                group.occurrences.push(first + offset);
            }
            grouped.sort_by(|a, b| (a.count_metric, &a.tags).cmp(&(b.count_metric, &b.tags)));
            let units = grouped
                .into_iter()
                .map(|group| {
                    let counts = group
                        .counts
                        .into_iter()
                        .map(|(second, count)| (second, vec![1.0; count]))
                        .collect();
                    let mut series = vec![Series::distribution(
                        group.count_metric,
                        group.tags.clone(),
                        counts,
                    )];
                    if let Some(seconds_metric) = group.seconds_metric.filter(|_| !group.seconds.is_empty()) {
                        series.push(Series::distribution(
                            &seconds_metric,
                            group.tags,
                            group.seconds.into_iter().collect(),
                        ));
                    }
                    Unit {
                        series,
                        occurrences: group.occurrences,
                    }
                })
                .collect();
            Request { units }
        })
        .collect();
    Plan { requests, late }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn points_outside_datadogs_window_are_sent_now() {
        let now = at("2026-03-07T12:00:00Z");
        assert_eq!(
            PointTime::of(at("2026-03-07T11:59:30.900Z"), now),
            PointTime::OnTime(now.as_second() - 30)
        );
        assert_eq!(
            PointTime::of(at("2026-03-07T11:00:00Z"), now),
            PointTime::Late(now.as_second())
        );
        assert_eq!(
            PointTime::of(at("2026-03-07T12:30:00Z"), now),
            PointTime::Early(now.as_second())
        );
        assert_eq!(
            PointTime::of(at("2026-03-07T12:04:00Z"), now),
            PointTime::OnTime(now.as_second() + 240)
        );
    }
}
