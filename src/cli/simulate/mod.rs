//! `flow-metrics simulate`: the cost model ([`model`]) run on a generated trace, printed as $ per
//! million events beside the seed article's design.

pub mod model;

use std::process::ExitCode;

pub use model::{CountingSink, TraceShape, compare, generate, prices};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Conversations in the trace.
    #[arg(long, default_value_t = TraceShape::default().conversations)]
    conversations: usize,

    /// Share of events delivered twice.
    #[arg(long, default_value_t = TraceShape::default().duplicate_rate)]
    duplicate_rate: f64,

    /// Lambda memory, in MB.
    #[arg(long, default_value_t = 256.0)]
    memory: f64,

    /// Seed of the trace generator.
    #[arg(long, default_value_t = TraceShape::default().seed)]
    seed: u64,
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let shape = TraceShape {
        conversations: args.conversations,
        duplicate_rate: args.duplicate_rate,
        seed: args.seed,
        ..TraceShape::default()
    };
    print!("{}", compare(shape).await.render(args.memory));
    Ok(ExitCode::SUCCESS)
}
