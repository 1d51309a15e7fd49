//! What an RBAC patch leaves behind, beyond `patch.rs`'s own tests: JSON
//! patches on `roleRef` and `rules` with nothing known to apply them to, the
//! patch type as read from the body, and the depth bound on nested patches.

use serde_json::{Value, json};

use super::*;
use crate::audit::RawObject;

fn patch(uri: &str, body: Value) -> AuditEvent {
    let mut e: AuditEvent = serde_json::from_value(json!({
        "level": "Request", "auditID": "a", "stage": "ResponseComplete",
        "requestURI": uri, "verb": "patch", "user": {"username": "u"},
    }))
    .unwrap();
    e.request_object = Some(RawObject::from_value(&body));
    e
}

const URI: &str = "/apis/rbac.authorization.k8s.io/v1/clusterroles/ops?fieldManager=kubectl-patch";

fn alone(body: Value) -> Written {
    written(&patch(URI, body), None)
}

#[test]
fn json_patch_ops_on_the_role_ref_and_rules_are_read_alone() {
    let w = alone(json!([
        {"op": "add", "path": "/roleRef", "value": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}},
        {"op": "add", "path": "/rules", "value": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]},
    ]));
    assert_eq!(w.from, StateFrom::PatchAdditions);
    let r = w.object.role_ref.as_ref().unwrap();
    assert_eq!((r.kind.as_str(), r.name.as_str()), ("ClusterRole", "view"));
    assert_eq!(w.object.rules.as_ref().unwrap()[0].resources, ["secrets"]);
    assert!(w.unreadable.is_empty(), "{:?}", w.unreadable);

    // One field at a time.
    let w = alone(json!([
        {"op": "replace", "path": "/roleRef/name", "value": "cluster-admin"},
        {"op": "replace", "path": "/roleRef/kind", "value": "ClusterRole"},
    ]));
    let r = w.object.role_ref.unwrap();
    assert_eq!(
        (r.kind.as_str(), r.name.as_str()),
        ("ClusterRole", "cluster-admin")
    );

    // Not an array where one is expected, one field of a rule, values
    // copied from elsewhere: named, never taken as nothing.
    let w = alone(json!([
        {"op": "add", "path": "/rules", "value": {"verbs": ["*"]}},
        {"op": "add", "path": "/subjects", "value": "eve"},
        {"op": "replace", "path": "/rules/0/verbs", "value": ["*"]},
        {"op": "copy", "from": "/metadata/annotations/x", "path": "/rules/1"},
        {"op": "move", "from": "/metadata/labels/y", "path": "/roleRef"},
        {"op": "copy", "from": "/metadata/labels/z", "path": "/metadata/labels/w"},
        {"op": "frobnicate", "path": "/subjects/0"},
        {"op": "add", "path": "/subjects/-"},
    ]));
    let u = &w.unreadable;
    assert_eq!(u.len(), 7, "{u:#?}");
    assert!(u[0].contains("expected an array of rules"), "{u:#?}");
    assert!(u[1].contains("expected an array of subjects"), "{u:#?}");
    assert!(u[2].contains("rules/../verbs"), "{u:#?}");
    assert!(u[3].contains("copy into /rules/1"), "{u:#?}");
    assert!(u[4].contains("move into /roleRef"), "{u:#?}");
    assert!(u[5].contains("unknown op \"frobnicate\""), "{u:#?}");
    assert!(u[6].contains("add without a value"), "{u:#?}");
    assert!(w.object.rules.is_none() && w.object.role_ref.is_none());
}

#[test]
fn the_patch_type_is_read_from_the_body() {
    let t = |uri: &str, body: Value| alone_at(uri, body).patch_type.unwrap();
    let full = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "ops"}, "rules": []});
    // Server-side apply: a full object, or `force=` in the URI.
    assert_eq!(t(URI, full), PatchType::Apply);
    assert_eq!(
        t(&format!("{URI}&force=true"), json!({"rules": []})),
        PatchType::Apply
    );
    // Half a header is a merge patch.
    assert_eq!(
        t(URI, json!({"kind": "ClusterRole", "rules": []})),
        PatchType::Merge
    );
    assert_eq!(
        t(URI, json!({"apiVersion": "v1", "rules": []})),
        PatchType::Merge
    );
    // A directive inside a list item makes it strategic.
    assert_eq!(
        t(
            URI,
            json!({"rules": [{"$patch": "delete", "verbs": ["get"]}]})
        ),
        PatchType::StrategicMerge
    );
}

fn alone_at(uri: &str, body: Value) -> Written {
    written(&patch(uri, body), None)
}

/// `{"a": {"a": … leaf}}`, `n` maps deep above `leaf`.
fn nest(n: usize, leaf: Value) -> Value {
    (0..n).fold(leaf, |v, _| json!({ "a": v }))
}

#[test]
fn directives_are_looked_for_32_levels_deep_and_no_deeper() {
    let t = |role_ref: Value| alone(json!({ "roleRef": role_ref })).patch_type.unwrap();
    // `roleRef` is depth 1 (the body is depth 0): the map holding `$patch`
    // at depth 32 is looked at, one at depth 33 is not.
    let x = || json!({"$patch": "replace"});
    assert_eq!(t(nest(31, x())), PatchType::StrategicMerge);
    assert_eq!(t(nest(32, x())), PatchType::Merge);
    // Lists count as levels too.
    let lists = |n: usize| (0..n).fold(x(), |v, _| json!([v]));
    assert_eq!(t(lists(31)), PatchType::StrategicMerge);
    assert_eq!(t(lists(32)), PatchType::Merge);
}

#[test]
fn a_strategic_merge_stops_merging_at_depth_32_and_drops_what_is_deeper() {
    // Every level of the document has `old`, every level of the patch `new`.
    let level =
        |key: &str, n: usize| (0..n).fold(json!({ key: 1 }), |v, _| json!({ key: 1, "a": v }));
    let mut doc = level("old", 40);
    strategic_merge(&mut doc, &level("new", 40), 0);
    let at = |d: usize| {
        let p: String = "/a".repeat(d);
        doc.pointer(&p).cloned().unwrap_or(Value::Null)
    };
    // Merged down to depth 32.
    assert_eq!(at(32)["old"], 1);
    assert_eq!(at(32)["new"], 1);
    // Below it the patch replaces the document, and its own part deeper
    // than 32 levels is dropped.
    assert_eq!(at(33), json!({"new": null, "a": null}));
    // A list patch replaces whole, stripped at the same depth.
    let lists = (0..40).fold(json!(1), |v, _| json!([v]));
    let mut doc = json!({});
    strategic_merge(&mut doc, &lists, 0);
    let mut expect = json!([null]);
    for _ in 0..32 {
        expect = json!([expect]);
    }
    assert_eq!(doc, expect);
}

/// A response object is the written state only when it is the RBAC object:
/// a `Status`, or an object with neither roleRef, subjects nor rules (a
/// trimmed response), leaves the request to say what was written.
#[test]
fn a_response_without_the_rbac_fields_or_a_status_is_not_the_written_state() {
    let create = |resp: Value| {
        let mut e: AuditEvent = serde_json::from_value(json!({
            "level": "RequestResponse", "auditID": "c", "stage": "ResponseComplete",
            "requestURI": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            "verb": "create", "user": {"username": "u"},
        }))
        .unwrap();
        e.request_object = Some(RawObject::from_value(&json!({
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "b"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "User", "name": "mallory"}],
        })));
        e.response_object = Some(RawObject::from_value(&resp));
        written(&e, None)
    };
    for resp in [
        json!({"kind": "ClusterRoleBinding", "metadata": {"name": "b"}}),
        json!({"kind": "Status", "status": "Success", "rules": []}),
    ] {
        let w = create(resp.clone());
        assert_eq!(w.from, StateFrom::RequestObject, "{resp}");
        assert_eq!(
            w.object.role_ref.as_ref().map(|r| r.name.as_str()),
            Some("cluster-admin")
        );
    }
    let full = create(json!({
        "kind": "ClusterRoleBinding", "metadata": {"name": "b"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
    }));
    assert_eq!(full.from, StateFrom::ResponseObject);
}
