//! AN1579 verdicts, pinned rule by rule: the detector fed real-format audit
//! events (parsed by the production parser) and judged by the alerts it
//! raises and the state rows it reports. Written so that cargo-mutants'
//! changes to `an1579.rs` (a deleted match arm, `||` for `&&`, a dropped `!`)
//! change a verdict these tests check (`cargo xtask mutants --file
//! aggregator/src/detect/an1579.rs`).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::alert::{Alert, Severity};
use crate::audit::{AuditEvent, parse_event};
use crate::detect::{Changes, Detector};
use crate::policy::Policy;

const G: &str = "rbac.authorization.k8s.io";
/// A node address (known: not an unknown IP).
const NODE_IP: &str = "127.0.1.5";
/// Outside every configured range.
const FAR_IP: &str = "127.200.0.4";
/// The approved automation's own address.
const CI_IP: &str = "127.50.0.9";
const CI: &str = "system:serviceaccount:ci:deployer";
const ADMIN: &str = "cluster-admin";

const POLICY: &str = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
  pod_cidrs: [127.1.0.0/16]
automation:
  - name: ci-deployer
    username: system:serviceaccount:ci:deployer
    credential_ids: ["*"]
    cidrs: [127.50.0.0/24]
"#;

fn detector() -> Detector {
    Detector::new(Arc::new(Policy::from_yaml("test", POLICY).unwrap()))
}

/// One audit event, `audit.k8s.io/v1`, ResponseComplete.
struct Ev {
    id: String,
    user: String,
    ip: String,
    verb: String,
    resource: String,
    group: Option<String>,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    code: i32,
    level: &'static str,
    request: Option<Value>,
    response: Option<Value>,
}

impl Ev {
    fn new(id: &str, user: &str, ip: &str) -> Self {
        Self {
            id: id.into(),
            user: user.into(),
            ip: ip.into(),
            verb: "create".into(),
            resource: "clusterrolebindings".into(),
            group: Some(G.into()),
            ns: None,
            name: None,
            sub: None,
            code: 201,
            level: "RequestResponse",
            request: None,
            response: None,
        }
    }

    /// A (Cluster)RoleBinding write that logged its object.
    fn binding(
        self,
        verb: &str,
        ns: Option<&str>,
        name: &str,
        role: (&str, &str),
        subjects: Value,
    ) -> Self {
        let role_ref = json!({"apiGroup": G, "kind": role.0, "name": role.1});
        let body = json!({"roleRef": role_ref, "subjects": subjects});
        self.verb(verb).object("RoleBinding", ns, name, body)
    }

    /// A (Cluster)Role write with these rules.
    fn role(self, ns: Option<&str>, name: &str, rules: Value) -> Self {
        self.object("Role", ns, name, json!({ "rules": rules }))
    }

    /// Names the written `kind` (Cluster`kind` without `ns`) object `name`,
    /// logged with `body` as both request and response.
    fn object(mut self, kind: &str, ns: Option<&str>, name: &str, mut body: Value) -> Self {
        let kind = if ns.is_some() {
            kind.to_owned()
        } else {
            format!("Cluster{kind}")
        };
        body["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
        body["metadata"] = json!({"name": name, "namespace": ns});
        self.resource = format!("{}s", kind.to_lowercase());
        body["kind"] = json!(kind);
        self.ns = ns.map(str::to_owned);
        self.name = Some(name.into());
        self.request = Some(body.clone());
        self.response = Some(body);
        self
    }

    /// Written by `user` from `ip` (instead of bob from a node).
    fn by(mut self, user: &str, ip: &str) -> Self {
        self.user = user.into();
        self.ip = ip.into();
        self
    }

    /// Another verb: a create answers 201, anything else 200.
    fn verb(mut self, verb: &str) -> Self {
        self.verb = verb.into();
        self.code = if verb == "create" { 201 } else { 200 };
        self
    }

    fn refused(mut self) -> Self {
        self.code = 403;
        self.response =
            Some(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403}));
        self
    }

    fn metadata_only(mut self) -> Self {
        self.level = "Metadata";
        self.request = None;
        self.response = None;
        self
    }

    fn event(&self) -> AuditEvent {
        let mut path = match (&self.group, &self.ns) {
            (Some(g), Some(ns)) => format!("/apis/{g}/v1/namespaces/{ns}/{}", self.resource),
            (Some(g), None) => format!("/apis/{g}/v1/{}", self.resource),
            (None, Some(ns)) => format!("/api/v1/namespaces/{ns}/{}", self.resource),
            (None, None) => format!("/api/v1/{}", self.resource),
        };
        if let Some(n) = &self.name {
            path = format!("{path}/{n}");
        }
        let mut v = json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1",
            "level": self.level, "auditID": self.id, "stage": "ResponseComplete",
            "requestURI": path, "verb": self.verb,
            "user": {"username": self.user, "groups": ["system:authenticated"]},
            "sourceIPs": [self.ip],
            "userAgent": "kubectl/v1.32.0",
            "objectRef": {"resource": self.resource, "namespace": self.ns, "name": self.name,
                          "apiGroup": self.group, "apiVersion": "v1", "subresource": self.sub},
            "responseStatus": {"metadata": {}, "code": self.code},
            "requestReceivedTimestamp": "2026-03-01T10:00:00.000000Z",
            "stageTimestamp": "2026-03-01T10:00:00.100000Z",
        });
        if let Some(o) = &self.request {
            v["requestObject"] = o.clone();
        }
        if let Some(o) = &self.response {
            v["responseObject"] = o.clone();
        }
        parse_event(v.to_string().as_bytes()).unwrap()
    }
}

fn users(names: &[&str]) -> Value {
    json!(
        names
            .iter()
            .map(|n| json!({"apiGroup": G, "kind": "User", "name": n}))
            .collect::<Vec<_>>()
    )
}

fn group(name: &str) -> Value {
    json!([{"apiGroup": G, "kind": "Group", "name": name}])
}

fn sa(ns: &str, name: &str) -> Value {
    json!([{"kind": "ServiceAccount", "namespace": ns, "name": name}])
}

/// bob, from a node, creates ClusterRoleBinding `name` to ClusterRole `role`.
fn grant(id: &str, name: &str, role: &str, subjects: Value) -> Ev {
    Ev::new(id, "bob", NODE_IP).binding("create", None, name, ("ClusterRole", role), subjects)
}

/// bob, from a node, creates RoleBinding `ns`/`name` to `role` (kind, name).
fn grant_in(id: &str, ns: &str, name: &str, role: (&str, &str), subjects: Value) -> Ev {
    Ev::new(id, "bob", NODE_IP).binding("create", Some(ns), name, role, subjects)
}

/// bob, from a node, writes ClusterRole `name` with these rules.
fn cluster_role(id: &str, name: &str, rules: Value) -> Ev {
    Ev::new(id, "bob", NODE_IP).role(None, name, rules)
}

/// bob, from a node, patches ClusterRoleBinding `name` at Request level (no
/// response object logged).
fn patch(id: &str, name: &str, request: Value) -> Ev {
    let mut p = Ev::new(id, "bob", NODE_IP).verb("patch");
    p.name = Some(name.into());
    p.level = "Request";
    p.request = Some(request);
    p
}

/// A Metadata-level delete of ClusterRoleBinding `name`, answered `code`.
fn binding_delete(id: &str, name: &str, code: i32) -> Ev {
    let mut del = Ev::new(id, "bob", NODE_IP).verb("delete");
    del.code = code;
    del.name = Some(name.into());
    del.level = "Metadata";
    del
}

/// Judges one event; returns its AN1579 alerts and its changes (AN1547
/// judges the same events by where they came from: not here).
fn judge(d: &mut Detector, e: Ev) -> (Vec<Alert>, Changes) {
    let mut ch = Changes::default();
    let alerts = d
        .judge(&e.event(), &mut ch)
        .into_iter()
        .filter(|a| a.analytic == "AN1579")
        .collect();
    (alerts, ch)
}

#[track_caller]
fn assert_reason(a: &Alert, part: &str) {
    assert!(a.reason.contains(part), "{}", a.reason);
}

fn rules_of(a: &[Alert]) -> Vec<&str> {
    a.iter().map(|a| a.rule.as_str()).collect()
}

const EXEC_RULES: &str =
    r#"[{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}]"#;
const VIEW_RULES: &str =
    r#"[{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]"#;

fn rules(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn cluster_admin_to_a_user_is_high_or_critical_by_source() {
    let mut d = detector();
    let (a, ch) = judge(&mut d, grant("a1", "bob-admin", ADMIN, users(&["bob"])));
    assert_eq!(rules_of(&a), ["CT1579-001"], "{a:#?}");
    assert_eq!(a[0].severity, Severity::High);
    assert_reason(&a[0], "User bob");
    assert!(!a[0].reason.contains("unknown address"), "{}", a[0].reason);
    assert_eq!(ch.bindings.len(), 1);
    assert!(ch.bindings[0].high_privilege);
    assert_eq!(ch.rbac_levels.len(), 1);

    let eve = grant("a2", "eve-admin", ADMIN, users(&["eve"])).by("eve", FAR_IP);
    let (a, _) = judge(&mut d, eve);
    assert_eq!(rules_of(&a), ["CT1579-001"]);
    assert_eq!(a[0].severity, Severity::Critical);
    assert_reason(&a[0], "an unknown address");
}

#[test]
fn a_namespaced_role_learned_from_the_stream_decides_its_bindings() {
    let mut d = detector();
    let role = Ev::new("r1", "bob", NODE_IP).role(Some("dev"), "execer", rules(EXEC_RULES));
    let (a, ch) = judge(&mut d, role);
    assert!(a.is_empty(), "a role alone grants nothing: {a:#?}");
    assert_eq!(ch.roles.len(), 1);
    assert_eq!(ch.roles[0].kind, "Role");
    assert_eq!(ch.roles[0].namespace, "dev");
    assert_eq!(ch.roles[0].name, "execer");
    assert!(!ch.roles[0].reasons.is_empty());
    let to_mallory = |id, ns| grant_in(id, ns, "exec-bob", ("Role", "execer"), users(&["mallory"]));
    let (a, _) = judge(&mut d, to_mallory("b1", "dev"));
    assert_eq!(rules_of(&a), ["CT1579-001"], "{a:#?}");
    assert_reason(&a[0], "pods/exec");
    assert_reason(&a[0], "RoleBinding dev/exec-bob");
    // The same role name in another namespace is not that role.
    let (a, _) = judge(&mut d, to_mallory("b2", "prod"));
    assert!(a.is_empty(), "{a:#?}");
}

#[test]
fn a_learned_cluster_role_decides_and_a_deleted_one_is_forgotten() {
    let mut d = detector();
    judge(&mut d, cluster_role("r1", "exec-all", rules(EXEC_RULES)));
    let (a, _) = judge(&mut d, grant("b1", "x", "exec-all", users(&["carol"])));
    assert_eq!(rules_of(&a), ["CT1579-001"]);
    // A low role is low.
    judge(&mut d, cluster_role("r2", "viewer", rules(VIEW_RULES)));
    let (a, ch) = judge(&mut d, grant("b2", "y", "viewer", users(&["carol"])));
    assert!(a.is_empty(), "{a:#?}");
    assert!(!ch.bindings[0].high_privilege);
    // Deleted: the role is unknown again, so a binding to it is not called high.
    let del = cluster_role("r3", "exec-all", rules(EXEC_RULES)).verb("delete");
    let (_, ch) = judge(&mut d, del);
    assert_eq!(ch.roles.len(), 1);
    assert!(ch.roles[0].deleted);
    let (a, ch) = judge(&mut d, grant("b3", "z", "exec-all", users(&["dave"])));
    assert!(a.is_empty(), "{a:#?}");
    assert!(!ch.bindings[0].high_privilege);
}

#[test]
fn a_refused_role_write_teaches_nothing() {
    let mut d = detector();
    let (_, ch) = judge(
        &mut d,
        cluster_role("r1", "exec-all", rules(EXEC_RULES)).refused(),
    );
    assert!(ch.roles.is_empty());
    assert_eq!(ch.rbac_levels.len(), 1, "the level is counted all the same");
    let (a, _) = judge(&mut d, grant("b1", "x", "exec-all", users(&["carol"])));
    assert!(a.is_empty(), "{a:#?}");
}

#[test]
fn other_groups_subresources_reads_and_other_resources_are_not_rbac() {
    let mut d = detector();
    let admin = || grant("x", "b", ADMIN, users(&["bob"])).by("bob", FAR_IP);
    let mut other_group = admin();
    other_group.group = Some("example.com".into());
    let mut sub = admin();
    sub.sub = Some("status".into());
    let read = admin().verb("get");
    let mut other_res = admin();
    other_res.resource = "configmaps".into();
    for (what, e) in [
        ("other group", other_group),
        ("subresource", sub),
        ("get", read),
        ("configmaps", other_res),
    ] {
        let (a, ch) = judge(&mut d, e);
        assert!(a.is_empty(), "{what}: {a:#?}");
        assert!(
            ch.bindings.is_empty() && ch.rbac_levels.is_empty(),
            "{what}"
        );
    }
    // update, patch and delete are writes.
    for verb in ["update", "patch"] {
        let e = grant(verb, &format!("b-{verb}"), ADMIN, users(&[verb])).verb(verb);
        let (a, _) = judge(&mut d, e);
        assert_eq!(rules_of(&a), ["CT1579-001"], "{verb}");
    }
}

#[test]
fn granting_anything_to_everyone_is_critical_but_a_known_low_role_is_not() {
    let mut d = detector();
    let everyone = group("system:authenticated");
    let (a, _) = judge(&mut d, grant("g1", "all-admin", ADMIN, everyone.clone()));
    assert_eq!(rules_of(&a), ["CT1579-002"]);
    assert_eq!(a[0].severity, Severity::Critical);
    assert_reason(&a[0], "Group system:authenticated");
    // A role never seen, to everyone: still critical.
    let anyone = group("system:unauthenticated");
    let (a, _) = judge(&mut d, grant("g2", "all-x", "never-seen", anyone));
    assert_eq!(rules_of(&a), ["CT1579-002"]);
    // A known low role (built-in view... system:discovery is low) to everyone: no alert.
    judge(&mut d, cluster_role("r", "viewer", rules(VIEW_RULES)));
    let (a, _) = judge(&mut d, grant("g3", "all-view", "viewer", everyone));
    assert!(a.is_empty(), "{a:#?}");
}

#[test]
fn system_masters_is_cluster_admin_whatever_the_role() {
    let mut d = detector();
    judge(&mut d, cluster_role("r", "viewer", rules(VIEW_RULES)));
    let (a, ch) = judge(&mut d, grant("m1", "m", "viewer", group("system:masters")));
    assert_eq!(rules_of(&a), ["CT1579-001"], "{a:#?}");
    assert_reason(&a[0], "Group system:masters is cluster-admin");
    assert!(ch.bindings[0].high_privilege);
    // With a high role, the masters reason is added to the role's.
    let (a, _) = judge(&mut d, grant("m2", "m2", ADMIN, group("system:masters")));
    assert_eq!(rules_of(&a), ["CT1579-001"]);
    let why = a[0].details["why_high_privilege"].as_array().unwrap();
    assert!(why.len() >= 2, "{why:?}");
    assert!(
        why.last()
            .unwrap()
            .as_str()
            .unwrap()
            .contains("system:masters"),
        "{why:?}"
    );
}

#[test]
fn approved_automation_grants_quietly_but_not_from_elsewhere() {
    let mut d = detector();
    let release = |id, name, ip| grant(id, name, ADMIN, users(&["release"])).by(CI, ip);
    let (a, _) = judge(&mut d, release("c1", "deploy", CI_IP));
    assert!(a.is_empty(), "{a:#?}");
    let (a, _) = judge(&mut d, release("c2", "deploy2", FAR_IP));
    assert_eq!(rules_of(&a), ["CT1579-001"]);
    assert_eq!(a[0].severity, Severity::Critical);
    // Even approved automation granting to everyone is critical.
    let everyone = group("system:authenticated");
    let (a, _) = judge(
        &mut d,
        grant("c3", "deploy3", ADMIN, everyone).by(CI, CI_IP),
    );
    assert_eq!(rules_of(&a), ["CT1579-002"]);
}

#[test]
fn only_newly_added_subjects_are_alerted() {
    let mut d = detector();
    let (a, _) = judge(&mut d, grant("u1", "admins", ADMIN, users(&["alice"])));
    assert_eq!(rules_of(&a), ["CT1579-001"]);
    let update = |id, role, subjects| grant(id, "admins", role, users(subjects)).verb("update");
    // The same subjects again (a label change): nothing new granted.
    let (a, ch) = judge(&mut d, update("u2", ADMIN, &["alice"]));
    assert!(a.is_empty(), "{a:#?}");
    assert_eq!(ch.bindings.len(), 1, "the state is still written");
    // One more subject: only that one is named.
    let (a, _) = judge(&mut d, update("u3", ADMIN, &["alice", "trent"]));
    assert_eq!(rules_of(&a), ["CT1579-001"]);
    let added = a[0].details["added_subjects"].as_array().unwrap();
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0]["name"], "trent");
    assert!(
        a[0].reason.contains("User trent") && !a[0].reason.contains("User alice"),
        "{}",
        a[0].reason
    );
    // The same subjects under another role are all new.
    let (a, _) = judge(&mut d, update("u4", "admin", &["alice", "trent"]));
    assert_eq!(rules_of(&a), ["CT1579-001"]);
    assert_eq!(a[0].details["added_subjects"].as_array().unwrap().len(), 2);
}

#[test]
fn a_patch_that_only_adds_subjects_is_judged_against_the_known_role() {
    let mut d = detector();
    judge(&mut d, grant("p0", "ops", ADMIN, users(&["alice"])));
    let p = patch("p1", "ops", json!({"subjects": users(&["alice", "zed"])}));
    let (a, ch) = judge(&mut d, p);
    assert_eq!(rules_of(&a), ["CT1579-001"], "{a:#?}");
    assert_eq!(a[0].details["added_subjects"].as_array().unwrap().len(), 1);
    assert_eq!(ch.bindings[0].role_name.as_deref(), Some("cluster-admin"));
    // A patch adding a subject to a binding never seen: the role is not known.
    let q = patch("p2", "mystery", json!({"subjects": users(&["zed"])}));
    let (a, _) = judge(&mut d, q);
    assert_eq!(rules_of(&a), ["CT1579-004"], "{a:#?}");
    assert_eq!(a[0].severity, Severity::Medium);
    assert_eq!(a[0].details["could_not_see"], json!(["roleRef"]));
}

#[test]
fn a_metadata_level_binding_write_is_blind_unless_approved_automation() {
    let mut d = detector();
    let hidden = |id, name, user, ip| {
        grant(id, name, ADMIN, users(&["x"]))
            .by(user, ip)
            .metadata_only()
    };
    let (a, ch) = judge(&mut d, hidden("m1", "hidden", "bob", NODE_IP));
    assert_eq!(rules_of(&a), ["CT1579-004"], "{a:#?}");
    assert_eq!(a[0].severity, Severity::Medium);
    assert_reason(&a[0], "Metadata level");
    assert_eq!(ch.bindings.len(), 1);
    assert!(!ch.bindings[0].high_privilege);
    let (a, _) = judge(&mut d, hidden("m2", "hidden2", "bob", FAR_IP));
    assert_eq!(a[0].severity, Severity::High);
    let (a, ch) = judge(&mut d, hidden("m3", "hidden3", CI, CI_IP));
    assert!(a.is_empty(), "{a:#?}");
    assert_eq!(ch.automation_blind.len(), 1);
    assert_eq!(ch.automation_blind[0].automation, "ci-deployer");
    // The previous state of a known binding is shown.
    judge(&mut d, grant("m4", "seen", "view", users(&["y"])));
    let blind = grant("m5", "seen", "view", users(&["y"])).verb("update");
    let (a, ch) = judge(&mut d, blind.metadata_only());
    assert_eq!(rules_of(&a), ["CT1579-004"]);
    assert_eq!(a[0].details["previous"]["role_ref"]["name"], "view");
    assert_eq!(ch.bindings[0].role_name.as_deref(), Some("view"));
}

#[test]
fn refused_grants_alert_unless_low_and_narrow_or_approved() {
    let mut d = detector();
    let refused = |id: &str, user: &str, ip: &str, role: &str, subjects: Value| {
        grant(id, id, role, subjects).by(user, ip).refused()
    };
    // High role, known source: medium.
    let (a, ch) = judge(
        &mut d,
        refused("f1", "bob", NODE_IP, ADMIN, users(&["bob"])),
    );
    assert_eq!(rules_of(&a), ["CT1579-003"], "{a:#?}");
    assert_eq!(a[0].severity, Severity::Medium);
    assert_reason(&a[0], "refused (HTTP 403)");
    assert!(ch.bindings.is_empty(), "a refused write changes no binding");
    // From an unknown address: high.
    let (a, _) = judge(&mut d, refused("f2", "bob", FAR_IP, ADMIN, users(&["bob"])));
    assert_eq!(a[0].severity, Severity::High);
    // A known low role to a named user: not worth an alert.
    judge(&mut d, cluster_role("r", "viewer", rules(VIEW_RULES)));
    let (a, _) = judge(
        &mut d,
        refused("f3", "bob", FAR_IP, "viewer", users(&["bob"])),
    );
    assert!(a.is_empty(), "{a:#?}");
    // ... but to everyone, or to system:masters, it is.
    let everyone = group("system:authenticated");
    let (a, _) = judge(
        &mut d,
        refused("f4", "bob", NODE_IP, "viewer", everyone.clone()),
    );
    assert_eq!(rules_of(&a), ["CT1579-003"]);
    assert_eq!(a[0].severity, Severity::High, "broad subjects are high");
    let masters = group("system:masters");
    let (a, _) = judge(&mut d, refused("f5", "bob", NODE_IP, "viewer", masters));
    assert_eq!(rules_of(&a), ["CT1579-003"]);
    assert_eq!(a[0].severity, Severity::Medium);
    // An unknown role refused: alerted.
    let (a, _) = judge(
        &mut d,
        refused("f6", "bob", NODE_IP, "never-seen", users(&["bob"])),
    );
    assert_eq!(rules_of(&a), ["CT1579-003"]);
    // Approved automation's refusals are its own business.
    let (a, _) = judge(&mut d, refused("f7", CI, CI_IP, ADMIN, everyone));
    assert!(a.is_empty(), "{a:#?}");
}

#[test]
fn a_deleted_binding_is_forgotten_and_its_subjects_are_new_again() {
    let mut d = detector();
    let to_alice = |id| grant(id, "tmp", ADMIN, users(&["alice"]));
    judge(&mut d, to_alice("d0"));
    let (a, ch) = judge(&mut d, binding_delete("d1", "tmp", 200));
    assert!(a.is_empty(), "{a:#?}");
    assert_eq!(ch.bindings.len(), 1);
    assert!(ch.bindings[0].deleted);
    assert_eq!(ch.bindings[0].role_name.as_deref(), Some("cluster-admin"));
    let (a, _) = judge(&mut d, to_alice("d2"));
    assert_eq!(
        rules_of(&a),
        ["CT1579-001"],
        "re-granted after delete: {a:#?}"
    );
    // A refused delete keeps the binding.
    let (_, ch) = judge(&mut d, binding_delete("d3", "tmp", 403));
    assert!(ch.bindings.is_empty());
    let (a, _) = judge(&mut d, to_alice("d4").verb("update"));
    assert!(a.is_empty(), "{a:#?}");
}

#[test]
fn subjects_are_named_with_their_namespace_only_when_they_have_one() {
    let mut d = detector();
    let builder = sa("kube-system", "builder");
    let (a, _) = judge(&mut d, grant("s1", "sa-admin", ADMIN, builder));
    assert_reason(
        &a[0],
        "to ServiceAccount kube-system/builder through ClusterRoleBinding sa-admin",
    );
    let mut subjects = users(&["ann"]);
    subjects[0]["namespace"] = json!("");
    let (a, _) = judge(&mut d, grant("s2", "ann-admin", ADMIN, subjects));
    assert_reason(&a[0], "to User ann through");
    let (a, _) = judge(&mut d, grant("s3", "two", ADMIN, users(&["u1", "u2"])));
    assert_reason(&a[0], "User u1, User u2");
}

#[test]
fn reading_secrets_is_high_only_through_a_cluster_role_binding() {
    let mut d = detector();
    let secrets = r#"[{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]"#;
    judge(&mut d, cluster_role("r", "secret-reader", rules(secrets)));
    let reader = ("ClusterRole", "secret-reader");
    let (a, _) = judge(&mut d, grant_in("s1", "dev", "rb", reader, users(&["x"])));
    assert!(a.is_empty(), "one namespace's secrets: {a:#?}");
    let (a, _) = judge(&mut d, grant("s2", "crb", "secret-reader", users(&["x"])));
    assert_eq!(rules_of(&a), ["CT1579-001"]);
    assert_reason(&a[0], "reads secrets");
}

#[test]
fn a_role_listed_in_the_policy_is_high() {
    let policy = format!("{POLICY}high_privilege_roles: [ClusterRole/deployer]\n");
    let mut d = Detector::new(Arc::new(Policy::from_yaml("test", &policy).unwrap()));
    let (a, _) = judge(&mut d, grant("l1", "dep", "deployer", users(&["x"])));
    assert_eq!(rules_of(&a), ["CT1579-001"], "{a:#?}");
    assert_reason(&a[0], "listed as high privilege");
}

#[test]
fn the_blind_automation_row_carries_the_event_as_its_example() {
    let mut d = detector();
    let e = grant("auto-1", "sync", ADMIN, users(&["x"]))
        .by(CI, CI_IP)
        .verb("update")
        .metadata_only();
    let (_, ch) = judge(&mut d, e);
    let ex = &ch.automation_blind[0].example;
    assert_eq!(ex["audit_id"], "auto-1");
    assert_eq!(ex["verb"], "update");
    assert_eq!(ex["username"], CI);
    assert_eq!(ex["source_ip"], CI_IP);
    assert_eq!(ex["level"], "Metadata");
    assert_eq!(ch.automation_blind[0].resource, "clusterrolebindings");
}

#[test]
fn a_binding_named_only_in_its_object_is_judged_under_that_name() {
    let mut d = detector();
    let mut e = grant("n1", "from-body", ADMIN, users(&["x"]));
    e.name = None; // a create: the URI and objectRef name no object yet
    let (a, ch) = judge(&mut d, e);
    assert_eq!(rules_of(&a), ["CT1579-001"]);
    assert_eq!(ch.bindings[0].name, "from-body");
    assert_reason(&a[0], "ClusterRoleBinding from-body");
    // The same for a role: learned under the name in its body.
    let mut r = cluster_role("n2", "exec-body", rules(EXEC_RULES));
    r.name = None;
    let (_, ch) = judge(&mut d, r);
    assert_eq!(ch.roles[0].name, "exec-body");
    let (a, _) = judge(&mut d, grant("n3", "b", "exec-body", users(&["y"])));
    assert_eq!(rules_of(&a), ["CT1579-001"]);
}

#[test]
fn a_namespaced_role_named_like_a_built_in_cluster_role_is_not_it() {
    let mut d = detector();
    let role = ("Role", ADMIN);
    let (a, ch) = judge(&mut d, grant_in("ns1", "dev", "rb", role, users(&["x"])));
    assert!(a.is_empty(), "{a:#?}");
    assert!(!ch.bindings[0].high_privilege);
    // Through a RoleBinding, the built-in ClusterRole is what it is.
    let cluster_role = ("ClusterRole", ADMIN);
    let (a, _) = judge(
        &mut d,
        grant_in("ns2", "dev", "rb2", cluster_role, users(&["x"])),
    );
    assert_eq!(rules_of(&a), ["CT1579-001"]);
    assert_reason(&a[0], "built-in ClusterRole cluster-admin");
}

#[test]
fn the_built_in_cluster_admin_binding_is_known_before_any_event() {
    let mut d = detector();
    let update = |id, subjects| grant(id, ADMIN, ADMIN, subjects).verb("update");
    // Re-applying the bootstrap binding as it is grants nothing new.
    let (a, _) = judge(&mut d, update("bi1", group("system:masters")));
    assert!(a.is_empty(), "{a:#?}");
    // Adding a user to it names that user only.
    let mut subjects = group("system:masters");
    subjects
        .as_array_mut()
        .unwrap()
        .push(json!({"apiGroup": G, "kind": "User", "name": "intruder"}));
    let (a, _) = judge(&mut d, update("bi2", subjects));
    assert_eq!(rules_of(&a), ["CT1579-001"]);
    assert_eq!(a[0].details["added_subjects"].as_array().unwrap().len(), 1);
    assert_eq!(a[0].details["added_subjects"][0]["name"], "intruder");
}

#[test]
fn a_metadata_level_role_write_keeps_what_was_known() {
    let mut d = detector();
    judge(&mut d, cluster_role("k1", "exec-all", rules(EXEC_RULES)));
    let blind = cluster_role("k2", "exec-all", rules(VIEW_RULES))
        .metadata_only()
        .verb("update");
    let (_, ch) = judge(&mut d, blind);
    assert!(ch.roles.is_empty(), "nothing seen, nothing learned");
    assert_eq!(ch.rbac_levels[0].level, "Metadata");
    let (a, _) = judge(&mut d, grant("k3", "b", "exec-all", users(&["x"])));
    assert_eq!(rules_of(&a), ["CT1579-001"], "still high: {a:#?}");
}

#[test]
fn approved_automation_adding_subjects_to_an_unseen_binding_is_not_blind() {
    let mut d = detector();
    let add =
        |id, user, ip, who| patch(id, "unseen", json!({"subjects": users(&[who])})).by(user, ip);
    let (a, _) = judge(&mut d, add("ap1", CI, CI_IP, "zed"));
    assert!(a.is_empty(), "{a:#?}");
    let (a, _) = judge(&mut d, add("ap2", "bob", FAR_IP, "yan"));
    assert_eq!(rules_of(&a), ["CT1579-004"]);
    assert_eq!(a[0].severity, Severity::High, "from an unknown address");
}

/// A Request-level JSON patch of a role (no response object logged).
fn role_json_patch(id: &str, ns: Option<&str>, name: &str, ops: Value) -> Ev {
    let mut p = patch(id, name, ops);
    p.resource = if ns.is_some() {
        "roles"
    } else {
        "clusterroles"
    }
    .into();
    p.ns = ns.map(str::to_owned);
    p
}

#[test]
fn a_patch_of_a_built_in_cluster_role_applies_to_its_built_in_rules() {
    let mut d = detector();
    let add_exec = json!([{"op": "add", "path": "/rules/-",
        "value": {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}}]);
    let (_, ch) = judge(&mut d, role_json_patch("bp1", None, "view", add_exec));
    let rules = &ch.roles[0].rules;
    assert!(
        rules.len() > 1,
        "view's own rules are kept, the patch adds one: {rules:?}"
    );
    assert!(
        rules.iter().any(|r| r.resources == ["pods/exec"]),
        "{rules:?}"
    );
    let (a, _) = judge(&mut d, grant("bp2", "v", "view", users(&["x"])));
    assert_eq!(rules_of(&a), ["CT1579-001"], "view can exec now: {a:#?}");
    // A namespaced Role that shares a built-in ClusterRole's name starts from
    // nothing: patching a read-only rule into it grants nothing high.
    let add_view = json!([{"op": "add", "path": "/rules/-",
        "value": {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}}]);
    let (_, ch) = judge(
        &mut d,
        role_json_patch("bp3", Some("dev"), "cluster-admin", add_view),
    );
    assert!(
        ch.roles.iter().all(|r| r.reasons.is_empty()),
        "{:?}",
        ch.roles
    );
    let role = ("Role", ADMIN);
    let (a, _) = judge(&mut d, grant_in("bp4", "dev", "rb", role, users(&["x"])));
    assert!(a.is_empty(), "{a:#?}");
}

#[test]
fn unreadable_rule_fields_of_a_role_write_are_counted() {
    let mut d = detector();
    let bad = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": [7]}]);
    let (_, ch) = judge(&mut d, cluster_role("u1", "odd", bad));
    assert!(ch.unreadable_fields >= 1, "{}", ch.unreadable_fields);
    let (_, ch) = judge(&mut d, cluster_role("u2", "fine", rules(VIEW_RULES)));
    assert_eq!(ch.unreadable_fields, 0);
}

#[path = "an1579_binding_tests.rs"]
mod binding;
