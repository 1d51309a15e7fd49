//! TokenRequests: recorded for lineage (`lineage.rs`), judged for lifetime
//! (CT1547-005), and the minter's expectations handed to the minted token.

use ipnet::IpNet;
use serde_json::json;

use crate::alert::{Alert, Severity, SourceClass};
use crate::audit::AuditEvent;

use super::alerts::{self, AlertParts, read_evidence};
use super::expect::Expect;
use super::lineage::{Minted, token_request};
use super::{Detector, rules};

impl Detector {
    /// Records a TokenRequest and judges its lifetime; returns the record
    /// (stored by the caller after the event's alerts joined their incident).
    pub(super) fn judge_mint(&mut self, ev: &AuditEvent, out: &mut Vec<Alert>) -> Option<Minted> {
        let mut m = token_request(ev)?;
        let exp = self.expectations(ev, false);
        m.minter_nodes = exp.nodes.clone();
        m.minter_pod_uids = exp.pod_uids.clone();
        m.minter_cidrs = exp.cidrs.clone();
        // Where the minter stood is an expected place of the token, unless
        // the mint itself was judged suspicious.
        if out.is_empty()
            && let Some(ip) = m.source_ip
        {
            m.minter_cidrs.push(IpNet::from(ip));
        }
        let approved = self
            .policy
            .approved_automation(&ev.user.username, ev.credential_id(), ev.source_ip())
            .is_some();
        let limit = self.policy.max_token_lifetime;
        if let Some(secs) = m.expiration_seconds
            && limit > chrono::Duration::zero()
            && secs > limit.num_seconds()
            && !approved
            && !m.by_kubelet()
        {
            let (class, _) = match ev.source_ip() {
                Some(ip) => self.classify(ip, &exp),
                None => (SourceClass::Unknown, None),
            };
            let reason = format!(
                "{} minted a token for {} valid {}h ({}s) from {}, outside approved automation (limit {}h).",
                ev.user.username,
                m.service_account,
                secs / 3600,
                secs,
                m.source_ip.map_or("?".to_owned(), |i| i.to_string()),
                limit.num_hours()
            );
            out.push(alerts::build(
                &rules::LONG_LIVED_MINT,
                ev,
                AlertParts {
                    severity: Severity::High,
                    class,
                    expected: exp.locations.clone(),
                    evidence: exp.reads.iter().take(8).map(read_evidence).collect(),
                    reason,
                    details: json!({"minted": m.details(), "limit_seconds": limit.num_seconds()}),
                    more_audit_ids: Vec::new(),
                    effective_identity: false,
                },
            ));
        }
        Some(m)
    }

    /// Adds the minter's expectations to a token minted by anyone but a kubelet.
    pub(super) fn minted_expectations(&self, ev: &AuditEvent, e: &mut Expect) {
        let Some(m) = ev.credential_id().and_then(|c| self.lineage.minted(c)) else {
            return;
        };
        if m.by_kubelet() {
            return;
        }
        let basis = format!("minted by {}", m.minter);
        for n in &m.minter_nodes {
            e.node(n, &basis);
        }
        for u in &m.minter_pod_uids {
            if !e.pod_uids.contains(u) {
                e.pod_uids.push(u.clone());
            }
        }
        for c in &m.minter_cidrs {
            if !e.cidrs.contains(c) {
                e.cidrs.push(*c);
                e.add("cidr", c.to_string(), &basis);
            }
        }
        if let Some(c) = &m.minter_credential {
            for r in self.sight.reads_by_key(c) {
                if !e.reads.contains(r) {
                    e.reads.push(r.clone());
                }
            }
        }
        e.minted_by = Some(m.details());
        e.hard = true;
    }
}

#[cfg(test)]
#[path = "mint_tests.rs"]
mod tests;
