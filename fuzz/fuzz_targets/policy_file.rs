//! The policy file: YAML → `PolicyFile` → validation; an accepted policy
//! drives a detector over a fixed event.
#![no_main]

use credtrail_aggregator::policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::from_yaml("fuzz", text) {
        Ok(p) => credtrail_fuzz::judge_with_policy(p),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
