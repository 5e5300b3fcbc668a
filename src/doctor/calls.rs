//! What every link's checks share: an AWS call that failed, named by the IAM action it needed
//! (so that a refusal says which permission the operator lacks), CloudWatch sums over the last
//! hour and the last day, and the wording of counts and ages.

use aws_sdk_cloudwatch::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use jiff::{SignedDuration, Timestamp};

use super::{Check, Link};
use crate::aws::AwsCallError;

/// Where the README lists the read permissions doctor needs.
pub const PERMISSIONS: &str = "README, \"Is it working?\": the permissions doctor reads with";

/// An AWS call that failed: the IAM action it needed, and AWS's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{action}: {error}")]
pub struct CallFailed {
    pub action: &'static str,
    pub error: AwsCallError,
}

impl CallFailed {
    /// The failure of a call that needed `action` (`events:DescribeRule`, …).
    pub fn of<E, R>(action: &'static str, error: &SdkError<E, R>) -> CallFailed
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        CallFailed {
            action,
            error: AwsCallError::of(error),
        }
    }

    fn code(&self) -> Option<&str> {
        self.error.code.as_deref()
    }

    /// Whether the operator's credentials themselves were refused (expired, unknown).
    fn credentials_refused(&self) -> bool {
        self.code().is_some_and(|code| {
            matches!(
                code,
                "ExpiredToken"
                    | "ExpiredTokenException"
                    | "InvalidClientTokenId"
                    | "UnrecognizedClientException"
            )
        })
    }

    /// Whether the resource asked about does not exist.
    pub fn not_found(&self) -> bool {
        self.code().is_some_and(|code| {
            matches!(
                code,
                "ResourceNotFoundException"
                    | "ResourceNotFound"
                    | "NotFound"
                    | "NoSuchBucket"
                    | "QueueDoesNotExist"
                    | "AWS.SimpleQueueService.NonExistentQueue"
            )
        })
    }

    /// The failed check this makes: `missing`'s when the resource does not exist, else
    /// [`Self::check`]'s.
    pub fn check_or_missing(
        &self,
        link: Link,
        name: &'static str,
        what: &str,
        missing: impl FnOnce() -> Check,
    ) -> Check {
        if self.not_found() {
            missing()
        } else {
            self.check(link, name, what)
        }
    }

    /// The failed check this makes, for reading `what`: the permission the operator lacks, the
    /// credentials to renew, or AWS's own reason.
    pub fn check(&self, link: Link, name: &'static str, what: &str) -> Check {
        let detail = format!("cannot read {what}: {} was refused ({})", self.action, self.error);
        if self.error.denied() {
            Check::fail(
                link,
                name,
                detail,
                format!(
                    "give your AWS identity the permission {} ({PERMISSIONS}), then run doctor again",
                    self.action
                ),
            )
        } else if self.credentials_refused() {
            Check::fail(
                link,
                name,
                detail,
                "your AWS credentials are expired or unknown: sign in again (aws sso login, or new \
                 access keys), then run doctor again",
            )
        } else {
            Check::fail(
                link,
                name,
                format!("cannot read {what}: {self}"),
                "run doctor again; if AWS keeps answering so, its reason above says what it refused",
            )
        }
    }
}

/// A metric's sums over the last hour and the last day.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    pub hour: f64,
    pub day: f64,
}

impl Sums {
    /// `12 in the last hour, 340 in the last day`.
    pub fn said(&self) -> String {
        format!(
            "{} in the last hour, {} in the last day",
            count(self.hour),
            count(self.day)
        )
    }

    /// The check of what should keep coming (events, keys): none in the day fails, saying
    /// `silent`; none in the last hour warns, since a closed centre is quiet.
    pub fn expected(&self, link: Link, name: &'static str, what: &str, silent: &str, fix: &str) -> Check {
        let detail = format!("{what}: {}", self.said());
        if self.day < 1.0 {
            Check::fail(link, name, format!("{detail}: {silent}"), fix)
        } else if self.hour < 1.0 {
            Check::warn(
                link,
                name,
                format!("{detail}: a closed centre, or {silent}"),
                format!("if the centre is open: {fix}"),
            )
        } else {
            Check::pass(link, name, detail)
        }
    }

    /// The check of what should not happen (errors, failed pushes): in the last hour fails,
    /// only earlier in the day warns.
    pub fn unwanted(&self, link: Link, name: &'static str, what: &str, fix: &str) -> Check {
        let detail = format!("{what}: {}", self.said());
        if self.hour > 0.0 {
            Check::fail(link, name, detail, fix)
        } else if self.day > 0.0 {
            Check::warn(link, name, format!("{detail}, none lately"), fix)
        } else {
            Check::pass(link, name, detail)
        }
    }
}

/// One CloudWatch metric: its namespace, name and dimensions.
pub struct Metric<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub dimensions: &'a [(&'a str, &'a str)],
}

impl Metric<'_> {
    /// The IAM action that reads it.
    const ACTION: &'static str = "cloudwatch:GetMetricStatistics";

    /// `statistic` of every datapoint between `from` and `to`, one per `period`, with its time.
    async fn datapoints(
        &self,
        cloudwatch: &aws_sdk_cloudwatch::Client,
        (from, to): (Timestamp, Timestamp),
        period: SignedDuration,
        statistic: Statistic,
    ) -> Result<Vec<(i64, f64)>, CallFailed> {
        let mut request = cloudwatch
            .get_metric_statistics()
            .namespace(self.namespace)
            .metric_name(self.name)
            .start_time(DateTime::from_secs(from.as_second()))
            .end_time(DateTime::from_secs(to.as_second()))
            .period(i32::try_from(period.as_secs()).unwrap_or(i32::MAX))
            .statistics(statistic.clone());
        for (name, value) in self.dimensions {
            request = request.dimensions(Dimension::builder().name(*name).value(*value).build());
        }
        let answer = request
            .send()
            .await
            .map_err(|error| CallFailed::of(Self::ACTION, &error))?;
        Ok(answer
            .datapoints()
            .iter()
            .filter_map(|point| {
                let value = match statistic {
                    Statistic::Maximum => point.maximum(),
                    _ => point.sum(),
                }?;
                Some((point.timestamp().map_or(0, DateTime::secs), value))
            })
            .collect())
    }

    /// Its sums over the hour and the day before `now`.
    pub async fn sums(
        &self,
        cloudwatch: &aws_sdk_cloudwatch::Client,
        now: Timestamp,
    ) -> Result<Sums, CallFailed> {
        let total = |from: SignedDuration| async move {
            let points = self
                .datapoints(cloudwatch, (now - from, now), from, Statistic::Sum)
                .await?;
            Ok::<f64, CallFailed>(points.iter().map(|(_, value)| value).sum())
        };
        let (hour, day) = tokio::join!(
            total(SignedDuration::from_hours(1)),
            total(SignedDuration::from_hours(24))
        );
        Ok(Sums {
            hour: hour?,
            day: day?,
        })
    }

    /// Its latest five-minute maximum within the hour before `now`, if any.
    pub async fn latest_maximum(
        &self,
        cloudwatch: &aws_sdk_cloudwatch::Client,
        now: Timestamp,
    ) -> Result<Option<f64>, CallFailed> {
        let points = self
            .datapoints(
                cloudwatch,
                (now - SignedDuration::from_hours(1), now),
                SignedDuration::from_mins(5),
                Statistic::Maximum,
            )
            .await?;
        Ok(points
            .into_iter()
            .max_by_key(|(time, _)| *time)
            .map(|(_, value)| value))
    }
}

/// A count as people write it: whole, with thousands separated.
pub fn count(value: f64) -> String {
    let whole = value.round().max(0.0) as u64;
    let digits = whole.to_string();
    let mut said = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            said.push(',');
        }
        said.push(digit);
    }
    said
}

/// An age as people say it, in its two largest units: `2d 3h`, `3h 13m`, `45m`, `42s`.
pub fn age(seconds: f64) -> String {
    let seconds = seconds.round().max(0.0) as u64;
    let parts = [
        (seconds / 86_400, "d"),
        (seconds % 86_400 / 3_600, "h"),
        (seconds % 3_600 / 60, "m"),
        (seconds % 60, "s"),
    ];
    let first = parts.iter().position(|(value, _)| *value > 0).unwrap_or(3);
    parts[first..]
        .iter()
        .take(2)
        .filter(|(value, _)| *value > 0 || first == 3)
        .map(|(value, unit)| format!("{value}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A line of text cut to `limit` characters, marked `…` where cut.
pub fn shortened(text: &str, limit: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(limit.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_ages_read_as_people_write_them() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(1234.0), "1,234");
        assert_eq!(count(1_234_567.4), "1,234,567");
        assert_eq!(age(42.0), "42s");
        assert_eq!(age(2_730.0), "45m 30s");
        assert_eq!(age(11_580.0), "3h 13m");
        assert_eq!(age(2.0 * 86_400.0 + 3.0 * 3600.0 + 125.0), "2d 3h");
        assert_eq!(age(3_600.0), "1h");
        assert_eq!(age(0.0), "0s");
    }

    #[test]
    fn long_lines_are_cut_and_marked() {
        assert_eq!(shortened("  short  ", 10), "short");
        assert_eq!(shortened("abcdefghijkl", 6), "abcde…");
    }

    #[test]
    fn a_refusal_names_the_permission_and_anything_else_says_why() {
        let failed = |code: Option<&str>| CallFailed {
            action: "events:DescribeRule",
            error: AwsCallError {
                code: code.map(str::to_owned),
                reason: format!("{}: no", code.unwrap_or("service error")),
            },
        };
        let denied = failed(Some("AccessDeniedException")).check(Link::Rule, "state", "the rule");
        assert_eq!(denied.status, super::super::Status::Fail);
        assert!(
            denied
                .fix
                .as_deref()
                .is_some_and(|fix| fix.contains("give your AWS identity the permission events:DescribeRule")),
            "{denied:?}"
        );
        let expired = failed(Some("ExpiredToken")).check(Link::Rule, "state", "the rule");
        assert!(
            expired
                .fix
                .as_deref()
                .is_some_and(|fix| fix.contains("sign in again"))
        );
        let other = failed(None).check(Link::Rule, "state", "the rule");
        assert!(
            other.detail.contains("events:DescribeRule: service error: no"),
            "{other:?}"
        );
        assert!(failed(Some("ResourceNotFoundException")).not_found());
        assert!(!failed(Some("AccessDenied")).not_found());
    }
}
