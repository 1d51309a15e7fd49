//! Reading RBAC objects out of raw `requestObject`/`responseObject` JSON,
//! field by field: a field with an unexpected shape is skipped and named, the
//! rest is still read. Nothing here fails.

use serde::de::IgnoredAny;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{K8sObject, ObjectMeta, PolicyRule, RawObject, RoleRef, Subject};

/// The largest object (JSON text) interpreted; bigger ones are named unreadable.
/// The webhook body limit bounds it already; this bounds the YAML path too.
pub const MAX_OBJECT_BYTES: usize = 4 << 20;

/// The RBAC skeleton of a raw object: only `kind`, `metadata.name`,
/// `metadata.namespace`, `roleRef`, `subjects`, `rules` and strategic-merge
/// `$` directives are parsed; for a JSON-patch array, only the operations on
/// those fields. Everything else (labels, annotations, managedFields: where
/// a client can nest values past any parser's depth limit) is skipped unread,
/// so no unrelated field can hide a grant. A string holding JSON or YAML (an
/// apply patch logged as text) is read as what it holds. What cannot be read
/// is named in `unreadable` (prefixed by `at`); `None` when nothing could be.
pub fn object_value(raw: &RawObject, at: &str, unreadable: &mut Vec<String>) -> Option<Value> {
    let text = raw.json();
    if text.len() > MAX_OBJECT_BYTES {
        unreadable.push(format!(
            "{at}: larger than {MAX_OBJECT_BYTES} bytes ({})",
            text.len()
        ));
        return None;
    }
    skeleton(text, at, unreadable, true)
}

fn skeleton(text: &str, at: &str, unreadable: &mut Vec<String>, top: bool) -> Option<Value> {
    match text.trim_start().as_bytes().first() {
        Some(b'{') => skeleton_object(text, at, unreadable),
        Some(b'[') if top => skeleton_patch(text, at, unreadable),
        Some(b'"') if top => {
            let s: String = match serde_json::from_str(text) {
                Ok(s) => s,
                Err(e) => {
                    unreadable.push(format!("{at}: {e}"));
                    return None;
                }
            };
            if serde_json::from_str::<IgnoredAny>(&s).is_ok() {
                return skeleton(&s, at, unreadable, true);
            }
            if let Some(why) = yaml_too_costly(&s) {
                unreadable.push(format!("{at}: {why}"));
                return None;
            }
            match serde_norway::from_str::<Value>(&s) {
                Ok(v) => skeleton(&v.to_string(), at, unreadable, true),
                Err(e) => {
                    unreadable.push(format!("{at}: a string that is neither JSON nor YAML: {e}"));
                    None
                }
            }
        }
        _ => match serde_json::from_str::<Value>(text) {
            Ok(v) => Some(v),
            Err(e) => {
                unreadable.push(format!("{at}: {e}"));
                None
            }
        },
    }
}

/// Largest YAML text read (an RBAC object in YAML is a few KiB; JSON is not
/// limited by this, it parses in linear time).
pub const MAX_YAML_BYTES: usize = 256 << 10;
/// Most `[` and `{` in a YAML text read. The YAML scanner (libyaml's, in
/// serde_norway) rechecks every open flow level on each token, so nested
/// brackets cost their depth times the text's length: 30,000 levels took
/// 2.3 s, a few MiB minutes, all on the writer's thread. Their count bounds
/// the depth whatever quoting hides; with both limits one text costs at most
/// about a tenth of a second.
pub const MAX_YAML_FLOW_OPENERS: usize = 512;

/// Why `text` is not handed to the YAML parser, if it is not.
fn yaml_too_costly(text: &str) -> Option<String> {
    if text.len() > MAX_YAML_BYTES {
        return Some(format!(
            "a YAML string larger than {MAX_YAML_BYTES} bytes ({}): not read",
            text.len()
        ));
    }
    let openers = text.bytes().filter(|b| matches!(b, b'[' | b'{')).count();
    (openers > MAX_YAML_FLOW_OPENERS).then(|| {
        format!(
            "a YAML string with {openers} flow brackets ('[' or '{{'), more than {MAX_YAML_FLOW_OPENERS}: not read"
        )
    })
}

fn parse_value(text: &str, at: &str, unreadable: &mut Vec<String>) -> Option<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => Some(v),
        Err(e) => {
            unreadable.push(format!("{at}: {e}"));
            None
        }
    }
}

/// A list read item by item: an unreadable subject becomes a placeholder
/// (`kind: Unreadable`), an unreadable rule is dropped; both are named.
fn parse_list(text: &str, at: &str, unreadable: &mut Vec<String>, subjects: bool) -> Option<Value> {
    let items: Vec<Box<RawValue>> = match serde_json::from_str::<Option<Vec<Box<RawValue>>>>(text) {
        Ok(Some(items)) => items,
        Ok(None) => return Some(Value::Null),
        Err(_) => return parse_value(text, at, unreadable),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let here = format!("{at}[{i}]");
        match parse_value(item.get(), &here, unreadable) {
            Some(v) => out.push(v),
            None if subjects => out.push(serde_json::json!({"kind": "Unreadable", "name": here})),
            None => {}
        }
    }
    Some(Value::Array(out))
}

fn skeleton_object(text: &str, at: &str, unreadable: &mut Vec<String>) -> Option<Value> {
    let map: Vec<(String, Box<RawValue>)> =
        match serde_json::from_str::<std::collections::BTreeMap<String, Box<RawValue>>>(text) {
            Ok(m) => m.into_iter().collect(),
            Err(e) => {
                unreadable.push(format!("{at}: {e}"));
                return None;
            }
        };
    let mut out = serde_json::Map::new();
    for (k, raw) in map {
        let here = format!("{at}.{k}");
        let v = match k.as_str() {
            "subjects" => parse_list(raw.get(), &here, unreadable, true),
            "rules" => parse_list(raw.get(), &here, unreadable, false),
            "kind" | "apiVersion" | "roleRef" => parse_value(raw.get(), &here, unreadable),
            "metadata" => {
                match serde_json::from_str::<
                    Option<std::collections::BTreeMap<String, Box<RawValue>>>,
                >(raw.get())
                {
                    Ok(Some(m)) => {
                        let mut meta = serde_json::Map::new();
                        for f in ["name", "namespace"] {
                            if let Some(v) = m.get(f).and_then(|r| {
                                parse_value(r.get(), &format!("{here}.{f}"), unreadable)
                            }) {
                                meta.insert(f.to_owned(), v);
                            }
                        }
                        if let Some(p) = m
                            .get("$patch")
                            .and_then(|r| parse_value(r.get(), &here, unreadable))
                        {
                            meta.insert("$patch".to_owned(), p);
                        }
                        Some(Value::Object(meta))
                    }
                    Ok(None) => Some(Value::Null),
                    Err(_) => parse_value(raw.get(), &here, unreadable),
                }
            }
            k if k.starts_with('$') => {
                if k.starts_with("$setElementOrder/")
                    || k.starts_with("$retainKeys")
                    || k.starts_with("$deleteFromPrimitiveList/")
                {
                    Some(Value::Bool(true)) // presence marks strategic merge; the content is not needed
                } else {
                    parse_value(raw.get(), &here, unreadable)
                }
            }
            _ => continue,
        };
        if let Some(v) = v {
            out.insert(k, v);
        }
    }
    Some(Value::Object(out))
}

fn relevant_path(p: &str) -> bool {
    p.is_empty()
        || ["/subjects", "/roleRef", "/rules", "/kind"]
            .iter()
            .any(|r| p == *r || p.starts_with(&format!("{r}/")))
}

fn skeleton_patch(text: &str, at: &str, unreadable: &mut Vec<String>) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct Op {
        #[serde(default)]
        op: Option<Box<RawValue>>,
        #[serde(default)]
        path: Option<Box<RawValue>>,
        #[serde(default)]
        from: Option<Box<RawValue>>,
        #[serde(default)]
        value: Option<Box<RawValue>>,
    }
    let items: Vec<Box<RawValue>> = match serde_json::from_str(text) {
        Ok(i) => i,
        Err(e) => {
            unreadable.push(format!("{at}: {e}"));
            return None;
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let here = format!("{at}[{i}]");
        let Ok(op) = serde_json::from_str::<Op>(item.get()) else {
            // Not an operation object: keep it shallow-parsed for the patch
            // reader to name.
            if let Some(v) = parse_value(item.get(), &here, unreadable) {
                out.push(v);
            }
            continue;
        };
        let string = |r: &Option<Box<RawValue>>| {
            r.as_ref()
                .and_then(|r| serde_json::from_str::<String>(r.get()).ok())
        };
        let path = string(&op.path);
        let from = string(&op.from);
        let touches = path.as_deref().is_some_and(relevant_path)
            || from.as_deref().is_some_and(relevant_path);
        if !touches && path.is_some() {
            continue; // labels, annotations, ...: grant nothing
        }
        let mut o = serde_json::Map::new();
        for (k, r) in [("op", &op.op), ("path", &op.path), ("from", &op.from)] {
            if let Some(v) = r
                .as_ref()
                .and_then(|r| parse_value(r.get(), &format!("{here}.{k}"), unreadable))
            {
                o.insert(k.to_owned(), v);
            }
        }
        if let Some(r) = &op.value {
            let vat = format!("{here}.value");
            let v = match path.as_deref() {
                Some("") => skeleton(r.get(), &vat, unreadable, false),
                Some("/subjects") => parse_list(r.get(), &vat, unreadable, true),
                Some("/rules") => parse_list(r.get(), &vat, unreadable, false),
                _ => parse_value(r.get(), &vat, unreadable),
            };
            // An unreadable value is still an operation (named above).
            o.insert("value".to_owned(), v.unwrap_or(Value::Null));
        }
        out.push(Value::Object(o));
    }
    Some(Value::Array(out))
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
    /// The whole object (spec and status included) for the cluster facts
    /// and token lineage: the response when logged, else the request. `None`
    /// when neither is a JSON object within [`MAX_OBJECT_BYTES`] that parses
    /// (too deep, say); RBAC detection reads its skeleton through
    /// [`object_value`] instead, so such an object hides no grant.
    pub fn object(&self) -> Option<K8sObject> {
        [self.response_object.as_ref(), self.request_object.as_ref()]
            .into_iter()
            .flatten()
            .filter(|raw| raw.json().len() <= MAX_OBJECT_BYTES)
            .find_map(|raw| {
                let v = raw.value()?;
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
#[path = "object_tests.rs"]
mod tests;
