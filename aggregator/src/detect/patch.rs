//! What an RBAC write left behind, whatever the shape of its objects:
//!
//! 1. the `responseObject`, when logged (RequestResponse level);
//! 2. a create/update's `requestObject`;
//! 3. a patch applied to the state the aggregator knows (learned from the
//!    stream, or the built-in bootstrap objects): JSON patch (RFC 6902, the
//!    `json-patch` crate), merge patch (RFC 7386), strategic merge patch and
//!    server-side apply;
//! 4. else every subject, roleRef and rule the patch adds, judged alone.
//!
//! The audit event does not carry the patch's Content-Type: the type is read
//! from the body (an array is a JSON patch; `$` directives mean strategic
//! merge; a full object with `apiVersion`/`kind`, or `force=` in the URI, is
//! server-side apply; other objects are merge patches). For RBAC objects the
//! three object forms agree: `subjects` and `rules` have no merge key, so
//! strategic merge and apply replace them whole, as a merge patch does.
//! Fields that cannot be read are named in [`Written::unreadable`].

use serde::Serialize;
use serde_json::{Map, Value};

use crate::audit::{
    AuditEvent, K8sObject, RoleRef, object_value, read_object, read_rule, read_subject,
};

/// Where the state came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateFrom {
    ResponseObject,
    RequestObject,
    /// The patch applied to the known state.
    PatchApplied,
    /// Only what the patch adds (the rest of the object is not known).
    PatchAdditions,
    /// Nothing readable (Metadata level, or no object logged).
    Nothing,
}

/// The patch type, as read from the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

/// The state a write left behind (or, for [`StateFrom::PatchAdditions`],
/// what it adds).
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub object: K8sObject,
    pub from: StateFrom,
    pub patch_type: Option<PatchType>,
    pub unreadable: Vec<String>,
}

impl Written {
    /// The whole object is known (not only additions).
    pub fn complete(&self) -> bool {
        matches!(
            self.from,
            StateFrom::ResponseObject | StateFrom::RequestObject | StateFrom::PatchApplied
        )
    }
}

/// Whether an object is the RBAC object itself (not a `Status`, not empty).
fn is_rbac_body(o: &K8sObject) -> bool {
    o.kind.as_deref() != Some("Status")
        && (o.role_ref.is_some() || o.subjects.is_some() || o.rules.is_some())
}

fn has_directive(v: &Value, depth: usize) -> bool {
    if depth > 32 {
        return false;
    }
    match v {
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| k.starts_with('$') || has_directive(v, depth + 1)),
        Value::Array(a) => a.iter().any(|v| has_directive(v, depth + 1)),
        _ => false,
    }
}

fn patch_type(ev: &AuditEvent, body: &Value) -> PatchType {
    match body {
        Value::Array(_) => PatchType::Json,
        b if has_directive(b, 0) => PatchType::StrategicMerge,
        Value::Object(m)
            if ev.request_uri.contains("force=")
                || (m.contains_key("apiVersion") && m.contains_key("kind")) =>
        {
            PatchType::Apply
        }
        _ => PatchType::Merge,
    }
}

/// Strategic merge for objects whose lists have no merge key (RBAC objects):
/// maps merge, `null` deletes, lists and scalars replace, `$patch: replace`
/// and `$patch: delete` are honoured and other directives are dropped.
pub fn strategic_merge(doc: &mut Value, patch: &Value, depth: usize) {
    let Value::Object(p) = patch else {
        *doc = strip_directives(patch, depth);
        return;
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("delete") => {
            *doc = Value::Null;
            return;
        }
        Some("replace") => {
            *doc = strip_directives(patch, depth);
            return;
        }
        _ => {}
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Value::Object(d) = doc else { return };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            d.remove(k);
        } else if v.is_object() && depth < 32 {
            strategic_merge(d.entry(k.clone()).or_insert(Value::Null), v, depth + 1);
        } else {
            d.insert(k.clone(), strip_directives(v, depth));
        }
    }
}

fn strip_directives(v: &Value, depth: usize) -> Value {
    if depth > 32 {
        return Value::Null;
    }
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v, depth + 1)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| strip_directives(v, depth + 1)).collect()),
        v => v.clone(),
    }
}

/// Applies a patch of type `t` to `known`.
fn apply(t: PatchType, known: &Value, body: &Value) -> Result<Value, String> {
    let mut doc = known.clone();
    match t {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(body.clone())
                .map_err(|e| format!("not an RFC 6902 JSON patch: {e}"))?;
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| format!("the JSON patch does not apply to the known state: {e}"))?;
        }
        PatchType::Merge | PatchType::Apply => json_patch::merge(&mut doc, body),
        PatchType::StrategicMerge => strategic_merge(&mut doc, body, 0),
    }
    Ok(doc)
}

/// What a JSON patch adds, op by op, when there is nothing to apply it to.
fn json_patch_additions(body: &[Value], out: &mut K8sObject) {
    for (i, op) in body.iter().enumerate() {
        let at = format!("requestObject[{i}]");
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
        match kind {
            "add" | "replace" => {}
            "remove" | "test" => continue,
            "copy" | "move" => {
                if path.starts_with("/subjects")
                    || path.starts_with("/roleRef")
                    || path.starts_with("/rules")
                {
                    out.unreadable.push(format!(
                        "{at}: {kind} into {path} from {}: the value is not known",
                        op.get("from").and_then(Value::as_str).unwrap_or("?")
                    ));
                }
                continue;
            }
            other => {
                out.unreadable
                    .push(format!("{at}: unknown op {other:?} on {path:?}"));
                continue;
            }
        }
        let Some(value) = op.get("value") else {
            out.unreadable.push(format!("{at}: {kind} without a value"));
            continue;
        };
        let parts: Vec<&str> = path.split('/').skip(1).collect();
        match parts.as_slice() {
            [] => {
                // The whole document replaced: read it as the object.
                let o = read_object(value, &format!("{at}.value"));
                out.unreadable.extend(o.unreadable);
                if o.role_ref.is_some() {
                    out.role_ref = o.role_ref;
                }
                out.subjects
                    .get_or_insert_with(Vec::new)
                    .extend(o.subjects.into_iter().flatten());
                out.rules
                    .get_or_insert_with(Vec::new)
                    .extend(o.rules.into_iter().flatten());
            }
            ["subjects"] => match value.as_array() {
                Some(items) => {
                    for (j, s) in items.iter().enumerate() {
                        let s = read_subject(s, &format!("{at}.value[{j}]"), &mut out.unreadable);
                        out.subjects.get_or_insert_with(Vec::new).push(s);
                    }
                }
                None => out
                    .unreadable
                    .push(format!("{at}.value: expected an array of subjects")),
            },
            ["subjects", _] => {
                let s = read_subject(value, &format!("{at}.value"), &mut out.unreadable);
                out.subjects.get_or_insert_with(Vec::new).push(s);
            }
            ["subjects", idx, field] => {
                // One field of a subject changed: the subject is not fully known.
                out.unreadable.push(format!(
                    "{at}: {kind} of subjects/{idx}/{field} = {value}: the rest of the subject is not known"
                ));
                out.subjects
                    .get_or_insert_with(Vec::new)
                    .push(crate::audit::Subject {
                        kind: "Unreadable".to_owned(),
                        name: format!("{at} ({field} = {value})"),
                        namespace: None,
                    });
            }
            ["roleRef"] => {
                let o = read_object(&serde_json::json!({"roleRef": value}), &at);
                out.unreadable.extend(o.unreadable);
                out.role_ref = o.role_ref;
            }
            ["roleRef", "name"] => {
                let r = out.role_ref.get_or_insert_with(RoleRef::default);
                r.name = value.as_str().unwrap_or_default().to_owned();
            }
            ["roleRef", "kind"] => {
                let r = out.role_ref.get_or_insert_with(RoleRef::default);
                r.kind = value.as_str().unwrap_or_default().to_owned();
            }
            ["rules"] => match value.as_array() {
                Some(items) => {
                    for (j, r) in items.iter().enumerate() {
                        if let Some(r) =
                            read_rule(r, &format!("{at}.value[{j}]"), &mut out.unreadable)
                        {
                            out.rules.get_or_insert_with(Vec::new).push(r);
                        }
                    }
                }
                None => out
                    .unreadable
                    .push(format!("{at}.value: expected an array of rules")),
            },
            ["rules", _] => {
                if let Some(r) = read_rule(value, &format!("{at}.value"), &mut out.unreadable) {
                    out.rules.get_or_insert_with(Vec::new).push(r);
                }
            }
            ["rules", _, field] => {
                out.unreadable.push(format!(
                    "{at}: {kind} of rules/../{field}: the rest of the rule is not known"
                ));
            }
            _ => {} // metadata, labels, annotations: grant nothing
        }
    }
}

/// Works out what an RBAC write left behind. `known` is the object's state
/// as the aggregator knows it (`{"roleRef":..,"subjects":[..]}` or
/// `{"rules":[..]}`).
pub fn written(ev: &AuditEvent, known: Option<&Value>) -> Written {
    let mut unreadable = Vec::new();
    if let Some(raw) = &ev.response_object {
        let mut resp_unreadable = Vec::new();
        if let Some(v) = object_value(raw, "responseObject", &mut resp_unreadable) {
            let o = read_object(&v, "responseObject");
            if is_rbac_body(&o) {
                resp_unreadable.extend(o.unreadable.iter().cloned());
                return Written {
                    unreadable: resp_unreadable,
                    object: o,
                    from: StateFrom::ResponseObject,
                    patch_type: None,
                };
            }
        }
        unreadable.extend(resp_unreadable);
    }
    let nothing = |unreadable| Written {
        object: K8sObject::default(),
        from: StateFrom::Nothing,
        patch_type: None,
        unreadable,
    };
    let Some(raw) = &ev.request_object else {
        return nothing(unreadable);
    };
    let Some(body) = object_value(raw, "requestObject", &mut unreadable) else {
        return nothing(unreadable);
    };
    if ev.verb != "patch" {
        let o = read_object(&body, "requestObject");
        unreadable.extend(o.unreadable.iter().cloned());
        let from = if is_rbac_body(&o) {
            StateFrom::RequestObject
        } else {
            StateFrom::Nothing
        };
        return Written {
            object: o,
            from,
            patch_type: None,
            unreadable,
        };
    }
    let t = patch_type(ev, &body);
    if let Some(known) = known {
        match apply(t, known, &body) {
            Ok(doc) => {
                let o = read_object(&doc, "patched state");
                unreadable.extend(o.unreadable.iter().cloned());
                return Written {
                    object: o,
                    from: StateFrom::PatchApplied,
                    patch_type: Some(t),
                    unreadable,
                };
            }
            Err(e) => unreadable.push(format!("requestObject: {e}")),
        }
    }
    let mut o = match (&body, t) {
        (Value::Array(ops), _) => {
            let mut o = K8sObject::default();
            json_patch_additions(ops, &mut o);
            o
        }
        (b, PatchType::StrategicMerge) => read_object(&strip_directives(b, 0), "requestObject"),
        (b, _) => read_object(b, "requestObject"),
    };
    unreadable.append(&mut o.unreadable);
    o.unreadable = unreadable.clone();
    Written {
        object: o,
        from: StateFrom::PatchAdditions,
        patch_type: Some(t),
        unreadable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::RawObject;
    use serde_json::json;

    fn ev(verb: &str, uri: &str, req: Option<Value>, resp: Option<Value>) -> AuditEvent {
        let mut e: AuditEvent = serde_json::from_value(json!({
            "level": "RequestResponse", "auditID": "a", "stage": "ResponseComplete",
            "requestURI": uri, "verb": verb, "user": {"username": "u"},
        }))
        .unwrap();
        e.request_object = req.as_ref().map(RawObject::from_value);
        e.response_object = resp.as_ref().map(RawObject::from_value);
        e
    }

    fn known() -> Value {
        json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
               "subjects": [{"kind": "Group", "name": "system:masters"}]})
    }

    fn names(w: &Written) -> Vec<String> {
        w.object
            .subjects
            .iter()
            .flatten()
            .map(|s| s.name.clone())
            .collect()
    }

    const URI: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/cluster-admin?fieldManager=kubectl-patch";

    #[test]
    fn the_response_object_wins() {
        let resp = json!({"kind": "ClusterRoleBinding", "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [{"kind": "User", "name": "a"}]});
        let w = written(
            &ev(
                "patch",
                URI,
                Some(
                    json!([{"op": "add", "path": "/subjects/-", "value": {"kind": "User", "name": "b"}}]),
                ),
                Some(resp),
            ),
            Some(&known()),
        );
        assert_eq!(
            (w.from, names(&w)),
            (StateFrom::ResponseObject, vec!["a".to_owned()])
        );
    }

    #[test]
    fn json_patch_applies_to_the_known_state() {
        let p = json!([{"op": "add", "path": "/subjects/-", "value": {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}}]);
        let w = written(&ev("patch", URI, Some(p), None), Some(&known()));
        assert_eq!(w.from, StateFrom::PatchApplied);
        assert_eq!(w.patch_type, Some(PatchType::Json));
        assert_eq!(names(&w), ["system:masters", "mallory"]);
        assert_eq!(w.object.role_ref.unwrap().name, "cluster-admin");
        assert!(w.unreadable.is_empty());
    }

    #[test]
    fn json_patch_alone_yields_what_it_adds() {
        let p = json!([
            {"op": "test", "path": "/metadata/name", "value": "x"},
            {"op": "add", "path": "/subjects/0", "value": {"kind": "User", "name": "mallory"}},
            {"op": "add", "path": "/subjects", "value": [{"kind": "Group", "name": "system:authenticated"}]},
            {"op": "copy", "from": "/metadata/labels/x", "path": "/subjects/1"},
            {"op": "replace", "path": "/subjects/2/name", "value": "eve"}
        ]);
        let w = written(&ev("patch", URI, Some(p), None), None);
        assert_eq!(w.from, StateFrom::PatchAdditions);
        assert_eq!(&names(&w)[..2], ["mallory", "system:authenticated"]);
        assert_eq!(w.object.subjects.as_ref().unwrap()[2].kind, "Unreadable");
        assert_eq!(w.unreadable.len(), 2, "{:?}", w.unreadable);
        assert!(
            w.unreadable[0].contains("copy into /subjects/1"),
            "{:?}",
            w.unreadable
        );
    }

    #[test]
    fn a_whole_document_replace_is_read_as_the_object() {
        let p = json!([{"op": "replace", "path": "", "value": {"kind": "ClusterRoleBinding",
            "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "User", "name": "eve"}]}}]);
        let w = written(&ev("patch", URI, Some(p.clone()), None), None);
        assert_eq!(
            (w.from, names(&w)),
            (StateFrom::PatchAdditions, vec!["eve".to_owned()])
        );
        assert_eq!(w.object.role_ref.unwrap().name, "cluster-admin");
        let w = written(&ev("patch", URI, Some(p), None), Some(&known()));
        assert_eq!(
            (w.from, names(&w)),
            (StateFrom::PatchApplied, vec!["eve".to_owned()])
        );
    }

    #[test]
    fn a_json_patch_that_does_not_apply_falls_back_to_its_additions() {
        let p = json!([
            {"op": "test", "path": "/subjects/0/name", "value": "nobody"},
            {"op": "add", "path": "/subjects/-", "value": {"kind": "User", "name": "mallory"}}
        ]);
        let w = written(&ev("patch", URI, Some(p), None), Some(&known()));
        assert_eq!(w.from, StateFrom::PatchAdditions);
        assert_eq!(names(&w), ["mallory"]);
        assert!(
            w.unreadable[0].contains("does not apply"),
            "{:?}",
            w.unreadable
        );
    }

    #[test]
    fn merge_patch_replaces_subjects_and_null_deletes() {
        let p = json!({"subjects": [{"kind": "User", "name": "a"}, {"kind": "User", "name": "b"}], "metadata": {"labels": null}});
        let w = written(&ev("patch", URI, Some(p), None), Some(&known()));
        assert_eq!(
            (w.from, w.patch_type),
            (StateFrom::PatchApplied, Some(PatchType::Merge))
        );
        assert_eq!(names(&w), ["a", "b"]);
        let w = written(
            &ev("patch", URI, Some(json!({"subjects": null})), None),
            Some(&known()),
        );
        assert!(names(&w).is_empty());
    }

    #[test]
    fn strategic_merge_honours_directives() {
        let p = json!({"$setElementOrder/subjects": [{"name": "a"}], "subjects": [{"kind": "User", "name": "a"}], "metadata": {"$patch": "delete"}});
        let w = written(&ev("patch", URI, Some(p.clone()), None), Some(&known()));
        assert_eq!(w.patch_type, Some(PatchType::StrategicMerge));
        assert_eq!(names(&w), ["a"]);
        let mut doc = json!({"roleRef": {"name": "x"}, "metadata": {"name": "n"}});
        strategic_merge(&mut doc, &p, 0);
        assert_eq!(doc["metadata"], Value::Null);
        strategic_merge(
            &mut doc,
            &json!({"roleRef": {"$patch": "replace", "kind": "Role"}}),
            0,
        );
        assert_eq!(doc["roleRef"], json!({"kind": "Role"}));
    }

    #[test]
    fn server_side_apply_is_read_from_the_full_object() {
        let p = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "ops"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "User", "name": "ops"}, {"kind": "User", "name": "eve"}]});
        let uri = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/ops?fieldManager=kubectl&fieldValidation=Strict&force=false";
        let w = written(&ev("patch", uri, Some(p.clone()), None), None);
        assert_eq!(
            (w.from, w.patch_type),
            (StateFrom::PatchAdditions, Some(PatchType::Apply))
        );
        assert_eq!(names(&w), ["ops", "eve"]);
        assert_eq!(w.object.role_ref.unwrap().name, "cluster-admin");
        let w = written(&ev("patch", uri, Some(p), None), Some(&known()));
        assert_eq!(
            (w.from, names(&w)),
            (
                StateFrom::PatchApplied,
                vec!["ops".to_owned(), "eve".to_owned()]
            )
        );
    }

    #[test]
    fn role_patches_add_rules() {
        let p = json!([{"op": "add", "path": "/rules/-", "value": {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["escalate"]}}]);
        let w = written(
            &ev("patch", URI, Some(p.clone()), None),
            Some(&json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})),
        );
        assert_eq!(w.object.rules.unwrap().len(), 2);
        let w = written(&ev("patch", URI, Some(p), None), None);
        assert_eq!(w.object.rules.unwrap()[0].verbs, ["escalate"]);
    }

    #[test]
    fn a_status_response_is_not_the_object_and_metadata_gives_nothing() {
        let status =
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403});
        let body = json!({"kind": "ClusterRoleBinding", "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "User", "name": "x"}]});
        let w = written(
            &ev(
                "create",
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                Some(body),
                Some(status),
            ),
            None,
        );
        assert_eq!(
            (w.from, names(&w)),
            (StateFrom::RequestObject, vec!["x".to_owned()])
        );
        let w = written(&ev("create", "/x", None, None), None);
        assert_eq!(w.from, StateFrom::Nothing);
    }

    #[test]
    fn an_odd_patch_body_is_named_never_dropped() {
        for body in [json!(42), json!([1, {"op": 3}]), json!("not: [yaml")] {
            let w = written(&ev("patch", URI, Some(body.clone()), None), Some(&known()));
            assert!(!w.unreadable.is_empty(), "{body}: {w:?}");
        }
    }
}

#[cfg(test)]
#[path = "patch_tests.rs"]
mod more_tests;
