//! The interval a reconciliation covers: ISO 8601 `<start>/<end>` or `<start>/<duration>` in
//! UTC, half-open, and how near its edges a milestone or outcome may fall on either side.

use jiff::{SignedDuration, Timestamp};

/// A milestone or outcome within this much of an edge of the interval may be counted on one side
/// only: the two time it a little differently (the flow's clock in a key, Genesys's event time).
/// Attribute keys get no such margin: both sides time them by the key's own text.
pub const EDGE_MARGIN: SignedDuration = SignedDuration::from_secs(60);

/// A half-open interval `[start, end)` of key times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Why an interval could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntervalError {
    #[error(
        "the interval must be ISO 8601 <start>/<end> or <start>/<duration> in UTC, e.g. \
         2026-12-01T10:00:00Z/2026-12-01T11:00:00Z, 2026-12-01T10:00:00Z/PT1H or \
         2026-12-01T00:00:00Z/P1D (a duration in weeks, days of 24 h, hours, minutes, seconds)"
    )]
    Syntax,
    #[error("the interval ends ({end}) before it starts ({start}): give <start>/<end>")]
    Backwards { start: Timestamp, end: Timestamp },
}

impl std::str::FromStr for Interval {
    type Err = IntervalError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (start, end) = text.trim().split_once('/').ok_or(IntervalError::Syntax)?;
        let start: Timestamp = start.parse().map_err(|_| IntervalError::Syntax)?;
        let end: Timestamp = match end.parse::<Timestamp>() {
            Ok(end) => end,
            Err(_) => {
                // Days are 24 h: the interval is in UTC, which has no clock changes.
                let length = end
                    .parse::<jiff::Span>()
                    .and_then(|span| span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()))
                    .map_err(|_| IntervalError::Syntax)?;
                start.checked_add(length).map_err(|_| IntervalError::Syntax)?
            }
        };
        if end <= start {
            return Err(IntervalError::Backwards { start, end });
        }
        Ok(Interval { start, end })
    }
}

impl std::fmt::Display for Interval {
    /// As Genesys takes it: `2026-12-01T10:00:00Z/2026-12-01T11:00:00Z`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.start, self.end)
    }
}

impl Interval {
    /// The whole hour before the one `now` is in.
    pub fn previous_hour(now: Timestamp) -> Interval {
        let hour = 3_600_000;
        let this_hour = now.as_millisecond().div_euclid(hour) * hour;
        let at = |ms: i64| Timestamp::from_millisecond(ms).unwrap_or(now);
        Interval {
            start: at(this_hour - hour),
            end: at(this_hour),
        }
    }

    pub fn contains(&self, time: Timestamp) -> bool {
        self.start <= time && time < self.end
    }

    pub(super) fn near_edge(&self, time: Timestamp) -> bool {
        time.duration_since(self.start).abs() <= EDGE_MARGIN
            || time.duration_since(self.end).abs() <= EDGE_MARGIN
    }
}
