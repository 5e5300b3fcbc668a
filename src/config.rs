//! Reading settings from environment variables, each checked with a message that names the
//! variable: the lookup ([`Env`]), the error ([`ConfigError`]) and durations. Each setting is
//! owned where it is used: the DataDog sink's in `sink::datadog::settings`, the names' in
//! `names::settings`, the Lambda's (which gathers them) in `lambda`. This module imports none of
//! them.
//!
//! Durations are written as jiff spans: `7d`, `36h`, `15m`, `90s`, `1h 30m`, or ISO 8601
//! (`P7D`, `PT15M`). A day is always 24 hours here: these settings bound ages, not calendars.

use jiff::{SignedDuration, Span, SpanRelativeTo};

/// Looks a variable up; the entry points pass the process environment, tests a map.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A setting that cannot be used, named by its variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub(crate) fn new(variable: &'static str, problem: impl ToString) -> Self {
        ConfigError {
            variable,
            problem: problem.to_string(),
        }
    }
}

/// A variable's value, if set and not blank.
pub(crate) fn setting(env: Env<'_>, variable: &str) -> Option<String> {
    env(variable)
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

pub(crate) fn duration_setting(
    env: Env<'_>,
    variable: &'static str,
    default: SignedDuration,
) -> Result<SignedDuration, ConfigError> {
    match setting(env, variable) {
        None => Ok(default),
        Some(text) => parse_duration(&text).map_err(|error| ConfigError::new(variable, error)),
    }
}

/// Why a duration setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{text:?} is not a duration (write e.g. 7d, 36h, 15m, 90s or P7D): {reason}")]
    Syntax { text: String, reason: String },
    #[error("{text:?} must be longer than zero")]
    NotPositive { text: String },
}

/// Why the ledger's retention cannot be used with the stale age.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "retention ({retention}) must be longer than the maximum key age ({max_key_age}): an item that \
     expires while its key can still arrive would be counted again"
)]
pub struct RetentionTooShort {
    pub retention: String,
    pub max_key_age: String,
}

/// Checks that ledger items outlive every key that can still count.
pub fn check_retention(
    retention: SignedDuration,
    max_key_age: SignedDuration,
) -> Result<(), RetentionTooShort> {
    if retention > max_key_age {
        Ok(())
    } else {
        Err(RetentionTooShort {
            retention: format!("{retention:#}"),
            max_key_age: format!("{max_key_age:#}"),
        })
    }
}

/// Parses a positive duration such as `7d` or `15m`.
pub fn parse_duration(text: &str) -> Result<SignedDuration, DurationError> {
    let syntax = |reason: jiff::Error| DurationError::Syntax {
        text: text.to_owned(),
        reason: reason.to_string(),
    };
    let span: Span = text.trim().parse().map_err(syntax)?;
    let duration = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(syntax)?;
    if duration.is_positive() {
        Ok(duration)
    } else {
        Err(DurationError::NotPositive {
            text: text.to_owned(),
        })
    }
}

/// An environment of exactly these variables, for tests.
#[cfg(test)]
pub(crate) fn env_of(variables: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let variables: std::collections::HashMap<String, String> = variables
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| variables.get(name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_24_hours() {
        assert_eq!(parse_duration("7d"), Ok(SignedDuration::from_hours(168)));
        assert_eq!(parse_duration("P7D"), Ok(SignedDuration::from_hours(168)));
        assert_eq!(parse_duration("15m"), Ok(SignedDuration::from_mins(15)));
        assert_eq!(parse_duration("1h 30m"), Ok(SignedDuration::from_mins(90)));
    }

    #[test]
    fn retention_must_outlive_the_stale_age() {
        let week = SignedDuration::from_hours(168);
        assert!(check_retention(SignedDuration::from_hours(720), week).is_ok());
        let error = check_retention(week, week).expect_err("equal is too short");
        assert_eq!(
            error.to_string(),
            "retention (168h) must be longer than the maximum key age (168h): an item that expires \
             while its key can still arrive would be counted again"
        );
    }

    #[test]
    fn refuses_nonsense_and_zero() {
        assert!(matches!(
            parse_duration("seven days"),
            Err(DurationError::Syntax { .. })
        ));
        assert!(matches!(
            parse_duration("0s"),
            Err(DurationError::NotPositive { .. })
        ));
        assert!(matches!(
            parse_duration("-3d"),
            Err(DurationError::NotPositive { .. })
        ));
    }
}
