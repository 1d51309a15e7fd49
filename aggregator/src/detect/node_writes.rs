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

use serde_json::json;

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

/// The node a write of Node status targets, when it carries addresses:
/// `update`/`patch` of `nodes/status`, or a Node `create`/`update`/`patch`
/// whose object has `status.addresses`.
pub fn addressed_node(ev: &AuditEvent) -> Option<String> {
    if ev.resource() != Some("nodes") || !matches!(ev.verb.as_str(), "create" | "update" | "patch")
    {
        return None;
    }
    let obj = ev.object();
    let has_addrs = obj
        .as_ref()
        .and_then(|o| o.status.as_ref())
        .and_then(|s| s.get("addresses"))
        .is_some();
    let status = ev.subresource() == Some("status");
    if !status && !has_addrs {
        return None;
    }
    if ev.subresource().is_some() && !status {
        return None;
    }
    ev.name()
        .map(str::to_owned)
        .or_else(|| obj.and_then(|o| o.metadata.name))
}

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
