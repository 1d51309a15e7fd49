#!/usr/bin/env python3
"""Writes the AN1579 evaluation scenarios (eval/scenarios/an1579-*, benign-an1579-*).

Run from the repository root: python3 eval/tools/an1579_scenarios.py eval/scenarios
Deterministic (seeded by scenario name); the output is committed, CI does not run this.
"""
import hashlib, json, os, random, sys, uuid
from datetime import datetime, timedelta, timezone

OUT = sys.argv[1]
RBAC = "rbac.authorization.k8s.io"
KUBECTL = "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350"
KUBELET = "kubelet/v1.30.2 (linux/amd64) kubernetes/3968350"
KCM = "kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/3968350/leader-election"
APISERVER = "kube-apiserver/v1.30.2 (linux/amd64) kubernetes/3968350"
COREDNS = "coredns/v0.0.0 (linux/amd64) kubernetes/$Format"
ARGO = "argocd-application-controller/v2.11.3 (linux/amd64) kubernetes/$Format"
HELM = "Helm/3.15.2"
CLIENTGO = "deployer/v0.0.0 (linux/amd64) kubernetes/$Format"

NODES = {"node-a": ("10.0.1.11", "10.244.0.0/24"), "node-b": ("10.0.1.12", "10.244.1.0/24"),
         "node-c": ("10.0.1.13", "10.244.2.0/24")}
CP = "10.0.0.10"

POLICY = """cluster:
  node_cidrs: [10.0.1.0/24]
  pod_cidrs: [10.244.0.0/16]
  service_cidrs: [10.96.0.0/12]
  api_servers: ["10.0.0.10:6443", "10.96.0.1:443"]
trusted_ranges:
  - name: control-plane
    cidrs: [10.0.0.0/28]
  - name: vpn
    cidrs: [10.8.0.0/16]
  - name: ci-runners
    cidrs: [10.30.0.0/24]
identities:
  - username: system:serviceaccount:ci:deployer
    cidrs: [10.30.0.0/24]
automation:
  - name: ci-deployer
    username: system:serviceaccount:ci:deployer
    credential_ids: ["JTI=6f1d2c3b-8a4e-4f0a-9b1c-2d3e4f5a6b7c"]
    cidrs: [10.30.0.0/24]
  - name: argocd
    username: system:serviceaccount:argocd:argocd-application-controller
    credential_ids: ["*"]
    cidrs: [10.244.2.0/24]
"""

CI_JTI = "JTI=6f1d2c3b-8a4e-4f0a-9b1c-2d3e4f5a6b7c"


def ts(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def human(name, groups=("system:authenticated",), cred=None):
    u = {"username": name, "groups": list(groups)}
    if cred:
        u["extra"] = {"authentication.kubernetes.io/credential-id": [cred]}
    return u


def sa(ns, name, rng, node=None, pod=None, jti=None):
    extra = {"authentication.kubernetes.io/credential-id": [jti or f"JTI={uuid.UUID(int=rng.getrandbits(128), version=4)}"]}
    if node:
        extra["authentication.kubernetes.io/node-name"] = [node]
        extra["authentication.kubernetes.io/node-uid"] = [str(uuid.UUID(int=int(hashlib.sha256(node.encode()).hexdigest()[:32], 16), version=4))]
    if pod:
        extra["authentication.kubernetes.io/pod-name"] = [pod]
        extra["authentication.kubernetes.io/pod-uid"] = [str(uuid.UUID(int=int(hashlib.sha256(pod.encode()).hexdigest()[:32], 16), version=4))]
    return {"username": f"system:serviceaccount:{ns}:{name}",
            "uid": str(uuid.UUID(int=int(hashlib.sha256(f"{ns}/{name}".encode()).hexdigest()[:32], 16), version=4)),
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
            "extra": extra}


def subj(kind, name, ns=None):
    s = {"kind": kind, "name": name}
    if kind in ("User", "Group"):
        s = {"apiGroup": RBAC, "kind": kind, "name": name}
    if ns:
        s["namespace"] = ns
    return s


def binding(kind, name, role_kind, role, subjects, ns=None, meta_extra=None):
    m = {"name": name}
    if ns:
        m["namespace"] = ns
    if meta_extra:
        m.update(meta_extra)
    return {"apiVersion": f"{RBAC}/v1", "kind": kind, "metadata": m,
            "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role}, "subjects": subjects}


def role(kind, name, rules, ns=None):
    m = {"name": name}
    if ns:
        m["namespace"] = ns
    return {"apiVersion": f"{RBAC}/v1", "kind": kind, "metadata": m, "rules": rules}


def rule(groups, resources, verbs):
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


class Scn:
    def __init__(self, name, description, klass, kind, expect, policy=POLICY, noise=True):
        self.name, self.description, self.klass, self.kind, self.expect = name, description, klass, kind, expect
        self.policy = policy
        self.rng = random.Random(name)
        self.t = datetime(2026, 11, 20, 9, 0, 0, tzinfo=timezone.utc) + timedelta(minutes=self.rng.randrange(0, 600))
        self.events, self.obs = [], []
        self.rv = 184_000 + self.rng.randrange(0, 50_000)
        if noise:
            for n, (ip, cidr) in NODES.items():
                self.obs.append({"id": f"{n}/{self.rng.getrandbits(64):016x}/0", "time": ts(self.t - timedelta(hours=2)),
                                 "node": n, "type": "node_info", "name": n, "addresses": [ip], "pod_cidrs": [cidr],
                                 "agent_version": "0.1.0", "kernel_release": "6.8.0-45-generic",
                                 "hooks": ["lsm_file_open", "tp_btf_inet_sock_set_state"]})
            self.noise(4)

    def uid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def step(self, seconds=None):
        self.t += timedelta(seconds=seconds if seconds is not None else self.rng.uniform(0.2, 9.0))
        return self.t

    def ev(self, user, verb, uri, oref, code=200, ip="10.8.0.21", ua=KUBECTL, level="RequestResponse",
           req=None, resp=None, decision=None, stages=("ResponseComplete",), reason=None, xff=()):
        t = self.step()
        aid = self.uid()
        allowed = code not in (401, 403)
        for stage in stages:
            e = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level, "auditID": aid, "stage": stage,
                 "requestURI": uri, "verb": verb, "user": user, "sourceIPs": list(xff) + [ip], "userAgent": ua,
                 "objectRef": oref}
            if stage != "RequestReceived":
                st = {"metadata": {}, "code": code}
                if code >= 400:
                    st.update({"status": "Failure", "reason": {403: "Forbidden", 404: "NotFound", 409: "AlreadyExists", 422: "Invalid"}.get(code, "BadRequest")})
                e["responseStatus"] = st
            if level in ("Request", "RequestResponse") and req is not None:
                e["requestObject"] = req
            if level == "RequestResponse" and resp is not None and stage != "RequestReceived":
                e["responseObject"] = resp
            e["requestReceivedTimestamp"] = ts(t)
            e["stageTimestamp"] = ts(t + (timedelta(microseconds=self.rng.randrange(900, 9000)) if stage != "RequestReceived" else timedelta(0)))
            ann = {"authorization.k8s.io/decision": decision or ("allow" if allowed else "forbid"),
                   "authorization.k8s.io/reason": reason if reason is not None else ("" if allowed else "")}
            if allowed and decision is None and reason is None and user["username"].startswith(("alice", "bob", "carol", "dave")):
                ann["authorization.k8s.io/reason"] = 'RBAC: allowed by ClusterRoleBinding "platform-admins" of ClusterRole "cluster-admin" to Group "platform-admins"'
            if stage == "RequestReceived":
                ann = {}
            if ann:
                e["annotations"] = ann
            self.events.append(e)
        return aid

    def stored(self, obj, created=True):
        """The object as the API server returns it."""
        o = json.loads(json.dumps(obj))
        self.rv += self.rng.randrange(3, 40)
        m = o["metadata"]
        m.setdefault("uid", self.uid())
        m["resourceVersion"] = str(self.rv)
        m.setdefault("creationTimestamp", self.t.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return o

    # --- background traffic ---
    def noise(self, n):
        for _ in range(n):
            c = self.rng.randrange(0, 5)
            if c < 2:
                node = self.rng.choice(list(NODES))
                self.ev(human(f"system:node:{node}", ("system:nodes", "system:authenticated"),
                              cred="X509SHA256=" + hashlib.sha256(node.encode()).hexdigest()),
                        "update", f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}?timeout=10s",
                        {"resource": "leases", "namespace": "kube-node-lease", "name": node, "apiGroup": "coordination.k8s.io", "apiVersion": "v1"},
                        ip=NODES[node][0], ua=KUBELET, level="Metadata")
            elif c == 2:
                self.ev(human("system:kube-controller-manager", ("system:authenticated",),
                              cred="X509SHA256=" + hashlib.sha256(b"kcm").hexdigest()),
                        "update", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager?timeout=5s",
                        {"resource": "leases", "namespace": "kube-system", "name": "kube-controller-manager", "apiGroup": "coordination.k8s.io", "apiVersion": "v1"},
                        ip=CP, ua=KCM, level="Metadata")
            elif c == 3:
                self.ev(sa("kube-system", "coredns", self.rng, node="node-a", pod="coredns-7db6d8ff4d-x2lmq"),
                        "watch", "/apis/discovery.k8s.io/v1/endpointslices?allowWatchBookmarks=true&resourceVersion=183211&timeout=7m41s&timeoutSeconds=461&watch=true",
                        {"resource": "endpointslices", "apiGroup": "discovery.k8s.io", "apiVersion": "v1"},
                        ip="10.244.0.5", ua=COREDNS, level="Metadata")
            else:
                self.ev(sa("kube-system", "replicaset-controller", self.rng),
                        "update", "/apis/apps/v1/namespaces/shop/replicasets/web-6c9d8b7f5d/status",
                        {"resource": "replicasets", "namespace": "shop", "name": "web-6c9d8b7f5d", "apiGroup": "apps", "apiVersion": "v1", "subresource": "status"},
                        ip=CP, ua="kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/3968350/system:serviceaccount:kube-system:replicaset-controller",
                        level="Metadata")

    # --- RBAC verbs ---
    def create_binding(self, user, b, ip="10.8.0.21", ua=KUBECTL, level="RequestResponse", code=201, stages=("ResponseComplete",), xff=()):
        kind = b["kind"]
        res = "clusterrolebindings" if kind == "ClusterRoleBinding" else "rolebindings"
        ns = b["metadata"].get("namespace")
        uri = f"/apis/{RBAC}/v1/" + (f"namespaces/{ns}/" if ns else "") + f"{res}?fieldManager=kubectl-create&fieldValidation=Strict"
        oref = {"resource": res, "name": b["metadata"]["name"], "apiGroup": RBAC, "apiVersion": "v1"}
        if ns:
            oref["namespace"] = ns
        resp = self.stored(b) if code < 300 else {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": f'{res}.{RBAC} is forbidden: User "{user["username"]}" cannot create resource "{res}" in API group "{RBAC}" at the cluster scope',
            "reason": "Forbidden", "details": {"group": RBAC, "kind": res}, "code": code}
        return self.ev(user, "create", uri, oref, code=code, ip=ip, ua=ua, level=level, req=b, resp=resp, stages=stages, xff=xff)

    def create_role(self, user, r, ip="10.8.0.21", level="RequestResponse"):
        kind = r["kind"]
        res = "clusterroles" if kind == "ClusterRole" else "roles"
        ns = r["metadata"].get("namespace")
        uri = f"/apis/{RBAC}/v1/" + (f"namespaces/{ns}/" if ns else "") + f"{res}?fieldManager=kubectl-create&fieldValidation=Strict"
        oref = {"resource": res, "name": r["metadata"]["name"], "apiGroup": RBAC, "apiVersion": "v1"}
        if ns:
            oref["namespace"] = ns
        return self.ev(user, "create", uri, oref, code=201, ip=ip, level=level, req=r, resp=self.stored(r))

    def patch(self, user, res, name, body, ns=None, ip="10.8.0.21", ua=KUBECTL, level="Request", resp=None,
              manager="kubectl-patch", extra_q="", code=200):
        uri = f"/apis/{RBAC}/v1/" + (f"namespaces/{ns}/" if ns else "") + f"{res}/{name}?fieldManager={manager}{extra_q}"
        oref = {"resource": res, "name": name, "apiGroup": RBAC, "apiVersion": "v1"}
        if ns:
            oref["namespace"] = ns
        return self.ev(user, "patch", uri, oref, code=code, ip=ip, ua=ua, level=level, req=body, resp=resp)

    def write(self):
        d = os.path.join(OUT, self.name)
        os.makedirs(d, exist_ok=True)
        exp = "".join(f"\n  - {{rule: {r}, count: {c}}}" for r, c in self.expect)
        with open(os.path.join(d, "scenario.yaml"), "w") as f:
            f.write(f"description: {json.dumps(self.description)}\nclass: {json.dumps(self.klass)}\nkind: {self.kind}\n")
            f.write(f"expect:{exp}\n" if exp else "expect: []\n")
        with open(os.path.join(d, "audit.jsonl"), "w") as f:
            for e in self.events:
                f.write(json.dumps(e, separators=(",", ":")) + "\n")
        if self.obs:
            with open(os.path.join(d, "observations.jsonl"), "w") as f:
                for o in self.obs:
                    f.write(json.dumps(o, separators=(",", ":")) + "\n")
        if self.policy:
            with open(os.path.join(d, "policy.yaml"), "w") as f:
                f.write(self.policy)


ALICE = human("alice@example.com", ("platform-admins", "system:authenticated"))
BOB = human("bob@example.com", ("developers", "system:authenticated"))
MALLORY = human("mallory", ("system:authenticated",), cred="X509SHA256=" + hashlib.sha256(b"mallory").hexdigest())
ADMIN = human("kubernetes-admin", ("kubeadm:cluster-admins", "system:authenticated"),
              cred="X509SHA256=" + hashlib.sha256(b"kubernetes-admin").hexdigest())
OUTSIDE = "203.0.113.50"


def all_scenarios():
    out = []

    # 1. a human grants cluster-admin from the Internet
    s = Scn("an1579-create-crb-cluster-admin-from-outside",
            "A human user creates a ClusterRoleBinding to cluster-admin for herself from a globally routable address (kubectl create clusterrolebinding).",
            "AN1579 high-privilege grant outside approved automation, from an unknown IP (DESIGN.md)", "attack", [("CT1579-001", 1)])
    s.create_binding(ALICE, binding("ClusterRoleBinding", "alice-admin", "ClusterRole", "cluster-admin", [subj("User", "alice@example.com")]), ip=OUTSIDE)
    s.noise(3)
    out.append(s)

    # 2. JSON patch adds a subject to the built-in cluster-admin binding, Request level
    s = Scn("an1579-json-patch-adds-subject-to-builtin-cluster-admin",
            "kubectl patch --type=json adds a User to the built-in cluster-admin ClusterRoleBinding; audit policy logs bindings at Request level, so only the patch is logged. The binding's state is known from the bootstrap policy.",
            "issue 10.1 JSON patch (RFC 6902) applied to the known binding state; DESIGN.md patch adding a subject to an existing cluster-admin binding", "attack", [("CT1579-001", 1)])
    s.patch(BOB, "clusterrolebindings", "cluster-admin",
            [{"op": "add", "path": "/subjects/-", "value": {"apiGroup": RBAC, "kind": "User", "name": "bob@example.com"}}])
    s.noise(2)
    out.append(s)

    # 3. JSON patch with the response logged on a binding CI created earlier
    s = Scn("an1579-json-patch-requestresponse-on-ci-binding",
            "CI (approved, from its runner range) creates ops-admins bound to cluster-admin; later a human adds mallory with kubectl patch --type=json at RequestResponse level.",
            "issue 10.1 JSON patch, responseObject logged", "attack", [("CT1579-001", 1)])
    ci = sa("ci", "deployer", s.rng, jti=CI_JTI)
    b = binding("ClusterRoleBinding", "ops-admins", "ClusterRole", "cluster-admin", [subj("Group", "ops")])
    s.create_binding(ci, b, ip="10.30.0.14", ua=CLIENTGO)
    s.noise(2)
    b2 = json.loads(json.dumps(b))
    b2["subjects"].append(subj("User", "mallory"))
    s.patch(ALICE, "clusterrolebindings", "ops-admins",
            [{"op": "add", "path": "/subjects/1", "value": subj("User", "mallory")}], level="RequestResponse", resp=s.stored(b2))
    out.append(s)

    # 4. JSON patch on a binding never seen, role unknown
    s = Scn("an1579-json-patch-unseen-binding-role-unknown",
            "A JSON patch adds a subject to a binding created before the aggregator was installed; Request level, so neither the role nor the other subjects are logged.",
            "issue 10.1 patch judged by what it adds; role not visible (CT1579-004)", "attack", [("CT1579-004", 1)])
    s.patch(BOB, "rolebindings", "deployers",
            [{"op": "add", "path": "/subjects/-", "value": subj("ServiceAccount", "builder", "payments")}], ns="payments")
    out.append(s)

    # 5. JSON patch replaces subjects with system:authenticated on an unseen binding
    s = Scn("an1579-json-patch-grants-system-authenticated",
            "A JSON patch replaces the subjects of an unseen ClusterRoleBinding with the system:authenticated group (Request level).",
            "issue 10.1 patch additions; grant to every authenticated user (DESIGN.md)", "attack", [("CT1579-002", 1)])
    s.patch(MALLORY, "clusterrolebindings", "metrics-readers",
            [{"op": "replace", "path": "/subjects", "value": [subj("Group", "system:authenticated")]}], ip="10.0.1.13")
    s.noise(2)
    out.append(s)

    # 6. merge patch on a known edit binding
    s = Scn("an1579-merge-patch-adds-user-to-edit-binding",
            "A RoleBinding to edit is created with its body logged; later kubectl patch --type=merge replaces the subjects list adding a user (Request level).",
            "issue 10.1 merge patch (RFC 7386) applied to the known state", "attack", [("CT1579-001", 2)])
    b = binding("RoleBinding", "shop-editors", "ClusterRole", "edit", [subj("Group", "shop-team")], ns="shop")
    s.create_binding(ALICE, b)
    s.patch(BOB, "rolebindings", "shop-editors",
            {"subjects": [subj("Group", "shop-team"), subj("User", "mallory")]}, ns="shop")
    out.append(s)

    # 7. client-side apply: strategic merge patch
    s = Scn("an1579-strategic-merge-client-side-apply",
            "kubectl apply (client-side) sends a strategic merge patch with $setElementOrder and the last-applied annotation, adding a ServiceAccount to an admin RoleBinding (Request level).",
            "issue 10.1 strategic merge patch", "attack", [("CT1579-001", 1)])
    b = binding("RoleBinding", "payments-admins", "ClusterRole", "admin", [subj("Group", "payments-leads")], ns="payments")
    s.create_binding(sa("ci", "deployer", s.rng, jti=CI_JTI), b, ip="10.30.0.14", ua=CLIENTGO, level="Request")
    s.noise(2)
    last = json.dumps({**b, "subjects": b["subjects"] + [subj("ServiceAccount", "jenkins", "payments")]}, separators=(",", ":"))
    s.patch(ADMIN, "rolebindings", "payments-admins", {
        "$setElementOrder/subjects": [{"name": "payments-leads"}, {"name": "jenkins"}],
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": last + "\n"}},
        "subjects": [subj("Group", "payments-leads"), subj("ServiceAccount", "jenkins", "payments")]},
        ns="payments", ip="10.8.3.4", manager="kubectl-client-side-apply", extra_q="&fieldValidation=Strict")
    out.append(s)

    # 8. server-side apply, RequestResponse
    s = Scn("an1579-server-side-apply-creates-cluster-admin-binding",
            "kubectl apply --server-side (PATCH, application/apply-patch+yaml, fieldManager=kubectl) creates a ClusterRoleBinding to cluster-admin; response logged.",
            "issue 10.1 server-side apply", "attack", [("CT1579-001", 1)])
    b = binding("ClusterRoleBinding", "debug-admin", "ClusterRole", "cluster-admin", [subj("User", "bob@example.com")])
    s.patch(BOB, "clusterrolebindings", "debug-admin", b, level="RequestResponse", resp=s.stored(b),
            manager="kubectl", extra_q="&fieldValidation=Strict&force=false", code=201)
    out.append(s)

    # 9. server-side apply, Request level, unseen binding
    s = Scn("an1579-server-side-apply-request-level",
            "Server-side apply by a client-go tool of a ClusterRoleBinding to cluster-admin; only the applied configuration is logged (Request level).",
            "issue 10.1 server-side apply without responseObject", "attack", [("CT1579-001", 1)])
    b = binding("ClusterRoleBinding", "tooling-admin", "ClusterRole", "cluster-admin", [subj("ServiceAccount", "tooling", "tools")])
    s.patch(ADMIN, "clusterrolebindings", "tooling-admin", b, ua="tooling-operator/v0.4.1 (linux/amd64) kubernetes/$Format",
            manager="tooling-operator", extra_q="&force=true", ip="10.8.3.4")
    s.noise(2)
    out.append(s)

    # 10. built-in escalation role
    s = Scn("an1579-builtin-escalation-role-aggregation-controller",
            "A ClusterRoleBinding gives a workload ServiceAccount the built-in system:controller:clusterrole-aggregation-controller role (escalate on clusterroles); the role never appears in the audit stream.",
            "issue 10.3 built-in escalation role known from the bootstrap policy", "attack", [("CT1579-001", 1)])
    s.create_binding(BOB, binding("ClusterRoleBinding", "agg-helper", "ClusterRole", "system:controller:clusterrole-aggregation-controller",
                                  [subj("ServiceAccount", "web", "shop")]))
    out.append(s)

    # 11. system:masters group
    s = Scn("an1579-binding-to-system-masters-group",
            "A ClusterRoleBinding names the system:masters group as its subject (to a role the aggregator has never seen).",
            "issue 10.3 binding to system:masters counts as cluster-admin", "attack", [("CT1579-001", 1)])
    s.create_binding(MALLORY, binding("ClusterRoleBinding", "masters-view", "ClusterRole", "masters-view", [subj("Group", "system:masters")]), ip="10.0.1.12")
    out.append(s)

    # 12-19. custom roles with one high-privilege rule each
    customs = [
        ("escalate-bind", "ClusterRole", [rule([RBAC], ["clusterroles"], ["get", "escalate", "bind"])], "escalate/bind on clusterroles"),
        ("impersonate", "ClusterRole", [rule([""], ["users", "groups", "serviceaccounts"], ["impersonate"])], "impersonate users and groups"),
        ("secrets-reader", "ClusterRole", [rule([""], ["secrets"], ["get", "list", "watch"])], "read secrets in every namespace"),
        ("pod-exec", "Role", [rule([""], ["pods"], ["get", "list"]), rule([""], ["pods/exec"], ["create"])], "pods/exec"),
        ("node-proxy", "ClusterRole", [rule([""], ["nodes/proxy"], ["get"])], "nodes/proxy"),
        ("token-minter", "ClusterRole", [rule([""], ["serviceaccounts/token"], ["create"])], "serviceaccounts/token"),
        ("webhook-admin", "ClusterRole", [rule(["admissionregistration.k8s.io"], ["mutatingwebhookconfigurations", "validatingwebhookconfigurations"], ["create", "update", "patch"])], "webhook configurations"),
        ("pod-creator", "Role", [rule([""], ["pods"], ["create", "get", "list"])], "creating pods"),
        ("debugger", "Role", [rule([""], ["pods/ephemeralcontainers"], ["patch", "update"])], "pods/ephemeralcontainers"),
        ("csr-approver", "ClusterRole", [rule(["certificates.k8s.io"], ["certificatesigningrequests/approval"], ["update"]),
                                         rule(["certificates.k8s.io"], ["signers"], ["approve"])], "CSR approval"),
    ]
    for short, rk, rules, what in customs:
        s = Scn(f"an1579-custom-role-{short}",
                f"A custom {rk} allowing {what} is created (body logged), then bound to a user; the role is judged by its rules.",
                f"issue 10.3 custom role with {what}", "attack", [("CT1579-001", 1)])
        ns = "shop" if rk == "Role" else None
        s.create_role(ALICE, role(rk, short, rules, ns=ns))
        s.noise(2)
        bk = "RoleBinding" if rk == "Role" else "ClusterRoleBinding"
        s.create_binding(ALICE, binding(bk, f"{short}-carol", rk, short, [subj("User", "carol@example.com")], ns=ns))
        out.append(s)

    # 20. role JSON-patched to escalate, then bound
    s = Scn("an1579-role-json-patched-then-bound",
            "A harmless ClusterRole is created, then a JSON patch (Request level, no response) appends an escalate rule; binding it afterwards is a high-privilege grant.",
            "issue 10.1 JSON patch on a role applied to its known rules; 10.3 escalate", "attack", [("CT1579-001", 1)])
    s.create_role(ALICE, role("ClusterRole", "ns-viewer", [rule([""], ["namespaces"], ["get", "list"])]))
    s.patch(MALLORY, "clusterroles", "ns-viewer",
            [{"op": "add", "path": "/rules/-", "value": rule([RBAC], ["clusterroles"], ["escalate"])}], ip="10.0.1.12")
    s.create_binding(MALLORY, binding("ClusterRoleBinding", "ns-viewer-mallory", "ClusterRole", "ns-viewer", [subj("User", "mallory")]), ip="10.0.1.12")
    out.append(s)

    # 21. failed 403 create
    s = Scn("an1579-forbidden-create-cluster-admin-binding",
            "A user without RBAC rights tries to bind cluster-admin to herself and is refused (403), with RequestReceived and ResponseComplete stages logged.",
            "DESIGN.md failed grant attempts", "attack", [("CT1579-003", 1)])
    s.create_binding(MALLORY, binding("ClusterRoleBinding", "mallory-admin", "ClusterRole", "cluster-admin", [subj("User", "mallory")]),
                     ip="10.0.1.12", code=403, stages=("RequestReceived", "ResponseComplete"))
    s.noise(2)
    out.append(s)

    # 22. failed 403 JSON patch on the built-in binding
    s = Scn("an1579-forbidden-json-patch-on-cluster-admin",
            "A refused (403) kubectl patch --type=json adding a subject to the built-in cluster-admin binding.",
            "DESIGN.md failed grant attempts; issue 10.1 JSON patch", "attack", [("CT1579-003", 1)])
    s.patch(MALLORY, "clusterrolebindings", "cluster-admin",
            [{"op": "add", "path": "/subjects/-", "value": subj("User", "mallory")}], ip="10.0.1.12", code=403)
    out.append(s)

    # 23. grant edit to system:authenticated
    s = Scn("an1579-grant-edit-to-system-authenticated",
            "A ClusterRoleBinding gives edit to the system:authenticated group.",
            "DESIGN.md grants to system:authenticated", "attack", [("CT1579-002", 1)])
    s.create_binding(BOB, binding("ClusterRoleBinding", "everyone-edit", "ClusterRole", "edit", [subj("Group", "system:authenticated")]))
    out.append(s)

    # 24. grant to system:anonymous
    s = Scn("an1579-grant-to-system-anonymous",
            "A RoleBinding gives an unseen custom ClusterRole to the system:anonymous user.",
            "DESIGN.md grants to system:anonymous", "attack", [("CT1579-002", 1)])
    s.create_binding(BOB, binding("RoleBinding", "public-status", "ClusterRole", "status-reader", [subj("User", "system:anonymous")], ns="status"))
    s.noise(1)
    out.append(s)

    # 25. automation identity from an unknown IP
    s = Scn("an1579-automation-identity-from-unknown-ip",
            "The approved CI identity, with its approved token, creates a cluster-admin binding from a globally routable address outside its runner range (stolen token).",
            "DESIGN.md approved automation only when identity, credential and range match; AN1547 token used from outside", "attack",
            [("CT1579-001", 1), ("CT1547-002", 1)])
    ci = sa("ci", "deployer", s.rng, jti=CI_JTI)
    s.create_binding(ci, binding("ClusterRoleBinding", "backdoor", "ClusterRole", "cluster-admin", [subj("ServiceAccount", "backdoor", "kube-system")]),
                     ip="198.51.100.77", ua=CLIENTGO)
    out.append(s)

    # 26. Metadata-level write by a human
    s = Scn("an1579-metadata-level-binding-write-by-human",
            "The audit policy logs bindings at Metadata only; a human patches a ClusterRoleBinding, so role and subjects are not visible.",
            "issue 10.6 Metadata-only binding write by anyone but approved automation (CT1579-004)", "attack", [("CT1579-004", 1)])
    s.patch(BOB, "clusterrolebindings", "platform-ops", None, level="Metadata", manager="kubectl-edit")
    s.noise(2)
    out.append(s)

    # 27. unreadable subject value in a JSON patch
    s = Scn("an1579-json-patch-unreadable-subject",
            "A JSON patch on the cluster-admin binding adds a subject whose name is not a string; the field is named unreadable and the grant still alerts.",
            "issue 10.1 a field that cannot be read never drops the event", "attack", [("CT1579-001", 1)])
    s.patch(MALLORY, "clusterrolebindings", "cluster-admin",
            [{"op": "add", "path": "/subjects/-", "value": {"apiGroup": RBAC, "kind": "User", "name": {"$ne": ""}}}], ip="10.0.1.12")
    out.append(s)

    # 28. X-Forwarded-For forged toward an approved range
    s = Scn("an1579-forged-xff-automation-range",
            "The CI token is used from outside with a forged X-Forwarded-For naming the runner range; only the last sourceIPs entry is judged.",
            "DESIGN.md sourceIPs: judge the last entry; approved automation range", "attack", [("CT1579-001", 1), ("CT1547-002", 1)])
    ci = sa("ci", "deployer", s.rng, jti=CI_JTI)
    s.create_binding(ci, binding("ClusterRoleBinding", "ci-extra", "ClusterRole", "cluster-admin", [subj("User", "eve")]),
                     ip="192.0.2.200", ua=CLIENTGO, xff=("10.30.0.14",))
    out.append(s)

    # 29. kubectl replace: update with the full body at Request level
    s = Scn("an1579-update-replaces-binding-subjects",
            "kubectl replace (update) of a view RoleBinding switches its role to admin and adds a ServiceAccount; Request level, the request body is the whole object.",
            "issue 10.1 update body; roleRef change seen as a new grant", "attack", [("CT1579-001", 1)])
    b = binding("RoleBinding", "ops-view", "ClusterRole", "view", [subj("Group", "ops")], ns="ops")
    s.create_binding(sa("ci", "deployer", s.rng, jti=CI_JTI), b, ip="10.30.0.14", ua=CLIENTGO, level="Request")
    s.noise(2)
    b2 = binding("RoleBinding", "ops-view", "ClusterRole", "admin", [subj("Group", "ops"), subj("ServiceAccount", "runner", "ops")], ns="ops")
    s.ev(BOB, "update", f"/apis/{RBAC}/v1/namespaces/ops/rolebindings/ops-view?fieldManager=kubectl-replace&fieldValidation=Strict",
         {"resource": "rolebindings", "namespace": "ops", "name": "ops-view", "apiGroup": RBAC, "apiVersion": "v1"}, level="Request", req=b2)
    out.append(s)

    # 30. impersonated grant
    s = Scn("an1579-impersonated-grant",
            "An admin with impersonate rights creates a cluster-admin binding as another user (kubectl --as); the alert names the effective user and the impersonator.",
            "DESIGN.md high-privilege grant; impersonation", "attack", [("CT1579-001", 1)])
    b = binding("ClusterRoleBinding", "as-carol", "ClusterRole", "cluster-admin", [subj("User", "carol@example.com")])
    aid = s.create_binding(MALLORY, b, ip="10.0.1.12")
    s.events[-1]["impersonatedUser"] = {"username": "carol@example.com", "groups": ["platform-admins", "system:authenticated"]}
    out.append(s)

    # 31. strategic merge with $patch: replace on subjects' parent
    s = Scn("an1579-strategic-merge-patch-replace-directive",
            "A strategic merge patch with a $patch: replace directive rewrites a known admin binding wholesale, adding a group (Request level).",
            "issue 10.1 strategic merge directives", "attack", [("CT1579-001", 1)])
    b = binding("RoleBinding", "db-admins", "ClusterRole", "admin", [subj("Group", "dba")], ns="db")
    s.create_binding(sa("ci", "deployer", s.rng, jti=CI_JTI), b, ip="10.30.0.14", ua=CLIENTGO)
    s.patch(ADMIN, "rolebindings", "db-admins", {"$patch": "replace", "apiVersion": f"{RBAC}/v1", "kind": "RoleBinding",
                                                  "metadata": {"name": "db-admins", "namespace": "db"},
                                                  "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "admin"},
                                                  "subjects": [subj("Group", "dba"), subj("Group", "contractors")]},
            ns="db", ip="10.8.3.4")
    s.noise(2)
    out.append(s)

    # 32. the response tells the truth the request does not
    s = Scn("an1579-response-object-shows-added-subject",
            "A client-go merge patch changes only a label, but the logged responseObject shows a subject added by a mutating webhook; the response is judged.",
            "issue 10.1 responseObject when logged", "attack", [("CT1579-001", 1)])
    b = binding("ClusterRoleBinding", "cluster-ops", "ClusterRole", "cluster-admin", [subj("Group", "ops")])
    s.create_binding(sa("ci", "deployer", s.rng, jti=CI_JTI), b, ip="10.30.0.14", ua=CLIENTGO)
    b2 = json.loads(json.dumps(b))
    b2["metadata"]["labels"] = {"tier": "ops"}
    b2["subjects"].append(subj("User", "webhook-added"))
    s.patch(BOB, "clusterrolebindings", "cluster-ops", {"metadata": {"labels": {"tier": "ops"}}}, level="RequestResponse",
            resp=s.stored(b2), ua="ops-tool/v1.2.0 (linux/amd64) kubernetes/$Format", manager="ops-tool")
    out.append(s)

    # 33. a decoy op nests deeper than parsers allow
    s = Scn("an1579-json-patch-deeply-nested-decoy",
            "A JSON patch adds the attacker to the cluster-admin binding and, in a decoy operation on an annotation, a value nested 300 levels deep (past serde_json's default depth limit); the event is still judged.",
            "issue 10.1 no event lost to the shape of its objects", "attack", [("CT1579-001", 1)])
    deep = 1
    for _ in range(300):
        deep = [deep]
    s.patch(MALLORY, "clusterrolebindings", "cluster-admin",
            [{"op": "add", "path": "/metadata/annotations/note", "value": deep},
             {"op": "add", "path": "/subjects/-", "value": subj("User", "mallory")}], ip=OUTSIDE)
    s.noise(2)
    out.append(s)

    # ---------------- benign ----------------
    s = Scn("benign-an1579-low-privilege-rolebinding",
            "A developer is given view in a namespace (RoleBinding to the built-in view ClusterRole).",
            "DESIGN.md low-privilege binding", "benign", [])
    s.create_binding(ALICE, binding("RoleBinding", "dev-view", "ClusterRole", "view", [subj("User", "bob@example.com")], ns="shop"))
    s.noise(3)
    out.append(s)

    s = Scn("benign-an1579-automation-from-its-range",
            "The approved CI identity with its approved token creates a cluster-admin binding from its runner range.",
            "DESIGN.md approved automation (identity, credential and range match)", "benign", [])
    ci = sa("ci", "deployer", s.rng, jti=CI_JTI)
    s.create_binding(ci, binding("ClusterRoleBinding", "release-admin", "ClusterRole", "cluster-admin", [subj("ServiceAccount", "release", "ci")]),
                     ip="10.30.0.14", ua=CLIENTGO)
    s.noise(2)
    out.append(s)

    s = Scn("benign-an1579-automation-metadata-syncs",
            "Argo CD (approved automation: identity, any of its tokens, its pod range) syncs bindings every few minutes; the audit policy logs bindings at Metadata level. Counted in coverage, not alerted.",
            "issue 10.6 Metadata-only binding writes by approved automation", "benign", [])
    argo = sa("argocd", "argocd-application-controller", s.rng, node="node-c", pod="argocd-application-controller-0")
    for i in range(4):
        s.patch(argo, "clusterrolebindings" if i % 2 else "rolebindings", "app-deployers" if i % 2 else "shop-deployers", None,
                ns=None if i % 2 else "shop", ip="10.244.2.17", ua=ARGO, level="Metadata", manager="argocd-controller",
                extra_q="&force=true")
        s.noise(2)
    out.append(s)

    s = Scn("benign-an1579-apiserver-bootstrap-reconcile",
            "A fresh API server reconciles its bootstrap ClusterRoleBindings (system:apiserver from the loopback address): the built-in state, no new grant.",
            "issue 10.3 built-in roles and bindings known", "benign", [])
    apiserver = human("system:apiserver", ("system:masters", "system:authenticated"))
    for name, r, subs in [("cluster-admin", "cluster-admin", [subj("Group", "system:masters")]),
                          ("system:basic-user", "system:basic-user", [subj("Group", "system:authenticated")]),
                          ("system:discovery", "system:discovery", [subj("Group", "system:authenticated")]),
                          ("system:controller:clusterrole-aggregation-controller", "system:controller:clusterrole-aggregation-controller",
                           [{"kind": "ServiceAccount", "name": "clusterrole-aggregation-controller", "namespace": "kube-system"}])]:
        b = binding("ClusterRoleBinding", name, "ClusterRole", r, subs,
                    meta_extra={"annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}})
        s.create_binding(apiserver, b, ip="::1", ua=APISERVER)
    out.append(s)

    s = Scn("benign-an1579-delete-binding",
            "An admin deletes a ClusterRoleBinding to cluster-admin.",
            "DESIGN.md deletion is not a grant", "benign", [])
    s.ev(ALICE, "delete", f"/apis/{RBAC}/v1/clusterrolebindings/old-admin",
         {"resource": "clusterrolebindings", "name": "old-admin", "apiGroup": RBAC, "apiVersion": "v1"},
         req={"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/__internal", "propagationPolicy": "Background"},
         resp={"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
               "details": {"name": "old-admin", "group": RBAC, "kind": "clusterrolebindings", "uid": s.uid()}})
    s.noise(2)
    out.append(s)

    s = Scn("benign-an1579-label-merge-patch-on-cluster-admin",
            "kubectl label sends a merge patch adding a label to the built-in cluster-admin binding (Request level): no subject added.",
            "issue 10.1 merge patch applied to the known built-in state, nothing granted", "benign", [])
    s.patch(ALICE, "clusterrolebindings", "cluster-admin", {"metadata": {"labels": {"team": "platform"}}}, manager="kubectl-label")
    out.append(s)

    s = Scn("benign-an1579-json-patch-removes-subject",
            "A JSON patch removes a subject from a cluster-admin binding created earlier (Request level).",
            "issue 10.1 JSON patch that only removes", "benign", [])
    ci = sa("ci", "deployer", s.rng, jti=CI_JTI)
    s.create_binding(ci, binding("ClusterRoleBinding", "oncall-admins", "ClusterRole", "cluster-admin",
                                 [subj("Group", "oncall"), subj("User", "former-employee")]), ip="10.30.0.14", ua=CLIENTGO)
    s.patch(ALICE, "clusterrolebindings", "oncall-admins", [{"op": "test", "path": "/subjects/1/name", "value": "former-employee"},
                                                            {"op": "remove", "path": "/subjects/1"}])
    s.noise(2)
    out.append(s)

    s = Scn("benign-an1579-high-role-created-not-bound",
            "An admin creates a powerful ClusterRole for later use; creating a role grants nothing.",
            "DESIGN.md roles learned from their audit events; only bindings grant", "benign", [])
    s.create_role(ALICE, role("ClusterRole", "break-glass", [rule(["*"], ["*"], ["*"])]))
    s.noise(2)
    out.append(s)

    s = Scn("benign-an1579-namespaced-secrets-reader",
            "A namespace Role reading that namespace's own secrets is bound in the namespace (a RoleBinding: one namespace's own secrets).",
            "issue 10.3 secrets read beyond one namespace's own only", "benign", [])
    s.create_role(ALICE, role("Role", "config-reader", [rule([""], ["secrets", "configmaps"], ["get", "list"])], ns="shop"))
    s.create_binding(ALICE, binding("RoleBinding", "config-reader-web", "Role", "config-reader", [subj("ServiceAccount", "web", "shop")], ns="shop"))
    out.append(s)

    s = Scn("benign-an1579-forbidden-low-privilege-binding",
            "A developer tries to give a colleague view in a namespace and is refused (403): a failed low-privilege grant is not an attack signal.",
            "DESIGN.md failed attempts (only of high or unknown grants)", "benign", [])
    s.create_binding(BOB, binding("RoleBinding", "peer-view", "ClusterRole", "view", [subj("User", "dave@example.com")], ns="shop"),
                     code=403)
    s.noise(2)
    out.append(s)

    s = Scn("benign-an1579-server-side-apply-unchanged",
            "Helm re-applies (server-side) an existing monitoring ClusterRoleBinding unchanged: same role, same subjects.",
            "issue 10.1 server-side apply applied to the known state, nothing added", "benign", [])
    b = binding("ClusterRoleBinding", "prometheus", "ClusterRole", "prometheus", [subj("ServiceAccount", "prometheus", "monitoring")])
    s.create_role(ALICE, role("ClusterRole", "prometheus", [rule([""], ["nodes", "nodes/metrics", "services", "endpoints", "pods"], ["get", "list", "watch"])]))
    s.create_binding(ALICE, b)
    s.noise(2)
    s.patch(ALICE, "clusterrolebindings", "prometheus", b, ua=HELM, manager="helm", extra_q="&force=true")
    out.append(s)
    return out


if __name__ == "__main__":
    for s in all_scenarios():
        s.write()
    print(len(all_scenarios()), "scenarios")
