//! The chart's operability (issue 13, item 7), on every rendering: the plain manifests and the
//! chart with each values file in `deploy/check/values/`.
//!
//! - the API server's audit policy, evaluated as the API server does (first matching rule):
//!   RBAC writes at RequestResponse, reads at Metadata; and the evaluation corpus, filtered
//!   through it, still raises exactly the expected alerts (and does not without role bodies);
//! - the detection policy mounted as a folder (no `subPath`), the policy-editor Role limited to
//!   that one ConfigMap;
//! - standard labels on every object; images by digest; pull secrets; AppArmor, SELinux,
//!   priority classes; the Pod Security label; NetworkPolicy peers by namespace;
//! - one log variable per binary; cloud-input secrets only as mounted files;
//! - the agent's spool bound below its volume's size limit, and its probes on its health port.
//!
//! The schema's refusals and the Pod Security guard run in `deploy/check/validate.py`
//! (validators `schema-refuses`, `pod-security-guard`), asserted in `deploy_manifests`.

use crate::deploy_agreement::{find, renderings};

use std::path::Path;

use serde_json::{Value, json};

const RBAC: &str = "rbac.authorization.k8s.io";
const RBAC_RESOURCES: [&str; 4] = [
    "rolebindings",
    "clusterrolebindings",
    "roles",
    "clusterroles",
];
const WRITES: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];
const READS: [&str; 3] = ["get", "list", "watch"];

fn level_rank(level: &str) -> u8 {
    match level {
        "None" => 0,
        "Metadata" => 1,
        "Request" => 2,
        "RequestResponse" => 3,
        other => panic!("unknown audit level {other:?}"),
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The level the audit `policy` gives `event` (audit.k8s.io/v1 `Policy` semantics: the first
/// rule that matches decides; no rule: None).
fn policy_level<'a>(policy: &'a Value, event: &Value) -> &'a str {
    for rule in policy["rules"].as_array().expect("rules") {
        let listed = |key: &str, value: &str| {
            rule.get(key)
                .is_none_or(|l| strs(l).iter().any(|x| *x == value || *x == "*"))
        };
        if !listed("verbs", event["verb"].as_str().unwrap_or("")) {
            continue;
        }
        if !listed("users", event["user"]["username"].as_str().unwrap_or("")) {
            continue;
        }
        if let Some(groups) = rule.get("userGroups") {
            let mine = strs(&event["user"]["groups"]);
            if !strs(groups).iter().any(|g| mine.contains(g)) {
                continue;
            }
        }
        let obj = &event["objectRef"];
        if obj.is_object() {
            if rule.get("nonResourceURLs").is_some() {
                continue;
            }
            if let Some(ns) = rule.get("namespaces") {
                let mine = obj["namespace"].as_str().unwrap_or("");
                if !strs(ns).contains(&mine) {
                    continue;
                }
            }
            if let Some(groups) = rule.get("resources") {
                let group = obj["apiGroup"].as_str().unwrap_or("");
                let resource = obj["resource"].as_str().unwrap_or("");
                let full = match obj["subresource"].as_str() {
                    Some(sub) if !sub.is_empty() => format!("{resource}/{sub}"),
                    _ => resource.to_owned(),
                };
                let hit = groups.as_array().unwrap().iter().any(|g| {
                    g["group"].as_str().unwrap_or("") == group
                        && (g.get("resources").is_none()
                            || strs(&g["resources"]).iter().any(|r| {
                                *r == full
                                    || *r == "*"
                                    || r.strip_suffix("/*")
                                        .is_some_and(|p| full.starts_with(&format!("{p}/")))
                                    || r.strip_prefix("*/")
                                        .is_some_and(|s| full.ends_with(&format!("/{s}")))
                            }))
                        && (g.get("resourceNames").is_none()
                            || strs(&g["resourceNames"])
                                .contains(&obj["name"].as_str().unwrap_or("")))
                });
                if !hit {
                    continue;
                }
            }
        } else {
            if rule.get("resources").is_some() || rule.get("namespaces").is_some() {
                continue;
            }
            if let Some(urls) = rule.get("nonResourceURLs") {
                let path = event["requestURI"].as_str().unwrap_or("");
                let path = path.split('?').next().unwrap_or("");
                if !strs(urls)
                    .iter()
                    .any(|u| *u == path || u.strip_suffix('*').is_some_and(|p| path.starts_with(p)))
                {
                    continue;
                }
            }
        }
        return rule["level"].as_str().expect("rule level");
    }
    "None"
}

/// The audit policy inside the rendering's `*-apiserver-audit` ConfigMap.
fn audit_policy(docs: &[Value]) -> Value {
    let cm = docs
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with("-apiserver-audit"))
        })
        .expect("the API server's ConfigMap");
    serde_norway::from_str(cm["data"]["audit-policy.yaml"].as_str().unwrap()).unwrap()
}

fn rbac_event(resource: &str, verb: &str) -> Value {
    json!({
        "verb": verb,
        "user": {"username": "alice", "groups": ["system:authenticated"]},
        "objectRef": {"apiGroup": RBAC, "resource": resource, "namespace": "shop", "name": "x"},
        "requestURI": format!("/apis/{RBAC}/v1/namespaces/shop/{resource}/x"),
    })
}

#[test]
fn the_audit_policy_logs_rbac_writes_with_bodies_and_reads_at_metadata() {
    for (label, docs) in renderings() {
        let policy = audit_policy(&docs);
        // Every rendering keeps role bodies on (the default; `everything.yaml` sets it).
        for resource in RBAC_RESOURCES {
            for verb in WRITES {
                let got = policy_level(&policy, &rbac_event(resource, verb));
                assert_eq!(got, "RequestResponse", "{label}: {verb} {resource}");
            }
            for verb in READS {
                let got = policy_level(&policy, &rbac_event(resource, verb));
                assert_eq!(
                    got, "Metadata",
                    "{label}: {verb} {resource}: no list bodies"
                );
            }
        }
        // Everything else at Metadata: a Secret's body never enters the audit trail.
        let mut secret = rbac_event("secrets", "create");
        secret["objectRef"]["apiGroup"] = json!("");
        assert_eq!(policy_level(&policy, &secret), "Metadata", "{label}");
        // A TokenRequest's request (lifetime, bound object) but never its response: the token.
        let mut token = rbac_event("serviceaccounts", "create");
        token["objectRef"]["apiGroup"] = json!("");
        token["objectRef"]["subresource"] = json!("token");
        assert_eq!(policy_level(&policy, &token), "Request", "{label}");
        token["verb"] = json!("get");
        assert_eq!(policy_level(&policy, &token), "Metadata", "{label}");
        // Node writes with their bodies (addresses, pod ranges, and who wrote them).
        for sub in [None, Some("status")] {
            for verb in ["create", "update", "patch"] {
                let mut node = rbac_event("nodes", verb);
                node["objectRef"] = json!({"apiGroup": "", "resource": "nodes", "name": "n1",
                    "subresource": sub});
                assert_eq!(
                    policy_level(&policy, &node),
                    "RequestResponse",
                    "{label}: {verb} {sub:?}"
                );
            }
        }
        // The kubernetes Service's endpoints, in default only.
        let mut slice = rbac_event("endpointslices", "update");
        slice["objectRef"]["apiGroup"] = json!("discovery.k8s.io");
        slice["objectRef"]["namespace"] = json!("default");
        assert_eq!(policy_level(&policy, &slice), "RequestResponse", "{label}");
        slice["objectRef"]["namespace"] = json!("shop");
        assert_eq!(policy_level(&policy, &slice), "Metadata", "{label}");
    }
}

/// `event` as the API server would have logged it under `policy`: its level lowered (never
/// raised) to the policy's, the bodies that level leaves out removed; `None`: dropped.
fn through_policy(policy: &Value, mut event: Value) -> Option<Value> {
    let want = policy_level(policy, &event);
    let have = event["level"]
        .as_str()
        .unwrap_or("RequestResponse")
        .to_owned();
    if level_rank(want) >= level_rank(&have) {
        return Some(event);
    }
    if want == "None" {
        return None;
    }
    let obj = event.as_object_mut().unwrap();
    obj.insert("level".into(), json!(want));
    if level_rank(want) < level_rank("RequestResponse") {
        obj.remove("responseObject");
    }
    if level_rank(want) < level_rank("Request") {
        obj.remove("requestObject");
    }
    Some(event)
}

/// Every evaluation scenario (`eval/scenarios/`), its audit events filtered through `policy`,
/// replayed; returns the scenarios that went wrong, with their problems.
fn eval_through(policy: &Value) -> (usize, Vec<String>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../eval/scenarios");
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("scenario.yaml").exists())
        .collect();
    dirs.sort();
    let mut wrong = Vec::new();
    for dir in &dirs {
        let copy = tmp.path().join(dir.file_name().unwrap());
        std::fs::create_dir_all(&copy).unwrap();
        for f in std::fs::read_dir(dir).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_owned();
            if name == "audit.jsonl" {
                let text = std::fs::read_to_string(&f).unwrap();
                let mut out = String::new();
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    // A hostile event nested past serde_json's depth limit goes as it is.
                    let Ok(ev) = serde_json::from_str::<Value>(line) else {
                        out.push_str(line);
                        out.push('\n');
                        continue;
                    };
                    if let Some(ev) = through_policy(policy, ev) {
                        out.push_str(&ev.to_string());
                        out.push('\n');
                    }
                }
                std::fs::write(copy.join(&name), out).unwrap();
            } else {
                std::fs::copy(&f, copy.join(&name)).unwrap();
            }
        }
        let r = credtrail_aggregator::eval::run_scenario(&copy);
        if r.wrong() {
            wrong.push(format!("{}: {:?}", r.name, r.problems));
        }
    }
    (dirs.len(), wrong)
}

/// The policy the chart ships is enough for detection: every scenario of the corpus (real
/// audit format) gives the same verdict through it. Without role bodies the custom-role
/// scenarios go blind, so this check can fail.
#[test]
fn detection_gets_what_it_needs_through_the_shipped_audit_policy() {
    let docs = &renderings()[0].1;
    let policy = audit_policy(docs);
    let (n, wrong) = eval_through(&policy);
    assert!(n > 50, "only {n} scenarios found");
    assert!(
        wrong.is_empty(),
        "through the shipped policy:\n{}",
        wrong.join("\n")
    );

    let mut without_roles = policy.clone();
    for rule in without_roles["rules"].as_array_mut().unwrap() {
        if rule["level"] == "RequestResponse" {
            for g in rule["resources"].as_array_mut().unwrap() {
                if g["group"] == RBAC {
                    g["resources"] = json!(["rolebindings", "clusterrolebindings"]);
                }
            }
        }
    }
    let (_, wrong) = eval_through(&without_roles);
    assert!(
        wrong.iter().any(|w| w.starts_with("an1579-custom-role-")),
        "custom-role scenarios should need role bodies: {wrong:?}"
    );
    // Likewise everything but RBAC at Metadata (the policy before issue 13): node addresses
    // and token lifetimes go unseen.
    let mut rbac_only = policy.clone();
    rbac_only["rules"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["level"] == "Metadata" || r.to_string().contains(RBAC));
    let (_, wrong) = eval_through(&rbac_only);
    assert!(
        wrong.iter().any(|w| w.starts_with("an1547-")),
        "node and token scenarios should need their bodies: {wrong:?}"
    );
}

const STANDARD_LABELS: [&str; 7] = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
];

#[test]
fn every_object_and_pod_carries_the_standard_labels() {
    for (label, docs) in renderings() {
        let mut pods = 0;
        for d in &docs {
            let what = format!("{label}: {} {}", d["kind"], d["metadata"]["name"]);
            let mut label_sets = vec![&d["metadata"]["labels"]];
            if d["spec"]["template"]["metadata"].is_object() {
                label_sets.push(&d["spec"]["template"]["metadata"]["labels"]);
                pods += 1;
            }
            for labels in label_sets {
                for key in STANDARD_LABELS {
                    let v = labels[key].as_str().unwrap_or("");
                    assert!(!v.is_empty(), "{what}: no {key}");
                    assert!(v.len() <= 63, "{what}: {key} too long");
                }
                assert_eq!(labels["app.kubernetes.io/part-of"], "credtrail", "{what}");
            }
        }
        assert_eq!(pods, 2, "{label}: the DaemonSet and the Deployment");
        // The immutable selectors keep their two labels.
        for kind in ["DaemonSet", "Deployment"] {
            let sel = find(&docs, kind)["spec"]["selector"]["matchLabels"].clone();
            assert_eq!(
                sel.as_object().unwrap().len(),
                2,
                "{label}: {kind} selector {sel}"
            );
        }
    }
}

fn pod_of<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    &find(docs, kind)["spec"]["template"]["spec"]
}

#[test]
fn the_policy_is_a_mounted_folder_and_the_editor_edits_only_it() {
    for (label, docs) in renderings() {
        let pod = pod_of(&docs, "Deployment");
        let c = &pod["containers"][0];
        for m in c["volumeMounts"].as_array().unwrap() {
            assert!(
                m.get("subPath").is_none(),
                "{label}: {m} uses subPath (no live updates)"
            );
        }
        let policy_arg = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .find_map(|a| a.strip_prefix("--policy="))
            .expect("--policy");
        let mount = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "policy")
            .unwrap();
        let dir = mount["mountPath"].as_str().unwrap();
        assert_eq!(policy_arg, format!("{dir}/policy.yaml"), "{label}");
        let cm_name = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "policy")
            .unwrap()["configMap"]["name"]
            .clone();
        // The editor: get/update/patch that ConfigMap by name, and nothing else.
        let editor = docs
            .iter()
            .find(|d| {
                d["kind"] == "Role"
                    && d["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.ends_with("-policy-editor"))
            })
            .expect("policy-editor Role");
        let rules = editor["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 1, "{label}: {rules:?}");
        assert_eq!(rules[0]["apiGroups"], json!([""]));
        assert_eq!(rules[0]["resources"], json!(["configmaps"]));
        assert_eq!(rules[0]["resourceNames"], json!([cm_name]));
        for verb in strs(&rules[0]["verbs"]) {
            assert!(
                ["get", "update", "patch"].contains(&verb),
                "{label}: {verb}"
            );
        }
        // No restart needed, and none on a policy edit unless asked for.
        let annotations = &find(&docs, "Deployment")["spec"]["template"]["metadata"]["annotations"];
        // (cloud-inputs.yaml asks for the restart with rollOnPolicyChange.)
        assert_eq!(
            annotations["credtrail.io/policy-sha256"].is_string(),
            label.contains("cloud-inputs"),
            "{label}"
        );
    }
}

fn env_names(c: &Value) -> Vec<String> {
    c["env"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn images_pull_secrets_security_and_priority_follow_the_values() {
    for (label, docs) in renderings() {
        let cloud = label.contains("cloud-inputs");
        for kind in ["DaemonSet", "Deployment"] {
            let pod = pod_of(&docs, kind);
            for c in pod["containers"]
                .as_array()
                .unwrap()
                .iter()
                .chain(pod["initContainers"].as_array().into_iter().flatten())
            {
                let image = c["image"].as_str().unwrap();
                if cloud {
                    // The digest wins over the tag.
                    assert!(
                        image.contains("@sha256:") && !image.contains(":0.1.0"),
                        "{label}: {image}"
                    );
                } else {
                    assert!(!image.contains('@'), "{label}: {image}");
                }
                // One log variable per binary: CREDTRAIL_LOG, never RUST_LOG.
                let env = env_names(c);
                assert!(
                    !env.iter().any(|e| e == "RUST_LOG"),
                    "{label}: {kind} {env:?}"
                );
            }
            let env = env_names(&pod["containers"][0]);
            assert_eq!(
                env.iter().filter(|e| e.ends_with("_LOG")).count(),
                1,
                "{label}: {kind} {env:?}"
            );
            assert!(env.iter().any(|e| e == "CREDTRAIL_LOG"), "{label}: {kind}");
            if cloud {
                assert_eq!(
                    pod["imagePullSecrets"],
                    json!([{"name": "regcred"}]),
                    "{label}"
                );
                assert!(pod["priorityClassName"].is_string(), "{label}");
            } else {
                assert!(pod.get("imagePullSecrets").is_none(), "{label}");
                // Empty by default: system-node-critical is refused outside kube-system.
                assert!(pod.get("priorityClassName").is_none(), "{label}: {kind}");
            }
        }
        let agent = &pod_of(&docs, "DaemonSet")["containers"][0]["securityContext"];
        let agg = &pod_of(&docs, "Deployment")["securityContext"];
        assert_eq!(agg["appArmorProfile"]["type"], "RuntimeDefault", "{label}");
        assert_eq!(agg["seccompProfile"]["type"], "RuntimeDefault", "{label}");
        if cloud {
            assert_eq!(
                agent["appArmorProfile"]["localhostProfile"],
                "credtrail-agent"
            );
            assert_eq!(agent["seLinuxOptions"]["type"], "spc_t");
        } else {
            assert_eq!(agent["appArmorProfile"]["type"], "Unconfined", "{label}");
            assert!(agent.get("seLinuxOptions").is_none(), "{label}");
        }
        // The namespace the chart creates enforces "privileged".
        if let Some(ns) = docs.iter().find(|d| d["kind"] == "Namespace") {
            assert_eq!(
                ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "privileged",
                "{label}"
            );
        }
    }
}

#[test]
fn the_network_policy_admits_named_namespaces_to_their_ports_only() {
    let all = renderings();
    let (label, docs) = all
        .iter()
        .find(|(l, _)| l.contains("cloud-inputs"))
        .expect("the cloud-inputs rendering");
    let np = find(docs, "NetworkPolicy");
    let svc = find(docs, "Service");
    let port = |name: &str| {
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["port"]
            .clone()
    };
    let rule_for = |ns: &str| {
        np["spec"]["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["from"].as_array().is_some_and(|f| {
                    f.iter().any(|p| {
                        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == ns
                    })
                })
            })
            .unwrap_or_else(|| panic!("{label}: no rule for namespace {ns}"))
            .clone()
    };
    let ports = |r: &Value| -> Vec<Value> {
        r["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].clone())
            .collect()
    };
    let prom = rule_for("monitoring");
    assert_eq!(
        ports(&prom),
        vec![port("api")],
        "{label}: Prometheus reaches /metrics only"
    );
    let peer = &prom["from"][0];
    assert_eq!(
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "prometheus"
    );
    for ns in ["siem", "soc-tools"] {
        let r = rule_for(ns);
        assert_eq!(ports(&r), vec![port("api"), port("grpc")], "{label}: {ns}");
    }
    // Never the agent stream or the webhook from those namespaces.
    for r in np["spec"]["ingress"].as_array().unwrap() {
        if r["from"].to_string().contains("namespaceSelector") {
            assert!(!ports(r).contains(&port("agents")) && !ports(r).contains(&port("webhook")));
        }
    }
}

#[test]
fn cloud_input_secrets_are_files_from_secrets_never_args_or_env() {
    let all = renderings();
    let (label, docs) = all
        .iter()
        .find(|(l, _)| l.contains("cloud-inputs"))
        .expect("the cloud-inputs rendering");
    let pod = pod_of(docs, "Deployment");
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (flag, secret) in [
        ("--firehose-access-key-file", Some("credtrail-firehose")),
        ("--webhook-token-file", Some("credtrail-webhook-tokens")),
        ("--agent-token-jwks", Some("sa-issuer-jwks")),
        ("--pubsub-jwks-file", None),
    ] {
        let path = args
            .iter()
            .find_map(|a| a.strip_prefix(&format!("{flag}=")))
            .unwrap_or_else(|| panic!("{label}: no {flag}"));
        let mount = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| path.starts_with(&format!("{}/", m["mountPath"].as_str().unwrap())))
            .unwrap_or_else(|| panic!("{label}: {flag}={path} is on no mount"));
        assert_eq!(mount["readOnly"], true);
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        let file = path.rsplit('/').next().unwrap();
        match secret {
            Some(name) => {
                assert_eq!(volume["secret"]["secretName"], name, "{label}: {flag}");
                assert_eq!(
                    volume["secret"]["items"][0]["path"], file,
                    "{label}: {flag}"
                );
            }
            // Google's public keys may come from a ConfigMap.
            None => assert_eq!(
                volume["configMap"]["items"][0]["path"], file,
                "{label}: {flag}"
            ),
        }
    }
    // No secret-looking argument or variable: values only name Secrets.
    for a in &args {
        assert!(
            !a.contains("access-key=") && !a.contains("token="),
            "{label}: {a}"
        );
    }
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e.get("valueFrom").is_none() || e["valueFrom"].get("secretKeyRef").is_none())
    );
}

/// `NNNMi` / `NNNGi` as bytes.
fn quantity_bytes(q: &str) -> u64 {
    let (n, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = n.parse().unwrap();
    n << match unit {
        "Mi" => 20,
        "Gi" => 30,
        "" => 0,
        other => panic!("unit {other}"),
    }
}

#[test]
fn the_agent_spool_stays_below_its_volume_limit_and_the_probes_hit_its_health_port() {
    for (label, docs) in renderings() {
        let pod = pod_of(&docs, "DaemonSet");
        let c = &pod["containers"][0];
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let value = |flag: &str| {
            args.iter()
                .find_map(|a| a.strip_prefix(&format!("{flag}=")))
                .unwrap_or_else(|| panic!("{label}: no {flag}"))
        };
        let max = credtrail_agent::cli::parse_bytes(value("--spool-max-bytes")).unwrap();
        let spool_dir = value("--spool-dir");
        let mount = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == spool_dir)
            .unwrap();
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        let limit = quantity_bytes(volume["emptyDir"]["sizeLimit"].as_str().unwrap());
        // Headroom for the state files and the file system's own blocks.
        assert!(
            max <= limit / 10 * 8,
            "{label}: spool {max} vs sizeLimit {limit}"
        );
        assert!(
            max >= limit / 2,
            "{label}: spool {max} wastes the volume ({limit})"
        );
        // The probes: the agent's own listener, by port name.
        let listen = value("--health-listen");
        let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
        let cp = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "health")
            .unwrap_or_else(|| panic!("{label}: no health port"));
        assert_eq!(cp["containerPort"].as_u64(), Some(port), "{label}");
        assert_eq!(
            c["readinessProbe"]["httpGet"],
            json!({"path": "/readyz", "port": "health"})
        );
        assert_eq!(
            c["livenessProbe"]["httpGet"],
            json!({"path": "/healthz", "port": "health"})
        );
        assert!(c["livenessProbe"].get("exec").is_none());
    }
    // The binary's default is below the chart's default volume too.
    let default_limit = 256u64 << 20;
    assert!(credtrail_agent::stream::DEFAULT_SPOOL_MAX_BYTES <= default_limit / 10 * 8);
}
