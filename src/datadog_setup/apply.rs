//! The apply itself: check both keys, read what DataDog holds for the stack, say what changes,
//! and (unless it is a dry run) change it. Assets are found again by the stack's tag (monitors:
//! `flow-metrics-stack:<stack>` and `flow-metrics-monitor:<name>`; the dashboard: that tag in
//! its description; downtimes: their monitor tags), so that a second apply updates rather than
//! duplicates, and nothing of another stack or of anyone else is touched.

use std::collections::BTreeMap;

use serde_json::Value;

use super::api::{ApiError, AppKey, DataDogApi, PERMISSIONS};
use super::plan::{Change, compare, downtime_shape, tag_configuration};
use super::render::{AssetSettings, Assets, monitor_name};
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
         key). Create one at {app_url}/organization-settings/application-keys, by a user whose \
         role has {permissions} (or scoped to them), then run again"
    )]
    MissingAppKey { app_url: String, permissions: String },
    #[error(
        "DataDog refuses the deployment's API key on {base_url} ({status}: {message}): it is wrong, \
         revoked, or of another site. Run flow-metrics doctor --stack <stack>, which checks the key \
         and the site"
    )]
    ApiKeyRefused {
        base_url: String,
        status: u16,
        message: String,
    },
    #[error("cannot check the API key: {0}")]
    Validate(#[from] ValidateError),
    #[error(
        "DataDog refuses the application key ({source}). Check DD_APP_KEY: it must be a key of \
         this site's organisation ({app_url}/organization-settings/application-keys), by a user \
         whose role has {permissions}, or scoped to them"
    )]
    AppKeyRefused {
        source: ApiError,
        app_url: String,
        permissions: String,
    },
    #[error(
        "{source}. Give the application key's user (or its scopes) that permission at \
         {app_url}/organization-settings/application-keys, then run apply again: it is safe to \
         run twice, and goes on from where it stopped"
    )]
    Permission { source: ApiError, app_url: String },
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
    /// One line per asset: `monitor     outcome-failures: updated (query)`.
    pub lines: Vec<String>,
    /// Assets written (or that would be).
    pub changes: usize,
    /// The dashboard's address.
    pub dashboard_url: Option<String>,
}

/// One planned write.
enum Write {
    CreateDashboard,
    UpdateDashboard(String),
    CreateMonitor(usize),
    UpdateMonitor(i64, usize),
    DeleteMonitor(i64),
    CreateDowntime(usize),
    CancelDowntime(String),
    Percentiles {
        metric: String,
        tags: Vec<String>,
        exists: bool,
    },
    Nothing,
}

struct Planned {
    kind: &'static str,
    label: String,
    change: Change,
    write: Write,
    /// The dashboard's path, as DataDog holds it.
    path: Option<String>,
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
                status,
                message,
            });
        }
    }
    let api = DataDogApi::new(&target.base_url, &target.api_key, app_key).map_err(ApplyError::Api)?;
    let stack_tag = settings.stack_tag();
    let monitors = api
        .monitors_tagged(&stack_tag)
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
    let mut plan = plan_monitors(assets, &monitors);
    plan.extend(
        plan_dashboard(&api, settings, assets)
            .await
            .map_err(|error| ApplyError::from_api(error, target))?,
    );
    plan.extend(
        plan_downtimes(&api, &stack_tag, settings, assets)
            .await
            .map_err(|error| ApplyError::from_api(error, target))?,
    );
    for wanted in &assets.percentiles {
        let found = api
            .tag_configuration(&wanted.metric)
            .await
            .map_err(|error| ApplyError::from_api(error, target))?;
        let tags = tag_configuration(&wanted.tags, found.as_ref());
        let queried: Vec<&str> = wanted.tags.iter().map(String::as_str).collect();
        plan.push(Planned {
            kind: "percentiles",
            label: format!("{} (queryable by {})", wanted.metric, queried.join(", ")),
            change: match (&found, &tags) {
                (_, None) => Change::Unchanged,
                (None, Some(_)) => Change::Create,
                (Some(_), Some(tags)) => {
                    Change::Update(vec![format!("tags {}, include_percentiles", tags.join(" "))])
                }
            },
            path: None,
            write: match tags {
                None => Write::Nothing,
                Some(tags) => Write::Percentiles {
                    metric: wanted.metric.clone(),
                    tags,
                    exists: found.is_some(),
                },
            },
        });
    }
    let mut applied = Applied::default();
    for step in plan {
        let mut url = None;
        if step.change.writes() {
            applied.changes += 1;
            if !dry_run {
                url = write(&api, assets, &step.write)
                    .await
                    .map_err(|error| ApplyError::from_api(error, target))?;
            }
        }
        let url = url.or(step.path);
        let line = format!(
            "{:<11} {}: {}",
            step.kind,
            step.label,
            step.change.describe(!dry_run)
        );
        print(&line);
        applied.lines.push(line);
        if let Some(url) = url {
            applied.dashboard_url = Some(format!("{}{url}", target.app_url));
        }
    }
    Ok(applied)
}

/// Each monitor of the deployment, against the stack's monitors DataDog holds (by their name tag).
fn plan_monitors(assets: &Assets, held: &[Value]) -> Vec<Planned> {
    let mut by_name: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for monitor in held {
        let name = monitor_name(monitor).unwrap_or_default();
        by_name.entry(name.to_owned()).or_default().push(monitor);
    }
    let mut plan = Vec::new();
    for (index, monitor) in assets.monitors.iter().enumerate() {
        let found = by_name.remove(&monitor.name).unwrap_or_default();
        let (change, write) = match found
            .first()
            .and_then(|found| Some((found["id"].as_i64()?, *found)))
        {
            None => (Change::Create, Write::CreateMonitor(index)),
            Some((id, found)) => match compare(&monitor.body, found) {
                Change::Unchanged => (Change::Unchanged, Write::Nothing),
                change => (change, Write::UpdateMonitor(id, index)),
            },
        };
        plan.push(Planned {
            kind: "monitor",
            label: monitor.name.clone(),
            change,
            write,
            path: None,
        });
        // The same monitor twice (an apply interrupted between a create and its answer): one is kept.
        plan.extend(
            found
                .iter()
                .skip(1)
                .filter_map(|extra| removal(extra, &format!("{} (a duplicate)", monitor.name))),
        );
    }
    // The stack's monitors this version no longer makes.
    for (name, found) in by_name {
        plan.extend(
            found
                .iter()
                .filter_map(|extra| removal(extra, &format!("{name} (no longer made)"))),
        );
    }
    plan
}

fn removal(monitor: &Value, label: &str) -> Option<Planned> {
    Some(Planned {
        kind: "monitor",
        label: label.to_owned(),
        change: Change::Remove,
        write: Write::DeleteMonitor(monitor["id"].as_i64()?),
        path: None,
    })
}

/// The dashboard, against the one whose description names the stack.
async fn plan_dashboard(
    api: &DataDogApi,
    settings: &AssetSettings,
    assets: &Assets,
) -> Result<Vec<Planned>, ApiError> {
    let marker = format!("({})", settings.stack_tag());
    let summaries = api.dashboards().await?;
    let ours = summaries
        .iter()
        .filter(|summary| {
            summary["description"]
                .as_str()
                .is_some_and(|text| text.contains(&marker))
        })
        .find_map(|summary| summary["id"].as_str());
    let label = format!("{:?}", assets.dashboard["title"].as_str().unwrap_or_default());
    let (change, write, path) = match ours {
        None => (Change::Create, Write::CreateDashboard, None),
        Some(id) => {
            let found = api.dashboard(id).await?;
            let path = found["url"].as_str().map(str::to_owned);
            (
                compare(&assets.dashboard, &found),
                Write::UpdateDashboard(id.to_owned()),
                path,
            )
        }
    };
    Ok(vec![Planned {
        kind: "dashboard",
        label,
        change,
        write,
        path,
    }])
}

/// The closed-hours downtimes, against the stack's active or scheduled ones (matched by schedule
/// and message: a changed one is scheduled anew, then the old one cancelled).
async fn plan_downtimes(
    api: &DataDogApi,
    stack_tag: &str,
    settings: &AssetSettings,
    assets: &Assets,
) -> Result<Vec<Planned>, ApiError> {
    let mut held: Vec<(String, Value)> = api
        .downtimes()
        .await?
        .into_iter()
        .filter(|downtime| {
            let attributes = &downtime["attributes"];
            let ours = attributes["monitor_identifier"]["monitor_tags"] == serde_json::json!([stack_tag]);
            let live = !matches!(attributes["status"].as_str(), Some("canceled" | "ended"));
            ours && live
        })
        .filter_map(|downtime| {
            Some((
                downtime["id"].as_str()?.to_owned(),
                downtime["attributes"].clone(),
            ))
        })
        .collect();
    let label = format!(
        "closed hours ({}, {})",
        settings.hours.text, settings.hours.time_zone
    );
    let mut plan = Vec::new();
    for (index, downtime) in assets.downtimes.iter().enumerate() {
        let part = if assets.downtimes.len() > 1 {
            format!(" part {} of {}", index + 1, assets.downtimes.len())
        } else {
            String::new()
        };
        let same = held
            .iter()
            .position(|(_, found)| downtime_shape(found) == downtime_shape(downtime));
        let (change, write) = match same {
            Some(at) => {
                held.remove(at);
                (Change::Unchanged, Write::Nothing)
            }
            None => (Change::Create, Write::CreateDowntime(index)),
        };
        plan.push(Planned {
            kind: "downtime",
            label: format!("{label}{part}"),
            change,
            write,
            path: None,
        });
    }
    for (id, _) in held {
        plan.push(Planned {
            kind: "downtime",
            label: format!("{id} (hours since changed)"),
            change: Change::Remove,
            write: Write::CancelDowntime(id),
            path: None,
        });
    }
    Ok(plan)
}

/// Does one write; answers the dashboard's path when it wrote the dashboard.
async fn write(api: &DataDogApi, assets: &Assets, write: &Write) -> Result<Option<String>, ApiError> {
    let path_of = |dashboard: Value| dashboard["url"].as_str().map(str::to_owned);
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
                    other => other?,
                }
            }
        }
        Write::Nothing => {}
    }
    Ok(None)
}
