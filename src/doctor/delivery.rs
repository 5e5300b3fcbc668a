//! Link 5: points DataDog accepted lately. The function logs one `invocation` line per
//! invocation with `keys_counted`, the keys it delivered (pushed, accepted, confirmed); the
//! stack's metric filter `KeysDelivered` sums them in CloudWatch (namespace
//! `GenesysFlowMetrics`), beside `DataDogPushFailures`, its count of failed pushes. A stack
//! deployed before the filter existed has no `KeysDelivered`: that is said, not read as silence.

use serde::Deserialize;

use super::calls::{CallFailed, Metric, Sums};
use super::walk::{DEPLOY, Walk};
use super::{Check, Link};

/// The stack's own metrics' namespace (`METRICS_NAMESPACE` in the cdk stack).
pub const METRICS_NAMESPACE: &str = "GenesysFlowMetrics";

/// The stack's metric of the keys delivered, summed from the `invocation` lines.
pub const KEYS_DELIVERED: &str = "KeysDelivered";

/// The stack's count of failed pushes to DataDog.
pub const PUSH_FAILURES: &str = "DataDogPushFailures";

/// The words of the function's log lines about failed pushes, which the stack's
/// `DataDogPushFailures` filter counts (`src/log_markers.json`).
fn push_failure_words() -> Vec<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Markers {
        data_dog_push_failures: Vec<String>,
    }
    serde_json::from_str::<Markers>(include_str!("../log_markers.json"))
        .map(|markers| markers.data_dog_push_failures)
        .unwrap_or_default()
}

pub(super) async fn check(walk: &Walk<'_>) -> Vec<Check> {
    let Some(group) = walk.output("LogGroupName") else {
        return vec![walk.missing(Link::Delivery, "keys delivered", "LogGroupName")];
    };
    let delivered = Metric {
        namespace: METRICS_NAMESPACE,
        name: KEYS_DELIVERED,
        dimensions: &[],
    };
    let failures = Metric {
        name: PUSH_FAILURES,
        ..delivered
    };
    let (filter, delivered, failures) = tokio::join!(
        has_metric_filter(walk, group),
        delivered.sums(&walk.cloudwatch, walk.now),
        failures.sums(&walk.cloudwatch, walk.now),
    );
    let tail = format!(
        "aws logs tail --region {} {group} --since 1h --filter-pattern '{}'",
        walk.deployment.region,
        push_failure_words()
            .iter()
            .map(|words| format!("?\"{words}\""))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let delivered = match (filter, delivered) {
        (Err(failed), _) => failed.check(Link::Delivery, "keys delivered", "the log group's metric filters"),
        (Ok(false), _) => Check::fail(
            Link::Delivery,
            "keys delivered",
            format!(
                "the stack has no {KEYS_DELIVERED} metric filter on {group} (it was deployed before it existed): what DataDog accepted cannot be read"
            ),
            DEPLOY,
        ),
        (Ok(true), Err(failed)) => failed.check(Link::Delivery, "keys delivered", "the KeysDelivered metric"),
        (Ok(true), Ok(sums)) => keys_delivered(sums, walk),
    };
    let failures = match failures {
        Ok(sums) => push_failures(sums, &tail),
        Err(failed) => failed.check(Link::Delivery, "push failures", "the DataDogPushFailures metric"),
    };
    vec![delivered, failures]
}

/// Whether the stack's `KeysDelivered` filter is on the log group.
async fn has_metric_filter(walk: &Walk<'_>, group: &str) -> Result<bool, CallFailed> {
    let logs = aws_sdk_cloudwatchlogs::Client::new(walk.aws);
    let found = logs
        .describe_metric_filters()
        .log_group_name(group)
        .metric_name(KEYS_DELIVERED)
        .metric_namespace(METRICS_NAMESPACE)
        .send()
        .await
        .map_err(|error| CallFailed::of("logs:DescribeMetricFilters", &error))?;
    Ok(!found.metric_filters().is_empty())
}

/// Keys delivered: none in a day fails, none in the last hour warns.
fn keys_delivered(sums: Sums, walk: &Walk<'_>) -> Check {
    let fix = format!(
        "the first failed link above is the cause. If every link passes, no flow set a metric attribute: send one through the function,\n\
         flow-metrics sample-event --flow DeployTest --metric Start > event.json\n\
         aws lambda invoke --region {} --function-name {} --cli-binary-format raw-in-base64-out --payload file://event.json /dev/stdout\n\
         (README, Deploying, step 6)",
        walk.deployment.region, walk.deployment.function
    );
    sums.expected(
        Link::Delivery,
        "keys delivered",
        "keys DataDog accepted",
        "none reached DataDog",
        &fix,
    )
}

/// Failed pushes: now fails, earlier today warns.
fn push_failures(sums: Sums, tail: &str) -> Check {
    let fix = format!(
        "the log says DataDog's answer ({tail}): 403 is the key (link 4), 400 a refused series; failed events are retried, then dead-lettered: drain them once fixed (link 6)"
    );
    sums.unwanted(Link::Delivery, "push failures", "failed pushes", &fix)
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn the_tail_filter_takes_the_words_the_stack_counts() {
        assert_eq!(push_failure_words(), ["push failed", "self-metrics not sent"]);
    }

    #[test]
    fn failed_pushes_now_fail_and_earlier_ones_warn() {
        let status = |hour: f64, day: f64| push_failures(Sums { hour, day }, "tail").status;
        assert_eq!(status(1.0, 1.0), Status::Fail);
        assert_eq!(status(0.0, 3.0), Status::Warn);
        assert_eq!(status(0.0, 0.0), Status::Pass);
        assert!(
            push_failures(Sums { hour: 1.0, day: 1.0 }, "aws logs tail X")
                .fix
                .is_some_and(|fix| fix.contains("aws logs tail X"))
        );
    }
}
