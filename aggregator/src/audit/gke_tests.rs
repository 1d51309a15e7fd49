//! GKE Cloud Logging entries (`gke.rs`) read from the hand-built fixtures in
//! the providers' documented shapes (`tests/fixtures/cloud/`, see its
//! README): every field mapped, every refusal named with its entry.

use serde_json::{Value, json};

use super::*;
use crate::audit::{Level, Stage};

const JSONL: &[u8] = include_bytes!("../../tests/fixtures/cloud/gke-cloud-logging.jsonl");
const ARRAY: &[u8] = include_bytes!("../../tests/fixtures/cloud/gke-cloud-logging.array.json");

/// The fixture's first entry (a clusterrolebinding create), to vary.
fn crb_entry() -> Value {
    let line = JSONL.split(|b| *b == b'\n').next().unwrap();
    serde_json::from_slice(line).unwrap()
}

/// What `entry` reads as: the event or the refusal.
fn read(entry: &Value) -> Result<AuditEvent, ParseError> {
    let mut p = parse(entry.to_string().as_bytes());
    match (p.events.pop(), p.errors.pop()) {
        (Some(ev), None) => Ok(ev),
        (None, Some(e)) => Err(e),
        other => panic!("{entry}: {other:?}"),
    }
}

#[test]
fn every_documented_field_of_an_entry_is_mapped() {
    let p = parse(JSONL);
    assert_eq!(p.events.len(), 5, "{:?}", p.errors);
    let crb = &p.events[0];
    assert_eq!(crb.audit_id, "0c8a2f9e-6f2d-4bde-9a51-7c0e1b1d4a01");
    assert_eq!(
        (crb.verb.as_str(), crb.stage),
        ("create", Stage::ResponseComplete)
    );
    assert_eq!(crb.user.username, "alice@example.com");
    assert_eq!(crb.source_ips, ["203.0.113.7"]);
    assert_eq!(
        crb.user_agent.as_deref(),
        Some("kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46")
    );
    assert_eq!(
        crb.request_uri,
        "rbac.authorization.k8s.io/v1/clusterrolebindings/tmp-admin"
    );
    assert_eq!(
        (crb.api_group(), crb.resource(), crb.name(), crb.namespace()),
        (
            Some("rbac.authorization.k8s.io"),
            Some("clusterrolebindings"),
            Some("tmp-admin"),
            None
        )
    );
    assert_eq!((crb.code(), crb.level), (Some(200), Level::RequestResponse));
    assert_eq!(crb.annotations.decision.as_deref(), Some("allow"));
    assert_eq!(crb.time().to_rfc3339(), "2026-11-02T09:14:05.412733+00:00");
    for obj in [&crb.request_object, &crb.response_object] {
        let v = obj.as_ref().unwrap().value().unwrap();
        assert_eq!(v["roleRef"]["name"], "cluster-admin");
        assert!(
            v.get("@type").is_none(),
            "the Struct's @type is not the object's"
        );
    }

    let list = &p.events[1];
    assert_eq!(
        (
            list.verb.as_str(),
            list.api_group(),
            list.resource(),
            list.namespace(),
            list.name()
        ),
        ("list", Some(""), Some("secrets"), Some("kube-system"), None)
    );
    assert_eq!(list.level, Level::Metadata);
    assert!(list.request_object.is_none() && list.response_object.is_none());
    assert!(
        list.annotations
            .reason
            .as_deref()
            .unwrap()
            .starts_with("RBAC: allowed")
    );

    let exec = &p.events[2];
    assert_eq!(
        (
            exec.resource(),
            exec.subresource(),
            exec.name(),
            exec.namespace()
        ),
        (Some("pods"), Some("exec"), Some("web-0"), Some("default"))
    );

    let denied = &p.events[3];
    assert_eq!((denied.code(), denied.allowed()), (Some(403), false));
    assert_eq!(
        (denied.namespace(), denied.name()),
        (Some("ci"), Some("ci-view"))
    );
    assert_eq!(denied.level, Level::Request);
    assert_eq!(p.events[4].code(), Some(404));

    // The odd methodName and the non-Kubernetes entry: refused, where they were.
    let errs: Vec<(&str, &str)> = p
        .errors
        .iter()
        .map(|e| (e.location.as_str(), e.label()))
        .collect();
    assert_eq!(
        errs,
        [("entry 5", "unknown_method"), ("entry 6", "not_k8s_audit")]
    );
}

#[test]
fn a_json_array_export_reads_the_same_as_json_lines() {
    let lines = parse(JSONL);
    let arr = parse(ARRAY);
    assert_eq!(arr.events, lines.events);
    assert_eq!(arr.errors, lines.errors);
    // Concatenated objects (no separator) too.
    let joined: Vec<u8> = JSONL.iter().copied().filter(|b| *b != b'\n').collect();
    assert_eq!(parse(&joined).events, lines.events);
    // A broken array is one error for the document.
    let p = parse(&ARRAY[..ARRAY.len() / 2]);
    assert!(p.events.is_empty());
    assert_eq!(p.errors.len(), 1);
    assert_eq!(p.errors[0].location, "document");
    assert!(
        p.errors[0]
            .reason
            .starts_with("not a JSON array of Cloud Logging entries")
    );
}

#[test]
fn a_framing_error_keeps_the_entries_before_it() {
    let mut doc = JSONL.to_vec();
    doc.extend_from_slice(b"{\"insertId\": ");
    let p = parse(&doc);
    assert_eq!(p.events.len(), 5);
    let last = p.errors.last().unwrap();
    assert_eq!(last.location, "entry 7");
    assert!(
        last.reason
            .starts_with("not a Cloud Logging entry (malformed JSON)"),
        "{last}"
    );
}

#[test]
fn each_missing_or_odd_field_refuses_the_entry_with_its_reason() {
    type Edit = fn(&mut Value);
    let cases: [(Edit, &str); 10] = [
        (
            |e| {
                e.as_object_mut().unwrap().remove("protoPayload");
            },
            "not a Cloud Audit Logs entry: no protoPayload",
        ),
        (
            |e| e["protoPayload"]["@type"] = json!("type.googleapis.com/x"),
            "protoPayload @type Some(\"type.googleapis.com/x\") is not",
        ),
        (
            |e| e["protoPayload"]["serviceName"] = json!("container.googleapis.com"),
            "serviceName Some(\"container.googleapis.com\") is not \"k8s.io\"",
        ),
        (
            |e| {
                e["protoPayload"]
                    .as_object_mut()
                    .unwrap()
                    .remove("methodName");
            },
            "protoPayload has no methodName",
        ),
        (
            |e| e["protoPayload"]["authenticationInfo"] = json!({}),
            "protoPayload.authenticationInfo has no principalEmail",
        ),
        (
            |e| {
                e["operation"]["id"] = json!("");
                e["insertId"] = json!("");
            },
            "entry has neither operation.id nor insertId",
        ),
        (
            |e| {
                let m = e.as_object_mut().unwrap();
                m.remove("timestamp");
                m.remove("receiveTimestamp");
            },
            "entry has neither timestamp nor receiveTimestamp",
        ),
        (
            |e| e["protoPayload"]["status"] = json!("OK"),
            "protoPayload.status is not an object",
        ),
        (
            |e| e["protoPayload"]["status"] = json!({"code": "7"}),
            "status.code is not a number",
        ),
        (
            |e| e["protoPayload"]["methodName"] = json!("io.k8s.core.v1.pods.a.b.get"),
            "methodName \"io.k8s.core.v1.pods.a.b.get\" is not a Kubernetes API method",
        ),
    ];
    for (edit, reason) in cases {
        let mut e = crb_entry();
        edit(&mut e);
        let err = read(&e).unwrap_err();
        assert_eq!(err.location, "entry 0");
        assert!(err.reason.starts_with(reason), "{reason}: {err}");
    }
    assert!(read(&json!([1])).is_err());
}

#[test]
fn fallbacks_of_an_entry_are_read() {
    // No operation: the insertId is the audit ID; no timestamp: the receive time.
    let mut e = crb_entry();
    let m = e.as_object_mut().unwrap();
    m.remove("operation");
    m.remove("timestamp");
    m.insert("insertId".into(), json!("ins-1"));
    let ev = read(&e).unwrap();
    assert_eq!(ev.audit_id, "ins-1");
    assert_eq!(
        ev.time().to_rfc3339(),
        "2026-11-02T09:14:05.412733500+00:00"
    );
    // No status: no code logged; an unknown code reads as 500.
    let mut e = crb_entry();
    e["protoPayload"].as_object_mut().unwrap().remove("status");
    assert_eq!(read(&e).unwrap().code(), None);
    e["protoPayload"]["status"] = json!({"code": 13});
    assert_eq!(read(&e).unwrap().code(), Some(500));
    // A resourceName naming another resource than the method gives no name.
    let mut e = crb_entry();
    e["protoPayload"]["resourceName"] =
        json!("rbac.authorization.k8s.io/v1/clusterroles/tmp-admin");
    let ev = read(&e).unwrap();
    assert_eq!(
        (ev.resource(), ev.name()),
        (Some("clusterrolebindings"), None)
    );
    // Only the authorization labels are kept as annotations.
    let mut e = crb_entry();
    e["labels"] = json!({"authorization.k8s.io/decision": "forbid", "authentication.kubernetes.io/issued-credential-id": "JTI=x", "other": "y", "authorization.k8s.io/reason": 5});
    let ev = read(&e).unwrap();
    assert!(!ev.allowed());
    assert_eq!(
        ev.annotations.issued_credential_id.as_deref(),
        Some("JTI=x")
    );
    assert_eq!(ev.annotations.reason, None);
}

#[test]
fn every_rpc_code_maps_to_the_http_status_of_google_rpc() {
    assert_eq!(
        (0..=16).map(http_code).collect::<Vec<_>>(),
        [
            200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401
        ]
    );
    assert_eq!(http_code(-1), 500);
}

/// A valid methodName `len` bytes long: `io.k8s.<group parts>.v1.pods.get`.
fn method_of_len(len: usize) -> String {
    let mut group = Vec::new();
    let fixed = "io.k8s.".len() + ".v1.pods.get".len();
    let mut left = len - fixed;
    while left > 0 {
        let n = left.min(200);
        // Each part is followed by a dot except the last, which the suffix's dot follows.
        let part = if group.is_empty() { n } else { n - 1 };
        group.push("a".repeat(part));
        left -= n;
    }
    let m = format!("io.k8s.{}.v1.pods.get", group.join("."));
    assert_eq!(m.len(), len);
    m
}

#[test]
fn a_method_name_may_be_512_bytes_not_more() {
    let m = parse_method(&method_of_len(512)).unwrap();
    assert_eq!((m.resource.as_str(), m.verb.as_str()), ("pods", "get"));
    assert_eq!(
        parse_method(&method_of_len(513)).unwrap_err(),
        "methodName of 513 bytes is not a Kubernetes API method"
    );
    // A name part may be 253 bytes.
    let part = "a".repeat(253);
    assert!(parse_method(&format!("io.k8s.{part}.v1.pods.get")).is_ok());
    let part = "a".repeat(254);
    assert!(
        parse_method(&format!("io.k8s.{part}.v1.pods.get"))
            .unwrap_err()
            .contains("unexpected characters")
    );
}

#[test]
fn a_method_name_is_refused_with_what_is_wrong() {
    let why = |m: &str| parse_method(m).unwrap_err();
    assert!(
        why("com.k8s.core.v1.pods.get")
            .contains("expected io.k8s.<group>.<version>.<resource>.<verb>")
    );
    assert!(
        why("io.k9s.core.v1.pods.get")
            .contains("expected io.k8s.<group>.<version>.<resource>.<verb>")
    );
    assert!(why("io.k8s.core.v1").contains("expected io.k8s.<group>.<version>.<resource>.<verb>"));
    assert!(why("io.k8s.core.v1.pods").contains("after the version"));
    assert!(why("io.k8s.core.v1.pods.frobnicate").contains("unknown verb \"frobnicate\""));
    // Versions are v<N>, v<N>alpha<M>, v<N>beta<M>.
    for odd in ["v1beta", "v1alpha", "v1betax", "v", "vbeta1", "1"] {
        assert!(
            why(&format!("io.k8s.apps.{odd}.deployments.get")).contains("no API version"),
            "{odd}"
        );
    }
    for ok in ["v2", "v1alpha3", "v2beta12"] {
        assert_eq!(
            parse_method(&format!("io.k8s.apps.{ok}.deployments.get"))
                .unwrap()
                .version,
            ok
        );
    }
    // Name parts: lowercase letters, digits, '-' and '_'.
    assert_eq!(
        parse_method("io.k8s.my-group_x.v1.pods.get").unwrap().group,
        "my-group_x"
    );
    for odd in [
        "io.k8s.core.v1.Pods.get",
        "io.k8s.core.v1.po/ds.get",
        "io.k8s.core.v1.po ds.get",
    ] {
        assert!(why(odd).contains("unexpected characters"), "{odd}");
    }
}

#[test]
fn short_or_foreign_resource_names_read_as_nothing() {
    for odd in ["core", "core/v1", "core/x/pods", "core/v1//x"] {
        assert_eq!(parse_resource_name(odd), ResourceName::default(), "{odd}");
    }
    // Listing namespaces: a resource, no namespace.
    let r = parse_resource_name("core/v1/namespaces");
    assert_eq!(
        (
            r.group.as_deref(),
            r.namespace,
            r.resource.as_deref(),
            r.name
        ),
        (Some(""), None, Some("namespaces"), None)
    );
}
