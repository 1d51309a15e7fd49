//! The policy file: the documented example loads; problems are all collected.

use credtrail_aggregator::policy::{Policy, PolicyError};

#[test]
fn the_example_in_docs_policy_md_is_valid() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/POLICY.md")).unwrap();
    let yaml = doc
        .split("```yaml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let p = Policy::from_yaml("docs/POLICY.md", yaml).unwrap();
    assert_eq!(p.trusted_ranges.len(), 2);
    assert_eq!(p.automation[0].name, "ci-deployer");
    assert_eq!(p.learning_window, chrono::Duration::hours(24));
    assert_eq!(p.suppressions[0].owner, "alice@example.com");
    assert!(
        p.approved_automation(
            "system:serviceaccount:ci:deployer",
            Some("JTI=2b7c6f0e-1c1d-4a8e-9a57-0d2f0c1e9b11"),
            Some("192.0.2.5".parse().unwrap())
        )
        .is_some()
    );
    assert!(
        p.approved_automation(
            "system:serviceaccount:ci:deployer",
            Some("JTI=other"),
            Some("192.0.2.5".parse().unwrap())
        )
        .is_none()
    );
    assert!(
        p.approved_automation(
            "system:serviceaccount:ci:deployer",
            Some("JTI=2b7c6f0e-1c1d-4a8e-9a57-0d2f0c1e9b11"),
            Some("198.51.100.1".parse().unwrap())
        )
        .is_none()
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = r#"
cluster:
  node_cidrs: [10.0.0.0/33]
  api_servers: [apiserver]
detection:
  learning_window: forever
maintenance_windows:
  - name: w
    start: "2026-01-02T00:00:00Z"
    end: "2026-01-01T00:00:00Z"
suppressions:
  - id: s
    owner: ""
    reason: r
    expires: tomorrow
    match: {}
roles:
  - kind: Role
    name: x
    rules: []
"#;
    let Err(PolicyError::Invalid { problems, .. }) = Policy::from_yaml("p.yaml", yaml) else {
        panic!("must be invalid")
    };
    let all = problems.join("\n");
    for want in [
        "cluster.node_cidrs[0]",
        "cluster.api_servers[0]",
        "detection.learning_window",
        "maintenance_windows[0]: end must be after start",
        "suppressions[0].owner: must not be empty",
        "suppressions[0].match: give at least one field",
        "suppressions[0].expires",
        "roles[0].namespace: a Role needs its namespace",
    ] {
        assert!(all.contains(want), "{want:?} missing from:\n{all}");
    }
}

#[test]
fn unknown_keys_are_errors() {
    let err = Policy::from_yaml("p.yaml", "trusted_range:\n  - name: x\n").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `trusted_range`"),
        "{err}"
    );
}
