//! Detection policy: cluster ranges, trusted ranges, per-identity allowances,
//! the automation allowlist, extra high-privilege roles, learning and join
//! windows, maintenance windows and suppressions.
//!
//! Loaded from YAML ([`file::PolicyFile`]) and validated into [`Policy`]; every
//! problem is collected and reported together ([`PolicyError::Invalid`]).

pub mod budget;
pub mod file;
pub mod live;
mod validate;
pub mod watch;

use std::net::IpAddr;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use ipnet::IpNet;

use crate::audit::PolicyRule;
pub use file::{PolicyFile, StateSpec, SuppressionMatch};
pub use live::LivePolicy;
pub(crate) use validate::parse_cidr;
pub use validate::{parse_duration, validate};

/// Errors loading a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading policy {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("policy {path} is not valid YAML for a credtrail policy: {source}")]
    Yaml {
        path: String,
        #[source]
        source: serde_norway::Error,
    },
    #[error("policy {path} has {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid { path: String, problems: Vec<String> },
}

/// A named set of CIDRs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRanges {
    pub name: String,
    pub cidrs: Vec<IpNet>,
}

/// Username pattern: exact, or a prefix when written with a trailing `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(pub String);

impl Pattern {
    pub fn matches(&self, s: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => s.starts_with(prefix),
            None => self.0 == s,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityAllowance {
    pub username: Pattern,
    pub cidrs: Vec<IpNet>,
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Automation {
    pub name: String,
    pub username: Pattern,
    pub credential_ids: Vec<String>,
    pub cidrs: Vec<IpNet>,
}

impl Automation {
    /// Identity, credential and source range all match.
    pub fn approves(
        &self,
        username: &str,
        credential_id: Option<&str>,
        ip: Option<IpAddr>,
    ) -> bool {
        let cred_ok = self
            .credential_ids
            .iter()
            .any(|c| c == "*" || Some(c.as_str()) == credential_id);
        let ip_ok = ip.is_some_and(|ip| self.cidrs.iter().any(|n| n.contains(&ip)));
        self.username.matches(username) && cred_ok && ip_ok
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredRole {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub rules: Vec<PolicyRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    pub name: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub nodes: Vec<String>,
    pub identities: Vec<Pattern>,
    pub rules: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    pub id: String,
    pub owner: String,
    pub reason: String,
    pub created: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub matcher: SuppressionMatch,
    /// Parsed `matcher.source_cidr`.
    pub source_cidr: Option<IpNet>,
}

/// The validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub node_cidrs: Vec<IpNet>,
    pub pod_cidrs: Vec<IpNet>,
    pub service_cidrs: Vec<IpNet>,
    pub api_servers: Vec<String>,
    pub trusted_ranges: Vec<NamedRanges>,
    pub identities: Vec<IdentityAllowance>,
    pub automation: Vec<Automation>,
    pub high_privilege_roles: Vec<String>,
    pub roles: Vec<ConfiguredRole>,
    pub learning_window: Duration,
    pub join_window: Duration,
    pub jti_reuse_window: Duration,
    /// Longest an API-made suppression may last.
    pub max_suppression: Duration,
    pub alert_outside_without_expectation: bool,
    pub learned_ttl: Duration,
    pub node_grace: Duration,
    pub max_token_lifetime: Duration,
    pub maintenance: Vec<MaintenanceWindow>,
    pub suppressions: Vec<Suppression>,
    /// Bounds on in-memory detection state.
    pub state: StateLimits,
}

/// Bounds on in-memory detection state (`detection.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// What the caps below may take together, in MiB ([`budget`]); caps the
    /// policy does not set derive from it.
    pub memory_budget_mib: usize,
    pub max_identities: usize,
    pub max_credentials: usize,
    pub max_nodes: usize,
    pub max_pods: usize,
    pub max_rbac_objects: usize,
    pub max_age: Duration,
}

impl StateLimits {
    /// The caps `budget_mib` gives (each family its share, [`budget`]).
    pub fn from_budget(budget_mib: usize) -> Self {
        Self {
            memory_budget_mib: budget_mib,
            max_identities: budget::IDENTITIES.default_cap(budget_mib),
            max_credentials: budget::CREDENTIALS.default_cap(budget_mib),
            max_nodes: budget::NODES.default_cap(budget_mib),
            max_pods: budget::PODS.default_cap(budget_mib),
            max_rbac_objects: budget::RBAC.default_cap(budget_mib),
            max_age: Duration::days(7),
        }
    }
}

impl Default for StateLimits {
    fn default() -> Self {
        Self::from_budget(budget::DEFAULT_BUDGET_MIB)
    }
}

impl Default for Policy {
    fn default() -> Self {
        validate(PolicyFile::default(), Utc::now()).expect("the empty policy is valid")
    }
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: p.clone(),
            source,
        })?;
        Self::from_yaml(&p, &text)
    }

    /// Parses and validates policy YAML; `origin` names it in errors.
    pub fn from_yaml(origin: &str, text: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile =
            serde_norway::from_str(text).map_err(|source| PolicyError::Yaml {
                path: origin.to_owned(),
                source,
            })?;
        validate(file, Utc::now()).map_err(|problems| PolicyError::Invalid {
            path: origin.to_owned(),
            problems,
        })
    }

    /// The trusted range containing `ip`, by name.
    pub fn trusted_range(&self, ip: IpAddr) -> Option<(&str, IpNet)> {
        self.trusted_ranges.iter().find_map(|r| {
            r.cidrs
                .iter()
                .find(|n| n.contains(&ip))
                .map(|n| (r.name.as_str(), *n))
        })
    }

    /// Allowances that apply to `username`.
    pub fn allowances<'a>(
        &'a self,
        username: &'a str,
    ) -> impl Iterator<Item = &'a IdentityAllowance> + 'a {
        self.identities
            .iter()
            .filter(move |a| a.username.matches(username))
    }

    /// The automation entry approving this actor, if any.
    pub fn approved_automation(
        &self,
        username: &str,
        credential_id: Option<&str>,
        ip: Option<IpAddr>,
    ) -> Option<&Automation> {
        self.automation
            .iter()
            .find(|a| a.approves(username, credential_id, ip))
    }

    /// Whether `role` (by name, `ClusterRole/name` or `Role/ns/name`) is listed as high privilege.
    pub fn listed_high_privilege(&self, kind: &str, namespace: &str, name: &str) -> bool {
        self.high_privilege_roles.iter().any(|r| {
            r == name
                || *r == format!("{kind}/{name}")
                || *r == format!("{kind}/{namespace}/{name}")
        })
    }
}

#[cfg(test)]
mod tests;
