//! Link 3: the function. Its configuration (`GetFunctionConfiguration`: active, last update
//! done), its settings checked exactly as its cold start checks them ([`LambdaConfig`]), whether
//! the stack is paused, its errors and throttles (CloudWatch `AWS/Lambda`), and its latest
//! ERROR-level log lines (CloudWatch Logs `FilterLogEvents`, the JSON lines it writes).

use aws_sdk_lambda::types::{LastUpdateStatus, State};
use jiff::SignedDuration;
use serde_json::Value;

use super::calls::{CallFailed, Metric, Sums, count, shortened};
use super::walk::{DEPLOY, Walk};
use super::{Check, Link};
use crate::lambda::LambdaConfig;

/// The CloudWatch Logs filter for the function's ERROR-level lines (its logs are JSON).
pub const ERROR_LINES: &str = "{ $.level = \"ERROR\" }";

/// Error lines shown at most.
const LINES_SHOWN: usize = 3;

/// Pages of error lines read at most per window (of 100 lines).
const PAGES: usize = 10;

pub(super) async fn check(walk: &Walk<'_>) -> Vec<Check> {
    let function = &walk.deployment.function;
    let lambda = aws_sdk_lambda::Client::new(walk.aws);
    let errors = Metric {
        namespace: "AWS/Lambda",
        name: "Errors",
        dimensions: &[("FunctionName", function.as_str())],
    };
    let throttles = Metric {
        name: "Throttles",
        ..errors
    };
    let (configuration, errors, throttles, lines) = tokio::join!(
        lambda.get_function_configuration().function_name(function).send(),
        errors.sums(&walk.cloudwatch, walk.now),
        throttles.sums(&walk.cloudwatch, walk.now),
        error_lines(walk),
    );
    let configuration = match configuration {
        Ok(found) => state(
            function,
            found.state(),
            found.last_update_status(),
            found.state_reason(),
        ),
        Err(error) => CallFailed::of("lambda:GetFunctionConfiguration", &error).check(
            Link::Function,
            "configuration",
            "the function's configuration",
        ),
    };
    let paused = walk.output("Paused").filter(|paused| paused.starts_with("yes"));
    let mut checks = vec![configuration, settings(walk)];
    if let Some(paused) = paused {
        checks.push(Check::warn(
            Link::Function,
            "paused",
            format!("paused: {paused}"),
            format!(
                "resume: set \"paused\": false in cdk/settings.json and {DEPLOY}; then count what waited: {} --dry-run, then without --dry-run",
                walk.flow_metrics("drain")
            ),
        ));
    }
    let tail = format!(
        "aws logs tail --region {} {} --since 1h --filter-pattern '{ERROR_LINES}'",
        walk.deployment.region,
        walk.output("LogGroupName").unwrap_or("<LogGroupName>")
    );
    checks.push(match errors {
        Ok(sums) => invocation_errors(sums, &tail),
        Err(failed) => failed.check(Link::Function, "errors", "the function's Errors metric"),
    });
    checks.push(match throttles {
        Ok(sums) => throttled(sums, paused.is_some()),
        Err(failed) => failed.check(Link::Function, "throttles", "the function's Throttles metric"),
    });
    checks.push(lines.unwrap_or_else(|check| check));
    checks
}

/// Whether the function can run.
fn state(
    function: &str,
    state: Option<&State>,
    update: Option<&LastUpdateStatus>,
    reason: Option<&str>,
) -> Check {
    const NAME: &str = "configuration";
    let said = |value: Option<&str>| value.unwrap_or("unknown").to_owned();
    let detail = format!(
        "{function}: {}, last update {}",
        said(state.map(State::as_str)),
        said(update.map(LastUpdateStatus::as_str))
    );
    match (state, update) {
        (Some(State::Failed), _) | (_, Some(LastUpdateStatus::Failed)) => Check::fail(
            Link::Function,
            NAME,
            format!("{detail}: {}", reason.unwrap_or("Lambda gives no reason")),
            DEPLOY,
        ),
        (Some(State::Active), Some(LastUpdateStatus::Successful) | None) => {
            Check::pass(Link::Function, NAME, detail)
        }
        (Some(State::Inactive), _) => Check::warn(
            Link::Function,
            NAME,
            format!("{detail}: unused for weeks; Lambda makes it active again at its next event"),
            "nothing, if events come (link 2); Lambda reactivates it",
        ),
        _ => Check::warn(
            Link::Function,
            NAME,
            format!("{detail}: a deploy is under way"),
            "run doctor again in a minute",
        ),
    }
}

/// The cdk/settings.json setting behind a function's variable.
fn setting_of(variable: &str) -> &'static str {
    match variable {
        "DD_SITE" | "DD_URL" => "datadogSite",
        "DD_API_KEY" | "DD_API_KEY_SECRET_ARN" => "apiKeySecretArn",
        "DD_TAGS" => "tags",
        "FLOW_METRICS_METRIC" => "metricName",
        "FLOW_METRICS_ELAPSED" => "elapsedMetrics",
        "FLOW_METRICS_RETENTION" => "retentionDays",
        "FLOW_METRICS_LEASE" => "timeoutSeconds",
        "FLOW_METRICS_NAMES" => "names",
        "GENESYS_REGION" | "GENESYS_LOGIN_URL" | "GENESYS_API_URL" => "genesysRegion",
        "GENESYS_CREDENTIALS_SECRET_ARN" | "GENESYS_CLIENT_ID" | "GENESYS_CLIENT_SECRET" => {
            "genesysCredentialsSecretArn"
        }
        _ => "the setting that sets it",
    }
}

/// The function's settings, checked as its cold start checks them.
fn settings(walk: &Walk<'_>) -> Check {
    const NAME: &str = "settings";
    match LambdaConfig::from_env(&|name| walk.deployment.setting(name)) {
        Ok(config) => {
            let names = if config.names.genesys.is_some() {
                "names from the Genesys API"
            } else {
                "ids for names"
            };
            Check::pass(
                Link::Function,
                NAME,
                format!(
                    "valid: table {}, DataDog at {}, {names}",
                    config.table, config.datadog.base_url
                ),
            )
        }
        Err(error) => Check::fail(
            Link::Function,
            NAME,
            format!("{error}: the function refuses to start, so every event fails"),
            format!(
                "correct {} in cdk/settings.json ({}), then {DEPLOY}",
                setting_of(error.variable),
                error.variable
            ),
        ),
    }
}

/// Failed invocations: now fails, earlier today warns.
fn invocation_errors(sums: Sums, tail: &str) -> Check {
    let fix = format!(
        "the error lines below say why ({tail}); fix that cause: failed events are retried, then dead-lettered (link 6)"
    );
    sums.unwanted(Link::Function, "errors", "failed invocations", &fix)
}

/// Throttled invocations, which a pause makes by design.
fn throttled(sums: Sums, paused: bool) -> Check {
    const NAME: &str = "throttles";
    let detail = format!("throttled invocations: {}", sums.said());
    if paused {
        Check::pass(
            Link::Function,
            NAME,
            format!("{detail}: the pause throttles every event, by design"),
        )
    } else if sums.hour > 0.0 {
        Check::warn(
            Link::Function,
            NAME,
            format!("{detail}; events wait, then are retried"),
            format!(
                "raise \"reservedConcurrency\" (direct mode) or \"maxConcurrency\" (queued mode) in cdk/settings.json and {DEPLOY}, or the account's Lambda concurrency quota"
            ),
        )
    } else {
        Check::pass(Link::Function, NAME, detail)
    }
}

/// One ERROR line as a person reads it: its time, message and error; `None` for a line the
/// function did not write at ERROR level.
fn error_line(message: &str) -> Option<String> {
    let line: Value = serde_json::from_str(message).ok()?;
    if line["level"] != "ERROR" {
        return None;
    }
    let fields = &line["fields"];
    let text = [&fields["message"], &fields["error"]]
        .iter()
        .filter_map(|part| part.as_str())
        .collect::<Vec<_>>()
        .join(": ");
    let time = line["timestamp"].as_str().unwrap_or_default();
    Some(shortened(&format!("{time} {text}"), 200))
}

/// The function's ERROR lines of the last hour, else of the day before it: how many, and the
/// latest few.
async fn error_lines(walk: &Walk<'_>) -> Result<Check, Check> {
    const NAME: &str = "error lines";
    let Some(group) = walk.output("LogGroupName") else {
        return Err(walk.missing(Link::Function, NAME, "LogGroupName"));
    };
    let logs = aws_sdk_cloudwatchlogs::Client::new(walk.aws);
    let hour_ago = walk.now - SignedDuration::from_hours(1);
    let windows = [
        (hour_ago, walk.now, "in the last hour"),
        (
            walk.now - SignedDuration::from_hours(24),
            hour_ago,
            "earlier in the last day",
        ),
    ];
    for (from, to, when) in windows {
        let (lines, complete) = read_error_lines(&logs, group, (from, to))
            .await
            .map_err(|failed| failed.check(Link::Function, NAME, "the function's log lines"))?;
        if lines.is_empty() {
            continue;
        }
        let counted = if complete {
            count(lines.len() as f64)
        } else {
            format!("more than {}", count(lines.len() as f64))
        };
        let latest: Vec<&String> = lines.iter().rev().take(LINES_SHOWN).collect();
        let detail = format!(
            "{counted} ERROR line(s) {when}; the latest:\n{}",
            latest
                .iter()
                .map(|line| line.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        let fix = "the line says what failed: its cause fixed, failed events are retried, then dead-lettered (link 6)";
        return Ok(if when == "in the last hour" {
            Check::fail(Link::Function, NAME, detail, fix)
        } else {
            Check::warn(Link::Function, NAME, detail, fix)
        });
    }
    Ok(Check::pass(Link::Function, NAME, "no ERROR line in the last day"))
}

/// The ERROR lines between `from` and `to`, oldest first, and whether all were read.
async fn read_error_lines(
    logs: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    (from, to): (jiff::Timestamp, jiff::Timestamp),
) -> Result<(Vec<String>, bool), CallFailed> {
    let mut lines = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..PAGES {
        let page = logs
            .filter_log_events()
            .log_group_name(group)
            .start_time(from.as_millisecond())
            .end_time(to.as_millisecond())
            .filter_pattern(ERROR_LINES)
            .limit(100)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|error| CallFailed::of("logs:FilterLogEvents", &error))?;
        lines.extend(
            page.events()
                .iter()
                .filter_map(|event| error_line(event.message()?)),
        );
        match page.next_token() {
            Some(next) if !page.events().is_empty() => token = Some(next.to_owned()),
            _ => return Ok((lines, true)),
        }
    }
    Ok((lines, false))
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn an_error_line_shows_its_time_message_and_error() {
        let line = r#"{"timestamp":"2026-12-01T10:00:00.000000Z","level":"ERROR","fields":{"message":"keys not delivered","conversation_id":"c-1","error":"DataDog answered 403 Forbidden"}}"#;
        assert_eq!(
            error_line(line).as_deref(),
            Some("2026-12-01T10:00:00.000000Z keys not delivered: DataDog answered 403 Forbidden")
        );
        assert_eq!(error_line(&line.replace("ERROR", "INFO")), None);
        assert_eq!(error_line("START RequestId: 1"), None);
    }

    #[test]
    fn errors_now_fail_and_earlier_ones_warn() {
        let status = |hour: f64, day: f64| invocation_errors(Sums { hour, day }, "tail").status;
        assert_eq!(status(2.0, 5.0), Status::Fail);
        assert_eq!(status(0.0, 5.0), Status::Warn);
        assert_eq!(status(0.0, 0.0), Status::Pass);
        let throttle = |hour: f64, paused: bool| throttled(Sums { hour, day: hour }, paused).status;
        assert_eq!(throttle(4.0, false), Status::Warn);
        assert_eq!(throttle(4.0, true), Status::Pass);
    }

    #[test]
    fn a_function_runs_when_active_and_its_update_is_done() {
        let status = |state, update| state_of(state, update).status;
        assert_eq!(status(State::Active, LastUpdateStatus::Successful), Status::Pass);
        assert_eq!(status(State::Failed, LastUpdateStatus::Successful), Status::Fail);
        assert_eq!(status(State::Active, LastUpdateStatus::Failed), Status::Fail);
        assert_eq!(
            status(State::Inactive, LastUpdateStatus::Successful),
            Status::Warn
        );
        assert_eq!(status(State::Pending, LastUpdateStatus::InProgress), Status::Warn);
    }

    fn state_of(state: State, update: LastUpdateStatus) -> Check {
        super::state("f", Some(&state), Some(&update), None)
    }

    #[test]
    fn a_bad_variable_names_its_setting() {
        assert_eq!(setting_of("DD_SITE"), "datadogSite");
        assert_eq!(setting_of("GENESYS_REGION"), "genesysRegion");
        assert_eq!(setting_of("FLOW_METRICS_RUN_GAP"), "the setting that sets it");
    }
}
