//! Walking the chain: every link's checks at once (they read different services and depend on
//! nothing but the deployment), each link bounded in time so that a service that never answers
//! fails its own link and not the walk, then the report in chain order.

use std::future::Future;
use std::time::Duration;

use aws_config::SdkConfig;
use jiff::{SignedDuration, Timestamp};

use super::{Check, Link, Report};
use super::{datadog, dead_letters, delivery, function, ledger, names, rule, source};
use crate::deployment::{Deployment, DeploymentError};

/// How the stack is deployed again, from the repository's root.
pub const DEPLOY: &str = "(cd cdk && npx cdk deploy)";

/// Longest wait for one link's checks (the ledger's scan aside).
const LINK_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait for the ledger's checks, whose scan reads the whole table.
const SCAN_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How the walk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalkOptions {
    /// Parallel segments of the ledger's scan.
    pub segments: u32,
    /// A claim whose lease ended at least this long ago is stuck (as `redrive --stuck-for`).
    pub stuck_for: SignedDuration,
}

/// What every check reads: the deployment, the AWS configuration, the time of the walk.
pub(super) struct Walk<'a> {
    pub deployment: &'a Deployment,
    pub aws: &'a SdkConfig,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub now: Timestamp,
    pub options: WalkOptions,
}

impl Walk<'_> {
    /// One of the stack's outputs.
    pub fn output(&self, name: &str) -> Option<&str> {
        self.deployment.output(name)
    }

    /// The failed check for an output the stack lacks.
    pub fn missing(&self, link: Link, name: &'static str, output: &'static str) -> Check {
        let missing = DeploymentError::MissingOutput {
            stack: self.deployment.stack.clone(),
            output,
        };
        Check::fail(link, name, missing.to_string(), DEPLOY)
    }

    /// A `flow-metrics` command on this deployment: `flow-metrics drain --stack S --region R`.
    pub fn flow_metrics(&self, command: &str) -> String {
        format!(
            "flow-metrics {command} --stack {} --region {}",
            self.deployment.stack, self.deployment.region
        )
    }

    /// The event bus and the rule's own name (see [`bus_and_rule`]); `Err` names the output
    /// missing.
    pub fn bus_and_rule(&self) -> Result<(String, String), &'static str> {
        bus_and_rule(self.output("EventBusName"), self.output("RuleName"))
    }
}

/// The event bus and the rule's own name, from the `EventBusName` and `RuleName` outputs.
/// CloudFormation names a rule on a custom bus `<bus>|<rule>` (its `Ref`, which the `RuleName`
/// output is); EventBridge and CloudWatch want each part alone.
fn bus_and_rule(bus: Option<&str>, rule: Option<&str>) -> Result<(String, String), &'static str> {
    let rule = rule.filter(|rule| !rule.is_empty()).ok_or("RuleName")?;
    let (bus_of_rule, rule) = rule.rsplit_once('|').unwrap_or(("", rule));
    let bus = bus
        .filter(|bus| !bus.is_empty())
        .or((!bus_of_rule.is_empty()).then_some(bus_of_rule))
        .ok_or("EventBusName")?;
    Ok((bus.to_owned(), rule.to_owned()))
}

/// Runs `checks`, or fails `link` if it takes longer than `limit`.
async fn bounded(link: Link, limit: Duration, checks: impl Future<Output = Vec<Check>>) -> Vec<Check> {
    tokio::time::timeout(limit, checks).await.unwrap_or_else(|_| {
        vec![Check::fail(
            link,
            "answer",
            format!("no answer within {} s", limit.as_secs()),
            "run doctor again; if this link keeps hanging, its service is unreachable from here",
        )]
    })
}

/// Walks the deployed chain, read-only, and reports on every link.
pub async fn walk(deployment: &Deployment, aws: &SdkConfig, options: WalkOptions) -> Report {
    let walk = Walk {
        deployment,
        aws,
        cloudwatch: aws_sdk_cloudwatch::Client::new(aws),
        now: Timestamp::now(),
        options,
    };
    let walk = &walk;
    let links = tokio::join!(
        bounded(Link::Source, LINK_TIMEOUT, source::check(walk)),
        bounded(Link::Rule, LINK_TIMEOUT, rule::check(walk)),
        bounded(Link::Function, LINK_TIMEOUT, function::check(walk)),
        bounded(Link::DataDog, LINK_TIMEOUT, datadog::check(walk)),
        bounded(Link::Delivery, LINK_TIMEOUT, delivery::check(walk)),
        bounded(Link::DeadLetters, LINK_TIMEOUT, dead_letters::check(walk)),
        bounded(Link::Ledger, SCAN_TIMEOUT, ledger::check(walk)),
        bounded(Link::Names, LINK_TIMEOUT, names::check(walk)),
    );
    let checks = [
        links.0, links.1, links.2, links.3, links.4, links.5, links.6, links.7,
    ]
    .concat();
    Report::new(&deployment.stack, &deployment.region, checks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_named_by_its_bus_and_itself_is_taken_apart() {
        let bus = "aws.partner/genesys.com/cloud/org/flow-metrics";
        let parts = |bus: Option<&str>, rule: Option<&str>| bus_and_rule(bus, rule);
        let expected = Ok((bus.to_owned(), "GenesysFlowMetrics-AttributesRule-1".to_owned()));
        assert_eq!(
            parts(
                Some(bus),
                Some(&format!("{bus}|GenesysFlowMetrics-AttributesRule-1"))
            ),
            expected
        );
        assert_eq!(
            parts(Some(bus), Some("GenesysFlowMetrics-AttributesRule-1")),
            expected
        );
        assert_eq!(
            parts(None, Some(&format!("{bus}|GenesysFlowMetrics-AttributesRule-1"))),
            expected
        );
        assert_eq!(parts(Some(bus), None), Err("RuleName"));
        assert_eq!(parts(None, Some("rule")), Err("EventBusName"));
    }
}
