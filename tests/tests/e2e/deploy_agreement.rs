//! The manifests, the Helm chart's renders and the container build files agree with the real
//! binaries: every flag the DaemonSet and the Deployment pass is one the binary accepts (its
//! `--help`, and a parse of the exact argument list), each path flag points into a volume that
//! holds what the flag expects, the ports are the binary's and the Service's, the policy the
//! chart renders is one the aggregator loads, and the probes hit paths it serves.
//!
//! Builds `credtrail-agent` and `credtrail-aggregator` (debug) first: `cargo build` in a test
//! is fine, cargo releases its lock before running tests.

use crate::deploy_check;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn deploy() -> PathBuf {
    root().join("deploy")
}

/// `(agent, aggregator)` binaries, built once.
fn binaries() -> &'static (PathBuf, PathBuf) {
    static BINS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINS.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "credtrail-agent",
                "-p",
                "credtrail-aggregator",
                "--bins",
            ])
            .current_dir(root())
            .status()
            .expect("cargo");
        assert!(status.success(), "building the binaries failed");
        // This test runs from target/<profile>/deps/.
        let dir = std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .to_path_buf();
        let agent = dir.join("credtrail-agent");
        let aggregator = dir.join("credtrail-aggregator");
        assert!(
            agent.exists() && aggregator.exists(),
            "binaries not in {}",
            dir.display()
        );
        (agent, aggregator)
    })
}

fn run_help(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .arg("--help")
        .output()
        .expect("run binary");
    assert!(
        out.status.success(),
        "{} {} --help was refused: {}",
        bin.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every `--flag` named in a help text.
fn help_flags(help: &str) -> BTreeSet<String> {
    help.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']' || c == '=')
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
                .to_owned()
        })
        .collect()
}

/// The `default:` a help text gives for `flag`.
fn help_default(help: &str, flag: &str) -> Option<String> {
    let at = help.find(&format!("{flag} "))?;
    let rest = &help[at..];
    let end = rest.find("\n  -").unwrap_or(rest.len());
    let block = &rest[..end];
    let d = block.find("[default: ")?;
    Some(block[d + 10..].split(']').next()?.trim().to_owned())
}

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// Every rendering to check: the plain manifests, then the chart with each values file
/// (rendered once per test binary: each render runs Helm's engine).
pub(crate) fn renderings() -> Vec<(String, Vec<Value>)> {
    static ALL: OnceLock<Vec<(String, Vec<Value>)>> = OnceLock::new();
    ALL.get_or_init(render_all).clone()
}

fn render_all() -> Vec<(String, Vec<Value>)> {
    let mut out = Vec::new();
    let mut plain = Vec::new();
    for entry in std::fs::read_dir(deploy().join("manifests")).unwrap() {
        let path = entry.unwrap().path();
        plain.extend(yaml_docs(&std::fs::read_to_string(&path).unwrap()));
    }
    out.push(("deploy/manifests".to_owned(), plain));
    let values_dir = deploy().join("check/values");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&values_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let rendered: BTreeMap<String, String> =
            deploy_check::render(&deploy(), &file).expect("chart renders");
        let docs = rendered.values().flat_map(|t| yaml_docs(t)).collect();
        out.push((format!("helm with {}", file.display()), docs));
    }
    out
}

pub(crate) fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// `--flag=value` args as (flag, value); a bare `--flag` has an empty value.
fn flag_args(args: &[Value]) -> Vec<(String, String)> {
    args.iter()
        .filter_map(Value::as_str)
        .filter(|a| a.starts_with("--"))
        .map(|a| match a.split_once('=') {
            Some((f, v)) => (f.to_owned(), v.to_owned()),
            None => (a.to_owned(), String::new()),
        })
        .collect()
}

fn strings(args: &Value) -> Vec<String> {
    args.as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

/// The volume mounted at the deepest mountPath containing `path`, and the path's rest.
fn volume_for<'a>(pod: &'a Value, container: &Value, path: &str) -> (&'a Value, String, Value) {
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            let mp = m["mountPath"].as_str().unwrap();
            path == mp || path.starts_with(&format!("{mp}/"))
        })
        .max_by_key(|m| m["mountPath"].as_str().unwrap().len())
        .unwrap_or_else(|| panic!("{path} is on no volume mount"));
    let rest = path[mount["mountPath"].as_str().unwrap().len()..]
        .trim_start_matches('/')
        .to_owned();
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    (volume, rest, mount.clone())
}

#[test]
fn the_daemonset_passes_only_flags_the_agent_accepts_and_paths_it_can_read() {
    let (agent, _) = binaries();
    let help = run_help(agent, &[]);
    let known = help_flags(&help);
    assert!(help.contains("NODE_NAME"), "the agent reads NODE_NAME");
    assert!(
        help.contains("CREDTRAIL_LOG"),
        "the agent reads CREDTRAIL_LOG"
    );
    for (label, docs) in renderings() {
        let ds = find(&docs, "DaemonSet");
        let pod = &ds["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert!(
            c.get("command").is_none(),
            "{label}: the image's ENTRYPOINT runs the agent"
        );
        let args = strings(&c["args"]);
        let flags = flag_args(&c["args"].as_array().unwrap().clone());
        for (flag, _) in &flags {
            assert!(
                known.contains(flag),
                "{label}: {flag} is not a credtrail-agent flag"
            );
        }
        // The exact argument list parses (values included): the binary accepts it.
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_help(agent, &refs);
        // And the library's parser gives the fields the DaemonSet means.
        let cli = <credtrail_agent::cli::Cli as clap::Parser>::try_parse_from(
            std::iter::once("credtrail-agent").chain(refs.iter().copied()),
        )
        .unwrap_or_else(|e| panic!("{label}: {e}"));
        let value = |f: &str| {
            flags
                .iter()
                .find(|(k, _)| k == f)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{label}: no {f}"))
        };
        // Host paths the agent reads are the host's, mounted where the flags say.
        for (flag, host) in [
            ("--proc-root", "/proc"),
            ("--cgroup-root", "/sys/fs/cgroup"),
            ("--kubelet-pods-dir", "/var/lib/kubelet/pods"),
        ] {
            let (volume, rest, _) = volume_for(pod, c, &value(flag));
            assert_eq!(rest, "", "{label}: {flag} is a mount point");
            assert_eq!(volume["hostPath"]["path"], host, "{label}: {flag}");
        }
        assert_eq!(
            cli.proc_root.as_deref(),
            Some(Path::new(&value("--proc-root")))
        );
        // The kernel's BTF and tracefs at the paths aya reads them from.
        for path in ["/sys/kernel/btf/vmlinux", "/sys/kernel/tracing/events"] {
            let (volume, _, _) = volume_for(pod, c, path);
            assert!(
                volume["hostPath"]["path"].is_string(),
                "{label}: {path} comes from the host"
            );
        }
        if flags.iter().any(|(k, _)| k == "--token-file") {
            // Token identity: a projected ServiceAccount token for the aggregator only
            // (audience credtrail), and no node credential mounted.
            let (volume, rest, _) = volume_for(pod, c, &value("--token-file"));
            let sat = volume["projected"]["sources"]
                .as_array()
                .and_then(|s| s.iter().find(|x| x.get("serviceAccountToken").is_some()))
                .unwrap_or_else(|| panic!("{label}: --token-file is not a projected token"));
            assert_eq!(sat["serviceAccountToken"]["path"], rest.as_str(), "{label}");
            assert_eq!(
                sat["serviceAccountToken"]["audience"], "credtrail",
                "{label}"
            );
            assert!(
                sat["serviceAccountToken"]["expirationSeconds"]
                    .as_u64()
                    .is_some_and(|s| s <= 86_400),
                "{label}: a short-lived token"
            );
            assert!(
                !flags
                    .iter()
                    .any(|(k, _)| k == "--tls-cert" || k == "--tls-key"),
                "{label}: no kubelet key with token identity"
            );
            let kubelet_pki = pod["volumes"].as_array().unwrap().iter().any(|v| {
                v["hostPath"]["path"]
                    .as_str()
                    .is_some_and(|p| p.contains("pki"))
            });
            assert!(!kubelet_pki, "{label}: the kubelet's PKI is not mounted");
            let server = find(&docs, "Deployment");
            let sargs = strings(&server["spec"]["template"]["spec"]["containers"][0]["args"]);
            assert!(sargs.iter().any(|a| a == "--agent-auth=token"), "{label}");
            let sa = pod["serviceAccountName"].as_str().unwrap();
            assert!(
                sargs
                    .iter()
                    .any(|a| *a == format!("--agent-service-account={sa}")),
                "{label}: the aggregator expects the DaemonSet's ServiceAccount"
            );
        } else {
            // The client certificate and key: a file of the node's kubelet PKI folder.
            for flag in ["--tls-cert", "--tls-key"] {
                let (volume, rest, _) = volume_for(pod, c, &value(flag));
                assert!(volume["hostPath"]["path"].is_string(), "{label}: {flag}");
                assert!(
                    !rest.is_empty() && !rest.contains('/'),
                    "{label}: {flag} names a file"
                );
            }
        }
        // The aggregator CA: the ca.crt item of the aggregator's Secret, and nothing else.
        let (volume, rest, _) = volume_for(pod, c, &value("--tls-ca"));
        let items = volume["secret"]["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["path"], rest.as_str());
        assert_eq!(items[0]["key"], "ca.crt");
        let server = find(&docs, "Deployment");
        let server_secret = server["spec"]["template"]["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "tls")
            .unwrap()["secret"]["secretName"]
            .clone();
        assert_eq!(volume["secret"]["secretName"], server_secret, "{label}");
        // The spool is writable.
        let (volume, _, mount) = volume_for(pod, c, &value("--spool-dir"));
        assert!(
            volume.get("emptyDir").is_some(),
            "{label}: spool on an emptyDir"
        );
        assert_ne!(mount["readOnly"], true);
        // The aggregator URL is the Service's agents port.
        let svc = find(&docs, "Service");
        let port = svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "agents")
            .unwrap()["port"]
            .as_u64()
            .unwrap();
        let url = value("--aggregator");
        assert!(
            url.ends_with(&format!(
                "{}.{}.svc:{port}",
                svc["metadata"]["name"].as_str().unwrap(),
                svc["metadata"]["namespace"].as_str().unwrap()
            )),
            "{label}: {url}"
        );
        assert_eq!(cli.stream.aggregator.as_deref(), Some(url.as_str()));
    }
}

#[test]
fn the_deployment_passes_only_flags_the_aggregator_accepts_on_its_ports_and_volumes() {
    let (_, aggregator) = binaries();
    let help = run_help(aggregator, &["serve"]);
    let known = help_flags(&help);
    for (label, docs) in renderings() {
        let dep = find(&docs, "Deployment");
        let pod = &dep["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let args = strings(&c["args"]);
        assert_eq!(args[0], "serve", "{label}");
        let flags = flag_args(&c["args"].as_array().unwrap().clone());
        for (flag, _) in &flags {
            assert!(
                known.contains(flag),
                "{label}: {flag} is not a `serve` flag"
            );
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_help(aggregator, &refs);
        let value = |f: &str| {
            flags
                .iter()
                .find(|(k, _)| k == f)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{label}: no {f}"))
        };
        // Ports: each listener's port is a named containerPort and a Service port.
        let svc = find(&docs, "Service");
        for (flag, name) in [
            ("--webhook-listen", "webhook"),
            ("--agent-listen", "agents"),
            ("--api-listen", "api"),
            ("--grpc-listen", "grpc"),
        ] {
            let addr: SocketAddr = value(flag).parse().unwrap();
            let cp = c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{label}: no containerPort {name}"));
            assert_eq!(cp["containerPort"].as_u64(), Some(u64::from(addr.port())));
            assert!(
                svc["spec"]["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["targetPort"] == name),
                "{label}: Service lacks {name}"
            );
            if label == "deploy/manifests" {
                // The chart's defaults are the binary's defaults, except that the
                // binary's query listeners default to loopback (they need no
                // network outside a pod) where the chart listens on the pod's address.
                let default = help_default(&help, flag).unwrap();
                if matches!(name, "api" | "grpc") {
                    let d: SocketAddr = default.parse().unwrap();
                    assert!(d.ip().is_loopback(), "{flag} defaults to loopback");
                    assert_eq!(d.port(), addr.port(), "{flag}");
                } else {
                    assert_eq!(default, value(flag));
                }
            }
        }
        // The database lives on the claim.
        let db = value("--db");
        let (volume, rest, _) = volume_for(pod, c, &db);
        assert!(
            volume["persistentVolumeClaim"].is_object(),
            "{label}: --db on the PVC"
        );
        assert!(!rest.is_empty());
        // The policy is the ConfigMap's policy.yaml, in the ConfigMap mounted as a folder
        // (no subPath: the kubelet's updates reach the pod).
        let (volume, rest, mount) = volume_for(pod, c, &value("--policy"));
        assert!(mount.get("subPath").is_none(), "{label}");
        let cm_name = volume["configMap"]["name"].as_str().unwrap();
        let cm = docs
            .iter()
            .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm_name)
            .unwrap();
        assert!(cm["data"][rest.as_str()].is_string(), "{label}: {rest}");
        // TLS files are the keys cert-manager (and make-certs.sh) write.
        for flag in ["--tls-cert", "--tls-key", "--webhook-client-ca"] {
            let (volume, rest, _) = volume_for(pod, c, &value(flag));
            assert!(
                volume["secret"]["secretName"].is_string(),
                "{label}: {flag}"
            );
            assert!(
                ["tls.crt", "tls.key", "ca.crt"].contains(&rest.as_str()),
                "{label}: {flag}"
            );
        }
        let (volume, rest, _) = volume_for(pod, c, &value("--agent-client-ca"));
        assert!(
            volume["configMap"]["name"].is_string(),
            "{label}: cluster CA ConfigMap"
        );
        assert!(!rest.is_empty());
        // The query API can authenticate someone: a token file from a Secret and/or
        // TokenReview with the pod's own projected ServiceAccount token.
        let token_file = flags.iter().any(|(k, _)| k == "--api-token-file");
        let kube = args.iter().any(|a| a == "--api-kube-auth");
        assert!(
            token_file || kube,
            "{label}: the query API would refuse to start"
        );
        if token_file {
            let (volume, rest, _) = volume_for(pod, c, &value("--api-token-file"));
            assert!(volume["secret"]["secretName"].is_string(), "{label}");
            assert_eq!(rest, "tokens", "{label}");
        }
        if kube {
            let (volume, _, _) = volume_for(
                pod,
                c,
                "/var/run/secrets/kubernetes.io/serviceaccount/token",
            );
            let sources = volume["projected"]["sources"].as_array().unwrap();
            assert!(
                sources
                    .iter()
                    .any(|s| s["serviceAccountToken"]["path"] == "token"),
                "{label}"
            );
            assert!(
                sources
                    .iter()
                    .any(|s| s["configMap"]["name"] == "kube-root-ca.crt"),
                "{label}"
            );
            let sa = pod["serviceAccountName"].as_str().unwrap();
            let bound = docs.iter().any(|d| {
                d["kind"] == "ClusterRoleBinding"
                    && d["roleRef"]["name"] == "system:auth-delegator"
                    && d["subjects"][0]["name"] == sa
            });
            assert!(bound, "{label}: the aggregator may not create TokenReviews");
        }
        // Nobody is handed port-forward: the query API is reached through its own
        // authentication, not around it.
        for d in docs
            .iter()
            .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
        {
            assert!(
                !d.to_string().contains("pods/portforward"),
                "{label}: {} grants pods/portforward",
                d["metadata"]["name"]
            );
        }
    }
}

#[test]
fn every_rendered_policy_is_one_the_aggregator_loads() {
    let (_, aggregator) = binaries();
    let dir = tempfile::tempdir().unwrap();
    for (i, (label, docs)) in renderings().into_iter().enumerate() {
        let cm = docs
            .iter()
            .find(|d| {
                d["kind"] == "ConfigMap"
                    && d["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.ends_with("-policy"))
            })
            .unwrap();
        let path = dir.path().join(format!("policy-{i}.yaml"));
        std::fs::write(&path, cm["data"]["policy.yaml"].as_str().unwrap()).unwrap();
        let out = Command::new(aggregator)
            .arg("check-policy")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{label}: the aggregator refuses the rendered policy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And a broken one is refused, so the check above can fail.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "trusted_cidrs: [10.0.0.0/8]\n").unwrap();
    let out = Command::new(aggregator)
        .arg("check-policy")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an unknown policy key must be refused"
    );
}

/// A free loopback port (bound, then released for the child to take).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn the_probes_hit_paths_the_aggregator_serves_with_the_rendered_policy() {
    let (_, aggregator) = binaries();
    let docs = &renderings()[0].1;
    let dep = find(docs, "Deployment");
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    let cm = docs
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap" && d["metadata"]["name"] == "credtrail-aggregator-policy"
        })
        .unwrap();
    std::fs::write(&policy, cm["data"]["policy.yaml"].as_str().unwrap()).unwrap();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    // The query API needs a way to authenticate: a token file made the documented way.
    let tokens = dir.path().join("tokens");
    let made = Command::new(aggregator)
        .args([
            "api-token",
            "--name",
            "probe-test",
            "--role",
            "viewer",
            "--append",
        ])
        .arg(&tokens)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut child = Command::new(aggregator)
        .arg("serve")
        .arg("--api-token-file")
        .arg(&tokens)
        .arg("--db")
        .arg(dir.path().join("credtrail.db"))
        .arg("--policy")
        .arg(&policy)
        .args([
            "--webhook-listen",
            "off",
            "--agent-listen",
            "off",
            "--grpc-listen",
            "off",
        ])
        .arg("--api-listen")
        .arg(addr.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut results = BTreeMap::new();
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["port"], "api", "{probe} uses the API port");
        let path = get["path"].as_str().unwrap();
        let status = loop {
            if let Some(s) = http_get(addr, path) {
                break Some(s);
            }
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        results.insert(path.to_owned(), status);
    }
    // Our own child, by its handle.
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    for (path, status) in &results {
        assert_eq!(
            *status,
            Some(200),
            "GET {path}: {status:?}; aggregator stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_images_run_what_the_manifests_expect() {
    // `cargo xtask image` builds the images from deploy/images.json.
    let (agent, aggregator) = binaries();
    let specs: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy().join("images.json")).expect("deploy/images.json"),
    )
    .expect("deploy/images.json is JSON");
    let docs = &renderings()[0].1;
    for (key, bin, kind) in [
        ("agent", agent, "DaemonSet"),
        ("aggregator", aggregator, "Deployment"),
    ] {
        let spec = &specs[key];
        let name = bin.file_name().unwrap().to_str().unwrap();
        assert_eq!(spec["binary"], name, "{key}: the binary cargo builds");
        // The manifests run the image's entrypoint, from the image's repository.
        let c = &find(docs, kind)["spec"]["template"]["spec"]["containers"][0];
        assert!(c.get("command").is_none());
        let image = c["image"].as_str().unwrap();
        let repo = spec["repository"].as_str().unwrap();
        assert!(image.starts_with(&format!("{repo}:")), "{image} vs {repo}");
    }
    // The aggregator image: its ports, its user and its default command.
    let spec = &specs["aggregator"];
    let dep = find(docs, "Deployment");
    let pod = &dep["spec"]["template"]["spec"];
    let mut exposed: Vec<u64> = spec["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap())
        .collect();
    let mut ports: Vec<u64> = pod["containers"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_u64().unwrap())
        .collect();
    exposed.sort_unstable();
    ports.sort_unstable();
    assert_eq!(exposed, ports);
    assert_eq!(
        spec["user"],
        format!(
            "{}:{}",
            pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
        )
    );
    assert_eq!(spec["cmd"], serde_json::json!(["serve"]));
    let db_dir = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "data")
        .unwrap()["mountPath"]
        .clone();
    assert_eq!(spec["volumes"], serde_json::json!([db_dir]));
    // The volume directory exists in the image, owned by the aggregator's user.
    let dir = spec["dirs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == db_dir)
        .expect("the volume's directory is created in the image");
    assert_eq!(dir["owner"], spec["user"]);
    // The agent image runs as root (its capabilities come from the DaemonSet).
    let ds = find(docs, "DaemonSet");
    let sc = &ds["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(
        specs["agent"]["user"],
        format!("{}:{}", sc["runAsUser"], sc["runAsGroup"])
    );
}
