#!/usr/bin/env python3
"""Writes the evaluation scenarios for issue 11 point 2 (an AN1547 alert's
activity: repeats from one source extend one alert; a new source, a higher
severity or the end of a maintenance window raise anew) and the issue 14
follow-up (node addresses taught only by the node itself: CT1547-006).
Deterministic. Run from the repository root: `eval/tools/context_scenarios.py eval/scenarios`.
"""

import json
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

T0 = datetime(2026, 11, 24, 14, 0, 0, tzinfo=timezone.utc)
KUBELET_UA = "kubelet/v1.30.2 (linux/amd64) kubernetes/3968350"
KUBECTL_UA = "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350"
NODES = {
    "node-a": ("10.0.1.11", "X509SHA256=66570ff05a2074043084d4aca94293ef067530dde94ff4e92b8d8459253eb779"),
    "node-b": ("10.0.1.12", "X509SHA256=93ef37c6157138222b21a42be52183d08d75cd4fed49c1cbba571b06a69e39a4"),
}
SCHED = "X509SHA256=fcce4108ea679f58257505f2830a5113ba2f3c37934edd2e14364b38da0cdccc"


def ts(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def aid(scenario, n):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"credtrail-eval/{scenario}/{n}"))


class Log:
    def __init__(self, name):
        self.name, self.events, self.n = name, [], 0

    def ev(self, t, user, groups, cred, ip, ua, verb, uri, obj, code=200, level="Metadata",
           req=None, resp=None):
        self.n += 1
        e = {
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level,
            "auditID": aid(self.name, self.n), "stage": "ResponseComplete",
            "requestURI": uri, "verb": verb,
            "user": {"username": user, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, user)),
                     "groups": groups},
            "sourceIPs": [ip], "userAgent": ua, "objectRef": obj,
            "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": ts(t), "stageTimestamp": ts(t + timedelta(milliseconds=4)),
            "annotations": {"authorization.k8s.io/decision": "forbid" if code == 403 else "allow",
                            "authorization.k8s.io/reason": ""},
        }
        if cred:
            e["user"]["extra"] = {"authentication.kubernetes.io/credential-id": [cred]}
        if code == 403:
            e["responseStatus"] = {"metadata": {}, "status": "Failure", "reason": "Forbidden", "code": 403}
        if req is not None:
            e["requestObject"] = req
        if resp is not None:
            e["responseObject"] = resp
        self.events.append(e)

    def background(self, t):
        """Kubelet leases and the scheduler's lease, as every cluster has them."""
        for node, (ip, cred) in NODES.items():
            self.ev(t, f"system:node:{node}", ["system:nodes", "system:authenticated"], cred, ip,
                    KUBELET_UA, "update",
                    f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}?timeout=10s",
                    {"resource": "leases", "namespace": "kube-node-lease", "name": node,
                     "apiGroup": "coordination.k8s.io", "apiVersion": "v1"})
        self.ev(t + timedelta(seconds=1), "system:kube-scheduler", ["system:authenticated"], SCHED,
                "10.0.0.2", "kube-scheduler/v1.30.2 (linux/amd64) kubernetes/3968350/leader-election",
                "update", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler?timeout=5s",
                {"resource": "leases", "namespace": "kube-system", "name": "kube-scheduler",
                 "apiGroup": "coordination.k8s.io", "apiVersion": "v1"})

    def node_status(self, t, node, user, groups, cred, ip, ua, addrs):
        obj = {"kind": "Node", "apiVersion": "v1",
               "metadata": {"name": node, "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, node))},
               "status": {"addresses": [{"type": k, "address": a} for k, a in addrs],
                          "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}
        self.ev(t, user, groups, cred, ip, ua, "patch", f"/api/v1/nodes/{node}/status?timeout=10s",
                {"resource": "nodes", "name": node, "apiVersion": "v1", "subresource": "status"},
                level="RequestResponse", req={"status": obj["status"]}, resp=obj)

    def write(self, root, scenario, policy=None):
        d = Path(root) / self.name
        d.mkdir(parents=True, exist_ok=True)
        self.events.sort(key=lambda e: e["requestReceivedTimestamp"])
        with open(d / "audit.jsonl", "w") as f:
            for e in self.events:
                f.write(json.dumps(e, separators=(",", ":")) + "\n")
        with open(d / "scenario.yaml", "w") as f:
            f.write(scenario)
        if policy:
            with open(d / "policy.yaml", "w") as f:
                f.write(policy)


SA = "system:serviceaccount:ci:deployer"
SA_GROUPS = ["system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated"]
POLICY = """cluster:
  node_cidrs: [10.0.1.0/24]
  pod_cidrs: [10.244.0.0/16]
  service_cidrs: [10.96.0.0/12]
trusted_ranges:
  - name: control-plane
    cidrs: [10.0.0.0/28]
"""


def deployer(log, t, ip, verb, res, ns, code=200, name=None, sub=None):
    """The legacy (Secret) token of ci/deployer: no credential id."""
    path = f"/api/v1/namespaces/{ns}/{res}" + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")
    obj = {"resource": res, "namespace": ns, "apiVersion": "v1"}
    if name:
        obj["name"] = name
    if sub:
        obj["subresource"] = sub
    log.ev(t, SA, SA_GROUPS, None, ip, KUBECTL_UA, verb, path, obj, code=code)


def repeats(root):
    log = Log("an1547-repeats-extend-one-alert")
    for m in range(0, 20, 2):
        log.background(T0 + timedelta(minutes=m))
    # In-cluster, from its CI runner pod.
    for m in (1, 5, 9):
        deployer(log, T0 + timedelta(minutes=m), "10.244.1.40", "get", "deployments", "shop", name="web")
    out = "203.0.113.50"
    t = T0 + timedelta(minutes=10)
    # Denied first (high), then allowed (critical: an escalation, new alert).
    deployer(log, t, out, "get", "secrets", "kube-system", code=403, name="bootstrap-token-abcdef")
    deployer(log, t + timedelta(seconds=20), out, "list", "secrets", "shop")
    for i in range(3):
        deployer(log, t + timedelta(seconds=40 + 15 * i), out, "get", "secrets", "shop", name="db-credentials")
    deployer(log, t + timedelta(seconds=100), out, "create", "pods", "shop", code=403)
    deployer(log, t + timedelta(seconds=130), out, "list", "configmaps", "kube-system")
    # The same token from a second outside address: a new alert.
    deployer(log, t + timedelta(minutes=4), "198.51.100.77", "list", "secrets", "shop")
    deployer(log, t + timedelta(minutes=4, seconds=30), "198.51.100.77", "list", "secrets", "default")
    log.write(root, """description: "A CI service account's legacy token used from the Internet: one denied probe (high), then allowed reads (critical, a new alert), repeated reads and a denied pod create fold into that alert's activity; a second outside address raises its own alert."
class: "11.2 activity / dedupe"
kind: attack
expect:
  - {rule: CT1547-002, count: 3}
""", POLICY)


def window(root):
    log = Log("benign-repeats-during-maintenance-window")
    for m in range(0, 20, 2):
        log.background(T0 + timedelta(minutes=m))
    # A vendor's scanner reads with the deployer token from its address
    # during an announced maintenance window: stored as suppressed, every
    # repeat folds into the suppressed alert; nothing is raised.
    for i in range(6):
        deployer(log, T0 + timedelta(minutes=3, seconds=30 * i), "203.0.113.90", "list", "pods", "shop")
    log.write(root, """description: "Repeated uses from one outside address inside a maintenance window that covers them: one suppressed alert extended, nothing raised."
class: "11.2 activity / dedupe"
kind: benign
expect: []
""", POLICY + """maintenance_windows:
  - name: vendor-scan
    start: "2026-11-24T14:00:00Z"
    end: "2026-11-24T15:00:00Z"
    identities: ["system:serviceaccount:ci:deployer"]
    rules: [AN1547]
""")


def laundering(root):
    log = Log("an1547-node-status-public-address-laundering")
    for m in range(0, 12, 2):
        log.background(T0 + timedelta(minutes=m))
    for node, (ip, cred) in NODES.items():
        log.node_status(T0 + timedelta(seconds=20), node, f"system:node:{node}",
                        ["system:nodes", "system:authenticated"], cred, ip, KUBELET_UA,
                        [("InternalIP", ip), ("Hostname", node)])
    # A stolen CI token that may patch nodes/status registers an Internet
    # address as node-a's...
    log.node_status(T0 + timedelta(minutes=5), "node-a", "system:serviceaccount:ci:deployer",
                    SA_GROUPS, None, "10.244.1.40", KUBECTL_UA,
                    [("InternalIP", "10.0.1.11"), ("ExternalIP", "198.51.100.23"), ("Hostname", "node-a")])
    # ...and node-a's stolen kubelet certificate is then used from there.
    ip, cred = NODES["node-a"]
    log.ev(T0 + timedelta(minutes=7), "system:node:node-a", ["system:nodes", "system:authenticated"], cred,
           "198.51.100.23", KUBELET_UA, "get", "/api/v1/namespaces/shop/secrets/db-credentials",
           {"resource": "secrets", "namespace": "shop", "name": "db-credentials", "apiVersion": "v1"})
    log.write(root, """description: "A workload's service account adds an Internet address to node-a's status (CT1547-006, not learned); node-a's kubelet certificate used from that address is still outside (CT1547-002)."
class: "14 follow-up: node addresses"
kind: attack
expect:
  - {rule: CT1547-006, count: 1}
  - {rule: CT1547-002, count: 1}
""")


def cloud(root):
    log = Log("benign-cloud-controller-sets-external-ip")
    for m in range(0, 12, 2):
        log.background(T0 + timedelta(minutes=m))
    ip, cred = NODES["node-b"]
    log.node_status(T0 + timedelta(seconds=20), "node-b", "system:node:node-b",
                    ["system:nodes", "system:authenticated"], cred, ip, KUBELET_UA,
                    [("InternalIP", ip), ("Hostname", "node-b")])
    # The cloud node controller sets node-b's public address.
    log.node_status(T0 + timedelta(seconds=40), "node-b", "system:cloud-controller-manager",
                    ["system:authenticated"], "X509SHA256=2b7a1c0e9f8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180f7e6d5c4b3a291807",
                    "10.0.0.2", "cloud-controller-manager/v1.30.2 (linux/amd64) kubernetes/3968350/cloud-node-controller",
                    [("InternalIP", ip), ("ExternalIP", "198.51.100.40"), ("Hostname", "node-b")])
    # node-problem-detector reports a condition; the response echoes the addresses.
    log.node_status(T0 + timedelta(minutes=3), "node-b",
                    "system:serviceaccount:kube-system:node-problem-detector",
                    ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
                    "JTI=4d1f0c2b-8a7e-4b6d-9c5f-3e2a1b0c9d8e", "10.244.2.9",
                    "node-problem-detector/v0.8.19 (linux/amd64)",
                    [("InternalIP", ip), ("ExternalIP", "198.51.100.40"), ("Hostname", "node-b")])
    # node-b's kubelet reaches the API server through its public address.
    log.ev(T0 + timedelta(minutes=5), "system:node:node-b", ["system:nodes", "system:authenticated"], cred,
           "198.51.100.40", KUBELET_UA, "get", "/api/v1/nodes/node-b?resourceVersion=0&timeout=10s",
           {"resource": "nodes", "name": "node-b", "apiVersion": "v1"})
    log.write(root, """description: "The cloud node controller sets node-b's ExternalIP, node-problem-detector's status patches echo it, and node-b's kubelet egresses through it: nothing raised."
class: "14 follow-up: node addresses"
kind: benign
expect: []
""")


if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else "eval/scenarios"
    repeats(root)
    window(root)
    laundering(root)
    cloud(root)
