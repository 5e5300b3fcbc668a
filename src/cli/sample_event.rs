//! `flow-metrics sample-event`: an event of now (attributes, or a flow outcome) for testing a
//! deployment end to end.

use std::process::ExitCode;

use clap::ValueEnum;
use jiff::{SignedDuration, Timestamp};

#[derive(Debug, clap::Args)]
pub struct SampleEventArgs {
    /// Which topic's event: an attributes event with one metric key, or a flow outcome event
    /// with one milestone and a successful outcome.
    #[arg(long, value_enum, default_value = "attribute")]
    source: SampleSource,

    /// The flow name of the key (an outcome event's flow id).
    #[arg(long, default_value = "DeployTest")]
    flow: String,

    /// The metric name of the key (an outcome event's milestone and outcome id).
    #[arg(long, default_value = "Start")]
    metric: String,

    /// The conversation id (default: a new random one, so that the key counts once).
    #[arg(long)]
    conversation: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SampleSource {
    Attribute,
    Outcome,
}

pub fn run(args: &SampleEventArgs) -> anyhow::Result<ExitCode> {
    // Milliseconds, as Genesys writes them.
    let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond())?;
    let conversation = args.conversation.clone().unwrap_or_else(|| {
        let hex = format!("{:032x}", fastrand::u128(..));
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    });
    let event = match args.source {
        SampleSource::Attribute => {
            let key = format!("{}Metric_{}({now})", args.flow, args.metric);
            if let crate::attribute::Attribute::Invalid(reason) = crate::attribute::classify(&key) {
                anyhow::bail!("{key:?} is not a valid metric key: {reason}");
            }
            let attributes = serde_json::Map::from_iter([(key, serde_json::json!("1"))]);
            crate::event::attributes_event_json(&conversation, now, &attributes)
        }
        SampleSource::Outcome => crate::flow_outcome::flow_outcome_event_json(
            &conversation,
            &args.flow,
            &args.metric,
            &args.metric,
            now - SignedDuration::from_secs(2),
            now,
        ),
    };
    println!("{event}");
    Ok(ExitCode::SUCCESS)
}
