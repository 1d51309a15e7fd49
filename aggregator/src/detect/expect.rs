//! Where a credential is expected to be used from, and the class of a source
//! address relative to that.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;

use crate::alert::{ExpectedLocation, SourceClass};
use crate::audit::AuditEvent;

use super::Detector;
use super::alerts::service_account;
use super::sightings::{Location, ReadSighting};

/// The expectations for one request's credential.
#[derive(Debug, Default)]
pub struct Expect {
    pub locations: Vec<ExpectedLocation>,
    pub nodes: Vec<String>,
    pub pod_uids: Vec<String>,
    pub cidrs: Vec<IpNet>,
    /// Reads of this credential (or identity) the agents saw.
    pub reads: Vec<std::sync::Arc<ReadSighting>>,
    /// Expectations that do not come from learning: claims, agents, policy.
    pub hard: bool,
    /// A learned baseline applies (learning window over).
    pub baseline: bool,
    /// When the request was made (learned facts are judged at this time).
    pub time: DateTime<Utc>,
    /// Who minted this token (TokenRequest lineage), when known and not a kubelet.
    pub minted_by: Option<serde_json::Value>,
}

impl Expect {
    pub(super) fn add(&mut self, kind: &str, value: String, basis: &str) {
        if !self
            .locations
            .iter()
            .any(|l| l.kind == kind && l.value == value)
        {
            self.locations.push(ExpectedLocation {
                kind: kind.to_owned(),
                value,
                basis: basis.to_owned(),
            });
        }
    }

    pub(super) fn node(&mut self, n: &str, basis: &str) {
        if !self.nodes.iter().any(|x| x == n) {
            self.nodes.push(n.to_owned());
        }
        self.add("node", n.to_owned(), basis);
    }

    /// A short text of where the credential is expected, for reasons.
    pub fn summary(&self) -> String {
        if self.locations.is_empty() {
            return "nowhere known".to_owned();
        }
        let parts: Vec<String> = self
            .locations
            .iter()
            .take(4)
            .map(|l| format!("{} {}", l.kind, l.value))
            .collect();
        let more = self.locations.len().saturating_sub(4);
        if more > 0 {
            format!("{} and {more} more", parts.join(", "))
        } else {
            parts.join(", ")
        }
    }
}

impl Detector {
    /// Expectations for the authenticated user of `ev` at time `t`.
    pub(super) fn expectations(&self, ev: &AuditEvent, learning: bool) -> Expect {
        let mut e = Expect {
            time: ev.time(),
            ..Expect::default()
        };
        let user = &ev.user.username;
        let x = &ev.user.extra;
        if let Some(n) = x.node_name.first() {
            e.node(n, "token claims");
            e.hard = true;
        }
        if let Some(uid) = x.pod_uid.first() {
            e.pod_uids.push(uid.clone());
            let ns = service_account(user).map(|(ns, _)| ns).unwrap_or_default();
            let name = x.pod_name.first().cloned().unwrap_or_else(|| uid.clone());
            e.add("pod", format!("{ns}/{name}"), "token claims");
            e.hard = true;
        }
        if let Some(n) = user.strip_prefix("system:node:") {
            e.node(n, "node credential");
            e.hard = true;
        }
        let mut reads = ev
            .credential_id()
            .map(|c| self.sight.reads_by_key(c))
            .unwrap_or_default();
        if reads.is_empty() {
            reads = self.sight.reads_by_user(user);
        }
        for r in reads {
            e.node(&r.node, "agent saw it read");
            if let Some(uid) = &r.pod_uid {
                if !e.pod_uids.contains(uid) {
                    e.pod_uids.push(uid.clone());
                }
                if let Some(p) = &r.pod {
                    e.add("pod", p.clone(), "agent saw it read");
                }
            }
            e.hard = true;
        }
        e.reads = reads.to_vec();
        self.minted_expectations(ev, &mut e);
        for a in self.policy.allowances(user) {
            for c in &a.cidrs {
                e.cidrs.push(*c);
                e.add("cidr", c.to_string(), "policy allowance");
            }
            for n in &a.nodes {
                e.node(n, "policy allowance");
            }
            e.hard = true;
        }
        if !learning
            && self.policy.learning_window > chrono::Duration::zero()
            && let Some(b) = self.baselines.get(user)
        {
            let mut ips: Vec<&IpAddr> = b.iter().filter(|(_, l)| **l).map(|(ip, _)| ip).collect();
            ips.sort();
            for ip in ips {
                e.cidrs.push(IpNet::from(*ip));
                e.add("baseline", ip.to_string(), "learned baseline");
                e.baseline = true;
            }
        }
        e
    }

    /// Classifies `ip` against `e`; also returns where the agents place it.
    pub(super) fn classify(&self, ip: IpAddr, e: &Expect) -> (SourceClass, Option<Location>) {
        // The policy's ranges win over agents' claims and learned facts: an
        // address outside every cluster and trusted range the policy sets is
        // never placed on a node or pod, whatever an agent said about it.
        let loc = if self.policy_places_outside(ip) {
            None
        } else {
            self.sight
                .resolve(ip)
                .or_else(|| self.cluster.resolve(ip, e.time, self.policy.learned_ttl))
        };
        if let Some(l) = &loc {
            if l.pod_uid.as_ref().is_some_and(|u| e.pod_uids.contains(u)) {
                return (SourceClass::ExpectedPod, loc);
            }
            // A pod-bound credential used by another known pod, even on its own node.
            let other_pod = l.pod_uid.is_some() && !e.pod_uids.is_empty();
            if e.nodes.contains(&l.node) && !other_pod {
                return (SourceClass::ExpectedNode, loc);
            }
        }
        if e.cidrs.iter().any(|c| c.contains(&ip))
            || self.policy.trusted_range(ip).is_some()
            || self
                .cluster
                .is_api_endpoint(ip, e.time, self.policy.learned_ttl)
        {
            return (SourceClass::TrustedRange, loc);
        }
        if let Some(l) = &loc {
            let class = if l.via.starts_with("node address") {
                SourceClass::OtherNode
            } else {
                SourceClass::OtherPod
            };
            return (class, loc);
        }
        let p = &self.policy;
        if p.node_cidrs.iter().any(|c| c.contains(&ip)) {
            return (SourceClass::OtherNode, None);
        }
        if p.pod_cidrs
            .iter()
            .chain(&p.service_cidrs)
            .any(|c| c.contains(&ip))
        {
            return (SourceClass::OtherPod, None);
        }
        // Zero-config: a public address is outside whatever else is known.
        if self.cluster_known() || !super::cluster::is_internal(ip) {
            (SourceClass::Outside, None)
        } else {
            (SourceClass::Unknown, None)
        }
    }

    /// The policy sets cluster ranges and `ip` is in none of them, nor in a
    /// trusted range.
    fn policy_places_outside(&self, ip: IpAddr) -> bool {
        let p = &self.policy;
        let mut cluster = p
            .node_cidrs
            .iter()
            .chain(&p.pod_cidrs)
            .chain(&p.service_cidrs);
        let set = !(p.node_cidrs.is_empty() && p.pod_cidrs.is_empty());
        set && !cluster.any(|c| c.contains(&ip)) && p.trusted_range(ip).is_none()
    }

    /// Whether anything tells us what the cluster's addresses are.
    pub(super) fn cluster_known(&self) -> bool {
        let p = &self.policy;
        self.sight.knows_cluster()
            || !p.node_cidrs.is_empty()
            || !p.pod_cidrs.is_empty()
            || !p.trusted_ranges.is_empty()
    }

    /// Whether `user` is inside its learning window at `t`; records first sightings.
    pub(super) fn in_learning(
        &mut self,
        user: &str,
        t: DateTime<Utc>,
        ch: &mut super::Changes,
    ) -> bool {
        let seen = self.identities.entry(user.to_owned()).or_insert_with(|| {
            ch.identities.push((user.to_owned(), t.timestamp_millis()));
            super::IdentitySeen { first: t, noted: t }
        });
        if t - seen.noted >= super::limits::IDENTITY_NOTE_INTERVAL {
            seen.noted = t;
            ch.identities.push((user.to_owned(), t.timestamp_millis()));
        }
        let first = seen.first;
        let w = self.policy.learning_window;
        // Checked: a window past chrono's range means "still learning".
        w > chrono::Duration::zero() && first.checked_add_signed(w).is_none_or(|end| t < end)
    }
}

#[cfg(test)]
#[path = "expect_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "expect_learned_tests.rs"]
mod learned_tests;
