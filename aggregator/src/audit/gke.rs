//! GKE: Kubernetes audit events as Cloud Logging `LogEntry` objects
//! (`--input-format gke-cloud-logging`).
//!
//! A log sink (Cloud Storage, Pub/Sub) or `gcloud logging read --format=json`
//! exports entries whose `protoPayload` is a
//! `type.googleapis.com/google.cloud.audit.AuditLog` with `serviceName`
//! `k8s.io`. Each entry becomes one native [`AuditEvent`]:
//!
//! | LogEntry | audit event |
//! |---|---|
//! | `protoPayload.authenticationInfo.principalEmail` | `user.username` |
//! | `protoPayload.requestMetadata.callerIp` | `sourceIPs` (one entry) |
//! | `protoPayload.requestMetadata.callerSuppliedUserAgent` | `userAgent` |
//! | `protoPayload.methodName` `io.k8s.<group>.<version>.<resource>[.<subresource>].<verb>` | `verb`, `objectRef.{apiGroup,resource,subresource}` |
//! | `protoPayload.resourceName` `<group>/<version>[/namespaces/<ns>]/<resource>[/<name>[/<subresource>]]` | `objectRef.{apiGroup,namespace,name}` |
//! | `protoPayload.request` / `response` (`@type` dropped) | `requestObject` / `responseObject` |
//! | `protoPayload.status.code` (google.rpc.Code) | `responseStatus.code` (HTTP) |
//! | `labels["authorization.k8s.io/decision"]`, `…/reason` | `annotations` |
//! | `operation.id` (else `insertId`) | `auditID` |
//! | `timestamp` (else `receiveTimestamp`) | `requestReceivedTimestamp`, `stageTimestamp` |
//!
//! Cloud Logging keeps one entry per request (the final stage), so every
//! event is `ResponseComplete`; the level is `RequestResponse` when a
//! response body is present, `Request` with only a request body, else
//! `Metadata`. An entry that is not a `k8s.io` AuditLog, or whose
//! `methodName` cannot be read, is refused on its own (named, counted).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::AuditEvent;
use super::parse::{ParseError, Parsed};

const AUDIT_LOG_TYPE: &str = "type.googleapis.com/google.cloud.audit.AuditLog";

/// The verbs kube-apiserver logs (`k8s.io/apiserver` request info).
const VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "proxy",
];

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct LogEntry {
    proto_payload: Option<Map<String, Value>>,
    insert_id: Option<String>,
    timestamp: Option<String>,
    receive_timestamp: Option<String>,
    labels: Option<Map<String, Value>>,
    operation: Option<Map<String, Value>>,
}

/// Splits a document into entries: a JSON array, JSON lines, or
/// concatenated objects (what sinks and `gcloud logging read` write).
pub(super) fn parse(bytes: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        match serde_json::from_slice::<Vec<Box<serde_json::value::RawValue>>>(bytes) {
            Ok(items) => {
                for (i, raw) in items.iter().enumerate() {
                    one(&mut out, format!("entry {i}"), raw.get().as_bytes());
                }
            }
            Err(e) => out.errors.push(ParseError::new(
                "document",
                format!("not a JSON array of Cloud Logging entries: {e}"),
            )),
        }
        return out;
    }
    let mut stream =
        serde_json::Deserializer::from_slice(bytes).into_iter::<Box<serde_json::value::RawValue>>();
    let mut i = 0usize;
    loop {
        match stream.next() {
            None => break,
            Some(Ok(raw)) => one(&mut out, format!("entry {i}"), raw.get().as_bytes()),
            Some(Err(e)) => {
                // The rest of the document cannot be framed: stop, keep what was read.
                out.errors.push(ParseError::new(
                    format!("entry {i}"),
                    format!("not a Cloud Logging entry (malformed JSON): {e}"),
                ));
                break;
            }
        }
        i += 1;
    }
    out
}

/// Converts one `LogEntry` (JSON text) into an event, or records why not.
pub(super) fn one(out: &mut Parsed, loc: String, bytes: &[u8]) {
    match convert(bytes) {
        Ok(ev) => out.events.push(ev),
        Err(why) => out.errors.push(ParseError::new(loc, why)),
    }
}

fn s<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

fn obj<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a Map<String, Value>> {
    m.get(k).and_then(Value::as_object)
}

/// `methodName` read into (api group, resource, subresource, verb).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Method {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub verb: String,
}

fn is_version(s: &str) -> bool {
    // v1, v2, v1beta1, v1alpha2 ...
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let tail = &rest[digits..];
    tail.is_empty()
        || ["alpha", "beta"].iter().any(|p| {
            tail.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

fn is_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Reads `io.k8s.<group…>.<version>.<resource>[.<subresource>].<verb>`.
/// The group is written reversed and without `.k8s.io`
/// (`io.k8s.authorization.rbac` = `rbac.authorization.k8s.io`, `io.k8s.core`
/// = the core group, `io.k8s.apps` = `apps`); the `resourceName`, when it
/// names a group, wins over this reading (see [`ResourceName`]).
pub(super) fn parse_method(m: &str) -> Result<Method, String> {
    let parts: Vec<&str> = m.split('.').collect();
    let bad = |why: &str| format!("methodName {m:?} is not a Kubernetes API method ({why})");
    if m.len() > 512 {
        return Err(format!(
            "methodName of {} bytes is not a Kubernetes API method",
            m.len()
        ));
    }
    if parts.len() < 5 || parts[0] != "io" || parts[1] != "k8s" {
        return Err(bad("expected io.k8s.<group>.<version>.<resource>.<verb>"));
    }
    if !parts.iter().all(|p| is_name_part(p)) {
        return Err(bad("unexpected characters"));
    }
    let vi = parts
        .iter()
        .enumerate()
        .skip(3)
        .find(|(_, p)| is_version(p))
        .map(|(i, _)| i)
        .ok_or_else(|| bad("no API version"))?;
    let group_parts = &parts[2..vi];
    let rest = &parts[vi + 1..];
    let (verb, res) = match rest {
        [resource, verb] => (*verb, (*resource, None)),
        [resource, sub, verb] => (*verb, (*resource, Some((*sub).to_owned()))),
        _ => {
            return Err(bad(
                "expected <resource>[.<subresource>].<verb> after the version",
            ));
        }
    };
    if !VERBS.contains(&verb) {
        return Err(bad(&format!("unknown verb {verb:?}")));
    }
    let group = match group_parts {
        ["core"] => String::new(),
        [one] => (*one).to_owned(),
        many => {
            let mut g: Vec<&str> = many.to_vec();
            g.reverse();
            format!("{}.k8s.io", g.join("."))
        }
    };
    Ok(Method {
        group,
        version: parts[vi].to_owned(),
        resource: res.0.to_owned(),
        subresource: res.1,
        verb: verb.to_owned(),
    })
}

/// `resourceName` read into its parts.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ResourceName {
    pub group: Option<String>,
    pub namespace: Option<String>,
    pub resource: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Reads `<group>/<version>[/namespaces/<ns>]/<resource>[/<name>[/<sub>]]`
/// (`core/v1/namespaces/default/pods/web-0/exec`,
/// `rbac.authorization.k8s.io/v1/clusterrolebindings/admins`). A namespace
/// itself is `core/v1/namespaces/<name>`. Anything else reads as nothing.
pub(super) fn parse_resource_name(r: &str) -> ResourceName {
    let p: Vec<&str> = r.split('/').collect();
    if p.len() < 3 || !is_version(p[1]) || p.iter().any(|s| s.is_empty()) {
        return ResourceName::default();
    }
    let group = Some(if p[0] == "core" { "" } else { p[0] }.to_owned());
    let mut rest = &p[2..];
    let mut namespace = None;
    if rest.len() >= 3 && rest[0] == "namespaces" {
        namespace = Some(rest[1].to_owned());
        rest = &rest[2..];
    }
    let own = |i: usize| rest.get(i).map(|s| (*s).to_owned());
    ResourceName {
        group,
        namespace,
        resource: own(0),
        name: own(1),
        subresource: own(2),
    }
}

/// google.rpc.Code → the HTTP status kube-apiserver answered
/// (google.rpc's own HTTP mapping, `google/rpc/code.proto`).
pub(super) fn http_code(rpc: i64) -> i32 {
    match rpc {
        0 => 200,
        1 => 499,
        3 | 9 | 11 => 400,
        4 => 504,
        5 => 404,
        6 | 10 => 409,
        7 => 403,
        8 => 429,
        12 => 501,
        14 => 503,
        16 => 401,
        _ => 500, // 2 UNKNOWN, 13 INTERNAL, 15 DATA_LOSS, anything else
    }
}

/// A request/response body without its `@type` (the object as the API
/// server saw it).
fn body(v: Option<&Value>) -> Option<Value> {
    let mut v = v?.clone();
    if let Value::Object(m) = &mut v {
        m.remove("@type");
    }
    Some(v)
}

fn convert(bytes: &[u8]) -> Result<AuditEvent, String> {
    let e: LogEntry =
        serde_json::from_slice(bytes).map_err(|e| format!("not a Cloud Logging entry: {e}"))?;
    let p = e
        .proto_payload
        .as_ref()
        .ok_or("not a Cloud Audit Logs entry: no protoPayload")?;
    match s(p, "@type") {
        Some(AUDIT_LOG_TYPE) => {}
        other => {
            return Err(format!(
                "protoPayload @type {other:?} is not {AUDIT_LOG_TYPE:?}"
            ));
        }
    }
    match s(p, "serviceName") {
        Some("k8s.io") => {}
        other => {
            return Err(format!(
                "serviceName {other:?} is not \"k8s.io\" (only Kubernetes API audit entries are read; filter the sink on protoPayload.serviceName=\"k8s.io\")"
            ));
        }
    }
    let method = parse_method(s(p, "methodName").ok_or("protoPayload has no methodName")?)?;
    let rn = s(p, "resourceName")
        .map(parse_resource_name)
        .unwrap_or_default();
    let user = obj(p, "authenticationInfo")
        .and_then(|a| s(a, "principalEmail"))
        .ok_or("protoPayload.authenticationInfo has no principalEmail")?;
    let meta = obj(p, "requestMetadata");
    let caller_ip = meta.and_then(|m| s(m, "callerIp"));
    let agent = meta.and_then(|m| s(m, "callerSuppliedUserAgent"));
    let audit_id = e
        .operation
        .as_ref()
        .and_then(|o| s(o, "id"))
        .or(e.insert_id.as_deref())
        .filter(|s| !s.is_empty())
        .ok_or("entry has neither operation.id nor insertId")?;
    let time = e
        .timestamp
        .as_deref()
        .or(e.receive_timestamp.as_deref())
        .ok_or("entry has neither timestamp nor receiveTimestamp")?;
    let request = body(p.get("request"));
    let response = body(p.get("response"));
    let level = if response.is_some() {
        "RequestResponse"
    } else if request.is_some() {
        "Request"
    } else {
        "Metadata"
    };
    let code = match p.get("status") {
        None | Some(Value::Null) => None,
        Some(Value::Object(st)) => match st.get("code") {
            None => Some(200), // proto3 JSON leaves out OK (0)
            Some(c) => Some(http_code(c.as_i64().ok_or("status.code is not a number")?)),
        },
        Some(_) => return Err("protoPayload.status is not an object".to_owned()),
    };
    // resourceName's own reading wins where it has one (it spells the group).
    let group = rn.group.unwrap_or(method.group);
    let mut object_ref = json!({
        "apiGroup": group,
        "apiVersion": method.version,
        "resource": method.resource,
    });
    if let Some(ns) = rn.namespace {
        object_ref["namespace"] = json!(ns);
    }
    if rn.resource.as_deref() == Some(method.resource.as_str())
        && let Some(n) = rn.name
    {
        object_ref["name"] = json!(n);
    }
    if let Some(sub) = method.subresource {
        object_ref["subresource"] = json!(sub);
    }
    let mut annotations = Map::new();
    if let Some(l) = &e.labels {
        for k in [
            "authorization.k8s.io/decision",
            "authorization.k8s.io/reason",
            "authentication.kubernetes.io/issued-credential-id",
        ] {
            if let Some(v) = l.get(k).filter(|v| v.is_string()) {
                annotations.insert(k.to_owned(), v.clone());
            }
        }
    }
    let mut ev = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": level,
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "verb": method.verb,
        "user": {"username": user},
        "sourceIPs": caller_ip.into_iter().collect::<Vec<_>>(),
        "objectRef": object_ref,
        "requestReceivedTimestamp": time,
        "stageTimestamp": time,
        "annotations": annotations,
    });
    if let Some(uri) = s(p, "resourceName") {
        ev["requestURI"] = json!(uri);
    }
    if let Some(a) = agent {
        ev["userAgent"] = json!(a);
    }
    if let Some(c) = code {
        ev["responseStatus"] = json!({ "code": c });
    }
    if let Some(r) = request {
        ev["requestObject"] = r;
    }
    if let Some(r) = response {
        ev["responseObject"] = r;
    }
    // Through text: raw objects are read by serde_json's own reader.
    serde_json::from_str(&ev.to_string()).map_err(|e| format!("unreadable entry: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_read_into_group_resource_subresource_and_verb() {
        let m = parse_method("io.k8s.authorization.rbac.v1.clusterrolebindings.create").unwrap();
        assert_eq!(
            (m.group.as_str(), m.resource.as_str(), m.verb.as_str()),
            ("rbac.authorization.k8s.io", "clusterrolebindings", "create")
        );
        let m = parse_method("io.k8s.core.v1.secrets.get").unwrap();
        assert_eq!((m.group.as_str(), m.subresource), ("", None));
        let m = parse_method("io.k8s.core.v1.pods.exec.create").unwrap();
        assert_eq!(m.subresource.as_deref(), Some("exec"));
        let m = parse_method("io.k8s.core.v1.serviceaccounts.token.create").unwrap();
        assert_eq!(
            (m.resource.as_str(), m.subresource.as_deref()),
            ("serviceaccounts", Some("token"))
        );
        let m = parse_method("io.k8s.apps.v1.deployments.patch").unwrap();
        assert_eq!((m.group.as_str(), m.version.as_str()), ("apps", "v1"));
        let m =
            parse_method("io.k8s.certificates.v1beta1.certificatesigningrequests.list").unwrap();
        assert_eq!(m.version, "v1beta1");
    }

    #[test]
    fn odd_method_names_are_refused_with_the_reason() {
        for m in [
            "",
            "io.k8s",
            "io.k8s.core.v1.pods",
            "io.k8s.core.v1.pods.frobnicate",
            "google.container.v1.ClusterManager.CreateCluster",
            "io.k8s.core.vX.pods.get",
            "io.k8s.core.v1.pods.a.b.get",
            "io.k8s..v1.pods.get",
            "io.k8s.core.v1.PODS.get",
        ] {
            let e = parse_method(m).unwrap_err();
            assert!(e.contains("methodName"), "{m}: {e}");
        }
        assert!(parse_method(&"io.k8s.".repeat(200)).is_err());
    }

    #[test]
    fn resource_names_give_group_namespace_and_name() {
        let r = parse_resource_name("rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings/name");
        assert_eq!(r.group.as_deref(), Some("rbac.authorization.k8s.io"));
        assert_eq!(r.namespace.as_deref(), Some("ns"));
        assert_eq!(r.resource.as_deref(), Some("rolebindings"));
        assert_eq!(r.name.as_deref(), Some("name"));
        let r = parse_resource_name("core/v1/namespaces/default/pods/web-0/exec");
        assert_eq!(r.group.as_deref(), Some(""));
        assert_eq!(r.subresource.as_deref(), Some("exec"));
        let r = parse_resource_name("core/v1/namespaces/kube-system");
        assert_eq!(r.namespace, None);
        assert_eq!(r.resource.as_deref(), Some("namespaces"));
        assert_eq!(r.name.as_deref(), Some("kube-system"));
        let r = parse_resource_name("core/v1/namespaces/kube-system/secrets");
        assert_eq!(
            (r.namespace.as_deref(), r.resource.as_deref(), r.name),
            (Some("kube-system"), Some("secrets"), None)
        );
        assert_eq!(
            parse_resource_name("projects/p/zones/z"),
            ResourceName::default()
        );
        assert_eq!(parse_resource_name("//v1/x"), ResourceName::default());
    }

    #[test]
    fn rpc_codes_map_to_http() {
        assert_eq!(
            [0, 5, 6, 7, 16, 13, 99].map(http_code),
            [200, 404, 409, 403, 401, 500, 500]
        );
    }
}

#[cfg(test)]
#[path = "gke_tests.rs"]
mod documents_tests;
