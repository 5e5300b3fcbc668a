//! Link 7: the ledger table. It exists and is `ACTIVE` (`DescribeTable`), its TTL is on for
//! `expires_at` (`DescribeTimeToLive`; without it no item ever goes), and no key is stuck: the
//! scan `flow-metrics redrive` makes (claims whose lease ended more than `--stuck-for` ago,
//! 1 hour by default), which reads, and bills, the whole table; its cost in read units is said.

use aws_sdk_dynamodb::types::{TableStatus, TimeToLiveStatus};
use jiff::Timestamp;

use super::calls::{CallFailed, PERMISSIONS, count};
use super::walk::{DEPLOY, Walk};
use super::{Check, Link};
use crate::ledger::DynamoDbLedger;
use crate::ledger::dynamodb::{ScanFilter, schema};

pub(super) async fn check(walk: &Walk<'_>) -> Vec<Check> {
    let Some(table) = walk
        .output("TableName")
        .map(str::to_owned)
        .or_else(|| walk.deployment.setting("FLOW_METRICS_TABLE"))
    else {
        return vec![walk.missing(Link::Ledger, "table", "TableName")];
    };
    let dynamodb = crate::aws::dynamodb_client(walk.aws);
    let region = &walk.deployment.region;
    let described = match dynamodb.describe_table().table_name(&table).send().await {
        Ok(described) => described,
        Err(error) => {
            let failed = CallFailed::of("dynamodb:DescribeTable", &error);
            return vec![failed.check_or_missing(Link::Ledger, "table", "the ledger table", || {
                Check::fail(
                    Link::Ledger,
                    "table",
                    format!("the table {table} does not exist: every event fails"),
                    format!(
                        "restore it from its point-in-time recovery (DynamoDB console → Backups) as {table}, or {DEPLOY} for an empty one (keys counted before could then count again)"
                    ),
                )
            })];
        }
    };
    let status = described.table().and_then(|found| found.table_status());
    let items = described
        .table()
        .and_then(|found| found.item_count())
        .map_or_else(String::new, |items| {
            format!(
                ", about {} item(s) (DynamoDB's count, renewed every 6 hours)",
                count(items as f64)
            )
        });
    let state = match status {
        Some(TableStatus::Active) => Check::pass(Link::Ledger, "table", format!("{table}: ACTIVE{items}")),
        Some(TableStatus::Updating) => Check::pass(
            Link::Ledger,
            "table",
            format!("{table}: UPDATING (in use meanwhile)"),
        ),
        other => Check::fail(
            Link::Ledger,
            "table",
            format!(
                "{table} is {}: the function cannot use it",
                other.map_or("in no state", TableStatus::as_str)
            ),
            format!(
                "wait for it to be ACTIVE (DynamoDB console, {region}); if it is being deleted, restore it from its point-in-time recovery"
            ),
        ),
    };
    let ttl = time_to_live(&dynamodb, &table, region);
    let stuck = stuck(walk, dynamodb.clone(), &table);
    let (ttl, stuck) = tokio::join!(ttl, stuck);
    vec![state, ttl, stuck]
}

/// Whether DynamoDB deletes items after `expires_at`.
async fn time_to_live(dynamodb: &aws_sdk_dynamodb::Client, table: &str, region: &str) -> Check {
    const NAME: &str = "TTL";
    let described = match dynamodb.describe_time_to_live().table_name(table).send().await {
        Ok(described) => described,
        Err(error) => {
            return CallFailed::of("dynamodb:DescribeTimeToLive", &error).check(
                Link::Ledger,
                NAME,
                "the table's TTL",
            );
        }
    };
    let description = described.time_to_live_description();
    let status = description.and_then(|description| description.time_to_live_status());
    let attribute = description.and_then(|description| description.attribute_name());
    let enable = format!(
        "aws dynamodb update-time-to-live --region {region} --table-name {table} --time-to-live-specification Enabled=true,AttributeName={} (or {DEPLOY})",
        schema::TIME_TO_LIVE
    );
    match (status, attribute) {
        (Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling), Some(schema::TIME_TO_LIVE)) => {
            Check::pass(
                Link::Ledger,
                NAME,
                format!(
                    "{} on {}",
                    status.map_or("", TimeToLiveStatus::as_str),
                    schema::TIME_TO_LIVE
                ),
            )
        }
        (Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling), Some(other)) => Check::fail(
            Link::Ledger,
            NAME,
            format!(
                "TTL is on {other}, not {}: items are never deleted",
                schema::TIME_TO_LIVE
            ),
            format!(
                "turn it off (aws dynamodb update-time-to-live --region {region} --table-name {table} --time-to-live-specification Enabled=false,AttributeName={other}), then, an hour later as DynamoDB requires: {enable}"
            ),
        ),
        _ => Check::fail(
            Link::Ledger,
            NAME,
            format!(
                "TTL is {}: items are never deleted, so the table, and what a scan costs, grow for ever",
                status.map_or("DISABLED", TimeToLiveStatus::as_str)
            ),
            enable,
        ),
    }
}

/// Keys claimed and never confirmed, whose lease ended `stuck_for` ago: what a redrive sends.
async fn stuck(walk: &Walk<'_>, dynamodb: aws_sdk_dynamodb::Client, table: &str) -> Check {
    const NAME: &str = "stuck keys";
    let stuck_at = walk.now - walk.options.stuck_for;
    let filter = ScanFilter {
        stuck_at: Some(stuck_at),
        ..ScanFilter::default()
    };
    let ledger = DynamoDbLedger::new(dynamodb, table);
    let (mut stuck, mut released) = (0_u64, 0_u64);
    let mut oldest: Option<i64> = None;
    let scanned = ledger
        .scan(walk.options.segments, &filter, |item| {
            stuck += 1;
            // A lease of 0: released after a failed push.
            match item.lease_expires_ms.filter(|lease| *lease > 0) {
                Some(lease) => oldest = Some(oldest.map_or(lease, |oldest| oldest.min(lease))),
                None => released += 1,
            }
        })
        .await;
    let totals = match scanned {
        Ok(totals) => totals,
        Err(error) => {
            let fix = if error.to_string().contains("AccessDenied") {
                format!(
                    "give your AWS identity dynamodb:Scan on {table} ({PERMISSIONS}), then run doctor again"
                )
            } else {
                "run doctor again; the error says what DynamoDB refused".to_owned()
            };
            return Check::fail(Link::Ledger, NAME, format!("cannot scan {table}: {error}"), fix);
        }
    };
    let cost = format!(
        "the scan read the whole table: {:.1} read units",
        totals.capacity_units
    );
    let over = format!("{:#}", walk.options.stuck_for);
    if stuck == 0 {
        return Check::pass(
            Link::Ledger,
            NAME,
            format!("none whose lease ended {over} ago or more ({cost})"),
        );
    }
    let mut since = oldest
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map_or_else(String::new, |at| format!(", the oldest lease ended {at}"));
    if released > 0 {
        since.push_str(&format!(
            ", {} released after a failed push",
            count(released as f64)
        ));
    }
    let redrive = walk.flow_metrics("redrive");
    Check::fail(
        Link::Ledger,
        NAME,
        format!(
            "{} key(s) claimed and never confirmed, their lease over for {over} or more{since}: not in DataDog ({cost})",
            count(stuck as f64)
        ),
        format!(
            "{redrive} --dry-run lists them; then {redrive} delivers them (README, \"Audit\": what a redrive cannot know)"
        ),
    )
}
