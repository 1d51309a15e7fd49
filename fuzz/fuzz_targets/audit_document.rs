//! An audit body in every input format: the first byte picks the reader
//! (the webhook's `parse_webhook_body`, or `parse_document` with each
//! `InputFormat`); the events read go through the time check and detection.
#![no_main]

use credtrail_aggregator::audit::{InputFormat, parse_document, parse_webhook_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let events = match sel % 6 {
        0 => match parse_webhook_body(body) {
            Ok(ev) => ev,
            Err(e) => {
                let _ = (e.label(), e.to_string());
                return;
            }
        },
        n => {
            let format = match n {
                1 => InputFormat::Native,
                2 => InputFormat::AksEventHubs,
                3 => InputFormat::AzureLogAnalytics,
                4 => InputFormat::GkeCloudLogging,
                _ => InputFormat::EksCloudwatch,
            };
            let parsed = parse_document(body, format);
            for e in &parsed.errors {
                let _ = (e.label(), e.to_string());
            }
            parsed.events
        }
    };
    credtrail_fuzz::judge_audit(&events);
});
