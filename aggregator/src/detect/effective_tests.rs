//! `details.effective_permissions` of AN1579 alerts, as a responder reads
//! them: which role a binding grants and where its rules come from (learned,
//! the policy, the bootstrap policy), which rules make it high privilege, and
//! who else holds that role, bounded. The detector is fed real-format audit
//! events through the production parser.

use serde_json::{Value, json};

use crate::alert::Alert;
use crate::audit::parse_event;
use crate::detect::testkit::detector;
use crate::detect::{Changes, Detector};

const G: &str = "rbac.authorization.k8s.io";

const POLICY: &str = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
roles:
  - kind: Role
    namespace: dev
    name: debugger
    rules: [{apiGroups: [""], resources: [pods/exec], verbs: [create]}]
"#;

fn exec_rule() -> Value {
    json!({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]})
}

fn view_rule(resource: &str) -> Value {
    json!({"apiGroups": [""], "resources": [resource], "verbs": ["get", "list"]})
}

fn users(names: &[&str]) -> Value {
    json!(
        names
            .iter()
            .map(|n| json!({"apiGroup": G, "kind": "User", "name": n}))
            .collect::<Vec<_>>()
    )
}

/// bob, from a node, does `verb` on RBAC object `kind` (`ClusterRoleBinding`,
/// `RoleBinding`, `ClusterRole`, `Role`) `ns`/`name`; `body` (logged as
/// request and response) or, without one, logged at Metadata level. Returns
/// the AN1579 alerts.
fn write(
    d: &mut Detector,
    id: &str,
    verb: &str,
    (kind, ns, name): (&str, Option<&str>, &str),
    body: Option<Value>,
) -> Vec<Alert> {
    let resource = format!("{}s", kind.to_lowercase());
    let mut path = match ns {
        Some(ns) => format!("/apis/{G}/v1/namespaces/{ns}/{resource}"),
        None => format!("/apis/{G}/v1/{resource}"),
    };
    if verb != "create" {
        path = format!("{path}/{name}");
    }
    let mut v = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1",
        "level": if body.is_some() { "RequestResponse" } else { "Metadata" },
        "auditID": id, "stage": "ResponseComplete", "requestURI": path, "verb": verb,
        "user": {"username": "bob", "groups": ["system:authenticated"]},
        "sourceIPs": ["127.0.1.5"], "userAgent": "kubectl/v1.32.0",
        "objectRef": {"resource": resource, "namespace": ns, "name": name,
                      "apiGroup": G, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": if verb == "create" { 201 } else { 200 }},
        "requestReceivedTimestamp": "2026-03-01T10:00:00.000000Z",
        "stageTimestamp": "2026-03-01T10:00:00.100000Z",
    });
    if let Some(mut b) = body {
        b["apiVersion"] = json!(format!("{G}/v1"));
        b["kind"] = json!(kind);
        b["metadata"] = json!({"name": name, "namespace": ns});
        v["requestObject"] = b.clone();
        v["responseObject"] = b;
    }
    let mut ch = Changes::default();
    d.judge(&parse_event(v.to_string().as_bytes()).unwrap(), &mut ch)
        .into_iter()
        .filter(|a| a.analytic == "AN1579")
        .collect()
}

/// Creates a binding (a RoleBinding with `ns`, else a ClusterRoleBinding).
fn bind(
    d: &mut Detector,
    id: &str,
    ns: Option<&str>,
    name: &str,
    (rkind, rname): (&str, &str),
    subjects: Value,
) -> Vec<Alert> {
    let kind = if ns.is_some() {
        "RoleBinding"
    } else {
        "ClusterRoleBinding"
    };
    let body =
        json!({"roleRef": {"apiGroup": G, "kind": rkind, "name": rname}, "subjects": subjects});
    write(d, id, "create", (kind, ns, name), Some(body))
}

/// Writes a role (a Role with `ns`, else a ClusterRole).
fn role(d: &mut Detector, id: &str, ns: Option<&str>, name: &str, rules: Value) {
    let kind = if ns.is_some() { "Role" } else { "ClusterRole" };
    write(
        d,
        id,
        "create",
        (kind, ns, name),
        Some(json!({"rules": rules})),
    );
}

/// The one alert's `details.effective_permissions`.
#[track_caller]
fn eff(a: &[Alert]) -> &Value {
    assert_eq!(a.len(), 1, "{a:#?}");
    &a[0].details["effective_permissions"]
}

/// `(kind, namespace, name, known_from)` of each other holder.
fn holders(e: &Value) -> Vec<(String, String, String, String)> {
    let s = |h: &Value, k: &str| h[k].as_str().unwrap_or("?").to_owned();
    e["other_holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                s(h, "kind"),
                s(h, "namespace"),
                s(h, "name"),
                s(h, "known_from"),
            )
        })
        .collect()
}

fn h(kind: &str, ns: &str, name: &str, from: &str) -> (String, String, String, String) {
    (kind.into(), ns.into(), name.into(), from.into())
}

const CRB: &str = "ClusterRoleBinding";

#[test]
fn a_built_in_role_shows_its_bootstrap_rules_and_the_built_in_bindings_holding_it() {
    let mut d = detector(POLICY);
    let a = bind(
        &mut d,
        "b1",
        None,
        "mallory-admin",
        ("ClusterRole", "cluster-admin"),
        users(&["mallory"]),
    );
    let e = eff(&a);
    assert_eq!(
        e["role"],
        json!({"kind": "ClusterRole", "namespace": "", "name": "cluster-admin", "known_from": "bootstrap"})
    );
    assert_eq!(e["rules"][0]["verbs"], json!(["*"]), "{e:#}");
    assert_eq!(e["rules"][0]["resources"], json!(["*"]), "{e:#}");
    assert_eq!(e["rules_truncated"], 0);
    let high = e["high_privilege_rules"].as_array().unwrap();
    assert_eq!(high[0]["index"], 0, "{e:#}");
    assert!(!high[0]["reasons"].as_array().unwrap().is_empty(), "{e:#}");
    // The bootstrap binding of system:masters holds cluster-admin too.
    assert_eq!(
        holders(e),
        [h(CRB, "", "cluster-admin", "bootstrap")],
        "{e:#}"
    );
    let masters = &e["other_holders"][0];
    assert_eq!(masters["subjects"][0]["kind"], "Group", "{masters:#}");
    assert_eq!(masters["subjects"][0]["name"], "system:masters");
    assert_eq!(masters["subjects_truncated"], 0);
    assert_eq!(e["other_holders_truncated"], 0);

    // A second grant: the first is a learned holder, the bootstrap one still there.
    let a = bind(
        &mut d,
        "b2",
        None,
        "eve-admin",
        ("ClusterRole", "cluster-admin"),
        users(&["eve"]),
    );
    assert_eq!(
        holders(eff(&a)),
        [
            h(CRB, "", "mallory-admin", "learned"),
            h(CRB, "", "cluster-admin", "bootstrap")
        ]
    );
    let mallory = &eff(&a)["other_holders"][0];
    assert_eq!(
        mallory["subjects"],
        json!([{"kind": "User", "name": "mallory"}])
    );

    // The built-in binding itself rewritten: it does not hold its own role
    // "else", and once learned it is listed once, as learned.
    let body = json!({"roleRef": {"apiGroup": G, "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": G, "kind": "Group", "name": "system:masters"},
                     {"apiGroup": G, "kind": "User", "name": "trent"}]});
    let a = write(
        &mut d,
        "b3",
        "update",
        (CRB, None, "cluster-admin"),
        Some(body),
    );
    assert_eq!(
        holders(eff(&a)),
        [
            h(CRB, "", "mallory-admin", "learned"),
            h(CRB, "", "eve-admin", "learned")
        ]
    );
    let a = bind(
        &mut d,
        "b4",
        None,
        "oscar-admin",
        ("ClusterRole", "cluster-admin"),
        users(&["oscar"]),
    );
    assert_eq!(
        holders(eff(&a)),
        [
            h(CRB, "", "mallory-admin", "learned"),
            h(CRB, "", "eve-admin", "learned"),
            h(CRB, "", "cluster-admin", "learned")
        ]
    );
}

#[test]
fn a_namespaced_role_is_held_only_by_bindings_in_its_namespace() {
    let mut d = detector(POLICY);
    for ns in ["dev", "prod"] {
        role(
            &mut d,
            ns,
            Some(ns),
            "execer",
            json!([view_rule("pods"), exec_rule()]),
        );
    }
    bind(
        &mut d,
        "b1",
        Some("dev"),
        "one",
        ("Role", "execer"),
        users(&["a"]),
    );
    bind(
        &mut d,
        "b2",
        Some("prod"),
        "two",
        ("Role", "execer"),
        users(&["b"]),
    );
    // Another role in the same namespace.
    bind(
        &mut d,
        "b3",
        Some("dev"),
        "misc",
        ("ClusterRole", "view"),
        users(&["c"]),
    );
    let a = bind(
        &mut d,
        "b4",
        Some("dev"),
        "three",
        ("Role", "execer"),
        users(&["d"]),
    );
    let e = eff(&a);
    assert_eq!(
        e["role"],
        json!({"kind": "Role", "namespace": "dev", "name": "execer", "known_from": "learned"})
    );
    assert_eq!(e["rules"], json!([view_rule("pods"), exec_rule()]));
    // Only the exec rule is high privilege.
    let high = e["high_privilege_rules"].as_array().unwrap();
    assert_eq!(high.len(), 1, "{e:#}");
    assert_eq!(high[0]["index"], 1);
    let why = high[0]["reasons"].to_string();
    assert!(why.contains("pods/exec"), "{why}");
    assert_eq!(
        holders(e),
        [h("RoleBinding", "dev", "one", "learned")],
        "{e:#}"
    );
}

#[test]
fn a_cluster_role_is_held_by_bindings_in_every_namespace() {
    let mut d = detector(POLICY);
    role(&mut d, "r1", None, "exec-all", json!([exec_rule()]));
    bind(
        &mut d,
        "b1",
        Some("prod"),
        "p",
        ("ClusterRole", "exec-all"),
        users(&["a"]),
    );
    bind(
        &mut d,
        "b2",
        None,
        "c",
        ("ClusterRole", "exec-all"),
        users(&["b"]),
    );
    bind(
        &mut d,
        "b3",
        None,
        "viewers",
        ("ClusterRole", "view"),
        users(&["c"]),
    );
    let a = bind(
        &mut d,
        "b4",
        Some("dev"),
        "d",
        ("ClusterRole", "exec-all"),
        users(&["e"]),
    );
    let e = eff(&a);
    assert_eq!(
        e["role"],
        json!({"kind": "ClusterRole", "namespace": "", "name": "exec-all", "known_from": "learned"})
    );
    assert_eq!(
        holders(e),
        [
            h("RoleBinding", "prod", "p", "learned"),
            h(CRB, "", "c", "learned")
        ],
        "{e:#}"
    );
}

#[test]
fn holders_rules_and_subjects_are_bounded_and_the_rest_counted() {
    let mut d = detector(POLICY);
    let many: Vec<String> = (0..25).map(|i| format!("u{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    for i in 0..21 {
        let subjects = if i == 0 { users(&many) } else { users(&["x"]) };
        bind(
            &mut d,
            &format!("b{i}"),
            None,
            &format!("h{i:02}"),
            ("ClusterRole", "cluster-admin"),
            subjects,
        );
    }
    let a = bind(
        &mut d,
        "last",
        None,
        "last",
        ("ClusterRole", "cluster-admin"),
        users(&["y"]),
    );
    let e = eff(&a);
    let listed = holders(e);
    assert_eq!(listed.len(), super::MAX_HOLDERS, "{e:#}");
    assert!(listed.iter().all(|x| x.3 == "learned"), "{listed:?}");
    // 21 learned and the bootstrap cluster-admin binding: 22 in all.
    assert_eq!(e["other_holders_truncated"], 2, "{e:#}");
    let first = &e["other_holders"][0];
    assert_eq!(first["name"], "h00");
    assert_eq!(
        first["subjects"].as_array().unwrap().len(),
        super::MAX_SUBJECTS
    );
    assert_eq!(first["subjects_truncated"], 5);

    // A learned role of 55 rules, the high one past the listed 50.
    let mut rules: Vec<Value> = (0..54).map(|i| view_rule(&format!("r{i}"))).collect();
    rules.push(exec_rule());
    role(&mut d, "r1", None, "big", json!(rules));
    let a = bind(
        &mut d,
        "b-big",
        None,
        "big",
        ("ClusterRole", "big"),
        users(&["z"]),
    );
    let e = eff(&a);
    assert_eq!(e["rules"].as_array().unwrap().len(), super::MAX_RULES);
    assert_eq!(e["rules_truncated"], 5);
    assert_eq!(e["high_privilege_rules"], json!([]), "{e:#}");
}

#[test]
fn a_role_from_the_policy_is_named_so_and_its_namesake_elsewhere_is_learned() {
    let mut d = detector(POLICY);
    let a = bind(
        &mut d,
        "b1",
        Some("dev"),
        "x",
        ("Role", "debugger"),
        users(&["a"]),
    );
    assert_eq!(
        eff(&a)["role"],
        json!({"kind": "Role", "namespace": "dev", "name": "debugger", "known_from": "policy"})
    );
    role(&mut d, "r1", Some("prod"), "debugger", json!([exec_rule()]));
    let a = bind(
        &mut d,
        "b2",
        Some("prod"),
        "y",
        ("Role", "debugger"),
        users(&["a"]),
    );
    assert_eq!(
        eff(&a)["role"],
        json!({"kind": "Role", "namespace": "prod", "name": "debugger", "known_from": "learned"})
    );
    // A ClusterRole of the same name is not the policy's Role either.
    role(&mut d, "r2", None, "debugger", json!([exec_rule()]));
    let a = bind(
        &mut d,
        "b3",
        None,
        "z",
        ("ClusterRole", "debugger"),
        users(&["a"]),
    );
    assert_eq!(eff(&a)["role"]["known_from"], "learned");
}

#[test]
fn a_role_named_like_a_built_in_in_a_namespace_is_unknown() {
    let mut d = detector(POLICY);
    // A broad subject is alerted whatever the role; the Role `cluster-admin`
    // in `dev` is not the built-in ClusterRole.
    let everyone = json!([{"apiGroup": G, "kind": "Group", "name": "system:authenticated"}]);
    let a = bind(
        &mut d,
        "b1",
        Some("dev"),
        "x",
        ("Role", "cluster-admin"),
        everyone,
    );
    let e = eff(&a);
    assert_eq!(
        e["role"],
        json!({"kind": "Role", "namespace": "dev", "name": "cluster-admin", "known_from": "unknown"})
    );
    assert_eq!(e["rules"], json!([]));
    assert_eq!(e["other_holders"], json!([]));
}

#[test]
fn a_blind_write_shows_the_role_the_binding_had_or_none() {
    let mut d = detector(POLICY);
    bind(
        &mut d,
        "b1",
        None,
        "ops",
        ("ClusterRole", "cluster-admin"),
        users(&["a"]),
    );
    let a = write(&mut d, "b2", "update", (CRB, None, "ops"), None);
    assert_eq!(
        a[0].details["could_not_see"],
        json!(["roleRef", "subjects"])
    );
    let e = eff(&a);
    assert_eq!(e["role"]["name"], "cluster-admin", "{e:#}");
    assert_eq!(e["role"]["known_from"], "bootstrap");
    let a = write(&mut d, "b3", "update", (CRB, None, "ghost"), None);
    let e = eff(&a);
    assert_eq!(
        *e,
        json!({"role": null, "rules": [], "rules_truncated": 0, "high_privilege_rules": [],
               "other_holders": [], "other_holders_truncated": 0})
    );
}
