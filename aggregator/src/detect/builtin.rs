//! The built-in ClusterRoles and ClusterRoleBindings every cluster has,
//! known without the audit stream: the Kubernetes bootstrap policy embedded
//! at build time (`bootstrap/*.yaml`, about release 1.16), aggregated roles
//! (`admin`, `edit`, `view`) filled from the roles their selectors match, plus
//! the defaults later releases added ([`LATER`]).

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::Value;

use crate::audit::{PolicyRule, RoleRef, Subject, read_object};

use super::rbac::{Privilege, high_privilege_reasons};

const FILES: &[&str] = &[
    include_str!("bootstrap/cluster-roles.yaml"),
    include_str!("bootstrap/controller-roles.yaml"),
    include_str!("bootstrap/cluster-role-bindings.yaml"),
    include_str!("bootstrap/controller-role-bindings.yaml"),
];

/// Default roles and bindings added after the embedded snapshot, from
/// https://kubernetes.io/docs/reference/access-authn-authz/rbac/#default-roles-and-role-bindings
/// ("API discovery roles" and "User-facing roles"): `system:monitoring`
/// (read access to `/healthz`, `/livez`, `/readyz`, their checks and
/// `/metrics`; bound to the `system:monitoring` group) and
/// `system:service-account-issuer-discovery` (read access to the service
/// account issuer discovery documents `/.well-known/openid-configuration`
/// and `/openid/v1/jwks`; bound to the `system:serviceaccounts` group).
/// Both grant non-resource reads only.
const LATER: &str = r#"
items:
- kind: ClusterRole
  metadata: {name: "system:monitoring"}
  rules:
  - nonResourceURLs: [/healthz, /healthz/*, /livez, /livez/*, /readyz, /readyz/*, /metrics]
    verbs: [get]
- kind: ClusterRoleBinding
  metadata: {name: "system:monitoring"}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:monitoring"}
  subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:monitoring"}]
- kind: ClusterRole
  metadata: {name: "system:service-account-issuer-discovery"}
  rules:
  - nonResourceURLs: [/.well-known/openid-configuration, /openid/v1/jwks]
    verbs: [get]
- kind: ClusterRoleBinding
  metadata: {name: "system:service-account-issuer-discovery"}
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:service-account-issuer-discovery"}
  subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:serviceaccounts"}]
"#;

/// A built-in ClusterRole.
#[derive(Debug, Clone)]
pub struct BuiltinRole {
    pub rules: Vec<PolicyRule>,
    pub reasons: Vec<String>,
}

/// A built-in ClusterRoleBinding.
#[derive(Debug, Clone)]
pub struct BuiltinBinding {
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
}

/// A ClusterRole as read from the bootstrap files, before aggregation.
struct RawRole {
    name: String,
    rules: Vec<PolicyRule>,
    labels: HashMap<String, String>,
    /// `aggregationRule.clusterRoleSelectors[].matchLabels`.
    selectors: Vec<HashMap<String, String>>,
}

struct Table {
    roles: HashMap<String, BuiltinRole>,
    bindings: HashMap<String, BuiltinBinding>,
}

fn labels(item: &Value) -> HashMap<String, String> {
    item.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn selectors(item: &Value) -> Vec<HashMap<String, String>> {
    item.pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| {
                    s.get("matchLabels")
                        .and_then(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn load() -> Table {
    let mut items: Vec<Value> = Vec::new();
    for text in FILES.iter().chain(std::iter::once(&LATER)) {
        // Embedded and tested (`the_bootstrap_policy_is_known`): never fails.
        if let Ok(doc) = serde_norway::from_str::<Value>(text)
            && let Some(list) = doc.get("items").and_then(Value::as_array)
        {
            items.extend(list.iter().cloned());
        }
    }
    let mut raw_roles: Vec<RawRole> = Vec::new();
    let mut bindings = HashMap::new();
    for item in &items {
        let o = read_object(item, "bootstrap");
        let Some(name) = o.metadata.name.clone() else {
            continue;
        };
        match o.kind.as_deref() {
            Some("ClusterRole") => raw_roles.push(RawRole {
                name,
                rules: o.rules.unwrap_or_default(),
                labels: labels(item),
                selectors: selectors(item),
            }),
            Some("ClusterRoleBinding") => {
                if let Some(role_ref) = o.role_ref {
                    bindings.insert(
                        name,
                        BuiltinBinding {
                            role_ref,
                            subjects: o.subjects.unwrap_or_default(),
                        },
                    );
                }
            }
            _ => {}
        }
    }
    // Aggregation, to a fixed point (admin aggregates edit, which aggregates view).
    let mut rules: HashMap<String, Vec<PolicyRule>> = raw_roles
        .iter()
        .map(|r| (r.name.clone(), r.rules.clone()))
        .collect();
    for _ in 0..4 {
        for agg_role in raw_roles.iter().filter(|r| !r.selectors.is_empty()) {
            let mut agg: Vec<PolicyRule> = Vec::new();
            for other in &raw_roles {
                let matched = agg_role.selectors.iter().any(|s| {
                    !s.is_empty() && s.iter().all(|(k, v)| other.labels.get(k) == Some(v))
                });
                if matched && other.name != agg_role.name {
                    for r in rules.get(&other.name).into_iter().flatten() {
                        if !agg.contains(r) {
                            agg.push(r.clone());
                        }
                    }
                }
            }
            rules.insert(agg_role.name.clone(), agg);
        }
    }
    let roles = rules
        .into_iter()
        .map(|(name, rules)| {
            let reasons = high_privilege_reasons(&rules);
            (name, BuiltinRole { rules, reasons })
        })
        .collect();
    Table { roles, bindings }
}

static TABLE: LazyLock<Table> = LazyLock::new(load);

/// A built-in ClusterRole's rules and reasons.
pub fn builtin_role(name: &str) -> Option<&'static BuiltinRole> {
    TABLE.roles.get(name)
}

/// A built-in ClusterRoleBinding's state.
pub fn builtin_binding(kind: &str, name: &str) -> Option<&'static BuiltinBinding> {
    (kind == "ClusterRoleBinding")
        .then(|| TABLE.bindings.get(name))
        .flatten()
}

/// Built-in privilege of a cluster role by name, if it is a built-in.
pub fn builtin(kind: &str, name: &str) -> Option<Privilege> {
    if kind != "ClusterRole" {
        return None;
    }
    let r = builtin_role(name)?;
    Some(if r.reasons.is_empty() {
        Privilege::Low(format!(
            "built-in ClusterRole {name} grants nothing high-privilege"
        ))
    } else {
        Privilege::High(
            r.reasons
                .iter()
                .map(|x| format!("built-in ClusterRole {name}: {x}"))
                .collect(),
        )
    })
}

/// Every built-in ClusterRoleBinding, by name (for "who else holds this role").
pub fn builtin_bindings() -> impl Iterator<Item = (&'static str, &'static BuiltinBinding)> {
    TABLE.bindings.iter().map(|(k, v)| (k.as_str(), v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_policy_is_known() {
        // 25 + 27 bootstrap roles, 2 later ones; 10 + 27 bindings, 2 later.
        assert_eq!(TABLE.roles.len(), 54);
        assert_eq!(TABLE.bindings.len(), 39);
        let high = |n: &str| builtin("ClusterRole", n).unwrap().is_high();
        for n in [
            "cluster-admin",
            "admin",
            "edit",
            "system:controller:clusterrole-aggregation-controller",
            "system:kube-controller-manager",
            "system:node",
            "system:controller:certificate-controller",
            "system:kubelet-api-admin",
        ] {
            assert!(high(n), "{n}: {:?}", builtin("ClusterRole", n));
        }
        for n in [
            "view",
            "system:basic-user",
            "system:discovery",
            "system:public-info-viewer",
            "system:monitoring",
            "system:service-account-issuer-discovery",
            "system:node-bootstrapper",
        ] {
            assert!(!high(n), "{n}: {:?}", builtin("ClusterRole", n));
        }
        assert_eq!(builtin("Role", "cluster-admin"), None);
        assert_eq!(builtin("ClusterRole", "my-role"), None);
    }

    #[test]
    fn the_alert_reason_names_escalate_on_clusterroles() {
        let Some(Privilege::High(why)) = builtin(
            "ClusterRole",
            "system:controller:clusterrole-aggregation-controller",
        ) else {
            panic!()
        };
        assert!(
            why.iter()
                .any(|w| w.contains("escalate (rules[") && w.contains("clusterroles")),
            "{why:?}"
        );
    }

    #[test]
    fn aggregated_roles_hold_their_parts() {
        let admin = builtin_role("admin").unwrap();
        let edit = builtin_role("edit").unwrap();
        let view = builtin_role("view").unwrap();
        assert!(admin.rules.len() > edit.rules.len() && edit.rules.len() > view.rules.len());
        assert!(admin.reasons.iter().any(|r| r.starts_with("RBAC writes")));
        assert!(view.reasons.is_empty(), "{:?}", view.reasons);
    }

    #[test]
    fn bindings_are_known_and_masters_is_cluster_admin() {
        let b = builtin_binding("ClusterRoleBinding", "cluster-admin").unwrap();
        assert_eq!(b.role_ref.name, "cluster-admin");
        assert_eq!(b.subjects[0].name, "system:masters");
        assert!(builtin_binding("RoleBinding", "cluster-admin").is_none());
    }

    #[test]
    fn the_embedded_copies_equal_the_shared_test_data() {
        let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/k8s-rbac-bootstrap");
        if !shared.is_dir() {
            eprintln!("skip: {} not present", shared.display());
            return;
        }
        for (file, text) in [
            "cluster-roles.yaml",
            "controller-roles.yaml",
            "cluster-role-bindings.yaml",
            "controller-role-bindings.yaml",
        ]
        .iter()
        .zip(FILES)
        {
            assert_eq!(
                std::fs::read_to_string(shared.join(file)).unwrap(),
                *text,
                "{file}"
            );
        }
    }
}
