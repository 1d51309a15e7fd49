//! What an RBAC role allows: high privilege is decided by its rules, not
//! only its name. Each reason names the rule that made it (`rules[2]: ...`).
//! Built-in roles come from `builtin.rs`.

use crate::audit::{PolicyRule, Subject};

pub use super::builtin::builtin;

/// Reason prefix of "reads secrets": high only when the grant reaches beyond
/// one namespace's own secrets (a ClusterRoleBinding).
pub const SECRETS_READ: &str = "reads secrets";

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

fn has(list: &[String], any: &[&str]) -> bool {
    list.iter().any(|v| any.contains(&v.as_str()))
}

fn group_ok(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups.is_empty() || has(&rule.api_groups, &["*", group])
}

/// Whether the rule's resources name `res` (exactly, `*`, or `*/<sub>` for
/// a subresource).
fn names_resource(rule: &PolicyRule, res: &str) -> bool {
    rule.resources.iter().any(|r| {
        r == "*"
            || r == res
            || res
                .split_once('/')
                .is_some_and(|(_, sub)| r.strip_prefix("*/") == Some(sub))
    })
}

const WRITE_VERBS: &[&str] = &[
    "*",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

fn rule_text(i: usize, r: &PolicyRule) -> String {
    let groups: Vec<String> = r
        .api_groups
        .iter()
        .map(|g| {
            if g.is_empty() {
                "core".to_owned()
            } else {
                g.clone()
            }
        })
        .collect();
    let mut s = format!(
        "rules[{i}]: verbs [{}] on [{}]",
        r.verbs.join(", "),
        r.resources.join(", ")
    );
    if !groups.is_empty() {
        s.push_str(&format!(" in [{}]", groups.join(", ")));
    }
    if !r.resource_names.is_empty() {
        s.push_str(&format!(" named [{}]", r.resource_names.join(", ")));
    }
    s
}

/// Why these rules are high privilege (empty: they are not). Each reason is
/// `<what> (<the rule>)`.
pub fn high_privilege_reasons(rules: &[PolicyRule]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let mut add = |what: &str| {
            let s = format!("{what} ({})", rule_text(i, r));
            if !out.iter().any(|o| o.starts_with(what)) {
                out.push(s);
            }
        };
        let verbs = &r.verbs;
        let res = &r.resources;
        let any_verb = has(verbs, &["*"]);
        if res.is_empty() {
            continue; // nonResourceURLs only: /healthz, /metrics, discovery
        }
        if any_verb {
            add("wildcard verbs");
        }
        if has(res, &["*"]) {
            add("wildcard resources");
            continue; // everything below is implied
        }
        for v in ["escalate", "bind", "impersonate"] {
            if has(verbs, &[v]) {
                add(v);
            }
        }
        let writes = has(verbs, WRITE_VERBS);
        let core = group_ok(r, "");
        if core && names_resource(r, "secrets") && has(verbs, &["*", "get", "list", "watch"]) {
            add(SECRETS_READ);
        }
        if core && names_resource(r, "pods") && has(verbs, &["*", "create"]) {
            add("creates pods");
        }
        if core
            && (names_resource(r, "pods/exec") || names_resource(r, "pods/attach"))
            && has(verbs, &["*", "create", "get"])
        {
            add("pods/exec or pods/attach");
        }
        if core
            && names_resource(r, "pods/ephemeralcontainers")
            && has(verbs, &["*", "create", "update", "patch"])
        {
            add("pods/ephemeralcontainers");
        }
        if core && names_resource(r, "nodes/proxy") && !verbs.is_empty() {
            add("nodes/proxy");
        }
        if core && names_resource(r, "serviceaccounts/token") && has(verbs, &["*", "create"]) {
            add("serviceaccounts/token");
        }
        if group_ok(r, "admissionregistration.k8s.io")
            && (names_resource(r, "validatingwebhookconfigurations")
                || names_resource(r, "mutatingwebhookconfigurations"))
            && writes
        {
            add("admission webhook configuration writes");
        }
        let certs = group_ok(r, "certificates.k8s.io");
        if certs
            && (names_resource(r, "certificatesigningrequests/approval")
                && has(verbs, &["*", "update", "patch"])
                || names_resource(r, "certificatesigningrequests/status")
                    && has(verbs, &["*", "update", "patch"])
                || names_resource(r, "signers") && has(verbs, &["*", "approve", "sign"]))
        {
            add("certificate signing request approval or signing");
        }
        if group_ok(r, "rbac.authorization.k8s.io")
            && [
                "roles",
                "rolebindings",
                "clusterroles",
                "clusterrolebindings",
            ]
            .iter()
            .any(|x| names_resource(r, x))
            && writes
        {
            add("RBAC writes");
        }
    }
    out
}

/// The namespace whose Secrets hand out the cluster: bootstrap tokens (join
/// a node, get a node credential) and the control plane's own service-account
/// tokens live there.
pub const CONTROL_PLANE_NAMESPACE: &str = "kube-system";

/// The reasons that hold for a grant through a binding of `binding_kind` in
/// `namespace`: reading secrets through a RoleBinding reaches one
/// namespace's own secrets only, which is not high privilege by itself,
/// except in `kube-system`.
pub fn reasons_for_binding(reasons: &[String], binding_kind: &str, namespace: &str) -> Vec<String> {
    reasons
        .iter()
        .filter_map(|r| {
            if binding_kind != "RoleBinding" || !r.starts_with(SECRETS_READ) {
                Some(r.clone())
            } else if namespace == CONTROL_PLANE_NAMESPACE {
                Some(format!(
                    "{r} in {CONTROL_PLANE_NAMESPACE} (bootstrap tokens and control-plane service-account tokens)"
                ))
            } else {
                None
            }
        })
        .collect()
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

/// `system:masters`: the group the authorizer treats as cluster-admin (and the
/// bootstrap `cluster-admin` binding binds); a binding to it counts as one.
pub fn is_masters(s: &Subject) -> bool {
    s.kind == "Group" && s.name == "system:masters"
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

    fn whats(rules: &[PolicyRule]) -> Vec<String> {
        high_privilege_reasons(rules)
            .into_iter()
            .map(|r| r.split(" (").next().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn every_rule_of_the_list_is_high_and_named() {
        let cases: &[(PolicyRule, &str)] = &[
            (rule(&["*"], &[""], &["configmaps"]), "wildcard verbs"),
            (rule(&["get"], &["apps"], &["*"]), "wildcard resources"),
            (
                rule(
                    &["escalate"],
                    &["rbac.authorization.k8s.io"],
                    &["clusterroles"],
                ),
                "escalate",
            ),
            (
                rule(&["bind"], &["rbac.authorization.k8s.io"], &["clusterroles"]),
                "bind",
            ),
            (
                rule(&["impersonate"], &[""], &["users", "groups"]),
                "impersonate",
            ),
            (rule(&["list"], &[""], &["secrets"]), SECRETS_READ),
            (rule(&["create"], &[""], &["pods"]), "creates pods"),
            (
                rule(&["create"], &[""], &["pods/exec"]),
                "pods/exec or pods/attach",
            ),
            (
                rule(&["get"], &[""], &["pods/attach"]),
                "pods/exec or pods/attach",
            ),
            (
                rule(&["create"], &[""], &["*/exec"]),
                "pods/exec or pods/attach",
            ),
            (
                rule(&["patch"], &[""], &["pods/ephemeralcontainers"]),
                "pods/ephemeralcontainers",
            ),
            (rule(&["get"], &[""], &["nodes/proxy"]), "nodes/proxy"),
            (
                rule(&["create"], &[""], &["serviceaccounts/token"]),
                "serviceaccounts/token",
            ),
            (
                rule(
                    &["create"],
                    &["admissionregistration.k8s.io"],
                    &["mutatingwebhookconfigurations"],
                ),
                "admission webhook configuration writes",
            ),
            (
                rule(
                    &["update"],
                    &["certificates.k8s.io"],
                    &["certificatesigningrequests/approval"],
                ),
                "certificate signing request approval or signing",
            ),
            (
                rule(&["approve"], &["certificates.k8s.io"], &["signers"]),
                "certificate signing request approval or signing",
            ),
            (
                rule(
                    &["patch"],
                    &["rbac.authorization.k8s.io"],
                    &["clusterrolebindings"],
                ),
                "RBAC writes",
            ),
        ];
        for (r, want) in cases {
            let got = high_privilege_reasons(std::slice::from_ref(r));
            assert!(got.iter().any(|g| g.starts_with(want)), "{r:?}: {got:?}");
            assert!(
                got[0].contains("rules[0]: verbs ["),
                "names the rule: {got:?}"
            );
        }
    }

    #[test]
    fn harmless_rules_are_low() {
        for r in [
            rule(&["get", "list", "watch"], &[""], &["pods", "configmaps"]),
            rule(&["create"], &["example.com"], &["roles"]),
            rule(
                &["get", "list"],
                &["admissionregistration.k8s.io"],
                &["validatingwebhookconfigurations"],
            ),
            rule(
                &["create", "get"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            ),
            rule(&["get"], &[""], &["pods/log"]),
            rule(
                &["get"],
                &["rbac.authorization.k8s.io"],
                &["clusterrolebindings"],
            ),
            rule(&["create"], &["apps"], &["pods"]),
        ] {
            assert!(
                high_privilege_reasons(std::slice::from_ref(&r)).is_empty(),
                "{r:?}"
            );
        }
        // nonResourceURLs only.
        let mut nr = rule(&["*"], &[], &[]);
        nr.non_resource_ur_ls = vec!["/metrics".into()];
        assert!(high_privilege_reasons(&[nr]).is_empty());
    }

    #[test]
    fn the_reason_names_the_rule_that_made_it() {
        let reasons = high_privilege_reasons(&[
            rule(&["get"], &[""], &["pods"]),
            rule(
                &["escalate"],
                &["rbac.authorization.k8s.io"],
                &["clusterroles"],
            ),
        ]);
        assert_eq!(
            reasons,
            [
                "escalate (rules[1]: verbs [escalate] on [clusterroles] in [rbac.authorization.k8s.io])"
            ]
        );
        assert_eq!(
            whats(&[rule(&["*"], &["*"], &["*"])]),
            ["wildcard verbs", "wildcard resources"]
        );
    }

    #[test]
    fn secrets_read_counts_only_beyond_one_namespace() {
        let reasons = high_privilege_reasons(&[rule(&["get"], &[""], &["secrets"])]);
        assert_eq!(
            reasons_for_binding(&reasons, "ClusterRoleBinding", "").len(),
            1
        );
        assert!(reasons_for_binding(&reasons, "RoleBinding", "shop").is_empty());
        assert_eq!(
            reasons_for_binding(&reasons, "RoleBinding", "kube-system").len(),
            1
        );
    }
}

#[cfg(test)]
#[path = "rbac_tests.rs"]
mod more_tests;
