//! `cargo xtask test`: set-up, then every test: the workspace's unit and
//! integration tests, the agent's privileged kernel tests and the
//! `credtrail-tests` crate (both with `--test-threads=1`: they share kernel
//! state), and the deployment manifest check. Prints every cargo test
//! summary line at the end, per step.
//!
//! Other engineers add steps in [`steps`] (one line each).

use std::io::{BufRead as _, BufReader};
use std::process::Command;

use anyhow::{Context as _, bail};

#[derive(clap::Args)]
pub struct Options {
    /// Skip a step by name (repeatable): setup, workspace, agent, e2e, eval, deploy.
    #[arg(long = "skip", value_name = "STEP")]
    pub skip: Vec<String>,
    /// Extra arguments after `--` go to every cargo test binary (e.g. a name filter).
    #[arg(last = true)]
    pub test_args: Vec<String>,
}

/// One step of `cargo xtask test`.
pub struct Step {
    pub name: &'static str,
    pub run: fn(&Options) -> anyhow::Result<Vec<String>>,
}

/// The steps, in order. Add yours here.
pub fn steps() -> Vec<Step> {
    vec![
        Step {
            name: "setup",
            run: |_| {
                crate::setup::run(crate::setup::Options { force: false })?;
                Ok(Vec::new())
            },
        },
        Step {
            name: "workspace",
            run: |o| {
                cargo_test(
                    &[
                        "--workspace",
                        "--exclude",
                        "credtrail-ebpf",
                        "--exclude",
                        "credtrail-agent",
                        "--exclude",
                        "credtrail-tests",
                    ],
                    &[],
                    o,
                )
            },
        },
        Step {
            name: "agent",
            run: |o| cargo_test(&["-p", "credtrail-agent"], &["--test-threads=1"], o),
        },
        Step {
            name: "e2e",
            run: |o| cargo_test(&["-p", "credtrail-tests"], &["--test-threads=1"], o),
        },
        Step {
            name: "eval",
            run: |_| {
                let lines = crate::eval::run_lines(&crate::eval::Options {
                    dir: "eval/scenarios".into(),
                    json: false,
                })?;
                for l in &lines {
                    println!("{l}");
                }
                // The summary line ("eval: N scenarios ..., 0 wrong") for the report.
                Ok(lines.into_iter().take(1).collect())
            },
        },
        Step {
            name: "deploy",
            run: |_| {
                crate::deploy_check::run()?;
                Ok(vec!["deploy manifests: valid".to_owned()])
            },
        },
    ]
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        println!("xtask test: not root: the real-eBPF tests will print skip reasons");
    }
    let mut report: Vec<(String, Result<Vec<String>, String>)> = Vec::new();
    for step in steps() {
        if opts.skip.iter().any(|s| s == step.name) {
            report.push((
                step.name.to_owned(),
                Ok(vec!["skipped (--skip)".to_owned()]),
            ));
            continue;
        }
        println!("==> xtask test: {}", step.name);
        let r = (step.run)(&opts).map_err(|e| format!("{e:#}"));
        report.push((step.name.to_owned(), r));
    }
    println!("\n==> xtask test summary");
    let mut failed = Vec::new();
    for (name, r) in &report {
        match r {
            Ok(lines) => {
                println!("[ok]     {name}");
                for l in lines {
                    println!("           {l}");
                }
            }
            Err(e) => {
                println!("[FAILED] {name}: {e}");
                failed.push(name.as_str());
            }
        }
    }
    let (passed, failed_tests) = totals(&report);
    // One plain closing line, alone, that CI reads in any language.
    println!("tests: {passed} passed, {failed_tests} failed");
    if !failed.is_empty() {
        bail!("failed steps: {}", failed.join(", "));
    }
    Ok(())
}

/// Sums the `test result:` lines of every step. A step without such lines
/// (manifest validation) counts as one test; a failed step counts at least one
/// failure even when it died before printing a summary.
fn totals(report: &[(String, Result<Vec<String>, String>)]) -> (u64, u64) {
    let (mut passed, mut failed) = (0, 0);
    for (_, r) in report {
        let text = match r {
            Ok(lines) => lines.join("\n"),
            Err(e) => e.clone(),
        };
        let (p, f, seen) = text
            .lines()
            .filter_map(count_result)
            .fold((0, 0, false), |(p, f, _), (lp, lf)| (p + lp, f + lf, true));
        match (r, seen) {
            (Ok(lines), false) if lines.iter().any(|l| l.contains("skipped (--skip)")) => {}
            (Ok(_), false) => passed += 1,
            (Ok(_), true) => (passed, failed) = (passed + p, failed + f),
            (Err(_), _) => (passed, failed) = (passed + p, failed + f.max(1)),
        }
    }
    (passed, failed)
}

/// `... test result: ok. 5 passed; 1 failed; ...` -> `(5, 1)`.
fn count_result(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.find("test result:")?..];
    let number_before = |word: &str| {
        rest.split(';').find_map(|part| {
            part.trim()
                .strip_suffix(word)?
                .split_whitespace()
                .last()?
                .parse()
                .ok()
        })
    };
    Some((number_before(" passed")?, number_before(" failed")?))
}

/// `cargo test <selection> -- <test_args>`: echoes the output and returns
/// the summary lines (`Running ...` and `test result: ...`).
pub fn cargo_test(
    selection: &[&str],
    test_args: &[&str],
    opts: &Options,
) -> anyhow::Result<Vec<String>> {
    let (reader, writer) = std::io::pipe().context("creating a pipe")?;
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.arg("test")
        .args(selection)
        .arg("--")
        .args(test_args)
        .args(&opts.test_args)
        .stdout(writer.try_clone().context("cloning a pipe")?)
        .stderr(writer);
    let mut child = cmd.spawn().with_context(|| format!("running {cmd:?}"))?;
    drop(cmd);
    let mut summary = Vec::new();
    let mut current = String::new();
    for line in BufReader::new(reader).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("Running ") {
            current = rest.to_owned();
        } else if t.starts_with("Doc-tests ") {
            current = t.to_owned();
        } else if t.starts_with("test result:") {
            summary.push(format!("{current}: {t}"));
        }
    }
    let st = child.wait().context("waiting for cargo test")?;
    if !st.success() {
        bail!(
            "cargo test {} failed ({st}); summaries:\n{}",
            selection.join(" "),
            summary.join("\n")
        );
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_sum_cargo_summaries_and_count_plain_steps() {
        let report = vec![
            (
                "workspace".to_owned(),
                Ok(vec![
                    "a: test result: ok. 5 passed; 0 failed; 0 ignored".to_owned(),
                    "b: test result: ok. 2 passed; 0 failed; 1 ignored".to_owned(),
                ]),
            ),
            (
                "deploy".to_owned(),
                Ok(vec!["deploy manifests: valid".to_owned()]),
            ),
            ("vm".to_owned(), Ok(vec!["skipped (--skip)".to_owned()])),
            (
                "e2e".to_owned(),
                Err(
                    "cargo test failed; summaries:\nc: test result: FAILED. 3 passed; 2 failed;"
                        .to_owned(),
                ),
            ),
            ("agent".to_owned(), Err("build failed".to_owned())),
        ];
        assert_eq!(totals(&report), (11, 3));
    }
}
