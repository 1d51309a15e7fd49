//! `credtrail-aggregator eval DIR`: the evaluation corpus replayed through the
//! real detection path ([`crate::replay`]) and scored.
//!
//! ```text
//! DIR/<name>/scenario.yaml      description, class, kind (attack|benign),
//!                               expect: [{rule: CT1579-001, count: 1}, ...]
//! DIR/<name>/audit.jsonl        audit.k8s.io/v1 Events, one per line
//! DIR/<name>/observations.jsonl optional: agents' observations
//! DIR/<name>/policy.yaml        optional: aggregator policy
//! ```
//!
//! Counts are of unsuppressed alerts; every rule not listed must raise none.
//! For each scenario and rule, with `e` expected and `g` raised:
//! TP += min(e, g), FN += e − min, FP += g − min; TN counts scenarios where
//! e = g = 0. A scenario is wrong when any rule's count differs, or when
//! any of its inputs was rejected.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::alert::Alert;
use crate::detect::RULES;
use crate::policy::Policy;
use crate::replay::{ReplayInput, replay};

/// Why the corpus could not be evaluated at all.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read the corpus folder {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: no scenario folders")]
    Empty { path: PathBuf },
}

/// Attack or benign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Attack,
    Benign,
}

/// One expected count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expect {
    pub rule: String,
    pub count: u32,
}

/// `scenario.yaml`. Unknown keys are allowed (later extensions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScenarioFile {
    pub description: String,
    pub class: String,
    pub kind: Kind,
    #[serde(default)]
    pub expect: Vec<Expect>,
}

/// The outcome of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub kind: Option<Kind>,
    pub class: String,
    pub expected: BTreeMap<String, u32>,
    pub got: BTreeMap<String, u32>,
    /// The unsuppressed alerts raised.
    pub alerts: Vec<Alert>,
    /// Why it is wrong (empty: right).
    pub problems: Vec<String>,
}

impl ScenarioResult {
    pub fn wrong(&self) -> bool {
        !self.problems.is_empty()
    }
}

/// True/false positives and negatives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tn: u64,
}

impl Confusion {
    /// `None` when nothing was raised.
    pub fn precision(&self) -> Option<f64> {
        let d = self.tp + self.fp;
        (d > 0).then(|| self.tp as f64 / d as f64)
    }

    /// `None` when nothing was expected.
    pub fn recall(&self) -> Option<f64> {
        let d = self.tp + self.fn_;
        (d > 0).then(|| self.tp as f64 / d as f64)
    }
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenarios: Vec<ScenarioResult>,
    pub per_rule: BTreeMap<String, Confusion>,
    pub per_analytic: BTreeMap<String, Confusion>,
}

impl Report {
    pub fn wrong(&self) -> impl Iterator<Item = &ScenarioResult> {
        self.scenarios.iter().filter(|s| s.wrong())
    }
}

fn known_rule(r: &str) -> bool {
    RULES.iter().any(|d| d.id == r)
}

fn analytic_of(rule: &str) -> &'static str {
    RULES
        .iter()
        .find(|d| d.id == rule)
        .map_or("unknown", |d| d.analytic)
}

/// Runs one scenario folder.
pub fn run_scenario(dir: &Path) -> ScenarioResult {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut r = ScenarioResult {
        name,
        kind: None,
        class: String::new(),
        expected: BTreeMap::new(),
        got: BTreeMap::new(),
        alerts: Vec::new(),
        problems: Vec::new(),
    };
    let spec: ScenarioFile = match std::fs::read_to_string(dir.join("scenario.yaml"))
        .map_err(|e| e.to_string())
        .and_then(|t| serde_norway::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            r.problems.push(format!("scenario.yaml: {e}"));
            return r;
        }
    };
    r.kind = Some(spec.kind);
    r.class = spec.class.clone();
    for e in &spec.expect {
        if !known_rule(&e.rule) {
            r.problems
                .push(format!("scenario.yaml: unknown rule {:?}", e.rule));
        }
        *r.expected.entry(e.rule.clone()).or_default() += e.count;
    }
    if spec.kind == Kind::Attack && r.expected.values().all(|c| *c == 0) {
        r.problems
            .push("scenario.yaml: an attack scenario expects no alert".to_owned());
    }
    let policy_path = dir.join("policy.yaml");
    let policy = if policy_path.exists() {
        match Policy::load(&policy_path) {
            Ok(p) => p,
            Err(e) => {
                r.problems.push(format!("policy.yaml: {e}"));
                return r;
            }
        }
    } else {
        Policy::default()
    };
    let obs = dir.join("observations.jsonl");
    let input = ReplayInput {
        audit: vec![dir.join("audit.jsonl")],
        observations: if obs.exists() { vec![obs] } else { Vec::new() },
        ..Default::default()
    };
    match replay(&input, policy) {
        Ok(out) => {
            for rej in &out.rejected {
                r.problems.push(format!(
                    "rejected input in {}: {}",
                    rej.path.display(),
                    rej.error
                ));
            }
            for a in &out.alerts {
                *r.got.entry(a.rule.clone()).or_default() += 1;
            }
            r.alerts = out.alerts;
        }
        Err(e) => {
            r.problems.push(format!("replay: {e}"));
            return r;
        }
    }
    let rules: std::collections::BTreeSet<&String> =
        r.expected.keys().chain(r.got.keys()).collect();
    for rule in rules {
        let e = r.expected.get(rule).copied().unwrap_or(0);
        let g = r.got.get(rule).copied().unwrap_or(0);
        if e != g {
            r.problems.push(format!("{rule}: expected {e}, raised {g}"));
        }
    }
    r
}

/// Scores results per rule and per analytic.
pub fn score(scenarios: Vec<ScenarioResult>) -> Report {
    let mut per_rule: BTreeMap<String, Confusion> = RULES
        .iter()
        .map(|d| (d.id.to_owned(), Confusion::default()))
        .collect();
    let mut per_analytic: BTreeMap<String, Confusion> = BTreeMap::new();
    for d in RULES {
        per_analytic.entry(d.analytic.to_owned()).or_default();
    }
    for s in &scenarios {
        let mut by_analytic: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        let rules: std::collections::BTreeSet<String> = per_rule
            .keys()
            .cloned()
            .chain(s.expected.keys().cloned())
            .chain(s.got.keys().cloned())
            .collect();
        for rule in rules {
            let e = u64::from(s.expected.get(&rule).copied().unwrap_or(0));
            let g = u64::from(s.got.get(&rule).copied().unwrap_or(0));
            let m = e.min(g);
            let c = per_rule.entry(rule.clone()).or_default();
            c.tp += m;
            c.fn_ += e - m;
            c.fp += g - m;
            if e == 0 && g == 0 {
                c.tn += 1;
            }
            let a = per_analytic
                .entry(analytic_of(&rule).to_owned())
                .or_default();
            a.tp += m;
            a.fn_ += e - m;
            a.fp += g - m;
            let t = by_analytic.entry(analytic_of(&rule)).or_default();
            t.0 += e;
            t.1 += g;
        }
        for (analytic, c) in per_analytic.iter_mut() {
            let (e, g) = by_analytic
                .get(analytic.as_str())
                .copied()
                .unwrap_or((0, 0));
            if e == 0 && g == 0 {
                c.tn += 1;
            }
        }
    }
    Report {
        scenarios,
        per_rule,
        per_analytic,
    }
}

/// Runs every scenario folder under `root` (sorted by name).
pub fn run(root: &Path) -> Result<Report, EvalError> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|source| EvalError::Dir {
            path: root.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    if dirs.is_empty() {
        return Err(EvalError::Empty {
            path: root.to_path_buf(),
        });
    }
    dirs.sort();
    Ok(score(dirs.iter().map(|d| run_scenario(d)).collect()))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{:.3}", v))
}

fn table(out: &mut String, title: &str, rows: &BTreeMap<String, Confusion>) {
    let _ = writeln!(
        out,
        "{title:<12} {:>5} {:>5} {:>5} {:>5} {:>9} {:>7}",
        "TP", "FP", "FN", "TN", "precision", "recall"
    );
    for (k, c) in rows {
        let _ = writeln!(
            out,
            "{k:<12} {:>5} {:>5} {:>5} {:>5} {:>9} {:>7}",
            c.tp,
            c.fp,
            c.fn_,
            c.tn,
            pct(c.precision()),
            pct(c.recall())
        );
    }
}

/// The human report: both tables, then every wrong scenario with its alerts.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let attacks = r
        .scenarios
        .iter()
        .filter(|s| s.kind == Some(Kind::Attack))
        .count();
    let wrong: Vec<&ScenarioResult> = r.wrong().collect();
    let _ = writeln!(
        out,
        "eval: {} scenarios ({attacks} attack, {} benign), {} right, {} wrong\n",
        r.scenarios.len(),
        r.scenarios.len() - attacks,
        r.scenarios.len() - wrong.len(),
        wrong.len()
    );
    table(&mut out, "rule", &r.per_rule);
    out.push('\n');
    table(&mut out, "analytic", &r.per_analytic);
    for s in wrong {
        let _ = writeln!(out, "\nWRONG {} ({})", s.name, s.class);
        for p in &s.problems {
            let _ = writeln!(out, "  - {p}");
        }
        for a in &s.alerts {
            let _ = writeln!(
                out,
                "  alert {} {:?} {} from {}: {}",
                a.rule,
                a.severity,
                a.identity.username,
                a.source_ip
                    .map_or_else(|| "?".to_owned(), |i| i.to_string()),
                a.reason
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(expected: &[(&str, u32)], got: &[(&str, u32)]) -> ScenarioResult {
        ScenarioResult {
            name: "s".into(),
            kind: Some(Kind::Attack),
            class: String::new(),
            expected: expected
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            got: got.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            alerts: Vec::new(),
            problems: Vec::new(),
        }
    }

    #[test]
    fn the_confusion_follows_the_counting_rule() {
        let r = score(vec![
            result(
                &[("CT1579-001", 2)],
                &[("CT1579-001", 1), ("CT1579-004", 1)],
            ),
            result(&[], &[]),
            result(&[("CT1547-002", 1)], &[("CT1547-002", 1)]),
        ]);
        let c = r.per_rule["CT1579-001"];
        assert_eq!((c.tp, c.fp, c.fn_, c.tn), (1, 0, 1, 2));
        let c = r.per_rule["CT1579-004"];
        assert_eq!((c.tp, c.fp, c.fn_, c.tn), (0, 1, 0, 2));
        let a = r.per_analytic["AN1579"];
        assert_eq!((a.tp, a.fp, a.fn_, a.tn), (1, 1, 1, 2));
        assert_eq!(a.precision(), Some(0.5));
        let a = r.per_analytic["AN1547"];
        assert_eq!((a.tp, a.fp, a.fn_, a.tn), (1, 0, 0, 2));
        assert_eq!(a.recall(), Some(1.0));
        assert_eq!(r.per_rule["CT1547-003"].precision(), None);
    }

    #[test]
    fn a_bad_scenario_is_wrong_with_a_reason() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("an1579-typo");
        std::fs::create_dir(&s).unwrap();
        std::fs::write(
            s.join("scenario.yaml"),
            "description: x\nclass: x\nkind: attack\nexpect: [{rule: CT1579-9, count: 1}]\n",
        )
        .unwrap();
        std::fs::write(s.join("audit.jsonl"), "").unwrap();
        let r = run(d.path()).unwrap();
        let s = &r.scenarios[0];
        assert!(s.wrong());
        assert!(
            s.problems[0].contains("unknown rule \"CT1579-9\""),
            "{:?}",
            s.problems
        );
        assert!(render(&r).contains("WRONG an1579-typo"));
    }
}
