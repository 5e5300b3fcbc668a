//! Exactly once under the faults AWS really produces, proven on generated traces.
//!
//! The world (`tests/common/world/`) is as unkind as AWS's. Conversations whose attribute maps
//! grow event by event (with invalid, stale, old, early and non-metric keys; some write
//! thousands) are delivered one to three times, some minutes or hours late, as EventBridge
//! invokes the Lambda directly or through an SQS queue. Lambda keeps instances warm between
//! invocations, each with its own clock (off AWS's by up to ±2 s), and kills them (a crash, out
//! of memory) or ends them at the function's timeout. DynamoDB is reached through the SDK's
//! attempts (2 s each, 6 s a call, three attempts): writes applied whose answers are lost,
//! throttles, slow and hung attempts, outages over windows of time (throttling, a brownout,
//! 500s, AccessDenied until an operator restores the permission), a steady throttle rate,
//! Queries that miss the last second of writes, and TTL deleting items after the retention.
//! DataDog keeps the points in its window and drops the others silently; the sink's retries
//! meet 5xx, lost answers, 429 and slow answers, through a model of the sink's client or the
//! real sink over HTTP on 127.0.0.1. The operator drains the dead letters an hour
//! later and then every day (the queue deletes them after 14 days), and may replay the
//! EventBridge archive weeks later. Time is simulated: the runtime's clock is paused.
//!
//! The invariants are in `world::check`. `EXACTLY_ONCE_CASES` sets the number of traces in all
//! (default: 5000, shared out between the tests), and `EXACTLY_ONCE_SEED` which (default: the
//! same ones on every run, so CI is deterministic).

mod common;
#[path = "common/world/mod.rs"]
mod world;

use std::sync::Arc;

use flow_metrics::ledger::DeliveredCache;
use proptest::prelude::*;
use world::Record;
use world::check::{Situation, assert_exercised, cases, check, check_exact, run_trace, run_traces};
use world::datadog::http::Bridge;
use world::lambda::SinkChoice;
use world::trace::{
    CallFault, Conversation, Expected, HttpAnswer, KeyKind, Mode, Operation, PushFault, Step, Trace, Window,
    WindowKind, direct, queued, trace, trace_in,
};

/// Everything every world-wide test must reach.
const EVERY_FAULT: &[Situation] = &[
    ("a warm instance reused", |seen| seen.warm_starts),
    ("a killed process", |seen| seen.kills),
    ("a key in flight at a kill", |seen| seen.kills_in_flight),
    ("a retry", |seen| seen.retries),
    ("a dead letter", |seen| seen.dead_letters),
    ("a drain", |seen| seen.drains),
    ("an event that gave up waiting for another holder", |seen| {
        seen.gave_up_waiting
    }),
    ("a write applied and retried by the SDK", |seen| {
        seen.applied_then_retried
    }),
    ("a call failed in an outage window", |seen| seen.window_failures),
    ("a confirm failed in an outage window", |seen| {
        seen.confirms_failed_in_windows
    }),
    ("a call denied (AccessDenied)", |seen| seen.calls_denied),
    ("an event failed by a permanent error", |seen| {
        seen.permanent_failures
    }),
    ("a call throttled under the steady rate", |seen| {
        seen.steady_throttles
    }),
    ("a confirm slower than the time kept for it", |seen| {
        seen.slow_confirms
    }),
    ("a Query that missed a write", |seen| seen.stale_reads),
    ("a process whose clock is ahead", |seen| seen.clocks_ahead),
    ("a process whose clock is behind", |seen| seen.clocks_behind),
    ("an item deleted by TTL", |seen| seen.ttl_deletions),
    ("an event refused as too old", |seen| seen.too_old),
    ("an event with a thousand fresh keys", |seen| seen.large_events),
    ("a push reported as possibly sent twice", |seen| {
        seen.resent_pushes
    }),
    ("a key DataDog kept twice", |seen| seen.doubles_at_datadog),
    ("a push accepted at the edge of its deadline", |seen| {
        seen.edge_accepts
    }),
    ("a point re-timed into DataDog's window", |seen| {
        seen.retimed_points
    }),
];

#[test]
fn every_valid_key_is_delivered_once_when_eventbridge_invokes_the_function() {
    let cases = cases(33);
    let traces = trace_in(direct());
    let seen = run_traces(cases, traces, |ledger| ledger, || SinkChoice::Model, check);
    assert_exercised(seen, cases, EVERY_FAULT);
}

#[test]
fn every_valid_key_is_delivered_once_when_a_queue_feeds_the_function() {
    let cases = cases(32);
    let traces = trace_in(queued());
    let seen = run_traces(cases, traces, |ledger| ledger, || SinkChoice::Model, check);
    assert_exercised(seen, cases, EVERY_FAULT);
}

#[test]
fn every_valid_key_is_delivered_once_behind_the_warm_functions_cache() {
    // Each warm instance keeps its own cache between invocations.
    let cases = cases(15);
    let seen = run_traces(
        cases,
        trace(),
        |ledger| DeliveredCache::new(ledger, 64.try_into().expect("not zero")),
        || SinkChoice::Model,
        check,
    );
    assert_exercised(seen, cases, EVERY_FAULT);
}

/// What the real sink's traces must reach besides.
const THROUGH_HTTP: &[Situation] = &[
    ("a request DataDog kept and answered with a 503", |seen| {
        seen.http_ingested_5xx
    }),
    ("a 429", |seen| seen.http_rate_limited),
    ("a 413 (the sink halves the request)", |seen| seen.http_too_large),
    ("an answer held past the client's timeout", |seen| seen.http_held),
    ("a key DataDog kept twice", |seen| seen.doubles_at_datadog),
    ("a point re-timed into DataDog's window", |seen| {
        seen.retimed_points
    }),
    ("a killed process", |seen| seen.kills),
    ("a warm instance reused", |seen| seen.warm_starts),
    ("a call failed in an outage window", |seen| seen.window_failures),
    ("a Query that missed a write", |seen| seen.stale_reads),
];

#[test]
fn every_valid_key_is_delivered_once_through_the_real_datadog_sink() {
    // Real HTTP costs real time: fewer traces, and no conversation of thousands of keys (the
    // sink sends three occurrences a request).
    let cases = cases(5);
    let traces = trace().prop_map(|mut trace| {
        for conversation in &mut trace.conversations {
            for step in &mut conversation.steps {
                step.bulk = 0;
            }
        }
        trace
    });
    let seen = run_traces(cases, traces, |ledger| ledger, real_sink, check);
    assert_exercised(seen, cases, THROUGH_HTTP);
}

fn real_sink() -> SinkChoice {
    SinkChoice::Real(Bridge::here())
}

#[test]
fn without_kills_outages_or_datadog_keeping_a_failed_push_the_count_is_exact() {
    // Nothing may excuse a double here: no kill, no push DataDog may keep twice, no confirm
    // that can fail until the deadline (no outage, no throttled confirm); confirms may still
    // be slow.
    let strict = trace().prop_map(|mut trace| {
        trace.pushes.retain(|fault| !fault.may_double());
        trace.windows.clear();
        trace.throttle_per_mille = 0;
        trace.confirms_never_throttled = true;
        trace.kills.clear();
        trace
    });
    let cases = cases(15);
    let seen = run_traces(cases, strict, |ledger| ledger, || SinkChoice::Model, check_exact);
    assert_exercised(
        seen,
        cases,
        &[
            ("a write applied and retried by the SDK", |seen| {
                seen.applied_then_retried
            }),
            ("a retry", |seen| seen.retries),
            ("a confirm slower than the time kept for it", |seen| {
                seen.slow_confirms
            }),
            ("a push accepted at the edge of its deadline", |seen| {
                seen.edge_accepts
            }),
        ],
    );
}

/// A conversation's events, each adding one valid key: (seconds after the previous, copies).
fn conversation(steps: &[(u32, usize)]) -> Conversation {
    Conversation {
        start_s: 0,
        steps: steps
            .iter()
            .map(|&(gap_s, copies)| Step {
                gap_s,
                adds: vec![KeyKind::Valid],
                bulk: 0,
                copies: vec![0; copies],
            })
            .collect(),
    }
}

/// Runs one handmade trace and checks it.
fn run_one(trace: &Trace) -> (Expected, Arc<Record>) {
    run_one_through(trace, SinkChoice::Model)
}

fn run_one_through(trace: &Trace, sink: SinkChoice) -> (Expected, Arc<Record>) {
    world::set_verbose(std::env::var_os("EXACTLY_ONCE_VERBOSE").is_some());
    let (expected, record) = run_trace(trace, |ledger| ledger, sink);
    world::set_verbose(false);
    if let Err(failure) = check(&expected, &record) {
        let seen = *record.seen.lock().expect("lock");
        panic!("{failure}\n({:?}, seed {})\n{seen:?}", trace.mode, trace.seed);
    }
    (expected, record)
}

#[test]
fn a_confirm_failing_until_the_deadline_doubles_no_key_silently() {
    // DataDog accepts the first event's key; then every UpdateItem is throttled for a minute,
    // so its confirm fails until the invocation's deadline and the key stays claimed. The
    // conversation's next event, 50 s later (the lease is over), carries the key again.
    let trace = Trace {
        windows: vec![Window {
            start_s: 0,
            length_s: 60,
            kind: WindowKind::Throttling,
            only: Some(Operation::UpdateItem),
        }],
        ..Trace::calm(vec![conversation(&[(0, 1), (50, 1)])])
    };
    run_one(&trace);
}

#[test]
fn a_push_accepted_at_the_deadline_then_a_slow_confirm_doubles_no_key_silently() {
    // DataDog rate-limits the push for 18 s, then accepts it at the very end of the push's
    // deadline (3 s before the invocation's); the confirm's first two attempts time out (2 s
    // each, as the SDK cuts them) and the third answers: more than 3 s. Lambda ends the
    // invocation at its timeout, and retries the event a minute later.
    let trace = Trace {
        pushes: vec![PushFault::RateLimitedThenLate { wait_s: 18 }],
        calls: vec![CallFault::None, CallFault::None, CallFault::VerySlow],
        ..Trace::calm(vec![conversation(&[(0, 1)])])
    };
    run_one(&trace);
}

#[test]
fn a_claim_taking_over_an_abandoned_one_whose_answer_is_lost_doubles_no_key_silently() {
    // The first event's key is pushed, but its confirm is refused (AccessDenied on UpdateItem
    // for a minute): the claim stays, abandoned once its instance is reclaimed (idle for ten
    // minutes). A quarter of an hour later the conversation's next event takes the claim over;
    // DynamoDB applies that PutItem but answers with a 500, and the SDK's retry meets the new
    // claim itself: what the write replaced is never told.
    let trace = Trace {
        windows: vec![Window {
            start_s: 0,
            length_s: 60,
            kind: WindowKind::AccessDenied,
            only: Some(Operation::UpdateItem),
        }],
        calls: vec![
            CallFault::None,
            CallFault::None,
            CallFault::None,
            CallFault::None,
            CallFault::AppliedThenRetried,
        ],
        ..Trace::calm(vec![conversation(&[(0, 1), (900, 1)])])
    };
    run_one(&trace);
}

#[test]
fn datadog_keeping_a_push_it_answered_with_a_5xx_doubles_no_key_silently() {
    // DataDog keeps the push and answers 503; the sink retries, and DataDog keeps it again. The
    // sink says so (`Pushed::resent`).
    let trace = Trace {
        pushes: vec![PushFault::KeptThen5xx],
        ..Trace::calm(vec![conversation(&[(0, 1)])])
    };
    run_one(&trace);
}

#[test]
fn the_real_datadog_sink_resending_a_request_datadog_kept_doubles_no_key_silently() {
    // DataDog keeps a request and answers 503, or keeps it and holds its answer past the
    // client's timeout; the real sink retries, and DataDog keeps it again.
    for answer in [HttpAnswer::Kept503, HttpAnswer::KeptHeld] {
        let trace = Trace {
            http: vec![answer],
            ..Trace::calm(vec![conversation(&[(0, 1)])])
        };
        run_one_through(&trace, real_sink());
    }
}

#[test]
fn a_2000_key_conversation_under_half_percent_throttles_is_fully_delivered() {
    // A flow writes 2,000 metric keys before the conversation's first attributes event; a later
    // event carries them all again, twice. 0.5 % of DynamoDB calls are throttled past the SDK's
    // retries, all along. Dead letters are drained every day; the queue deletes them after 14
    // days, and after 23 days an event is too old to count.
    for (mode, seed) in [(Mode::Direct, 1), (Mode::Queued(10), 2)] {
        let mut bulk = conversation(&[(0, 1), (30, 2)]);
        bulk.steps[0].bulk = 1_999;
        let trace = Trace {
            mode,
            throttle_per_mille: 5,
            seed,
            ..Trace::calm(vec![bulk])
        };
        let (expected, record) = run_one(&trace);
        let seen = *record.seen.lock().expect("lock");
        assert!(
            expected.all.len() == 2_001 && seen.steady_throttles > 0,
            "{seen:?}"
        );
    }
}
