//! The query API's request bodies: the first byte picks the HTTP JSON body
//! of `POST /api/v1/suppressions`, or the protobuf of gRPC
//! `CreateSuppressionRequest` or `AlertFilter`, each converted as the
//! handlers do (on behalf of a fixed principal: who asks is the auth
//! layer's business, not the parser's).
#![no_main]

use credtrail_aggregator::api::http::parse_suppression_body;
use credtrail_aggregator::store::query::AlertFilter;
use credtrail_aggregator::store::query::suppressions::NewSuppression;
use credtrail_proto::pb::query as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    match sel % 3 {
        0 => {
            let _ = parse_suppression_body(body, "fuzz".into()).map_err(|e| e.to_string());
        }
        1 => {
            if let Ok(r) = pb::CreateSuppressionRequest::decode(body) {
                let _ = NewSuppression::from_pb(r, "fuzz".into()).map_err(|e| e.to_string());
            }
        }
        _ => {
            if let Ok(f) = pb::AlertFilter::decode(body) {
                let _ = AlertFilter::try_from(f).map_err(|e| e.to_string());
            }
        }
    }
});
