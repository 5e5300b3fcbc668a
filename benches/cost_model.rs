//! The cost model: a month-like trace through this tool's protocol and the snapshot-diff
//! design, DynamoDB units by DynamoDB's sizing rules, in $ per million events. The same as
//! `flow-metrics simulate`.

use flow_metrics::cli::simulate::{TraceShape, compare};

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let comparison = runtime.block_on(compare(TraceShape::default()));
    println!("{}", comparison.render(256.0));
}
