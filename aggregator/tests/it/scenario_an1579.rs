//! AN1579 scenarios (high-privilege grants) and the real captures that must
//! (not) alert.

use crate::common;

use common::*;
use credtrail_aggregator::alert::Severity;
use credtrail_aggregator::audit::{InputFormat, parse_document};
use serde_json::json;

const CI: &str = "system:serviceaccount:ci:deployer";

/// CI is approved from its runner range with its own token only.
const POLICY: &str = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
  pod_cidrs: [127.1.0.0/16]
trusted_ranges:
  - name: ci-runners
    cidrs: [127.50.0.0/24]
identities:
  - username: system:serviceaccount:ci:deployer
    cidrs: [127.50.0.0/24]
automation:
  - name: ci-deployer
    username: system:serviceaccount:ci:deployer
    credential_ids: ["JTI=ci-token-1"]
    cidrs: [127.50.0.0/24]
"#;

fn users(names: &[&str]) -> serde_json::Value {
    json!(
        names
            .iter()
            .map(|n| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": n}))
            .collect::<Vec<_>>()
    )
}

#[tokio::test]
async fn cluster_admin_granted_by_a_human_from_an_unknown_ip_is_critical() {
    let app = app(POLICY);
    let req = Req::new("g1", 0, "bob", "127.200.0.4").binding(
        "create",
        "ClusterRoleBinding",
        None,
        "bob-admin",
        ("ClusterRole", "cluster-admin"),
        users(&["bob"]),
    );
    let alerts = run(&app, vec![Step::Audit(vec![req])]).await;
    assert_eq!(rules(&alerts), ["CT1579-001"], "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a.severity, Severity::Critical);
    assert_eq!(a.analytic, "AN1579");
    assert!(a.techniques.contains(&"T1098.006".to_string()));
    assert!(
        a.reason.contains("cluster-admin") && a.reason.contains("unknown address"),
        "{}",
        a.reason
    );
    assert_eq!(a.details["added_subjects"][0]["name"], "bob");
}

#[tokio::test]
async fn ci_identity_from_its_runner_range_does_not_alert_but_elsewhere_does() {
    let app = app(POLICY);
    let ok = Req::new("c1", 0, CI, "127.50.0.10")
        .cred("JTI=ci-token-1")
        .binding(
            "create",
            "ClusterRoleBinding",
            None,
            "deploy-admin",
            ("ClusterRole", "cluster-admin"),
            users(&["release"]),
        );
    let stolen = Req::new("c2", 60, CI, "127.200.0.8")
        .cred("JTI=ci-token-1")
        .binding(
            "create",
            "ClusterRoleBinding",
            None,
            "evil-admin",
            ("ClusterRole", "cluster-admin"),
            users(&["mallory"]),
        );
    // The right identity and range but another credential is not approved either.
    let other_cred = Req::new("c3", 120, CI, "127.50.0.11")
        .cred("JTI=other")
        .binding(
            "create",
            "ClusterRoleBinding",
            None,
            "x-admin",
            ("ClusterRole", "cluster-admin"),
            users(&["x"]),
        );
    let alerts = run(&app, vec![Step::Audit(vec![ok, stolen, other_cred])]).await;
    let grants: Vec<_> = alerts.iter().filter(|a| a.rule == "CT1579-001").collect();
    assert_eq!(
        grants
            .iter()
            .map(|a| a.audit_ids[0].as_str())
            .collect::<Vec<_>>(),
        ["c2", "c3"],
        "{alerts:#?}"
    );
    assert_eq!(grants[0].severity, Severity::Critical, "unknown IP");
    assert_eq!(
        grants[1].severity,
        Severity::High,
        "known range, unapproved credential"
    );
    // The stolen token from outside is also an AN1547 finding.
    assert!(
        alerts
            .iter()
            .any(|a| a.rule == "CT1547-002" && a.audit_ids == ["c2"])
    );
}

#[tokio::test]
async fn patch_adding_a_subject_to_a_privileged_binding_alerts_with_the_added_subject() {
    let app = app(POLICY);
    let create = Req::new("p1", 0, CI, "127.50.0.10")
        .cred("JTI=ci-token-1")
        .binding(
            "create",
            "ClusterRoleBinding",
            None,
            "ops-admins",
            ("ClusterRole", "cluster-admin"),
            users(&["ops"]),
        );
    let patch = Req::new("p2", 60, "carol", "127.0.1.1").binding(
        "patch",
        "ClusterRoleBinding",
        None,
        "ops-admins",
        ("ClusterRole", "cluster-admin"),
        users(&["ops", "mallory"]),
    );
    let alerts = run(&app, vec![Step::Audit(vec![create, patch])]).await;
    assert_eq!(rules(&alerts), ["CT1579-001"], "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(
        a.details["added_subjects"],
        json!([{"kind": "User", "name": "mallory"}])
    );
    assert_eq!(a.severity, Severity::High, "from a cluster node");
    // The bindings inventory holds the patched subjects.
    let subjects: String = app
        .store
        .read(|c| {
            Ok(c.query_row(
                "SELECT subjects FROM bindings WHERE name = 'ops-admins'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert!(subjects.contains("mallory"), "{subjects}");
}

#[tokio::test]
async fn binding_to_a_custom_role_with_wildcard_verbs_alerts() {
    let app = app(POLICY);
    let role = Req::new("r1", 0, "admin", "127.0.1.1").role(
        "ClusterRole",
        None,
        "pod-boss",
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}]),
    );
    let harmless = Req::new("r2", 1, "admin", "127.0.1.1").role(
        "ClusterRole",
        None,
        "pod-reader",
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]),
    );
    let bind = Req::new("r3", 10, "dave", "127.0.1.1").binding(
        "create",
        "RoleBinding",
        Some("shop"),
        "boss",
        ("ClusterRole", "pod-boss"),
        users(&["eve"]),
    );
    let bind_ok = Req::new("r4", 11, "dave", "127.0.1.1").binding(
        "create",
        "RoleBinding",
        Some("shop"),
        "reader",
        ("ClusterRole", "pod-reader"),
        users(&["eve"]),
    );
    let alerts = run(&app, vec![Step::Audit(vec![role, harmless, bind, bind_ok])]).await;
    assert_eq!(rules(&alerts), ["CT1579-001"], "{alerts:#?}");
    let why = alerts[0].details["why_high_privilege"].as_array().unwrap();
    assert_eq!(why.len(), 2, "{why:?}");
    assert!(
        why[0]
            .as_str()
            .unwrap()
            .starts_with("wildcard verbs (rules[0]: verbs [*] on [pods]"),
        "{why:?}"
    );
    assert_eq!(alerts[0].audit_ids, ["r3"]);
}

#[tokio::test]
async fn binding_to_system_authenticated_is_critical() {
    let app = app(POLICY);
    let req = Req::new("b1", 0, "dave", "127.0.1.1").binding("create", "ClusterRoleBinding", None, "all-edit",
        ("ClusterRole", "edit"), json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]));
    let alerts = run(&app, vec![Step::Audit(vec![req])]).await;
    assert_eq!(rules(&alerts), ["CT1579-002"], "{alerts:#?}");
    assert_eq!(alerts[0].severity, Severity::Critical);
    assert!(
        alerts[0].reason.contains("system:authenticated"),
        "{}",
        alerts[0].reason
    );
}

#[tokio::test]
async fn metadata_only_binding_raises_coverage_and_a_blind_alert() {
    let app = app(POLICY);
    let req = Req::new("md1", 0, "dave", "127.0.1.1")
        .binding(
            "create",
            "ClusterRoleBinding",
            None,
            "mystery",
            ("ClusterRole", "cluster-admin"),
            users(&["x"]),
        )
        .metadata_only();
    let alerts = run(&app, vec![Step::Audit(vec![req])]).await;
    assert_eq!(rules(&alerts), ["CT1579-004"], "{alerts:#?}");
    assert!(
        alerts[0].reason.contains("Metadata level"),
        "{}",
        alerts[0].reason
    );
    assert_eq!(
        alerts[0].details["could_not_see"],
        json!(["roleRef", "subjects"])
    );
    let (level, count): (String, i64) = app
        .store
        .read(|c| Ok(c.query_row("SELECT level, count FROM coverage_rbac_levels WHERE resource = 'clusterrolebindings'", [], |r| Ok((r.get(0)?, r.get(1)?)))?))
        .await
        .unwrap();
    assert_eq!((level.as_str(), count), ("Metadata", 1));
}

#[tokio::test]
async fn forbidden_attempt_alerts_at_lower_severity() {
    let app = app(POLICY);
    let mut req = Req::new("f1", 0, "mayor-malware", "127.0.1.1")
        .binding(
            "create",
            "ClusterRoleBinding",
            None,
            "me-admin",
            ("ClusterRole", "cluster-admin"),
            users(&["mayor-malware"]),
        )
        .code(403);
    req.response_object = None;
    let alerts = run(&app, vec![Step::Audit(vec![req])]).await;
    assert_eq!(rules(&alerts), ["CT1579-003"], "{alerts:#?}");
    assert_eq!(alerts[0].severity, Severity::Medium);
    assert_eq!(alerts[0].request.decision, "deny");
    assert!(
        alerts[0].reason.contains("refused (HTTP 403)"),
        "{}",
        alerts[0].reason
    );
}

fn testdata(rel: &str) -> Vec<credtrail_aggregator::audit::AuditEvent> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/k8s-audit")
        .join(rel);
    let parsed = parse_document(&std::fs::read(&p).unwrap(), InputFormat::Native);
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    parsed.events
}

#[tokio::test]
async fn real_capture_attach_cluster_admin_role_alerts() {
    let app = app("");
    let evs = testdata(
        "falcosecurity__falco/test__trace_files__k8s_audit__attach_cluster_admin_role.json",
    );
    let r = app
        .pipeline
        .ingest_audit_batch("replay", evs)
        .await
        .unwrap();
    assert_eq!(rules(&r.alerts), ["CT1579-001"], "{:#?}", r.alerts);
    assert_eq!(r.alerts[0].identity.username, "minikube-user");
    assert_eq!(r.alerts[0].details["role_ref"]["name"], "cluster-admin");
}

#[tokio::test]
async fn real_capture_binding_to_system_basic_user_is_not_high_privilege() {
    let app = app("");
    let evs = testdata(
        "falcosecurity__falco/test__trace_files__k8s_audit__create_clusterrolebinding.json",
    );
    let r = app
        .pipeline
        .ingest_audit_batch("replay", evs)
        .await
        .unwrap();
    assert!(r.alerts.is_empty(), "{:#?}", r.alerts);
    let high: i64 = app
        .store
        .read(|c| {
            Ok(c.query_row(
                "SELECT high_privilege FROM bindings WHERE role_name = 'system:basic-user'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(high, 0);
}

#[tokio::test]
async fn roles_from_configuration_and_the_high_privilege_list_count() {
    let policy = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
high_privilege_roles: [ClusterRole/platform-operator]
roles:
  - kind: ClusterRole
    name: node-debugger
    rules:
      - apiGroups: [""]
        resources: [nodes/proxy]
        verbs: [get]
  - kind: Role
    namespace: shop
    name: cm-reader
    rules:
      - apiGroups: [""]
        resources: [configmaps]
        verbs: [get]
automation:
  - name: gitops
    username: system:serviceaccount:flux:*
    credential_ids: ["*"]
    cidrs: [127.0.1.0/24]
"#;
    let app = app(policy);
    let who = users(&["eve"]);
    let reqs = vec![
        Req::new("h1", 0, "dave", "127.0.1.1").binding(
            "create",
            "ClusterRoleBinding",
            None,
            "dbg",
            ("ClusterRole", "node-debugger"),
            who.clone(),
        ),
        Req::new("h2", 1, "dave", "127.0.1.1").binding(
            "create",
            "ClusterRoleBinding",
            None,
            "op",
            ("ClusterRole", "platform-operator"),
            who.clone(),
        ),
        Req::new("h3", 2, "dave", "127.0.1.1").binding(
            "create",
            "RoleBinding",
            Some("shop"),
            "cm",
            ("Role", "cm-reader"),
            who.clone(),
        ),
        // Approved automation (any credential of the flux identities, from the node range).
        Req::new("h4", 3, "system:serviceaccount:flux:kustomize", "127.0.1.3")
            .cred("JTI=f-1")
            .binding(
                "create",
                "ClusterRoleBinding",
                None,
                "flux-admin",
                ("ClusterRole", "cluster-admin"),
                who.clone(),
            ),
        // The same identity from outside the range is not approved.
        Req::new(
            "h5",
            4,
            "system:serviceaccount:flux:kustomize",
            "127.200.0.3",
        )
        .cred("JTI=f-1")
        .binding(
            "create",
            "ClusterRoleBinding",
            None,
            "flux-admin2",
            ("ClusterRole", "cluster-admin"),
            who,
        ),
    ];
    let alerts = run(&app, vec![Step::Audit(reqs)]).await;
    let grants: Vec<(&str, &str)> = alerts
        .iter()
        .filter(|a| a.analytic == "AN1579")
        .map(|a| (a.audit_ids[0].as_str(), a.rule.as_str()))
        .collect();
    assert_eq!(
        grants,
        [
            ("h1", "CT1579-001"),
            ("h2", "CT1579-001"),
            ("h5", "CT1579-001")
        ],
        "{alerts:#?}"
    );
    assert_eq!(
        alerts[0].details["why_high_privilege"],
        json!(["nodes/proxy (rules[0]: verbs [get] on [nodes/proxy] in [core])"])
    );
    let h5 = alerts
        .iter()
        .find(|a| a.audit_ids == ["h5"] && a.analytic == "AN1579")
        .unwrap();
    assert_eq!(h5.severity, Severity::Critical);
    assert!(h5.details["approved_automation"].is_null());
}

#[tokio::test]
async fn metadata_only_writes_by_approved_automation_are_counted_not_alerted() {
    let app = app(POLICY);
    let sync = |id: &str, t: i64| {
        Req::new(id, t, CI, "127.50.0.10")
            .cred("JTI=ci-token-1")
            .binding(
                "patch",
                "ClusterRoleBinding",
                None,
                "deploy-admin",
                ("ClusterRole", "cluster-admin"),
                users(&["release"]),
            )
            .metadata_only()
    };
    // The same identity and token from elsewhere is not approved: still blind.
    let stolen = Req::new("ms3", 120, CI, "127.200.0.9")
        .cred("JTI=ci-token-1")
        .binding(
            "patch",
            "ClusterRoleBinding",
            None,
            "deploy-admin",
            ("ClusterRole", "cluster-admin"),
            users(&["release"]),
        )
        .metadata_only();
    let human = Req::new("ms4", 180, "dave", "127.0.1.1")
        .binding(
            "patch",
            "ClusterRoleBinding",
            None,
            "deploy-admin",
            ("ClusterRole", "cluster-admin"),
            users(&["x"]),
        )
        .metadata_only();
    let alerts = run(
        &app,
        vec![Step::Audit(vec![
            sync("ms1", 0),
            sync("ms2", 60),
            stolen,
            human,
        ])],
    )
    .await;
    let blind: Vec<&str> = alerts
        .iter()
        .filter(|a| a.rule == "CT1579-004")
        .map(|a| a.audit_ids[0].as_str())
        .collect();
    assert_eq!(blind, ["ms3", "ms4"], "{alerts:#?}");
    let report = app
        .store
        .read(|c| {
            credtrail_aggregator::store::query::coverage::coverage(c, chrono::Utc::now(), 120.0)
                .map_err(|e| credtrail_aggregator::store::StoreError::Task(e.to_string()))
        })
        .await
        .unwrap();
    let auto = &report.bindings.approved_automation_metadata_only;
    assert_eq!(auto.len(), 1, "{auto:#?}");
    assert_eq!(
        (
            auto[0].automation.as_str(),
            auto[0].resource.as_str(),
            auto[0].count
        ),
        ("ci-deployer", "clusterrolebindings", 2)
    );
    assert_eq!(auto[0].example["audit_id"], "ms2");
    assert_eq!(auto[0].example["source_ip"], "127.50.0.10");
    // Every Metadata-level binding write still counts against the audit level.
    assert_eq!(report.bindings.metadata_only, 4);
}

#[tokio::test]
async fn a_json_patch_body_is_evaluated_against_the_known_binding() {
    let app = app(POLICY);
    let create = Req::new("jp1", 0, CI, "127.50.0.10")
        .cred("JTI=ci-token-1")
        .binding(
            "create",
            "ClusterRoleBinding",
            None,
            "ops-admins",
            ("ClusterRole", "cluster-admin"),
            users(&["ops"]),
        );
    let mut patch = Req::new("jp2", 60, "carol", "127.0.1.1").binding(
        "patch",
        "ClusterRoleBinding",
        None,
        "ops-admins",
        ("ClusterRole", "cluster-admin"),
        users(&["ops"]),
    );
    // kubectl patch --type=json at Request level: an array of operations, no response.
    patch.request_object = Some(json!([
        {"op": "add", "path": "/subjects/-", "value": {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}}
    ]));
    patch.response_object = None;
    let alerts = run(&app, vec![Step::Audit(vec![create, patch])]).await;
    assert_eq!(rules(&alerts), ["CT1579-001"], "{alerts:#?}");
    assert_eq!(alerts[0].details["state_from"], "patch_applied");
    assert_eq!(alerts[0].details["patch_type"], "json");
    assert_eq!(
        alerts[0].details["added_subjects"],
        json!([{"kind": "User", "name": "mallory"}])
    );
}
