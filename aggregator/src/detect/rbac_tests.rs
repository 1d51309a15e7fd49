//! More verdicts of `rbac.rs` (what makes a rule high privilege, who counts
//! as everyone), written against the survivors of `cargo xtask mutants
//! --file aggregator/src/detect/rbac.rs`.

use super::*;

fn rule(verbs: &[&str], groups: &[&str], res: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        api_groups: groups.iter().map(|s| s.to_string()).collect(),
        resources: res.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

const CSR: &str = "certificate signing request approval or signing";

fn is_csr_power(r: PolicyRule) -> bool {
    high_privilege_reasons(&[r])
        .iter()
        .any(|x| x.starts_with(CSR))
}

#[test]
fn certificate_signing_power_needs_the_right_group_resource_and_verb() {
    let g = "certificates.k8s.io";
    // Each way in.
    assert!(is_csr_power(rule(
        &["patch"],
        &[g],
        &["certificatesigningrequests/approval"]
    )));
    assert!(is_csr_power(rule(
        &["update"],
        &[g],
        &["certificatesigningrequests/status"]
    )));
    assert!(is_csr_power(rule(&["sign"], &[g], &["signers"])));
    // The right resource with a harmless verb is not.
    assert!(!is_csr_power(rule(
        &["get"],
        &[g],
        &["certificatesigningrequests/approval"]
    )));
    assert!(!is_csr_power(rule(
        &["get", "list"],
        &[g],
        &["certificatesigningrequests/status"]
    )));
    assert!(!is_csr_power(rule(&["get"], &[g], &["signers"])));
    // The right verb on another resource of the group is not.
    assert!(!is_csr_power(rule(
        &["update", "approve"],
        &[g],
        &["certificatesigningrequests"]
    )));
    // Nor the same names in another API group.
    assert!(!is_csr_power(rule(
        &["approve", "sign", "update"],
        &["example.com"],
        &[
            "signers",
            "certificatesigningrequests/approval",
            "certificatesigningrequests/status"
        ]
    )));
}

#[test]
fn everyone_is_the_broad_groups_and_the_anonymous_user() {
    let s = |kind: &str, name: &str| Subject {
        kind: kind.into(),
        name: name.into(),
        namespace: None,
    };
    for (kind, name) in [
        ("Group", "system:authenticated"),
        ("Group", "system:unauthenticated"),
        ("Group", "system:anonymous"),
        ("Group", "system:serviceaccounts"),
        ("User", "system:anonymous"),
    ] {
        assert!(is_broad_subject(&s(kind, name)), "{kind} {name}");
    }
    for (kind, name) in [
        ("User", "bob"),
        ("User", "system:authenticated"),
        ("Group", "developers"),
        ("ServiceAccount", "system:anonymous"),
    ] {
        assert!(!is_broad_subject(&s(kind, name)), "{kind} {name}");
    }
    assert!(is_masters(&s("Group", "system:masters")));
    assert!(!is_masters(&s("User", "system:masters")));
}
