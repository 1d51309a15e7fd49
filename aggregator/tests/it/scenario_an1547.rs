//! AN1547 scenarios: audit events in the real format joined with agents'
//! observations, through the real pipeline (in-memory store).

use crate::common;

use common::*;
use credtrail_aggregator::alert::{Severity, SourceClass};

const SA: &str = "system:serviceaccount:shop:web";

/// node-a's agent saw web-1 (pid 100, ctr-web) read its token and connect from its pod IP.
fn web_pod_seen() -> Step {
    Step::Obs(
        "node-a",
        vec![
            web_token_read(),
            connect(
                "node-a",
                "node-a/b/2",
                -1,
                100,
                "web",
                "127.1.1.5",
                Some(WEB_POD),
            ),
        ],
    )
}

fn web_req(id: &str, at: i64, ip: &str) -> Req {
    Req::new(id, at, SA, ip).bound("jti-web", "node-a", "web-1", "pod-uid-web")
}

#[tokio::test]
async fn token_used_from_its_own_pod_does_not_alert() {
    let app = app("");
    let alerts = run(
        &app,
        vec![
            cluster(),
            web_pod_seen(),
            Step::Audit(vec![web_req("a1", 0, "127.1.1.5")]),
        ],
    )
    .await;
    assert!(alerts.is_empty(), "{alerts:#?}");
    // The use is in the credential inventory, classed as the expected pod.
    let class: String = app
        .store
        .read(|c| {
            Ok(c.query_row(
                "SELECT source_class FROM credential_uses WHERE credential_key = 'JTI=jti-web'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(class, "expected_pod");
}

#[tokio::test]
async fn token_used_from_another_node_alerts() {
    let app = app("");
    let alerts = run(
        &app,
        vec![
            cluster(),
            web_pod_seen(),
            Step::Audit(vec![web_req("a2", 0, "127.0.1.2").verb("list", "secrets")]),
        ],
    )
    .await;
    assert_eq!(rules(&alerts), ["CT1547-001"], "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.source_class, SourceClass::OtherNode);
    assert_eq!(a.severity, Severity::High, "secrets read from another node");
    assert_eq!(a.analytic, "AN1547");
    assert_eq!(a.credential_id.as_deref(), Some("JTI=jti-web"));
    assert!(
        a.expected
            .iter()
            .any(|e| e.kind == "node" && e.value == "node-a"),
        "{:?}",
        a.expected
    );
    assert!(
        a.expected
            .iter()
            .any(|e| e.kind == "pod" && e.value == "shop/web-1")
    );
    assert!(a.reason.contains("node node-b"), "{}", a.reason);
    assert_eq!(a.audit_ids, ["a2"]);
    // The read on node-a is the evidence of where it lives.
    assert!(
        a.evidence
            .iter()
            .any(|e| e.kind == "credential_read" && e.node == "node-a" && e.pid == Some(100))
    );
}

#[tokio::test]
async fn token_used_from_outside_the_cluster_is_critical() {
    let app = app("");
    let alerts = run(
        &app,
        vec![
            cluster(),
            web_pod_seen(),
            Step::Audit(vec![web_req("a3", 0, "127.200.0.1")]),
        ],
    )
    .await;
    assert_eq!(rules(&alerts), ["CT1547-002"]);
    assert_eq!(alerts[0].severity, Severity::Critical);
    assert_eq!(alerts[0].source_class, SourceClass::Outside);
}

#[tokio::test]
async fn forged_forwarded_for_entries_are_claims_only() {
    let app = app("");
    // The attacker prepends the pod's own address; the API server appends the real one.
    let forged = web_req("a4", 0, "").ips(&["127.1.1.5", "127.200.0.9"]);
    // And the reverse: an outside address claimed, the real hop is the pod.
    let honest = web_req("a5", 1, "").ips(&["127.200.0.9", "127.1.1.5"]);
    let alerts = run(
        &app,
        vec![cluster(), web_pod_seen(), Step::Audit(vec![forged, honest])],
    )
    .await;
    // The honest request then shows the same token in a second place.
    assert_eq!(rules(&alerts), ["CT1547-002", "CT1547-003"], "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.source_ip, Some("127.200.0.9".parse().unwrap()));
    assert_eq!(a.claimed_source_ips, ["127.1.1.5"]);
    assert_eq!(a.audit_ids, ["a4"]);
}

#[tokio::test]
async fn rescheduled_pod_on_a_node_whose_agent_saw_the_token_does_not_alert() {
    let app = app("");
    // Claims still name node-a, but node-b's agent saw the same token (JTI) read there.
    let moved = Step::Obs(
        "node-b",
        vec![token_read(
            "node-b",
            "node-b/b/1",
            -30,
            300,
            "web",
            Some(("shop", "web-1", "pod-uid-web2", "ctr-web2")),
            web_claims(),
        )],
    );
    let alerts = run(
        &app,
        vec![
            cluster(),
            web_pod_seen(),
            moved,
            Step::Audit(vec![web_req("a6", 0, "127.1.2.9")]),
        ],
    )
    .await;
    assert!(alerts.is_empty(), "{alerts:#?}");
    // Without node-b's sighting the same request alerts (control).
    let app2 = common::app("");
    let alerts = run(
        &app2,
        vec![
            cluster(),
            web_pod_seen(),
            Step::Audit(vec![web_req("a6", 0, "127.1.2.9")]),
        ],
    )
    .await;
    assert_eq!(rules(&alerts), ["CT1547-001"]);
    assert_eq!(alerts[0].source_class, SourceClass::OtherPod);
}

#[tokio::test]
async fn maintenance_window_silences_but_keeps_the_alert() {
    let policy = format!(
        "maintenance_windows:\n  - name: drain-node-b\n    start: \"{}\"\n    end: \"{}\"\n    nodes: [node-b]\n",
        t(-10).to_rfc3339(),
        t(100).to_rfc3339()
    );
    let app = app(&policy);
    let alerts = run(
        &app,
        vec![
            cluster(),
            web_pod_seen(),
            Step::Audit(vec![
                web_req("m1", 0, "127.0.1.2"),
                web_req("m2", 200, "127.0.1.2"),
            ]),
        ],
    )
    .await;
    // Inside the window: silenced; after it: raised.
    assert_eq!(
        alerts
            .iter()
            .map(|a| a.audit_ids[0].as_str())
            .collect::<Vec<_>>(),
        ["m2"]
    );
    let stored: Vec<(String, Option<String>)> = app
        .store
        .read(|c| {
            let mut st = c.prepare("SELECT json, suppressed_by FROM alerts ORDER BY time_ms")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].1.as_deref(), Some("maintenance:drain-node-b"));
    assert!(stored[0].0.contains("\"m1\""));
    assert_eq!(stored[1].1, None);
}

#[tokio::test]
async fn one_jti_from_two_places_alerts() {
    let app = app("");
    let alerts = run(
        &app,
        vec![
            cluster(),
            web_pod_seen(),
            Step::Audit(vec![
                web_req("j1", 0, "127.1.1.5"),
                web_req("j2", 30, "127.0.1.2"),
            ]),
        ],
    )
    .await;
    let r = rules(&alerts);
    assert!(r.contains(&"CT1547-003"), "{r:?}");
    let two = alerts.iter().find(|a| a.rule == "CT1547-003").unwrap();
    assert_eq!(two.audit_ids, ["j1", "j2"]);
    assert!(
        two.reason.contains("node node-a") && two.reason.contains("node node-b"),
        "{}",
        two.reason
    );
}

#[tokio::test]
async fn x509_kubeconfig_user_from_an_unexpected_address_alerts() {
    let app = app("");
    let fp = "5e".repeat(32);
    let seen = Step::Obs(
        "node-a",
        vec![kubeconfig_read(
            "node-a",
            "node-a/b/9",
            -100,
            500,
            &fp,
            "alice",
        )],
    );
    let req = Req::new("x1", 0, "alice", "127.200.0.3")
        .cred(&format!("X509SHA256={fp}"))
        .verb("get", "secrets");
    let ok = Req::new("x2", 1, "alice", "127.0.1.1").cred(&format!("X509SHA256={fp}"));
    let alerts = run(&app, vec![cluster(), seen, Step::Audit(vec![req, ok])]).await;
    assert_eq!(rules(&alerts), ["CT1547-002"], "{alerts:#?}");
    assert!(alerts[0].techniques.contains(&"T1552.004".to_string()));
    assert!(
        alerts[0]
            .expected
            .iter()
            .any(|e| e.value == "node-a" && e.basis == "agent saw it read")
    );
}

#[tokio::test]
async fn legacy_token_without_user_extra_is_joined_by_identity() {
    let app = app("");
    // A legacy secret token: no JTI, no pod claims.
    let seen = Step::Obs(
        "node-a",
        vec![token_read(
            "node-a",
            "node-a/b/3",
            -100,
            600,
            "legacy",
            None,
            serde_json::json!({"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:ops:legacy",
            "namespace": "ops", "service_account_name": "legacy", "secret_name": "legacy-token-abcde"}),
        )],
    );
    let user = "system:serviceaccount:ops:legacy";
    let home = Req::new("l1", 0, user, "127.0.1.1");
    let away = Req::new("l2", 1, user, "127.0.1.2");
    let alerts = run(&app, vec![cluster(), seen, Step::Audit(vec![home, away])]).await;
    assert_eq!(rules(&alerts), ["CT1547-001"], "{alerts:#?}");
    assert_eq!(alerts[0].credential_id, None);
    assert_eq!(alerts[0].audit_ids, ["l2"]);
}

#[tokio::test]
async fn right_node_but_a_process_that_never_read_the_token_alerts() {
    let app = app("");
    // curl (pid 200, host process) connects from node-a's address; only pid 100 read the token.
    let steps = vec![
        cluster(),
        web_pod_seen(),
        Step::Obs(
            "node-a",
            vec![
                connect("node-a", "node-a/b/7", 0, 200, "curl", "127.0.1.1", None),
                // kube-proxy read its own kubeconfig: its connection is explained, not blamed.
                kubeconfig_read(
                    "node-a",
                    "node-a/b/5",
                    -300,
                    250,
                    &"77".repeat(32),
                    "system:kube-proxy",
                ),
                connect(
                    "node-a",
                    "node-a/b/6",
                    0,
                    250,
                    "kube-proxy",
                    "127.0.1.1",
                    None,
                ),
            ],
        ),
        Step::Audit(vec![web_req("n1", 1, "127.0.1.1").verb("list", "secrets")]),
    ];
    let alerts = run(&app, steps).await;
    assert_eq!(rules(&alerts), ["CT1547-004"], "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.source_class, SourceClass::ExpectedNode);
    assert!(a.evidence.iter().any(|e| e.kind == "api_connect"
        && e.comm.as_deref() == Some("curl")
        && e.pid == Some(200)));
    assert!(a.reason.contains("curl (pid 200)"), "{}", a.reason);
    assert!(a.observation_ids.contains(&"node-a/b/7".to_string()));
    assert!(
        !a.observation_ids.contains(&"node-a/b/6".to_string()),
        "kube-proxy is not a candidate"
    );

    // The reader itself connecting from the node is fine.
    let app2 = common::app("");
    let alerts = run(
        &app2,
        vec![
            cluster(),
            web_pod_seen(),
            Step::Obs(
                "node-a",
                vec![connect(
                    "node-a",
                    "node-a/b/8",
                    0,
                    100,
                    "web",
                    "127.0.1.1",
                    Some(WEB_POD),
                )],
            ),
            Step::Audit(vec![web_req("n2", 1, "127.0.1.1")]),
        ],
    )
    .await;
    assert!(alerts.is_empty(), "{alerts:#?}");
}

#[tokio::test]
async fn learning_window_learns_then_judges() {
    let app = app("detection:\n  learning_window: 1h\ncluster:\n  node_cidrs: [127.0.1.0/24]\n");
    let user = "system:serviceaccount:batch:report";
    let steps = vec![Step::Audit(vec![
        Req::new("w1", 0, user, "127.0.1.7"), // first sighting: learning
        Req::new("w2", 600, user, "127.0.1.7"), // still learning
        Req::new("w3", 4000, user, "127.0.1.7"), // after the window, the learned address
        Req::new("w4", 4001, user, "127.0.1.8"), // after the window, a new node address
    ])];
    let alerts = run(&app, steps).await;
    assert_eq!(rules(&alerts), ["CT1547-001"], "{alerts:#?}");
    assert_eq!(alerts[0].audit_ids, ["w4"]);
    assert!(
        alerts[0]
            .expected
            .iter()
            .any(|e| e.kind == "baseline" && e.value == "127.0.1.7")
    );
}

#[tokio::test]
async fn suppression_with_owner_reason_and_expiry_is_kept_and_counted() {
    let policy = format!(
        "suppressions:\n  - id: sup-1\n    owner: alice@example.com\n    reason: pentest INC-42\n    created: \"{}\"\n    expires: \"{}\"\n    match:\n      rule: CT1547-002\n      username: \"system:serviceaccount:shop:*\"\n",
        t(-1000).to_rfc3339(),
        t(100).to_rfc3339()
    );
    let app = app(&policy);
    let alerts = run(
        &app,
        vec![
            cluster(),
            web_pod_seen(),
            Step::Audit(vec![
                web_req("s1", 0, "127.200.0.1"),
                web_req("s2", 200, "127.200.0.1"),
            ]),
        ],
    )
    .await;
    // s1 is suppressed; s2 is after the expiry.
    assert_eq!(
        alerts
            .iter()
            .map(|a| a.audit_ids[0].as_str())
            .collect::<Vec<_>>(),
        ["s2"]
    );
    let (owner, reason, hits): (String, String, i64) = app
        .store
        .read(|c| {
            Ok(c.query_row(
                "SELECT owner, reason, hits FROM suppressions WHERE id = 'sup-1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(
        (owner.as_str(), reason.as_str(), hits),
        ("alice@example.com", "pentest INC-42", 1)
    );
}

#[tokio::test]
async fn duplicate_events_are_judged_once() {
    let app = app("");
    let r = web_req("d1", 0, "127.200.0.1");
    let first = run(
        &app,
        vec![cluster(), web_pod_seen(), Step::Audit(vec![r.clone()])],
    )
    .await;
    assert_eq!(first.len(), 1);
    let report = app
        .pipeline
        .ingest_audit_batch("webhook", events(&[r]))
        .await
        .unwrap();
    assert_eq!(
        (report.accepted, report.duplicates, report.alerts.len()),
        (0, 1, 0)
    );
}

#[tokio::test]
async fn real_aks_capture_flags_the_public_ip_use_of_an_identity_allowed_only_in_the_cluster() {
    use credtrail_aggregator::audit::{InputFormat, parse_document};
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/k8s-audit/sysdiglabs__aks-audit-log/samples__event.json");
    let parsed = parse_document(&std::fs::read(p).unwrap(), InputFormat::AksEventHubs);
    assert_eq!(parsed.events.len(), 22);
    let app = app(
        "cluster:\n  node_cidrs: [172.31.0.0/16]\nidentities:\n  - username: nodeclient\n    cidrs: [172.31.0.0/16]\n",
    );
    let r = app
        .pipeline
        .ingest_audit_batch("replay", parsed.events)
        .await
        .unwrap();
    // Controllers inside the node range raise nothing; nodeclient from 52.141.212.165 is outside.
    assert!(!r.alerts.is_empty());
    for a in &r.alerts {
        assert_eq!(a.rule, "CT1547-002", "{a:#?}");
        assert_eq!(a.identity.username, "nodeclient");
        assert_eq!(a.source_ip, Some("52.141.212.165".parse().unwrap()));
        assert_eq!(a.severity, Severity::Critical);
    }
}

#[tokio::test]
async fn pod_token_used_by_another_pod_on_the_same_node_alerts_but_host_network_pods_do_not_move_the_node()
 {
    let app = app("");
    let other = Some(("shop", "other-1", "pod-uid-other", "ctr-other"));
    let proxy = Some(("kube-system", "kube-proxy-x", "pod-uid-proxy", "ctr-proxy"));
    let seen = Step::Obs(
        "node-a",
        vec![
            connect("node-a", "node-a/b/20", -5, 700, "sh", "127.1.1.77", other),
            // hostNetwork: kube-proxy connects from the node's own address.
            connect(
                "node-a",
                "node-a/b/21",
                -5,
                701,
                "kube-proxy",
                "127.0.1.1",
                proxy,
            ),
        ],
    );
    let alerts = run(
        &app,
        vec![
            cluster(),
            web_pod_seen(),
            seen,
            Step::Audit(vec![
                web_req("o1", 0, "127.1.1.77"),
                web_req("o2", 1, "127.0.1.1"),
            ]),
        ],
    )
    .await;
    let off: Vec<_> = alerts.iter().filter(|a| a.rule == "CT1547-001").collect();
    assert_eq!(off.len(), 1, "{alerts:#?}");
    assert_eq!(off[0].audit_ids, ["o1"]);
    assert_eq!(off[0].source_class, SourceClass::OtherPod);
    assert!(
        off[0].reason.contains("pod shop/other-1 on node node-a"),
        "{}",
        off[0].reason
    );
    // The node address stayed the node's: o2 is from the expected node, not "another pod".
    assert!(!alerts.iter().any(|a| a.audit_ids.last().unwrap() == "o2" && a.source_class == SourceClass::OtherPod));
}
