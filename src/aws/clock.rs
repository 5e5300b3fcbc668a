//! The clock check of commands that write to a live table: this machine's clock measured against
//! AWS's, from the `Date` header of DynamoDB's answers, and refused when it is off by more than
//! [`MAX_CLOCK_OFFSET`].
//!
//! Leases and the re-timing of late keys compare the clock of whoever writes to the ledger with
//! the deployed function's, which keeps AWS's time. An answer's `Date` is the server's time,
//! truncated to the second, at some instant between the request leaving this machine (local time
//! `sent`) and the answer arriving (`received`). So the offset, AWS's clock minus this machine's,
//! lies in `[Date − received, Date + 1 s − sent]`. Every answer gives such an interval, and the
//! measurement is their intersection. One answer on a quick connection gives an interval about a
//! second wide: enough to accept a clock that is right or to refuse one that is far off. When it
//! straddles the bound, the next request is timed so that AWS's clock turns a second just as it
//! leaves if the offset is the interval's middle, which halves the interval.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use jiff::fmt::rfc2822::DateTimeParser;
use jiff::{SignedDuration, Timestamp};

use crate::error_text::with_causes;

/// The largest offset between this machine's clock and AWS's that a command writing to a live
/// table accepts.
///
/// A lease's end is written with the claimer's clock and read with everyone else's. A process
/// whose clock is ahead by `d` sees another's claim expire `d` early; one whose clock is behind
/// by `d` writes claims that the others see expire `d` early. A holder's push ends
/// [`LEASE_SAFETY`](crate::timing::LEASE_SAFETY) (11 s) before its lease by its own clock, so
/// the offset between any two writers must stay well below `LEASE_SAFETY`. With every writer
/// within 2 s of AWS's clock (the function keeps it), two of them are at most 4 s apart, still
/// inside it. DataDog accepts points up to 10 minutes ahead and an hour behind, and the sink
/// re-times keys minutes inside that window: far wider than 2 s.
pub const MAX_CLOCK_OFFSET: Duration = Duration::from_secs(2);

/// [`MAX_CLOCK_OFFSET`] as a signed duration, for comparing offsets.
const BOUND: SignedDuration = SignedDuration::new(
    MAX_CLOCK_OFFSET.as_secs() as i64,
    MAX_CLOCK_OFFSET.subsec_nanos() as i32,
);

/// DescribeTable calls one measurement makes at most.
const MAX_REQUESTS: usize = 3;

/// The resolution of an HTTP `Date`.
const DATE_RESOLUTION: SignedDuration = SignedDuration::from_secs(1);

const SYNCHRONISE: &str = "synchronise the clock (Linux: `sudo chronyc makestep` or `sudo \
                           timedatectl set-ntp true`; macOS, Windows: set the date and time \
                           automatically)";

/// The offset of AWS's clock from this machine's (AWS's minus this machine's), known to lie
/// between `lower` and `upper`: positive when this machine's clock is behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockOffset {
    pub lower: SignedDuration,
    pub upper: SignedDuration,
}

impl ClockOffset {
    /// The middle of the interval: the best single guess.
    pub fn estimate(&self) -> SignedDuration {
        (self.lower + self.upper) / 2
    }

    /// Half the interval's width: how far the offset may be from the estimate.
    fn margin(&self) -> SignedDuration {
        (self.upper - self.lower) / 2
    }

    /// Where the interval lies against the bound.
    fn verdict(&self) -> Verdict {
        if self.lower >= -BOUND && self.upper <= BOUND {
            Verdict::Within
        } else if self.lower > BOUND || self.upper < -BOUND {
            Verdict::Beyond
        } else {
            Verdict::Straddles
        }
    }

    /// The offsets both intervals allow, if any.
    fn intersect(&self, other: &ClockOffset) -> Option<ClockOffset> {
        let both = ClockOffset {
            lower: self.lower.max(other.lower),
            upper: self.upper.min(other.upper),
        };
        (both.lower <= both.upper).then_some(both)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The whole interval lies within the bound.
    Within,
    /// The whole interval lies beyond it.
    Beyond,
    /// Part of the interval lies within, part beyond.
    Straddles,
}

/// Why a command may not write to a live table with this machine's clock, or why the clock
/// could not be measured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockError {
    #[error(
        "this machine's clock is {} AWS's (measured against DynamoDB's Date header, ±{:.1} s); \
         commands that write to a live table refuse a clock more than {max} s off: its leases \
         would overlap the function's live claims, and far enough off, DataDog would drop its \
         points. To fix it, {SYNCHRONISE}, then run the command again.",
        describe(.0.estimate()),
        .0.margin().as_secs_f64(),
        max = MAX_CLOCK_OFFSET.as_secs_f64(),
    )]
    Skewed(ClockOffset),
    #[error(
        "could not tell whether this machine's clock is within {max} s of AWS's: DynamoDB's \
         answers place it {}, and came too slowly to narrow that down (a \
         Date header gives only the second, so the answers must arrive well within a second). \
         Run the command again, from a quicker connection if this persists; if the clock may \
         be off, {SYNCHRONISE} first.",
        describe_range(.0),
        max = MAX_CLOCK_OFFSET.as_secs_f64(),
    )]
    Undecidable(ClockOffset),
    #[error(
        "DynamoDB's answers disagree about the time (the offsets they allow do not overlap): \
         this machine's clock was probably set while it was being measured. Run the command again."
    )]
    Inconsistent,
    #[error(
        "DynamoDB's answer to DescribeTable on `{table}` carried no Date header, so this \
         machine's clock could not be compared with AWS's: is the endpoint (--endpoint-url, \
         AWS_ENDPOINT_URL) DynamoDB?"
    )]
    NoDate { table: String },
    #[error("DynamoDB's answer carried a Date header that is not an HTTP date ({value:?}): {reason}")]
    UnreadableDate { value: String, reason: String },
    #[error(
        "could not ask DynamoDB for its time, to compare this machine's clock with AWS's \
         (DescribeTable on `{table}`): {causes}"
    )]
    DescribeTable { table: String, causes: String },
}

/// An offset in words: `600.4 s ahead of` (this machine's clock ahead of AWS's) or `1.2 s
/// behind`.
fn describe(offset: SignedDuration) -> String {
    let seconds = offset.as_secs_f64();
    if seconds > 0.0 {
        format!("{seconds:.1} s behind")
    } else {
        format!("{:.1} s ahead of", -seconds)
    }
}

/// The interval in words: `between 1.3 s ahead of AWS's and 2.9 s behind it`.
fn describe_range(offset: &ClockOffset) -> String {
    format!(
        "between {} AWS's and {} it",
        describe(offset.lower),
        describe(offset.upper)
    )
}

/// Measures the offset of AWS's clock from this machine's with DescribeTable calls on `table`
/// (at most three; fewer once the interval decides [`check_clock`]). An answer that reports an
/// error (a missing table, a refused permission) carries AWS's Date all the same and counts.
pub async fn measure_clock_offset(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<ClockOffset, ClockError> {
    let mut offset = ask(client, table).await?;
    for _ in 1..MAX_REQUESTS {
        if offset.verdict() != Verdict::Straddles {
            break;
        }
        tokio::time::sleep(wait_to_aim(Timestamp::now(), offset.estimate())).await;
        let next = ask(client, table).await?;
        offset = offset.intersect(&next).ok_or(ClockError::Inconsistent)?;
    }
    Ok(offset)
}

/// Accepts the measured offset only if all of it lies within [`MAX_CLOCK_OFFSET`].
pub fn check_clock(offset: &ClockOffset) -> Result<(), ClockError> {
    match offset.verdict() {
        Verdict::Within => Ok(()),
        Verdict::Beyond => Err(ClockError::Skewed(*offset)),
        Verdict::Straddles => Err(ClockError::Undecidable(*offset)),
    }
}

/// How long to wait so that a clock `aim` ahead of this one turns a second just then.
fn wait_to_aim(now: Timestamp, aim: SignedDuration) -> Duration {
    const NANOS_PER_SECOND: i64 = 1_000_000_000;
    let into_second =
        (i64::from(now.subsec_nanosecond()) + i64::from(aim.subsec_nanos())).rem_euclid(NANOS_PER_SECOND);
    Duration::from_nanos(((NANOS_PER_SECOND - into_second) % NANOS_PER_SECOND).unsigned_abs())
}

/// One DescribeTable call: the offsets its answers allow (one answer, or more if it was retried).
async fn ask(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<ClockOffset, ClockError> {
    let probe = DateProbe::default();
    let result = client
        .describe_table()
        .table_name(table)
        .customize()
        .interceptor(probe.clone())
        .send()
        .await;
    let mut offset: Option<ClockOffset> = None;
    for answer in probe.take_answers() {
        let allowed = answer.offsets(table)?;
        offset = Some(match offset {
            None => allowed,
            Some(offset) => offset.intersect(&allowed).ok_or(ClockError::Inconsistent)?,
        });
    }
    match (offset, result) {
        (Some(offset), _) => Ok(offset),
        (None, Err(error)) => Err(ClockError::DescribeTable {
            table: table.to_owned(),
            causes: with_causes(&error),
        }),
        // A call that succeeded was answered; the probe saw no answer with a date.
        (None, Ok(_)) => Err(ClockError::NoDate {
            table: table.to_owned(),
        }),
    }
}

/// One HTTP answer: when its request left, when it arrived, and its `Date` header.
#[derive(Debug)]
struct Answer {
    sent: Timestamp,
    received: Timestamp,
    date: Option<String>,
}

impl Answer {
    /// The offsets this answer allows: `[Date − received, Date + 1 s − sent]`.
    fn offsets(&self, table: &str) -> Result<ClockOffset, ClockError> {
        let Some(value) = &self.date else {
            return Err(ClockError::NoDate {
                table: table.to_owned(),
            });
        };
        static PARSER: DateTimeParser = DateTimeParser::new();
        let date = PARSER
            .parse_timestamp(value)
            .map_err(|error| ClockError::UnreadableDate {
                value: value.clone(),
                reason: error.to_string(),
            })?;
        Ok(ClockOffset {
            lower: date.duration_since(self.received),
            upper: date.duration_since(self.sent) + DATE_RESOLUTION,
        })
    }
}

/// An interceptor that notes the local time around each attempt's transmission and the answer's
/// `Date`. Attached to one call; its attempts run one after the other.
#[derive(Debug, Clone, Default)]
struct DateProbe(Arc<Mutex<ProbeState>>);

#[derive(Debug, Default)]
struct ProbeState {
    /// When the current attempt's request left.
    sent: Option<Timestamp>,
    answers: Vec<Answer>,
}

impl DateProbe {
    fn state(&self) -> MutexGuard<'_, ProbeState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_answers(&self) -> Vec<Answer> {
        std::mem::take(&mut self.state().answers)
    }
}

impl Intercept for DateProbe {
    fn name(&self) -> &'static str {
        "DateProbe"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.state().sent = Some(Timestamp::now());
        Ok(())
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let received = Timestamp::now();
        let date = context
            .response()
            .headers()
            .get_bytes("date")
            .map(|value| String::from_utf8_lossy(value).into_owned());
        let mut state = self.state();
        if let Some(sent) = state.sent.take() {
            state.answers.push(Answer { sent, received, date });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::config::http::HttpResponse;
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use jiff::fmt::rfc2822::DateTimePrinter;

    use super::*;
    use crate::timing::LEASE_SAFETY;

    const TABLE: &str = "flow-metrics-ledger";

    /// DynamoDB's answer to DescribeTable, with `status` and `body`, dated by a clock `shift`
    /// ahead of this one when the answer is made (no Date header without a shift).
    fn answer(status: u16, body: &'static str, shift: Option<SignedDuration>) -> HttpResponse {
        let mut response = HttpResponse::new(status.try_into().expect("a status"), body.into());
        response
            .headers_mut()
            .insert("content-type", "application/x-amz-json-1.0");
        if let Some(shift) = shift {
            let date = DateTimePrinter::new()
                .timestamp_to_rfc9110_string(&(Timestamp::now() + shift))
                .expect("an HTTP date");
            response.headers_mut().insert("date", date);
        }
        response
    }

    const DESCRIBED: &str = r#"{"Table":{"TableName":"flow-metrics-ledger","TableStatus":"ACTIVE"}}"#;

    /// A DescribeTable rule answering every call with `make`.
    fn describe_table(make: impl Fn() -> HttpResponse + Send + Sync + 'static) -> Rule {
        mock!(Client::describe_table)
            .match_requests(|request| request.table_name() == Some(TABLE))
            .sequence()
            .http_response(make)
            .repeatedly()
            .build()
    }

    fn client(rule: &Rule) -> Client {
        mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [rule])
    }

    /// Measures against DynamoDB answering with a clock `shift` ahead of this one.
    async fn measure_shifted(shift: SignedDuration) -> (Result<ClockOffset, ClockError>, usize) {
        let rule = describe_table(move || answer(200, DESCRIBED, Some(shift)));
        let measured = measure_clock_offset(&client(&rule), TABLE).await;
        (measured, rule.num_calls())
    }

    /// The seconds a refusal names: `this machine's clock is 600.4 s ahead of AWS's …`.
    fn seconds_named(message: &str) -> f64 {
        message
            .strip_prefix("this machine's clock is ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|seconds| seconds.parse().ok())
            .unwrap_or_else(|| panic!("no offset in {message}"))
    }

    #[test]
    fn the_bound_keeps_two_writers_apart_by_less_than_the_lease_safety() {
        assert!(MAX_CLOCK_OFFSET < LEASE_SAFETY);
        // Two writers, each within the bound of AWS's clock, are within twice it of each other.
        assert!(MAX_CLOCK_OFFSET * 2 < LEASE_SAFETY);
        // The sink's re-timing keeps points minutes inside DataDog's window.
        let lead = crate::sink::datadog::payload::MAX_POINT_LEAD;
        let age = crate::sink::datadog::payload::MAX_POINT_AGE;
        assert!(BOUND < SignedDuration::from_mins(10) - lead);
        assert!(BOUND < SignedDuration::from_hours(1) - age);
        assert_eq!(BOUND.as_millis(), MAX_CLOCK_OFFSET.as_millis() as i128);
    }

    #[tokio::test]
    async fn a_date_ten_minutes_behind_is_refused_as_a_clock_ten_minutes_ahead() {
        let (measured, calls) = measure_shifted(SignedDuration::from_mins(-10)).await;
        let offset = measured.expect("measured");
        assert_eq!(calls, 1, "one answer decides");
        let error = check_clock(&offset).expect_err("refused");
        assert_eq!(error, ClockError::Skewed(offset));
        let message = error.to_string();
        assert!((599.4..=600.6).contains(&seconds_named(&message)), "{message}");
        assert!(message.contains(" s ahead of AWS's"), "{message}");
        assert!(message.contains("more than 2 s off"), "{message}");
        assert!(message.contains("sudo chronyc makestep"), "{message}");
    }

    #[tokio::test]
    async fn a_date_ten_minutes_ahead_is_refused_as_a_clock_ten_minutes_behind() {
        let (measured, _) = measure_shifted(SignedDuration::from_mins(10)).await;
        let offset = measured.expect("measured");
        let message = check_clock(&offset).expect_err("refused").to_string();
        assert!((599.4..=600.6).contains(&seconds_named(&message)), "{message}");
        assert!(message.contains(" s behind AWS's"), "{message}");
    }

    #[tokio::test]
    async fn the_right_date_is_accepted_whenever_it_is_read() {
        // The answer's Date is the current second, truncated: the interval is about
        // [-(fraction), 1 - fraction] seconds, within the bound at any fraction of a second.
        for _ in 0..5 {
            let (measured, calls) = measure_shifted(SignedDuration::ZERO).await;
            let offset = measured.expect("measured");
            assert_eq!(calls, 1);
            assert_eq!(check_clock(&offset), Ok(()), "{offset:?}");
            assert!(
                offset.upper - offset.lower < SignedDuration::from_millis(1100),
                "{offset:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_answer_that_straddles_the_bound_is_followed_by_one_aimed_at_its_middle() {
        let shift = SignedDuration::from_millis(2500);
        // Start when the answering clock is 0.8 s into its second: the first answer allows
        // about 1.7 s to 2.7 s, across the bound.
        tokio::time::sleep(wait_to_aim(
            Timestamp::now(),
            shift - SignedDuration::from_millis(800),
        ))
        .await;
        let (measured, calls) = measure_shifted(shift).await;
        let offset = measured.expect("measured");
        assert_eq!(calls, 2, "{offset:?}");
        assert!(
            offset.upper - offset.lower < SignedDuration::from_millis(700),
            "{offset:?}"
        );
        assert!(offset.lower <= shift && shift <= offset.upper, "{offset:?}");
        assert_eq!(check_clock(&offset), Err(ClockError::Skewed(offset)));
    }

    #[tokio::test]
    async fn an_error_answer_carries_the_date_too() {
        let rule = describe_table(|| {
            answer(
                400,
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ResourceNotFoundException","message":"Requested resource not found"}"#,
                Some(SignedDuration::from_mins(-10)),
            )
        });
        let offset = measure_clock_offset(&client(&rule), TABLE)
            .await
            .expect("measured");
        assert!(matches!(check_clock(&offset), Err(ClockError::Skewed(_))));
    }

    #[tokio::test]
    async fn an_answer_without_a_date_says_so() {
        let rule = describe_table(|| answer(200, DESCRIBED, None));
        let error = measure_clock_offset(&client(&rule), TABLE)
            .await
            .expect_err("no date");
        assert_eq!(
            error,
            ClockError::NoDate {
                table: TABLE.to_owned()
            }
        );
        assert!(error.to_string().contains("carried no Date header"), "{error}");
    }

    #[tokio::test]
    async fn a_date_that_is_not_an_http_date_says_so() {
        let rule = describe_table(|| {
            let mut response = answer(200, DESCRIBED, None);
            response.headers_mut().insert("date", "yesterday");
            response
        });
        let error = measure_clock_offset(&client(&rule), TABLE)
            .await
            .expect_err("unreadable");
        assert!(
            matches!(&error, ClockError::UnreadableDate { value, .. } if value == "yesterday"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_dynamodb_is_a_describe_table_failure_with_its_causes() {
        // A port nobody listens on: the listener is closed before the call.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .retry_config(RetryConfig::disabled())
            .build();
        let error = measure_clock_offset(&Client::from_conf(config), TABLE)
            .await
            .expect_err("unreachable");
        let message = error.to_string();
        assert!(matches!(error, ClockError::DescribeTable { .. }), "{message}");
        assert!(
            message.contains("DescribeTable on `flow-metrics-ledger`"),
            "{message}"
        );
        assert!(message.contains("dispatch failure"), "{message}");
    }

    #[test]
    fn an_interval_across_the_bound_is_undecidable_and_says_where_it_lies() {
        let offset = ClockOffset {
            lower: SignedDuration::from_millis(-1300),
            upper: SignedDuration::from_millis(2900),
        };
        let error = check_clock(&offset).expect_err("undecidable");
        assert_eq!(error, ClockError::Undecidable(offset));
        let message = error.to_string();
        assert!(
            message.contains("between 1.3 s ahead of AWS's and 2.9 s behind it"),
            "{message}"
        );
        assert!(message.contains("Run the command again"), "{message}");
    }

    #[test]
    fn answers_whose_intervals_do_not_meet_are_inconsistent() {
        let early = ClockOffset {
            lower: SignedDuration::from_secs(0),
            upper: SignedDuration::from_secs(1),
        };
        let late = ClockOffset {
            lower: SignedDuration::from_secs(2),
            upper: SignedDuration::from_secs(3),
        };
        assert_eq!(early.intersect(&late), None);
        let overlapping = ClockOffset {
            lower: SignedDuration::from_millis(500),
            upper: SignedDuration::from_secs(3),
        };
        assert_eq!(
            early.intersect(&overlapping),
            Some(ClockOffset {
                lower: SignedDuration::from_millis(500),
                upper: SignedDuration::from_secs(1),
            })
        );
    }

    #[test]
    fn the_wait_brings_the_aimed_clock_to_a_whole_second() {
        let now: Timestamp = "2026-03-07T04:10:00.25Z".parse().expect("timestamp");
        let wait = |aim_ms| wait_to_aim(now, SignedDuration::from_millis(aim_ms));
        assert_eq!(wait(0), Duration::from_millis(750));
        assert_eq!(wait(2500), Duration::from_millis(250));
        assert_eq!(wait(-300), Duration::from_millis(50));
        assert_eq!(wait(750), Duration::ZERO);
        assert_eq!(wait(-600_250), Duration::ZERO);
    }
}
