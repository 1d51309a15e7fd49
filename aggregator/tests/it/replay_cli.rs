//! `credtrail-aggregator replay`: JSON lines, deterministic, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_credtrail-aggregator"))
}

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/k8s-audit")
        .join(rel)
}

fn replay(args: &[&str]) -> Output {
    bin().arg("replay").args(args).output().unwrap()
}

const ADMIN: &str =
    "falcosecurity__falco/test__trace_files__k8s_audit__attach_cluster_admin_role.json";
const BASIC: &str =
    "falcosecurity__falco/test__trace_files__k8s_audit__create_clusterrolebinding.json";

#[test]
fn replay_prints_alerts_as_json_lines_deterministically() {
    let a = data(ADMIN);
    let b = data(BASIC);
    let demo = data("liggitt__audit2rbac/testdata__demo.log@501d132a");
    let args = [
        "--audit",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        demo.to_str().unwrap(),
    ];
    let out = replay(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let alerts: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        alerts
            .iter()
            .any(|a| a["rule"] == "CT1579-001"
                && a["details"]["role_ref"]["name"] == "cluster-admin")
    );
    assert!(
        !alerts
            .iter()
            .any(|a| a["details"]["role_ref"]["name"] == "system:basic-user")
    );
    // The demo log's Metadata-level binding writes are reported as blind.
    assert!(alerts.iter().filter(|a| a["rule"] == "CT1579-004").count() >= 30);
    // Time order, and the same bytes on a second run.
    let times: Vec<&str> = alerts.iter().map(|a| a["time"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
    assert_eq!(replay(&args).stdout, out.stdout);
}

#[test]
fn replay_reads_wrappers_only_with_the_option() {
    let f = data("sysdiglabs__aks-audit-log/samples__event.json");
    let out = replay(&["--audit", f.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--input-format aks-event-hubs"));
    let out = replay(&[
        "--input-format",
        "aks-event-hubs",
        "--audit",
        f.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("22 events"));
}

#[test]
fn replay_fails_clearly_on_unreadable_input() {
    let out = replay(&["--audit", "/nonexistent/audit.log"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read /nonexistent/audit.log"), "{err}");
    let stub = data("falcosecurity__falco/test__trace_files__k8s_audit__fal_01_003.json");
    let out = replay(&["--audit", stub.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no audit event could be read"));
}

#[test]
fn replay_joins_observations_and_applies_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let obs = dir.path().join("obs.jsonl");
    std::fs::write(&obs, concat!(
        r#"{"id":"node-a/b/1","time":"2026-03-01T09:59:00Z","node":"node-a","type":"node_info","name":"node-a","addresses":["127.0.1.1"],"pod_cidrs":["127.1.1.0/24"],"agent_version":"0.1.0","kernel_release":"6.18","hooks":[]}"#, "\n",
        r#"{"id":"node-a/b/2","time":"2026-03-01T09:59:01Z","node":"node-a","type":"credential_read","source":"scan","path":"/var/lib/kubelet/pods/u/volumes/kubernetes.io~projected/kube-api-access/..2026/token","flags":0,"inode":1,"reads":1,"credential":{"kind":"service_account_token","token":{"sha256":"00","claims":{"jti":"j-1","sub":"system:serviceaccount:shop:web","namespace":"shop","service_account_name":"web"}}}}"#, "\n",
    )).unwrap();
    let audit = dir.path().join("audit.log");
    std::fs::write(&audit, concat!(
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"q1","stage":"ResponseComplete","requestURI":"/api/v1/secrets","verb":"list","user":{"username":"system:serviceaccount:shop:web","extra":{"authentication.kubernetes.io/credential-id":["JTI=j-1"]}},"sourceIPs":["127.77.0.1"],"objectRef":{"resource":"secrets"},"responseStatus":{"code":200},"requestReceivedTimestamp":"2026-03-01T10:00:00Z"}"#, "\n",
    )).unwrap();
    let out = replay(&[
        "--audit",
        audit.to_str().unwrap(),
        "--observations",
        obs.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alert: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(alert["rule"], "CT1547-002");
    assert_eq!(alert["severity"], "critical");
    // A policy trusting that range silences it.
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "trusted_ranges:\n  - name: vpn\n    cidrs: [127.77.0.0/16]\n",
    )
    .unwrap();
    let out = replay(&[
        "--audit",
        audit.to_str().unwrap(),
        "--observations",
        obs.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A broken policy: every problem named, non-zero exit.
    std::fs::write(&policy, "trusted_ranges:\n  - name: vpn\n    cidrs: [10.0.0/8, nope]\nautomation:\n  - name: ci\n    username: \"*\"\n    credential_ids: []\n    cidrs: []\n").unwrap();
    let out = replay(&[
        "--audit",
        audit.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "trusted_ranges[0].cidrs[0]",
        "trusted_ranges[0].cidrs[1]",
        "automation[0].username",
        "automation[0].credential_ids",
        "automation[0].cidrs",
    ] {
        assert!(err.contains(want), "{want} missing in {err}");
    }
}

#[test]
fn replay_reads_stdin() {
    use std::io::Write;
    let mut child = bin()
        .args(["replay", "--audit", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(data(ADMIN)).unwrap();
    child.stdin.take().unwrap().write_all(&bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["rule"], "CT1579-001");
}
