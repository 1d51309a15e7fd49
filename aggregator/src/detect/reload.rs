//! A reloaded policy put in force in a running detector (`policy/watch.rs`).
//!
//! Events judged after the swap see the new policy (ranges, allowances,
//! automation, roles, windows, suppressions); what the detector already
//! holds (baselines, sightings, learned roles and nodes, JTI places) is kept.
//! The detector's own maps take the new `detection.state` bounds at once (a
//! smaller cap evicts the least recently used entries now, a shorter age at
//! the next event); the agents' sightings keep the bounds they started with
//! until the next restart.

use std::sync::Arc;

use super::limits::MapLimits;
use super::{Detector, RoleEntry, rbac};
use crate::policy::{Policy, Suppression};

impl Detector {
    /// Puts `policy` in force; `suppressions` are all active ones (the new
    /// policy's and the API's, as the store now holds them).
    pub fn set_policy(&mut self, policy: Arc<Policy>, suppressions: Vec<Suppression>) {
        let old = std::mem::replace(&mut self.policy, policy.clone());
        for r in &policy.roles {
            let key = (r.kind.clone(), r.namespace.clone(), r.name.clone());
            // As in the store (`apply_policy`): a role the cluster's own
            // audit stream taught wins over the policy's copy; one the old
            // policy defined (or nobody) takes the new definition.
            let replace = self.roles.get(&key).is_none_or(|held| {
                old.roles.iter().any(|o| {
                    o.kind == r.kind
                        && o.namespace == r.namespace
                        && o.name == r.name
                        && o.rules == held.rules
                })
            });
            if replace {
                self.roles.insert(
                    key,
                    RoleEntry {
                        reasons: rbac::high_privilege_reasons(&r.rules),
                        rules: r.rules.clone(),
                    },
                );
            }
        }
        let lim = MapLimits::from_policy(&policy);
        self.roles.set_limits(lim.roles);
        self.bindings.set_limits(lim.bindings);
        self.baselines.set_limits(lim.baselines);
        self.identities.set_limits(lim.identities);
        self.jti_places.set_limits(lim.jti_places);
        self.limits = lim;
        self.suppressions = suppressions;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn policy(yaml: &str) -> Arc<Policy> {
        Arc::new(Policy::from_yaml("test", yaml).unwrap())
    }

    const DEPLOYER: &str = "roles:\n  - kind: ClusterRole\n    name: deployer\n    rules:\n      - apiGroups: [\"\"]\n        resources: [\"pods\"]\n        verbs: [\"get\"]\n";
    const DEPLOYER_STAR: &str = "roles:\n  - kind: ClusterRole\n    name: deployer\n    rules:\n      - apiGroups: [\"*\"]\n        resources: [\"*\"]\n        verbs: [\"*\"]\n";

    fn deployer(d: &Detector) -> Vec<String> {
        d.roles
            .get(&("ClusterRole".into(), String::new(), "deployer".into()))
            .map(|r| r.reasons.clone())
            .unwrap_or_default()
    }

    #[test]
    fn a_new_policy_redefines_its_roles_and_shrinks_the_maps() {
        let mut d = Detector::new(policy(DEPLOYER));
        assert!(deployer(&d).is_empty(), "get pods is not high privilege");
        let key = (
            "ClusterRole".to_owned(),
            String::new(),
            "deployer".to_owned(),
        );
        assert!(d.roles.contains_key(&key));
        for i in 0..50 {
            d.identities.insert(
                format!("user-{i}"),
                super::super::IdentitySeen {
                    first: chrono::Utc::now(),
                    noted: chrono::Utc::now(),
                },
            );
        }
        let small = format!("{DEPLOYER_STAR}detection:\n  state:\n    max_identities: 10\n");
        d.set_policy(policy(&small), Vec::new());
        assert!(!deployer(&d).is_empty(), "the new definition is in force");
        assert_eq!(d.identities.len(), 10, "the smaller cap evicts now");
        assert!(d.identities.contains_key("user-49"), "the most recent stay");
        assert_eq!(d.policy.state.max_identities, 10);
    }

    #[test]
    fn a_role_learned_from_the_cluster_is_not_overwritten() {
        let mut d = Detector::new(policy(DEPLOYER));
        let key = (
            "ClusterRole".to_owned(),
            String::new(),
            "deployer".to_owned(),
        );
        // The audit stream taught another definition of the same role.
        let learned = policy(DEPLOYER_STAR).roles[0].rules.clone();
        d.roles.insert(
            key.clone(),
            RoleEntry {
                reasons: rbac::high_privilege_reasons(&learned),
                rules: learned.clone(),
            },
        );
        d.set_policy(policy(DEPLOYER), Vec::new());
        assert_eq!(d.roles.get(&key).unwrap().rules, learned);
    }
}
