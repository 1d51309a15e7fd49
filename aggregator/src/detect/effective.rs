//! AN1579 alerts show the effective permissions a binding grants: the bound
//! role's rules (learned from the audit stream, the policy, or the embedded
//! bootstrap policy), which of them make it high privilege and why, and who
//! else holds that role (other bindings known to the aggregator). Added to
//! the alert's `details.effective_permissions`; sizes bounded. Contract:
//! docs/API.md, *AN1579 alerts: effective permissions*.

use serde_json::{Value, json};

use crate::alert::Alert;
use crate::audit::{RoleRef, Subject};

use super::{Detector, builtin, rbac};

/// Rules listed per role.
pub const MAX_RULES: usize = 50;
/// Other bindings listed, and subjects per binding.
pub const MAX_HOLDERS: usize = 20;
pub const MAX_SUBJECTS: usize = 20;

fn subjects_json(s: &[Subject]) -> (Value, usize) {
    (
        json!(s.iter().take(MAX_SUBJECTS).collect::<Vec<_>>()),
        s.len().saturating_sub(MAX_SUBJECTS),
    )
}

impl Detector {
    /// Adds `details.effective_permissions` to an AN1579 alert about a binding.
    pub(super) fn add_effective_permissions(&self, a: &mut Alert) {
        let Some(b) = a.details.get("binding") else {
            return;
        };
        let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let (bkind, bns, bname) = (s("kind"), s("namespace"), s("name"));
        let role: Option<RoleRef> = a
            .details
            .get("role_ref")
            .and_then(|r| serde_json::from_value(r.clone()).ok())
            .or_else(|| {
                self.bindings
                    .get(&(bkind.clone(), bns.clone(), bname.clone()))
                    .and_then(|e| e.role_ref.clone())
            });
        let Some(role) = role else {
            a.details["effective_permissions"] = json!({
                "role": null, "rules": [], "rules_truncated": 0, "high_privilege_rules": [],
                "other_holders": [], "other_holders_truncated": 0,
            });
            return;
        };
        let role_ns = if role.kind == "Role" {
            bns.clone()
        } else {
            String::new()
        };
        let key = (role.kind.clone(), role_ns.clone(), role.name.clone());
        let in_policy = self
            .policy
            .roles
            .iter()
            .any(|r| r.kind == key.0 && r.namespace == key.1 && r.name == key.2);
        let (rules, known_from) = match self.roles.get(&key) {
            Some(e) => (
                e.rules.clone(),
                if in_policy { "policy" } else { "learned" },
            ),
            None => match (role.kind == "ClusterRole")
                .then(|| builtin::builtin_role(&role.name))
                .flatten()
            {
                Some(r) => (r.rules.clone(), "bootstrap"),
                None => (Vec::new(), "unknown"),
            },
        };
        let listed: Vec<_> = rules.iter().take(MAX_RULES).collect();
        let high: Vec<Value> = listed
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let why = rbac::high_privilege_reasons(std::slice::from_ref(*r));
                (!why.is_empty()).then(|| json!({"index": i, "reasons": why}))
            })
            .collect();
        // Who else holds the role: learned bindings, then the bootstrap ones.
        let mut holders: Vec<Value> = Vec::new();
        let mut total = 0usize;
        let mut seen: Vec<(String, String, String)> = Vec::new();
        for ((k, ns, n), e) in self.bindings.iter() {
            let same_role =
                e.role_ref.as_ref() == Some(&role) && (role.kind == "ClusterRole" || *ns == bns);
            if !same_role || (*k == bkind && *ns == bns && *n == bname) {
                continue;
            }
            seen.push((k.clone(), ns.clone(), n.clone()));
            total += 1;
            if holders.len() < MAX_HOLDERS {
                let (subs, cut) = subjects_json(&e.subjects);
                holders.push(
                    json!({"kind": k, "namespace": ns, "name": n, "subjects": subs,
                    "subjects_truncated": cut, "known_from": "learned"}),
                );
            }
        }
        if role.kind == "ClusterRole" {
            let mut boot: Vec<_> = builtin::builtin_bindings()
                .filter(|(n, bb)| {
                    bb.role_ref == role
                        && !(bkind == "ClusterRoleBinding" && bname == *n)
                        && !seen
                            .iter()
                            .any(|(k, _, sn)| k == "ClusterRoleBinding" && sn == n)
                })
                .collect();
            boot.sort_by_key(|(n, _)| *n);
            for (n, bb) in boot {
                total += 1;
                if holders.len() < MAX_HOLDERS {
                    let (subs, cut) = subjects_json(&bb.subjects);
                    holders.push(
                        json!({"kind": "ClusterRoleBinding", "namespace": "", "name": n,
                        "subjects": subs, "subjects_truncated": cut, "known_from": "bootstrap"}),
                    );
                }
            }
        }
        a.details["effective_permissions"] = json!({
            "role": {"kind": role.kind, "namespace": role_ns, "name": role.name, "known_from": known_from},
            "rules": listed,
            "rules_truncated": rules.len().saturating_sub(MAX_RULES),
            "high_privilege_rules": high,
            "other_holders": holders,
            "other_holders_truncated": total.saturating_sub(MAX_HOLDERS),
        });
    }
}

#[cfg(test)]
#[path = "effective_tests.rs"]
mod tests;
