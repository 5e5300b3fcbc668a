//! The metric attribute grammar: which participant-data keys are metrics, and what they say.
//!
//! A flow marks a point by setting an attribute named
//! `<FlowName>Metric_<MetricName>(<DateTime in UTC>)`. This module turns one attribute key into a
//! [`MetricKey`] (flow, metric, UTC time), tells non-metric keys apart, and says exactly why a
//! key that looks like a metric is not a valid one. It is pure: no I/O, no clock.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::Offset;
use winnow::Parser;
use winnow::combinator::{eof, opt};
use winnow::error::{ContextError, StrContext, StrContextValue};
use winnow::token::{one_of, take_while};

use crate::key::{MetricKey, Source};

/// What marks an attribute key as a metric candidate, and splits flow from metric.
pub const METRIC_MARKER: &str = "Metric_";

/// Longest flow or metric name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 200;

/// How one attribute key reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attribute<'a> {
    /// Not a metric (no `Metric_` in it): ignored.
    Other,
    /// A valid metric key.
    Metric(MetricKey<'a>),
    /// Looks like a metric but breaks a rule: never counted, always reported.
    Invalid(InvalidKey),
}

/// Why a metric candidate key is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    #[error("the {0} name is empty")]
    EmptyName(NamePart),
    #[error("the {part} name is {len} bytes long; at most {MAX_NAME_BYTES} are allowed")]
    NameTooLong { part: NamePart, len: usize },
    #[error("the {part} name contains {found:?}, which is not allowed (no '(', ')' or control characters)")]
    ForbiddenCharacter { part: NamePart, found: char },
    #[error("no '(' opens the datetime after the metric name")]
    MissingDateTime,
    #[error("the key must end with ')' closing the datetime")]
    Unclosed,
    #[error("datetime {text:?} is not an RFC 3339 date-time: {reason}")]
    DateTimeSyntax { text: String, reason: String },
    #[error("datetime {text:?} does not exist: {reason}")]
    ImpossibleDateTime { text: String, reason: String },
    /// A milestone or outcome whose event lacks a field its key needs.
    #[error("the event has no {0} for it")]
    MissingField(&'static str),
    /// A milestone or outcome whose id is too long or holds control characters.
    #[error("the event's {field} {id:?} is not an id (at most 200 bytes, no control characters)")]
    NotAnId { field: &'static str, id: String },
}

/// Which name of a key a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePart {
    Flow,
    Metric,
}

impl fmt::Display for NamePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NamePart::Flow => "flow",
            NamePart::Metric => "metric",
        })
    }
}

/// Longest piece of an attribute key quoted whole in a message.
const EXCERPT_BYTES: usize = 200;

/// A key (or part of one) fit for a log line: whole if short, else its start and its length.
pub fn excerpt(text: &str) -> String {
    if text.len() <= EXCERPT_BYTES {
        return text.to_owned();
    }
    let mut end = EXCERPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// Reads one attribute key.
pub fn classify(key: &str) -> Attribute<'_> {
    let Some((flow, rest)) = key.split_once(METRIC_MARKER) else {
        return Attribute::Other;
    };
    match parse_candidate(key, flow, rest) {
        Ok(metric) => Attribute::Metric(metric),
        Err(invalid) => Attribute::Invalid(invalid),
    }
}

fn parse_candidate<'a>(key: &'a str, flow: &'a str, rest: &'a str) -> Result<MetricKey<'a>, InvalidKey> {
    let (metric, datetime) = rest.rsplit_once('(').ok_or(InvalidKey::MissingDateTime)?;
    let datetime = datetime.strip_suffix(')').ok_or(InvalidKey::Unclosed)?;
    check_name(NamePart::Flow, flow)?;
    check_name(NamePart::Metric, metric)?;
    let time = parse_datetime(datetime)?;
    Ok(MetricKey {
        key,
        flow,
        metric,
        time,
        source: Source::Attribute,
    })
}

fn check_name(part: NamePart, name: &str) -> Result<(), InvalidKey> {
    if name.is_empty() {
        return Err(InvalidKey::EmptyName(part));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(InvalidKey::NameTooLong {
            part,
            len: name.len(),
        });
    }
    match name.chars().find(|c| matches!(c, '(' | ')') || c.is_control()) {
        Some(found) => Err(InvalidKey::ForbiddenCharacter { part, found }),
        None => Ok(()),
    }
}

/// The fields of an RFC 3339 date-time as written, before calendar checks.
struct DateTimeFields {
    year: i16,
    month: i8,
    day: i8,
    hour: i8,
    minute: i8,
    second: i8,
    nanosecond: i32,
    offset_seconds: i32,
}

/// Parses `YYYY-MM-DD(T| )HH:MM:SS[.f{1,9}][Z|±HH:MM]`; no offset means UTC.
pub fn parse_datetime(text: &str) -> Result<Timestamp, InvalidKey> {
    let fields = datetime_fields
        .parse(text)
        .map_err(|error| InvalidKey::DateTimeSyntax {
            text: excerpt(text),
            reason: describe_syntax_error(error.inner(), error.offset()),
        })?;
    let impossible = |error: jiff::Error| InvalidKey::ImpossibleDateTime {
        text: excerpt(text),
        reason: error.to_string(),
    };
    let date = Date::new(fields.year, fields.month, fields.day).map_err(impossible)?;
    let time = Time::new(fields.hour, fields.minute, fields.second, fields.nanosecond).map_err(impossible)?;
    let offset = Offset::from_seconds(fields.offset_seconds).map_err(impossible)?;
    offset.to_timestamp(date.to_datetime(time)).map_err(impossible)
}

fn describe_syntax_error(error: &ContextError, offset: usize) -> String {
    let expected = error
        .context()
        .find_map(|context| match context {
            StrContext::Expected(StrContextValue::Description(what)) => Some(*what),
            _ => None,
        })
        .unwrap_or("the end of the datetime");
    format!("expected {expected} at character {}", offset + 1)
}

fn expect(what: &'static str) -> StrContext {
    StrContext::Expected(StrContextValue::Description(what))
}

fn datetime_fields(input: &mut &str) -> winnow::Result<DateTimeFields> {
    let year = digits(4, "a 4-digit year").parse_next(input)?;
    '-'.context(expect("'-' after the year")).parse_next(input)?;
    let month = digits(2, "a 2-digit month").parse_next(input)?;
    '-'.context(expect("'-' after the month")).parse_next(input)?;
    let day = digits(2, "a 2-digit day").parse_next(input)?;
    one_of(['T', ' '])
        .context(expect("'T' or ' ' between date and time"))
        .parse_next(input)?;
    let hour = digits(2, "a 2-digit hour").parse_next(input)?;
    ':'.context(expect("':' after the hour")).parse_next(input)?;
    let minute = digits(2, "2-digit minutes").parse_next(input)?;
    ':'.context(expect("':' after the minutes")).parse_next(input)?;
    let second = digits(2, "2-digit seconds").parse_next(input)?;
    let nanosecond = match opt('.').parse_next(input)? {
        Some(_) => fraction.parse_next(input)?,
        None => 0,
    };
    let offset_seconds = match opt(one_of(['Z', '+', '-'])).parse_next(input)? {
        Some('+') => offset.parse_next(input)?,
        Some('-') => -offset.parse_next(input)?,
        _ => 0,
    };
    eof.context(expect("a fraction, 'Z', a ±HH:MM offset, or nothing more"))
        .parse_next(input)?;
    Ok(DateTimeFields {
        year,
        month,
        day,
        hour,
        minute,
        second,
        nanosecond,
        offset_seconds,
    })
}

/// Exactly `count` ASCII digits, as the number type the field needs (4 digits fit an `i16`,
/// 2 an `i8`, 9 an `i32`, so the conversion cannot fail for the counts used here).
fn digits<'i, T>(count: usize, what: &'static str) -> impl Parser<&'i str, T, ContextError>
where
    T: TryFrom<u32>,
    T::Error: std::error::Error + Send + Sync + 'static,
{
    take_while(count..=count, |c: char| c.is_ascii_digit())
        .try_map(|digits: &str| T::try_from(decimal(digits)))
        .context(expect(what))
}

fn decimal(digits: &str) -> u32 {
    digits.bytes().fold(0, |n, d| n * 10 + u32::from(d - b'0'))
}

/// The 1 to 9 digits after `.`, as nanoseconds.
fn fraction(input: &mut &str) -> winnow::Result<i32> {
    take_while(1..=9, |c: char| c.is_ascii_digit())
        .try_map(|digits: &str| {
            let padding = (digits.len()..9).fold(1, |scale, _| scale * 10);
            i32::try_from(decimal(digits) * padding)
        })
        .context(expect("1 to 9 fractional digits"))
        .parse_next(input)
}

/// The `HH:MM` after an offset's sign, as seconds.
fn offset(input: &mut &str) -> winnow::Result<i32> {
    let hours = digits::<i32>(2, "2-digit offset hours")
        .verify(|hours| *hours <= 23)
        .context(expect("offset hours from 00 to 23"))
        .parse_next(input)?;
    ':'.context(expect("':' in the offset")).parse_next(input)?;
    let minutes = digits::<i32>(2, "2-digit offset minutes")
        .verify(|minutes| *minutes <= 59)
        .context(expect("offset minutes from 00 to 59"))
        .parse_next(input)?;
    Ok(hours * 3600 + minutes * 60)
}
