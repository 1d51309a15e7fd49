//! An agent `NodeInfo`: protobuf bytes → prost decode → conversion →
//! the detector's node table (addresses, pod CIDRs), then a fixed audit
//! event resolved against it.
#![no_main]

use credtrail_proto::model::{NodeInfo, Observation, ObservationEvent};
use credtrail_proto::pb::agent as pb;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(info) = pb::NodeInfo::decode(data) else {
        return;
    };
    let info = match NodeInfo::try_from(info) {
        Ok(i) => i,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let obs = Observation {
        id: "fuzz-node-info".to_owned(),
        time: credtrail_fuzz::now(),
        node: credtrail_fuzz::NODE.to_owned(),
        event: ObservationEvent::NodeInfo(info),
    };
    credtrail_fuzz::observe(&[obs], &credtrail_fuzz::join_events());
});
