//! The query API's URL parameters: a query string decoded as axum's
//! `Query` does (serde_urlencoded into a map), then every parameter parser
//! the HTTP handlers use.
#![no_main]

use std::collections::HashMap;

use credtrail_aggregator::api::params::{self, ALERT_FILTER_KEYS};
use credtrail_aggregator::store::query::PageToken;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(q) = serde_urlencoded::from_bytes::<HashMap<String, String>>(data) else {
        return;
    };
    let _ = params::check_known(&q, &[ALERT_FILTER_KEYS, &["format", "limit"]]);
    let _ = params::alert_filter(&q).map_err(|e| e.to_string());
    let _ = params::credential_query(&q).map_err(|e| e.to_string());
    let _ = params::binding_query(&q).map_err(|e| e.to_string());
    let _ = params::number::<u64>(&q, "limit");
    let _ = params::number::<u32>(&q, "page_size");
    let _ = params::boolean(&q, "include_expired");
    if let Some(t) = q.get("page_token") {
        let _ = PageToken::decode(t).map(|p| p.encode());
    }
});
