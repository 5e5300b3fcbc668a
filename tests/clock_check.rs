//! The clock check of commands that write to a live table, over HTTP on 127.0.0.1: dynalite
//! behind a proxy whose answers carry the `Date` of a clock shifted from this machine's. A right
//! clock is accepted; one ten minutes or three seconds off is refused, saying by how much, which
//! way, and how to fix it.

mod common;

use common::emulator::{Dynalite, client_for};
use common::fault_proxy::FaultProxy;
use flow_metrics::aws::clock::{ClockError, ClockOffset, check_clock, measure_clock_offset};
use flow_metrics::ledger::dynamodb::create_table;
use jiff::SignedDuration;

const TABLE: &str = "flow-metrics-clock";

/// Measures this machine's clock through a proxy whose dates are `shift` ahead of it, on a table
/// that exists if `with_table`.
async fn measure_through(shift: SignedDuration, with_table: bool) -> ClockOffset {
    let emulator = Dynalite::start();
    if with_table {
        create_table(&emulator.client(), TABLE)
            .await
            .expect("create the table");
    }
    let proxy = FaultProxy::shifting_dates(&emulator.endpoint, shift);
    measure_clock_offset(&client_for(&proxy.endpoint), TABLE)
        .await
        .unwrap_or_else(|error| panic!("measure the clock: {error}"))
}

/// The seconds a refusal names: `this machine's clock is 600.4 s ahead of AWS's …`.
fn seconds_named(message: &str) -> f64 {
    message
        .strip_prefix("this machine's clock is ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|seconds| seconds.parse().ok())
        .unwrap_or_else(|| panic!("no offset in {message}"))
}

#[tokio::test]
async fn a_clock_that_agrees_with_the_servers_is_accepted() {
    let offset = measure_through(SignedDuration::ZERO, true).await;
    assert_eq!(check_clock(&offset), Ok(()), "{offset:?}");
    assert!(offset.lower <= SignedDuration::ZERO, "{offset:?}");
}

#[tokio::test]
async fn a_clock_ten_minutes_ahead_is_refused_saying_by_how_much_and_how_to_fix_it() {
    let offset = measure_through(SignedDuration::from_mins(-10), true).await;
    let error = check_clock(&offset).expect_err("refused");
    assert_eq!(error, ClockError::Skewed(offset));
    let message = error.to_string();
    assert!((599.0..=601.0).contains(&seconds_named(&message)), "{message}");
    assert!(message.contains(" s ahead of AWS's"), "{message}");
    assert!(message.contains("more than 2 s off"), "{message}");
    assert!(message.contains("sudo chronyc makestep"), "{message}");
    assert!(message.contains("then run the command again"), "{message}");
}

#[tokio::test]
async fn a_clock_three_seconds_behind_is_refused() {
    let shift = SignedDuration::from_secs(3);
    let offset = measure_through(shift, true).await;
    assert!(offset.lower <= shift && shift <= offset.upper, "{offset:?}");
    let message = check_clock(&offset).expect_err("refused").to_string();
    assert!(message.contains(" s behind AWS's"), "{message}");
    assert!((2.0..=4.0).contains(&seconds_named(&message)), "{message}");
}

#[tokio::test]
async fn a_missing_tables_answer_still_measures_the_clock() {
    let offset = measure_through(SignedDuration::from_mins(-10), false).await;
    assert!(
        matches!(check_clock(&offset), Err(ClockError::Skewed(_))),
        "{offset:?}"
    );
}

/// The commands that write to a live table measure first: `drain`, `redrive` and `replay
/// --ledger dynamodb` stop, writing nothing, when the table's answers say this machine is ten
/// minutes off; a dry run, which writes nothing, does not ask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_that_writes_to_a_table_refuses_a_clock_ten_minutes_off() {
    let emulator = Dynalite::start();
    create_table(&emulator.client(), TABLE)
        .await
        .expect("create the table");
    let proxy = FaultProxy::shifting_dates(&emulator.endpoint, SignedDuration::from_mins(10));
    let events = tempfile::NamedTempFile::new().expect("temp file");
    let at = jiff::Timestamp::now() - SignedDuration::from_mins(5);
    let key = format!("RoutingMetric_Menu({at})");
    std::fs::write(
        events.path(),
        common::attributes_event("c-clock", &at.to_string(), &[&key]),
    )
    .expect("events");
    let file = events.path().to_str().expect("a path");
    let run = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_flow-metrics"));
        command
            .args(args)
            .args(["--table", TABLE, "--sink", "stdout"])
            .envs(common::emulator::environment_for(&proxy.endpoint));
        command.output().expect("run flow-metrics")
    };
    for args in [
        &["replay", "--ledger", "dynamodb", file][..],
        &["redrive"][..],
        &[
            "drain",
            "--queue-url",
            "http://127.0.0.1:9/000000000000/never-read",
        ][..],
    ] {
        let output = run(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{args:?}: {stderr}");
        assert!(
            stderr.contains("s behind AWS's") && stderr.contains("more than 2 s off"),
            "{args:?}: {stderr}"
        );
    }
    let scan = emulator
        .client()
        .scan()
        .table_name(TABLE)
        .send()
        .await
        .expect("scan");
    assert_eq!(scan.count(), 0, "nothing was written");
    let dry_run = run(&["redrive", "--dry-run"]);
    assert!(
        dry_run.status.success(),
        "{}",
        String::from_utf8_lossy(&dry_run.stderr)
    );
}
