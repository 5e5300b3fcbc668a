//! Link 6: what failed after every retry and waits to be drained. The dead-letter queue's depth
//! (`GetQueueAttributes`: visible and in flight) and the age of its oldest message (CloudWatch
//! `AWS/SQS` `ApproximateAgeOfOldestMessage`); in direct mode the on-failure bucket too (its
//! objects, the oldest by `LastModified`, from `ListObjectsV2`). Anything waiting fails: its
//! events are not counted until `flow-metrics drain` sends them.

use aws_sdk_sqs::types::QueueAttributeName;
use jiff::Timestamp;

use super::calls::{CallFailed, Metric, age, count};
use super::walk::Walk;
use super::{Check, Link};

/// Pages of the bucket's listing read at most (1,000 objects each).
const PAGES: usize = 10;

pub(super) async fn check(walk: &Walk<'_>) -> Vec<Check> {
    let mut checks = vec![match walk.output("DeadLetterQueueUrl") {
        Some(url) => queue(walk, url).await,
        None => walk.missing(Link::DeadLetters, "dead-letter queue", "DeadLetterQueueUrl"),
    }];
    // Direct mode only: queued mode has no on-failure bucket.
    if let Some(bucket_name) = walk.output("DeadLetterBucketName") {
        checks.push(bucket(walk, bucket_name).await);
    }
    checks
}

/// The drain, first dry.
fn drain(walk: &Walk<'_>) -> String {
    let drain = walk.flow_metrics("drain");
    format!(
        "{drain} --dry-run shows what each letter holds; then {drain} (README, \"Draining the dead-letter queue\")"
    )
}

async fn queue(walk: &Walk<'_>, url: &str) -> Check {
    const NAME: &str = "dead-letter queue";
    let sqs = aws_sdk_sqs::Client::new(walk.aws);
    let attributes = match sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
    {
        Ok(answer) => answer,
        Err(error) => {
            return CallFailed::of("sqs:GetQueueAttributes", &error).check(
                Link::DeadLetters,
                NAME,
                "the dead-letter queue",
            );
        }
    };
    let number = |name: QueueAttributeName| {
        attributes
            .attributes()
            .and_then(|attributes| attributes.get(&name))
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or_default()
    };
    let visible = number(QueueAttributeName::ApproximateNumberOfMessages);
    let in_flight = number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
    if visible + in_flight == 0 {
        return Check::pass(Link::DeadLetters, NAME, "empty");
    }
    let name = url.rsplit('/').next().unwrap_or(url);
    let oldest = Metric {
        namespace: "AWS/SQS",
        name: "ApproximateAgeOfOldestMessage",
        dimensions: &[("QueueName", name)],
    };
    let oldest = match oldest.latest_maximum(&walk.cloudwatch, walk.now).await {
        Ok(Some(seconds)) => format!("; the oldest waits for {} (kept 14 days)", age(seconds)),
        Ok(None) => String::new(),
        Err(failed) => format!("; its age is unknown ({failed})"),
    };
    Check::fail(
        Link::DeadLetters,
        NAME,
        format!(
            "{} message(s) wait ({visible} visible, {in_flight} in flight){oldest}: their events are not counted",
            count((visible + in_flight) as f64)
        ),
        format!(
            "why they failed (EventBridge's ERROR_CODE, ERROR_MESSAGE): aws sqs receive-message --region {} --queue-url {url} --message-attribute-names All\n\
             once the cause is fixed: {}",
            walk.deployment.region,
            drain(walk)
        ),
    )
}

async fn bucket(walk: &Walk<'_>, bucket: &str) -> Check {
    const NAME: &str = "dead-letter bucket";
    let s3 = crate::aws::s3_client(walk.aws, crate::aws::emulated_s3(walk.aws));
    let mut objects = 0_u64;
    let mut oldest: Option<Timestamp> = None;
    let mut token: Option<String> = None;
    let mut complete = false;
    for _ in 0..PAGES {
        let page = match s3
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token.take())
            .send()
            .await
        {
            Ok(page) => page,
            Err(error) => {
                return CallFailed::of("s3:ListBucket", &error).check(
                    Link::DeadLetters,
                    NAME,
                    "the dead-letter bucket",
                );
            }
        };
        for object in page.contents() {
            objects += 1;
            let modified = object
                .last_modified()
                .and_then(|time| Timestamp::from_second(time.secs()).ok());
            oldest = match (oldest, modified) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
            _ => {
                complete = true;
                break;
            }
        }
    }
    if objects == 0 {
        return Check::pass(Link::DeadLetters, NAME, "empty");
    }
    let counted = if complete {
        count(objects as f64)
    } else {
        format!("more than {}", count(objects as f64))
    };
    let since = oldest.map_or_else(String::new, |oldest| {
        let waited = walk.now.duration_since(oldest).as_secs_f64();
        format!("; the oldest from {oldest} ({} ago)", age(waited))
    });
    Check::fail(
        Link::DeadLetters,
        NAME,
        format!("{counted} record(s) of failed invocations wait{since}: their events are not counted"),
        format!(
            "why one failed (its responsePayload): aws s3 ls --region {region} s3://{bucket}/ --recursive, then aws s3 cp --region {region} s3://{bucket}/<key> -\n\
             once the cause is fixed: {}",
            drain(walk),
            region = walk.deployment.region,
        ),
    )
}
