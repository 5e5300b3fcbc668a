//! Throughput of the hot path on realistic events (20 to 60 attributes, a few metric keys):
//! the whole pipeline (decode, grammar, what counts, in-memory ledger, a sink that keeps
//! nothing) beside a bare `serde_json` parse of the same bytes into a `Value`, the floor any
//! JSON handler pays. And the attribute grammar alone, per kind of key.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flow_metrics::attribute::classify;
use flow_metrics::cli::simulate::{CountingSink, TraceShape, generate};
use flow_metrics::event::decode;
use flow_metrics::ledger::MemoryLedger;
use flow_metrics::pipeline::Pipeline;
use jiff::Timestamp;

fn events() -> Vec<String> {
    generate(TraceShape {
        conversations: 150,
        duplicate_rate: 0.0,
        ..TraceShape::default()
    })
    .collect()
}

fn handler(c: &mut Criterion) {
    let events = events();
    let bytes: usize = events.iter().map(String::len).sum();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("per event");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("serde_json::Value parse (floor)", |b| {
        b.iter(|| {
            for event in &events {
                black_box(serde_json::from_str::<serde_json::Value>(black_box(event)).ok());
            }
        })
    });
    group.bench_function("decode only", |b| {
        b.iter(|| {
            for event in &events {
                black_box(decode(black_box(event)).ok());
            }
        })
    });
    // Steady state: the ledger already holds every key, as for most events of a conversation.
    let pipeline = Pipeline::new(MemoryLedger::default(), CountingSink::default());
    let now = Timestamp::now();
    runtime.block_on(async {
        for event in &events {
            pipeline.process_batch(&[event], now).await;
        }
    });
    group.bench_function("pipeline, keys already counted", |b| {
        b.to_async(&runtime).iter(|| async {
            for event in &events {
                black_box(pipeline.process_batch(&[black_box(event)], now).await);
            }
        })
    });
    // First sight: every key is claimed, pushed and confirmed (a fresh ledger each time).
    let events = &events;
    group.bench_function("pipeline, every key new", |b| {
        b.to_async(&runtime).iter_batched(
            || Pipeline::new(MemoryLedger::default(), CountingSink::default()),
            |pipeline| async move {
                for event in events {
                    black_box(pipeline.process_batch(&[black_box(event)], now).await);
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
    eprintln!(
        "{} events, {} bytes on average",
        events.len(),
        bytes / events.len().max(1)
    );
}

fn grammar(c: &mut Criterion) {
    let keys = [
        (
            "valid",
            "CustomerRoutingMetric_IdentifiedCustomer(2026-03-07T04:08:28.093Z)",
        ),
        (
            "invalid date",
            "CustomerRoutingMetric_IdentifiedCustomer(2026-02-30T04:08:28.093Z)",
        ),
        (
            "invalid syntax",
            "CustomerRoutingMetric_IdentifiedCustomer(yesterday at noon)",
        ),
        ("not a metric", "CustomerAccountReferenceNumber"),
    ];
    let mut group = c.benchmark_group("attribute grammar");
    group.throughput(Throughput::Elements(1));
    for (name, key) in keys {
        group.bench_with_input(BenchmarkId::from_parameter(name), key, |b, key| {
            b.iter(|| black_box(classify(black_box(key))))
        });
    }
    group.finish();
}

criterion_group!(benches, handler, grammar);
criterion_main!(benches);
