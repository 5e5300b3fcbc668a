//! DataDog's naming rules for metric names and tags, applied before anything is sent.
//!
//! Tags: lowercase; letters (any script), digits, `_`, `-`, `:`, `.` and `/` are kept, every
//! other character becomes `_`; runs of `_` collapse to one and trailing `_` are dropped; at most
//! 200 characters. A tag must start with a letter: ours start with their key (`flow:`), and a
//! static tag that does not is refused. Metric names: ASCII letters, digits, `_` and `.`,
//! starting with a letter, at most 200 characters.

/// Longest tag or metric name DataDog keeps, in characters.
pub const MAX_LENGTH: usize = 200;

/// Why a configured name or tag cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "metric name {0:?} must start with a letter and hold only ASCII letters, digits, '_' and '.' (at most 200)"
    )]
    MetricName(String),
    #[error("tag {0:?} must start with a letter")]
    TagStart(String),
}

/// `key:value` with the value normalised; an empty value becomes `_` so the tag never ends in `:`.
pub fn tag(key: &str, value: &str) -> String {
    let mut tag = normalise(&format!("{key}:{value}"));
    if tag.ends_with(':') {
        tag.push('_');
    }
    tag
}

/// Normalises one tag as DataDog would.
pub fn normalise(raw: &str) -> String {
    let mut tag = String::with_capacity(raw.len());
    for character in raw.chars().flat_map(char::to_lowercase) {
        let kept = character.is_alphanumeric() || matches!(character, '_' | '-' | ':' | '.' | '/');
        let character = if kept { character } else { '_' };
        if !(character == '_' && tag.ends_with('_')) {
            tag.push(character);
        }
    }
    let mut tag: String = tag.trim_end_matches('_').chars().take(MAX_LENGTH).collect();
    while tag.ends_with('_') {
        tag.pop();
    }
    tag
}

/// Parses static tags in the `DD_TAGS` form of DataDog's Lambda tooling: comma-separated
/// `key:value` (spaces inside a value become `_`).
pub fn parse_static_tags(text: &str) -> Result<Vec<String>, NameError> {
    text.split(',')
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .map(|raw| {
            let tag = normalise(raw);
            match tag.chars().next() {
                Some(first) if first.is_alphabetic() => Ok(tag),
                _ => Err(NameError::TagStart(raw.to_owned())),
            }
        })
        .collect()
}

/// Checks a metric name against DataDog's rules.
pub fn check_metric_name(name: &str) -> Result<(), NameError> {
    let valid = name.len() <= MAX_LENGTH
        && name.starts_with(|first: char| first.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if valid {
        Ok(())
    } else {
        Err(NameError::MetricName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_lowercased_and_odd_characters_become_one_underscore() {
        assert_eq!(tag("flow", "Billing IVR"), "flow:billing_ivr");
        assert_eq!(tag("metric", "Menu Option 2"), "metric:menu_option_2");
        assert_eq!(tag("metric", "Payment-Taken"), "metric:payment-taken");
        assert_eq!(tag("metric", "a  &&  b!!"), "metric:a_b");
        assert_eq!(tag("flow", "Café/Ünïcode.v2"), "flow:café/ünïcode.v2");
        assert_eq!(tag("flow", "Sub_Metric_X"), "flow:sub_metric_x");
    }

    #[test]
    fn tags_never_end_in_a_colon_or_underscore_and_stay_within_200_characters() {
        assert_eq!(tag("flow", "!!!"), "flow:_");
        assert_eq!(tag("metric", "x?"), "metric:x");
        let long = tag("metric", &"m".repeat(300));
        assert_eq!(long.chars().count(), 200);
        let cut_on_underscore = tag("metric", &format!("{}!x", "m".repeat(192)));
        assert!(!cut_on_underscore.ends_with('_'), "{cut_on_underscore}");
    }

    #[test]
    fn static_tags_follow_dd_tags() {
        assert_eq!(
            parse_static_tags("env:prod, team:Contact Centre,service:genesys").expect("tags"),
            ["env:prod", "team:contact_centre", "service:genesys"]
        );
        assert_eq!(parse_static_tags("").expect("none"), Vec::<String>::new());
        assert_eq!(parse_static_tags("env:prod,,").expect("tags"), ["env:prod"]);
        assert!(parse_static_tags("2fa:on").is_err());
    }

    #[test]
    fn metric_names_follow_datadog_rules() {
        assert!(check_metric_name("genesys.flow.metric").is_ok());
        assert!(check_metric_name("flow_metric2").is_ok());
        assert!(check_metric_name("2metric").is_err());
        assert!(check_metric_name("genesys-flow").is_err());
        assert!(check_metric_name("").is_err());
    }
}
