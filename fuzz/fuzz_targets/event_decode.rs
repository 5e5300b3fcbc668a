//! Any bytes as an EventBridge event: decoding never panics, and every metric key is read.
#![no_main]

use flow_metrics::attribute::classify;
use flow_metrics::event::{Event, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(Event::Attributes(event)) = decode(text)
    {
        for key in &event.attribute_keys {
            let _ = classify(key);
        }
    }
});
