//! `deploy/` validated against the Kubernetes schemas and checked for what the agent and the
//! API server need. The schema work is `deploy/check/validate.py` (kubernetes-validate, strict,
//! offline; Helm's own engine renders the chart), driven by the same module `cargo xtask test`
//! uses. Regenerate the plain manifests from the chart with `CREDTRAIL_BLESS=1`.

use crate::deploy_check;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn one_doc(rel: &str, kind: &str) -> Value {
    yaml_docs(&deploy().join(rel))
        .into_iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in deploy/{rel}"))
}

fn failures(results: &[Value]) -> Vec<String> {
    results
        .iter()
        .filter(|r| r["ok"] != true)
        .map(|r| {
            format!(
                "{} {} {} [{}]: {}",
                r["source"], r["kind"], r["name"], r["validator"], r["errors"]
            )
        })
        .collect()
}

#[test]
fn every_manifest_and_the_rendered_chart_pass_the_kubernetes_schemas() {
    let bless = std::env::var_os("CREDTRAIL_BLESS").is_some();
    let results = deploy_check::validate_all(&deploy(), bless).expect("validator ran");
    let failed = failures(&results);
    assert!(failed.is_empty(), "failed checks:\n{}", failed.join("\n"));

    // Each kind of check really ran, on each kind of file.
    let ran = |validator: &str, kind: &str, source_prefix: &str| {
        results.iter().any(|r| {
            r["validator"] == validator
                && r["kind"] == kind
                && r["source"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(source_prefix)
        })
    };
    for kind in [
        "DaemonSet",
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
        "ConfigMap",
        "ServiceAccount",
        "Role",
        "Namespace",
        "NetworkPolicy",
    ] {
        for version in deploy_check::KUBERNETES_VERSIONS.split(',') {
            let v = format!("kubernetes-{version}");
            assert!(
                ran(&v, kind, "deploy/manifests/"),
                "{kind} not validated against {v}"
            );
            assert!(
                ran(&v, kind, "helm:"),
                "rendered {kind} not validated against {v}"
            );
        }
    }
    assert!(ran(
        "schema:cert-manager",
        "Certificate",
        "deploy/manifests/"
    ));
    assert!(ran("schema:cert-manager", "Issuer", "helm:defaults:"));
    assert!(ran("schema:audit", "Policy", "deploy/audit/"));
    assert!(ran("schema:kubeconfig", "Config", "deploy/audit/"));
    // The ConfigMap that carries the API server's files is opened and its contents checked.
    assert!(ran("schema:audit", "Policy", "helm:everything.yaml:"));
    assert!(ran("kubernetes-1.37.0", "Secret", "helm:secret-mode.yaml:"));
    assert!(ran("helm-lint", "Chart", "deploy/helm/credtrail"));
    // values.schema.json refuses bad values (each case must fail naming its key), and the chart
    // refuses an unconfirmed namespace without the privileged Pod Security label.
    let refusals = results
        .iter()
        .filter(|r| r["validator"] == "schema-refuses")
        .count();
    assert!(refusals >= 5, "only {refusals} schema refusal checks ran");
    assert!(ran(
        "pod-security-guard",
        "Chart",
        "helm:unconfirmed-namespace"
    ));
    assert!(ran("chart-equals-plain", "-", "deploy/manifests"));
    for values in [
        "defaults",
        "secret-mode.yaml",
        "everything.yaml",
        "cloud-inputs.yaml",
    ] {
        assert!(
            ran("helm-render", "Chart", &format!("helm:{values}")),
            "chart not rendered with {values}"
        );
    }
}

#[test]
fn the_validator_rejects_broken_files() {
    let dir = tempfile::tempdir().unwrap();
    let daemonset =
        std::fs::read_to_string(deploy().join("manifests/agent-daemonset.yaml")).unwrap();
    let policy = std::fs::read_to_string(deploy().join("audit/audit-policy.yaml")).unwrap();
    let kubeconfig =
        std::fs::read_to_string(deploy().join("audit/webhook-kubeconfig.yaml")).unwrap();
    let certs = std::fs::read_to_string(deploy().join("manifests/tls-cert-manager.yaml")).unwrap();
    // (file name, original, broken copy, expected error)
    let cases: Vec<(&str, &str, String, &str)> = vec![
        (
            "typo.yaml",
            &daemonset,
            daemonset.replace("hostPID: true", "hostPid: true"),
            "'hostPid' was unexpected",
        ),
        (
            "fieldpath.yaml",
            &daemonset,
            daemonset.replace("fieldPath: spec.nodeName", "fieldPath: [spec.nodeName]"),
            "is not of type 'string'",
        ),
        (
            "dup.yaml",
            &daemonset,
            daemonset.replace("hostPID: true", "hostPID: true\n      hostPID: false"),
            "duplicate key",
        ),
        (
            "level.yaml",
            &policy,
            policy.replace("level: Metadata", "level: Everything"),
            "'Everything' is not one of",
        ),
        (
            "kubeconfig.yaml",
            &kubeconfig,
            kubeconfig.replace("server: https://", "server: http://"),
            "does not match",
        ),
        (
            "usage.yaml",
            &certs,
            certs.replacen("client auth", "client-auth", 1),
            "'client-auth' is not one of",
        ),
    ];
    let mut files = Vec::new();
    for (name, original, broken, _) in &cases {
        assert_ne!(
            *original,
            broken.as_str(),
            "{name}: the mutation changed nothing"
        );
        let path = dir.path().join(name);
        std::fs::write(&path, broken).unwrap();
        files.push(path);
    }
    let results = deploy_check::validate_files(&deploy(), &files).expect("validator ran");
    for (name, _, _, expected) in &cases {
        let errors: Vec<String> = results
            .iter()
            .filter(|r| r["source"].as_str().unwrap_or("").ends_with(name) && r["ok"] != true)
            .map(|r| r["errors"].to_string())
            .collect();
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{name}: expected an error containing {expected:?}, got {errors:?}"
        );
    }
}

#[test]
fn the_daemonset_grants_only_what_the_agent_needs() {
    let ds = one_doc("manifests/agent-daemonset.yaml", "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["hostNetwork"], Value::Null, "no host network");
    // Tolerates every taint: an agent on every node.
    assert!(
        pod["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["operator"] == "Exists" && t.get("key").is_none()),
        "tolerations: {}",
        pod["tolerations"]
    );
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_ne!(sc["privileged"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let mut caps: Vec<&str> = sc["capabilities"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    caps.sort_unstable();
    assert_eq!(
        caps,
        [
            "BPF",
            "DAC_READ_SEARCH",
            "PERFMON",
            "SYS_PTRACE",
            "SYS_RESOURCE"
        ],
        "no SYS_ADMIN, nothing beyond eBPF and attribution"
    );
    // Requests and limits for both cpu and memory.
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][res].is_string(),
                "resources.{kind}.{res}"
            );
        }
    }
    // NODE_NAME from the downward API.
    let env = c["env"].as_array().unwrap();
    let node = env
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .expect("NODE_NAME");
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
    // The node's addresses from the downward API, never the pod's interfaces.
    for (name, field) in [("NODE_IP", "status.hostIP"), ("NODE_IPS", "status.hostIPs")] {
        let e = env
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], field);
    }
    // Seccomp: the Localhost profile, written by the init container (the only writable host
    // path, the profile's own directory under the kubelet's seccomp root).
    assert_eq!(sc["seccompProfile"]["type"], "Localhost");
    let profile = sc["seccompProfile"]["localhostProfile"].as_str().unwrap();
    let init = &pod["initContainers"][0];
    assert_eq!(
        init["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert!(init["securityContext"]["capabilities"].get("add").is_none());
    assert_eq!(init["image"], c["image"]);
    let init_mounts = init["volumeMounts"].as_array().unwrap();
    assert_eq!(init_mounts.len(), 1);
    let dest = init["args"][0].as_str().unwrap();
    let dest = dest.strip_prefix("--install-seccomp-profile=").unwrap();
    let rel = dest
        .strip_prefix(&format!(
            "{}/",
            init_mounts[0]["mountPath"].as_str().unwrap()
        ))
        .unwrap();
    let seccomp_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == init_mounts[0]["name"])
        .unwrap();
    assert_eq!(
        format!(
            "{}/{rel}",
            seccomp_volume["hostPath"]["path"].as_str().unwrap()
        ),
        format!("/var/lib/kubelet/seccomp/{profile}"),
        "the init container writes where the kubelet reads the profile"
    );
    // Host paths: exactly these, each mounted read-only by the agent.
    let volumes = pod["volumes"].as_array().unwrap();
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mut host_paths = Vec::new();
    for v in volumes {
        let Some(path) = v["hostPath"]["path"].as_str() else {
            continue;
        };
        if v["name"] == seccomp_volume["name"] {
            assert!(mounts.iter().all(|m| m["name"] != v["name"]));
            continue;
        }
        let mount = mounts
            .iter()
            .find(|m| m["name"] == v["name"])
            .unwrap_or_else(|| panic!("host path {path} is not mounted"));
        assert_eq!(mount["readOnly"], true, "{path} must be mounted read-only");
        host_paths.push(path);
    }
    host_paths.sort_unstable();
    assert_eq!(
        host_paths,
        [
            "/proc",
            "/sys/fs/cgroup",
            "/sys/kernel/btf",
            "/sys/kernel/security",
            "/sys/kernel/tracing",
            "/var/lib/kubelet/pki",
            "/var/lib/kubelet/pods"
        ]
    );
    // Writable: only the pod's own spool (an emptyDir), nothing of the host's.
    for m in mounts {
        let volume = volumes.iter().find(|v| v["name"] == m["name"]).unwrap();
        if volume.get("emptyDir").is_some() {
            continue;
        }
        assert_eq!(m["readOnly"], true, "agent mount must be read-only: {m}");
    }
    // The agent sees the aggregator's CA certificate, never the aggregator's key.
    let ca = volumes
        .iter()
        .find(|v| v["secret"].is_object())
        .expect("the aggregator CA volume");
    assert_eq!(
        ca["secret"]["items"],
        serde_json::json!([{"key": "ca.crt", "path": "ca.crt"}])
    );
}

#[test]
fn the_aggregator_is_one_replica_on_its_volume_behind_its_service() {
    let dep = one_doc("manifests/aggregator-deployment.yaml", "Deployment");
    assert_eq!(dep["spec"]["replicas"], 1, "SQLite: one writer");
    assert_eq!(dep["spec"]["strategy"]["type"], "Recreate");
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let pvc = one_doc("manifests/aggregator-pvc.yaml", "PersistentVolumeClaim");
    let claim = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
        .expect("a PVC volume");
    assert_eq!(claim, pvc["metadata"]["name"]);
    assert_eq!(
        pvc["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
        "helm uninstall must not delete the evidence"
    );
    // One log-level variable, the one the aggregator reads.
    let env = pod["containers"][0]["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == "CREDTRAIL_LOG"), "{env:?}");
    assert!(env.iter().all(|e| e["name"] != "RUST_LOG"), "{env:?}");
    // Every container port is exposed by the Service under the same name.
    let svc = one_doc("manifests/aggregator-service.yaml", "Service");
    let c = &pod["containers"][0];
    for port in c["ports"].as_array().unwrap() {
        let name = &port["name"];
        let sp = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| &p["name"] == name)
            .unwrap_or_else(|| panic!("Service lacks port {name}"));
        assert_eq!(sp["port"], port["containerPort"]);
        assert_eq!(&sp["targetPort"], name);
    }
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(
            &pod_labels(&dep)[k],
            v,
            "Service selector {k} matches the pod"
        );
    }
    // Probes hit the API port.
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
}

fn pod_labels(dep: &Value) -> serde_json::Map<String, Value> {
    dep["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap()
        .clone()
}

#[test]
fn the_audit_policy_logs_bindings_with_bodies_and_the_rest_at_metadata() {
    let policy = yaml_docs(&deploy().join("audit/audit-policy.yaml")).remove(0);
    let rules = policy["rules"].as_array().unwrap();
    let binding_rule = rules
        .iter()
        .position(|r| {
            r["resources"].as_array().is_some_and(|res| {
                res.iter().any(|g| {
                    g["group"] == "rbac.authorization.k8s.io"
                        && g["resources"].as_array().is_some_and(|r| {
                            r.contains(&serde_json::json!("rolebindings"))
                                && r.contains(&serde_json::json!("clusterrolebindings"))
                        })
                })
            })
        })
        .expect("a rule for role bindings");
    assert_eq!(rules[binding_rule]["level"], "RequestResponse");
    // Writes only: reads are at Metadata (deploy_chart checks every verb).
    assert!(rules[binding_rule]["verbs"].as_array().is_some());
    let last = rules.last().unwrap();
    assert_eq!(last["level"], "Metadata");
    assert_eq!(
        last.as_object().unwrap().len(),
        1,
        "the last rule matches everything: {last}"
    );
    // Nothing before the binding rule can catch bindings at a lower level.
    assert_eq!(binding_rule, 0);

    // The webhook kubeconfig points at the aggregator Service's webhook port.
    let kc = yaml_docs(&deploy().join("audit/webhook-kubeconfig.yaml")).remove(0);
    let server = kc["clusters"][0]["cluster"]["server"].as_str().unwrap();
    let svc = one_doc("manifests/aggregator-service.yaml", "Service");
    let port = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "webhook")
        .unwrap()["port"]
        .clone();
    let host = format!(
        "https://{}.{}.svc:{port}/",
        svc["metadata"]["name"].as_str().unwrap(),
        svc["metadata"]["namespace"].as_str().unwrap()
    );
    assert!(server.starts_with(&host), "{server} is not on {host}");
    let user = &kc["users"][0]["user"];
    for key in ["client-certificate", "client-key"] {
        assert!(
            user[key].as_str().unwrap().starts_with('/'),
            "{key} is a file path"
        );
    }
}

#[test]
fn the_plain_secret_script_makes_a_working_ca_and_valid_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(deploy().join("tls/make-certs.sh"))
        .arg(dir.path())
        .args(["credtrail", "credtrail"])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "make-certs.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Only file names on the terminal: no key material.
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !printed.contains("BEGIN"),
        "key material printed: {printed}"
    );
    let key = std::fs::read_to_string(dir.path().join("aggregator.key")).unwrap();
    assert!(key.contains("PRIVATE KEY"));
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!printed.contains(&body));

    let secrets = dir.path().join("secrets.yaml");
    let results = deploy_check::validate_files(&deploy(), std::slice::from_ref(&secrets))
        .expect("validator ran");
    let failed = failures(&results);
    assert!(failed.is_empty(), "{failed:?}");
    let names: Vec<String> = yaml_docs(&secrets)
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    // The names the chart mounts (cert-manager writes the same Secrets).
    let certs = yaml_docs(&deploy().join("manifests/tls-cert-manager.yaml"));
    let mut wanted: Vec<String> = certs
        .iter()
        .filter(|d| d["kind"] == "Certificate" && d["spec"]["isCA"] != true)
        .map(|d| d["spec"]["secretName"].as_str().unwrap().to_owned())
        .collect();
    wanted.sort();
    let mut got = names.clone();
    got.sort();
    assert_eq!(got, wanted);

    // The chain verifies, and each leaf has the usage its peer will check.
    for (leaf, usage) in [
        ("aggregator", "TLS Web Server Authentication"),
        ("webhook-client", "TLS Web Client Authentication"),
    ] {
        let verify = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(dir.path().join("ca.crt"))
            .arg(dir.path().join(format!("{leaf}.crt")))
            .output()
            .expect("openssl");
        assert!(verify.status.success(), "{leaf}: {verify:?}");
        let text = Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(dir.path().join(format!("{leaf}.crt")))
            .output()
            .expect("openssl");
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains(usage), "{leaf} lacks {usage}");
        if leaf == "aggregator" {
            assert!(text.contains("DNS:credtrail-aggregator.credtrail.svc"));
        }
    }
}

/// `deploy/tls/renew-webhook-client.sh` against a stand-in `kubectl` that
/// serves a Secret from files: it installs a valid renewal, leaves current
/// files alone, and refuses a mismatched key (the old files stay).
#[test]
fn the_webhook_client_renewal_script_installs_renewals_and_refuses_bad_ones() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let make = |n: &str| {
        let d = tmp.path().join(n);
        let out = Command::new("bash")
            .arg(deploy().join("tls/make-certs.sh"))
            .arg(&d)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        d
    };
    let (g1, g2) = (make("g1"), make("g2"));
    let secret = tmp.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    let serve = |crt: &Path, key: &Path, ca: &Path| {
        std::fs::copy(crt, secret.join("tls.crt")).unwrap();
        std::fs::copy(key, secret.join("tls.key")).unwrap();
        std::fs::copy(ca, secret.join("ca.crt")).unwrap();
    };
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // kubectl -n NS get secret NAME -o jsonpath={.data.tls\.crt}
    std::fs::write(
        bin.join("kubectl"),
        format!(
            "#!/bin/sh\nfor a; do last=$a; done\nf=$(printf %s \"$last\" | sed 's/.*data\\.//; s/}}$//; s/\\\\//g')\nbase64 -w0 < {}/\"$f\"\n",
            secret.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("kubectl"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let target = tmp.path().join("etc-kubernetes-credtrail");
    let run = || {
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        Command::new("bash")
            .arg(deploy().join("tls/renew-webhook-client.sh"))
            .args(["credtrail", "credtrail"])
            .arg(&target)
            .env("PATH", path)
            .output()
            .unwrap()
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    serve(
        &g1.join("webhook-client.crt"),
        &g1.join("webhook-client.key"),
        &g1.join("ca.crt"),
    );
    let o = run();
    assert!(
        o.status.success() && text(&o).contains("renewed"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains("BEGIN"), "no key material printed");
    let mode = std::fs::metadata(target.join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let o = run();
    assert!(
        o.status.success() && text(&o).contains("up to date"),
        "{}",
        text(&o)
    );

    // A new certificate with the old key: refused, nothing replaced.
    serve(
        &g2.join("webhook-client.crt"),
        &g1.join("webhook-client.key"),
        &g2.join("ca.crt"),
    );
    let o = run();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("does not match"), "{}", text(&o));
    assert_eq!(
        std::fs::read(target.join("tls.crt")).unwrap(),
        std::fs::read(g1.join("webhook-client.crt")).unwrap()
    );
    assert_eq!(
        std::fs::read(target.join("ca.crt")).unwrap(),
        std::fs::read(g1.join("ca.crt")).unwrap()
    );

    // The renewal proper.
    serve(
        &g2.join("webhook-client.crt"),
        &g2.join("webhook-client.key"),
        &g2.join("ca.crt"),
    );
    let o = run();
    assert!(
        o.status.success() && text(&o).contains("renewed"),
        "{}",
        text(&o)
    );
    for (f, src) in [
        ("tls.crt", "webhook-client.crt"),
        ("tls.key", "webhook-client.key"),
        ("ca.crt", "ca.crt"),
    ] {
        assert_eq!(
            std::fs::read(target.join(f)).unwrap(),
            std::fs::read(g2.join(src)).unwrap(),
            "{f}"
        );
    }
}
