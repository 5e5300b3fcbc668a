//! The apply itself: check both keys, survey what DataDog holds for the deployment, say what
//! changes, have DataDog validate each monitor to write, and (unless it is a dry run) change it.

use serde_json::Value;

use super::api::{ApiError, AppKey, DataDogApi, PERMISSIONS};
use super::render::{AssetSettings, Assets};
use super::survey::{Write, plan_dashboard, plan_downtimes, plan_monitors, plan_percentiles};
use crate::sink::datadog::ApiKey;
use crate::sink::datadog::validate::{KeyVerdict, ValidateError, validate_key};

/// Where and with which keys.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https://api.<site>`, or `DD_URL`.
    pub base_url: String,
    /// Where a browser opens DataDog (`https://app.datadoghq.eu`): links in the output.
    pub app_url: String,
    pub api_key: ApiKey,
    pub app_key: Option<AppKey>,
}

/// Why the apply stopped. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "no application key: set DD_APP_KEY to a DataDog application key (the deployment's API key \
         only sends data; dashboards, monitors, downtimes and metric settings need an application \
         key). Create one at {app_url}/organization-settings/application-keys (copy it when it is \
         shown, and leave it unscoped), by a user whose role has {permissions}, then run again"
    )]
    MissingAppKey { app_url: String, permissions: String },
    #[error(
        "DataDog refuses the deployment's API key on {base_url} ({status}: {message}): it is wrong, \
         revoked, or of another site. Run flow-metrics doctor --stack {stack}, which checks the key \
         and the site"
    )]
    ApiKeyRefused {
        base_url: String,
        stack: String,
        status: u16,
        message: String,
    },
    #[error("cannot check the API key: {0}")]
    Validate(#[from] ValidateError),
    #[error(
        "DataDog refuses the application key ({source}). Check DD_APP_KEY: it must be a key of \
         this site's organisation ({app_url}/organization-settings/application-keys), unscoped, \
         by a user whose role has {permissions}"
    )]
    AppKeyRefused {
        source: ApiError,
        app_url: String,
        permissions: String,
    },
    #[error(
        "{source}. Give the role of the application key's user that permission \
         ({app_url}/organization-settings/roles), or use an unscoped key of a user whose role has \
         it, then run apply again: it is safe to run twice, and goes on from where it stopped"
    )]
    Permission { source: ApiError, app_url: String },
    #[error(
        "DataDog finds monitor {name} of datadog/monitors.json invalid ({message}): nothing was \
         changed. Fix the file, install again (scripts/install.sh) and apply"
    )]
    InvalidMonitor { name: String, message: String },
    #[error("{0}. Apply is safe to run again: it goes on from where it stopped")]
    Api(ApiError),
}

impl ApplyError {
    fn from_api(error: ApiError, target: &Target) -> ApplyError {
        match error {
            ApiError::Forbidden { .. } => ApplyError::Permission {
                source: error,
                app_url: target.app_url.clone(),
            },
            other => ApplyError::Api(other),
        }
    }
}

/// What the apply did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Assets written (or that would be).
    pub changes: usize,
    /// The dashboard's address.
    pub dashboard_url: Option<String>,
    /// Percentiles DataDog cannot turn on yet: it has no point of the metric.
    pub pending: Vec<String>,
}

/// What a write came to.
enum Written {
    Done,
    /// The dashboard, at this path.
    Dashboard(String),
    /// Not possible yet, and why.
    NotYet(String),
}

/// Checks both keys, plans, and unless `dry_run` writes; `print` gets each line as it happens.
pub async fn apply(
    target: &Target,
    settings: &AssetSettings,
    assets: &Assets,
    dry_run: bool,
    print: &mut dyn FnMut(&str),
) -> Result<Applied, ApplyError> {
    let permissions = PERMISSIONS.join(", ");
    let Some(app_key) = &target.app_key else {
        return Err(ApplyError::MissingAppKey {
            app_url: target.app_url.clone(),
            permissions,
        });
    };
    match validate_key(&target.base_url, &target.api_key).await? {
        KeyVerdict::Valid => print("keys        API key: valid (GET /api/v1/validate)"),
        KeyVerdict::Refused { status, message } => {
            return Err(ApplyError::ApiKeyRefused {
                base_url: target.base_url.clone(),
                stack: settings.stack.clone(),
                status,
                message,
            });
        }
    }
    let api = DataDogApi::new(&target.base_url, &target.api_key, app_key).map_err(ApplyError::Api)?;
    let deployment_tag = settings.deployment_tag();
    let monitors = api
        .monitors_tagged(&deployment_tag)
        .await
        .map_err(|source| match source {
            ApiError::Forbidden { .. } => ApplyError::AppKeyRefused {
                source,
                app_url: target.app_url.clone(),
                permissions: permissions.clone(),
            },
            other => ApplyError::Api(other),
        })?;
    print("keys        application key: accepted (it reads monitors)");
    let stopped = |error| ApplyError::from_api(error, target);
    let mut plan = plan_monitors(assets, &monitors);
    plan.push(plan_dashboard(&api, settings, assets).await.map_err(stopped)?);
    plan.extend(plan_downtimes(&api, settings, assets).await.map_err(stopped)?);
    plan.extend(plan_percentiles(&api, assets).await.map_err(stopped)?);
    for step in &plan {
        if let Write::CreateMonitor(index) | Write::UpdateMonitor(_, index) = step.write {
            let monitor = &assets.monitors[index];
            match api.validate_monitor(&monitor.body).await {
                Err(ApiError::Refused { message, .. }) => {
                    return Err(ApplyError::InvalidMonitor {
                        name: monitor.name.clone(),
                        message,
                    });
                }
                other => other.map_err(stopped)?,
            }
        }
    }
    let mut applied = Applied::default();
    for step in plan {
        let written = if step.change.writes() && !dry_run {
            write(&api, assets, &step.write).await.map_err(stopped)?
        } else {
            Written::Done
        };
        let outcome = match &written {
            Written::NotYet(why) => {
                applied.pending.push(step.label.clone());
                format!("not yet: {why}")
            }
            _ => {
                applied.changes += usize::from(step.change.writes());
                step.change.describe(!dry_run)
            }
        };
        print(&format!("{:<11} {}: {outcome}", step.kind, step.label));
        let path = match written {
            Written::Dashboard(path) => Some(path),
            _ => step.path,
        };
        if let Some(path) = path {
            applied.dashboard_url = Some(format!("{}{path}", target.app_url));
        }
    }
    Ok(applied)
}

/// Does one write.
async fn write(api: &DataDogApi, assets: &Assets, write: &Write) -> Result<Written, ApiError> {
    let path_of = |dashboard: Value| {
        dashboard["url"]
            .as_str()
            .map_or(Written::Done, |path| Written::Dashboard(path.to_owned()))
    };
    match write {
        Write::CreateDashboard => return Ok(path_of(api.create_dashboard(&assets.dashboard).await?)),
        Write::UpdateDashboard(id) => return Ok(path_of(api.update_dashboard(id, &assets.dashboard).await?)),
        Write::CreateMonitor(index) => {
            api.create_monitor(&assets.monitors[*index].body).await?;
        }
        Write::UpdateMonitor(id, index) => {
            api.update_monitor(*id, &assets.monitors[*index].body).await?;
        }
        Write::DeleteMonitor(id) => api.delete_monitor(*id).await?,
        Write::CreateDowntime(index) => {
            api.create_downtime(&assets.downtimes[*index]).await?;
        }
        Write::CancelDowntime(id) => api.cancel_downtime(id).await?,
        Write::Percentiles { metric, tags, exists } => {
            if *exists {
                api.update_tag_configuration(metric, tags).await?;
            } else {
                match api.create_tag_configuration(metric, tags).await {
                    // Made meanwhile (DataDog's 409): update it instead.
                    Err(ApiError::Refused { status: 409, .. }) => {
                        api.update_tag_configuration(metric, tags).await?
                    }
                    // DataDog configures only a metric it has points of.
                    Err(ApiError::Refused {
                        status: 400, message, ..
                    }) if message.contains("does not exist") => {
                        return Ok(Written::NotYet(format!(
                            "DataDog has no point of it yet ({message}): once the deployment has \
                             sent one (Deploying, step 6), apply again"
                        )));
                    }
                    other => other?,
                }
            }
        }
        Write::Nothing => {}
    }
    Ok(Written::Done)
}
