//! MITRE ATT&CK names and tactics of the techniques our rules name
//! (`detect/rules.rs`), for encodings that carry them (OCSF `attacks`).
//! ATT&CK Enterprise v17.

/// ATT&CK version the names and tactics below come from.
pub const ATTACK_VERSION: &str = "v17";

/// One technique: its id, name, and (for a sub-technique) its parent's id and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Technique {
    pub id: &'static str,
    pub name: &'static str,
    pub parent: Option<(&'static str, &'static str)>,
    /// Tactic ids and names, in ATT&CK's order.
    pub tactics: &'static [(&'static str, &'static str)],
}

const CREDENTIAL_ACCESS: (&str, &str) = ("TA0006", "Credential Access");
const DEFENSE_EVASION: (&str, &str) = ("TA0005", "Defense Evasion");
const LATERAL_MOVEMENT: (&str, &str) = ("TA0008", "Lateral Movement");
const PERSISTENCE: (&str, &str) = ("TA0003", "Persistence");
const PRIVILEGE_ESCALATION: (&str, &str) = ("TA0004", "Privilege Escalation");
const INITIAL_ACCESS: (&str, &str) = ("TA0001", "Initial Access");

/// Every technique a rule may name.
pub const TECHNIQUES: &[Technique] = &[
    Technique {
        id: "T1528",
        name: "Steal Application Access Token",
        parent: None,
        tactics: &[CREDENTIAL_ACCESS],
    },
    Technique {
        id: "T1550.001",
        name: "Application Access Token",
        parent: Some(("T1550", "Use Alternate Authentication Material")),
        tactics: &[DEFENSE_EVASION, LATERAL_MOVEMENT],
    },
    Technique {
        id: "T1098.001",
        name: "Additional Cloud Credentials",
        parent: Some(("T1098", "Account Manipulation")),
        tactics: &[PERSISTENCE, PRIVILEGE_ESCALATION],
    },
    Technique {
        id: "T1098.006",
        name: "Additional Container Cluster Roles",
        parent: Some(("T1098", "Account Manipulation")),
        tactics: &[PERSISTENCE, PRIVILEGE_ESCALATION],
    },
    Technique {
        id: "T1552.004",
        name: "Private Keys",
        parent: Some(("T1552", "Unsecured Credentials")),
        tactics: &[CREDENTIAL_ACCESS],
    },
    Technique {
        id: "T1562",
        name: "Impair Defenses",
        parent: None,
        tactics: &[DEFENSE_EVASION],
    },
    Technique {
        id: "T1078",
        name: "Valid Accounts",
        parent: None,
        tactics: &[
            DEFENSE_EVASION,
            PERSISTENCE,
            PRIVILEGE_ESCALATION,
            INITIAL_ACCESS,
        ],
    },
];

/// The technique with this id, if a rule can name it.
pub fn technique(id: &str) -> Option<&'static Technique> {
    TECHNIQUES.iter().find(|t| t.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::rules::{RULES, credential_techniques};

    #[test]
    fn every_rule_technique_is_known() {
        for r in RULES {
            for cred in [None, Some("X509SHA256=ab")] {
                for t in credential_techniques(r, cred) {
                    let known = technique(&t).unwrap_or_else(|| panic!("{}: {t} unknown", r.id));
                    assert!(!known.tactics.is_empty());
                    assert_eq!(known.parent.is_some(), t.contains('.'), "{t}");
                }
            }
        }
    }
}
