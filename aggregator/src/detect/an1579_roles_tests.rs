//! Role widening (`an1579_roles.rs`) and dry runs: real-format audit events
//! through the production parser and the detector's whole RBAC path.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::alert::{Alert, Severity};
use crate::audit::parse_event;
use crate::detect::{Changes, Detector};
use crate::policy::Policy;

const G: &str = "rbac.authorization.k8s.io";
const VPN: &str = "10.8.0.21";
const OUTSIDE: &str = "203.0.113.50";

const POLICY: &str = r#"
cluster:
  node_cidrs: [10.0.1.0/24]
  pod_cidrs: [10.244.0.0/16]
trusted_ranges:
  - name: vpn
    cidrs: [10.8.0.0/16]
automation:
  - name: ci-deployer
    username: system:serviceaccount:ci:deployer
    credential_ids: ["*"]
    cidrs: [10.30.0.0/24]
"#;

struct T {
    d: Detector,
    n: u32,
}

impl T {
    fn new() -> Self {
        Self {
            d: Detector::new(Arc::new(Policy::from_yaml("test", POLICY).unwrap())),
            n: 0,
        }
    }

    /// One ResponseComplete event at RequestResponse level.
    #[allow(
        clippy::too_many_arguments,
        reason = "one audit event's fields, named at each call"
    )]
    fn send(
        &mut self,
        user: &str,
        groups: &[&str],
        ip: &str,
        verb: &str,
        resource: &str,
        ns: Option<&str>,
        name: &str,
        query: &str,
        request: Value,
        response: Option<Value>,
        code: i32,
    ) -> Vec<Alert> {
        self.n += 1;
        let base = match ns {
            Some(ns) => format!("/apis/{G}/v1/namespaces/{ns}/{resource}"),
            None => format!("/apis/{G}/v1/{resource}"),
        };
        let uri = if verb == "create" {
            format!("{base}?{query}")
        } else {
            format!("{base}/{name}?{query}")
        };
        let mut v = json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": format!("00000000-0000-4000-8000-{:012}", self.n), "stage": "ResponseComplete",
            "requestURI": uri, "verb": verb,
            "user": {"username": user, "groups": groups},
            "sourceIPs": [ip], "userAgent": "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
            "objectRef": {"resource": resource, "namespace": ns, "name": name, "apiGroup": G, "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": code},
            "requestObject": request,
            "requestReceivedTimestamp": format!("2026-11-20T10:00:{:02}.000000Z", self.n % 60),
            "stageTimestamp": format!("2026-11-20T10:00:{:02}.005000Z", self.n % 60),
            "annotations": {"authorization.k8s.io/decision": if code == 403 { "forbid" } else { "allow" }},
        });
        if let Some(r) = response {
            v["responseObject"] = r;
        }
        let ev = parse_event(v.to_string().as_bytes()).unwrap();
        let mut ch = Changes::default();
        let mut out = Vec::new();
        self.d.judge_rbac(&ev, &mut ch, &mut out);
        out
    }

    fn alice(
        &mut self,
        ip: &str,
        verb: &str,
        res: &str,
        ns: Option<&str>,
        name: &str,
        body: Value,
    ) -> Vec<Alert> {
        let q = if verb == "patch" {
            "fieldManager=kubectl-patch"
        } else if verb == "create" {
            "fieldManager=kubectl-create&fieldValidation=Strict"
        } else {
            "fieldManager=kubectl-edit"
        };
        let code = if verb == "create" { 201 } else { 200 };
        self.send(
            "alice@example.com",
            &["platform-admins", "system:authenticated"],
            ip,
            verb,
            res,
            ns,
            name,
            q,
            body,
            None,
            code,
        )
    }
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": format!("{G}/v1"), "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules})
}

fn crb(name: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": format!("{G}/v1"), "kind": "ClusterRoleBinding", "metadata": {"name": name},
           "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": role}, "subjects": subjects})
}

fn group(name: &str) -> Value {
    json!([{"apiGroup": G, "kind": "Group", "name": name}])
}

fn rule(res: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": [""], "resources": res, "verbs": verbs})
}

#[test]
fn widening_a_builtin_role_bound_to_everyone_is_a_broad_grant() {
    // system:basic-user is bound to system:authenticated by the bootstrap policy.
    let mut t = T::new();
    let body =
        json!([{"op": "add", "path": "/rules/-", "value": rule(&["secrets"], &["get", "list"])}]);
    let a = t.alice(
        OUTSIDE,
        "patch",
        "clusterroles",
        None,
        "system:basic-user",
        body,
    );
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].rule.as_str(), a[0].severity),
        ("CT1579-002", Severity::Critical)
    );
    assert!(a[0].reason.contains("reads secrets"), "{}", a[0].reason);
    assert!(
        a[0].reason.contains("Group system:authenticated"),
        "{}",
        a[0].reason
    );
    assert_eq!(
        a[0].details["held_through"][0]["binding"]["name"],
        "system:basic-user"
    );
}

#[test]
fn widening_a_custom_role_bound_to_a_group_is_a_grant_and_repeats_are_not() {
    let mut t = T::new();
    let low = cluster_role(
        "ops-reader",
        json!([rule(&["pods", "configmaps"], &["get", "list"])]),
    );
    assert!(
        t.alice(VPN, "create", "clusterroles", None, "ops-reader", low)
            .is_empty()
    );
    assert!(
        t.alice(
            VPN,
            "create",
            "clusterrolebindings",
            None,
            "ops-reader",
            crb("ops-reader", "ops-reader", group("ops"))
        )
        .is_empty()
    );
    let wide = cluster_role(
        "ops-reader",
        json!([
            rule(&["pods", "configmaps"], &["get", "list"]),
            rule(&["pods/exec"], &["create"])
        ]),
    );
    let a = t.alice(
        VPN,
        "update",
        "clusterroles",
        None,
        "ops-reader",
        wide.clone(),
    );
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].rule.as_str(), a[0].severity),
        ("CT1579-001", Severity::High)
    );
    assert_eq!(
        a[0].details["added_privileges"].as_array().unwrap().len(),
        1
    );
    // The same rules again, and an unrelated low rule: nothing new.
    assert!(
        t.alice(VPN, "update", "clusterroles", None, "ops-reader", wide)
            .is_empty()
    );
    let body = json!({"rules": [rule(&["pods", "configmaps", "services"], &["get", "list"]), rule(&["pods/exec"], &["create"])]});
    assert!(
        t.alice(VPN, "patch", "clusterroles", None, "ops-reader", body)
            .is_empty()
    );
}

#[test]
fn a_role_nobody_holds_or_secrets_through_a_rolebinding_raise_nothing() {
    let mut t = T::new();
    let r = cluster_role("unbound", json!([rule(&["*"], &["*"])]));
    assert!(
        t.alice(VPN, "create", "clusterroles", None, "unbound", r)
            .is_empty()
    );
    // A ClusterRole held only through a RoleBinding gains a namespace's secrets: not high.
    let r = cluster_role("cfg", json!([rule(&["configmaps"], &["get"])]));
    assert!(
        t.alice(VPN, "create", "clusterroles", None, "cfg", r)
            .is_empty()
    );
    let rb = json!({"apiVersion": format!("{G}/v1"), "kind": "RoleBinding", "metadata": {"name": "cfg", "namespace": "shop"},
                    "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": "cfg"}, "subjects": group("shop-team")});
    assert!(
        t.alice(VPN, "create", "rolebindings", Some("shop"), "cfg", rb)
            .is_empty()
    );
    let r = cluster_role("cfg", json!([rule(&["configmaps", "secrets"], &["get"])]));
    assert!(
        t.alice(VPN, "update", "clusterroles", None, "cfg", r)
            .is_empty()
    );
    // ...but pods/exec through the same RoleBinding is.
    let r = cluster_role(
        "cfg",
        json!([
            rule(&["configmaps", "secrets"], &["get"]),
            rule(&["pods/exec"], &["create"])
        ]),
    );
    let a = t.alice(VPN, "update", "clusterroles", None, "cfg", r);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        a[0].details["held_through"][0]["binding"]["namespace"],
        "shop"
    );
}

#[test]
fn a_role_created_after_the_binding_that_names_it_is_a_grant() {
    let mut t = T::new();
    let b = crb(
        "late",
        "late-role",
        json!([{"kind": "ServiceAccount", "namespace": "dev", "name": "builder"}]),
    );
    assert!(
        t.alice(VPN, "create", "clusterrolebindings", None, "late", b)
            .is_empty()
    );
    let r = cluster_role("late-role", json!([rule(&["nodes/proxy"], &["get"])]));
    let a = t.alice(OUTSIDE, "create", "clusterroles", None, "late-role", r);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].rule.as_str(), a[0].severity),
        ("CT1579-001", Severity::Critical)
    );
}

#[test]
fn user_facing_roles_count_as_held_and_the_bootstrap_reconcile_does_not() {
    let mut t = T::new();
    // The aggregation controller fills view with a labelled role's secrets read.
    let mut rules: Vec<Value> = vec![rule(&["pods", "services"], &["get", "list", "watch"])];
    rules.push(rule(&["secrets"], &["get", "list", "watch"]));
    let a = t.send(
        "system:serviceaccount:kube-system:clusterrole-aggregation-controller",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
            "system:authenticated",
        ],
        "10.0.0.10",
        "update",
        "clusterroles",
        None,
        "view",
        "",
        cluster_role("view", json!(rules)),
        None,
        200,
    );
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].details["held_by_user_facing_role"], true);
    // The API server writing its release's bootstrap roles: no widening.
    let mut t = T::new();
    let r = cluster_role("system:basic-user", json!([rule(&["secrets"], &["get"])]));
    let a = t.send(
        "system:apiserver",
        &["system:masters"],
        "127.0.0.1",
        "update",
        "clusterroles",
        None,
        "system:basic-user",
        "",
        r,
        None,
        200,
    );
    assert!(a.is_empty(), "{a:?}");
}

#[test]
fn approved_automation_may_widen_a_role() {
    let mut t = T::new();
    let r = cluster_role("system:basic-user", json!([rule(&["secrets"], &["get"])]));
    let a = t.send(
        "system:serviceaccount:ci:deployer",
        &["system:serviceaccounts", "system:authenticated"],
        "10.30.0.14",
        "update",
        "clusterroles",
        None,
        "system:basic-user",
        "",
        r,
        None,
        200,
    );
    assert!(a.is_empty(), "{a:?}");
}

#[test]
fn a_dry_run_grants_nothing_and_changes_no_state() {
    let mut t = T::new();
    let hi = cluster_role(
        "deployer",
        json!([rule(&["pods"], &["create"]), rule(&["secrets"], &["get"])]),
    );
    assert!(
        t.alice(VPN, "create", "clusterroles", None, "deployer", hi)
            .is_empty()
    );
    // kubectl create clusterrolebinding --dry-run=server: not persisted.
    let b = crb(
        "x",
        "cluster-admin",
        json!([{"apiGroup": G, "kind": "User", "name": "mallory"}]),
    );
    let dry = "dryRun=All&fieldManager=kubectl-create&fieldValidation=Strict";
    let a = t.send(
        "mallory",
        &["system:authenticated"],
        OUTSIDE,
        "create",
        "clusterrolebindings",
        None,
        "x",
        dry,
        b.clone(),
        Some(b),
        201,
    );
    assert!(a.is_empty(), "{a:?}");
    // A dry-run "downgrade" of the role must not hide the next real binding.
    let low = cluster_role("deployer", json!([rule(&["configmaps"], &["get"])]));
    let a = t.send(
        "mallory",
        &["system:authenticated"],
        OUTSIDE,
        "update",
        "clusterroles",
        None,
        "deployer",
        "dryRun=All",
        low,
        None,
        200,
    );
    assert!(a.is_empty(), "{a:?}");
    let b = crb(
        "deployer-mallory",
        "deployer",
        json!([{"apiGroup": G, "kind": "User", "name": "mallory"}]),
    );
    let a = t.alice(
        VPN,
        "create",
        "clusterrolebindings",
        None,
        "deployer-mallory",
        b,
    );
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].rule, "CT1579-001");
    // A misspelt parameter is a real write, judged as one.
    let b = crb(
        "y",
        "cluster-admin",
        json!([{"apiGroup": G, "kind": "User", "name": "mallory"}]),
    );
    let a = t.send(
        "mallory",
        &["system:authenticated"],
        OUTSIDE,
        "create",
        "clusterrolebindings",
        None,
        "y",
        "dryrun=All",
        b,
        None,
        201,
    );
    assert_eq!(a.len(), 1, "{a:?}");
}

#[test]
fn an_authorized_write_that_failed_is_not_a_refused_attempt() {
    let b = crb("ops-admin", "cluster-admin", group("ops"));
    let status = |code: i32| json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code});
    for code in [409, 422, 404, 500] {
        let mut t = T::new();
        let a = t.send(
            "alice@example.com",
            &["system:authenticated"],
            OUTSIDE,
            "update",
            "clusterrolebindings",
            None,
            "ops-admin",
            "fieldManager=kubectl-client-side-apply",
            b.clone(),
            Some(status(code)),
            code,
        );
        assert!(a.is_empty(), "{code}: {a:?}");
    }
    // Refused (403; `allowed()` also counts a webhook's 403 after an RBAC
    // allow as refused): an attempt.
    let mut t = T::new();
    let a = t.send(
        "mallory",
        &["system:authenticated"],
        OUTSIDE,
        "create",
        "clusterrolebindings",
        None,
        "ops-admin",
        "",
        b.clone(),
        Some(status(403)),
        403,
    );
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].rule, "CT1579-003");
}

#[test]
fn secrets_read_through_a_rolebinding_is_high_in_kube_system_only() {
    let reader = |ns: &str| {
        json!({"apiVersion": format!("{G}/v1"), "kind": "Role", "metadata": {"name": "secret-reader", "namespace": ns},
               "rules": [rule(&["secrets"], &["get", "list", "watch"])]})
    };
    let rb = |ns: &str| {
        json!({"apiVersion": format!("{G}/v1"), "kind": "RoleBinding", "metadata": {"name": "secret-reader", "namespace": ns},
               "roleRef": {"apiGroup": G, "kind": "Role", "name": "secret-reader"},
               "subjects": [{"kind": "ServiceAccount", "namespace": "shop", "name": "web"}]})
    };
    let mut t = T::new();
    assert!(
        t.alice(
            VPN,
            "create",
            "roles",
            Some("shop"),
            "secret-reader",
            reader("shop")
        )
        .is_empty()
    );
    assert!(
        t.alice(
            VPN,
            "create",
            "rolebindings",
            Some("shop"),
            "secret-reader",
            rb("shop")
        )
        .is_empty()
    );
    assert!(
        t.alice(
            VPN,
            "create",
            "roles",
            Some("kube-system"),
            "secret-reader",
            reader("kube-system")
        )
        .is_empty()
    );
    let a = t.alice(
        VPN,
        "create",
        "rolebindings",
        Some("kube-system"),
        "secret-reader",
        rb("kube-system"),
    );
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].rule, "CT1579-001");
    assert!(a[0].reason.contains("in kube-system"), "{}", a[0].reason);
    // The built-in view (no secrets) in kube-system stays low.
    let v = json!({"apiVersion": format!("{G}/v1"), "kind": "RoleBinding", "metadata": {"name": "viewers", "namespace": "kube-system"},
                   "roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": "view"}, "subjects": group("sre")});
    assert!(
        t.alice(
            VPN,
            "create",
            "rolebindings",
            Some("kube-system"),
            "viewers",
            v
        )
        .is_empty()
    );
}

#[test]
fn a_role_never_seen_before_is_reported_as_first_seen_not_as_widened() {
    let mut t = T::new();
    let b = crb("legacy-ops", "legacy-ops", group("ops"));
    assert!(
        t.alice(VPN, "create", "clusterrolebindings", None, "legacy-ops", b)
            .is_empty()
    );
    // The role existed before the aggregator ran; its first write seen is an update.
    let r = cluster_role("legacy-ops", json!([rule(&["pods/exec"], &["create"])]));
    let a = t.alice(VPN, "update", "clusterroles", None, "legacy-ops", r.clone());
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].details["role_first_seen"], true);
    assert_eq!(a[0].details["powers_before"], Value::Null);
    assert!(
        a[0].reason.contains("(first seen; it allows pods/exec"),
        "{}",
        a[0].reason
    );
    // Known from now on: the same rules again raise nothing.
    assert!(
        t.alice(VPN, "update", "clusterroles", None, "legacy-ops", r)
            .is_empty()
    );
}

#[test]
fn the_holders_in_an_alert_are_bounded_and_everyone_comes_first() {
    let mut t = T::new();
    let r = cluster_role("shared", json!([rule(&["pods"], &["get"])]));
    assert!(
        t.alice(VPN, "create", "clusterroles", None, "shared", r)
            .is_empty()
    );
    for i in 0..30 {
        let subjects: Vec<Value> = (0..25)
            .map(|j| json!({"apiGroup": G, "kind": "User", "name": format!("u{i}-{j}")}))
            .collect();
        let b = crb(&format!("a{i:02}"), "shared", json!(subjects));
        assert!(
            t.alice(
                VPN,
                "create",
                "clusterrolebindings",
                None,
                &format!("a{i:02}"),
                b
            )
            .is_empty()
        );
    }
    let b = crb("z-everyone", "shared", group("system:authenticated"));
    assert!(
        t.alice(VPN, "create", "clusterrolebindings", None, "z-everyone", b)
            .is_empty()
    );
    let r = cluster_role(
        "shared",
        json!([rule(&["pods"], &["get"]), rule(&["secrets"], &["list"])]),
    );
    let a = t.alice(VPN, "update", "clusterroles", None, "shared", r);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].rule, "CT1579-002");
    let d = &a[0].details;
    assert_eq!(d["held_through"].as_array().unwrap().len(), 20);
    assert_eq!(d["held_through_truncated"], 11);
    assert_eq!(d["held_through"][0]["binding"]["name"], "z-everyone");
    assert_eq!(
        d["held_through"][1]["subjects"].as_array().unwrap().len(),
        20
    );
    assert_eq!(d["held_through"][1]["subjects_truncated"], 5);
    assert!(a[0].reason.contains("26 more bindings"), "{}", a[0].reason);
    assert!(a[0].reason.contains("20 more"), "{}", a[0].reason);
    assert!(a[0].reason.len() < 2000, "{}", a[0].reason.len());
}

#[test]
fn only_the_api_servers_own_reconcile_is_exempt_not_every_cluster_admin() {
    // A cluster admin (system:masters) widening a built-in role is judged.
    let mut t = T::new();
    let r = cluster_role("system:basic-user", json!([rule(&["secrets"], &["get"])]));
    let a = t.send(
        "kubernetes-admin",
        &["system:masters", "system:authenticated"],
        OUTSIDE,
        "update",
        "clusterroles",
        None,
        "system:basic-user",
        "",
        r,
        None,
        200,
    );
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].rule, "CT1579-002");
}

#[test]
fn rewriting_a_built_in_cluster_role_with_its_own_rules_widens_nothing() {
    let mut t = T::new();
    let r = cluster_role(
        "cluster-admin",
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
               {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
    );
    let a = t.alice(OUTSIDE, "update", "clusterroles", None, "cluster-admin", r);
    assert!(a.is_empty(), "{a:?}");
}

#[test]
fn a_known_role_widened_is_not_first_seen_and_names_what_it_held() {
    let mut t = T::new();
    let low = cluster_role("ops-reader", json!([rule(&["pods"], &["get"])]));
    assert!(
        t.alice(VPN, "create", "clusterroles", None, "ops-reader", low)
            .is_empty()
    );
    let b = crb("ops-reader", "ops-reader", group("ops"));
    assert!(
        t.alice(VPN, "create", "clusterrolebindings", None, "ops-reader", b)
            .is_empty()
    );
    let wide = cluster_role(
        "ops-reader",
        json!([rule(&["pods"], &["get"]), rule(&["pods/exec"], &["create"])]),
    );
    let a = t.alice(VPN, "update", "clusterroles", None, "ops-reader", wide);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].details["role_first_seen"], false, "{}", a[0].details);
    assert_eq!(a[0].details["powers_before"], json!([]));
    assert!(!a[0].reason.contains("first seen"), "{}", a[0].reason);
}

#[test]
fn a_namespaced_role_is_held_only_by_bindings_of_its_namespace() {
    let mut t = T::new();
    for (ns, who) in [("dev", "devs"), ("shop", "shoppers")] {
        let role = json!({"apiVersion": format!("{G}/v1"), "kind": "Role",
            "metadata": {"name": "editor", "namespace": ns},
            "rules": [rule(&["pods"], &["get"])]});
        assert!(
            t.alice(VPN, "create", "roles", Some(ns), "editor", role)
                .is_empty()
        );
        let b = json!({"apiVersion": format!("{G}/v1"), "kind": "RoleBinding",
            "metadata": {"name": "app-edit", "namespace": ns},
            "roleRef": {"apiGroup": G, "kind": "Role", "name": "editor"},
            "subjects": group(who)});
        assert!(
            t.alice(VPN, "create", "rolebindings", Some(ns), "app-edit", b)
                .is_empty()
        );
    }
    let wide = json!({"apiVersion": format!("{G}/v1"), "kind": "Role",
        "metadata": {"name": "editor", "namespace": "shop"},
        "rules": [rule(&["pods"], &["get"]), rule(&["pods/exec"], &["create"])]});
    let a = t.alice(VPN, "update", "roles", Some("shop"), "editor", wide);
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(a[0].reason.contains("Group shoppers"), "{}", a[0].reason);
    assert!(!a[0].reason.contains("devs"), "{}", a[0].reason);
}

#[test]
fn exactly_five_holders_and_subjects_are_all_named_with_no_more() {
    let mut t = T::new();
    let r = cluster_role("shared", json!([rule(&["pods"], &["get"])]));
    assert!(
        t.alice(VPN, "create", "clusterroles", None, "shared", r)
            .is_empty()
    );
    for i in 0..5 {
        let subjects: Vec<Value> = (0..5)
            .map(|j| json!({"apiGroup": G, "kind": "User", "name": format!("u{i}-{j}")}))
            .collect();
        let b = crb(&format!("b{i}"), "shared", json!(subjects));
        assert!(
            t.alice(
                VPN,
                "create",
                "clusterrolebindings",
                None,
                &format!("b{i}"),
                b
            )
            .is_empty()
        );
    }
    let r = cluster_role(
        "shared",
        json!([rule(&["pods"], &["get"]), rule(&["pods/exec"], &["create"])]),
    );
    let a = t.alice(VPN, "update", "clusterroles", None, "shared", r);
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(
        a[0].reason.contains("User u4-4 (ClusterRoleBinding b4)"),
        "{}",
        a[0].reason
    );
    assert!(!a[0].reason.contains("more"), "{}", a[0].reason);
}
