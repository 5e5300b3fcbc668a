//! `flow-metrics datadog apply`: the deployment's dashboard, monitors, closed-hours downtimes
//! and percentiles put in DataDog (see `crate::datadog_setup`), from the deployed stack's
//! settings and the operator's application key (`DD_APP_KEY`).

use std::process::ExitCode;

use anyhow::Context as _;

use crate::datadog_setup::{AppKey, AssetSettings, OpeningHours, Target, apply};
use crate::deployment::DeploymentError;
use crate::sites::datadog_sites;

use super::target::TargetArgs;

#[derive(Debug, clap::Args)]
pub struct DatadogArgs {
    #[command(subcommand)]
    command: DatadogCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DatadogCommand {
    /// Create or update the deployment's dashboard, monitors, closed-hours downtimes and
    /// percentiles in DataDog; a second apply changes nothing.
    ///
    /// Takes the site, API key, tags and metric names from the deployed function, the opening
    /// hours and notification handles (datadogNotify) from the stack, and an application key from
    /// DD_APP_KEY. Exit status: 0 when DataDog holds everything (or, with --dry-run, when the plan
    /// was printed), 2 on bad usage, 3 when it stopped (each reason says what to do).
    Apply(ApplyArgs),
}

#[derive(Debug, clap::Args)]
struct ApplyArgs {
    /// The deployment (apply needs one: --stack, or its table with --table).
    #[command(flatten)]
    target: TargetArgs,

    /// Print what would change, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(args: DatadogArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DatadogCommand::Apply(args) => run_apply(args).await,
    }
}

async fn run_apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let settings = args.target.settings().await?;
    let deployment = settings.deployment().context(
        "datadog apply sets DataDog up for a deployed stack: name it with --stack \
         (cdk/settings.json's stackName, GenesysFlowMetrics by default) and its --region",
    )?;
    let hours = deployment
        .output("OpeningHours")
        .ok_or_else(|| DeploymentError::MissingOutput {
            stack: deployment.stack.clone(),
            output: "OpeningHours",
        })?;
    let datadog = settings.datadog().await?;
    let assets_settings = AssetSettings {
        stack: deployment.stack.clone(),
        region: deployment.region.clone(),
        account: deployment.account.clone(),
        metrics: datadog.metrics.clone(),
        static_tags: datadog.static_tags.clone(),
        self_metrics: datadog.self_metrics,
        // The stack outputs its reconciliation's log group only with reconcileSchedule on.
        reconcile: deployment.output("ReconcileLogGroupName").is_some(),
        notify: deployment
            .output("DataDogNotify")
            .map(|handles| handles.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        hours: OpeningHours::from_output(hours)?,
    };
    let today = jiff::tz::Offset::UTC.to_datetime(jiff::Timestamp::now()).date();
    let assets = assets_settings.render(today)?;
    let target = Target {
        app_url: app_url(&datadog.base_url),
        base_url: datadog.base_url,
        api_key: datadog.api_key,
        app_key: std::env::var("DD_APP_KEY").ok().as_deref().and_then(AppKey::new),
    };
    if args.dry_run {
        println!("dry run: nothing is changed");
    }
    let applied = apply(&target, &assets_settings, &assets, args.dry_run, &mut |line| {
        println!("{line}")
    })
    .await?;
    match (args.dry_run, applied.changes) {
        (true, 0) => println!("DataDog holds everything already"),
        (true, changes) => println!("{changes} change(s) to make: run without --dry-run to make them"),
        (false, 0) => println!("DataDog held everything already: nothing changed"),
        (false, changes) => println!("{changes} change(s) made"),
    }
    if let Some(url) = &applied.dashboard_url {
        println!("dashboard: {url}");
    }
    if !applied.pending.is_empty() {
        eprintln!(
            "note: percentiles are not on yet for {}: apply again once the deployment has sent its \
             first point of each",
            applied.pending.join("; ")
        );
    }
    if assets_settings.notify.is_empty() {
        eprintln!(
            "note: the monitors notify no one: set datadogNotify in cdk/settings.json (e.g. \
             \"@slack-contact-centre\"), deploy, and apply again"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a browser opens DataDog for the API at `base_url`: the site's address, or the base URL
/// itself for one that is no site's (`DD_URL`).
fn app_url(base_url: &str) -> String {
    datadog_sites()
        .ok()
        .into_iter()
        .flatten()
        .find(|site| base_url == format!("https://api.{}", site.site))
        .map_or_else(|| base_url.to_owned(), |site| format!("https://{}", site.browser))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_open_the_sites_address_in_a_browser() {
        assert_eq!(app_url("https://api.datadoghq.eu"), "https://app.datadoghq.eu");
        assert_eq!(
            app_url("https://api.us3.datadoghq.com"),
            "https://us3.datadoghq.com"
        );
        assert_eq!(app_url("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
    }
}
