//! Every rule's alerts, encoded as OCSF Detection Findings, validate against
//! the OCSF schema shipped by a maintained PyPI package (`tools::OCSF_PACKAGE`):
//! its Pydantic model plus a strict walk of the same schema
//! (`aggregator/tests/ocsf/validate.py`). A broken finding is refused, so the
//! check is not vacuous.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use credtrail_aggregator::alert::{Alert, Evidence};
use credtrail_aggregator::detect::rules::RULES;
use credtrail_aggregator::encode::{Format, ocsf};

use crate::tools;

fn corpus_alerts() -> Vec<Alert> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../eval/scenarios");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("scenario.yaml").exists())
        .collect();
    dirs.sort();
    dirs.iter()
        .flat_map(|d| credtrail_aggregator::eval::run_scenario(d).alerts)
        .collect()
}

/// An alert with every optional part filled: agents' evidence with pod,
/// container, process and file; impersonation; IPv6; suppressed.
fn full_alert(base: &Alert) -> Alert {
    let mut a = base.clone();
    a.id = format!("{}-full", a.id);
    a.source_ip = Some("::1".parse().unwrap());
    a.identity.impersonated_by = Some("system:admin".into());
    a.identity.groups = vec!["system:authenticated".into()];
    a.request.user_agent = Some("kubectl/v1.31".into());
    a.request.response_code = Some(403);
    a.evidence = vec![Evidence {
        kind: "credential_read".into(),
        observation_id: "obs-1".into(),
        node: "node-a".into(),
        pod: Some("default/web-1".into()),
        container_id: Some("containerd://abc".into()),
        pid: Some(4242),
        comm: Some("curl".into()),
        exe: Some("/usr/bin/curl".into()),
        path: Some("/var/run/secrets/kubernetes.io/serviceaccount/token".into()),
        time: a.time,
    }];
    a.details = serde_json::json!({"suppressed_by": "sup-1"});
    a
}

fn validate(lines: &str) -> (bool, String) {
    let python = tools::ocsf_python();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("findings.jsonl");
    std::fs::write(&file, lines).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ocsf/validate.py");
    let out = Command::new(python)
        .arg(script)
        .arg(ocsf::SCHEMA_VERSION)
        .arg(&file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn every_rule_sample_alert_is_a_valid_ocsf_detection_finding() {
    let mut alerts = corpus_alerts();
    let rules: BTreeSet<&str> = alerts.iter().map(|a| a.rule.as_str()).collect();
    for r in RULES {
        assert!(
            rules.contains(r.id),
            "no sample alert of {} in the corpus",
            r.id
        );
    }
    let full = full_alert(&alerts[0]);
    alerts.push(full);
    let lines: String = alerts.iter().map(|a| Format::Ocsf.line(a)).collect();
    let (ok, text) = validate(&lines);
    println!("{text}");
    assert!(ok, "OCSF validation failed:\n{text}");
    assert!(
        text.contains(&format!("{0} of {0} findings valid", alerts.len())),
        "{text}"
    );
}

#[test]
fn a_broken_finding_is_refused_by_the_validator() {
    let a = corpus_alerts().remove(0);
    let good: serde_json::Value = serde_json::from_str(&Format::Ocsf.record(&a)).unwrap();
    let mut bad = Vec::new();
    let mut v = good.clone();
    v["finding_info"]["analytic"]["rule_id"] = "x".into();
    bad.push(v);
    let mut v = good.clone();
    v["severity_id"] = 9.into();
    bad.push(v);
    let mut v = good.clone();
    v["finding_info"].as_object_mut().unwrap().remove("uid");
    bad.push(v);
    let mut v = good;
    v["type_uid"] = 200_402.into();
    bad.push(v);
    let lines: String = bad.iter().map(|v| format!("{v}\n")).collect();
    let (ok, text) = validate(&lines);
    assert!(!ok, "{text}");
    for what in [
        "rule_id: not an attribute",
        "severity_id",
        "finding_info.uid: required",
        "type_uid",
    ] {
        assert!(text.contains(what), "{what} not reported:\n{text}");
    }
    assert!(text.contains("0 of 4 findings valid"), "{text}");
}

#[tokio::test]
async fn export_endpoint_serves_valid_ocsf_findings() {
    use crate::api_support::{Api, base_time, grant_to_anonymous};
    use hyper::{Method, StatusCode};
    let api = Api::start().await;
    let events = (0..3)
        .map(|i| {
            grant_to_anonymous(
                &format!("aud-o-{i}"),
                &format!("o-{i}"),
                &format!("mallory<{i}>"),
                "127.0.66.1",
                base_time() + chrono::Duration::minutes(i),
            )
        })
        .collect();
    let raised = api.ingest(events).await;
    assert!(raised > 0);
    let (s, h, body) = api
        .request(Method::GET, "/api/v1/export/alerts?format=ocsf", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "application/x-ndjson");
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .contains("credtrail-alerts.ocsf.jsonl")
    );
    assert_eq!(body.lines().count(), raised);
    let (ok, text) = validate(&body);
    assert!(ok, "{text}");
    let (s, _, body) = api
        .request(Method::GET, "/api/v1/export/alerts?format=xml", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("jsonl, cef, ocsf"), "{body}");
}

#[test]
fn replay_cli_writes_each_format_with_the_shared_encoders() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../eval/scenarios/an1579-create-crb-cluster-admin-from-outside");
    let alerts = credtrail_aggregator::eval::run_scenario(&dir).alerts;
    assert!(!alerts.is_empty());
    for f in [Format::Jsonl, Format::Ocsf, Format::Cef] {
        let out = Command::new(env!("CARGO_BIN_EXE_credtrail-aggregator"))
            .args(["replay", "--format", f.name(), "--audit"])
            .arg(dir.join("audit.jsonl"))
            .arg("--observations")
            .arg(dir.join("observations.jsonl"))
            .arg("--policy")
            .arg(dir.join("policy.yaml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want: String = alerts.iter().map(|a| f.line(a)).collect();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), want, "{f:?}");
    }
}
