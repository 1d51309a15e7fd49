//! Context for the responder over the real HTTP listener: an AN1547 alert's
//! activity from its source (repeats folded in, requests before the alert,
//! bounded), the credential inventory one click away, and what dedupe must
//! never hide (a new source, an escalation).

use crate::api_support;
use crate::common;

use api_support::Api;
use common::*;
use credtrail_aggregator::policy::Policy;
use hyper::StatusCode;
use serde_json::Value;

const SA: &str = "system:serviceaccount:shop:web";
const OUT: &str = "127.200.0.1";

fn web(id: &str, at: i64, ip: &str) -> Req {
    Req::new(id, at, SA, ip).bound("jti-web", "node-a", "web-1", "pod-uid-web")
}

fn in_ns(mut r: Req, ns: &str) -> Req {
    r.namespace = Some(ns.into());
    r
}

async fn alerts(api: &Api) -> Vec<Value> {
    let v = api.get_json("/api/v1/alerts", StatusCode::OK).await;
    v["alerts"].as_array().unwrap().clone()
}

fn by_source<'a>(list: &'a [Value], ip: &str) -> Vec<&'a Value> {
    list.iter().filter(|a| a["source_ip"] == ip).collect()
}

#[tokio::test]
async fn repeats_extend_one_alert_and_are_listed_in_its_detail() {
    let api = Api::start_with(Policy::default()).await;
    let raised = run(
        &api.state,
        vec![
            cluster(),
            Step::Obs("node-a", vec![web_token_read()]),
            Step::Audit(vec![in_ns(
                web("a1", 10, OUT).verb("list", "secrets"),
                "shop",
            )]),
            Step::Audit(vec![
                in_ns(web("a2", 11, OUT).verb("get", "secrets"), "kube-system"),
                in_ns(web("a3", 12, OUT).verb("get", "secrets"), "kube-system"),
                in_ns(web("a4", 13, OUT).verb("get", "secrets"), "kube-system"),
            ]),
            Step::Audit(vec![in_ns(
                web("a5", 14, OUT).verb("create", "pods").code(403),
                "shop",
            )]),
        ],
    )
    .await;
    assert_eq!(
        rules(&raised),
        ["CT1547-002"],
        "one alert, the rest folded in"
    );

    let list = alerts(&api).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let a = &list[0];
    assert_eq!(
        a["activity_summary"],
        "then: list secrets in shop 200, get secrets in kube-system 200 ×3, create pods in shop 403"
    );
    assert_eq!(a["activity_count"], 5);
    assert_eq!(a["occurrences"], 5);
    assert!(a.get("activity").is_none(), "the list carries no entries");

    let id = a["id"].as_str().unwrap();
    let d = api
        .get_json(&format!("/api/v1/alerts/{id}"), StatusCode::OK)
        .await;
    let act = d["activity"].as_array().unwrap();
    let ids: Vec<_> = act
        .iter()
        .map(|e| e["audit_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a1", "a2", "a3", "a4", "a5"]);
    assert_eq!(act[0]["phase"], "alert");
    assert_eq!(act[4]["phase"], "after");
    assert_eq!(act[4]["response_code"], 403);
    assert_eq!(act[4]["decision"], "deny");
    assert_eq!(act[1]["namespace"], "kube-system");
    assert_eq!(d["activity_truncated"], 0);
}

#[tokio::test]
async fn a_new_source_or_a_higher_severity_raises_a_new_alert() {
    let api = Api::start_with(Policy::default()).await;
    let raised = run(
        &api.state,
        vec![
            cluster(),
            Step::Obs("node-a", vec![web_token_read()]),
            // Denied from outside: high.
            Step::Audit(vec![web("b1", 10, OUT).verb("list", "secrets").code(403)]),
            // Allowed from the same source: critical, an escalation.
            Step::Audit(vec![web("b2", 11, OUT).verb("list", "secrets")]),
            // The same again: folded into the critical one.
            Step::Audit(vec![web("b3", 12, OUT).verb("list", "secrets")]),
            // Denied again: lower than the open critical alert, folded.
            Step::Audit(vec![web("b4", 13, OUT).verb("delete", "pods").code(403)]),
            // Another source: new alert (with CT1547-003, one JTI two places).
            Step::Audit(vec![web("b5", 14, "127.200.0.2").verb("list", "secrets")]),
            // Another node of the cluster: new alert.
            Step::Audit(vec![web("b6", 15, "127.0.1.2").verb("list", "secrets")]),
            Step::Audit(vec![web("b7", 16, "127.0.1.2").verb("list", "secrets")]),
        ],
    )
    .await;
    let got: Vec<_> = raised
        .iter()
        .map(|a| {
            (
                a.rule.as_str(),
                a.severity.as_str(),
                a.audit_ids.last().unwrap().as_str(),
            )
        })
        .collect();
    assert!(got.contains(&("CT1547-002", "high", "b1")), "{got:?}");
    assert!(
        got.contains(&("CT1547-002", "critical", "b2")),
        "escalation: {got:?}"
    );
    assert!(
        got.iter().any(|g| g.2 == "b5" && g.0 == "CT1547-002"),
        "new source: {got:?}"
    );
    assert!(
        got.iter().any(|g| g.2 == "b6" && g.0 == "CT1547-001"),
        "new node: {got:?}"
    );
    assert!(
        !got.iter().any(|g| matches!(g.2, "b3" | "b4" | "b7")),
        "folded: {got:?}"
    );

    let list = alerts(&api).await;
    let crit = list
        .iter()
        .find(|a| a["severity"] == "critical" && a["source_ip"] == OUT)
        .unwrap();
    assert_eq!(crit["activity_count"], 3, "{crit}");
    assert_eq!(crit["occurrences"], 3);
    let high = list
        .iter()
        .find(|a| a["severity"] == "high" && a["source_ip"] == OUT)
        .unwrap();
    assert_eq!(
        high["activity_count"], 1,
        "the escalation took over: {high}"
    );
    let node_b: Vec<_> = by_source(&list, "127.0.1.2")
        .into_iter()
        .filter(|a| a["rule"] == "CT1547-001")
        .collect();
    assert_eq!(node_b.len(), 1, "{list:?}");
    assert_eq!(node_b[0]["occurrences"], 2, "b7 folded into b6's alert");
}

#[tokio::test]
async fn requests_before_the_alert_are_included() {
    // A client certificate nobody was known to hold: its first uses from
    // outside raise nothing (not a service account); once an agent reports
    // the kubeconfig read on node-a, the next use from there alerts, and the
    // earlier requests from that address are its "before".
    let api = Api::start_with(Policy::default()).await;
    let cert = "ef".repeat(32);
    let cred = format!("X509SHA256={cert}");
    let u = |id: &str, at: i64| Req::new(id, at, "alice", OUT).cred(&cred);
    let raised = run(
        &api.state,
        vec![
            cluster(),
            Step::Audit(vec![
                u("c1", 0).verb("list", "namespaces"),
                u("c2", 5).verb("list", "secrets"),
            ]),
            Step::Obs(
                "node-a",
                vec![kubeconfig_read(
                    "node-a",
                    "node-a/b/k1",
                    6,
                    300,
                    &cert,
                    "alice",
                )],
            ),
            Step::Audit(vec![u("c3", 10).verb("get", "secrets")]),
        ],
    )
    .await;
    assert_eq!(rules(&raised), ["CT1547-002"], "{raised:?}");
    let list = alerts(&api).await;
    assert_eq!(
        list[0]["activity_summary"],
        "before: list namespaces in default 200, list secrets in default 200; then: get secrets in default 200"
    );
    let id = list[0]["id"].as_str().unwrap();
    let d = api
        .get_json(&format!("/api/v1/alerts/{id}"), StatusCode::OK)
        .await;
    let phases: Vec<_> = d["activity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["before", "before", "alert"]);
}

#[tokio::test]
async fn activity_is_bounded_per_alert() {
    let api = Api::start_with(Policy::default()).await;
    let mut steps = vec![cluster(), Step::Obs("node-a", vec![web_token_read()])];
    // 150 requests in 30 distinct groups (namespaces) from one source.
    let reqs: Vec<Req> = (0..150)
        .map(|i| {
            in_ns(
                web(&format!("d{i}"), 10 + i, OUT).verb("get", "secrets"),
                &format!("ns{}", i % 30),
            )
        })
        .collect();
    steps.push(Step::Audit(reqs));
    let raised = run(&api.state, steps).await;
    assert_eq!(rules(&raised), ["CT1547-002"]);
    let list = alerts(&api).await;
    let a = &list[0];
    assert_eq!(a["activity_count"], 150);
    let s = a["activity_summary"].as_str().unwrap();
    assert!(
        s.ends_with(", +70 other"),
        "16 groups of 5 shown, 70 in others: {s}"
    );
    let id = a["id"].as_str().unwrap();
    let d = api
        .get_json(&format!("/api/v1/alerts/{id}"), StatusCode::OK)
        .await;
    assert_eq!(d["activity"].as_array().unwrap().len(), 100);
    assert_eq!(d["activity_truncated"], 50);
}

#[tokio::test]
async fn the_credential_inventory_is_linked_and_holds_no_secret() {
    let api = Api::start_with(Policy::default()).await;
    run(
        &api.state,
        vec![
            cluster(),
            Step::Obs("node-a", vec![web_token_read()]),
            Step::Audit(vec![
                web("e0", 5, "127.0.1.1"),
                web("e1", 10, OUT).verb("list", "secrets"),
            ]),
        ],
    )
    .await;
    let list = alerts(&api).await;
    let a = list.iter().find(|a| a["rule"] == "CT1547-002").unwrap();
    let link = &a["credential_inventory"];
    assert_eq!(link["credential_id"], "JTI=jti-web");
    assert_eq!(link["path"], "/api/v1/credentials/JTI%3Djti-web/inventory");
    let inv = api
        .get_json(link["path"].as_str().unwrap(), StatusCode::OK)
        .await;
    assert_eq!(inv["credential_id"], "JTI=jti-web");
    let read = &inv["reads"][0];
    assert_eq!(read["node"], "node-a");
    assert_eq!(read["pod"], "shop/web-1");
    assert_eq!(read["comm"], "web");
    assert_eq!(read["tgid"], 100);
    let uses = inv["uses"].as_array().unwrap();
    let out = uses.iter().find(|u| u["source_ip"] == OUT).unwrap();
    assert_eq!(out["count"], 1);
    assert_eq!(
        out["user_agents"][0]["user_agent"],
        "kubectl/v1.32.0 (linux/amd64) kubernetes/abc"
    );
    let home = uses.iter().find(|u| u["source_ip"] == "127.0.1.1").unwrap();
    assert_eq!(home["node"], "node-a");
    let rules: Vec<_> = inv["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["rule"].clone())
        .collect();
    assert!(rules.contains(&"CT1547-002".into()), "{rules:?}");
    // Only ids and hashes: the token's own SHA-256 (from the agent) never appears.
    assert!(!inv.to_string().contains(&"ab".repeat(32)), "{inv}");

    // Unknown, empty-ish and oversized ids.
    let (s, _) = api.get("/api/v1/credentials/JTI%3Dnope/inventory").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let long = "x".repeat(600);
    let (s, _) = api
        .get(&format!("/api/v1/credentials/{long}/inventory"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Authenticated like every /api/v1 route.
    let (s, _, _) = api
        .request_with(
            hyper::Method::GET,
            link["path"].as_str().unwrap(),
            None,
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an1579_alerts_show_the_roles_rules_what_is_high_and_who_else_holds_it() {
    let api = Api::start_with(Policy::default()).await;
    let subj = |u: &str| serde_json::json!([{"kind": "User", "name": u, "apiGroup": "rbac.authorization.k8s.io"}]);
    let role_rules = serde_json::json!([
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}
    ]);
    let raised = run(
        &api.state,
        vec![Step::Audit(vec![
            Req::new("r1", 0, "admin", "127.0.1.9").role(
                "ClusterRole",
                None,
                "secret-admin",
                role_rules,
            ),
            Req::new("r2", 10, "admin", "127.0.1.9").binding(
                "create",
                "ClusterRoleBinding",
                None,
                "ops-secrets",
                ("ClusterRole", "secret-admin"),
                subj("carol"),
            ),
            Req::new("r3", 20, "mallory", "203.0.113.7").binding(
                "create",
                "ClusterRoleBinding",
                None,
                "backdoor",
                ("ClusterRole", "secret-admin"),
                subj("mallory"),
            ),
            // A built-in role: its rules come from the bootstrap policy, and
            // the bootstrap's own binding holds it too.
            Req::new("r4", 30, "mallory", "203.0.113.7").binding(
                "create",
                "ClusterRoleBinding",
                None,
                "backdoor-2",
                ("ClusterRole", "cluster-admin"),
                subj("mallory"),
            ),
        ])],
    )
    .await;
    assert!(
        rules(&raised).iter().all(|r| r.starts_with("CT1579")),
        "{raised:?}"
    );
    let list = alerts(&api).await;
    let by_binding = |n: &str| {
        list.iter()
            .find(|a| a["details"]["binding"]["name"] == n)
            .unwrap_or_else(|| panic!("no alert for {n}: {list:?}"))
    };
    let ep = &by_binding("backdoor")["details"]["effective_permissions"];
    assert_eq!(ep["role"]["name"], "secret-admin");
    assert_eq!(ep["role"]["known_from"], "learned");
    assert_eq!(ep["rules"].as_array().unwrap().len(), 2);
    let high = ep["high_privilege_rules"].as_array().unwrap();
    assert_eq!(high.len(), 1, "{ep}");
    assert_eq!(high[0]["index"], 1);
    assert!(!high[0]["reasons"].as_array().unwrap().is_empty());
    let holders = ep["other_holders"].as_array().unwrap();
    assert_eq!(holders.len(), 1, "{ep}");
    assert_eq!(holders[0]["name"], "ops-secrets");
    assert_eq!(holders[0]["subjects"][0]["name"], "carol");

    let ep = &by_binding("backdoor-2")["details"]["effective_permissions"];
    assert_eq!(ep["role"]["known_from"], "bootstrap");
    assert_eq!(ep["high_privilege_rules"][0]["index"], 0);
    let holders = ep["other_holders"].as_array().unwrap();
    assert!(
        holders.iter().any(|h| h["name"] == "cluster-admin"
            && h["known_from"] == "bootstrap"
            && h["subjects"][0]["name"] == "system:masters"),
        "{ep}"
    );
    // And over gRPC, as part of details_json.
    let mut c = api.grpc_client().await;
    let id = by_binding("backdoor")["id"].as_str().unwrap().to_owned();
    let a = c
        .get_alert(credtrail_proto::pb::query::GetAlertRequest { id })
        .await
        .unwrap()
        .into_inner();
    let d: Value = serde_json::from_str(&a.details_json).unwrap();
    assert_eq!(d["effective_permissions"]["role"]["name"], "secret-admin");
    assert_eq!(
        a.credential_inventory.unwrap().credential_id,
        "user:mallory"
    );
}

#[tokio::test]
async fn grpc_carries_activity_and_the_inventory() {
    let api = Api::start_with(Policy::default()).await;
    run(
        &api.state,
        vec![
            cluster(),
            Step::Obs("node-a", vec![web_token_read()]),
            Step::Audit(vec![
                web("g1", 10, OUT).verb("list", "secrets"),
                web("g2", 11, OUT).verb("get", "secrets"),
            ]),
        ],
    )
    .await;
    let mut c = api.grpc_client().await;
    use credtrail_proto::pb::query as pb;
    let page = c
        .list_alerts(pb::ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.alerts.len(), 1);
    let a = &page.alerts[0];
    assert_eq!(a.activity_count, 2);
    assert_eq!(a.occurrences, 2);
    assert_eq!(
        a.activity_summary.as_deref(),
        Some("then: list secrets in default 200, get secrets in default 200")
    );
    assert!(a.activity.is_empty(), "the list carries no entries");
    let one = c
        .get_alert(pb::GetAlertRequest { id: a.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.activity.len(), 2);
    assert_eq!(one.activity[1].audit_id, "g2");
    assert_eq!(one.activity[1].phase, "after");
    let inv = c
        .get_credential_inventory(pb::GetCredentialInventoryRequest {
            credential_id: "JTI=jti-web".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let v: Value = serde_json::from_str(&inv.inventory_json).unwrap();
    assert_eq!(v["reads"][0]["node"], "node-a");
    let e = c
        .get_credential_inventory(pb::GetCredentialInventoryRequest {
            credential_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn activity_survives_a_restart_and_keeps_extending_the_open_alert() {
    use credtrail_aggregator::metrics::Metrics;
    use credtrail_aggregator::state::AppState;
    use credtrail_aggregator::store::{Store, Synchronous};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agg.db");
    let open = || {
        AppState::new(
            Store::open(&db, Synchronous::Full).unwrap(),
            Policy::default(),
            std::sync::Arc::new(Metrics::new()),
        )
        .unwrap()
    };
    let id = {
        let app = open();
        let raised = run(
            &app,
            vec![
                cluster(),
                Step::Obs("node-a", vec![web_token_read()]),
                Step::Audit(vec![web("h1", 10, OUT).verb("list", "secrets")]),
                Step::Audit(vec![web("h2", 11, OUT).verb("get", "secrets")]),
            ],
        )
        .await;
        assert_eq!(rules(&raised), ["CT1547-002"]);
        raised[0].id.clone()
    };
    let app = open();
    let raised = run(
        &app,
        vec![Step::Audit(vec![
            web("h3", 70, OUT).verb("delete", "secrets"),
        ])],
    )
    .await;
    assert!(
        raised.is_empty(),
        "folded into the open alert after the restart: {raised:?}"
    );
    let key = id.clone();
    let v = app
        .store
        .read(move |c| Ok(credtrail_aggregator::store::activity::detail(c, &key)))
        .await
        .unwrap()
        .unwrap()
        .expect("activity stored");
    assert_eq!(v.activity_count, 3);
    assert_eq!(v.occurrences, 3);
    let ids: Vec<_> = v
        .activity
        .unwrap()
        .into_iter()
        .map(|e| e.audit_id)
        .collect();
    assert_eq!(ids, ["h1", "h2", "h3"]);
    // An hour of silence closes it: the next use raises a new alert.
    let raised = run(
        &app,
        vec![Step::Audit(vec![
            web("h4", 70 + 3700, OUT).verb("list", "secrets"),
        ])],
    )
    .await;
    assert_eq!(rules(&raised), ["CT1547-002"]);
    assert_ne!(raised[0].id, id);
}
