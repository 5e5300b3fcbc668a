//! The body of a DataDog `POST /api/v1/distribution_points`: occurrences grouped per series.
//!
//! Each counted occurrence is one distribution value `1` at its key's time, in the series of its
//! metric name and tags (`flow:…`, `metric:…`, static tags); values at the same second share a
//! point. DataDog takes points up to about an hour old and ten minutes ahead, so an older key is
//! sent at the processing time (and counted as late) and a future one at now. A large push is cut
//! into requests over contiguous runs of occurrences; every series knows which occurrences it
//! carries, so a refusal can say exactly which were not delivered.

use std::collections::{BTreeMap, HashMap};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::tags;
use crate::count::Occurrence;

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

/// The series of one (flow, metric): the count, and the time since the flow's first key, which
/// stand or fall together so that a key is never counted in one and retried for the other.
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

/// What the time since the flow's first key is sent as: `<metric>.elapsed`, in seconds.
pub const ELAPSED_SUFFIX: &str = ".elapsed";

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

/// A (flow, metric) being built: its tags, counts and elapsed seconds per second, and the
/// occurrences it carries.
#[derive(Default)]
struct Grouped {
    tags: Vec<String>,
    counts: BTreeMap<i64, usize>,
    elapsed: BTreeMap<i64, Vec<f64>>,
    occurrences: Vec<usize>,
}

/// Groups occurrences into requests of at most `per_request` occurrences each.
pub fn plan(
    occurrences: &[Occurrence<'_>],
    metric: &str,
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
            // (flow, metric) → series; two pairs whose tags normalise alike share a series.
            let mut series_of: HashMap<(&str, &str), usize> = HashMap::new();
            let mut series_with_tags: HashMap<Vec<String>, usize> = HashMap::new();
            let mut grouped: Vec<Grouped> = Vec::new();
            for (offset, occurrence) in chunk.iter().enumerate() {
                let index = *series_of
                    .entry((occurrence.flow, occurrence.metric))
                    .or_insert_with(|| {
                        let mut tags = vec![
                            tags::tag("flow", occurrence.flow),
                            tags::tag("metric", occurrence.metric),
                        ];
                        tags.extend(static_tags.iter().cloned());
                        *series_with_tags.entry(tags.clone()).or_insert_with(|| {
                            grouped.push(Grouped {
                                tags,
                                ..Grouped::default()
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
                if let Some(elapsed) = occurrence.elapsed {
                    group
                        .elapsed
                        .entry(time.second())
                        .or_default()
                        .push(elapsed.as_secs_f64());
                }
                group.occurrences.push(first + offset);
            }
            grouped.sort_by(|a, b| a.tags.cmp(&b.tags));
            let units = grouped
                .into_iter()
                .map(|group| {
                    let counts = group
                        .counts
                        .into_iter()
                        .map(|(second, count)| (second, vec![1.0; count]))
                        .collect();
                    let mut series = vec![Series::distribution(metric, group.tags.clone(), counts)];
                    if !group.elapsed.is_empty() {
                        series.push(Series::distribution(
                            &format!("{metric}{ELAPSED_SUFFIX}"),
                            group.tags,
                            group.elapsed.into_iter().collect(),
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
