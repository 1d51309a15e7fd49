//! A tiny RBAC table: who may do what. Requests it does not allow get 403
//! with the API server's `Status` body, and the audit event says `forbid`.

use super::authn::UserInfo;

/// One rule: subjects (users or groups) allowed verbs on resources (`*` = any).
#[derive(Debug, Clone)]
pub struct Rule {
    /// Name of the (simulated) binding, for the audit reason.
    pub binding: &'static str,
    pub role: &'static str,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub verbs: Vec<&'static str>,
    pub resources: Vec<&'static str>,
}

/// The table.
#[derive(Debug, Clone)]
pub struct Rbac {
    pub rules: Vec<Rule>,
}

/// An authorization decision and its reason, as the audit annotations carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

impl Default for Rbac {
    /// `system:masters` and `sre` may do anything; everyone may read
    /// `/version`, every authenticated user discovery; service accounts may get/list pods; the CI
    /// deployer (`system:serviceaccount:ci:deployer`) may write bindings.
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Self {
            rules: vec![
                Rule {
                    binding: "cluster-admin",
                    role: "cluster-admin",
                    users: vec![],
                    groups: s(&["system:masters", "sre"]),
                    verbs: vec!["*"],
                    resources: vec!["*"],
                },
                Rule {
                    binding: "system:public-info-viewer",
                    role: "system:public-info-viewer",
                    users: vec![],
                    groups: s(&["system:authenticated", "system:unauthenticated"]),
                    verbs: vec!["get"],
                    resources: vec!["public-info"],
                },
                Rule {
                    binding: "system:discovery",
                    role: "system:discovery",
                    users: vec![],
                    groups: s(&["system:authenticated"]),
                    verbs: vec!["get"],
                    resources: vec!["discovery"],
                },
                Rule {
                    binding: "pod-readers",
                    role: "view",
                    users: vec![],
                    groups: s(&["system:serviceaccounts"]),
                    verbs: vec!["get", "list", "watch"],
                    resources: vec!["pods"],
                },
                Rule {
                    binding: "ci-deployer",
                    role: "ci-deployer",
                    users: s(&["system:serviceaccount:ci:deployer"]),
                    groups: vec![],
                    verbs: vec!["get", "list", "create", "update", "patch"],
                    resources: vec!["clusterrolebindings", "rolebindings", "pods"],
                },
            ],
        }
    }
}

impl Rbac {
    /// Whether `user` may `verb` the `resource`.
    pub fn decide(&self, user: &UserInfo, verb: &str, resource: &str) -> Decision {
        for r in &self.rules {
            let subject = r.users.contains(&user.username)
                || r.groups.iter().any(|g| user.groups.contains(g));
            let verb_ok = r.verbs.iter().any(|v| *v == "*" || *v == verb);
            let res_ok = r.resources.iter().any(|x| *x == "*" || *x == resource);
            if subject && verb_ok && res_ok {
                let who = match r.users.iter().find(|u| **u == user.username) {
                    Some(u) => format!("User {u:?}"),
                    None => format!(
                        "Group {:?}",
                        r.groups
                            .iter()
                            .find(|g| user.groups.contains(g))
                            .cloned()
                            .unwrap_or_default()
                    ),
                };
                return Decision {
                    allowed: true,
                    reason: format!(
                        "RBAC: allowed by ClusterRoleBinding {:?} of ClusterRole {:?} to {who}",
                        r.binding, r.role
                    ),
                };
            }
        }
        Decision {
            allowed: false,
            reason: String::new(),
        }
    }
}
