//! genesys-flow-metrics: counts Genesys Cloud Architect flow metric attributes exactly once.
//!
//! Data flows through the modules in this order:
//! [`event`] (decode a Genesys EventBridge event) → [`attribute`] (read each key with the
//! metric grammar) → [`count`] (what counts: fresh, stale, invalid) → [`ledger`] (claim each
//! key once) → [`sink`] (deliver what was claimed). [`pipeline`] runs that flow for a batch of
//! events; [`input`] frames event files for replays, [`drain`] reads dead-letter queues and
//! buckets. The entry points are [`lambda`] (the function) and [`cli`] (the command line);
//! [`doctor`] walks a deployed stack for the command line's checklist;
//! [`config`] reads settings, each owned by the module that uses it.

pub mod attribute;
pub mod audit;
pub mod aws;
pub mod cli;
pub mod config;
pub mod count;
pub mod datadog_setup;
pub mod deployment;
pub mod doctor;
pub mod drain;
pub mod error_text;
pub mod event;
pub mod flow_outcome;
pub mod input;
pub mod key;
pub mod lambda;
pub mod ledger;
pub mod names;
pub mod pipeline;
pub mod reconcile;
pub mod redrive;
pub mod replay;
pub mod sink;
pub mod sites;
pub mod timing;
