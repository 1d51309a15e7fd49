//! The managed control planes' audit formats (`tests/fixtures/cloud/`):
//! GKE Cloud Logging entries and EKS CloudWatch Logs subscription payloads
//! read into the same events as native audit logs, refused entries counted,
//! and judged by the pipeline.

use std::io::Write;
use std::path::{Path, PathBuf};

use credtrail_aggregator::audit::{InputFormat, parse_document};

use crate::common::app;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/cloud")
        .join(name)
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// What the fixtures' policy expects: the CI service account only from the
/// node range, so its secrets list from 198.51.100.23 is off-cluster.
pub const POLICY: &str = "cluster:\n  node_cidrs: [10.128.0.0/16]\nidentities:\n  - username: system:serviceaccount:ci:deployer\n    cidrs: [10.128.0.0/16]\n";

#[test]
fn gke_entries_map_every_documented_field() {
    let bytes = std::fs::read(fixture("gke-cloud-logging.jsonl")).unwrap();
    let p = parse_document(&bytes, InputFormat::GkeCloudLogging);
    assert_eq!(p.events.len(), 5, "{:?}", p.errors);
    // The odd methodName and the non-Kubernetes entry: refused, named, counted.
    assert_eq!(p.errors.len(), 2, "{:?}", p.errors);
    assert_eq!(p.errors[0].location, "entry 5");
    assert!(
        p.errors[0].reason.contains("methodName \"io.k8s.get\""),
        "{}",
        p.errors[0]
    );
    assert!(
        p.errors[1].reason.contains("container.googleapis.com"),
        "{}",
        p.errors[1]
    );

    let crb = &p.events[0];
    assert_eq!(crb.audit_id, "0c8a2f9e-6f2d-4bde-9a51-7c0e1b1d4a01");
    assert_eq!(crb.verb, "create");
    assert_eq!(crb.user.username, "alice@example.com");
    assert_eq!(crb.source_ip(), Some("203.0.113.7".parse().unwrap()));
    assert_eq!(
        crb.user_agent.as_deref(),
        Some("kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46")
    );
    assert_eq!(crb.api_group(), Some("rbac.authorization.k8s.io"));
    assert_eq!(crb.resource(), Some("clusterrolebindings"));
    assert_eq!(crb.name(), Some("tmp-admin"));
    assert_eq!(crb.namespace(), None);
    assert_eq!(crb.code(), Some(200));
    assert_eq!(crb.level.as_str(), "RequestResponse");
    assert_eq!(crb.annotations.decision.as_deref(), Some("allow"));
    assert_eq!(crb.time().to_rfc3339(), "2026-11-02T09:14:05.412733+00:00");
    let req = crb.request_object.as_ref().unwrap().value().unwrap();
    assert_eq!(req["roleRef"]["name"], "cluster-admin");
    assert!(
        req.get("@type").is_none(),
        "the Struct's @type is not part of the object"
    );

    let list = &p.events[1];
    assert_eq!(
        (
            list.verb.as_str(),
            list.resource(),
            list.namespace(),
            list.name()
        ),
        ("list", Some("secrets"), Some("kube-system"), None)
    );
    assert_eq!(list.api_group(), Some(""));
    assert_eq!(list.level.as_str(), "Metadata");
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
            exec.verb.as_str(),
            exec.resource(),
            exec.subresource(),
            exec.name(),
            exec.namespace()
        ),
        (
            "create",
            Some("pods"),
            Some("exec"),
            Some("web-0"),
            Some("default")
        )
    );

    let denied = &p.events[3];
    assert_eq!((denied.code(), denied.allowed()), (Some(403), false));
    assert_eq!(denied.namespace(), Some("ci"));
    assert_eq!(denied.name(), Some("ci-view"));
    assert_eq!(denied.level.as_str(), "Request");
    assert_eq!(p.events[4].code(), Some(404));

    // The JSON array export reads the same.
    let arr = parse_document(
        &std::fs::read(fixture("gke-cloud-logging.array.json")).unwrap(),
        InputFormat::GkeCloudLogging,
    );
    assert_eq!(arr.events, p.events);
    assert_eq!(arr.errors.len(), 2);
}

#[test]
fn native_reader_names_the_right_option_for_each_wrapper() {
    for (file, gz, want) in [
        (
            "gke-cloud-logging.jsonl",
            false,
            "--input-format gke-cloud-logging",
        ),
        (
            "gke-cloud-logging.array.json",
            false,
            "--input-format gke-cloud-logging",
        ),
        (
            "eks-cloudwatch.json",
            false,
            "--input-format eks-cloudwatch",
        ),
        ("eks-cloudwatch.json", true, "--input-format eks-cloudwatch"),
    ] {
        let mut bytes = std::fs::read(fixture(file)).unwrap();
        if gz {
            bytes = gzip(&bytes);
        }
        let p = parse_document(&bytes, InputFormat::Native);
        assert!(p.events.is_empty());
        assert!(!p.errors.is_empty());
        for e in &p.errors {
            assert!(e.reason.contains(want), "{file}: {e}");
            assert_eq!(e.label(), "wrapper_format", "{file}: {e}");
        }
    }
}

#[test]
fn a_firehose_request_given_to_the_native_reader_is_named() {
    let p = parse_document(
        br#"{"requestId":"ed4acda5","timestamp":1,"records":[{"data":"H4sIAAAA"}]}"#,
        InputFormat::Native,
    );
    assert!(
        p.errors[0].reason.contains("/v1/firehose/eks"),
        "{}",
        p.errors[0]
    );
    assert_eq!(p.errors[0].label(), "wrapper_format");
}

#[test]
fn eks_payloads_plain_gzip_and_concatenated() {
    let plain = std::fs::read(fixture("eks-cloudwatch.json")).unwrap();
    let p = parse_document(&plain, InputFormat::EksCloudwatch);
    assert_eq!(p.events.len(), 2, "{:?}", p.errors);
    assert!(p.errors.is_empty(), "{:?}", p.errors);
    assert_eq!(p.skipped.get("control_message"), Some(&1));
    assert_eq!(p.skipped.get("not_audit_stream"), Some(&1));
    assert_eq!(p.events[0].resource(), Some("clusterrolebindings"));
    assert_eq!(
        p.events[1].user.username,
        "system:serviceaccount:ci:deployer"
    );
    // As Kinesis/Firehose deliver it: gzip; and several gzip members back to back.
    let g = parse_document(&gzip(&plain), InputFormat::EksCloudwatch);
    assert_eq!(g.events, p.events);
    let mut two = gzip(&plain);
    two.extend(gzip(&plain));
    assert_eq!(
        parse_document(&two, InputFormat::EksCloudwatch)
            .events
            .len(),
        4
    );
}

#[test]
fn eks_gzip_bomb_is_refused_without_inflating_it() {
    // 80 MiB of one payload's padding compresses to ~80 KiB; the limit is 64 MiB.
    let mut big = br#"{"messageType":"DATA_MESSAGE","logStream":"kube-apiserver-audit-x","logEvents":[],"pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 80 << 20));
    big.extend(b"\"}");
    let bomb = gzip(&big);
    drop(big);
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let p = parse_document(&bomb, InputFormat::EksCloudwatch);
    assert!(p.events.is_empty());
    assert_eq!(p.errors.len(), 1);
    assert!(
        p.errors[0].reason.contains("decompresses past the limit"),
        "{}",
        p.errors[0]
    );
}

#[tokio::test]
async fn gke_and_eks_events_raise_the_same_alerts_as_native_ones() {
    for (file, format, gz) in [
        (
            "gke-cloud-logging.jsonl",
            InputFormat::GkeCloudLogging,
            false,
        ),
        ("eks-cloudwatch.json", InputFormat::EksCloudwatch, true),
    ] {
        let mut bytes = std::fs::read(fixture(file)).unwrap();
        if gz {
            bytes = gzip(&bytes);
        }
        let events = parse_document(&bytes, format).events;
        let a = app(POLICY);
        let r = a.pipeline.ingest_audit_batch("test", events).await.unwrap();
        let mut rules: Vec<&str> = r.alerts.iter().map(|a| a.rule.as_str()).collect();
        rules.sort();
        rules.dedup();
        assert!(rules.contains(&"CT1579-001"), "{file}: {:#?}", r.alerts);
        assert!(rules.contains(&"CT1547-002"), "{file}: {:#?}", r.alerts);
        let grant = r.alerts.iter().find(|a| a.rule == "CT1579-001").unwrap();
        assert!(format!("{:?}", grant).contains("cluster-admin"));
    }
}

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_credtrail-aggregator"))
}

#[test]
fn replay_reads_both_formats_and_names_them_in_native_mode() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let eks_gz = dir.path().join("eks.json.gz");
    std::fs::write(
        &eks_gz,
        gzip(&std::fs::read(fixture("eks-cloudwatch.json")).unwrap()),
    )
    .unwrap();
    for (format, file) in [
        ("gke-cloud-logging", fixture("gke-cloud-logging.jsonl")),
        ("gke-cloud-logging", fixture("gke-cloud-logging.array.json")),
        ("eks-cloudwatch", eks_gz.clone()),
    ] {
        let out = bin()
            .args(["replay", "--input-format", format, "--policy"])
            .arg(&policy)
            .arg("--audit")
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{format}: {err}");
        let alerts: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(
            alerts.iter().any(|a| a["rule"] == "CT1579-001"),
            "{format}: {alerts:#?}"
        );
        assert!(
            alerts.iter().any(|a| a["rule"] == "CT1547-002"),
            "{format}: {alerts:#?}"
        );
        if format == "eks-cloudwatch" {
            assert!(err.contains("skipped 1 (control_message)"), "{err}");
        } else {
            assert!(err.contains("2 rejected"), "{err}");
        }
        // The native reader refuses it and names the option.
        let out = bin()
            .args(["replay", "--audit"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("--input-format {format}")), "{err}");
    }
}

#[tokio::test]
async fn the_log_tailer_reads_one_wrapper_document_per_line() {
    use credtrail_aggregator::ingest::logtail::LogTailer;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gke-audit.jsonl");
    std::fs::copy(fixture("gke-cloud-logging.jsonl"), &log).unwrap();
    let a = app("");
    let t = LogTailer::new(log, a.pipeline.clone())
        .format(InputFormat::GkeCloudLogging)
        .poll_interval(std::time::Duration::from_millis(10));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(t.run(async {
        let _ = rx.await;
    }));
    let mut n = 0i64;
    for _ in 0..300 {
        n = a
            .store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))?))
            .await
            .unwrap();
        if n >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let _ = tx.send(());
    task.await.unwrap().unwrap();
    assert_eq!(n, 5, "the five k8s.io entries are stored");
    let mut m = String::new();
    prometheus_client::encoding::text::encode(&mut m, &a.metrics.registry).unwrap();
    assert!(
        m.contains(r#"rejected_total{source="log",reason="malformed_line"} 2"#),
        "{m}"
    );
}
