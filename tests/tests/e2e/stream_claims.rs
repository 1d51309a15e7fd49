//! Agents speak only for their node, over the real mTLS stream (issue 8,
//! Deliver 3): the client certificate names the node, and
//! - a `NodeInfo` naming another node, or an observation for another node, is
//!   refused (named in the Ack), counted per node and shown in coverage;
//! - addresses and pod CIDRs outside the policy's cluster ranges (and any
//!   pod CIDR wider than a /12, such as 0.0.0.0/0) are dropped and counted,
//!   so a stolen token used from outside stays CT1547-002 "outside";
//! - observation ids are keyed by (node, id): one node cannot pre-claim
//!   another node's ids.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use credtrail_aggregator::alert::SourceClass;
use credtrail_aggregator::audit::AuditEvent;
use credtrail_aggregator::metrics::{Metrics, RefusalLabel};
use credtrail_aggregator::policy::Policy;
use credtrail_aggregator::state::AppState;
use credtrail_aggregator::store::query::coverage::coverage;
use credtrail_aggregator::store::{Store, Synchronous};
use credtrail_proto::model::{NodeInfo, Observation, ObservationEvent};
use credtrail_proto::pb::agent as pb;
use credtrail_tests::harness::{
    AgentListener, TestPki, batch_msg, channel, connect_observation, free_port, hello_msg,
    stored_observation_ids,
};
use serde_json::json;

const CLUSTER: &str = "cluster:\n  node_cidrs: [127.0.1.0/24]\n  pod_cidrs: [127.1.0.0/16]\n";

async fn setup(policy: &str) -> (TestPki, AppState, AgentListener) {
    let pki = TestPki::new();
    let store = Store::open(&pki.dir.path().join("db"), Synchronous::Normal).unwrap();
    let policy = Policy::from_yaml("test", policy).unwrap();
    let state = AppState::new(store, policy, Arc::new(Metrics::new())).unwrap();
    let listener = AgentListener::start(&pki, &state, free_port([127, 0, 0, 1])).await;
    (pki, state, listener)
}

fn node_info(node: &str, id: &str, name: &str, addrs: &[&str], cidrs: &[&str]) -> pb::Observation {
    Observation {
        id: id.into(),
        time: Utc::now(),
        node: node.into(),
        event: ObservationEvent::NodeInfo(NodeInfo {
            name: name.into(),
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            pod_cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
            agent_version: "test".into(),
            kernel_release: "6.18".into(),
            hooks: vec!["lsm_file_open".into()],
            blind_spots: vec![],
        }),
    }
    .into()
}

fn connect(node: &str, id: &str) -> pb::Observation {
    let mut o: pb::Observation = connect_observation(node, "x", 1).into();
    o.id = id.into();
    o
}

/// Sends a hello and one batch as `cert_node`; returns the Ack.
async fn send_batch(
    pki: &TestPki,
    listener: &AgentListener,
    cert_node: &str,
    epoch: u64,
    obs: Vec<pb::Observation>,
) -> pb::Ack {
    let mut client = pb::agent_service_client::AgentServiceClient::new(
        channel(pki, cert_node, listener.addr).await,
    );
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello_msg(cert_node, epoch)).await.unwrap();
    tx.send(batch_msg(cert_node, 1, obs)).await.unwrap();
    let mut inbound = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let ack = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match inbound.message().await.unwrap().unwrap().payload {
                Some(pb::aggregator_message::Payload::Ack(a)) => return a,
                _ => continue,
            }
        }
    })
    .await
    .expect("an ack within 10 s");
    drop(tx);
    ack
}

fn refused(state: &AppState, node: &str, reason: &str) -> u64 {
    state
        .metrics
        .agent_refused
        .get_or_create(&RefusalLabel {
            node: node.into(),
            reason: reason.into(),
        })
        .get()
}

async fn coverage_refusals(state: &AppState) -> Vec<(String, String, u64)> {
    state
        .store
        .read(|c| Ok(coverage(c, Utc::now(), 120.0).unwrap()))
        .await
        .unwrap()
        .agent_refusals
        .into_iter()
        .map(|r| (r.node, r.reason, r.count))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_info_or_observations_for_another_node_are_refused_and_counted() {
    let (pki, state, listener) = setup("").await;
    let ack = send_batch(
        &pki,
        &listener,
        "node-a",
        7,
        vec![
            // The certificate says node-a; this NodeInfo speaks for node-b.
            node_info("node-a", "node-a/x/1", "node-b", &["127.0.1.2"], &[]),
            // An observation for node-b.
            connect("node-b", "node-b/x/2"),
            connect("node-a", "node-a/x/3"),
        ],
    )
    .await;
    assert_eq!(ack.seq, 3);
    let seqs: Vec<u64> = ack.rejected.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2], "{:?}", ack.rejected);
    assert!(
        ack.rejected[0].reason.contains("\"node-b\""),
        "{:?}",
        ack.rejected
    );
    assert_eq!(refused(&state, "node-a", "node_mismatch"), 2);
    assert_eq!(
        coverage_refusals(&state).await,
        [("node-a".to_owned(), "node_mismatch".to_owned(), 2)]
    );
    assert_eq!(
        stored_observation_ids(&state.store, "node-a").await,
        ["node-a/x/3"]
    );
    assert!(
        stored_observation_ids(&state.store, "node-b")
            .await
            .is_empty()
    );
    let nets = state
        .store
        .read(|c| {
            Ok(c.query_row("SELECT count(*) FROM node_network", [], |r| {
                r.get::<_, i64>(0)
            })?)
        })
        .await
        .unwrap();
    assert_eq!(nets, 0, "no node network recorded for a refused NodeInfo");
    listener.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_outside_the_cluster_ranges_are_dropped_and_cannot_hide_a_stolen_token() {
    let (pki, state, listener) = setup(CLUSTER).await;
    let ack = send_batch(
        &pki,
        &listener,
        "node-a",
        7,
        vec![node_info(
            "node-a",
            "node-a/x/1",
            "node-a",
            &["127.0.1.1", "198.51.100.7"],
            &["127.1.1.0/24", "0.0.0.0/0"],
        )],
    )
    .await;
    assert!(ack.rejected.is_empty(), "{:?}", ack.rejected);
    assert_eq!(refused(&state, "node-a", "address_outside_cluster"), 1);
    assert_eq!(refused(&state, "node-a", "pod_cidr_too_wide"), 1);
    let cov = coverage_refusals(&state).await;
    assert_eq!(
        cov,
        [
            ("node-a".to_owned(), "address_outside_cluster".to_owned(), 1),
            ("node-a".to_owned(), "pod_cidr_too_wide".to_owned(), 1),
        ]
    );
    let (addrs, cidrs): (String, String) = state
        .store
        .read(|c| {
            Ok(c.query_row(
                "SELECT addresses, pod_cidrs FROM node_network WHERE node = 'node-a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(
        (addrs.as_str(), cidrs.as_str()),
        (r#"["127.0.1.1"]"#, r#"["127.1.1.0/24"]"#)
    );

    // A stolen node-a pod token used from the claimed address and from
    // elsewhere in the claimed /0: both stay outside.
    let events: Vec<AuditEvent> = ["198.51.100.7", "198.51.100.98"]
        .iter()
        .enumerate()
        .map(|(i, ip)| serde_json::from_value(stolen_token_use(&format!("st-{i}"), ip)).unwrap())
        .collect();
    let report = state
        .pipeline
        .ingest_audit_batch("webhook", events)
        .await
        .unwrap();
    // Both uses are CT1547-002 from outside (the second also shows the JTI
    // in two places, CT1547-003); nothing is placed on a node.
    let outside = report
        .alerts
        .iter()
        .filter(|a| a.rule == "CT1547-002")
        .count();
    assert_eq!(outside, 2, "{:#?}", report.alerts);
    assert!(
        report
            .alerts
            .iter()
            .all(|a| a.source_class == SourceClass::Outside),
        "{:#?}",
        report.alerts
    );
    listener.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_cannot_pre_claim_another_nodes_observation_ids() {
    let (pki, state, listener) = setup("").await;
    // node-b sends an observation under node-a's id (boot ids show in alerts).
    let ack = send_batch(
        &pki,
        &listener,
        "node-b",
        7,
        vec![connect("node-b", "node-a/boot/5")],
    )
    .await;
    assert_eq!(ack.rejected.len(), 1, "{:?}", ack.rejected);
    assert!(
        ack.rejected[0].reason.starts_with("id:"),
        "{:?}",
        ack.rejected
    );
    assert_eq!(refused(&state, "node-b", "id_prefix"), 1);
    // node-a's own observation with that id is new, and stored.
    let ack = send_batch(
        &pki,
        &listener,
        "node-a",
        9,
        vec![connect("node-a", "node-a/boot/5")],
    )
    .await;
    assert!(ack.rejected.is_empty());
    assert_eq!(
        stored_observation_ids(&state.store, "node-a").await,
        ["node-a/boot/5"]
    );
    listener.stop().await;
}

/// A bound token of pod shop/web-1 on node-a, used from `ip`.
fn stolen_token_use(audit_id: &str, ip: &str) -> serde_json::Value {
    let t = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata", "auditID": audit_id, "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/shop/secrets", "verb": "list",
        "user": {
            "username": "system:serviceaccount:shop:web",
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "extra": {
                "authentication.kubernetes.io/credential-id": ["JTI=jti-web"],
                "authentication.kubernetes.io/node-name": ["node-a"],
                "authentication.kubernetes.io/pod-name": ["web-1"],
                "authentication.kubernetes.io/pod-uid": ["pod-uid-web"]
            }
        },
        "sourceIPs": [ip], "userAgent": "curl/8.5.0",
        "objectRef": {"resource": "secrets", "namespace": "shop", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": t, "stageTimestamp": t,
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
    })
}
