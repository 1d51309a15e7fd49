//! Detection: AN1547 (credential used off its node) and AN1579
//! (high-privilege grant), with tuning (learning window, maintenance windows,
//! approved automation, suppressions).
//!
//! The [`Detector`] is synchronous and holds its state in memory; the
//! pipeline persists the [`Changes`] it reports and restores the state at
//! start ([`Detector::restore`]).

mod alerts;
mod an1547;
mod an1579;
pub mod changes;
mod expect;
pub mod rbac;
pub mod rules;
pub mod sightings;
mod suppress;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use credtrail_proto::model::Observation;

use crate::alert::Alert;
use crate::audit::{AuditEvent, PolicyRule, RoleRef, Subject};
use crate::policy::{Policy, Suppression};
use crate::store::LoadedState;
pub use changes::Changes;
pub use rules::{RULES, RuleDef};
pub use suppress::{alert_node, suppressed_by};

/// A role as the detector knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RoleEntry {
    rules: Vec<PolicyRule>,
    reasons: Vec<String>,
}

/// A binding as the detector knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BindingEntry {
    role_ref: Option<RoleRef>,
    subjects: Vec<Subject>,
}

/// `(kind, namespace, name)`.
type ObjKey = (String, String, String);

/// A place a JTI was used from.
#[derive(Debug, Clone)]
struct Place {
    place: String,
    ip: IpAddr,
    last: DateTime<Utc>,
    audit_id: String,
}

/// The detection engine.
pub struct Detector {
    policy: Arc<Policy>,
    sight: sightings::Sightings,
    roles: HashMap<ObjKey, RoleEntry>,
    bindings: HashMap<ObjKey, BindingEntry>,
    /// username -> source IP -> learned inside the learning window.
    baselines: HashMap<String, HashMap<IpAddr, bool>>,
    identities: HashMap<String, DateTime<Utc>>,
    jti_places: HashMap<String, Vec<Place>>,
    suppressions: Vec<Suppression>,
}

impl Detector {
    pub fn new(policy: Arc<Policy>) -> Self {
        let mut d = Self {
            policy: policy.clone(),
            sight: Default::default(),
            roles: HashMap::new(),
            bindings: HashMap::new(),
            baselines: HashMap::new(),
            identities: HashMap::new(),
            jti_places: HashMap::new(),
            suppressions: policy.suppressions.clone(),
        };
        for r in &policy.roles {
            d.roles.insert(
                (r.kind.clone(), r.namespace.clone(), r.name.clone()),
                RoleEntry {
                    reasons: rbac::high_privilege_reasons(&r.rules),
                    rules: r.rules.clone(),
                },
            );
        }
        d
    }

    /// Restores state persisted by earlier runs.
    pub fn restore(&mut self, s: LoadedState) {
        for (node, addrs, cidrs) in s.nodes {
            self.sight.set_node(&node, addrs, cidrs);
        }
        for (key, user, r) in s.reads {
            self.sight.restore_read(key, user, r);
        }
        let mut scratch = Changes::default();
        for o in &s.recent_connects {
            self.sight
                .observe(o, &mut scratch.credential_reads, &mut scratch.node_network);
        }
        for r in s.roles {
            // Stored rows (learned from audit events, or the policy's copy when
            // nothing was learned) replace what `new` took from the policy.
            self.roles.insert(
                (r.kind, r.namespace, r.name),
                RoleEntry {
                    rules: r.rules,
                    reasons: r.reasons,
                },
            );
        }
        for b in s.bindings {
            self.bindings.insert(
                (b.kind, b.namespace, b.name),
                BindingEntry {
                    role_ref: b
                        .role_kind
                        .zip(b.role_name)
                        .map(|(kind, name)| RoleRef { kind, name }),
                    subjects: b.subjects,
                },
            );
        }
        for (user, ip, learned) in s.baselines {
            self.baselines.entry(user).or_default().insert(ip, learned);
        }
        for (user, first) in s.identities {
            self.identities.insert(user, first);
        }
        if !s.suppressions.is_empty() {
            self.suppressions = s.suppressions;
        }
    }

    /// Replaces the suppressions (policy + API-created).
    pub fn set_suppressions(&mut self, s: Vec<Suppression>) {
        self.suppressions = s;
    }

    /// Takes in one agent observation.
    pub fn observe(&mut self, obs: &Observation, ch: &mut Changes) {
        self.sight
            .observe(obs, &mut ch.credential_reads, &mut ch.node_network);
    }

    /// Judges one (new) audit event; returns its alerts, suppressed ones
    /// marked (see [`suppressed_by`]).
    pub fn judge(&mut self, ev: &AuditEvent, ch: &mut Changes) -> Vec<Alert> {
        let mut out = Vec::new();
        if ev.stage.is_final() {
            self.judge_rbac(ev, ch, &mut out);
            self.judge_credential(ev, ch, &mut out);
        }
        for a in &mut out {
            self.apply_suppression(a, ch);
        }
        out
    }
}
