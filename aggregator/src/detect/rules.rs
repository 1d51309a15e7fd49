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
pub const NODE_ADDRESS_WRITE: RuleDef = RuleDef {
    id: "CT1547-006",
    analytic: "AN1547",
    techniques: &["T1550.001", "T1562"],
    title: "Node addresses written by someone other than the node",
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
    NODE_ADDRESS_WRITE,
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

/// Where `docs/RUNBOOKS.md` is published by default; `serve --runbook-base-url`
/// (`CREDTRAIL_RUNBOOK_BASE_URL`) points alerts at your own copy or wiki.
pub const DEFAULT_RUNBOOK_BASE: &str =
    concat!(env!("CARGO_PKG_REPOSITORY"), "/blob/main/docs/RUNBOOKS.md");

static RUNBOOK_BASE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Longest runbook base URL accepted.
const MAX_RUNBOOK_BASE: usize = 1024;

/// Why a runbook base URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunbookBaseError {
    #[error("the runbook base URL must start with https:// or http://")]
    Scheme,
    #[error("the runbook base URL must have no fragment (#), spaces or control characters")]
    Characters,
    #[error("the runbook base URL is longer than {MAX_RUNBOOK_BASE} bytes")]
    TooLong,
    #[error("the runbook base URL was already set")]
    AlreadySet,
}

/// Checks a runbook base URL: http(s), no fragment, printable, bounded.
pub fn check_runbook_base(url: &str) -> Result<(), RunbookBaseError> {
    if url.len() > MAX_RUNBOOK_BASE {
        return Err(RunbookBaseError::TooLong);
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(RunbookBaseError::Scheme)?;
    if rest.is_empty()
        || url
            .chars()
            .any(|c| c == '#' || c.is_whitespace() || c.is_control())
    {
        return Err(RunbookBaseError::Characters);
    }
    Ok(())
}

/// Sets the process-wide runbook base URL, once, at start-up.
pub fn set_runbook_base(url: &str) -> Result<(), RunbookBaseError> {
    check_runbook_base(url)?;
    RUNBOOK_BASE
        .set(url.to_owned())
        .map_err(|_| RunbookBaseError::AlreadySet)
}

/// The runbook of a rule: `<base>#<rule id in lower case>` (the heading
/// anchors of docs/RUNBOOKS.md); the base alone for a rule id we do not know.
pub fn runbook_url(rule_id: &str) -> String {
    let base = RUNBOOK_BASE
        .get()
        .map_or(DEFAULT_RUNBOOK_BASE, String::as_str);
    runbook_url_with(base, rule_id)
}

fn runbook_url_with(base: &str, rule_id: &str) -> String {
    match RULES.iter().find(|r| r.id == rule_id) {
        Some(r) => format!("{base}#{}", r.id.to_ascii_lowercase()),
        None => base.to_owned(),
    }
}

#[cfg(test)]
mod runbook_tests {
    use super::*;

    #[test]
    fn every_rule_has_a_runbook_section() {
        let doc = include_str!("../../../docs/RUNBOOKS.md");
        for r in RULES {
            let url = runbook_url_with("https://wiki.example/rb", r.id);
            let anchor = url.rsplit_once('#').unwrap().1;
            assert_eq!(anchor, r.id.to_ascii_lowercase());
            // A heading that is exactly the rule id makes that anchor on every renderer.
            assert!(
                doc.lines().any(|l| l == format!("## {}", r.id)),
                "docs/RUNBOOKS.md has no `## {}` section",
                r.id
            );
        }
        // Ids from elsewhere (the store, a newer version) never make up an anchor.
        assert_eq!(
            runbook_url_with("https://wiki.example/rb", "CT9999\"><script>"),
            "https://wiki.example/rb"
        );
    }

    #[test]
    fn runbook_base_urls_are_checked() {
        assert!(check_runbook_base("https://wiki.example/soc/credtrail").is_ok());
        assert!(check_runbook_base("http://10.0.0.1/rb.md").is_ok());
        assert_eq!(
            check_runbook_base("javascript:alert(1)"),
            Err(RunbookBaseError::Scheme)
        );
        assert_eq!(
            check_runbook_base("https://"),
            Err(RunbookBaseError::Characters)
        );
        assert_eq!(
            check_runbook_base("https://a/b#c"),
            Err(RunbookBaseError::Characters)
        );
        assert_eq!(
            check_runbook_base("https://a/b\nc"),
            Err(RunbookBaseError::Characters)
        );
        let long = format!("https://a/{}", "x".repeat(2000));
        assert_eq!(check_runbook_base(&long), Err(RunbookBaseError::TooLong));
        assert!(DEFAULT_RUNBOOK_BASE.starts_with("https://"));
        assert!(check_runbook_base(DEFAULT_RUNBOOK_BASE).is_ok());
    }

    #[test]
    fn a_space_a_control_character_or_a_byte_too_many_is_refused() {
        for bad in ["https://a/b c", "https://a/b\u{7f}c", "https://a/b\u{85}c"] {
            assert_eq!(
                check_runbook_base(bad),
                Err(RunbookBaseError::Characters),
                "{bad:?}"
            );
        }
        let at = |n: usize| format!("https://a/{}", "x".repeat(n - "https://a/".len()));
        assert_eq!(check_runbook_base(&at(MAX_RUNBOOK_BASE)), Ok(()));
        assert_eq!(
            check_runbook_base(&at(MAX_RUNBOOK_BASE + 1)),
            Err(RunbookBaseError::TooLong)
        );
        // Refused at start-up, before anything is set.
        assert_eq!(
            set_runbook_base("ftp://wiki/rb"),
            Err(RunbookBaseError::Scheme)
        );
    }

    #[test]
    fn an_alerts_runbook_is_its_rules_section_of_the_runbooks() {
        let url = runbook_url("CT1547-002");
        assert!(url.starts_with("http"), "{url}");
        assert!(url.ends_with("#ct1547-002"), "{url}");
        assert_eq!(
            runbook_url("CT0000-000"),
            url.trim_end_matches("#ct1547-002")
        );
    }

    #[test]
    fn a_client_certificate_credential_adds_its_techniques_and_a_token_keeps_the_rules() {
        let x509 = credential_techniques(&OFF_NODE, Some("X509SHA256=ab"));
        assert_eq!(x509, ["T1552.004", "T1078"]);
        for c in [Some("JTI=ab"), None] {
            assert_eq!(
                credential_techniques(&LONG_LIVED_MINT, c),
                ["T1528", "T1098.001"]
            );
        }
    }
}
