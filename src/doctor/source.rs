//! Link 1: Genesys's partner event source and the bus it sends to. A partner bus bears its
//! source's name (the stack's `EventBusName` output), so the source is that name:
//! EventBridge's `DescribeEventSource` says whether it is `ACTIVE` (associated with a bus),
//! `PENDING` (waiting for one) or `DELETED` (by Genesys), and `DescribeEventBus` that the bus is
//! there to receive it.

use aws_sdk_eventbridge::types::EventSourceState;

use super::calls::CallFailed;
use super::walk::{DEPLOY, Walk};
use super::{Check, Link};

/// Where a Genesys admin finds the integration.
pub const INTEGRATION: &str = "Genesys Cloud: Admin → Integrations → Amazon EventBridge Source";

/// The prefix of every partner event source and partner bus.
const PARTNER_PREFIX: &str = "aws.partner/";

pub(super) async fn check(walk: &Walk<'_>) -> Vec<Check> {
    let Some(bus) = walk.output("EventBusName") else {
        return vec![walk.missing(Link::Source, "event source", "EventBusName")];
    };
    let events = aws_sdk_eventbridge::Client::new(walk.aws);
    let (source, bus_check) = tokio::join!(source(&events, bus, walk), event_bus(&events, bus));
    vec![source, bus_check]
}

/// The partner event source: ACTIVE, PENDING, DELETED or missing.
async fn source(events: &aws_sdk_eventbridge::Client, bus: &str, walk: &Walk<'_>) -> Check {
    const NAME: &str = "event source";
    if !bus.starts_with(PARTNER_PREFIX) {
        return Check::fail(
            Link::Source,
            NAME,
            format!(
                "the bus {bus} is no partner event bus (its name does not start with {PARTNER_PREFIX}): Genesys cannot send to it"
            ),
            format!(
                "set \"eventSourceName\" in cdk/settings.json to the partner event source ({INTEGRATION} names it), and \"existingBus\" only to a bus associated with it; then {DEPLOY}"
            ),
        );
    }
    let region = &walk.deployment.region;
    match events.describe_event_source().name(bus).send().await {
        Ok(described) => state(bus, described.state(), region),
        Err(error) => {
            let failed = CallFailed::of("events:DescribeEventSource", &error);
            failed.check_or_missing(Link::Source, NAME, "the partner event source", || {
                Check::fail(
                    Link::Source,
                    NAME,
                    format!("no partner event source {bus} in {region} for this account"),
                    format!(
                        "in {INTEGRATION}: check the AWS account and region it names, and that it is active; if it was made anew, set \"eventSourceName\" in cdk/settings.json to the new source's name and {DEPLOY}"
                    ),
                )
            })
        }
    }
}

/// What the source's state means for the chain.
fn state(source: &str, state: Option<&EventSourceState>, region: &str) -> Check {
    const NAME: &str = "event source";
    match state {
        Some(EventSourceState::Active) => Check::pass(Link::Source, NAME, format!("{source}: ACTIVE")),
        Some(EventSourceState::Pending) => Check::fail(
            Link::Source,
            NAME,
            format!("{source} is PENDING: no event bus is associated with it, so nothing it sends arrives"),
            format!(
                "in the EventBridge console ({region}): Partner event sources → {source} → Associate with event bus; or {DEPLOY}, which associates it by creating its bus"
            ),
        ),
        Some(EventSourceState::Deleted) => Check::fail(
            Link::Source,
            NAME,
            format!(
                "{source} is DELETED: Genesys removed it (its integration was deleted or made anew), so nothing arrives"
            ),
            format!(
                "in {INTEGRATION}: activate the integration (a new one makes a new source, pending in the EventBridge console's Partner event sources); then set \"eventSourceName\" in cdk/settings.json to the new source's name and {DEPLOY}"
            ),
        ),
        other => Check::fail(
            Link::Source,
            NAME,
            format!(
                "{source} is {}",
                other.map_or("in no state EventBridge says", EventSourceState::as_str)
            ),
            format!("in {INTEGRATION}: check the integration is active"),
        ),
    }
}

/// The partner bus the stack created (or was given): it must exist to receive the source.
async fn event_bus(events: &aws_sdk_eventbridge::Client, bus: &str) -> Check {
    const NAME: &str = "event bus";
    match events.describe_event_bus().name(bus).send().await {
        Ok(_) => Check::pass(
            Link::Source,
            NAME,
            format!("{bus}: exists, and bears its source's name, as a partner bus does"),
        ),
        Err(error) => {
            let failed = CallFailed::of("events:DescribeEventBus", &error);
            failed.check_or_missing(Link::Source, NAME, "the event bus", || {
                Check::fail(
                    Link::Source,
                    NAME,
                    format!("the bus {bus} does not exist: what the source sends has nowhere to go"),
                    format!(
                        "{DEPLOY} creates it (with \"existingBus\", associate the source in the EventBridge console: Partner event sources → Associate with event bus)"
                    ),
                )
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;

    #[test]
    fn a_pending_or_deleted_source_fails_each_with_its_own_fix() {
        let source = "aws.partner/genesys.com/cloud/org/flow-metrics";
        let check = |given: EventSourceState| state(source, Some(&given), "eu-west-1");
        assert_eq!(check(EventSourceState::Active).status, Status::Pass);
        let pending = check(EventSourceState::Pending);
        assert_eq!(pending.status, Status::Fail);
        assert!(pending.fix.as_deref().is_some_and(|fix| fix.contains("Partner event sources → aws.partner/genesys.com/cloud/org/flow-metrics → Associate with event bus")));
        let deleted = check(EventSourceState::Deleted);
        assert!(
            deleted
                .fix
                .as_deref()
                .is_some_and(|fix| fix.contains(INTEGRATION) && fix.contains("eventSourceName"))
        );
        assert_eq!(state(source, None, "eu-west-1").status, Status::Fail);
    }
}
