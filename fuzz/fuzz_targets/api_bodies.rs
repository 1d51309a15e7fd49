//! The query API's request bodies: the first byte picks the HTTP JSON body
//! of `POST /api/v1/suppressions` or `POST /api/v1/alerts/{id}/triage`, or
//! the protobuf of gRPC `CreateSuppressionRequest`, `AlertFilter` or
//! `TriageAlertRequest`, each converted (and validated) as the
//! handlers do (on behalf of a fixed principal: who asks is the auth
//! layer's business, not the parser's).
#![no_main]

use credtrail_aggregator::api::http::parse_suppression_body;
use credtrail_aggregator::store::query::AlertFilter;
use credtrail_aggregator::store::query::suppressions::NewSuppression;
use credtrail_aggregator::triage::TriageUpdate;
use credtrail_proto::pb::query as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    match sel % 5 {
        0 => {
            let _ = parse_suppression_body(body, "fuzz".into()).map_err(|e| e.to_string());
        }
        1 => {
            if let Ok(r) = pb::CreateSuppressionRequest::decode(body) {
                let _ = NewSuppression::from_pb(r, "fuzz".into()).map_err(|e| e.to_string());
            }
        }
        2 => {
            if let Ok(f) = pb::AlertFilter::decode(body) {
                let _ = AlertFilter::try_from(f).map_err(|e| e.to_string());
            }
        }
        3 => {
            let _ = credtrail_aggregator::api::triage::parse_body(body).map_err(|e| e.to_string());
        }
        _ => {
            if let Ok(r) = pb::TriageAlertRequest::decode(body) {
                let _ = TriageUpdate::try_from(&r)
                    .map_err(|e| e.to_string())
                    .and_then(|u| u.validate().map_err(|e| e.to_string()));
            }
        }
    }
});
