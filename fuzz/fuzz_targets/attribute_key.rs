//! Any attribute key: classifying it never panics, and a metric key's parts are its own text.
#![no_main]

use flow_metrics::attribute::{Attribute, classify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|key: &str| {
    if let Attribute::Metric(metric) = classify(key) {
        assert!(key.starts_with(metric.flow));
        assert!(key.contains(metric.metric));
    }
});
