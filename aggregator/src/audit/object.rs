//! Reading RBAC objects out of raw `requestObject`/`responseObject` JSON,
//! field by field: a field with an unexpected shape is skipped and named, the
//! rest is still read. Nothing here fails.

use serde_json::Value;

use super::{K8sObject, ObjectMeta, PolicyRule, RawObject, RoleRef, Subject};

/// The largest object (JSON text) interpreted; bigger ones are named unreadable.
/// The webhook body limit bounds it already; this bounds the YAML path too.
pub const MAX_OBJECT_BYTES: usize = 4 << 20;

/// The JSON value of a raw object. A string holding JSON or YAML (an apply
/// patch logged as text) is read as what it holds. `Err` names why not.
pub fn object_value(raw: &RawObject) -> Result<Value, String> {
    if raw.json().len() > MAX_OBJECT_BYTES {
        return Err(format!(
            "larger than {MAX_OBJECT_BYTES} bytes ({})",
            raw.json().len()
        ));
    }
    let v = raw.value().ok_or_else(|| "not JSON".to_owned())?;
    match v {
        Value::String(s) => serde_json::from_str(&s)
            .or_else(|_| serde_norway::from_str::<Value>(&s))
            .map_err(|e| format!("a string that is neither JSON nor YAML: {e}")),
        v => Ok(v),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string_field(v: Option<&Value>, at: &str, field: &str, u: &mut Vec<String>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => {
            u.push(format!(
                "{at}.{field}: expected a string, found {}",
                type_name(other)
            ));
            None
        }
    }
}

impl super::AuditEvent {
    /// The event's object as the detector reads it: the response when logged,
    /// else the request (`None` when neither is an object that can be read).
    pub fn object(&self) -> Option<K8sObject> {
        [self.response_object.as_ref(), self.request_object.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|raw| {
                let v = object_value(raw).ok()?;
                v.is_object().then(|| read_object(&v, "object"))
            })
    }
}

/// Reads what RBAC detection needs from one object; `at` prefixes the names
/// of unreadable fields (`responseObject`).
pub fn read_object(v: &Value, at: &str) -> K8sObject {
    let mut out = K8sObject::default();
    let Some(map) = v.as_object() else {
        out.unreadable
            .push(format!("{at}: expected an object, found {}", type_name(v)));
        return out;
    };
    let u = &mut out.unreadable;
    let kind = string_field(map.get("kind"), at, "kind", u);
    let mut metadata = ObjectMeta::default();
    match map.get("metadata") {
        Some(Value::Object(m)) => {
            metadata.name = string_field(m.get("name"), at, "metadata.name", u);
            metadata.namespace = string_field(m.get("namespace"), at, "metadata.namespace", u);
            metadata.uid = string_field(m.get("uid"), at, "metadata.uid", u);
        }
        None | Some(Value::Null) => {}
        Some(other) => u.push(format!(
            "{at}.metadata: expected an object, found {}",
            type_name(other)
        )),
    }
    let role_ref = match map.get("roleRef") {
        None | Some(Value::Null) => None,
        Some(Value::Object(r)) => Some(RoleRef {
            kind: string_field(r.get("kind"), at, "roleRef.kind", u).unwrap_or_default(),
            name: string_field(r.get("name"), at, "roleRef.name", u).unwrap_or_default(),
        }),
        Some(other) => {
            u.push(format!(
                "{at}.roleRef: expected an object, found {}",
                type_name(other)
            ));
            None
        }
    };
    out.kind = kind;
    out.metadata = metadata;
    // Kept as JSON for the cluster facts and lineage (Node, TokenRequest,
    // Endpoints/EndpointSlice); read where needed.
    out.spec = map.get("spec").cloned();
    out.status = map.get("status").cloned();
    out.endpoints = map.get("endpoints").cloned();
    out.subsets = map.get("subsets").cloned();
    out.role_ref = role_ref;
    match map.get("subjects") {
        None => {}
        Some(Value::Null) => out.subjects = Some(Vec::new()),
        Some(Value::Array(items)) => {
            let mut subjects = Vec::with_capacity(items.len());
            for (i, s) in items.iter().enumerate() {
                subjects.push(read_subject(
                    s,
                    &format!("{at}.subjects[{i}]"),
                    &mut out.unreadable,
                ));
            }
            out.subjects = Some(subjects);
        }
        Some(other) => out.unreadable.push(format!(
            "{at}.subjects: expected an array, found {}",
            type_name(other)
        )),
    }
    match map.get("rules") {
        None => {}
        Some(Value::Null) => out.rules = Some(Vec::new()),
        Some(Value::Array(items)) => {
            let mut rules = Vec::with_capacity(items.len());
            for (i, r) in items.iter().enumerate() {
                if let Some(r) = read_rule(r, &format!("{at}.rules[{i}]"), &mut out.unreadable) {
                    rules.push(r);
                }
            }
            out.rules = Some(rules);
        }
        Some(other) => out.unreadable.push(format!(
            "{at}.rules: expected an array, found {}",
            type_name(other)
        )),
    }
    out
}

/// One subject. An unreadable one is kept as a placeholder subject of kind
/// `Unreadable` named after where it was, so a grant is never judged as if
/// it had fewer subjects than it has.
pub fn read_subject(v: &Value, at: &str, unreadable: &mut Vec<String>) -> Subject {
    let field = |m: &serde_json::Map<String, Value>, k: &str, unreadable: &mut Vec<String>| match m
        .get(k)
    {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(other) => {
            unreadable.push(format!(
                "{at}.{k}: expected a string, found {}",
                type_name(other)
            ));
            None
        }
    };
    let placeholder = || Subject {
        kind: "Unreadable".to_owned(),
        name: at.to_owned(),
        namespace: None,
    };
    let Some(m) = v.as_object() else {
        unreadable.push(format!("{at}: expected an object, found {}", type_name(v)));
        return placeholder();
    };
    let n = unreadable.len();
    let kind = field(m, "kind", unreadable);
    let name = field(m, "name", unreadable);
    let namespace = field(m, "namespace", unreadable);
    match (kind, name) {
        (Some(kind), Some(name)) if unreadable.len() == n => Subject {
            kind,
            name,
            namespace: namespace.filter(|s| !s.is_empty()),
        },
        _ => {
            if unreadable.len() == n {
                unreadable.push(format!("{at}: kind or name missing"));
            }
            placeholder()
        }
    }
}

fn strings(
    m: &serde_json::Map<String, Value>,
    k: &str,
    at: &str,
    unreadable: &mut Vec<String>,
) -> Option<Vec<String>> {
    match m.get(k) {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(a)) => {
            let mut out = Vec::with_capacity(a.len());
            for (i, x) in a.iter().enumerate() {
                match x {
                    Value::String(s) => out.push(s.clone()),
                    other => {
                        unreadable.push(format!(
                            "{at}.{k}[{i}]: expected a string, found {}",
                            type_name(other)
                        ));
                        return None;
                    }
                }
            }
            Some(out)
        }
        Some(other) => {
            unreadable.push(format!(
                "{at}.{k}: expected an array, found {}",
                type_name(other)
            ));
            None
        }
    }
}

/// One policy rule; `None` (and named) when any of its lists is unreadable.
pub fn read_rule(v: &Value, at: &str, unreadable: &mut Vec<String>) -> Option<PolicyRule> {
    let Some(m) = v.as_object() else {
        unreadable.push(format!("{at}: expected an object, found {}", type_name(v)));
        return None;
    };
    Some(PolicyRule {
        verbs: strings(m, "verbs", at, unreadable)?,
        api_groups: strings(m, "apiGroups", at, unreadable)?,
        resources: strings(m, "resources", at, unreadable)?,
        resource_names: strings(m, "resourceNames", at, unreadable)?,
        non_resource_ur_ls: strings(m, "nonResourceURLs", at, unreadable)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn odd_shapes_are_named_and_the_rest_is_read() {
        let v = json!({
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "x"},
            "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [
                {"kind": "User", "name": "bob"},
                {"kind": "User", "name": {"nested": true}},
                7
            ]
        });
        let o = read_object(&v, "responseObject");
        assert_eq!(o.role_ref.unwrap().name, "cluster-admin");
        let s = o.subjects.unwrap();
        assert_eq!(s.len(), 3, "unreadable subjects are kept as placeholders");
        assert_eq!(s[0].name, "bob");
        assert_eq!(s[1].kind, "Unreadable");
        assert_eq!(
            o.unreadable,
            [
                "responseObject.subjects[1].name: expected a string, found an object",
                "responseObject.subjects[2]: expected an object, found a number"
            ]
        );
        let o = read_object(&json!([{"op": "add"}]), "requestObject");
        assert_eq!(
            o.unreadable,
            ["requestObject: expected an object, found an array"]
        );
    }

    #[test]
    fn rules_with_a_bad_list_are_skipped_and_named() {
        let v = json!({"rules": [
            {"verbs": ["get"], "resources": ["pods"], "apiGroups": [""]},
            {"verbs": "get", "resources": ["secrets"]}
        ]});
        let o = read_object(&v, "requestObject");
        assert_eq!(o.rules.unwrap().len(), 1);
        assert_eq!(
            o.unreadable,
            ["requestObject.rules[1].verbs: expected an array, found a string"]
        );
    }

    #[test]
    fn a_string_object_is_read_as_json_or_yaml() {
        let raw = RawObject::from_value(&json!(
            "kind: ClusterRoleBinding\nsubjects:\n- kind: User\n  name: eve\n"
        ));
        let v = object_value(&raw).unwrap();
        let o = read_object(&v, "requestObject");
        assert_eq!(o.subjects.unwrap()[0].name, "eve");
    }
}
