//! AN1547: a credential used off its node.

use std::net::IpAddr;

use serde_json::json;

use crate::alert::{Alert, Severity, SourceClass};
use crate::audit::AuditEvent;

use super::alerts::{self, AlertParts, connect_evidence, read_evidence};
use super::changes::{BaselineRow, CredentialUse};
use super::expect::Expect;
use super::rules;
use super::sightings::Location;
use super::{Changes, Detector, Place};

/// Evidence items of one kind kept in an alert.
const MAX_EVIDENCE: usize = 8;

fn class_text(class: SourceClass, loc: Option<&Location>) -> String {
    match (class, loc) {
        (SourceClass::OtherNode, Some(l)) => format!("node {}", l.node),
        (SourceClass::OtherPod, Some(l)) => match &l.pod {
            Some(p) => format!("pod {p} on node {}", l.node),
            None => format!("a pod on node {}", l.node),
        },
        (SourceClass::OtherNode, None) => "another node of the cluster".to_owned(),
        (SourceClass::OtherPod, None) => "a pod of the cluster".to_owned(),
        (SourceClass::Outside, _) => "outside the cluster and every trusted range".to_owned(),
        (c, _) => format!("{c:?}"),
    }
}

fn credential_text(ev: &AuditEvent) -> String {
    match ev.credential_id() {
        Some(c) => format!("{} ({c})", ev.user.username),
        None => ev.user.username.clone(),
    }
}

impl Detector {
    pub(super) fn judge_credential(
        &mut self,
        ev: &AuditEvent,
        ch: &mut Changes,
        out: &mut Vec<Alert>,
    ) -> Option<SourceClass> {
        let user = ev.user.username.as_str();
        if user.is_empty() || user == "system:anonymous" {
            return None;
        }
        let ip = ev.source_ip()?;
        let t = ev.time();
        let learning = self.in_learning(user, t, ch);
        let exp = self.expectations(ev, learning);
        let (class, loc) = self.classify(ip, &exp);
        let key = ev
            .credential_id()
            .map_or_else(|| format!("user:{user}"), str::to_owned);
        ch.use_context.push(super::changes::UseContext {
            key: key.clone(),
            source_ip: ip.to_string(),
            user_agent: ev.user_agent.clone(),
            pod: loc.as_ref().and_then(|l| l.pod.clone()),
            time_ms: t.timestamp_millis(),
        });
        ch.credential_uses.push(CredentialUse {
            key,
            username: user.to_owned(),
            source_ip: ip.to_string(),
            class,
            node: loc.as_ref().map(|l| l.node.clone()),
            time_ms: t.timestamp_millis(),
            audit_id: ev.audit_id.clone(),
        });
        let service_or_node =
            user.starts_with("system:serviceaccount:") || user.starts_with("system:node:");
        // Learning never launders: a service-account or node credential is
        // learned only from sources consistent with the cluster (its ranges,
        // configured or learned, trusted ranges, internal addresses), never
        // from outside; people legitimately come from anywhere.
        let learnable = learning && !(service_or_node && class == SourceClass::Outside);
        let ips = self.limits.baseline_ips;
        let known = self
            .baselines
            .entry(user.to_owned())
            .or_insert_with(|| super::bounded::Bounded::new(ips));
        let was = known.get(&ip).copied();
        if was.is_none() || (learnable && was == Some(false)) {
            known.insert(ip, learnable || was == Some(true));
            ch.baselines.push(BaselineRow {
                username: user.to_owned(),
                source_ip: ip.to_string(),
                time_ms: t.timestamp_millis(),
                learned: learnable || was == Some(true),
                audit_id: ev.audit_id.clone(),
            });
        }
        if let Some(jti) = ev.credential_id().filter(|c| c.starts_with("JTI=")) {
            self.jti_reuse(ev, jti, ip, loc.as_ref(), &exp, out);
        }
        match class {
            SourceClass::OtherNode | SourceClass::OtherPod | SourceClass::Outside => {
                let judged = exp.hard
                    || exp.baseline
                    || (class == SourceClass::Outside
                        && service_or_node
                        && self.policy.alert_outside_without_expectation);
                if learnable && !exp.hard {
                    return Some(class); // learned into the baseline above
                }
                if judged {
                    out.push(self.off_node_alert(ev, ip, class, loc.as_ref(), &exp));
                }
            }
            SourceClass::ExpectedNode | SourceClass::ExpectedPod => {
                if let Some(l) = &loc
                    && let Some(a) = self.never_read(ev, ip, l, class, &exp)
                {
                    out.push(a);
                }
            }
            SourceClass::TrustedRange | SourceClass::Unknown => {}
        }
        Some(class)
    }

    fn off_node_alert(
        &self,
        ev: &AuditEvent,
        ip: IpAddr,
        class: SourceClass,
        loc: Option<&Location>,
        exp: &Expect,
    ) -> Alert {
        let outside = class == SourceClass::Outside;
        let allowed = ev.allowed();
        let severity = match (outside, allowed, alerts::sensitive(ev)) {
            (true, true, _) => Severity::Critical,
            (true, false, _) => Severity::High,
            (false, true, true) => Severity::High,
            (false, true, false) => Severity::Medium,
            (false, false, _) => Severity::Low,
        };
        let mut evidence: Vec<_> = exp
            .reads
            .iter()
            .take(MAX_EVIDENCE)
            .map(read_evidence)
            .collect();
        let mut candidates = Vec::new();
        if let Some(l) = loc {
            for c in self
                .sight
                .connects_near(&l.node, ip, ev.time(), self.policy.join_window)
                .into_iter()
                .rev()
                .take(MAX_EVIDENCE)
            {
                candidates.push(c.observation_id.clone());
                evidence.push(connect_evidence(c));
            }
        }
        let rule = if outside {
            rules::OUTSIDE
        } else {
            rules::OFF_NODE
        };
        let reason = format!(
            "{} was {} from {ip} ({}), but it is expected at {}.",
            credential_text(ev),
            if allowed { "used" } else { "tried (denied)" },
            class_text(class, loc),
            exp.summary()
        );
        alerts::build(
            &rule,
            ev,
            AlertParts {
                severity,
                class,
                expected: exp.locations.clone(),
                evidence,
                reason,
                details: json!({
                    "source_node": loc.map(|l| l.node.clone()),
                    "source_pod": loc.and_then(|l| l.pod.clone()),
                    "resolved_via": loc.map(|l| l.via),
                    "connect_candidates": candidates,
                    "impersonated_user": ev.impersonated_user.as_ref().map(|u| u.username.clone()),
                    "minted_by": exp.minted_by,
                }),
                more_audit_ids: Vec::new(),
                effective_identity: false,
            },
        )
    }

    /// Right node, but the connecting process never read the credential.
    fn never_read(
        &self,
        ev: &AuditEvent,
        ip: IpAddr,
        loc: &Location,
        class: SourceClass,
        exp: &Expect,
    ) -> Option<Alert> {
        let readers: Vec<_> = exp
            .reads
            .iter()
            .filter(|r| r.node == loc.node && r.tgid != 0)
            .collect();
        if readers.is_empty() {
            return None; // nobody known to read it here: the join cannot judge
        }
        let cands = self
            .sight
            .connects_near(&loc.node, ip, ev.time(), self.policy.join_window);
        if cands.is_empty() {
            return None;
        }
        let read_by = |c: &super::sightings::ConnectSighting| {
            readers.iter().any(|r| {
                r.tgid == c.tgid || (r.container_id.is_some() && r.container_id == c.container_id)
            })
        };
        if cands.iter().any(|c| read_by(c)) {
            return None;
        }
        // Processes that read some other credential presumably used that one.
        let cands: Vec<_> = cands
            .into_iter()
            .filter(|c| !self.sight.read_any(c))
            .collect();
        if cands.is_empty() {
            return None;
        }
        let mut evidence: Vec<_> = cands
            .iter()
            .rev()
            .take(MAX_EVIDENCE)
            .map(|c| connect_evidence(c))
            .collect();
        evidence.extend(readers.iter().take(MAX_EVIDENCE).map(|r| read_evidence(r)));
        let names: Vec<String> = cands
            .iter()
            .rev()
            .take(4)
            .map(|c| {
                format!(
                    "{} (pid {}{})",
                    c.comm.as_deref().unwrap_or("?"),
                    c.tgid,
                    c.pod
                        .as_ref()
                        .map(|p| format!(", pod {p}"))
                        .unwrap_or_default()
                )
            })
            .collect();
        let severity = if ev.allowed() && alerts::sensitive(ev) {
            Severity::High
        } else {
            Severity::Medium
        };
        let reason = format!(
            "{} was used from its node {} ({ip}), but the connecting process{} {} never read it; only {} did.",
            credential_text(ev),
            loc.node,
            if names.len() > 1 { "es" } else { "" },
            names.join(", "),
            readers
                .iter()
                .take(3)
                .map(|r| format!("{} (pid {})", r.comm.as_deref().unwrap_or("?"), r.tgid))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Some(alerts::build(
            &rules::NEVER_READ,
            ev,
            AlertParts {
                severity,
                class,
                expected: exp.locations.clone(),
                evidence,
                reason,
                details: json!({"source_node": loc.node, "candidates": cands.len()}),
                more_audit_ids: Vec::new(),
                effective_identity: false,
            },
        ))
    }

    /// One JTI seen from two places within the reuse window.
    fn jti_reuse(
        &mut self,
        ev: &AuditEvent,
        jti: &str,
        ip: IpAddr,
        loc: Option<&Location>,
        exp: &Expect,
        out: &mut Vec<Alert>,
    ) {
        let t = ev.time();
        let place = loc.map_or_else(|| format!("address {ip}"), |l| format!("node {}", l.node));
        let window = self.policy.jti_reuse_window;
        // JTIs unused for a reuse window leave `jti_places` from its front
        // (bounded.rs): no scan here.
        let places = self.jti_places.entry(jti.to_owned()).or_default();
        places.retain(|p| t - p.last <= window);
        // One place, one name: the same address, or the same node however
        // it was reached, is one place.
        let same = |p: &Place| p.ip == ip || (p.place == place && place.starts_with("node "));
        if let Some(p) = places.iter_mut().find(|p| same(p)) {
            p.last = p.last.max(t);
            return;
        }
        let other = places.iter().max_by_key(|p| p.last).cloned();
        places.push(Place {
            place: place.clone(),
            ip,
            last: t,
            audit_id: ev.audit_id.clone(),
        });
        let Some(other) = other else { return };
        // "node n (ip)" for a known node; a bare address already says its IP.
        let describe = |place: &str, ip: IpAddr| {
            if place == format!("address {ip}") {
                place.to_owned()
            } else {
                format!("{place} ({ip})")
            }
        };
        let reason = format!(
            "Bound token {jti} of {} was used from {} and from {} within {} minutes; a token lives in one pod.",
            ev.user.username,
            describe(&place, ip),
            describe(&other.place, other.ip),
            window.num_minutes()
        );
        out.push(alerts::build(
            &rules::JTI_TWO_PLACES,
            ev,
            AlertParts {
                severity: if ev.allowed() {
                    Severity::High
                } else {
                    Severity::Medium
                },
                class: self.classify(ip, exp).0,
                expected: exp.locations.clone(),
                evidence: exp
                    .reads
                    .iter()
                    .take(MAX_EVIDENCE)
                    .map(read_evidence)
                    .collect(),
                reason,
                details: json!({
                    "source_node": loc.map(|l| l.node.clone()),
                    "places": [other.place, place],
                    "first_audit_id": other.audit_id,
                }),
                more_audit_ids: vec![other.audit_id.clone()],
                effective_identity: false,
            },
        ));
    }
}

#[cfg(test)]
#[path = "an1547_tests.rs"]
mod tests;
