//! What an RBAC role allows: high privilege is decided by its rules, not
//! only its name.

use crate::audit::{PolicyRule, Subject};

/// Built-in cluster roles that are high privilege whatever rules are seen.
const BUILTIN_HIGH: &[(&str, &str)] = &[
    (
        "cluster-admin",
        "cluster-admin: full control of the cluster",
    ),
    (
        "admin",
        "admin: full control of a namespace, including RBAC",
    ),
    ("edit", "edit: writes workloads and reads secrets"),
    ("system:aggregate-to-admin", "aggregates into admin"),
    ("system:aggregate-to-edit", "aggregates into edit"),
];

/// Built-in cluster roles known to grant nothing high-privilege.
const BUILTIN_LOW: &[&str] = &[
    "view",
    "system:basic-user",
    "system:discovery",
    "system:public-info-viewer",
    "system:aggregate-to-view",
    "system:monitoring",
];

/// The privilege of a role, as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Privilege {
    /// High privilege, with the reasons.
    High(Vec<String>),
    /// Known, and grants nothing high-privilege.
    Low(String),
    /// Never seen (neither in audit events nor in configuration).
    Unknown,
}

impl Privilege {
    pub fn is_high(&self) -> bool {
        matches!(self, Privilege::High(_))
    }
}

/// Built-in privilege of a cluster role by name, if it is a known built-in.
pub fn builtin(kind: &str, name: &str) -> Option<Privilege> {
    if kind != "ClusterRole" {
        return None;
    }
    if let Some((_, why)) = BUILTIN_HIGH.iter().find(|(n, _)| *n == name) {
        return Some(Privilege::High(vec![(*why).to_owned()]));
    }
    BUILTIN_LOW
        .contains(&name)
        .then(|| Privilege::Low(format!("{name} is a built-in read-only/discovery role")))
}

fn has(list: &[String], any: &[&str]) -> bool {
    list.iter().any(|v| any.contains(&v.as_str()))
}

fn group_ok(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups.is_empty() || has(&rule.api_groups, &["*", group])
}

/// Why these rules are high privilege (empty: they are not).
pub fn high_privilege_reasons(rules: &[PolicyRule]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |s: &str| {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    };
    for r in rules {
        let verbs = &r.verbs;
        let res = &r.resources;
        let any_verb = has(verbs, &["*"]);
        if any_verb && !res.is_empty() {
            add("wildcard verbs");
        }
        if has(res, &["*"]) {
            add("wildcard resources");
        }
        if has(verbs, &["escalate"]) {
            add("escalate");
        }
        if has(verbs, &["bind"]) {
            add("bind");
        }
        if has(verbs, &["impersonate"]) {
            add("impersonate");
        }
        let reads = any_verb || has(verbs, &["get", "list", "watch"]);
        let writes = any_verb
            || has(
                verbs,
                &["create", "update", "patch", "delete", "deletecollection"],
            );
        if has(res, &["secrets"]) && group_ok(r, "") && reads {
            add("reads secrets");
        }
        if has(res, &["pods/exec", "pods/attach"]) && (any_verb || has(verbs, &["create", "get"])) {
            add("pods/exec");
        }
        if has(res, &["nodes/proxy"]) && !verbs.is_empty() {
            add("nodes/proxy");
        }
        if has(res, &["serviceaccounts/token"]) && (any_verb || has(verbs, &["create"])) {
            add("serviceaccounts/token");
        }
        if has(
            res,
            &[
                "roles",
                "rolebindings",
                "clusterroles",
                "clusterrolebindings",
            ],
        ) && group_ok(r, "rbac.authorization.k8s.io")
            && writes
        {
            add("RBAC writes");
        }
    }
    out
}

/// Subjects that mean "everyone": granting anything to them is critical.
pub fn is_broad_subject(s: &Subject) -> bool {
    match s.kind.as_str() {
        "Group" => matches!(
            s.name.as_str(),
            "system:authenticated"
                | "system:unauthenticated"
                | "system:anonymous"
                | "system:serviceaccounts"
        ),
        "User" => s.name == "system:anonymous",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], res: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            api_groups: groups.iter().map(|s| s.to_string()).collect(),
            resources: res.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn reasons_follow_the_rules() {
        assert_eq!(
            high_privilege_reasons(&[rule(&["*"], &[""], &["pods"])]),
            vec!["wildcard verbs"]
        );
        assert_eq!(
            high_privilege_reasons(&[rule(&["get"], &[""], &["secrets"])]),
            vec!["reads secrets"]
        );
        assert_eq!(
            high_privilege_reasons(&[rule(&["create"], &[""], &["pods/exec"])]),
            vec!["pods/exec"]
        );
        assert_eq!(
            high_privilege_reasons(&[rule(
                &["patch"],
                &["rbac.authorization.k8s.io"],
                &["clusterrolebindings"]
            )]),
            vec!["RBAC writes"]
        );
        assert_eq!(
            high_privilege_reasons(&[rule(&["create"], &[""], &["serviceaccounts/token"])]),
            vec!["serviceaccounts/token"]
        );
        assert!(
            high_privilege_reasons(&[rule(&["get", "list"], &[""], &["pods", "configmaps"])])
                .is_empty()
        );
        // RBAC writes in another API group are not RBAC writes.
        assert!(
            high_privilege_reasons(&[rule(&["create"], &["example.com"], &["roles"])]).is_empty()
        );
    }

    #[test]
    fn builtins() {
        assert!(builtin("ClusterRole", "cluster-admin").unwrap().is_high());
        assert!(
            !builtin("ClusterRole", "system:basic-user")
                .unwrap()
                .is_high()
        );
        assert_eq!(builtin("Role", "cluster-admin"), None);
        assert_eq!(builtin("ClusterRole", "my-role"), None);
    }
}
