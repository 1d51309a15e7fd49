//! The chart's Prometheus rules and Grafana dashboard
//! (`deploy/helm/credtrail/files/`): `promtool check rules`, `promtool test
//! rules` with the unit-test file beside them (Debian's `prometheus`
//! package), and every metric they name is one the aggregator exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use credtrail_aggregator::metrics::Metrics;

use crate::tools;

/// Metrics another branch adds (accepted while missing; checked by type once
/// present). Remove an entry when that branch is merged.
const FROM_OTHER_BRANCHES: &[&str] = &[];

fn files() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/credtrail/files")
}

fn promtool(args: &[&str]) -> String {
    let bin = tools::debian_program("promtool", &["prometheus"]);
    let out = Command::new(bin)
        .args(args)
        .current_dir(files())
        .output()
        .expect("running promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let check = promtool(&["check", "rules", "prometheus-rules.yaml"]);
    assert!(check.contains("SUCCESS"), "{check}");
    let test = promtool(&["test", "rules", "prometheus-rules.test.yaml"]);
    assert!(test.contains("SUCCESS"), "{test}");
}

/// Series names the exposition can contain: every family registered in
/// `aggregator/src/metrics.rs` (`registry.register("name", "help", field.clone())`,
/// its type from the field's `let field = ...` line), with the suffixes of its type,
/// plus whatever a fresh registry already encodes.
fn exported() -> BTreeSet<String> {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/metrics.rs"))
        .unwrap();
    let mut families: Vec<(String, &str)> = Vec::new();
    for (i, _) in src.match_indices(".register(") {
        let rest = &src[i + ".register(".len()..];
        let Some(q1) = rest.find('"') else { continue };
        let Some(q2) = rest[q1 + 1..].find('"') else {
            continue;
        };
        let name = &rest[q1 + 1..q1 + 1 + q2];
        let Some(c) = rest.find(".clone()") else {
            continue;
        };
        let field = rest[..c]
            .rsplit(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
            .next()
            .unwrap_or_default();
        let decl = src
            .find(&format!("let {field} = "))
            .map(|d| src[d..].lines().next().unwrap_or_default())
            .unwrap_or_default();
        let kind = if decl.contains("Histogram") {
            "histogram"
        } else if decl.contains("Counter") {
            "counter"
        } else {
            "gauge"
        };
        families.push((format!("credtrail_{name}"), kind));
    }
    let text = Metrics::new().encode();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(n), Some(k)) = (it.next(), it.next()) {
                let k = match k {
                    "counter" => "counter",
                    "histogram" => "histogram",
                    _ => "gauge",
                };
                families.push((n.to_owned(), k));
            }
        }
    }
    let mut names = BTreeSet::new();
    for (name, kind) in families {
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        for s in suffixes {
            names.insert(format!("{name}{s}"));
        }
    }
    names
}

fn named_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(p) = text[i..].find("credtrail_") {
        let start = i + p;
        let before_ok =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len()
            && (b[end].is_ascii_lowercase() || b[end].is_ascii_digit() || b[end] == b'_')
        {
            end += 1;
        }
        if before_ok {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

#[test]
fn every_metric_in_the_rules_and_dashboard_is_exported() {
    let exported = exported();
    assert!(exported.contains("credtrail_alerts_total"), "{exported:?}");
    let rules = std::fs::read_to_string(files().join("prometheus-rules.yaml")).unwrap();
    let dash = std::fs::read_to_string(files().join("grafana-dashboard.json")).unwrap();
    // The dashboard is JSON; its expressions are what counts.
    let v: serde_json::Value = serde_json::from_str(&dash).unwrap();
    let mut exprs = String::new();
    for p in v["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push_str(t["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    let mut missing = Vec::new();
    let mut used = 0;
    for (what, text) in [("rules", rules.as_str()), ("dashboard", exprs.as_str())] {
        let names = named_in(text);
        assert!(names.len() >= 8, "{what}: too few metrics found: {names:?}");
        for n in names {
            used += 1;
            if !exported.contains(&n) && !FROM_OTHER_BRANCHES.contains(&n.as_str()) {
                missing.push(format!("{what}: {n}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not exported by the aggregator: {missing:?}"
    );
    println!("{used} metric names checked");
}

#[test]
fn the_name_check_catches_a_misspelt_metric() {
    let exported = exported();
    let names = named_in("sum(rate(credtrail_alert_total[5m])) + credtrail_agents_connected");
    let bad: Vec<_> = names.iter().filter(|n| !exported.contains(*n)).collect();
    assert_eq!(bad, vec!["credtrail_alert_total"]);
}
