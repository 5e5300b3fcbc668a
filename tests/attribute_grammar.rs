//! The metric attribute grammar, rule by rule, both ways.

use flow_metrics::attribute::{Attribute, InvalidKey, NamePart, classify};
use flow_metrics::key::{MetricKey, Source};
use jiff::Timestamp;
use proptest::prelude::*;

fn metric(key: &str) -> MetricKey<'_> {
    match classify(key) {
        Attribute::Metric(metric) => metric,
        other => panic!("{key:?} should be a valid metric key, got {other:?}"),
    }
}

fn invalid(key: &str) -> InvalidKey {
    match classify(key) {
        Attribute::Invalid(reason) => reason,
        other => panic!("{key:?} should be an invalid metric key, got {other:?}"),
    }
}

fn utc(text: &str) -> Timestamp {
    text.parse().expect("test timestamp")
}

#[test]
fn the_documented_example() {
    let key = "CustomerRoutingMetric_Unknown(2023-03-05T08:18:04.568Z)";
    assert_eq!(
        metric(key),
        MetricKey {
            key,
            flow: "CustomerRouting",
            metric: "Unknown",
            time: utc("2023-03-05T08:18:04.568Z"),
            source: Source::Attribute,
        }
    );
}

#[test]
fn keys_without_the_marker_are_not_metrics() {
    for key in [
        "AccountID",
        "Metric",
        "Metric-",
        "FlowMetric(2023-03-05T08:18:04Z)",
        "metric_lowercase(2023-03-05T08:18:04Z)",
        "",
    ] {
        assert_eq!(classify(key), Attribute::Other, "{key:?}");
    }
}

#[test]
fn names_may_hold_spaces_underscores_and_dashes() {
    let billing = metric("Billing IVRMetric_Menu Option 2(2026-03-07T04:08:28.093Z)");
    assert_eq!((billing.flow, billing.metric), ("Billing IVR", "Menu Option 2"));
    let dashed = metric("Self-Service_v2Metric_Payment-Taken(2026-03-07T04:08:28Z)");
    assert_eq!((dashed.flow, dashed.metric), ("Self-Service_v2", "Payment-Taken"));
}

#[test]
fn the_flow_ends_at_the_first_marker_and_the_metric_at_the_last_paren() {
    let bot = metric("BotMetric_Sub_Metric_X(2026-03-07T04:08:28Z)");
    assert_eq!((bot.flow, bot.metric), ("Bot", "Sub_Metric_X"));
    // The metric running to the last '(' means a '(' inside it is caught, not split on.
    assert_eq!(
        invalid("BotMetric_Menu (2)(2026-03-07T04:08:28Z)"),
        InvalidKey::ForbiddenCharacter {
            part: NamePart::Metric,
            found: '('
        }
    );
}

#[test]
fn names_must_not_be_empty() {
    assert_eq!(
        invalid("Metric_Unknown(2026-03-07T04:08:28Z)"),
        InvalidKey::EmptyName(NamePart::Flow)
    );
    assert_eq!(
        invalid("FlowMetric_(2026-03-07T04:08:28Z)"),
        InvalidKey::EmptyName(NamePart::Metric)
    );
}

#[test]
fn names_are_at_most_200_bytes() {
    let longest = "f".repeat(200);
    assert_eq!(
        metric(&format!("{longest}Metric_M(2026-03-07T04:08:28Z)")).flow,
        longest
    );
    assert_eq!(
        invalid(&format!("{longest}xMetric_M(2026-03-07T04:08:28Z)")),
        InvalidKey::NameTooLong {
            part: NamePart::Flow,
            len: 201
        }
    );
    // Bytes, not characters: 101 two-byte characters are 202 bytes.
    assert_eq!(
        invalid(&format!("FMetric_{}(2026-03-07T04:08:28Z)", "é".repeat(101))),
        InvalidKey::NameTooLong {
            part: NamePart::Metric,
            len: 202
        }
    );
}

#[test]
fn names_refuse_parens_and_control_characters() {
    assert_eq!(
        invalid("Flow(1)Metric_M(2026-03-07T04:08:28Z)"),
        InvalidKey::ForbiddenCharacter {
            part: NamePart::Flow,
            found: '('
        }
    );
    assert_eq!(
        invalid("FlowMetric_M)x(2026-03-07T04:08:28Z)"),
        InvalidKey::ForbiddenCharacter {
            part: NamePart::Metric,
            found: ')'
        }
    );
    assert_eq!(
        invalid("Flow\tMetric_M(2026-03-07T04:08:28Z)"),
        InvalidKey::ForbiddenCharacter {
            part: NamePart::Flow,
            found: '\t'
        }
    );
    assert_eq!(
        invalid("FlowMetric_M\u{7f}(2026-03-07T04:08:28Z)"),
        InvalidKey::ForbiddenCharacter {
            part: NamePart::Metric,
            found: '\u{7f}'
        }
    );
}

#[test]
fn the_datetime_must_be_in_parens_that_end_the_key() {
    assert_eq!(invalid("FlowMetric_M"), InvalidKey::MissingDateTime);
    assert_eq!(
        invalid("FlowMetric_M2026-03-07T04:08:28Z)"),
        InvalidKey::MissingDateTime
    );
    assert_eq!(invalid("FlowMetric_M(2026-03-07T04:08:28Z"), InvalidKey::Unclosed);
    assert_eq!(
        invalid("FlowMetric_M(2026-03-07T04:08:28Z) "),
        InvalidKey::Unclosed
    );
    assert_eq!(
        invalid("FlowMetric_M(2026-03-07T04:08:28Z)x"),
        InvalidKey::Unclosed
    );
}

#[test]
fn datetimes_accept_the_rfc_3339_forms() {
    let at = |datetime: &str| metric(&format!("FMetric_M({datetime})")).time;
    let expected = utc("2026-03-07T04:08:28Z");
    assert_eq!(at("2026-03-07T04:08:28Z"), expected);
    assert_eq!(at("2026-03-07 04:08:28Z"), expected, "space separator");
    assert_eq!(at("2026-03-07T04:08:28"), expected, "no offset means UTC");
    assert_eq!(at("2026-03-07T05:08:28+01:00"), expected);
    assert_eq!(at("2026-03-06T23:38:28-04:30"), expected);
    assert_eq!(at("2026-03-07T04:08:28.093Z"), utc("2026-03-07T04:08:28.093Z"));
    assert_eq!(at("2026-03-07T04:08:28.1Z"), utc("2026-03-07T04:08:28.100Z"));
    assert_eq!(
        at("2026-03-07T04:08:28.123456789Z"),
        utc("2026-03-07T04:08:28.123456789Z")
    );
    assert_eq!(
        at("2024-02-29T00:00:00Z"),
        utc("2024-02-29T00:00:00Z"),
        "leap day"
    );
}

#[test]
fn datetimes_refuse_other_syntax_with_the_place_it_breaks() {
    for (datetime, expected) in [
        ("", "expected a 4-digit year at character 1"),
        ("26-03-07T04:08:28Z", "expected a 4-digit year at character 1"),
        (
            "2026/03/07T04:08:28Z",
            "expected '-' after the year at character 5",
        ),
        ("2026-3-07T04:08:28Z", "expected a 2-digit month at character 6"),
        (
            "2026-03-07",
            "expected 'T' or ' ' between date and time at character 11",
        ),
        (
            "2026-03-07_04:08:28Z",
            "expected 'T' or ' ' between date and time at character 11",
        ),
        (
            "2026-03-07T04:08Z",
            "expected ':' after the minutes at character 17",
        ),
        (
            "2026-03-07T04:08:28.Z",
            "expected 1 to 9 fractional digits at character 21",
        ),
        (
            "2026-03-07T04:08:28.1234567890Z",
            "expected a fraction, 'Z', a ±HH:MM offset, or nothing more at character 30",
        ),
        (
            "2026-03-07T04:08:28+1:00",
            "expected 2-digit offset hours at character 21",
        ),
        (
            "2026-03-07T04:08:28+24:00",
            "expected offset hours from 00 to 23 at character 21",
        ),
        (
            "2026-03-07T04:08:28+01:60",
            "expected offset minutes from 00 to 59 at character 24",
        ),
        (
            "2026-03-07T04:08:28+0100",
            "expected ':' in the offset at character 23",
        ),
        (
            "2026-03-07T04:08:28z",
            "expected a fraction, 'Z', a ±HH:MM offset, or nothing more at character 20",
        ),
        (
            "2026-03-07T04:08:28Z trailing",
            "expected a fraction, 'Z', a ±HH:MM offset, or nothing more at character 21",
        ),
    ] {
        match invalid(&format!("FMetric_M({datetime})")) {
            InvalidKey::DateTimeSyntax { text, reason } => {
                assert_eq!(text, datetime);
                assert_eq!(reason, expected, "{datetime:?}");
            }
            other => panic!("{datetime:?}: expected a syntax error, got {other:?}"),
        }
    }
}

#[test]
fn impossible_dates_and_times_are_invalid() {
    for datetime in [
        "2023-02-29T00:00:00Z",
        "2026-02-30T10:00:00Z",
        "2026-04-31T10:00:00Z",
        "2026-13-01T10:00:00Z",
        "2026-00-01T10:00:00Z",
        "2026-03-00T10:00:00Z",
        "2026-03-07T25:00:00Z",
        "2026-03-07T04:60:00Z",
        "2026-03-07T04:08:60Z",
    ] {
        assert!(
            matches!(
                invalid(&format!("FMetric_M({datetime})")),
                InvalidKey::ImpossibleDateTime { .. }
            ),
            "{datetime:?}"
        );
    }
}

#[test]
fn invalid_reasons_read_clearly() {
    assert_eq!(
        invalid("FlowMetric_M(2026-02-30T10:00:00Z)").to_string(),
        "datetime \"2026-02-30T10:00:00Z\" does not exist: parameter 'day' for `2026-02` is invalid, must be in range `1..=28`"
    );
    assert_eq!(
        invalid("FlowMetric_M").to_string(),
        "no '(' opens the datetime after the metric name"
    );
}

fn name() -> impl Strategy<Value = String> {
    // Anything the grammar allows in a name, including the marker itself in the metric.
    proptest::string::string_regex("[A-Za-z0-9 _\\-éß]{1,40}").expect("valid regex")
}

proptest! {
    #[test]
    fn any_valid_key_parses_back_to_its_parts(
        flow in name().prop_filter("a flow ends at the first marker", |flow| !flow.contains("Metric_")),
        metric_name in name(),
        seconds in 0i64..4_102_444_800,
        millis in 0i64..1000,
    ) {
        let time = Timestamp::from_millisecond(seconds * 1000 + millis).expect("in range");
        let key = format!("{flow}Metric_{metric_name}({time})");
        let parsed = metric(&key);
        prop_assert_eq!(parsed.flow, flow.as_str());
        prop_assert_eq!(parsed.metric, metric_name.as_str());
        prop_assert_eq!(parsed.time, time);
    }

    #[test]
    fn no_key_panics_and_every_metric_key_is_a_candidate(key in "\\PC{0,80}(Metric_)?\\PC{0,40}") {
        let attribute = classify(&key);
        prop_assert_eq!(matches!(attribute, Attribute::Other), !key.contains("Metric_"));
    }
}
