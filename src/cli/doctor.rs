//! `flow-metrics doctor`: the deployed chain walked read-only (see `crate::doctor`), printed as
//! a checklist or as JSON, with the exit status scripts read: 0 when every check passes (or only
//! warns), 1 when one fails.

use std::process::ExitCode;

use anyhow::Context as _;
use jiff::SignedDuration;

use crate::doctor::{WalkOptions, walk};

use super::shared::ScanArgs;
use super::target::TargetArgs;

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// The deployment to walk (doctor needs one: --stack, or its table with --table).
    #[command(flatten)]
    target: TargetArgs,

    /// The stuck-key scan (it reads the whole ledger table).
    #[command(flatten)]
    scan: ScanArgs,

    /// Print the report as JSON, for scripts.
    #[arg(long)]
    json: bool,
}

/// A claim whose lease ended this long ago is stuck: `redrive`'s default `--stuck-for`.
const STUCK_FOR: SignedDuration = SignedDuration::from_hours(1);

pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let settings = args.target.settings().await?;
    let deployment = settings.deployment().context(
        "doctor walks a deployed stack: name it with --stack (cdk/settings.json's stackName, \
         GenesysFlowMetrics by default) and its --region",
    )?;
    let options = WalkOptions {
        segments: args.scan.segments(),
        stuck_for: STUCK_FOR,
    };
    let report = walk(deployment, settings.aws().await?, options).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(ExitCode::from(report.exit_status()))
}
