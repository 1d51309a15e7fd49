//! Inventory and state changes produced while judging a batch; the pipeline
//! writes them in the batch's transaction.

use crate::alert::SourceClass;
use crate::audit::{PolicyRule, Subject};

/// A credential used from a source IP (credential inventory, "where used").
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialUse {
    pub key: String,
    pub username: String,
    pub source_ip: String,
    pub class: SourceClass,
    pub node: Option<String>,
    pub time_ms: i64,
    pub audit_id: String,
}

/// The context of a credential use (inventory: pod and user agent per source).
#[derive(Debug, Clone, PartialEq)]
pub struct UseContext {
    pub key: String,
    pub source_ip: String,
    pub user_agent: Option<String>,
    /// Pod `ns/name` the source resolved to.
    pub pod: Option<String>,
    pub time_ms: i64,
}

/// A credential read on a node (credential inventory, "where read").
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CredentialReadRow {
    pub key: String,
    pub kind: String,
    pub username: Option<String>,
    pub fingerprint: Option<String>,
    pub node: String,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    pub container_id: Option<String>,
    pub tgid: u32,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub path: String,
    pub time_ms: i64,
    pub reads: u32,
    pub observation_id: String,
    /// The token's `exp` (ms), when the read expires with it.
    pub expires_ms: Option<i64>,
}

/// The latest state of a binding.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingRow {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub role_kind: Option<String>,
    pub role_name: Option<String>,
    pub subjects: Vec<Subject>,
    pub high_privilege: bool,
    pub verb: String,
    pub actor: String,
    pub source_ip: Option<String>,
    pub audit_id: String,
    pub time_ms: i64,
    pub deleted: bool,
}

/// A role learned from an audit event (or configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct RoleRow {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub rules: Vec<PolicyRule>,
    pub reasons: Vec<String>,
    pub origin: String,
    pub audit_id: Option<String>,
    pub time_ms: i64,
    pub deleted: bool,
}

/// A source IP seen for an identity.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineRow {
    pub username: String,
    pub source_ip: String,
    pub time_ms: i64,
    pub learned: bool,
    /// The event that taught it.
    pub audit_id: String,
}

/// An audit level seen for an RBAC resource.
#[derive(Debug, Clone, PartialEq)]
pub struct RbacLevelRow {
    pub resource: String,
    pub level: String,
    pub time_ms: i64,
    pub audit_id: String,
}

/// A binding write by approved automation logged at Metadata level: counted
/// in coverage (with an example event), not alerted.
#[derive(Debug, Clone, PartialEq)]
pub struct AutomationBlindRow {
    /// The `automation[].name` that approved it.
    pub automation: String,
    pub resource: String,
    pub level: String,
    pub time_ms: i64,
    /// A summary of the event (audit ID, time, verb, URI, user, credential, source, user agent).
    pub example: serde_json::Value,
}

/// A node's network identity from its agent.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeNetRow {
    pub node: String,
    pub addresses: Vec<String>,
    pub pod_cidrs: Vec<String>,
    pub time_ms: i64,
}

/// Everything a batch changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub credential_uses: Vec<CredentialUse>,
    pub credential_reads: Vec<CredentialReadRow>,
    pub bindings: Vec<BindingRow>,
    pub roles: Vec<RoleRow>,
    pub baselines: Vec<BaselineRow>,
    /// `(username, time_ms)`: first or latest sighting of an identity.
    pub identities: Vec<(String, i64)>,
    pub rbac_levels: Vec<RbacLevelRow>,
    pub node_network: Vec<NodeNetRow>,
    /// `(suppression id, time_ms)`.
    pub suppression_hits: Vec<(String, i64)>,
    /// Approved automation's Metadata-level binding writes.
    pub automation_blind: Vec<AutomationBlindRow>,
    /// RBAC object fields that could not be read (each is also named in its alert).
    pub unreadable_fields: u64,
    /// Facts learned from the audit stream; nodes released.
    pub cluster: Vec<super::cluster::ClusterChange>,
    /// TokenRequests that named their token (lineage).
    pub minted: Vec<super::lineage::Minted>,
    /// AN1547 alerts' activity (state and newly listed requests).
    pub activity: Vec<super::activity::ActivityChange>,
    /// Pod and user agent of each credential use.
    pub use_context: Vec<UseContext>,
    /// Node writes whose addresses/pod ranges were ignored (writer may not set them).
    pub node_writes_refused: u64,
}
