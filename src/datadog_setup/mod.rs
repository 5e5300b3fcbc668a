//! `flow-metrics datadog apply`: what one deployment needs in DataDog, put there idempotently.
//! - `render` makes the dashboard, the monitors, the closed-hours downtime and the percentile
//!   settings from the importable files in `datadog/` and the deployment's settings;
//! - `hours` turns the centre's opening hours into the week's closed periods.

pub mod hours;
pub mod render;
