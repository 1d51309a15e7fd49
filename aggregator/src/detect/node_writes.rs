//! Who may teach a node's addresses. Learning node addresses from Node
//! objects (`detect/cluster.rs`) makes uses from those addresses "in the
//! cluster"; a writer that is not that node could register an outside
//! address as a node's and launder every later use from there. Only the node
//! itself (`system:node:<name>` in `system:nodes`, writing its own Node) and
//! the cloud node controller (which sets `status.addresses` from the cloud
//! provider when the cluster runs an external cloud provider; its identity is
//! one of [`CLOUD_NODE_CONTROLLERS`]) may; anything else is ignored and
//! counted, and a write of another node's addresses by an identity that is
//! not a Kubernetes component raises `CT1547-006`.

use std::net::IpAddr;

use serde_json::{Value, json};

use crate::alert::{Alert, Severity, SourceClass};
use crate::audit::AuditEvent;

use super::alerts::{self, AlertParts};
use super::rules;

/// Identities of the cloud node controller (cloud-controller-manager, as a
/// user or with service-account credentials).
pub const CLOUD_NODE_CONTROLLERS: &[&str] = &[
    "system:cloud-controller-manager",
    "system:serviceaccount:kube-system:cloud-controller-manager",
    "system:serviceaccount:kube-system:cloud-node-controller",
    "system:serviceaccount:kube-system:cloud-node-manager",
];

/// Who wrote a Node object, relative to the node written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// The node's own kubelet credential.
    SelfNode,
    /// The cloud node controller.
    CloudController,
    /// Another node's credential (NodeRestriction should refuse it).
    OtherNode,
    /// A control-plane component (kube-controller-manager and its
    /// controllers' service accounts, the API server, the scheduler).
    Component,
    /// Anyone else: people, workloads' service accounts, automation.
    Other,
}

impl Writer {
    /// Whether this writer may teach the node's addresses.
    pub fn may_set_addresses(self) -> bool {
        matches!(self, Writer::SelfNode | Writer::CloudController)
    }

    /// Whether this writer may teach the node's pod ranges (the node IPAM
    /// controller runs in kube-controller-manager).
    pub fn may_set_pod_cidrs(self) -> bool {
        matches!(
            self,
            Writer::SelfNode | Writer::CloudController | Writer::Component
        )
    }
}

/// Classifies the (authenticated) writer of Node `node`.
pub fn writer(ev: &AuditEvent, node: &str) -> Writer {
    // Impersonating a node or a controller to write its status is not being it.
    if ev.impersonated_user.is_some() {
        return Writer::Other;
    }
    let u = ev.user.username.as_str();
    if let Some(n) = u.strip_prefix("system:node:") {
        let in_nodes = ev.user.groups.iter().any(|g| g == "system:nodes");
        return if n == node && in_nodes {
            Writer::SelfNode
        } else {
            Writer::OtherNode
        };
    }
    if CLOUD_NODE_CONTROLLERS.contains(&u) {
        return Writer::CloudController;
    }
    if matches!(
        u,
        "system:kube-controller-manager" | "system:apiserver" | "system:kube-scheduler"
    ) {
        return Writer::Component;
    }
    // kube-controller-manager's controllers with their own service accounts
    // (`--use-service-account-credentials`): those the bootstrap policy binds.
    if let Some(sa) = u.strip_prefix("system:serviceaccount:kube-system:")
        && super::builtin::builtin_binding("ClusterRoleBinding", &format!("system:controller:{sa}"))
            .is_some()
    {
        return Writer::Component;
    }
    Writer::Other
}

/// The node a write that can set its addresses targets: a Node `create`, or
/// `update`/`patch` of `nodes/<name>/status` (the API server keeps the old
/// status on writes to the Node itself).
pub fn addressed_node(ev: &AuditEvent) -> Option<String> {
    if ev.resource() != Some("nodes") {
        return None;
    }
    let status =
        ev.subresource() == Some("status") && matches!(ev.verb.as_str(), "update" | "patch");
    let create = ev.subresource().is_none() && ev.verb == "create";
    if !(status || create) {
        return None;
    }
    ev.name()
        .map(str::to_owned)
        .or_else(|| ev.object().and_then(|o| o.metadata.name))
}

/// Addresses a node-status entry names (`InternalIP`/`ExternalIP` only).
fn entry_address(v: &Value) -> Option<IpAddr> {
    let ty = v.get("type")?.as_str()?;
    matches!(ty, "InternalIP" | "ExternalIP")
        .then(|| v.get("address")?.as_str()?.parse().ok())
        .flatten()
}

/// The addresses the writer sent (its request body, not the response, which
/// echoes what the node already had): an object's (or a merge/strategic
/// patch's) `status.addresses`, or a JSON patch's operations on
/// `/status/addresses`. At most [`MAX_ADDRS`].
pub fn requested_addresses(ev: &AuditEvent) -> Vec<IpAddr> {
    let Some(v) = ev
        .request_object
        .as_ref()
        .filter(|r| r.json().len() <= crate::audit::MAX_OBJECT_BYTES)
        .and_then(|r| r.value())
    else {
        return Vec::new();
    };
    let mut out: Vec<IpAddr> = Vec::new();
    let mut take = |x: &Value| {
        let items: Vec<&Value> = match x {
            Value::Array(a) => a.iter().collect(),
            o => vec![o],
        };
        out.extend(items.into_iter().filter_map(entry_address));
    };
    match &v {
        Value::Array(ops) => {
            for op in ops {
                let path = op.get("path").and_then(Value::as_str).unwrap_or("");
                if (path == "/status" || path.starts_with("/status/addresses"))
                    && let Some(val) = op.get("value")
                {
                    match val.get("addresses") {
                        Some(a) => take(a),
                        None => take(val),
                    }
                }
            }
        }
        o => {
            if let Some(a) = o.get("status").and_then(|s| s.get("addresses")) {
                take(a);
            }
        }
    }
    out.sort();
    out.dedup();
    out.truncate(MAX_ADDRS);
    out
}

/// Addresses kept per write.
const MAX_ADDRS: usize = 8;

/// `CT1547-006` for a status write of `node` by `w`, if it deserves one.
pub fn judge(ev: &AuditEvent, node: &str, w: Writer) -> Option<Alert> {
    if w != Writer::Other {
        return None;
    }
    let allowed = ev.allowed();
    let reason = format!(
        "{} {} the status of node {node} from {}: only the node itself (or the cloud node \
         controller) sets a node's addresses, and addresses taught this way would make uses \
         from them look like that node's.",
        ev.user.username,
        if allowed {
            "wrote"
        } else {
            "tried (denied) to write"
        },
        ev.source_ip()
            .map_or_else(|| "an unknown address".to_owned(), |ip| ip.to_string()),
    );
    Some(alerts::build(
        &rules::NODE_ADDRESS_WRITE,
        ev,
        AlertParts {
            severity: if allowed {
                Severity::High
            } else {
                Severity::Medium
            },
            class: SourceClass::Unknown,
            expected: Vec::new(),
            evidence: Vec::new(),
            reason,
            details: json!({
                "node": node,
                "writer": ev.user.username,
                "subresource": ev.subresource(),
                "addresses_ignored": true,
            }),
            more_audit_ids: Vec::new(),
            effective_identity: false,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(user: &str, groups: &[&str], verb: &str, sub: Option<&str>, req: Value) -> AuditEvent {
        serde_json::from_value(json!({
            "level": "Request", "auditID": "a", "stage": "ResponseComplete", "verb": verb,
            "user": {"username": user, "groups": groups}, "sourceIPs": ["10.0.0.9"],
            "objectRef": {"resource": "nodes", "name": "node-a", "subresource": sub},
            "responseStatus": {"code": 200}, "requestObject": req,
            "requestReceivedTimestamp": "2026-11-24T14:00:00Z",
        }))
        .unwrap()
    }

    #[test]
    fn writers_are_classified_by_credential_not_by_name() {
        let st = Some("status");
        let node = ev(
            "system:node:node-a",
            &["system:nodes"],
            "patch",
            st,
            json!({}),
        );
        assert_eq!(writer(&node, "node-a"), Writer::SelfNode);
        assert_eq!(writer(&node, "node-b"), Writer::OtherNode);
        let no_group = ev(
            "system:node:node-a",
            &["system:authenticated"],
            "patch",
            st,
            json!({}),
        );
        assert_eq!(writer(&no_group, "node-a"), Writer::OtherNode);
        let mut imp = node.clone();
        imp.impersonated_user = Some(imp.user.clone());
        assert_eq!(writer(&imp, "node-a"), Writer::Other);
        let ccm = ev(
            "system:cloud-controller-manager",
            &[],
            "patch",
            st,
            json!({}),
        );
        assert_eq!(writer(&ccm, "node-a"), Writer::CloudController);
        let nc = ev(
            "system:serviceaccount:kube-system:node-controller",
            &[],
            "patch",
            st,
            json!({}),
        );
        assert_eq!(writer(&nc, "node-a"), Writer::Component);
        let npd = ev(
            "system:serviceaccount:kube-system:node-problem-detector",
            &[],
            "patch",
            st,
            json!({}),
        );
        assert_eq!(writer(&npd, "node-a"), Writer::Other);
    }

    #[test]
    fn only_status_writes_and_creates_address_a_node() {
        let st = Some("status");
        let e = |verb, sub| ev("u", &[], verb, sub, json!({}));
        assert_eq!(addressed_node(&e("patch", st)).as_deref(), Some("node-a"));
        assert_eq!(addressed_node(&e("update", st)).as_deref(), Some("node-a"));
        assert_eq!(
            addressed_node(&e("create", None)).as_deref(),
            Some("node-a")
        );
        // The API server keeps the old status on writes to the Node itself.
        assert_eq!(addressed_node(&e("patch", None)), None);
        assert_eq!(addressed_node(&e("get", st)), None);
        assert_eq!(addressed_node(&e("patch", Some("proxy"))), None);
    }

    #[test]
    fn requested_addresses_from_objects_merge_and_json_patches() {
        let st = Some("status");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let merge = ev(
            "u",
            &[],
            "patch",
            st,
            json!({"status": {"addresses": [
            {"type": "ExternalIP", "address": "198.51.100.23"},
            {"type": "Hostname", "address": "node-a"},
            {"type": "InternalIP", "address": "not-an-ip"}]}}),
        );
        assert_eq!(requested_addresses(&merge), [ip("198.51.100.23")]);
        let jp = ev(
            "u",
            &[],
            "patch",
            st,
            json!([
            {"op": "add", "path": "/status/addresses/-", "value": {"type": "ExternalIP", "address": "198.51.100.24"}},
            {"op": "replace", "path": "/status/addresses", "value": [{"type": "InternalIP", "address": "10.0.9.9"}]},
            {"op": "replace", "path": "/status", "value": {"addresses": [{"type": "ExternalIP", "address": "198.51.100.25"}]}},
            {"op": "add", "path": "/metadata/labels/x", "value": {"type": "ExternalIP", "address": "198.51.100.26"}}]),
        );
        assert_eq!(
            requested_addresses(&jp),
            [ip("10.0.9.9"), ip("198.51.100.24"), ip("198.51.100.25")]
        );
        // node-problem-detector's condition patch names no address.
        let npd = ev(
            "u",
            &[],
            "patch",
            st,
            json!({"status": {"conditions": [{"type": "KernelDeadlock"}]}}),
        );
        assert!(requested_addresses(&npd).is_empty());
        // Bounded.
        let many: Vec<Value> = (0..50)
            .map(|i| json!({"type": "ExternalIP", "address": format!("198.51.100.{i}")}))
            .collect();
        let big = ev(
            "u",
            &[],
            "patch",
            st,
            json!({"status": {"addresses": many}}),
        );
        assert_eq!(requested_addresses(&big).len(), 8);
    }
}

#[cfg(test)]
#[path = "node_writes_tests.rs"]
mod detector_tests;
