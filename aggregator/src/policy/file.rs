//! The policy file as written (YAML, `serde_norway`). Validation into
//! [`super::Policy`] lives in `validate.rs`; the format is documented in
//! `docs/POLICY.md`.

use serde::{Deserialize, Serialize};

use crate::audit::PolicyRule;

/// Top level of the policy file. Unknown keys are errors (typos must not
/// silently disable a rule).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub cluster: ClusterSpec,
    #[serde(default)]
    pub trusted_ranges: Vec<TrustedRangeSpec>,
    #[serde(default)]
    pub identities: Vec<IdentitySpec>,
    #[serde(default)]
    pub automation: Vec<AutomationSpec>,
    #[serde(default)]
    pub high_privilege_roles: Vec<String>,
    #[serde(default)]
    pub roles: Vec<RoleSpec>,
    #[serde(default)]
    pub detection: DetectionSpec,
    #[serde(default)]
    pub maintenance_windows: Vec<MaintenanceSpec>,
    #[serde(default)]
    pub suppressions: Vec<SuppressionSpec>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    #[serde(default)]
    pub node_cidrs: Vec<String>,
    #[serde(default)]
    pub pod_cidrs: Vec<String>,
    #[serde(default)]
    pub service_cidrs: Vec<String>,
    /// `host:port` or `ip:port` of the API server endpoints.
    #[serde(default)]
    pub api_servers: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedRangeSpec {
    pub name: String,
    pub cidrs: Vec<String>,
}

/// Where one identity (exact username, or a prefix ending in `*`) may come from.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    pub username: String,
    #[serde(default)]
    pub cidrs: Vec<String>,
    #[serde(default)]
    pub nodes: Vec<String>,
}

/// Approved automation: identity, credential and source range must all match.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AutomationSpec {
    pub name: String,
    pub username: String,
    /// `credential-id` values (`JTI=...`, `X509SHA256=...`); `*` accepts any
    /// credential of this identity (then the range carries the weight).
    pub credential_ids: Vec<String>,
    pub cidrs: Vec<String>,
}

/// A role known from configuration (its rules decide its privilege).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// `ClusterRole` or `Role`.
    pub kind: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub name: String,
    pub rules: Vec<PolicyRule>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionSpec {
    /// Per-identity learning window (e.g. `24h`); `0s` or absent disables learning.
    #[serde(default)]
    pub learning_window: Option<String>,
    /// How far before a request an agent's `api_connect` may be to join it (default `30s`).
    #[serde(default)]
    pub join_window: Option<String>,
    /// Two places for one JTI within this window alert (default `10m`).
    #[serde(default)]
    pub jti_reuse_window: Option<String>,
    /// Judge requests by identities with no expectation at all when the source
    /// is outside every cluster and trusted range (default true).
    #[serde(default)]
    pub alert_outside_without_expectation: Option<bool>,
    /// Longest an API-made suppression may last (default `30d`); the API
    /// refuses a later `expires`.
    #[serde(default)]
    pub max_suppression: Option<String>,
    /// Facts learned from the audit stream (node addresses, pod ranges, API
    /// endpoints) not confirmed for this long are forgotten (default `24h`).
    #[serde(default)]
    pub learned_ttl: Option<String>,
    /// A node whose agent has not reported for this long no longer owns its
    /// addresses and pod ranges (default `6h`).
    #[serde(default)]
    pub node_grace: Option<String>,
    /// A token minted through TokenRequest for longer than this, outside
    /// approved automation, alerts (CT1547-005; default `24h`).
    #[serde(default)]
    pub max_token_lifetime: Option<String>,
    /// Bounds on detection state held in memory (docs/POLICY.md, "state").
    #[serde(default)]
    pub state: StateSpec,
}

/// Bounds on detection state; every map forgets its least recently used
/// entries first (counted in `/metrics`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    /// Memory the detection state may take, in MiB (default 448); the caps
    /// below that are not set take their share of it, and the caps together
    /// must fit in it (`policy/budget.rs`).
    #[serde(default)]
    pub memory_budget_mib: Option<usize>,
    /// Identities (first sightings, baselines, reads by identity); default
    /// from the budget (75,497 at 448 MiB).
    #[serde(default)]
    pub max_identities: Option<usize>,
    /// Credentials (tracked JTIs, reads by credential); default from the
    /// budget (104,744 at 448 MiB).
    #[serde(default)]
    pub max_credentials: Option<usize>,
    /// Nodes (networks, recent connections; node addresses ×8); default from
    /// the budget (10,362 at 448 MiB).
    #[serde(default)]
    pub max_nodes: Option<usize>,
    /// Pods (pod addresses, reading processes and containers); default from
    /// the budget (40,652 at 448 MiB).
    #[serde(default)]
    pub max_pods: Option<usize>,
    /// Roles and bindings, each; default from the budget (14,092 at 448 MiB).
    #[serde(default)]
    pub max_rbac_objects: Option<usize>,
    /// State unused for this long is forgotten (identities, baselines, reads,
    /// nodes); default `7d`. Pods' addresses and readers: at most 24h.
    #[serde(default)]
    pub max_age: Option<String>,
}

/// A maintenance window: alerts in `[start, end)` matching the scope are suppressed.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSpec {
    pub name: String,
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub end: String,
    /// Limit to these nodes (source resolved to one of them); empty = any.
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Limit to these identities (exact or prefix `*`); empty = any.
    #[serde(default)]
    pub identities: Vec<String>,
    /// Limit to these rule ids or analytics (`AN1547`); empty = any.
    #[serde(default)]
    pub rules: Vec<String>,
}

/// A suppression: who, why, until when, and what it matches.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionSpec {
    pub id: String,
    pub owner: String,
    pub reason: String,
    /// RFC 3339; defaults to the load time.
    #[serde(default)]
    pub created: Option<String>,
    /// RFC 3339; required: suppressions always expire.
    pub expires: String,
    #[serde(rename = "match")]
    pub matcher: SuppressionMatch,
}

/// What a suppression matches; every given field must match, at least one is required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SuppressionMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analytic: Option<String>,
    /// Exact, or a prefix ending in `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}
