//! Agents speak only for their node (issue 8, Deliver 3), at the detection
//! layer: whatever an agent claims (its own address, a /0 pod CIDR, a pod
//! connecting from a public address), the policy's cluster ranges win. A
//! stolen token used from outside every cluster and trusted range stays
//! CT1547-002 "outside". (The stream itself refuses such claims first:
//! `tests/tests/e2e/stream_refusals.rs`.)

use crate::common::*;

use credtrail_aggregator::alert::SourceClass;

const SA: &str = "system:serviceaccount:shop:web";
const CLUSTER: &str = "cluster:\n  node_cidrs: [127.0.1.0/24]\n  pod_cidrs: [127.1.0.0/16]\n";

fn web_req(id: &str, at: i64, ip: &str) -> Req {
    Req::new(id, at, SA, ip).bound("jti-web", "node-a", "web-1", "pod-uid-web")
}

#[tokio::test]
async fn agent_claims_never_move_an_outside_source_into_the_cluster() {
    let app = app(CLUSTER);
    let hostile = Step::Obs(
        "node-a",
        vec![
            web_token_read(),
            // node-a claims a public address and the whole Internet as pod CIDR...
            node_info(
                "node-a",
                -30,
                &["127.0.1.1", "198.51.100.7"],
                &["0.0.0.0/0"],
            ),
            // ...and "sees" its pod connect from another public address.
            connect(
                "node-a",
                "node-a/x/1",
                -2,
                100,
                "web",
                "198.51.100.99",
                Some(WEB_POD),
            ),
        ],
    );
    let alerts = run(
        &app,
        vec![
            cluster(),
            hostile,
            Step::Audit(vec![
                web_req("s1", 0, "198.51.100.7"),
                web_req("s2", 1, "198.51.100.98"),
                web_req("s3", 2, "198.51.100.99"),
            ]),
        ],
    )
    .await;
    let outside: Vec<_> = alerts
        .iter()
        .filter(|a| a.rule == "CT1547-002")
        .map(|a| (a.audit_ids[0].as_str(), a.source_class))
        .collect();
    assert_eq!(
        outside,
        [
            ("s1", SourceClass::Outside),
            ("s2", SourceClass::Outside),
            ("s3", SourceClass::Outside)
        ],
        "{alerts:#?}"
    );
    assert!(
        alerts.iter().all(|a| a.rule != "CT1547-001"),
        "an outside use became an in-cluster one: {alerts:#?}"
    );
}

#[tokio::test]
async fn inside_the_cluster_ranges_agents_still_place_addresses() {
    // The gate only closes outside the ranges: node-b's address is still node-b.
    let app = app(CLUSTER);
    let alerts = run(
        &app,
        vec![
            cluster(),
            Step::Obs("node-a", vec![web_token_read()]),
            Step::Audit(vec![web_req("i1", 0, "127.0.1.2")]),
        ],
    )
    .await;
    assert_eq!(rules(&alerts), ["CT1547-001"], "{alerts:#?}");
    assert_eq!(alerts[0].source_class, SourceClass::OtherNode);
}
