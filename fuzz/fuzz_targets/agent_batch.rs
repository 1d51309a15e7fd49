//! An agent `ObservationBatch`: protobuf bytes → prost decode → the proto
//! crate's conversion into the domain model → the stream's checks (node,
//! plausible time) → the detector's sightings, then a fixed audit event
//! joined against them.
#![no_main]

use credtrail_proto::model::Observation;
use credtrail_proto::pb::agent as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = pb::ObservationBatch::decode(data) else {
        return;
    };
    let obs: Vec<Observation> = batch
        .observations
        .into_iter()
        .filter_map(|o| match Observation::try_from(o) {
            Ok(o) => Some(o),
            Err(e) => {
                let _ = e.to_string();
                None
            }
        })
        // The stream refuses observations for another node than its own.
        .filter(|o| o.node == credtrail_fuzz::NODE)
        .collect();
    credtrail_fuzz::observe(&obs, &credtrail_fuzz::join_events());
});
