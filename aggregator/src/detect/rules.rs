//! The rules: stable ids, ATT&CK analytic and techniques, a title.

/// One detection rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleDef {
    pub id: &'static str,
    pub analytic: &'static str,
    pub techniques: &'static [&'static str],
    pub title: &'static str,
}

pub const OFF_NODE: RuleDef = RuleDef {
    id: "CT1547-001",
    analytic: "AN1547",
    techniques: &["T1550.001", "T1528"],
    title: "Credential used from another node or pod of the cluster",
};
pub const OUTSIDE: RuleDef = RuleDef {
    id: "CT1547-002",
    analytic: "AN1547",
    techniques: &["T1550.001", "T1528"],
    title: "Credential used from outside the cluster",
};
pub const JTI_TWO_PLACES: RuleDef = RuleDef {
    id: "CT1547-003",
    analytic: "AN1547",
    techniques: &["T1550.001", "T1528"],
    title: "One bound token (JTI) used from two places",
};
pub const NEVER_READ: RuleDef = RuleDef {
    id: "CT1547-004",
    analytic: "AN1547",
    techniques: &["T1550.001", "T1528"],
    title: "Credential used from its node by a process that never read it",
};
pub const LONG_LIVED_MINT: RuleDef = RuleDef {
    id: "CT1547-005",
    analytic: "AN1547",
    techniques: &["T1528", "T1098.001"],
    title: "Long-lived service-account token minted outside approved automation",
};
pub const HIGH_PRIV_GRANT: RuleDef = RuleDef {
    id: "CT1579-001",
    analytic: "AN1579",
    techniques: &["T1098.006"],
    title: "High-privilege role granted outside approved automation",
};
pub const BROAD_GRANT: RuleDef = RuleDef {
    id: "CT1579-002",
    analytic: "AN1579",
    techniques: &["T1098.006"],
    title: "Role granted to every user (system:authenticated / anonymous)",
};
pub const FAILED_GRANT: RuleDef = RuleDef {
    id: "CT1579-003",
    analytic: "AN1579",
    techniques: &["T1098.006"],
    title: "Failed attempt to grant a role",
};
pub const BLIND_GRANT: RuleDef = RuleDef {
    id: "CT1579-004",
    analytic: "AN1579",
    techniques: &["T1098.006"],
    title: "Binding changed, audit level too low to see role and subjects",
};

/// Every rule, for documentation and the API.
pub const RULES: &[RuleDef] = &[
    OFF_NODE,
    OUTSIDE,
    JTI_TWO_PLACES,
    NEVER_READ,
    LONG_LIVED_MINT,
    HIGH_PRIV_GRANT,
    BROAD_GRANT,
    FAILED_GRANT,
    BLIND_GRANT,
];

/// Techniques for a credential rule: client certificates add T1552.004.
pub fn credential_techniques(rule: &RuleDef, credential_id: Option<&str>) -> Vec<String> {
    let mut t: Vec<String> = rule.techniques.iter().map(|s| (*s).to_owned()).collect();
    if credential_id.is_some_and(|c| c.starts_with("X509SHA256=")) {
        t = vec!["T1552.004".to_owned(), "T1078".to_owned()];
    }
    t
}
