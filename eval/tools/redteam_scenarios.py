#!/usr/bin/env python3
"""Writes the red-team scenarios: attack variants an attacker who reads the
detectors would try (roles widened instead of bindings written, aggregation,
server-side dry runs, patch operations that rewrite a subject in place,
IPv4-mapped IPv6 source addresses, authorized writes that failed), and the
benign churn next to each.

Run from the repository root: python3 eval/tools/redteam_scenarios.py eval/scenarios
Deterministic (seeded by scenario name, like an1579_scenarios.py, whose
cluster, identities and helpers it uses); the output is committed.
"""
import hashlib, json, os, random, sys, uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from an1579_scenarios import (  # noqa: E402
    ADMIN, ALICE, BOB, CI_JTI, CLIENTGO, CP, KCM, KUBECTL, KUBELET, MALLORY, NODES, OUTSIDE, RBAC,
    Scn, binding, human, role, rule, sa, subj)

AGG_SA = "clusterrole-aggregation-controller"
AGG_UA = f"kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/3968350/system:serviceaccount:kube-system:{AGG_SA}"
ARGO_UA = "argocd-application-controller/v2.11.3 (linux/amd64) kubernetes/$Format"
BOOTSTRAP_META = {"annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
                  "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}

# Rules of the built-in roles as a v1.30 API server serves them (the parts used here).
BASIC_USER = [rule(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"]),
              rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"])]
VIEW_CORE = rule([""], ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                        "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                        "services/status"], ["get", "list", "watch"])


def role_uri(res, name, q):
    return f"/apis/{RBAC}/v1/{res}/{name}?{q}"


def oref(res, name, ns=None):
    o = {"resource": res, "name": name, "apiGroup": RBAC, "apiVersion": "v1"}
    if ns:
        o["namespace"] = ns
    return o


def update(s, user, obj, manager="kubectl-edit", ip="10.8.0.21", ua=KUBECTL, level="RequestResponse", q_extra="", code=200):
    """A PUT of the whole object (kubectl edit / replace, a controller's update)."""
    kind = obj["kind"]
    res = {"ClusterRole": "clusterroles", "Role": "roles", "ClusterRoleBinding": "clusterrolebindings",
           "RoleBinding": "rolebindings"}[kind]
    ns = obj["metadata"].get("namespace")
    name = obj["metadata"]["name"]
    q = (f"fieldManager={manager}&fieldValidation=Strict" if manager else "") + q_extra
    base = f"/apis/{RBAC}/v1/" + (f"namespaces/{ns}/" if ns else "")
    uri = f"{base}{res}/{name}" + (f"?{q.lstrip('&')}" if q else "")
    stored = s.stored(obj)
    if code >= 400:
        stored = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": code,
                  "reason": {409: "Conflict", 422: "Invalid"}.get(code, "BadRequest"),
                  "message": f'Operation cannot be fulfilled on {res}.{RBAC} "{name}": the object has been modified; please apply your changes to the latest version and try again' if code == 409 else "invalid"}
    return s.ev(user, "update", uri, oref(res, name, ns), code=code, ip=ip, ua=ua, level=level, req=obj, resp=stored)


def cred_read(s, node, pod_ns, pod_name, path, claims, comm="python3", exe="/usr/local/bin/python3.12", pid=4242):
    """An agent's credential_read of a service-account token (docs/OBSERVATIONS.md)."""
    uid = s.uid()
    cid = hashlib.sha256((pod_name + path).encode()).hexdigest()
    digest = hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).hexdigest()
    s.obs.append({"id": f"{node}/a1/{len(s.obs) + 100}", "time": s.step().strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "node": node,
                  "type": "credential_read", "source": "lsm",
                  "process": {"pid": pid, "tgid": pid, "ppid": pid - 3, "uid": 1000, "comm": comm, "exe": exe, "cmdline": [exe],
                              "parent_comm": "containerd-shim", "mnt_ns": 4026532071},
                  "workload": {"cgroup_id": int(cid[:8], 16),
                               "cgroup_path": f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}.slice/cri-containerd-{cid}.scope",
                               "container_id": cid, "container_runtime": "containerd", "pod_uid": uid, "pod_namespace": pod_ns,
                               "pod_name": pod_name, "qos_class": "burstable"},
                  "path": path, "flags": 0, "inode": 5000 + len(s.obs), "reads": 2,
                  "credential": {"kind": "service_account_token", "sha256": digest,
                                 "token": {"sha256": digest, "claims": claims}, "kubeconfig": None, "certificate": None, "error": None}})


def legacy_claims(ns, name, secret):
    """A Secret-based (legacy) service-account token: no jti, no expiry, no node or pod."""
    return {"iss": "kubernetes/serviceaccount", "sub": f"system:serviceaccount:{ns}:{name}", "aud": None, "jti": None,
            "iat": None, "nbf": None, "exp": None, "namespace": ns, "service_account_name": name,
            "service_account_uid": str(uuid.UUID(int=int(hashlib.sha256(f"{ns}/{name}".encode()).hexdigest()[:32], 16), version=4)),
            "pod_name": None, "pod_uid": None, "node_name": None, "node_uid": None, "secret_name": secret}


def legacy_user(ns, name):
    """How the API server names a legacy-token user: no credential id, no bound claims."""
    return {"username": f"system:serviceaccount:{ns}:{name}",
            "uid": str(uuid.UUID(int=int(hashlib.sha256(f"{ns}/{name}".encode()).hexdigest()[:32], 16), version=4)),
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]}


def scenarios():
    out = []
    agg = sa("kube-system", AGG_SA, random.Random("agg-sa"))

    # ---------------- AN1579: widening a role somebody holds ----------------
    s = Scn("an1579-role-widened-builtin-basic-user",
            "kubectl edit clusterrole system:basic-user (a PUT of the whole role, response logged) adds get/list on secrets; the bootstrap policy binds it to system:authenticated, so every authenticated user can now read every Secret. No binding is written.",
            "red team: escalation by widening a role that is already bound broadly (no binding write)", "attack", [("CT1579-002", 1)])
    r = role("ClusterRole", "system:basic-user", BASIC_USER + [rule([""], ["secrets"], ["get", "list"])])
    r["metadata"].update(json.loads(json.dumps(BOOTSTRAP_META)))
    update(s, MALLORY, r, ip="10.0.1.12")
    s.noise(3)
    out.append(s)

    s = Scn("an1579-role-widened-custom-bound-to-group",
            "CI (approved automation) creates ClusterRole ops-reader and binds it to group ops; later a human JSON-patches the role (Request level) appending pods/exec: every member of ops can now exec into any pod, with no binding write.",
            "red team: escalation by widening a custom role already bound to a group", "attack", [("CT1579-001", 1)])
    ci = sa("ci", "deployer", s.rng, jti=CI_JTI)
    s.create_role(ci, role("ClusterRole", "ops-reader", [rule([""], ["pods", "pods/log", "events"], ["get", "list", "watch"])]), ip="10.30.0.14")
    s.create_binding(ci, binding("ClusterRoleBinding", "ops-reader", "ClusterRole", "ops-reader", [subj("Group", "ops")]),
                     ip="10.30.0.14", ua=CLIENTGO)
    s.noise(3)
    s.patch(BOB, "clusterroles", "ops-reader",
            [{"op": "add", "path": "/rules/-", "value": rule([""], ["pods/exec"], ["create", "get"])}], ip="10.8.2.17")
    s.noise(2)
    out.append(s)

    s = Scn("an1579-role-created-after-its-binding",
            "A ClusterRoleBinding names a ClusterRole that does not exist yet (harmless as far as anyone can tell); minutes later the role is created from an Internet address with nodes/proxy: the binding's subject now holds it.",
            "red team: bind first, create the role after (no binding write at the moment of the grant)", "attack", [("CT1579-001", 1)])
    s.create_binding(BOB, binding("ClusterRoleBinding", "metrics-scraper", "ClusterRole", "metrics-scraper",
                                  [subj("ServiceAccount", "scraper", "monitoring")]), ip="10.8.2.17")
    s.noise(4)
    s.create_role(BOB, role("ClusterRole", "metrics-scraper", [rule([""], ["nodes", "nodes/metrics"], ["get", "list"]),
                                                                rule([""], ["nodes/proxy"], ["get"])]), ip=OUTSIDE)
    out.append(s)

    s = Scn("an1579-aggregation-label-fills-view-with-secrets",
            "A ClusterRole labelled rbac.authorization.k8s.io/aggregate-to-view: \"true\" with get/list/watch on secrets is created (bound to nobody); the clusterrole-aggregation-controller then updates view (and edit, which already reads secrets) with it: everyone granted view in any namespace can read Secrets.",
            "red team: aggregation labels widen the built-in user-facing roles without a binding write", "attack", [("CT1579-001", 1)])
    lab = role("ClusterRole", "secret-peek", [rule([""], ["secrets"], ["get", "list", "watch"])])
    lab["metadata"]["labels"] = {"rbac.authorization.k8s.io/aggregate-to-view": "true"}
    s.create_role(MALLORY, lab, ip="10.0.1.12")
    view = role("ClusterRole", "view", [VIEW_CORE, rule([""], ["secrets"], ["get", "list", "watch"])])
    view["metadata"].update(json.loads(json.dumps(BOOTSTRAP_META)))
    view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] = "true"
    view["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]}
    update(s, agg, view, manager="", ip=CP, ua=AGG_UA)
    edit = role("ClusterRole", "edit", [VIEW_CORE, rule([""], ["secrets"], ["get", "list", "watch"]),
                                        rule([""], ["pods", "pods/exec", "pods/attach", "secrets", "configmaps", "services"],
                                             ["create", "delete", "deletecollection", "patch", "update"]),
                                        rule([""], ["serviceaccounts"], ["impersonate"])])
    edit["metadata"].update(json.loads(json.dumps(BOOTSTRAP_META)))
    edit["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}}]}
    update(s, agg, edit, manager="", ip=CP, ua=AGG_UA)
    s.noise(2)
    out.append(s)

    s = Scn("benign-an1579-aggregation-of-crd-viewer",
            "An operator install (Helm, from the CI range as approved automation) adds a ClusterRole labelled aggregate-to-view for its CRDs (get/list/watch on certificates.cert-manager.io); the aggregation controller updates view and edit: nothing high-privilege is added.",
            "red team benign: aggregation of ordinary CRD read rules", "benign", [])
    ci = sa("ci", "deployer", s.rng, jti=CI_JTI)
    crd = role("ClusterRole", "cert-manager-view", [rule(["cert-manager.io"], ["certificates", "certificaterequests", "issuers"], ["get", "list", "watch"])])
    crd["metadata"]["labels"] = {"rbac.authorization.k8s.io/aggregate-to-view": "true", "app.kubernetes.io/managed-by": "Helm"}
    s.create_role(ci, crd, ip="10.30.0.14")
    view = role("ClusterRole", "view", [VIEW_CORE, crd["rules"][0]])
    view["metadata"].update(json.loads(json.dumps(BOOTSTRAP_META)))
    view["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]}
    update(s, agg, view, manager="", ip=CP, ua=AGG_UA)
    s.noise(3)
    out.append(s)

    s = Scn("benign-an1579-role-narrowed-and-relabelled",
            "A platform engineer edits a custom role bound to a group: removes a rule and adds a label; then re-applies it unchanged. Nothing is added.",
            "red team benign: role edits that add no power", "benign", [])
    ci = sa("ci", "deployer", s.rng, jti=CI_JTI)
    s.create_role(ci, role("ClusterRole", "support", [rule([""], ["pods", "pods/log"], ["get", "list"]),
                                                       rule([""], ["pods/exec"], ["create"])]), ip="10.30.0.14")
    s.create_binding(ci, binding("ClusterRoleBinding", "support", "ClusterRole", "support", [subj("Group", "support")]),
                     ip="10.30.0.14", ua=CLIENTGO)
    s.noise(2)
    r = role("ClusterRole", "support", [rule([""], ["pods", "pods/log"], ["get", "list"])])
    r["metadata"]["labels"] = {"team": "support"}
    update(s, ALICE, r)
    update(s, ALICE, r, manager="kubectl-client-side-apply")
    out.append(s)

    s = Scn("an1579-impersonated-widening-of-system-discovery",
            "A user with impersonate rights (kubectl --as=alice@example.com --as-group=platform-admins) JSON-patches the built-in system:discovery role, bound to system:authenticated, adding create on pods/exec; the alert names the effective user and the impersonator.",
            "red team: impersonation combined with role widening", "attack", [("CT1579-002", 1)])
    s.patch(MALLORY, "clusterroles", "system:discovery",
            [{"op": "add", "path": "/rules/-", "value": rule([""], ["pods/exec"], ["create"])}], ip="10.0.1.12")
    s.events[-1]["impersonatedUser"] = {"username": "alice@example.com", "groups": ["platform-admins", "system:authenticated"]}
    s.noise(2)
    out.append(s)

    s = Scn("an1579-server-side-apply-force-widens-role",
            "Server-side apply with force=true (a client-go tool taking ownership of the rules) rewrites ClusterRole ci-status, bound to the ci-bots group, to add get/list on secrets; Request level, so only the applied configuration is logged.",
            "red team: server-side apply force=true on a role held by a group", "attack", [("CT1579-001", 1)])
    ci = sa("ci", "deployer", s.rng, jti=CI_JTI)
    s.create_role(ci, role("ClusterRole", "ci-status", [rule(["batch"], ["jobs", "jobs/status"], ["get", "list", "watch"])]), ip="10.30.0.14")
    s.create_binding(ci, binding("ClusterRoleBinding", "ci-status", "ClusterRole", "ci-status", [subj("Group", "ci-bots")]),
                     ip="10.30.0.14", ua=CLIENTGO)
    s.noise(2)
    s.patch(ADMIN, "clusterroles", "ci-status",
            role("ClusterRole", "ci-status", [rule(["batch"], ["jobs", "jobs/status"], ["get", "list", "watch"]),
                                              rule([""], ["secrets"], ["get", "list"])]),
            ua="ci-tool/v0.3.0 (linux/amd64) kubernetes/$Format", manager="ci-tool", extra_q="&force=true", ip="10.8.3.4")
    out.append(s)

    # ---------------- AN1579: server-side dry runs ----------------
    s = Scn("benign-an1579-kubectl-diff-dry-run",
            "kubectl diff (server-side dry run, dryRun=All) of a manifest that would bind cluster-admin, run by a human and by Argo CD's diffing; nothing is persisted, nothing is granted.",
            "red team benign: dryRun=All requests persist nothing", "benign", [])
    b = binding("ClusterRoleBinding", "break-glass", "ClusterRole", "cluster-admin", [subj("User", "carol@example.com")])
    s.patch(ALICE, "clusterrolebindings", "break-glass", b, level="RequestResponse", resp=s.stored(b), manager="kubectl",
            extra_q="&dryRun=All&fieldValidation=Strict&force=true", code=201)
    s.create_binding(BOB, b, ip="10.8.2.17")
    s.events[-1]["requestURI"] = f"/apis/{RBAC}/v1/clusterrolebindings?dryRun=All&fieldManager=kubectl-create&fieldValidation=Strict"
    s.noise(3)
    out.append(s)

    s = Scn("an1579-dry-run-role-downgrade-then-bind",
            "An attacker with write access to roles sends a server-side dry-run update that would strip ClusterRole deployer down to configmap reads (nothing is persisted), then binds deployer (still able to create pods and read secrets) to herself.",
            "red team: a dry-run write must not change the known state", "attack", [("CT1579-001", 1)])
    s.create_role(ALICE, role("ClusterRole", "deployer", [rule([""], ["pods"], ["create", "get", "list"]),
                                                           rule([""], ["secrets"], ["get"])]))
    s.noise(2)
    update(s, MALLORY, role("ClusterRole", "deployer", [rule([""], ["configmaps"], ["get"])]), manager="kubectl-replace",
           ip="10.0.1.12", q_extra="&dryRun=All")
    s.create_binding(MALLORY, binding("ClusterRoleBinding", "deployer-mallory", "ClusterRole", "deployer", [subj("User", "mallory")]),
                     ip="10.0.1.12")
    out.append(s)

    # ---------------- AN1579: patch operations that rewrite a subject in place ----------------
    s = Scn("an1579-json-patch-replaces-subject-name",
            "A JSON patch on the built-in cluster-admin binding replaces the name of its existing subject (/subjects/0/name: system:masters -> mallory) and copies it; no subject is 'added' by the operation list, but the binding now grants mallory.",
            "red team: JSON patch replace/copy of a subject field", "attack", [("CT1579-001", 1)])
    s.patch(MALLORY, "clusterrolebindings", "cluster-admin",
            [{"op": "test", "path": "/subjects/0/name", "value": "system:masters"},
             {"op": "copy", "from": "/subjects/0", "path": "/subjects/-"},
             {"op": "replace", "path": "/subjects/0/name", "value": "mallory"},
             {"op": "replace", "path": "/subjects/0/kind", "value": "User"}], ip="10.0.1.12")
    s.noise(2)
    out.append(s)

    s = Scn("an1579-merge-patch-null-then-readd",
            "A merge patch clears the subjects of an admin RoleBinding (subjects: null), a second one sets them to the old group plus a contractor's ServiceAccount (Request level).",
            "red team: merge patch null then re-add", "attack", [("CT1579-001", 1)])
    b = binding("RoleBinding", "billing-admins", "ClusterRole", "admin", [subj("Group", "billing")], ns="billing")
    s.create_binding(sa("ci", "deployer", s.rng, jti=CI_JTI), b, ip="10.30.0.14", ua=CLIENTGO)
    s.noise(2)
    s.patch(BOB, "rolebindings", "billing-admins", {"subjects": None}, ns="billing", ip="10.8.2.17")
    s.patch(BOB, "rolebindings", "billing-admins", {"subjects": [subj("Group", "billing"), subj("ServiceAccount", "ext-sync", "contractors")]},
            ns="billing", ip="10.8.2.17")
    out.append(s)

    s = Scn("benign-an1579-update-conflict-retried",
            "kubectl apply (client-side) of an admin RoleBinding by a human loses a resourceVersion race (409 Conflict) and is retried: the failed try granted nothing and is not a refused attempt; the retry re-applies the same subjects.",
            "red team benign: authorized writes that fail (409/422) are not refused attempts", "benign", [])
    b = binding("RoleBinding", "shop-admins", "ClusterRole", "admin", [subj("Group", "shop-leads")], ns="shop")
    s.create_binding(sa("ci", "deployer", s.rng, jti=CI_JTI), b, ip="10.30.0.14", ua=CLIENTGO)
    s.noise(2)
    b2 = json.loads(json.dumps(b))
    b2["metadata"]["labels"] = {"team": "shop"}
    update(s, ALICE, b2, manager="kubectl-client-side-apply", code=409)
    update(s, ALICE, b2, manager="kubectl-client-side-apply", code=422)
    update(s, ALICE, b2, manager="kubectl-client-side-apply")
    out.append(s)

    # ---------------- AN1579: namespaced grants that reach the cluster; subjects ----------------
    s = Scn("an1579-rolebinding-reads-kube-system-secrets",
            "A Role in kube-system allowing get/list/watch on secrets is created and bound (RoleBinding, namespaced) to a workload ServiceAccount of another namespace: kube-system's Secrets hold bootstrap tokens and control-plane service-account tokens.",
            "red team: namespaced RoleBinding in kube-system reaching the cluster's credentials", "attack", [("CT1579-001", 1)])
    s.create_role(BOB, role("Role", "cfg-sync", [rule([""], ["configmaps", "secrets"], ["get", "list", "watch"])], ns="kube-system"), ip="10.8.2.17")
    s.noise(2)
    s.create_binding(BOB, binding("RoleBinding", "cfg-sync", "Role", "cfg-sync", [subj("ServiceAccount", "web", "shop")], ns="kube-system"),
                     ip="10.8.2.17")
    out.append(s)

    s = Scn("an1579-grant-edit-to-namespace-serviceaccounts-group",
            "A ClusterRoleBinding gives edit to the group system:serviceaccounts:dev: every pod of namespace dev can now create pods, exec and read secrets in every namespace.",
            "red team: group subjects of service accounts", "attack", [("CT1579-001", 1)])
    s.create_binding(MALLORY, binding("ClusterRoleBinding", "dev-sa-edit", "ClusterRole", "edit", [subj("Group", "system:serviceaccounts:dev")]),
                     ip="10.244.1.40", ua=KUBECTL)
    s.noise(2)
    out.append(s)

    s = Scn("an1579-grant-secrets-reader-to-system-nodes",
            "A ClusterRoleBinding gives a custom secrets-reading ClusterRole to the group system:nodes: any kubelet credential (one stolen node) reads every Secret, past the Node authorizer's limits.",
            "red team: system:nodes group subject", "attack", [("CT1579-001", 1)])
    s.create_role(BOB, role("ClusterRole", "node-secrets", [rule([""], ["secrets"], ["get", "list"])]), ip="10.8.2.17")
    s.create_binding(BOB, binding("ClusterRoleBinding", "node-secrets", "ClusterRole", "node-secrets", [subj("Group", "system:nodes")]),
                     ip="10.8.2.17")
    out.append(s)

    s = Scn("benign-an1579-kube-system-configmap-reader",
            "metrics-server's install binds the built-in Role extension-apiserver-authentication-reader in kube-system (reads one ConfigMap) and view to its ServiceAccount: nothing reaches kube-system's Secrets.",
            "red team benign: ordinary RoleBindings in kube-system", "benign", [])
    s.create_binding(ALICE, binding("RoleBinding", "metrics-server-auth-reader", "Role", "extension-apiserver-authentication-reader",
                                    [subj("ServiceAccount", "metrics-server", "kube-system")], ns="kube-system"))
    s.create_role(ALICE, role("Role", "extension-apiserver-authentication-reader",
                              [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["extension-apiserver-authentication"],
                                "verbs": ["get", "list", "watch"]}], ns="kube-system"))
    s.create_binding(ALICE, binding("RoleBinding", "sre-view", "ClusterRole", "view", [subj("Group", "sre")], ns="kube-system"))
    s.noise(3)
    out.append(s)

    # ---------------- AN1547: IPv4-mapped IPv6 source addresses ----------------
    s = Scn("an1547-ipv4-mapped-pod-token-used-on-other-node",
            "A dual-stack API server logs IPv4 peers as IPv4-mapped IPv6 (::ffff:a.b.c.d). A pod token bound to node-a is used in its pod on node-a, then from a pod address in node-b's range, both logged IPv4-mapped (::ffff:10.244.1.23): off its node, and one JTI in two places.",
            "red team: address forms (IPv4-mapped IPv6) for an address agents report in IPv4", "attack", [("CT1547-001", 1), ("CT1547-003", 1)])
    tok = sa("shop", "web", s.rng, node="node-a", pod="web-6c9d8b7f5d-q8x2z")
    s.ev(tok, "list", "/api/v1/namespaces/shop/configmaps?limit=500", {"resource": "configmaps", "namespace": "shop", "apiVersion": "v1"},
         ip="::ffff:10.244.0.17", ua="web/v0.0.0 (linux/amd64) kubernetes/$Format", level="Metadata")
    s.noise(2)
    s.ev(tok, "list", "/api/v1/namespaces/shop/secrets?limit=500", {"resource": "secrets", "namespace": "shop", "apiVersion": "v1"},
         ip="::ffff:10.244.1.23", ua=KUBECTL, level="Metadata")
    out.append(s)

    s = Scn("benign-ipv4-mapped-cluster-background",
            "A dual-stack API server logs every IPv4 peer as ::ffff:a.b.c.d: kubelets from their node addresses, a pod token from its own node's pod range, the controller manager from the control plane.",
            "red team benign: IPv4-mapped IPv6 forms of known addresses", "benign", [])
    for n, (ip, _) in NODES.items():
        s.ev(human(f"system:node:{n}", ("system:nodes", "system:authenticated"), cred="X509SHA256=" + hashlib.sha256(n.encode()).hexdigest()),
             "get", f"/api/v1/nodes/{n}?resourceVersion=0&timeout=10s", {"resource": "nodes", "name": n, "apiVersion": "v1"},
             ip=f"::ffff:{ip}", ua=KUBELET, level="Metadata")
    tok = sa("shop", "web", s.rng, node="node-b", pod="web-6c9d8b7f5d-m4k7p")
    for _ in range(3):
        s.ev(tok, "get", "/api/v1/namespaces/shop/configmaps/web-config", {"resource": "configmaps", "namespace": "shop", "name": "web-config", "apiVersion": "v1"},
             ip="::ffff:10.244.1.9", ua="web/v0.0.0 (linux/amd64) kubernetes/$Format", level="Metadata")
    s.ev(human("system:kube-controller-manager", ("system:authenticated",), cred="X509SHA256=" + hashlib.sha256(b"kcm").hexdigest()),
         "update", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager?timeout=5s",
         {"resource": "leases", "namespace": "kube-system", "name": "kube-controller-manager", "apiGroup": "coordination.k8s.io", "apiVersion": "v1"},
         ip=f"::ffff:{CP}", ua=KCM, level="Metadata")
    out.append(s)

    # ---------------- AN1547: legacy tokens, refused uses, hostNetwork ----------------
    s = Scn("an1547-legacy-token-read-on-one-node-used-from-another",
            "A Secret-based (legacy) token of ci/builder, mounted in a pod on node-a (read there, as the agent saw), is used from node-b's address (a hostNetwork pod there): no jti, no node claim, only the agents' sighting places it.",
            "red team: legacy Secret-based service-account tokens", "attack", [("CT1547-001", 1)])
    cred_read(s, "node-a", "ci", "builder-7f8d9c6b5-k2p4q", "/var/run/secrets/kubernetes.io/serviceaccount/..2026_11_20_08_00_00.000000001/token",
              legacy_claims("ci", "builder", "builder-token-x7k2p"))
    lu = legacy_user("ci", "builder")
    s.ev(lu, "list", "/api/v1/namespaces/ci/pods?limit=500", {"resource": "pods", "namespace": "ci", "apiVersion": "v1"},
         ip="10.244.0.31", ua="builder/v0.0.0 (linux/amd64) kubernetes/$Format", level="Metadata")
    s.events[-1]["annotations"]["authentication.k8s.io/legacy-token"] = "system:serviceaccount:ci:builder"
    s.noise(3)
    s.ev(lu, "get", "/api/v1/namespaces/kube-system/secrets?limit=500", {"resource": "secrets", "namespace": "kube-system", "apiVersion": "v1"},
         ip="10.0.1.12", ua=KUBECTL, level="Metadata")
    s.events[-1]["annotations"]["authentication.k8s.io/legacy-token"] = "system:serviceaccount:ci:builder"
    out.append(s)

    s = Scn("an1547-stolen-token-refused-from-outside",
            "A pod token bound to node-a is replayed from an Internet address; RBAC refuses the request (403: the service account cannot list secrets cluster-wide). The refusal is still evidence of theft: the credential left its pod (outside, denied; and one JTI in two places).",
            "red team: a stolen token used but refused", "attack", [("CT1547-002", 1), ("CT1547-003", 1)])
    tok = sa("shop", "web", s.rng, node="node-a", pod="web-6c9d8b7f5d-q8x2z")
    s.ev(tok, "get", "/api/v1/namespaces/shop/configmaps/web-config", {"resource": "configmaps", "namespace": "shop", "name": "web-config", "apiVersion": "v1"},
         ip="10.244.0.17", ua="web/v0.0.0 (linux/amd64) kubernetes/$Format", level="Metadata")
    s.noise(2)
    s.ev(tok, "list", "/api/v1/secrets?limit=500", {"resource": "secrets", "apiVersion": "v1"}, code=403,
         ip="198.51.100.23", ua=KUBECTL, level="Metadata",
         reason="")
    out.append(s)

    s = Scn("an1547-admin-kubeconfig-certificate-used-from-outside",
            "kubeadm's /etc/kubernetes/admin.conf (client certificate CN kubernetes-admin, O kubeadm:cluster-admins) is read on control-plane node node-a, as the agent saw; an operator uses it from the VPN (a trusted range), then the same certificate is used from an Internet address.",
            "red team: x509 client-certificate users used from outside the cluster ranges", "attack", [("CT1547-002", 1)])
    sha = ADMIN["extra"]["authentication.kubernetes.io/credential-id"][0].split("=", 1)[1]
    s.obs.append({"id": f"node-a/a1/{len(s.obs) + 100}", "time": s.step().strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "node": "node-a",
                  "type": "credential_read", "source": "lsm",
                  "process": {"pid": 91822, "tgid": 91822, "ppid": 91790, "uid": 0, "comm": "kubectl", "exe": "/usr/bin/kubectl",
                              "cmdline": ["kubectl", "--kubeconfig", "/etc/kubernetes/admin.conf", "get", "nodes"], "parent_comm": "bash",
                              "mnt_ns": 4026531841},
                  "workload": None, "path": "/etc/kubernetes/admin.conf", "flags": 0, "inode": 394221, "reads": 1,
                  "credential": {"kind": "kubeconfig", "sha256": hashlib.sha256(b"admin.conf").hexdigest(), "token": None,
                                 "kubeconfig": {"current_context": "kubernetes-admin@kubernetes", "servers": ["https://10.0.0.10:6443"],
                                                "users": [{"name": "kubernetes-admin",
                                                           "client_certificate": {"sha256": sha, "subject_cn": "kubernetes-admin",
                                                                                  "subject_o": ["kubeadm:cluster-admins"], "issuer_cn": "kubernetes",
                                                                                  "not_before": "2026-06-01T10:00:00Z", "not_after": "2027-06-01T10:00:00Z"},
                                                           "token": None, "exec_command": None, "auth_provider": None, "username": None}]},
                                 "certificate": None, "error": None}})
    s.ev(ADMIN, "list", "/api/v1/nodes?limit=500", {"resource": "nodes", "apiVersion": "v1"}, ip="10.0.1.11", level="Metadata")
    s.noise(2)
    s.ev(ADMIN, "get", "/api/v1/namespaces/kube-system/pods?limit=500", {"resource": "pods", "namespace": "kube-system", "apiVersion": "v1"},
         ip="10.8.3.4", level="Metadata")
    s.noise(3)
    s.ev(ADMIN, "list", "/api/v1/secrets?limit=500", {"resource": "secrets", "apiVersion": "v1"}, ip="198.51.100.77", level="Metadata")
    out.append(s)

    s = Scn("benign-hostnetwork-pod-token-from-node-address",
            "A hostNetwork DaemonSet pod (kube-proxy-like) on node-a uses its bound token; its source address is node-a's own address, as for every hostNetwork pod.",
            "red team benign: hostNetwork pods (pod IP = node IP)", "benign", [])
    tok = sa("kube-system", "kube-proxy", s.rng, node="node-a", pod="kube-proxy-8kq2w")
    for _ in range(4):
        s.ev(tok, "watch", "/apis/discovery.k8s.io/v1/endpointslices?allowWatchBookmarks=true&labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name&resourceVersion=183211&timeout=9m12s&timeoutSeconds=552&watch=true",
             {"resource": "endpointslices", "apiGroup": "discovery.k8s.io", "apiVersion": "v1"},
             ip="10.0.1.11", ua="kube-proxy/v1.30.2 (linux/amd64) kubernetes/3968350", level="Metadata")
        s.noise(1)
    out.append(s)
    return out


if __name__ == "__main__":
    made = scenarios()
    for s in made:
        s.write()
    print(len(made), "scenarios")
