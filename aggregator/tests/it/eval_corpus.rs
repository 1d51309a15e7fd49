//! The evaluation corpus (`eval/scenarios`) through the real replay path:
//! every scenario right, and the corpus covers what it must.

use std::path::Path;

use credtrail_aggregator::eval::{Kind, render, run};

#[test]
fn every_scenario_of_the_corpus_is_right() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../eval/scenarios");
    let report = run(&root).unwrap();
    let text = render(&report);
    assert_eq!(report.wrong().count(), 0, "{text}");
    assert!(report.scenarios.len() >= 25, "{text}");
    for s in &report.scenarios {
        let prefix_ok = ["an1547-", "an1579-", "benign-"]
            .iter()
            .any(|p| s.name.starts_with(p));
        assert!(
            prefix_ok,
            "{}: scenario names start with an1547-, an1579- or benign-",
            s.name
        );
        assert_eq!(
            s.kind == Some(Kind::Benign),
            s.name.starts_with("benign-"),
            "{}: benign scenarios are named benign-*",
            s.name
        );
    }
    // Both outcomes of every AN1579 rule are exercised.
    for rule in ["CT1579-001", "CT1579-002", "CT1579-003", "CT1579-004"] {
        let c = report.per_rule[rule];
        assert!(c.tp > 0 && c.tn > 0, "{rule}: {c:?}\n{text}");
    }
}
