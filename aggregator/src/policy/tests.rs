//! The policy as written to the policy as used: every section kept as
//! written, every mistake refused with its place named, and the questions the
//! detector asks of it (trusted range, allowances, approved automation,
//! listed roles) answered right.

use chrono::{DateTime, Duration, Utc};

use super::file::PolicyFile;
use super::validate::{parse_duration, validate};
use super::{Automation, Pattern, Policy};

/// Every section, each entry valid.
const VALID: &str = r#"
cluster:
  node_cidrs: [10.0.0.0/16, 10.9.0.7]
trusted_ranges:
  - name: vpn
    cidrs: [192.168.0.0/24]
identities:
  - username: alice
    cidrs: [192.168.1.0/24]
  - username: "system:node:*"
    nodes: [node-a]
automation:
  - name: ci
    username: system:serviceaccount:ci:deployer
    credential_ids: ["*"]
    cidrs: [10.50.0.0/24]
high_privilege_roles: [secret-reader, ClusterRole/ops-admin, Role/shop/editor]
detection:
  learning_window: 24h
  join_window: 10m
maintenance_windows:
  - name: upgrade
    start: "2026-03-01T10:00:00Z"
    end: "2026-03-01T12:00:00Z"
suppressions:
  - id: s1
    owner: ops
    reason: scanner
    created: "2026-03-01T00:00:00Z"
    expires: "2026-04-01T00:00:00Z"
    match: {rule: CT1547-002}
  - id: s2
    owner: ops
    reason: vpn
    expires: "2036-04-01T00:00:00Z"
    match: {source_cidr: 192.168.0.0/24}
"#;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn now() -> DateTime<Utc> {
    at("2026-03-01T09:00:00Z")
}

fn check(yaml: &str) -> Result<Policy, Vec<String>> {
    let file: PolicyFile = serde_norway::from_str(yaml).unwrap();
    validate(file, now())
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

#[test]
fn a_valid_policy_keeps_every_entry_as_written() {
    let p = check(VALID).unwrap();
    assert_eq!(p.node_cidrs, [net("10.0.0.0/16"), net("10.9.0.7/32")]);
    assert_eq!(p.trusted_ranges[0].name, "vpn");
    assert_eq!(p.trusted_ranges[0].cidrs, [net("192.168.0.0/24")]);
    assert_eq!(p.identities.len(), 2);
    assert_eq!(p.identities[0].cidrs, [net("192.168.1.0/24")]);
    assert_eq!(p.identities[1].nodes, ["node-a"]);
    assert_eq!(p.automation[0].cidrs, [net("10.50.0.0/24")]);
    assert_eq!(p.learning_window, Duration::hours(24));
    assert_eq!(p.join_window, Duration::minutes(10));
    assert_eq!(p.jti_reuse_window, Duration::minutes(10), "default");
    assert_eq!(p.maintenance.len(), 1);
    assert_eq!(p.maintenance[0].start, at("2026-03-01T10:00:00Z"));
    assert_eq!(p.maintenance[0].end, at("2026-03-01T12:00:00Z"));
    assert_eq!(p.suppressions.len(), 2);
    assert_eq!(p.suppressions[0].created, at("2026-03-01T00:00:00Z"));
    assert_eq!(p.suppressions[1].created, now(), "created defaults to now");
    assert_eq!(p.suppressions[1].expires, at("2036-04-01T00:00:00Z"));
    assert_eq!(p.suppressions[1].source_cidr, Some(net("192.168.0.0/24")));
    // The same through the file loader.
    let dir = std::env::temp_dir().join(format!("credtrail-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policy.yaml");
    std::fs::write(&path, VALID).unwrap();
    let loaded = Policy::load(&path).unwrap();
    assert_eq!(loaded.automation[0].name, "ci");
    assert_eq!(loaded.node_cidrs, p.node_cidrs);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(Policy::load(&path).is_err(), "a missing file");
}

#[test]
fn every_unit_of_duration_is_read() {
    assert_eq!(parse_duration("90s").unwrap(), Duration::seconds(90));
    assert_eq!(parse_duration("10m").unwrap(), Duration::minutes(10));
    assert_eq!(parse_duration("24h").unwrap(), Duration::hours(24));
    assert_eq!(parse_duration("2d").unwrap(), Duration::days(2));
    assert!(parse_duration("10y").is_err());
}

/// `yaml` is refused with exactly one problem, starting with `problem`.
#[track_caller]
fn refused(yaml: &str, problem: &str) {
    let problems = check(yaml).unwrap_err();
    assert_eq!(problems.len(), 1, "{yaml}: {problems:?}");
    assert!(problems[0].starts_with(problem), "{yaml}: {problems:?}");
}

/// Each mistake, alone in an otherwise valid policy, is the one problem reported.
#[test]
fn each_mistake_is_refused_and_named_by_its_place() {
    let cases = [
        (
            "cluster:\n  node_cidrs: [10.0.0.0/16, 10.0.0/8]\n",
            "cluster.node_cidrs[1]: \"10.0.0/8\" is not a CIDR or IP address",
        ),
        (
            "trusted_ranges:\n  - name: \" \"\n    cidrs: [10.0.0.0/8]\n",
            "trusted_ranges[0].name: must not be empty",
        ),
        (
            "identities:\n  - username: alice\n",
            "identities[0]: give cidrs or nodes (an allowance allowing nothing is a mistake)",
        ),
        (
            "automation:\n  - name: all\n    username: \"*\"\n    credential_ids: [\"*\"]\n    cidrs: [10.0.0.0/8]\n",
            "automation[0].username: \"*\" would approve every identity",
        ),
        (
            "maintenance_windows:\n  - name: w\n    start: \"2026-03-01T12:00:00Z\"\n    end: \"2026-03-01T12:00:00Z\"\n",
            "maintenance_windows[0]: end must be after start",
        ),
        (
            "maintenance_windows:\n  - name: w\n    start: yesterday\n    end: \"2026-03-01T12:00:00Z\"\n",
            "maintenance_windows[0].start: \"yesterday\" is not an RFC 3339 time",
        ),
        (
            "detection:\n  join_window: 5x\n",
            "detection.join_window: \"5x\" is not a duration (use e.g. 30s, 10m, 24h, 7d)",
        ),
    ];
    for (yaml, problem) in cases {
        refused(yaml, problem);
    }
    let suppression = |id: &str, created: &str, expires: &str, matcher: &str| {
        format!(
            "  - id: {id}\n    owner: ops\n    reason: r\n    created: \"{created}\"\n    expires: \"{expires}\"\n    match: {matcher}\n"
        )
    };
    let (c, e) = ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z");
    let cases = [
        (
            suppression("s1", c, e, "{rule: X}") + &suppression("s1", c, e, "{rule: Y}"),
            "suppressions[1].id: \"s1\" is used twice",
        ),
        (
            suppression("s1", c, e, "{}"),
            "suppressions[0].match: give at least one field to match",
        ),
        (
            suppression("s1", e, c, "{rule: X}"),
            "suppressions[0].expires: must be after created",
        ),
    ];
    for (entries, problem) in cases {
        refused(&format!("suppressions:\n{entries}"), problem);
    }
}

#[test]
fn the_trusted_range_and_allowances_of_an_address_and_a_user() {
    let p = check(VALID).unwrap();
    assert_eq!(
        p.trusted_range("192.168.0.9".parse().unwrap()),
        Some(("vpn", net("192.168.0.0/24")))
    );
    assert_eq!(p.trusted_range("192.168.1.9".parse().unwrap()), None);
    let names =
        |user: &str| -> Vec<String> { p.allowances(user).map(|a| a.username.0.clone()).collect() };
    assert_eq!(names("alice"), ["alice"]);
    assert_eq!(names("system:node:node-a"), ["system:node:*"]);
    assert!(names("bob").is_empty());
    let ci = "system:serviceaccount:ci:deployer";
    let approved = p.approved_automation(ci, Some("JTI=x"), Some("10.50.0.3".parse().unwrap()));
    assert_eq!(approved.map(|a| a.name.as_str()), Some("ci"));
    assert!(
        p.approved_automation(ci, None, Some("10.60.0.3".parse().unwrap()))
            .is_none()
    );
}

#[test]
fn automation_is_approved_only_when_identity_credential_and_range_all_match() {
    let a = Automation {
        name: "ci".into(),
        username: Pattern("system:serviceaccount:ci:*".into()),
        credential_ids: vec!["JTI=a".into()],
        cidrs: vec![net("10.50.0.0/24")],
    };
    let (user, ip) = (
        "system:serviceaccount:ci:deployer",
        Some("10.50.0.9".parse().unwrap()),
    );
    assert!(a.approves(user, Some("JTI=a"), ip));
    assert!(!a.approves(user, Some("JTI=b"), ip), "another credential");
    assert!(!a.approves(user, None, ip), "no credential id");
    assert!(
        !a.approves(user, Some("JTI=a"), Some("10.60.0.9".parse().unwrap())),
        "another range"
    );
    assert!(!a.approves(user, Some("JTI=a"), None), "no address");
    assert!(
        !a.approves("system:serviceaccount:prod:x", Some("JTI=a"), ip),
        "another identity"
    );
    let any = Automation {
        credential_ids: vec!["*".into()],
        ..a
    };
    assert!(any.approves(user, Some("JTI=b"), ip));
    assert!(any.approves(user, None, ip));
    assert!(!any.approves(user, None, None));
}

#[test]
fn a_listed_role_matches_by_name_by_kind_and_name_or_by_kind_namespace_and_name() {
    let p = check(VALID).unwrap();
    let listed = |k: &str, ns: &str, n: &str| p.listed_high_privilege(k, ns, n);
    assert!(listed("ClusterRole", "", "secret-reader"));
    assert!(listed("Role", "any", "secret-reader"), "by name: any kind");
    assert!(listed("ClusterRole", "", "ops-admin"));
    assert!(!listed("Role", "ops", "ops-admin"), "kind and name");
    assert!(listed("Role", "shop", "editor"));
    assert!(!listed("Role", "web", "editor"), "kind, namespace and name");
    assert!(!listed("ClusterRole", "", "editor"));
    assert!(!listed("ClusterRole", "", "view"));
}

/// Caps over the memory budget are refused with what each cap the policy set
/// costs: the count, its MiB and the bytes one entry takes (the per-entry
/// figures of docs/SCALING.md's "Memory" section), largest first.
#[test]
fn an_over_budget_refusal_prices_each_cap_set_per_entry() {
    let yaml = "detection:\n  state:\n    max_credentials: 1000000\n    max_identities: 1000000\n    max_pods: 1000000\n    max_nodes: 1000000\n    max_rbac_objects: 1000000\n";
    refused(
        yaml,
        "detection.state: the caps need ~7790 MiB of memory, more than \
         detection.state.memory_budget_mib (448 MiB): lower \
         detection.state.max_rbac_objects = 1000000 (~2385 MiB at 2500 B each), \
         detection.state.max_credentials = 1000000 (~1765 MiB at 1850 B each), \
         detection.state.max_nodes = 1000000 (~1622 MiB at 1700 B each), \
         detection.state.max_pods = 1000000 (~1240 MiB at 1300 B each), \
         detection.state.max_identities = 1000000 (~668 MiB at 700 B each) \
         or raise memory_budget_mib",
    );
    // The same caps fit a budget of that size.
    let p = check(&format!("{yaml}    memory_budget_mib: 7790\n")).unwrap();
    assert_eq!(p.state.max_pods, 1_000_000);
    assert!(check(&format!("{yaml}    memory_budget_mib: 7789\n")).is_err());
}
