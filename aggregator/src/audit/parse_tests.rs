//! The native, webhook, AKS and Log Analytics readers (`parse.rs`): what is
//! read, what is refused and where, and which wrapper a misdirected input is
//! named as.

use serde_json::{Value, json};

use super::*;

fn event(id: &str) -> Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": id, "stage": "ResponseComplete", "requestURI": "/api/v1/pods", "verb": "list",
        "user": {"username": "alice"}, "sourceIPs": ["10.0.0.1"],
        "requestReceivedTimestamp": "2026-03-01T10:00:00Z",
    })
}

fn ids(events: &[AuditEvent]) -> Vec<&str> {
    events.iter().map(|e| e.audit_id.as_str()).collect()
}

#[test]
fn one_event_is_read_with_its_fields_and_a_broken_one_refused() {
    let ev = parse_event(event("a1").to_string().as_bytes()).unwrap();
    assert_eq!((ev.audit_id.as_str(), ev.verb.as_str()), ("a1", "list"));
    assert_eq!(ev.user.username, "alice");
    assert!(parse_event(b"{\"auditID\": ").is_err());
}

#[test]
fn a_webhook_body_is_every_item_or_an_error_naming_the_bad_one() {
    let list = json!({"kind": "EventList", "items": [event("a"), event("b")]});
    let mut body = BOM.to_vec();
    body.extend_from_slice(list.to_string().as_bytes());
    assert_eq!(ids(&parse_webhook_body(&body).unwrap()), ["a", "b"]);
    // One Event on its own.
    let one = parse_webhook_body(event("c").to_string().as_bytes()).unwrap();
    assert_eq!(ids(&one), ["c"]);
    // A malformed item: the whole body refused, the item named.
    let bad = json!({"kind": "EventList", "items": [event("a"), {"auditID": 5}]});
    let e = parse_webhook_body(bad.to_string().as_bytes()).unwrap_err();
    assert_eq!(e.location, "items[1]", "{e}");
    // Another kind of list.
    let other = json!({"kind": "PodList", "items": [{"auditID": 5}]});
    let e = parse_webhook_body(other.to_string().as_bytes()).unwrap_err();
    assert_eq!(e.to_string(), "body: kind \"PodList\" is not EventList");
    let e = parse_webhook_body(b"[1, 2]").unwrap_err();
    assert_eq!(e.location, "body");
    assert!(e.reason.starts_with("not an audit.k8s.io EventList"), "{e}");
}

#[test]
fn json_lines_skip_blank_lines_and_name_the_bad_line() {
    let mut doc = BOM.to_vec();
    doc.extend_from_slice(
        format!(
            "\n  \n{}\n\n{}\nnot json\n{}\n",
            event("a"),
            event("b"),
            json!({"kind": "EventList", "items": [event("c")]})
        )
        .as_bytes(),
    );
    let p = parse_document(&doc, InputFormat::Native);
    assert_eq!(ids(&p.events), ["a", "b", "c"]);
    assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
    assert_eq!(p.errors[0].location, "line 6");
    assert_eq!(p.errors[0].label(), "malformed_json");
    assert!(
        parse_document(b" \n\n", InputFormat::Native)
            .events
            .is_empty()
    );
}

#[test]
fn a_pretty_printed_event_or_list_is_one_document() {
    let one = serde_json::to_string_pretty(&event("a")).unwrap();
    let p = parse_document(one.as_bytes(), InputFormat::Native);
    assert_eq!(ids(&p.events), ["a"]);
    let list = json!({"kind": "EventList", "items": [event("b"), {"auditID": 5}, event("c")]});
    let p = parse_document(
        serde_json::to_string_pretty(&list).unwrap().as_bytes(),
        InputFormat::Native,
    );
    assert_eq!(ids(&p.events), ["b", "c"]);
    assert_eq!(p.errors.len(), 1);
    assert_eq!(p.errors[0].location, "items[1]");
}

/// The one error of `doc` read as native audit JSON.
fn native_error(doc: &[u8]) -> ParseError {
    let p = parse_document(doc, InputFormat::Native);
    assert!(p.events.is_empty());
    assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
    p.errors[0].clone()
}

#[test]
fn a_cloud_wrapper_given_as_native_is_named_with_the_option_to_use() {
    let cases: [(Value, &str); 8] = [
        (json!({"protoPayload": {}}), "gke-cloud-logging"),
        (json!({"logName": "projects/p/logs/x"}), "gke-cloud-logging"),
        (
            json!({"messageType": "DATA_MESSAGE"}),
            "CloudWatch Logs subscription",
        ),
        (json!({"logEvents": []}), "CloudWatch Logs subscription"),
        (json!({"records": [], "requestId": "r"}), "Firehose"),
        (json!({"records": []}), "aks-event-hubs"),
        (json!({"properties": {}}), "aks-event-hubs"),
        (json!({"log_s": "x"}), "azure-log-analytics"),
    ];
    for (doc, names) in cases {
        let e = native_error(doc.to_string().as_bytes());
        assert!(e.reason.contains(names), "{doc}: {e}");
        assert_eq!(e.location, "line 1");
        assert_eq!(e.label(), "wrapper_format", "{e}");
    }
    let body = json!({"body": {"value": []}});
    let pretty = serde_json::to_string_pretty(&body).unwrap();
    let e = native_error(pretty.as_bytes());
    assert_eq!(e.location, "document");
    assert!(e.reason.contains("azure-log-analytics"), "{e}");
    // `gcloud logging read --format=json`: an array of entries.
    let e = native_error(json!([{"protoPayload": {}}]).to_string().as_bytes());
    assert!(e.reason.contains("gke-cloud-logging"), "{e}");
    let e = native_error(&[0x1f, 0x8b, 8, 0, 0, 0]);
    assert!(e.reason.contains("gzip-compressed"), "{e}");
}

#[test]
fn aks_records_are_read_by_category_and_numbered() {
    let log = |id: &str| event(id).to_string();
    let doc = json!({"records": [
        {"category": "kube-audit", "properties": {"log": log("a")}},
        {"category": "kube-audit-admin", "properties": {}},
        {"category": "kube-apiserver", "properties": {"log": "I0301 not audit"}},
        {"properties": {"log": log("b")}},
        {"category": "kube-audit", "properties": {"log": "{"}},
    ]});
    let p = parse_document(doc.to_string().as_bytes(), InputFormat::AksEventHubs);
    assert_eq!(ids(&p.events), ["a", "b"]);
    let errs: Vec<&str> = p.errors.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(errs, ["record 1", "record 4"]);
    assert_eq!(p.errors[0].reason, "record has no properties.log");
    let p = parse_document(b"[", InputFormat::AksEventHubs);
    assert!(
        p.errors[0]
            .reason
            .starts_with("not an AKS Event Hubs record batch")
    );
}

#[test]
fn log_analytics_rows_are_read_in_every_shape() {
    let row = |id: &str| json!({"log_s": event(id).to_string()});
    for doc in [
        json!({"body": {"value": [row("a")]}}),
        json!({"value": [row("a")]}),
        json!([row("a")]),
        row("a"),
    ] {
        let p = parse_document(doc.to_string().as_bytes(), InputFormat::AzureLogAnalytics);
        assert_eq!(ids(&p.events), ["a"], "{doc}");
    }
    let p = parse_document(
        json!([row("a"), {"other": 1}]).to_string().as_bytes(),
        InputFormat::AzureLogAnalytics,
    );
    assert_eq!(p.errors[0].to_string(), "row 1: row has no log_s");
}

#[test]
fn skipped_items_add_up_across_documents() {
    let mut a = Parsed::default();
    a.skip("control_message", 2);
    a.events
        .push(parse_event(event("x").to_string().as_bytes()).unwrap());
    let mut b = Parsed::default();
    b.skip("control_message", 3);
    b.skip("not_audit_stream", 1);
    b.errors.push(ParseError::new("line 1", "bad"));
    a.extend(b);
    assert_eq!(a.skipped["control_message"], 5);
    assert_eq!(a.skipped["not_audit_stream"], 1);
    assert_eq!((a.events.len(), a.errors.len()), (1, 1));
}

#[test]
fn error_labels_are_stable_per_reason() {
    let label = |r: &str| ParseError::new("x", r).label();
    assert_eq!(
        label("this is a CloudWatch Logs subscription wrapper (x)"),
        "wrapper_format"
    );
    assert_eq!(label("unknown methodName io.k8s.x"), "unknown_method");
    assert_eq!(label("entry has no serviceName"), "not_k8s_audit");
    assert_eq!(label("entry has no protoPayload"), "not_k8s_audit");
    assert_eq!(
        label("gzip data decompresses past the limit of 9 bytes"),
        "gzip_too_large"
    );
    assert_eq!(label("corrupt gzip data: x"), "bad_gzip");
    assert_eq!(label("data is not base64"), "bad_base64");
    assert_eq!(label("missing field `auditID`"), "missing_field");
    assert_eq!(label("not a Firehose wrapper"), "wrapper_format");
    assert_eq!(
        label("invalid type: integer, expected a string"),
        "invalid_field"
    );
    assert_eq!(
        label("unknown variant `X`, expected one of"),
        "invalid_field"
    );
    assert_eq!(label("EOF while parsing"), "malformed_json");
}

#[test]
fn each_input_format_has_its_option_spelling() {
    let names: Vec<&str> = [
        InputFormat::Native,
        InputFormat::AksEventHubs,
        InputFormat::AzureLogAnalytics,
        InputFormat::GkeCloudLogging,
        InputFormat::EksCloudwatch,
    ]
    .iter()
    .map(|f| f.option_name())
    .collect();
    assert_eq!(
        names,
        [
            "native",
            "aks-event-hubs",
            "azure-log-analytics",
            "gke-cloud-logging",
            "eks-cloudwatch"
        ]
    );
}
