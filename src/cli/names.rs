//! `flow-metrics names`: ids looked up as the function would (the fixed map, then the Genesys
//! API), waiting for each answer, to check the OAuth client and its permissions.

use std::process::ExitCode;

use crate::names::NameKind;

use super::target::TargetArgs;

#[derive(Debug, clap::Args)]
pub struct NamesArgs {
    /// A flow id to name (repeatable).
    #[arg(long = "flow")]
    flows: Vec<String>,

    /// A milestone id to name (repeatable).
    #[arg(long = "milestone")]
    milestones: Vec<String>,

    /// An outcome id to name (repeatable).
    #[arg(long = "outcome")]
    outcomes: Vec<String>,

    /// The deployment whose names settings and Genesys client to check (default: this shell's
    /// FLOW_METRICS_NAMES, GENESYS_*).
    #[command(flatten)]
    target: TargetArgs,
}

pub async fn run(args: &NamesArgs) -> anyhow::Result<ExitCode> {
    let settings = args.target.settings().await?;
    let config = settings.names_config()?;
    let directory = settings.genesys_directory(&config).await?;
    let asked = [
        (NameKind::Flow, &args.flows),
        (NameKind::Milestone, &args.milestones),
        (NameKind::Outcome, &args.outcomes),
    ];
    let mut unnamed = 0;
    for (kind, ids) in asked {
        for id in ids {
            let answer = match (config.fixed.get(id), &directory) {
                (Some(name), _) => Ok(format!("{name} (FLOW_METRICS_NAMES)")),
                (None, Some(directory)) => directory
                    .look_up(kind, id)
                    .await
                    .map(|name| name.to_string())
                    .map_err(|error| error.to_string()),
                (None, None) => Err(
                    "not in FLOW_METRICS_NAMES, and the Genesys API is not configured \
                                     (GENESYS_REGION and an OAuth client)"
                        .to_owned(),
                ),
            };
            match answer {
                Ok(name) => println!("{kind} {id}: {name}"),
                Err(why) => {
                    unnamed += 1;
                    println!("{kind} {id}: not named: {why}");
                }
            }
        }
    }
    Ok(if unnamed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
