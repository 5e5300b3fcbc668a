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
        Ok(described) => match described.state() {
            Some(EventSourceState::Active) => Check::pass(Link::Source, NAME, format!("{bus}: ACTIVE")),
            Some(EventSourceState::Pending) => Check::fail(
                Link::Source,
                NAME,
                format!("{bus} is PENDING: no event bus is associated with it, so nothing it sends arrives"),
                format!(
                    "in the EventBridge console ({region}): Partner event sources → {bus} → Associate with event bus; or {DEPLOY}, which associates it by creating its bus"
                ),
            ),
            Some(EventSourceState::Deleted) => Check::fail(
                Link::Source,
                NAME,
                format!(
                    "{bus} is DELETED: Genesys removed it (its integration was deleted or made anew), so nothing arrives"
                ),
                format!(
                    "in {INTEGRATION}: activate the integration (a new one makes a new source, pending in the EventBridge console's Partner event sources); then set \"eventSourceName\" in cdk/settings.json to the new source's name and {DEPLOY}"
                ),
            ),
            other => Check::fail(
                Link::Source,
                NAME,
                format!(
                    "{bus} is {}",
                    other.map_or("in no state EventBridge says", EventSourceState::as_str)
                ),
                format!("in {INTEGRATION}: check the integration is active"),
            ),
        },
        Err(error) => {
            let failed = CallFailed::of("events:DescribeEventSource", &error);
            if failed.not_found() {
                Check::fail(
                    Link::Source,
                    NAME,
                    format!("no partner event source {bus} in {region} for this account"),
                    format!(
                        "in {INTEGRATION}: check the AWS account and region it names, and that it is active; if it was made anew, set \"eventSourceName\" in cdk/settings.json to the new source's name and {DEPLOY}"
                    ),
                )
            } else {
                failed.check(Link::Source, NAME, "the partner event source")
            }
        }
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
            if failed.not_found() {
                Check::fail(
                    Link::Source,
                    NAME,
                    format!("the bus {bus} does not exist: what the source sends has nowhere to go"),
                    format!(
                        "{DEPLOY} creates it (with \"existingBus\", associate the source in the EventBridge console: Partner event sources → Associate with event bus)"
                    ),
                )
            } else {
                failed.check(Link::Source, NAME, "the event bus")
            }
        }
    }
}
