//! What DataDog holds for the deployment, read and set against what it needs: one planned step
//! per asset. Assets are found again by the deployment's tag (monitors:
//! `flow-metrics-deployment:…` with `flow-metrics-monitor:<name>`; the dashboard: that tag in its
//! description, its title preferred among copies; downtimes: their monitor tags), so that a
//! second apply updates rather than duplicates. Nothing of another deployment, or of anyone
//! else, is ever planned for removal: a monitor without our name tag is not ours, nor a copy
//! that differs from ours.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::api::{ApiError, DataDogApi};
use super::plan::{Change, compare, downtime_shape, tag_configuration};
use super::render::{AssetSettings, Assets, monitor_name};

/// One write to make.
pub enum Write {
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

/// One asset's planned step.
pub struct Planned {
    pub kind: &'static str,
    pub label: String,
    pub change: Change,
    pub write: Write,
    /// The dashboard's path, as DataDog holds it.
    pub path: Option<String>,
}

impl Planned {
    fn new(kind: &'static str, label: String, change: Change, write: Write) -> Planned {
        Planned {
            kind,
            label,
            change,
            write,
            path: None,
        }
    }
}

/// Each monitor of the deployment, against the monitors DataDog holds with its tag.
pub fn plan_monitors(assets: &Assets, held: &[Value]) -> Vec<Planned> {
    let mut by_name: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    // A monitor someone else tagged with the deployment (to mute it with ours) is not ours.
    for monitor in held {
        if let Some(name) = monitor_name(monitor) {
            by_name.entry(name).or_default().push(monitor);
        }
    }
    let mut plan = Vec::new();
    for (index, monitor) in assets.monitors.iter().enumerate() {
        let found = by_name.remove(monitor.name.as_str()).unwrap_or_default();
        let same = |held: &Value| compare(&monitor.body, held) == Change::Unchanged;
        let ours = found
            .iter()
            .copied()
            .find(|held| same(held))
            .or(found.first().copied());
        let (change, write) = match ours.and_then(|held| Some((held["id"].as_i64()?, held))) {
            None => (Change::Create, Write::CreateMonitor(index)),
            Some((id, held)) => match compare(&monitor.body, held) {
                Change::Unchanged => (Change::Unchanged, Write::Nothing),
                change => (change, Write::UpdateMonitor(id, index)),
            },
        };
        plan.push(Planned::new("monitor", monitor.name.clone(), change, write));
        let ours_id = ours.map_or(Value::Null, |held| held["id"].clone());
        for other in found.iter().filter(|other| other["id"] != ours_id) {
            let label = format!("{} (monitor {} bears its tags too)", monitor.name, other["id"]);
            plan.extend(if same(other) {
                // The same monitor twice: an apply stopped between a create and its answer.
                removal(other, label)
            } else {
                // A copy someone made and changed: theirs.
                Some(Planned::new(
                    "monitor",
                    format!("{label}, left as it is: it differs from ours"),
                    Change::Unchanged,
                    Write::Nothing,
                ))
            });
        }
    }
    // The deployment's monitors this version no longer makes.
    for (name, found) in by_name {
        plan.extend(
            found
                .iter()
                .filter_map(|extra| removal(extra, format!("{name} (no longer made)"))),
        );
    }
    plan
}

fn removal(monitor: &Value, label: String) -> Option<Planned> {
    let id = monitor["id"].as_i64()?;
    Some(Planned::new(
        "monitor",
        label,
        Change::Remove,
        Write::DeleteMonitor(id),
    ))
}

/// The dashboard, against the one whose description names the deployment (a clone made in
/// DataDog keeps the description; ours keeps its title too).
pub async fn plan_dashboard(
    api: &DataDogApi,
    settings: &AssetSettings,
    assets: &Assets,
) -> Result<Planned, ApiError> {
    let marker = format!("({})", settings.deployment_tag());
    let summaries = api.dashboards().await?;
    let marked: Vec<&Value> = summaries
        .iter()
        .filter(|summary| {
            summary["description"]
                .as_str()
                .is_some_and(|text| text.contains(&marker))
        })
        .collect();
    let ours = marked
        .iter()
        .find(|summary| summary["title"] == assets.dashboard["title"])
        .or(marked.first())
        .and_then(|summary| summary["id"].as_str());
    let label = format!("{:?}", assets.dashboard["title"].as_str().unwrap_or_default());
    Ok(match ours {
        None => Planned::new("dashboard", label, Change::Create, Write::CreateDashboard),
        Some(id) => {
            let held = api.dashboard(id).await?;
            // Unchanged, it is not written; its path still gives its address.
            Planned {
                path: held["url"].as_str().map(str::to_owned),
                ..Planned::new(
                    "dashboard",
                    label,
                    compare(&assets.dashboard, &held),
                    Write::UpdateDashboard(id.to_owned()),
                )
            }
        }
    })
}

/// The closed-hours downtimes, against the deployment's active or scheduled ones (matched by
/// schedule and message: a changed one is scheduled anew, then the old one cancelled).
pub async fn plan_downtimes(
    api: &DataDogApi,
    settings: &AssetSettings,
    assets: &Assets,
) -> Result<Vec<Planned>, ApiError> {
    let tags = json!([settings.deployment_tag()]);
    let mut held: Vec<(String, Value)> = api
        .downtimes()
        .await?
        .into_iter()
        .filter(|downtime| {
            let attributes = &downtime["attributes"];
            let live = !matches!(attributes["status"].as_str(), Some("canceled" | "ended"));
            attributes["monitor_identifier"]["monitor_tags"] == tags && live
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
        let part = match assets.downtimes.len() {
            1 => String::new(),
            parts => format!(" part {} of {parts}", index + 1),
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
        plan.push(Planned::new("downtime", format!("{label}{part}"), change, write));
    }
    for (id, _) in held {
        plan.push(Planned::new(
            "downtime",
            format!("{id} (hours since changed)"),
            Change::Remove,
            Write::CancelDowntime(id),
        ));
    }
    Ok(plan)
}

/// Percentiles of each distribution the dashboard reads them from, against its tag configuration.
pub async fn plan_percentiles(api: &DataDogApi, assets: &Assets) -> Result<Vec<Planned>, ApiError> {
    let mut plan = Vec::new();
    for wanted in &assets.percentiles {
        let found = api.tag_configuration(&wanted.metric).await?;
        let tags = tag_configuration(&wanted.tags, found.as_ref());
        let queried: Vec<&str> = wanted.tags.iter().map(String::as_str).collect();
        let label = format!("{} (queryable by {})", wanted.metric, queried.join(", "));
        plan.push(match (found.is_some(), tags) {
            (_, None) => Planned::new("percentiles", label, Change::Unchanged, Write::Nothing),
            (exists, Some(tags)) => Planned::new(
                "percentiles",
                label,
                if exists {
                    Change::Update(vec![format!("tags {}, include_percentiles", tags.join(" "))])
                } else {
                    Change::Create
                },
                Write::Percentiles {
                    metric: wanted.metric.clone(),
                    tags,
                    exists,
                },
            ),
        });
    }
    Ok(plan)
}
