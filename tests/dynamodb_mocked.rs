//! The DynamoDB ledger against mocked DynamoDB responses (aws-smithy-mocks): every response the
//! code handles, and the requests it sends for them. A rule's request matcher is the
//! specification of the request: a request that differs matches no rule and fails the test.

mod common;

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::{PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use common::{RecordingSink, attributes_event};
use flow_metrics::attribute::{Attribute, classify};
use flow_metrics::key::MetricKey;
use flow_metrics::ledger::{ClaimRequest, ClaimToken, DynamoDbLedger, Held, Ledger, LedgerError};
use flow_metrics::pipeline::{EventOutcome, Pipeline};
use jiff::{SignedDuration, Timestamp};
use std::sync::atomic::Ordering;

const TABLE: &str = "flow-metrics-ledger";
const CONVERSATION: &str = "12341234-1234-1234-1234-123456789012";
const START: &str = "RoutingMetric_Start(2026-03-07T04:08:00.000Z)";
const MENU: &str = "RoutingMetric_Menu(2026-03-07T04:08:10.000Z)";
const LEASE: SignedDuration = SignedDuration::from_secs(40);
/// The holder the ledger-level tests claim for.
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn token() -> ClaimToken {
    ClaimToken(TOKEN.to_owned())
}

fn now() -> Timestamp {
    "2026-03-07T04:10:00Z".parse().expect("timestamp")
}

fn now_ms() -> String {
    now().as_millisecond().to_string()
}

fn metric(key: &str) -> MetricKey<'_> {
    match classify(key) {
        Attribute::Metric(metric) => metric,
        other => panic!("{other:?}"),
    }
}

fn ledger(rules: &[&Rule]) -> DynamoDbLedger {
    let client: Client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, rules, |config| {
        config.retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1)),
        )
    });
    DynamoDbLedger::new(client, TABLE).with_lease(LEASE)
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A DynamoDB error body as the service sends it.
fn service_error(code: &str, extra: &str) -> Option<String> {
    Some(format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{code}","message":"{code} for the test"{extra}}}"#
    ))
}

fn is_partition_query(query: &QueryInput) -> bool {
    let names = query.expression_attribute_names().expect("names");
    query.table_name() == Some(TABLE)
        && query.key_condition_expression() == Some("#pk = :pk")
        && names.get("#pk").map(String::as_str) == Some("conversation_id")
        && names.get("#token").map(String::as_str) == Some("claim_token")
        && query.projection_expression() == Some("#sk, #state, #token, #lease, #maybe")
        && names.get("#maybe").map(String::as_str) == Some("maybe_delivered")
        && query
            .expression_attribute_values()
            .and_then(|values| values.get(":pk"))
            == Some(&s(CONVERSATION))
        && query.consistent_read() == Some(false)
}

fn empty_partition() -> Rule {
    mock!(Client::query)
        .match_requests(is_partition_query)
        .then_output(|| QueryOutput::builder().count(0).build())
}

fn partition_with(items: Vec<(&'static str, &'static str, Option<i64>)>) -> Rule {
    mock!(Client::query)
        .match_requests(is_partition_query)
        .then_output(move || {
            let mut output = QueryOutput::builder();
            for (key, state, lease) in &items {
                let mut item = std::collections::HashMap::from([
                    ("attribute_key".to_owned(), s(key)),
                    ("state".to_owned(), s(state)),
                ]);
                if let Some(lease) = lease {
                    item.insert("lease_expires_ms".to_owned(), n(*lease));
                }
                output = output.items(item);
            }
            output.build()
        })
}

/// The claim `PutItem` the protocol specifies, for `key`.
fn is_claim_of(key: &'static str) -> impl Fn(&PutItemInput) -> bool + Send + Sync + 'static {
    move |put: &PutItemInput| {
        let item = put.item().expect("item");
        let names = put.expression_attribute_names().expect("names");
        let values = put.expression_attribute_values().expect("values");
        let key_time = metric(key).time;
        put.table_name() == Some(TABLE)
            && put.condition_expression()
                == Some("attribute_not_exists(#pk) OR (#state = :claimed AND #lease < :now)")
            && names.get("#pk").map(String::as_str) == Some("conversation_id")
            && names.get("#state").map(String::as_str) == Some("state")
            && names.get("#lease").map(String::as_str) == Some("lease_expires_ms")
            && values.get(":claimed") == Some(&s("claimed"))
            && values.get(":now") == Some(&AttributeValue::N(now_ms()))
            && put.return_values_on_condition_check_failure()
                == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
            // What a written claim replaced says whether its key may have been pushed already.
            && put.return_values() == Some(&ReturnValue::AllOld)
            && item.get("conversation_id") == Some(&s(CONVERSATION))
            && item.get("attribute_key") == Some(&s(key))
            && item.get("flow") == Some(&s("Routing"))
            && item.get("state") == Some(&s("claimed"))
            && item.get("key_time_ms") == Some(&n(key_time.as_millisecond()))
            && item.get("lease_expires_ms") == Some(&n(now().as_millisecond() + LEASE.as_millis() as i64))
            && item.get("expires_at") == Some(&n(key_time.as_second() + 30 * 24 * 3600))
            && item
                .get("claim_token")
                .is_some_and(|token| token.as_s().is_ok_and(|token| token.len() == 32))
    }
}

fn claim_won(key: &'static str) -> Rule {
    mock!(Client::put_item)
        .match_requests(is_claim_of(key))
        .then_output(|| PutItemOutput::builder().build())
}

fn request<'a>(keys: &'a [MetricKey<'a>], token: &'a ClaimToken) -> ClaimRequest<'a> {
    ClaimRequest {
        conversation_id: CONVERSATION,
        event_time: now(),
        keys,
        token,
        now: now(),
    }
}

/// A failed condition's answer, carrying the item it met (`ALL_OLD`).
fn condition_failed_on(state: &str, token: &str, lease_ms: Option<i64>) -> Option<String> {
    let lease = lease_ms.map_or(String::new(), |ms| {
        format!(r#","lease_expires_ms":{{"N":"{ms}"}}"#)
    });
    service_error(
        "ConditionalCheckFailedException",
        &format!(
            r#","Item":{{"conversation_id":{{"S":"{CONVERSATION}"}},"attribute_key":{{"S":"{START}"}},"state":{{"S":"{state}"}},"claim_token":{{"S":"{token}"}}{lease}}}"#
        ),
    )
}

#[tokio::test]
async fn a_claim_on_new_keys_wins_them_all() {
    let query = empty_partition();
    let (start, menu) = (claim_won(START), claim_won(MENU));
    let ledger = ledger(&[&query, &start, &menu]);
    let keys = [metric(START), metric(MENU)];
    let claim = ledger.claim(request(&keys, &token())).await.expect("claim");
    assert_eq!(claim.won, [0, 1]);
    assert_eq!(
        (query.num_calls(), start.num_calls(), menu.num_calls()),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn a_lost_race_is_not_an_error_and_needs_no_second_read() {
    let query = empty_partition();
    let lost = mock!(Client::put_item)
        .match_requests(is_claim_of(START))
        .sequence()
        .http_status(
            400,
            service_error(
                "ConditionalCheckFailedException",
                r#","Item":{"conversation_id":{"S":"c"},"attribute_key":{"S":"k"},"state":{"S":"delivered"}}"#,
            ),
        )
        .build();
    let won = claim_won(MENU);
    let ledger = ledger(&[&query, &lost, &won]);
    let keys = [metric(START), metric(MENU)];
    let claim = ledger
        .claim(request(&keys, &token()))
        .await
        .expect("a lost race is not an error");
    assert_eq!(claim.won, [1]);
    assert_eq!((query.num_calls(), lost.num_calls()), (1, 1));
}

#[tokio::test]
async fn delivered_keys_are_skipped_and_live_claims_are_pending_without_a_write() {
    let lease_ahead = now().as_millisecond() + 1_000;
    let query = partition_with(vec![
        (START, "delivered", None),
        (MENU, "claimed", Some(lease_ahead)),
    ]);
    let puts = mock!(Client::put_item).then_output(|| PutItemOutput::builder().build());
    let ledger = ledger(&[&query, &puts]);
    let keys = [metric(START), metric(MENU)];
    let claim = ledger.claim(request(&keys, &token())).await.expect("claim");
    assert!(claim.won.is_empty());
    let lease = Timestamp::from_millisecond(lease_ahead).expect("lease");
    assert_eq!(claim.pending, [(1, lease)], "MENU waits for its holder");
    assert_eq!(puts.num_calls(), 0);
}

#[tokio::test]
async fn a_claim_applied_but_answered_with_a_500_is_won_on_the_sdks_retry() {
    // DynamoDB applied the put, the answer was lost (500); the SDK's retry then fails its
    // condition against our own item.
    let query = empty_partition();
    let lease = now().as_millisecond() + LEASE.as_millis() as i64;
    let applied_then_retried = mock!(Client::put_item)
        .match_requests(is_claim_of(START))
        .sequence()
        .http_status(500, service_error("InternalServerError", ""))
        .http_status(400, condition_failed_on("claimed", TOKEN, Some(lease)))
        .build();
    let ledger = ledger(&[&query, &applied_then_retried]);
    let keys = [metric(START)];
    let claim = ledger.claim(request(&keys, &token())).await.expect("claim");
    assert_eq!(claim.won, [0], "the key is ours, not someone else's");
    assert_eq!(applied_then_retried.num_calls(), 2);
}

#[tokio::test]
async fn a_put_that_meets_another_live_claim_leaves_the_key_pending() {
    let query = empty_partition();
    let lease = now().as_millisecond() + 5_000;
    let taken = mock!(Client::put_item)
        .match_requests(is_claim_of(START))
        .sequence()
        .http_status(400, condition_failed_on("claimed", "another-holder", Some(lease)))
        .build();
    let ledger = ledger(&[&query, &taken]);
    let keys = [metric(START)];
    let claim = ledger.claim(request(&keys, &token())).await.expect("claim");
    assert!(claim.won.is_empty());
    assert_eq!(
        claim.pending,
        [(0, Timestamp::from_millisecond(lease).expect("lease"))]
    );
}

#[tokio::test]
async fn a_failed_condition_without_the_item_is_answered_by_a_consistent_read() {
    // Emulators leave the item out of the answer; the ledger reads it.
    let query = empty_partition();
    let lost_answer = mock!(Client::put_item)
        .match_requests(is_claim_of(START))
        .sequence()
        .http_status(400, service_error("ConditionalCheckFailedException", ""))
        .build();
    let read = mock!(Client::get_item)
        .match_requests(|get| get.consistent_read() == Some(true) && get.table_name() == Some(TABLE))
        .then_output(|| {
            GetItemOutput::builder()
                .item("state", s("delivered"))
                .item("claim_token", s("another-holder"))
                .build()
        });
    let ledger = ledger(&[&query, &lost_answer, &read]);
    let keys = [metric(START)];
    let claim = ledger.claim(request(&keys, &token())).await.expect("claim");
    assert_eq!(claim, Default::default(), "delivered by another holder");
    assert_eq!(read.num_calls(), 1);
}

#[tokio::test]
async fn a_claim_whose_lease_expired_is_taken_again() {
    let expired = now().as_millisecond() - 1;
    let query = partition_with(vec![
        (START, "claimed", Some(expired)),
        (MENU, "claimed", Some(0)),
    ]);
    let (start, menu) = (claim_won(START), claim_won(MENU));
    let ledger = ledger(&[&query, &start, &menu]);
    let keys = [metric(START), metric(MENU)];
    let claim = ledger.claim(request(&keys, &token())).await.expect("claim");
    assert_eq!(claim.won, [0, 1]);
}

#[tokio::test]
async fn every_page_of_the_partition_is_read() {
    let first_page = mock!(Client::query)
        .match_requests(|query| is_partition_query(query) && query.exclusive_start_key().is_none())
        .then_output(|| {
            QueryOutput::builder()
                .items(
                    [
                        ("attribute_key".to_owned(), s(START)),
                        ("state".to_owned(), s("delivered")),
                    ]
                    .into(),
                )
                .last_evaluated_key("conversation_id", s(CONVERSATION))
                .last_evaluated_key("attribute_key", s(START))
                .build()
        });
    let second_page = mock!(Client::query)
        .match_requests(|query| {
            is_partition_query(query)
                && query
                    .exclusive_start_key()
                    .and_then(|key| key.get("attribute_key"))
                    == Some(&s(START))
        })
        .then_output(|| {
            QueryOutput::builder()
                .items(
                    [
                        ("attribute_key".to_owned(), s(MENU)),
                        ("state".to_owned(), s("delivered")),
                    ]
                    .into(),
                )
                .build()
        });
    let puts = mock!(Client::put_item).then_output(|| PutItemOutput::builder().build());
    let ledger = ledger(&[&first_page, &second_page, &puts]);
    let keys = [metric(START), metric(MENU)];
    let claim = ledger.claim(request(&keys, &token())).await.expect("claim");
    assert!(claim.won.is_empty(), "both keys were on some page");
    assert_eq!(
        (first_page.num_calls(), second_page.num_calls(), puts.num_calls()),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_then_succeeds() {
    let query = empty_partition();
    let throttled_then_won = mock!(Client::put_item)
        .match_requests(is_claim_of(START))
        .sequence()
        .http_status(400, service_error("ProvisionedThroughputExceededException", ""))
        .times(2)
        .output(|| PutItemOutput::builder().build())
        .build();
    let ledger = ledger(&[&query, &throttled_then_won]);
    let keys = [metric(START)];
    let claim = ledger
        .claim(request(&keys, &token()))
        .await
        .expect("claim after retries");
    assert_eq!(claim.won, [0]);
    assert_eq!(throttled_then_won.num_calls(), 3);
}

#[tokio::test]
async fn throttling_past_the_retries_fails_that_key_alone_and_the_keys_won_stay_won() {
    let query = empty_partition();
    let start = claim_won(START);
    let throttled = mock!(Client::put_item)
        .match_requests(is_claim_of(MENU))
        .sequence()
        .http_status(400, service_error("ThrottlingException", ""))
        .repeatedly()
        .build();
    let release = mock!(Client::update_item)
        .match_requests(|update| is_release_of(update, START) || is_release_of(update, MENU))
        .then_output(|| UpdateItemOutput::builder().build());
    let ledger = ledger(&[&query, &start, &throttled, &release]);
    let keys = [metric(START), metric(MENU)];
    let claim = ledger
        .claim(request(&keys, &token()))
        .await
        .expect("the keys won are an answer");
    assert_eq!(claim.won, [0], "START stays won");
    assert_eq!(claim.failed, [1], "MENU is asked again");
    assert!(matches!(
        claim.failure,
        Some(LedgerError::Transient {
            operation: "PutItem",
            ..
        })
    ));
    assert_eq!(
        throttled.num_calls(),
        3,
        "the SDK's standard retry made 3 attempts"
    );
    assert_eq!(release.num_calls(), 0, "nothing won is given back");
}

#[tokio::test]
async fn a_5xx_is_transient() {
    let unavailable = mock!(Client::query)
        .sequence()
        .http_status(500, service_error("InternalServerError", ""))
        .repeatedly()
        .build();
    let ledger = ledger(&[&unavailable]);
    let keys = [metric(START)];
    let error = ledger
        .claim(request(&keys, &token()))
        .await
        .expect_err("unavailable");
    assert!(error.is_transient(), "{error}");
}

#[tokio::test]
async fn a_missing_table_is_a_permanent_error_naming_the_table() {
    let missing = mock!(Client::query)
        .sequence()
        .http_status(400, service_error("ResourceNotFoundException", ""))
        .build();
    let ledger = ledger(&[&missing]);
    let keys = [metric(START)];
    let error = ledger
        .claim(request(&keys, &token()))
        .await
        .expect_err("no table");
    assert!(!error.is_transient());
    assert!(
        error
            .to_string()
            .contains("table flow-metrics-ledger does not exist"),
        "{error}"
    );
}

fn is_update_of(update: &UpdateItemInput, key: &str, token: &str) -> bool {
    let names = update.expression_attribute_names().expect("names");
    let values = update.expression_attribute_values().expect("values");
    let item_key = update.key().expect("key");
    update.table_name() == Some(TABLE)
        && item_key.get("conversation_id") == Some(&s(CONVERSATION))
        && item_key.get("attribute_key") == Some(&s(key))
        && names.get("#token").map(String::as_str) == Some("claim_token")
        && names.get("#state").map(String::as_str) == Some("state")
        && (token.is_empty() || values.get(":token") == Some(&s(token)))
}

/// A confirm: conditional on the token alone (so a retried confirm of ours succeeds), and
/// keeping it.
fn is_confirm_of(update: &UpdateItemInput, key: &str, token: &str) -> bool {
    let values = update.expression_attribute_values().expect("values");
    is_update_of(update, key, token)
        && update.condition_expression() == Some("#token = :token")
        && update.update_expression()
            == Some("SET #state = :delivered, #delivered = if_not_exists(#delivered, :now) REMOVE #lease")
        && values.get(":delivered") == Some(&s("delivered"))
        && values.get(":now") == Some(&AttributeValue::N(now_ms()))
}

fn is_release_of(update: &UpdateItemInput, key: &str) -> bool {
    let values = update.expression_attribute_values().expect("values");
    is_update_of(update, key, "")
        && update.condition_expression() == Some("#state = :claimed AND #token = :token")
        && values.get(":claimed") == Some(&s("claimed"))
        && update.update_expression() == Some("SET #lease = :released REMOVE #token")
        && values.get(":released") == Some(&n(0))
}

#[tokio::test]
async fn a_confirm_marks_held_keys_delivered_and_reports_claims_taken_over() {
    let token = token();
    let confirmed = mock!(Client::update_item)
        .match_requests(|update| is_confirm_of(update, START, TOKEN))
        .then_output(|| UpdateItemOutput::builder().build());
    // The lease expired and another holder re-claimed MENU: its token no longer matches.
    let taken_over = mock!(Client::update_item)
        .match_requests(|update| is_confirm_of(update, MENU, TOKEN))
        .sequence()
        .http_status(400, service_error("ConditionalCheckFailedException", ""))
        .build();
    let ledger = ledger(&[&confirmed, &taken_over]);
    let lost = ledger
        .confirm(
            Held {
                conversation_id: CONVERSATION,
                keys: &[START, MENU],
                token: &token,
                now: now(),
            },
            false,
        )
        .await
        .expect("confirm");
    assert_eq!(lost, [MENU]);
    assert_eq!((confirmed.num_calls(), taken_over.num_calls()), (1, 1));
}

// A paused clock: the pipeline's wall clock stays at `now()`, as the request matchers expect.
#[tokio::test(start_paused = true)]
async fn a_failed_push_releases_the_claims_so_the_retry_takes_them() {
    let query = empty_partition();
    let (start, menu) = (claim_won(START), claim_won(MENU));
    let release_start = mock!(Client::update_item)
        .match_requests(|update| is_release_of(update, START))
        .then_output(|| UpdateItemOutput::builder().build());
    let release_menu = mock!(Client::update_item)
        .match_requests(|update| is_release_of(update, MENU))
        .then_output(|| UpdateItemOutput::builder().build());
    let ledger = ledger(&[&query, &start, &menu, &release_start, &release_menu]);
    let pipeline = Pipeline::new(ledger, RecordingSink::default());
    pipeline.sink().failing.store(true, Ordering::SeqCst);
    let event = attributes_event(CONVERSATION, "2026-03-07T04:08:11Z", &[START, MENU]);
    let report = pipeline.process_batch(&[&event], now()).await;
    assert!(matches!(report.outcomes[..], [EventOutcome::Failed { .. }]));
    assert_eq!((release_start.num_calls(), release_menu.num_calls()), (1, 1));
}

#[tokio::test]
async fn events_without_fresh_keys_make_no_dynamodb_call() {
    let any_query = mock!(Client::query).then_output(|| QueryOutput::builder().build());
    let ledger = ledger(&[&any_query]);
    let pipeline = Pipeline::new(ledger, RecordingSink::default());
    let stale = "RoutingMetric_Start(2026-01-01T00:00:00Z)";
    let event = attributes_event(
        CONVERSATION,
        "2026-03-07T04:08:11Z",
        &["AccountID", stale, "XMetric_(bad)"],
    );
    pipeline.process_batch(&[&event], now()).await;
    assert_eq!(any_query.num_calls(), 0);
}

#[test]
fn a_batch_over_dynamodb_can_run_on_any_runtime_thread() {
    fn assert_send<T: Send>(_: &T) {}
    let pipeline = Pipeline::new(ledger(&[]), RecordingSink::default());
    let batch = pipeline.process_batch(&[], now());
    assert_send(&batch);
}
