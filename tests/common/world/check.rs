//! The invariants, the runner of generated traces, and what they must have exercised.
//!
//! Invariants:
//! - when an event is acknowledged, every fresh key it carries has been delivered (DataDog kept
//!   a point of it);
//! - every valid, recent key is delivered in the end (the operator drains what was
//!   dead-lettered, once outages are over and permissions restored);
//! - nothing else is delivered;
//! - a key delivered twice was logged by the function as `possibly doubled` (a WARN naming its
//!   `conversation_id` and `key`), or was in flight when its process was killed (pushed, and
//!   still claimed and unconfirmed at the kill) before the second delivery, or was delivered
//!   twice by one push whose process was killed before it returned (nothing lived to say so).
//!   Lambda's timeout is no excuse: the function knows its deadline.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use flow_metrics::ledger::{KeyLedger, Ledger};
use jiff::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

use super::dynamodb::WorldStore;
use super::lambda::{Run, SinkChoice, World};
use super::trace::{Expected, Trace, expected};
use super::{Mark, Pair, Push, Record, Seen, capture_doubles};

/// How many times a key was delivered, and how many of its doubles nothing excuses.
fn doubles(marks: &[Mark], unreturned: &BTreeSet<Push>) -> (usize, usize) {
    let mut delivered = 0;
    let mut in_flight = 0;
    let mut unexcused = 0;
    let mut previous: Option<Push> = None;
    for mark in marks {
        match *mark {
            Mark::InFlightAtKill => in_flight += 1,
            Mark::Kept(push) => {
                delivered += 1;
                let again_by_a_dead_push = previous == Some(push) && unreturned.contains(&push);
                if delivered > 1 && !again_by_a_dead_push {
                    if in_flight > 0 {
                        in_flight -= 1;
                    } else {
                        unexcused += 1;
                    }
                }
                previous = Some(push);
            }
        }
    }
    (delivered, unexcused)
}

/// Checks the invariants against what DataDog kept.
pub fn check(expected: &Expected, record: &Record) -> Result<(), TestCaseError> {
    let broken = record.broken_promises.lock().expect("lock");
    prop_assert!(broken.is_empty(), "{}", broken.join("\n"));
    let marks = record.marks.lock().expect("lock");
    let logged = record.logged.lock().expect("lock");
    let unreturned = record.unreturned.lock().expect("lock");
    for (pair, marks) in marks.iter() {
        let (delivered, unexcused) = doubles(marks, &unreturned);
        prop_assert!(
            delivered == 0 || expected.all.contains(pair),
            "delivered but not a valid, recent key: {pair:?}"
        );
        prop_assert!(
            unexcused == 0 || logged.contains(pair),
            "{pair:?} delivered {delivered} times: {unexcused} double(s) neither logged \
             `possibly doubled` (conversation_id, key) nor of a key in flight at a kill"
        );
    }
    let lost: Vec<&Pair> = expected
        .all
        .iter()
        .filter(|pair| {
            !marks
                .get(*pair)
                .is_some_and(|marks| marks.iter().any(|mark| mark.is_kept()))
        })
        .collect();
    prop_assert!(
        lost.is_empty(),
        "{} of {} keys lost, first {:?}",
        lost.len(),
        expected.all.len(),
        lost.first()
    );
    Ok(())
}

/// The same check, and no double at all: for worlds where nothing may excuse one.
pub fn check_exact(expected: &Expected, record: &Record) -> Result<(), TestCaseError> {
    check(expected, record)?;
    for (pair, marks) in record.marks.lock().expect("lock").iter() {
        let kept = marks.iter().filter(|mark| mark.is_kept()).count();
        prop_assert!(kept <= 1, "{pair:?} delivered {kept} times");
    }
    Ok(())
}

/// The traces' start.
pub fn base() -> Timestamp {
    "2026-03-07T08:00:00Z".parse().expect("time")
}

/// Runs one trace on a paused-clock runtime; `wrap` puts each instance's ledger behind what the
/// Lambda puts it behind.
pub fn run_trace<L: Ledger>(
    trace: &Trace,
    wrap: fn(KeyLedger<WorldStore>) -> L,
    sink: SinkChoice,
) -> (Expected, Arc<Record>) {
    fastrand::seed(trace.seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let expected = expected(trace, base());
    let record = runtime.block_on(async {
        let world = World::new(trace, &expected, base(), sink);
        let record = world.record.clone();
        let _logs = capture_doubles(record.logged.clone());
        let run = Run::new(trace, &expected, world, wrap);
        run.run().await;
        record
    });
    (expected, record)
}

/// How many traces a test runs: its share of `EXACTLY_ONCE_CASES` (default 5000).
pub fn cases(share: u32) -> u32 {
    let total = std::env::var("EXACTLY_ONCE_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(5000);
    (total * share / 100).max(1)
}

/// Runs generated traces; returns what they exercised.
pub fn run_traces<L: Ledger>(
    cases: u32,
    strategy: impl Strategy<Value = Trace>,
    wrap: fn(KeyLedger<WorldStore>) -> L,
    sink: fn() -> SinkChoice,
    check: impl Fn(&Expected, &Record) -> Result<(), TestCaseError>,
) -> Seen {
    let total = Mutex::new(Seen::default());
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    // The same traces on every CI run; `EXACTLY_ONCE_SEED` explores others.
    let rng = match std::env::var("EXACTLY_ONCE_SEED")
        .ok()
        .and_then(|seed| seed.parse::<u64>().ok())
    {
        Some(seed) => {
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&seed.to_le_bytes());
            TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
        }
        None => TestRng::deterministic_rng(RngAlgorithm::ChaCha),
    };
    let mut runner = TestRunner::new_with_rng(config, rng);
    let result = runner.run(&strategy, |trace| {
        let (expected, record) = run_trace(&trace, wrap, sink());
        *total.lock().expect("lock") += *record.seen.lock().expect("lock");
        check(&expected, &record)
    });
    if let Err(TestError::Fail(_, trace)) = &result
        && std::env::var_os("EXACTLY_ONCE_VERBOSE").is_some()
    {
        // The smallest failing trace again, telling what happens.
        super::set_verbose(true);
        run_trace(trace, wrap, sink());
        super::set_verbose(false);
    }
    result.expect("no discrepancy");
    let seen = total.into_inner().expect("lock");
    eprintln!("{cases} traces exercised: {seen:?}");
    seen
}

/// A situation the traces must reach: its name, and how often it happened.
pub type Situation = (&'static str, fn(&Seen) -> usize);

/// Fails unless the traces reached each of these situations (when there were enough of them:
/// some situations come about once in a hundred traces).
pub fn assert_exercised(seen: Seen, cases: u32, situations: &[Situation]) {
    if cases < 200 {
        return;
    }
    let missing: Vec<&str> = situations
        .iter()
        .filter(|(_, count)| count(&seen) == 0)
        .map(|(name, _)| *name)
        .collect();
    assert!(missing.is_empty(), "no trace exercised {missing:?}: {seen:?}");
}
