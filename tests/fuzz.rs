//! The fuzz targets of `fuzz/` on stable Rust: the committed corpus, then generated and mutated
//! inputs, for the attribute grammar and the event decoder. No input may panic, decoding may
//! not allocate out of proportion to its input, and a generated valid key parses back to its
//! parts. (`cargo fuzz run attribute_key` / `event_decode` runs the coverage-guided versions.)
//!
//! `FUZZ_CASES` raises the number of generated inputs (default 4096 per target).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use flow_metrics::attribute::{Attribute, classify};
use flow_metrics::event::{Event, decode};
use jiff::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Counts the bytes this thread allocates, so a test can bound what one call allocates.
struct CountingAllocator;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    // During thread teardown the counter may be gone: those allocations are not ours to count.
    let _ = ALLOCATED.try_with(|allocated| allocated.set(allocated.get() + bytes));
}

// SAFETY: every call is forwarded to the system allocator unchanged; counting touches only a
// const-initialised thread-local `Cell`, which never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: forwarded with the caller's arguments.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Bytes allocated by `work` on this thread.
fn allocated_by<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let result = work();
    (result, ALLOCATED.with(Cell::get) - before)
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(4096)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .map(|entry| std::fs::read(entry.expect("corpus entry").path()).expect("corpus file"))
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "the {target} corpus is empty");
    seeds
}

/// A corpus seed with a few bytes changed, inserted or cut.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..8);
    (prop::sample::select(seeds), edits, any::<prop::sample::Index>()).prop_map(|(mut seed, edits, cut)| {
        for (at, byte, kind) in edits {
            let len = seed.len();
            match kind {
                0 if len > 0 => seed[at.index(len)] = byte,
                1 => seed.insert(at.index(len + 1), byte),
                _ if len > 0 => {
                    seed.remove(at.index(len));
                }
                _ => {}
            }
        }
        if cut.index(4) == 0 && !seed.is_empty() {
            seed.truncate(cut.index(seed.len()));
        }
        seed
    })
}

fn run<S: Strategy>(strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner.run(&strategy, test).expect("no failing input");
}

/// What the event_decode target checks for one input.
fn decode_is_sound(data: &[u8]) -> Result<(), TestCaseError> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let (keys, allocated) = allocated_by(|| match decode(text) {
        Ok(Event::Attributes(event)) => event.attribute_keys.len(),
        Ok(Event::FlowOutcome(event)) => event.marks.len(),
        _ => 0,
    });
    prop_assert!(
        allocated <= 8 * text.len() + 64 * 1024,
        "decoding {} bytes ({keys} keys) allocated {allocated} bytes",
        text.len()
    );
    Ok(())
}

/// What the attribute_key target checks for one input.
fn classify_is_sound(key: &str) -> Result<(), TestCaseError> {
    if let Attribute::Metric(metric) = classify(key) {
        prop_assert!(key.starts_with(metric.flow));
        prop_assert!(key.contains(metric.metric));
    }
    prop_assert_eq!(
        matches!(classify(key), Attribute::Other),
        !key.contains("Metric_")
    );
    Ok(())
}

#[test]
fn the_attribute_corpus_and_its_mutations_classify_without_panicking() {
    for seed in corpus("attribute_key") {
        classify_is_sound(&String::from_utf8_lossy(&seed)).expect("seed");
    }
    run(mutated(corpus("attribute_key")), |bytes| {
        classify_is_sound(&String::from_utf8_lossy(&bytes))
    });
}

#[test]
fn arbitrary_keys_classify_without_panicking() {
    run(
        "\\PC{0,60}(Metric_\\PC{0,40}(\\([0-9T:.+ Z-]{0,40}\\)?)?)?",
        |key| classify_is_sound(&key),
    );
}

#[test]
fn generated_valid_keys_parse_back_to_their_parts() {
    let name = "[A-Za-z0-9 _-]{1,30}";
    let strategy = (name, name, -2_000_000_000i64..4_000_000_000, 0u32..1_000_000_000)
        .prop_filter("a flow ends at the first marker", |(flow, _, _, _)| {
            !flow.contains("Metric_")
        });
    run(strategy, |(flow, metric, seconds, nanos)| {
        let time = Timestamp::new(seconds, i32::try_from(nanos).expect("below 1e9")).expect("in range");
        let key = format!("{flow}Metric_{metric}({time})");
        match classify(&key) {
            Attribute::Metric(parsed) => {
                prop_assert_eq!(parsed.flow, flow.as_str());
                prop_assert_eq!(parsed.metric, metric.as_str());
                prop_assert_eq!(parsed.time, time);
                Ok(())
            }
            other => Err(TestCaseError::fail(format!("{key:?} read as {other:?}"))),
        }
    });
}

#[test]
fn the_event_corpus_and_its_mutations_decode_without_panicking_or_bloating() {
    for seed in corpus("event_decode") {
        decode_is_sound(&seed).expect("seed");
    }
    run(mutated(corpus("event_decode")), |bytes| decode_is_sound(&bytes));
}

#[test]
fn arbitrary_bytes_decode_without_panicking() {
    run(prop::collection::vec(any::<u8>(), 0..512), |bytes| {
        decode_is_sound(&bytes)
    });
}

#[test]
fn many_or_huge_attributes_decode_in_proportion() {
    let attributes = (1usize..5000, 1usize..4000).prop_map(|(count, key_len)| {
        let key = "k".repeat(key_len);
        let attributes: Vec<String> = (0..count.min(200_000 / key_len.max(1)).max(1))
            .map(|i| format!("\"{key}{i}Metric_M(2026-03-07T04:08:28Z)\":\"1\""))
            .collect();
        format!(
            r#"{{"detail-type":"v2.detail.events.conversation.{{id}}.attributes","time":"2026-03-07T04:09:16Z","detail":{{"eventBody":{{"conversationId":"c","attributes":{{{}}}}}}}}}"#,
            attributes.join(",")
        )
    });
    decode_large_events(attributes);
}

#[test]
fn many_or_repeated_milestones_decode_in_proportion() {
    let milestones = (1usize..8000, 0usize..40, prop::bool::ANY).prop_map(|(count, id_len, with_flow)| {
        let entries: Vec<String> = (0..count)
            .map(|i| {
                // Some ids repeat, some entries lack what their key needs.
                let id = "m".repeat(id_len) + &(i % 97).to_string();
                match i % 5 {
                    0 => format!(r#"{{"milestoneTime":{i}}}"#),
                    _ => format!(r#"{{"milestoneId":"{id}","milestoneTime":{}}}"#, i % 13),
                }
            })
            .collect();
        let flow = if with_flow { r#""flowId":"f","# } else { "" };
        format!(
            r#"{{"detail-type":"v2.detail.events.conversation.{{id}}.flow.outcome","detail":{{"eventBody":{{"eventTime":1,"conversationId":"c",{flow}"flowMilestones":[{}]}}}}}}"#,
            entries.join(",")
        )
    });
    decode_large_events(milestones);
}

/// Large generated events through the decoder's checks: fewer cases, each costs more.
fn decode_large_events(events: impl Strategy<Value = String>) {
    let mut runner = TestRunner::new(Config {
        cases: (cases() / 64).max(16),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&events, |event| decode_is_sound(event.as_bytes()))
        .expect("no failing input");
}
