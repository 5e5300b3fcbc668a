//! Link 2: the rule on the partner bus (`DescribeRule`): enabled, matching Genesys's attributes
//! topic (`detail-type` `v2.detail.events.conversation.{id}.attributes`, with the literal
//! `{id}`) from the bus's own source, and whether it forwards flow outcomes too; then whether it
//! matched events lately (CloudWatch `AWS/Events` `MatchedEvents`, by bus and rule). None in a
//! day fails; none in the last hour but some in the day warns, since a closed centre is quiet.

use aws_sdk_eventbridge::types::RuleState;
use serde_json::Value;

use super::calls::{CallFailed, Metric, Sums};
use super::source::INTEGRATION;
use super::walk::{DEPLOY, Walk};
use super::{Check, Link};
use crate::event::ATTRIBUTES_DETAIL_TYPE;
use crate::flow_outcome::FLOW_OUTCOME_DETAIL_TYPE;

pub(super) async fn check(walk: &Walk<'_>) -> Vec<Check> {
    let (bus, rule) = match walk.bus_and_rule() {
        Ok(parts) => parts,
        Err(output) => return vec![walk.missing(Link::Rule, "state", output)],
    };
    let events = aws_sdk_eventbridge::Client::new(walk.aws);
    let described = events.describe_rule().name(&rule).event_bus_name(&bus).send();
    let matched = Metric {
        namespace: "AWS/Events",
        name: "MatchedEvents",
        dimensions: &[("EventBusName", &bus), ("RuleName", &rule)],
    };
    let (described, matched) = tokio::join!(described, matched.sums(&walk.cloudwatch, walk.now));
    let region = &walk.deployment.region;
    let mut checks = match described {
        Ok(described) => {
            let enabled = match described.state() {
                Some(RuleState::Disabled) => Check::fail(
                    Link::Rule,
                    "state",
                    format!(
                        "{rule} is DISABLED: the bus drops every event, since no enabled rule matches it"
                    ),
                    format!(
                        "aws events enable-rule --region {region} --event-bus-name '{bus}' --name {rule} (or {DEPLOY}: the stack keeps it on)"
                    ),
                ),
                state => Check::pass(
                    Link::Rule,
                    "state",
                    format!("{rule}: {}", state.map_or("ENABLED", RuleState::as_str)),
                ),
            };
            vec![
                enabled,
                topics(described.event_pattern().unwrap_or_default(), &bus),
            ]
        }
        Err(error) => {
            let failed = CallFailed::of("events:DescribeRule", &error);
            vec![failed.check_or_missing(Link::Rule, "state", "the rule", || {
                Check::fail(
                    Link::Rule,
                    "state",
                    format!("no rule {rule} on the bus {bus}: no event reaches the function"),
                    DEPLOY,
                )
            })]
        }
    };
    checks.push(match matched {
        Ok(sums) => matched_events(sums),
        Err(failed) => failed.check(Link::Rule, "matched events", "the rule's MatchedEvents"),
    });
    checks
}

/// The strings a pattern's field lists (`["a", "b"]`, or one string).
fn listed(pattern: &Value, field: &str) -> Vec<String> {
    match &pattern[field] {
        Value::Array(values) => values
            .iter()
            .filter_map(|value| value.as_str().map(str::to_owned))
            .collect(),
        Value::String(value) => vec![value.clone()],
        _ => Vec::new(),
    }
}

/// Whether the rule's pattern takes the attributes topic from the bus's source.
fn topics(pattern: &str, source: &str) -> Check {
    const NAME: &str = "topics";
    let restore = format!(
        "{DEPLOY} restores the stack's pattern (the rule was changed by hand); and in {INTEGRATION}, the integration must be subscribed to {ATTRIBUTES_DETAIL_TYPE}"
    );
    let Ok(pattern) = serde_json::from_str::<Value>(pattern) else {
        return Check::fail(
            Link::Rule,
            NAME,
            "the rule has no event pattern EventBridge can read",
            restore,
        );
    };
    let types = listed(&pattern, "detail-type");
    if !types.iter().any(|kind| kind == ATTRIBUTES_DETAIL_TYPE) {
        return Check::fail(
            Link::Rule,
            NAME,
            format!(
                "the rule matches detail-type {types:?}, not {ATTRIBUTES_DETAIL_TYPE}: attribute events never reach the function"
            ),
            restore,
        );
    }
    let sources = listed(&pattern, "source");
    if !sources.is_empty() && !sources.iter().any(|named| named == source) {
        return Check::fail(
            Link::Rule,
            NAME,
            format!("the rule takes events of source {sources:?}, but the bus's source is {source}"),
            format!("set \"eventSourceName\" in cdk/settings.json to {source} and {DEPLOY}"),
        );
    }
    let outcomes = if types.iter().any(|kind| kind == FLOW_OUTCOME_DETAIL_TYPE) {
        format!("flow outcomes ({FLOW_OUTCOME_DETAIL_TYPE}) too")
    } else {
        "not flow outcomes (\"flowOutcomes\": \"true\" in cdk/settings.json adds them)".to_owned()
    };
    Check::pass(
        Link::Rule,
        NAME,
        format!("matches {ATTRIBUTES_DETAIL_TYPE} from {source}; {outcomes}"),
    )
}

/// Whether Genesys sends what the rule matches.
fn matched_events(sums: Sums) -> Check {
    let fix = format!(
        "in {INTEGRATION}: the integration active, its topics subscribed ({ATTRIBUTES_DETAIL_TYPE}). To test the chain from the function on, send it an event: flow-metrics sample-event (README, Deploying, step 6)"
    );
    sums.expected(
        Link::Rule,
        "matched events",
        "events matched",
        "Genesys sends nothing the rule matches",
        &fix,
    )
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    const SOURCE: &str = "aws.partner/genesys.com/cloud/org/flow-metrics";

    #[test]
    fn the_pattern_must_take_the_attributes_topic_from_the_bus_source() {
        let pattern = |types: &[&str], source: &str| {
            serde_json::json!({"source": [source], "detail-type": types}).to_string()
        };
        let ok = topics(&pattern(&[ATTRIBUTES_DETAIL_TYPE], SOURCE), SOURCE);
        assert_eq!(ok.status, Status::Pass);
        assert!(ok.detail.contains("not flow outcomes"), "{}", ok.detail);
        let both = topics(
            &pattern(&[ATTRIBUTES_DETAIL_TYPE, FLOW_OUTCOME_DETAIL_TYPE], SOURCE),
            SOURCE,
        );
        assert!(
            both.detail
                .contains("flow outcomes (v2.detail.events.conversation.{id}.flow.outcome) too")
        );
        let wrong = topics(
            &pattern(&["v2.detail.events.conversation.{id}.customer.start"], SOURCE),
            SOURCE,
        );
        assert_eq!(wrong.status, Status::Fail);
        assert!(wrong.fix.as_deref().is_some_and(|fix| fix.contains(DEPLOY)));
        let other_source = topics(&pattern(&[ATTRIBUTES_DETAIL_TYPE], "aws.partner/x"), SOURCE);
        assert_eq!(other_source.status, Status::Fail);
        assert_eq!(topics("not json", SOURCE).status, Status::Fail);
    }

    #[test]
    fn a_silent_day_fails_and_a_silent_hour_warns() {
        let status = |hour: f64, day: f64| matched_events(Sums { hour, day }).status;
        assert_eq!(status(0.0, 0.0), Status::Fail);
        assert_eq!(status(0.0, 40.0), Status::Warn);
        assert_eq!(status(3.0, 40.0), Status::Pass);
        let silent = matched_events(Sums::default());
        assert!(
            silent
                .fix
                .as_deref()
                .is_some_and(|fix| fix.contains("flow-metrics sample-event"))
        );
    }
}
