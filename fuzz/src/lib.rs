//! What the fuzz targets share: each target feeds outside bytes through the
//! same functions the listeners use, then through the checks that guard
//! detection, then (when accepted) through the detector itself, so that a
//! panic anywhere downstream of a parser is found too.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use credtrail_aggregator::audit::AuditEvent;
use credtrail_aggregator::detect::{Changes, Detector};
use credtrail_aggregator::plausible;
use credtrail_aggregator::policy::Policy;
use credtrail_proto::model::Observation;

/// A fixed receive time (2026-01-01T00:00:00Z): runs are reproducible.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).expect("a valid time")
}

/// The node the fuzzed agent stream belongs to.
pub const NODE: &str = "node-a";

/// A credential use from 10.0.0.5 at [`now`] (a pod or node address the
/// fuzzed agent input may claim), for the agent-data join.
const JOIN_EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"fuzz-join","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets","verb":"list","user":{"username":"system:serviceaccount:default:app","uid":"u1","groups":["system:serviceaccounts"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=abc"],"authentication.kubernetes.io/node-name":["node-b"]}},"sourceIPs":["10.0.0.5"],"userAgent":"curl","objectRef":{"resource":"secrets","namespace":"default","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-01-01T00:00:00.000000Z","stageTimestamp":"2026-01-01T00:00:00.010000Z"}"#;

/// The audit events the agent targets judge after taking in their input.
pub fn join_events() -> Vec<AuditEvent> {
    static E: OnceLock<Vec<AuditEvent>> = OnceLock::new();
    E.get_or_init(|| {
        vec![
            credtrail_aggregator::audit::parse_event(JOIN_EVENT.as_bytes())
                .expect("the join event parses"),
        ]
    })
    .clone()
}

/// Runs a detector with an accepted policy over the join event.
pub fn judge_with_policy(p: Policy) {
    let mut det = Detector::new(Arc::new(p));
    let mut ch = Changes::default();
    for ev in join_events() {
        let _ = det.judge(&ev, &mut ch);
    }
}

fn policy() -> Arc<Policy> {
    static P: OnceLock<Arc<Policy>> = OnceLock::new();
    P.get_or_init(|| Arc::new(Policy::default())).clone()
}

/// Judges audit events the way the webhook does: implausible times are
/// refused, the rest go through detection. A fresh detector per input keeps
/// runs independent.
pub fn judge_audit(events: &[AuditEvent]) {
    let mut det = Detector::new(policy());
    let mut ch = Changes::default();
    for ev in events {
        if plausible::check_audit_event(ev, now()).is_ok() {
            let _ = det.judge(ev, &mut ch);
        }
    }
}

/// Takes in observations the way the agent stream does (plausible times
/// only), then judges `events` against them.
///
/// When `aggregator/src/agents/validate.rs` (`validate_node_info`,
/// `validate_observation`) lands, call it here next to the time check, with
/// [`NODE`] as the certificate's node and the fuzz policy, so the fuzzed
/// observations pass through exactly what the stream runs.
pub fn observe(obs: &[Observation], events: &[AuditEvent]) {
    let mut det = Detector::new(policy());
    let mut ch = Changes::default();
    for o in obs {
        if plausible::check_observation(o, now()).is_ok() {
            det.observe(o, &mut ch);
        }
    }
    for ev in events {
        if plausible::check_audit_event(ev, now()).is_ok() {
            let _ = det.judge(ev, &mut ch);
        }
    }
}
