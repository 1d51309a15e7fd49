//! Detection state is bounded: every map is driven past its cap (and past
//! its age limit) through the real pipeline, stays within it, and says so in
//! `/metrics`; what a bound lets go is taken back from the store when needed.

use crate::common;

use common::*;
use serde_json::json;

/// `credtrail_detector_state_entries{map="…"}` of the metrics text.
fn gauge(metrics: &str, map: &str) -> i64 {
    let key = format!("credtrail_detector_state_entries{{map=\"{map}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .unwrap_or_else(|| panic!("no gauge for {map} in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

/// `credtrail_detector_state_dropped_total{map="…",reason="…"}`, 0 when absent.
fn dropped(metrics: &str, map: &str, reason: &str) -> u64 {
    let key =
        format!("credtrail_detector_state_dropped_total{{map=\"{map}\",reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().unwrap())
}

const SMALL: &str = "detection:\n  jti_reuse_window: 10m\n  state:\n    max_identities: 20\n    max_credentials: 30\n    max_nodes: 3\n    max_pods: 10\n    max_rbac_objects: 5\n";

#[tokio::test]
async fn every_map_is_driven_past_its_cap_and_stays_within_it() {
    let app = app(SMALL);
    let mut steps = Vec::new();
    // 8 nodes (cap 3), each with pods connecting and reading tokens (cap 10).
    for n in 0..8 {
        let node: &'static str = Box::leak(format!("node-{n}").into_boxed_str());
        let mut obs = vec![node_info(
            node,
            n,
            &[&format!("127.0.{}.1", n + 1)],
            &[&format!("127.{}.0.0/24", n + 1)],
        )];
        for p in 0..6u32 {
            let uid = format!("uid-{n}-{p}");
            let pod = format!("p{p}");
            let ctr = format!("ctr-{n}-{p}");
            let podref = Some(("ns", pod.as_str(), uid.as_str(), ctr.as_str()));
            obs.push(connect(
                node,
                &format!("{node}/c{p}"),
                n,
                100 + p,
                "app",
                &format!("127.{}.0.{}", n + 1, p + 2),
                podref,
            ));
            obs.push(token_read(
                node,
                &format!("{node}/r{p}"),
                n,
                100 + p,
                "app",
                podref,
                claims(
                    Some(&format!("jti-read-{n}-{p}")),
                    "ns",
                    &format!("sa-{n}-{p}"),
                    None,
                    None,
                ),
            ));
        }
        steps.push(Step::Obs(node, obs));
    }
    // 100 identities (cap 20), 100 JTIs (cap 30), 12 roles and bindings (cap 5).
    let mut reqs = Vec::new();
    for i in 0..100 {
        reqs.push(
            Req::new(
                &format!("u{i}"),
                10 + i,
                &format!("system:serviceaccount:ci:job-{i}"),
                "127.0.1.1",
            )
            .cred(&format!("JTI=jti-{i}")),
        );
    }
    for i in 0..12 {
        reqs.push(
            Req::new(&format!("r{i}"), 200 + i, "admin", "127.0.1.1").role(
                "ClusterRole",
                None,
                &format!("role-{i}"),
                json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
            ),
        );
        let role = format!("role-{i}");
        reqs.push(
            Req::new(&format!("b{i}"), 300 + i, "admin", "127.0.1.1").binding(
                "create",
                "ClusterRoleBinding",
                None,
                &format!("binding-{i}"),
                ("ClusterRole", role.as_str()),
                json!([{"kind": "User", "name": format!("user-{i}")}]),
            ),
        );
    }
    steps.push(Step::Audit(reqs));
    run(&app, steps).await;
    let m = app.metrics.encode();
    for (map, cap) in [
        ("identities", 20),
        ("baselines", 20),
        ("jti_places", 30),
        ("roles", 5),
        ("bindings", 5),
        ("reads_by_key", 30),
        ("reads_by_user", 20),
        ("connects", 3),
        ("nodes", 3),
        ("pod_ips", 10),
        ("reader_procs", 10),
        ("reader_ctrs", 10),
    ] {
        let n = gauge(&m, map);
        assert!(n > 0 && n <= cap, "{map}: {n} entries, cap {cap}");
        assert!(
            dropped(&m, map, "cap") > 0,
            "{map}: nothing counted as evicted\n{m}"
        );
    }
    assert!(gauge(&m, "node_ips") <= 3 * 8);
    // Every map has its gauge, those with fixed caps too.
    for map in [
        "connect_sightings",
        "activity_before",
        "activity_open",
        "learned_nodes",
        "deleted_nodes",
        "api_endpoints",
        "minted",
        "incident_keys",
        "incidents",
    ] {
        assert!(gauge(&m, map) >= 0);
    }
}

#[tokio::test]
async fn tracked_jtis_expire_after_the_reuse_window_without_a_scan() {
    let app = app(SMALL);
    let reqs: Vec<Req> = (0..10)
        .map(|i| {
            Req::new(
                &format!("j{i}"),
                i,
                "system:serviceaccount:a:b",
                "127.0.1.1",
            )
            .cred(&format!("JTI=j-{i}"))
        })
        .collect();
    run(&app, vec![Step::Audit(reqs)]).await;
    assert_eq!(gauge(&app.metrics.encode(), "jti_places"), 10);
    // Eleven minutes later one more request: the ten JTIs are past the window.
    run(
        &app,
        vec![Step::Audit(vec![
            Req::new("late", 660, "system:serviceaccount:a:b", "127.0.1.1").cred("JTI=j-late"),
        ])],
    )
    .await;
    let m = app.metrics.encode();
    assert_eq!(gauge(&m, "jti_places"), 1);
    assert_eq!(dropped(&m, "jti_places", "age"), 10);
}

#[tokio::test]
async fn an_evicted_identity_keeps_its_learning_window_and_baseline() {
    // One identity fits in memory; the store keeps them all.
    let app = app(
        "detection:\n  learning_window: 1h\n  state:\n    max_identities: 1\ncluster:\n  node_cidrs: [127.0.1.0/24]\n",
    );
    let user = "system:serviceaccount:batch:report";
    let alerts = run(
        &app,
        vec![
            Step::Audit(vec![Req::new("w1", 0, user, "127.0.1.7")]), // learning
            // Another identity pushes it out of memory.
            Step::Audit(vec![Req::new(
                "o1",
                100,
                "system:serviceaccount:x:y",
                "127.0.1.9",
            )]),
            // Back after its window: the learned address is fine, a new one is judged.
            Step::Audit(vec![Req::new("w3", 4000, user, "127.0.1.7")]),
            Step::Audit(vec![Req::new("w4", 4001, user, "127.0.1.8")]),
        ],
    )
    .await;
    assert_eq!(rules(&alerts), ["CT1547-001"], "{alerts:#?}");
    assert_eq!(alerts[0].audit_ids, ["w4"]);
    assert!(dropped(&app.metrics.encode(), "identities", "cap") > 0);
}

/// Claims of a bound token of `shop/<sa>` with `exp` at `T0 + exp_s`.
fn expiring(jti: &str, sa: &str, exp_s: i64) -> serde_json::Value {
    let mut c = claims(Some(jti), "shop", sa, None, None);
    c["exp"] = json!(t(exp_s).timestamp());
    c
}

#[tokio::test]
async fn reads_expire_with_their_token_and_join_until_then() {
    // A reuse window longer than the grace, so a JTI's places go with its
    // token's expiry rather than with the window.
    let app = app("detection:\n  jti_reuse_window: 1h\n");
    let exp = 3600;
    let sa = "system:serviceaccount:shop:web";
    let legacy = claims(None, "shop", "legacy", None, None); // a Secret token: no exp
    let steps = vec![
        cluster(),
        Step::Obs(
            "node-a",
            vec![
                token_read(
                    "node-a",
                    "node-a/b/1",
                    -60,
                    100,
                    "web",
                    Some(WEB_POD),
                    expiring("jti-web", "web", exp),
                ),
                token_read("node-a", "node-a/b/2", -60, 101, "legacy", None, legacy),
                kubeconfig_read("node-a", "node-a/b/3", -60, 102, &"ef".repeat(32), "admin"),
            ],
        ),
    ];
    run(&app, steps).await;
    assert_eq!(gauge(&app.metrics.encode(), "reads_by_key"), 3);
    // The maps' clock moves 14 minutes past exp (another identity), then a
    // use made 30 s before exp arrives late: the read still joins it.
    let alerts = run(
        &app,
        vec![Step::Audit(vec![
            Req::new(
                "other",
                exp + 14 * 60,
                "system:serviceaccount:x:y",
                "127.0.1.1",
            ),
            Req::new("late", exp - 30, sa, "127.0.1.2").cred("JTI=jti-web"),
        ])],
    )
    .await;
    assert_eq!(rules(&alerts), ["CT1547-001"], "{alerts:#?}");
    assert!(
        alerts[0]
            .evidence
            .iter()
            .any(|e| e.kind == "credential_read" && e.node == "node-a"),
        "{:#?}",
        alerts[0].evidence
    );
    let m = app.metrics.encode();
    assert_eq!(gauge(&m, "reads_by_key"), 3);
    assert_eq!(gauge(&m, "jti_places"), 1);
    // Past exp + the 15-minute grace the token's read and its JTI's places
    // go (counted as expired); the legacy token and the kubeconfig stay.
    // A use of the expired token is refused by the API server: its audit
    // event (401) names no user and raises nothing.
    let alerts = run(
        &app,
        vec![Step::Audit(vec![
            Req::new(
                "tick",
                exp + 15 * 60 + 1,
                "system:serviceaccount:x:y",
                "127.0.1.1",
            ),
            Req::new("refused", exp + 15 * 60 + 2, "", "127.0.1.2").code(401),
        ])],
    )
    .await;
    assert!(alerts.is_empty(), "{alerts:#?}");
    let m = app.metrics.encode();
    assert_eq!(gauge(&m, "reads_by_key"), 2, "{m}");
    assert_eq!(dropped(&m, "reads_by_key", "expired"), 1);
    assert_eq!(dropped(&m, "reads_by_key", "age"), 0);
    assert_eq!(gauge(&m, "jti_places"), 0);
    assert_eq!(dropped(&m, "jti_places", "expired"), 1);
    // The legacy token still places its identity on node-a, a week later too
    // (age limit 7 days, refreshed by this read).
    let alerts = run(
        &app,
        vec![Step::Audit(vec![Req::new(
            "legacy-use",
            exp + 3600,
            "system:serviceaccount:shop:legacy",
            "127.0.1.2",
        )])],
    )
    .await;
    assert_eq!(rules(&alerts), ["CT1547-001"], "{alerts:#?}");
}

#[tokio::test]
async fn a_restart_does_not_reload_reads_of_expired_tokens() {
    use credtrail_aggregator::metrics::Metrics;
    use credtrail_aggregator::policy::Policy;
    use credtrail_aggregator::state::AppState;
    use credtrail_aggregator::store::{Store, Synchronous};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agg.db");
    let open = || {
        AppState::new(
            Store::open(&db, Synchronous::Full).unwrap(),
            Policy::default(),
            Arc::new(Metrics::new()),
        )
        .unwrap()
    };
    {
        let app = open();
        let o = vec![
            token_read(
                "node-a",
                "node-a/b/1",
                -60,
                100,
                "web",
                Some(WEB_POD),
                expiring("jti-old", "web", 3600),
            ),
            token_read(
                "node-a",
                "node-a/b/2",
                -60,
                101,
                "api",
                None,
                expiring("jti-new", "api", 30 * 86_400),
            ),
        ];
        run(&app, vec![cluster(), Step::Obs("node-a", o)]).await;
        assert_eq!(gauge(&app.metrics.encode(), "reads_by_key"), 2);
        // Two hours later a kubeconfig is read: jti-old is past exp + grace.
        let k = kubeconfig_read("node-a", "node-a/b/3", 7200, 102, &"ef".repeat(32), "admin");
        run(&app, vec![Step::Obs("node-a", vec![k])]).await;
        let m = app.metrics.encode();
        assert_eq!(gauge(&m, "reads_by_key"), 2);
        assert_eq!(dropped(&m, "reads_by_key", "expired"), 1);
    }
    // At start the store's clock is its newest read (not the wall clock: a
    // log tail catching up judges older events): jti-old is not loaded.
    let app = open();
    assert_eq!(gauge(&app.metrics.encode(), "reads_by_key"), 2);
    // The inventory keeps the expired token's read (history until retention).
    let n: i64 = app
        .store
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM credential_reads WHERE expires_ms IS NOT NULL",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(n, 2);
    // The surviving token's read still joins: its use from node-b alerts.
    let alerts = run(
        &app,
        vec![Step::Audit(vec![
            Req::new("u", 10, "system:serviceaccount:shop:api", "127.0.1.2").cred("JTI=jti-new"),
        ])],
    )
    .await;
    assert_eq!(rules(&alerts), ["CT1547-001"], "{alerts:#?}");
}

#[tokio::test]
async fn a_planted_read_with_a_past_exp_does_not_wipe_a_jtis_places() {
    // The real token of shop/web-1 was never seen read; its uses are. A
    // process on node-b plants a file naming the same JTI with an `exp`
    // long past and reads it: that read expires at once, but the JTI's
    // places (used after that `exp`) stay, so the stolen token used from
    // node-b still raises CT1547-003.
    let app = app("detection:\n  jti_reuse_window: 1h\n");
    let sa = "system:serviceaccount:shop:web";
    let legit =
        Req::new("legit", 0, sa, "127.1.1.5").bound("victim", "node-a", "web-1", "pod-uid-web");
    let planted = token_read(
        "node-b",
        "node-b/b/1",
        10,
        666,
        "sh",
        None,
        expiring("victim", "web", -7200),
    );
    let alerts = run(
        &app,
        vec![
            cluster(),
            Step::Audit(vec![legit]),
            Step::Obs("node-b", vec![planted]),
            Step::Audit(vec![Req::new(
                "tick",
                20,
                "system:serviceaccount:x:y",
                "127.0.1.1",
            )]),
            Step::Audit(vec![Req::new("stolen", 30, sa, "127.0.1.2").bound(
                "victim",
                "node-a",
                "web-1",
                "pod-uid-web",
            )]),
        ],
    )
    .await;
    let m = app.metrics.encode();
    assert_eq!(
        dropped(&m, "reads_by_key", "expired"),
        1,
        "the planted read went"
    );
    assert_eq!(dropped(&m, "jti_places", "expired"), 0, "the places stayed");
    assert!(rules(&alerts).contains(&"CT1547-003"), "{alerts:#?}");
}
