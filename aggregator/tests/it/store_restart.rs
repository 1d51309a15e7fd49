//! Durability: alerts, inventories and detection state survive a restart;
//! retention deletes old history only.

use crate::common;

use std::sync::Arc;

use common::*;
use credtrail_aggregator::metrics::Metrics;
use credtrail_aggregator::policy::Policy;
use credtrail_aggregator::state::AppState;
use credtrail_aggregator::store::{Store, Synchronous, prune};
use serde_json::json;

fn open(db: &std::path::Path) -> AppState {
    AppState::new(
        Store::open(db, Synchronous::Full).unwrap(),
        Policy::default(),
        Arc::new(Metrics::new()),
    )
    .unwrap()
}

#[tokio::test]
async fn detection_state_and_alerts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agg.db");
    let sa = "system:serviceaccount:shop:web";
    {
        let app = open(&db);
        let steps = vec![
            cluster(),
            Step::Obs("node-a", vec![web_token_read()]),
            Step::Audit(vec![
                Req::new("s1", 0, sa, "127.200.0.1").cred("JTI=jti-web"),
                Req::new("s2", 1, "admin", "127.0.1.1").role(
                    "ClusterRole",
                    None,
                    "secret-reader",
                    json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
                ),
            ]),
        ];
        let alerts = run(&app, steps).await;
        assert_eq!(rules(&alerts), ["CT1547-002"]);
    }
    let app = open(&db);
    // The alert is still there.
    let n: i64 = app
        .store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM alerts", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(n, 1);
    // Agents' sightings and node addresses were restored: node-b is "another node",
    // node-a is expected (no claims in these events: the join uses the stored read).
    let alerts = run(
        &app,
        vec![Step::Audit(vec![
            Req::new("s3", 10, sa, "127.0.1.2").cred("JTI=jti-web"),
            Req::new("s4", 11, sa, "127.0.1.1").cred("JTI=jti-web"),
        ])],
    )
    .await;
    assert!(
        alerts
            .iter()
            .any(|a| a.rule == "CT1547-001" && a.audit_ids == ["s3"]),
        "{alerts:#?}"
    );
    assert!(
        !alerts
            .iter()
            .any(|a| a.audit_ids.last().unwrap() == "s4" && a.rule != "CT1547-003"),
        "{alerts:#?}"
    );
    // The learned role was restored: binding it cluster-wide is a high-privilege
    // grant (secrets of every namespace).
    let alerts = run(
        &app,
        vec![Step::Audit(vec![
            Req::new("s5", 20, "dave", "127.0.1.1").binding(
                "create",
                "ClusterRoleBinding",
                None,
                "read-secrets",
                ("ClusterRole", "secret-reader"),
                json!([{"kind": "User", "name": "eve"}]),
            ),
        ])],
    )
    .await;
    assert_eq!(rules(&alerts), ["CT1579-001"]);
    let why = alerts[0].details["why_high_privilege"].as_array().unwrap();
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(
        why[0]
            .as_str()
            .unwrap()
            .starts_with("reads secrets (rules[0]"),
        "{why:?}"
    );
    // A resent event is still a duplicate after the restart.
    let r = app
        .pipeline
        .ingest_audit_batch(
            "webhook",
            events(&[Req::new("s1", 0, sa, "127.200.0.1").cred("JTI=jti-web")]),
        )
        .await
        .unwrap();
    assert_eq!(r.duplicates, 1);
}

#[tokio::test]
async fn retention_deletes_old_history_and_keeps_state() {
    let app = common::app("");
    run(
        &app,
        vec![
            cluster(),
            Step::Audit(vec![Req::new("o1", 0, "bob", "127.200.0.4").binding(
                "create",
                "ClusterRoleBinding",
                None,
                "b",
                ("ClusterRole", "cluster-admin"),
                json!([{"kind": "User", "name": "bob"}]),
            )]),
        ],
    )
    .await;
    let now = t(0) + chrono::Duration::days(40);
    let pruned = app
        .store
        .write(move |tx| prune(tx, now, chrono::Duration::days(30)))
        .await
        .unwrap();
    assert_eq!((pruned.alerts, pruned.audit_events), (1, 1));
    let bindings: i64 = app
        .store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM bindings", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(bindings, 1, "inventory state is kept");
}
