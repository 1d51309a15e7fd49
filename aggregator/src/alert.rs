//! The alert: what the aggregator tells a SOC, with the evidence behind it.
//!
//! The same fields appear in the store, the HTTP/JSON API, the gRPC
//! `QueryService` and `replay`'s JSON lines.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Severity, ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Where a request came from, relative to where its credential is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceClass {
    /// The pod the credential belongs to.
    ExpectedPod,
    /// A node where the credential is expected (its pod's node, or where agents saw it read).
    ExpectedNode,
    /// Another node of the cluster.
    OtherNode,
    /// Another pod of the cluster.
    OtherPod,
    /// A range the policy trusts (CI/CD runners, jump hosts, control plane).
    TrustedRange,
    /// Outside every known range.
    Outside,
    /// No usable source IP.
    Unknown,
}

/// The identity that made the request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Identity {
    pub username: String,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// `(namespace, name)` when the user is a service account.
    #[serde(default)]
    pub service_account: Option<(String, String)>,
    /// Set when the request was impersonated: the impersonator.
    #[serde(default)]
    pub impersonated_by: Option<String>,
}

/// A place the credential was expected to be used from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedLocation {
    /// `pod`, `node`, `cidr`, `baseline`, `trusted_range`.
    pub kind: String,
    /// Pod `ns/name`, node name, CIDR, or IP.
    pub value: String,
    /// Where this expectation comes from (`token claims`, `agent saw read`, `policy`, ...).
    pub basis: String,
}

/// The request the alert is about.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RequestInfo {
    pub verb: String,
    #[serde(default)]
    pub api_group: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub subresource: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub request_uri: String,
    #[serde(default)]
    pub user_agent: Option<String>,
    /// `allow` or `deny` (from the audit annotations or the response code).
    pub decision: String,
    #[serde(default)]
    pub response_code: Option<i32>,
}

/// Node-side evidence from agents' observations.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// `credential_read` or `api_connect`.
    pub kind: String,
    pub observation_id: String,
    pub node: String,
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub container_id: Option<String>,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub comm: Option<String>,
    #[serde(default)]
    pub exe: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    pub time: DateTime<Utc>,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Deterministic: derived from the rule and the audit IDs behind it.
    pub id: String,
    /// Stable rule id, e.g. `CT1547-001`.
    pub rule: String,
    /// `AN1547` or `AN1579`.
    pub analytic: String,
    /// ATT&CK technique ids, e.g. `T1528`, `T1550.001`, `T1098.006`.
    pub techniques: Vec<String>,
    pub severity: Severity,
    /// Time of the request (audit `requestReceivedTimestamp`).
    pub time: DateTime<Utc>,
    pub identity: Identity,
    #[serde(default)]
    pub credential_id: Option<String>,
    /// The last `sourceIPs` entry: the one the API server saw.
    #[serde(default)]
    pub source_ip: Option<IpAddr>,
    pub source_class: SourceClass,
    /// Earlier `sourceIPs` entries: client-set (X-Forwarded-For), claims only.
    #[serde(default)]
    pub claimed_source_ips: Vec<String>,
    #[serde(default)]
    pub expected: Vec<ExpectedLocation>,
    pub request: RequestInfo,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    pub audit_ids: Vec<String>,
    #[serde(default)]
    pub observation_ids: Vec<String>,
    /// One plain sentence saying why.
    pub reason: String,
    /// Rule-specific details (binding subjects, role rules matched, ...).
    #[serde(default)]
    pub details: serde_json::Value,
}
