//! AN1579 through a role instead of a binding: a (Cluster)Role write that
//! adds a high-privilege power the role did not have, to a role somebody
//! already holds, grants that power to every holder without any binding
//! write (`kubectl edit clusterrole system:basic-user`, a JSON patch adding
//! `secrets` to a custom role bound to a group, a role created after the
//! binding that names it, the aggregation controller filling `view` from a
//! labelled role). Judged as a grant to the holders: CT1579-002 when one of
//! them is everyone, else CT1579-001.

use serde_json::json;

use crate::alert::{Alert, Severity, SourceClass};
use crate::audit::{AuditEvent, Subject};

use super::alerts::{self, AlertParts};
use super::builtin::{builtin_bindings, builtin_role};
use super::effective::{MAX_HOLDERS, MAX_SUBJECTS};
use super::rbac;
use super::rules;
use super::{Detector, ObjKey};

/// Holders, and subjects of each, named in the alert's sentence.
const REASON_HOLDERS: usize = 5;

/// The built-in user-facing role meant to be granted widely in namespaces
/// through RoleBindings (the aggregator may have seen none of them) and that
/// upstream keeps free of anything high-privilege (no Secrets, no exec): a
/// power added to it, usually by the aggregation controller from a role
/// labelled `aggregate-to-view`, is granted whether or not a binding is
/// known. `edit` and `admin` are judged by their known holders only: later
/// releases add powers to them (the embedded bootstrap snapshot predates
/// them), which the aggregation controller writes on its first update.
const USER_FACING: &[&str] = &["view"];

/// The power a reason names: its text before the rule it cites
/// (`reads secrets (rules[2]: ...)` is `reads secrets`).
fn power(reason: &str) -> &str {
    reason.split_once(" (").map_or(reason, |(p, _)| p)
}

/// One binding that holds the widened role, and the powers it gains.
struct Holder {
    kind: String,
    namespace: String,
    name: String,
    subjects: Vec<Subject>,
    gains: Vec<String>,
}

/// The API server reconciling its own bootstrap policy at start (its
/// loopback identity, never impersonated): it writes the default roles of the
/// release it runs, which may hold powers the embedded snapshot predates.
fn bootstrap_reconcile(ev: &AuditEvent) -> bool {
    ev.user.username == "system:apiserver"
        && ev.user.groups.iter().any(|g| g == "system:masters")
        && ev.impersonated_user.is_none()
}

impl Detector {
    /// The powers `key`'s role has before this write: what was learned of
    /// it, and what the bootstrap policy gives a built-in ClusterRole (the
    /// API server's reconcile re-adding those is no widening).
    /// `None`: the role was never known (not learned, configured or built in).
    pub(super) fn role_powers_before(&self, key: &ObjKey) -> Option<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        let mut known = false;
        if let Some(e) = self.roles.get(key) {
            known = true;
            out.extend(e.reasons.iter().map(|r| power(r).to_owned()));
        }
        if key.0 == "ClusterRole"
            && let Some(b) = builtin_role(&key.2)
        {
            known = true;
            out.extend(b.reasons.iter().map(|r| power(r).to_owned()));
        }
        known.then_some(out)
    }

    /// The bindings known to hold role `key` (learned ones, and built-in
    /// ones not overridden by a learned state), each with the powers among
    /// `reasons` it gains (secrets read through a RoleBinding is one
    /// namespace's own, not high privilege by itself).
    fn holders(&self, key: &ObjKey, new_reasons: &[String]) -> Vec<Holder> {
        let (kind, ns, name) = key;
        let holds = |b_ns: &str, r: &crate::audit::RoleRef| {
            r.kind == *kind && r.name == *name && (kind == "ClusterRole" || b_ns == ns)
        };
        let mut out = Vec::new();
        let mut push = |b_kind: &str, b_ns: &str, b_name: &str, subjects: &[Subject]| {
            let gains = rbac::reasons_for_binding(new_reasons, b_kind, b_ns);
            if !gains.is_empty() && !subjects.is_empty() {
                out.push(Holder {
                    kind: b_kind.to_owned(),
                    namespace: b_ns.to_owned(),
                    name: b_name.to_owned(),
                    subjects: subjects.to_vec(),
                    gains,
                });
            }
        };
        for ((b_kind, b_ns, b_name), b) in self.bindings.iter() {
            if let Some(r) = &b.role_ref
                && holds(b_ns, r)
            {
                push(b_kind, b_ns, b_name, &b.subjects);
            }
        }
        for (b_name, b) in builtin_bindings() {
            let k = (
                "ClusterRoleBinding".to_owned(),
                String::new(),
                b_name.to_owned(),
            );
            if !self.bindings.contains_key(&k) && holds("", &b.role_ref) {
                push("ClusterRoleBinding", "", b_name, &b.subjects);
            }
        }
        // Holders that are everyone first (they decide the rule), then by name.
        out.sort_by_cached_key(|h| {
            (
                !h.subjects.iter().any(rbac::is_broad_subject),
                h.kind.clone(),
                h.namespace.clone(),
                h.name.clone(),
            )
        });
        out
    }

    /// Judges a succeeded (Cluster)Role create/update/patch whose rules are
    /// now `reasons`, where `before` were the powers it had.
    pub(super) fn judge_role_widening(
        &mut self,
        ev: &AuditEvent,
        key: &ObjKey,
        before: Option<&[String]>,
        reasons: &[String],
        out: &mut Vec<Alert>,
    ) {
        // An update or patch of a role never seen: what it held before is
        // unknown, so its powers are reported as first seen, not as added.
        let first_seen = before.is_none() && ev.verb != "create";
        let before = before.unwrap_or_default();
        let added: Vec<String> = reasons
            .iter()
            .filter(|r| !before.iter().any(|b| b == power(r)))
            .cloned()
            .collect();
        if added.is_empty() {
            return;
        }
        let user = ev.user.username.as_str();
        let ip = ev.source_ip();
        if bootstrap_reconcile(ev) {
            return;
        }
        if self
            .policy
            .approved_automation(user, ev.credential_id(), ip)
            .is_some()
        {
            return;
        }
        let holders = self.holders(key, &added);
        let user_facing = key.0 == "ClusterRole" && USER_FACING.contains(&key.2.as_str());
        if holders.is_empty() && !user_facing {
            return; // nobody holds it (yet): judged when it is bound
        }
        let exp = self.expectations(ev, false);
        let actor_class = ip.map_or(SourceClass::Unknown, |ip| self.classify(ip, &exp).0);
        let unknown_ip = matches!(actor_class, SourceClass::Outside | SourceClass::Unknown);
        let (kind, ns, name) = key;
        let what = if ns.is_empty() {
            format!("{kind} {name}")
        } else {
            format!("{kind} {ns}/{name}")
        };
        let from = ip.map_or_else(|| "an unknown address".to_owned(), |i| i.to_string());
        let broad: Vec<&Subject> = holders
            .iter()
            .flat_map(|h| h.subjects.iter())
            .filter(|s| rbac::is_broad_subject(s))
            .collect();
        // Bounded: a role may be held through thousands of bindings.
        let mut held_by: Vec<String> = holders
            .iter()
            .take(REASON_HOLDERS)
            .map(|h| {
                let b = if h.namespace.is_empty() {
                    format!("{} {}", h.kind, h.name)
                } else {
                    format!("{} {}/{}", h.kind, h.namespace, h.name)
                };
                let mut s: Vec<String> = h
                    .subjects
                    .iter()
                    .take(REASON_HOLDERS)
                    .map(|s| format!("{} {}", s.kind, s.name))
                    .collect();
                if h.subjects.len() > REASON_HOLDERS {
                    s.push(format!("{} more", h.subjects.len() - REASON_HOLDERS));
                }
                format!("{} ({b})", s.join(", "))
            })
            .collect();
        if holders.len() > REASON_HOLDERS {
            held_by.push(format!("{} more bindings", holders.len() - REASON_HOLDERS));
        }
        if user_facing {
            held_by.push(format!("everyone granted {name} in a namespace"));
        }
        let details = json!({
            "role": {"kind": kind, "namespace": ns, "name": name},
            "widened_role": true,
            "added_privileges": added,
            "why_high_privilege": added,
            "powers_before": if first_seen { json!(null) } else { json!(before) },
            "role_first_seen": first_seen,
            "held_through": holders.iter().take(MAX_HOLDERS).map(|h| json!({
                "binding": {"kind": h.kind, "namespace": h.namespace, "name": h.name},
                "subjects": h.subjects.iter().take(MAX_SUBJECTS).collect::<Vec<_>>(),
                "subjects_truncated": h.subjects.len().saturating_sub(MAX_SUBJECTS),
                "gains": h.gains,
            })).collect::<Vec<_>>(),
            "held_through_truncated": holders.len().saturating_sub(MAX_HOLDERS),
            "held_by_user_facing_role": user_facing,
            "actor_source_class": actor_class,
            "level": ev.level.as_str(),
        });
        let (rule, severity) = if broad.is_empty() {
            (
                rules::HIGH_PRIV_GRANT,
                if unknown_ip {
                    Severity::Critical
                } else {
                    Severity::High
                },
            )
        } else {
            (rules::BROAD_GRANT, Severity::Critical)
        };
        let powers = added.join("; ");
        let head = if first_seen {
            format!("{user} wrote {what} (first seen; it allows {powers})")
        } else {
            format!("{user} added {powers} to {what}")
        };
        let reason = format!(
            "{head} from {from}{}, outside approved automation, without a binding write: everyone holding the role gets it: {}.",
            if unknown_ip {
                ", an unknown address"
            } else {
                ""
            },
            held_by.join("; ")
        );
        out.push(alerts::build(
            &rule,
            ev,
            AlertParts::actor(
                severity,
                actor_class,
                exp.locations.clone(),
                reason,
                details,
            ),
        ));
    }
}

#[cfg(test)]
#[path = "an1579_roles_tests.rs"]
mod tests;
