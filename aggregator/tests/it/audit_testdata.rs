//! Walks every file of the real audit captures (`shared/testdata/k8s-audit`):
//! each parses with the event count its README states, or is rejected with a
//! clear, counted error (wrapper formats in native mode, the malformed stub).
//! Then everything goes through the pipeline: nothing may crash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use credtrail_aggregator::audit::{InputFormat, parse_document, parse_webhook_body};
use credtrail_aggregator::policy::Policy;
use credtrail_aggregator::state::AppState;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/k8s-audit")
}

/// `(file, events, format column)` from the README's file table.
fn readme_table() -> BTreeMap<String, (usize, String)> {
    let text = std::fs::read_to_string(root().join("README.md")).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cols: Vec<&str> = line.split(" | ").collect();
        let file = cols[0]
            .trim_start_matches("| `")
            .trim_end_matches('`')
            .to_owned();
        let events: usize = cols[2].trim().parse().unwrap();
        out.insert(file, (events, cols[6].to_owned()));
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.file_name().unwrap() != "README.md" {
            out.push(p);
        }
    }
}

fn format_of(col: &str) -> InputFormat {
    if col.starts_with("wrapper:") && col.contains("AKS") {
        InputFormat::AksEventHubs
    } else if col.starts_with("wrapper:") && col.contains("Log Analytics") {
        InputFormat::AzureLogAnalytics
    } else {
        InputFormat::Native
    }
}

#[tokio::test]
async fn every_capture_parses_or_is_rejected_with_a_counted_reason() {
    let table = readme_table();
    let mut files = Vec::new();
    walk(&root(), &mut files);
    files.sort();
    assert_eq!(
        files.len(),
        table.len(),
        "every file is in the README table and vice versa"
    );
    assert!(
        files.len() >= 90,
        "the captures are present ({} files)",
        files.len()
    );
    let app = AppState::in_memory(Policy::default()).unwrap();
    let (mut total, mut rejected, mut wrapped) = (0usize, 0usize, 0usize);
    for path in &files {
        let rel = path
            .strip_prefix(root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let (want, col) = table
            .get(&rel)
            .unwrap_or_else(|| panic!("{rel} not in README"));
        let bytes = std::fs::read(path).unwrap();
        let format = format_of(col);
        let parsed = parse_document(&bytes, format);
        assert_eq!(
            parsed.events.len(),
            *want,
            "{rel}: events ({:?})",
            parsed.errors
        );
        if *want == 0 {
            // The deliberately malformed stub: rejected, with the reason.
            assert_eq!(parsed.errors.len(), 1, "{rel}");
            assert!(
                parsed.errors[0].to_string().contains("missing field"),
                "{rel}: {}",
                parsed.errors[0]
            );
            rejected += parsed.errors.len();
        } else {
            assert!(parsed.errors.is_empty(), "{rel}: {:?}", parsed.errors);
        }
        if format != InputFormat::Native {
            wrapped += 1;
            // Read natively, a wrapper is rejected and the message names the option.
            let native = parse_document(&bytes, InputFormat::Native);
            assert!(native.events.is_empty(), "{rel}");
            let msg = native.errors[0].to_string();
            assert!(msg.contains("--input-format"), "{rel}: {msg}");
        }
        for ev in &parsed.events {
            assert!(!ev.audit_id.is_empty(), "{rel}");
            assert!(ev.time().timestamp() > 1_400_000_000, "{rel}: a real time");
        }
        total += parsed.events.len();
        app.pipeline
            .ingest_audit_batch("replay", parsed.events)
            .await
            .unwrap();
    }
    assert_eq!(
        wrapped, 3,
        "two AKS Event Hubs files, one Log Analytics file"
    );
    assert_eq!(rejected, 1);
    // Everything stored once per (auditID, stage); the three audit2rbac versions overlap.
    let stored: i64 = app
        .store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert!(
        stored > 0 && (stored as usize) < total,
        "stored {stored} of {total}"
    );
    eprintln!(
        "{} files, {total} events, {stored} distinct, {rejected} rejected",
        files.len()
    );
}

#[test]
fn bom_and_v1beta1_and_sorted_keys_parse() {
    // UTF-8 BOM + pretty-printed single event.
    let p = root().join("sysdiglabs__aks-audit-log/samples__sample_KubeAuditLog_event.json");
    let bytes = std::fs::read(&p).unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"));
    let parsed = parse_document(&bytes, InputFormat::Native);
    assert_eq!(parsed.events.len(), 1);
    assert_eq!(
        parsed.events[0].user.username,
        "system:serviceaccount:kube-system:daemon-set-controller"
    );
    // v1beta1 JSON lines with impersonation.
    let p = root().join("liggitt__audit2rbac/testdata__demo.log@501d132a");
    let parsed = parse_document(&std::fs::read(p).unwrap(), InputFormat::Native);
    assert_eq!(parsed.events.len(), 757);
    assert!(parsed.events.iter().any(|e| {
        e.impersonated_user
            .as_ref()
            .is_some_and(|u| u.username == "bob")
    }));
}

#[test]
fn webhook_body_rejects_a_bad_item_by_index_and_accepts_items_without_kind() {
    let good = r#"{"level":"Metadata","auditID":"x","stage":"ResponseComplete","requestURI":"/","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":"2024-01-01T00:00:00Z"}"#;
    let body =
        format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{good},{good}]}}"#);
    assert_eq!(parse_webhook_body(body.as_bytes()).unwrap().len(), 2);
    let bad = format!(r#"{{"kind":"EventList","items":[{good},{{"kind":0}}]}}"#);
    let err = parse_webhook_body(bad.as_bytes()).unwrap_err();
    assert_eq!(err.location, "items[1]", "{err}");
    assert!(err.reason.contains("missing field"), "{err}");
    let err = parse_webhook_body(b"not json").unwrap_err();
    assert!(
        err.to_string().contains("not an audit.k8s.io EventList"),
        "{err}"
    );
}

#[test]
fn json_lines_report_bad_lines_by_number_and_keep_the_rest() {
    let p = root().join("hackadvisermx__hacknotes25/CTFs__ctfs-2024__12-tryhackme-advent__dia-22.md.extracted.jsonl");
    let text = std::fs::read_to_string(p).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(2, "{\"kind\": 0}");
    lines.insert(5, "{truncated");
    let parsed = parse_document(lines.join("\n").as_bytes(), InputFormat::Native);
    assert_eq!(parsed.events.len(), 14);
    let locs: Vec<&str> = parsed.errors.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(locs, ["line 3", "line 6"]);
}

#[test]
fn objects_of_every_shape_parse_in_every_form() {
    // kubectl patch --type=json logs an array whose values are objects; the
    // apply and merge forms log objects; some encoders log strings.
    let items = [
        r#"[{"op":"add","path":"/subjects/-","value":{"kind":"User","name":"eve"}}]"#,
        r#"{"subjects":[{"kind":"User","name":"eve"}]}"#,
        r#""kind: ClusterRoleBinding""#,
        "42",
        "null",
    ];
    let ev = |i: usize, obj: &str| {
        format!(
            r#"{{"level":"Request","auditID":"p{i}","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/x","verb":"patch","user":{{"username":"u"}},"objectRef":{{"resource":"clusterrolebindings","name":"x","apiGroup":"rbac.authorization.k8s.io"}},"requestObject":{obj},"responseObject":{obj},"requestReceivedTimestamp":"2026-01-01T00:00:00Z"}}"#
        )
    };
    let all: Vec<String> = items.iter().enumerate().map(|(i, o)| ev(i, o)).collect();
    // Webhook EventList (fast path), and with a bad item (the slow path names it).
    let body = format!(r#"{{"kind":"EventList","items":[{}]}}"#, all.join(","));
    assert_eq!(
        parse_webhook_body(body.as_bytes()).unwrap().len(),
        items.len()
    );
    let bad = format!(
        r#"{{"kind":"EventList","items":[{},{{"kind":0}}]}}"#,
        all.join(",")
    );
    let err = parse_webhook_body(bad.as_bytes()).unwrap_err();
    assert_eq!(err.location, format!("items[{}]", items.len()), "{err}");
    // JSON lines, and a pretty-printed EventList document.
    let parsed = parse_document(all.join("\n").as_bytes(), InputFormat::Native);
    assert_eq!((parsed.events.len(), parsed.errors.len()), (items.len(), 0));
    let pretty = serde_json::to_string_pretty(
        &serde_json::from_str::<serde_json::Value>(&format!(
            r#"{{"kind":"EventList","items":[{},{{"kind":0}}]}}"#,
            all.join(",")
        ))
        .unwrap(),
    )
    .unwrap();
    let parsed = parse_document(pretty.as_bytes(), InputFormat::Native);
    assert_eq!((parsed.events.len(), parsed.errors.len()), (items.len(), 1));
    assert_eq!(
        parsed.events[0].request_object.as_ref().unwrap().value(),
        serde_json::from_str(items[0]).ok()
    );
    assert!(
        parsed.events[4].request_object.is_none(),
        "null is no object"
    );
}
