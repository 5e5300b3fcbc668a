//! `flow-metrics datadog apply`: what one deployment needs in DataDog, put there idempotently.
//! - `render` makes the dashboard, the monitors, the closed-hours downtimes and the percentile
//!   settings from the importable files in `datadog/` and the deployment's settings;
//! - `hours` turns the centre's opening hours into the week's closed periods;
//! - `plan` decides what changes from what DataDog holds;
//! - `api` is DataDog's management API; `apply` checks the keys, plans, and writes.

pub mod api;
pub mod apply;
pub mod hours;
pub mod plan;
pub mod render;

pub use api::AppKey;
pub use apply::{Applied, ApplyError, Target, apply};
pub use hours::OpeningHours;
pub use render::{AssetSettings, Assets};
