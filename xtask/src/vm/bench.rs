//! `cargo xtask vm-test --bench`: what the LSM and fentry open hooks cost, measured inside
//! the qemu guests (the build machine refuses both hooks, so only a VM can run them).
//!
//! In one boot of a kernel, `/bench.sh` runs the same open loop (`openat`+`close` of an
//! unwatched path, and of a path whose last component is a watched name, `token`, in an
//! unwatched directory) without the agent and with the agent forced onto each hook the boot
//! names (`lsm` in the BPF-LSM boot; `fentry` and, for comparison, `raw-tracepoint` where
//! BPF LSM is off). Rounds are interleaved and the order rotates each round; a ratio is the
//! median over rounds of (median batch with the agent / the same round's median batch
//! without). The guest runs under TCG emulation with `-icount` (one vCPU; the guest's clock
//! advances by instructions executed) and the loop times each batch by its thread's CPU
//! time, so the figures count emulated instructions and the host's load does not reach
//! them; they compare hooks under the same emulation, not the cost on real hardware (no
//! caches, every instruction the same price).
//!
//! The open loop is this xtask binary itself (`xtask open-loop`, hidden), copied into the
//! initramfs with the shared libraries `ldd` names, like the test binaries.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use super::initramfs::MARK;

/// Where the open-loop program lives in the guest.
pub const GUEST_LOOP: &str = "/bin/ct-openloop";

/// The guest's bench script, run by `/init` when `CREDTRAIL_BENCH` is set (after the agent
/// binary's own check, before the tests). Kernel command-line words reach it as
/// environment: `CREDTRAIL_BENCH` (hooks, comma-separated), `CREDTRAIL_BENCH_ROUNDS`,
/// `CREDTRAIL_BENCH_OPENS`.
pub const SCRIPT: &str = r#"#!/bin/busybox sh
rounds=${CREDTRAIL_BENCH_ROUNDS:-3}
opens=${CREDTRAIL_BENCH_OPENS:-5000}
mkdir -p /tmp/bench
echo x > /tmp/bench/not-a-credential.txt
echo x > /tmp/bench/token
conds="without $(echo "$CREDTRAIL_BENCH" | tr ',' ' ')"
n=$(echo $conds | wc -w)
work="unwatched=/tmp/bench/not-a-credential.txt token=/tmp/bench/token"
echo "credtrail-vm: bench-start rounds=$rounds opens=$opens conds=$(echo $conds | tr ' ' ',')"
# Warm-up: page cache, dentry cache.
/bin/ct-openloop open-loop --count $((opens / 4)) --label warmup $work > /dev/null
r=1
while [ $r -le $rounds ]; do
  k=0
  while [ $k -lt $n ]; do
    i=$(( (r + k) % n + 1 ))
    cond=$(echo $conds | cut -d' ' -f$i)
    if [ "$cond" = without ]; then
      /bin/ct-openloop open-loop --cpu-time --count $opens --batch 1000 --label "round=$r cond=$cond" $work
    else
      rm -f /tmp/bench-agent.jsonl
      credtrail-agent --node-name credtrail-vm --no-scan --hook "$cond" \
        --output jsonl /tmp/bench-agent.jsonl 2>/tmp/bench-agent.log &
      apid=$!
      j=0
      while [ $j -lt 480 ] && ! grep -q node_info /tmp/bench-agent.jsonl 2>/dev/null \
          && kill -0 $apid 2>/dev/null; do
        sleep 0.25; j=$((j+1))
      done
      if grep -q node_info /tmp/bench-agent.jsonl 2>/dev/null; then
        /bin/ct-openloop open-loop --cpu-time --count $opens --batch 1000 --label "round=$r cond=$cond" $work
      else
        echo "credtrail-vm: bench-error round=$r cond=$cond: the agent did not start: $(tr -d '\033' < /tmp/bench-agent.log | tail -n 3 | tr '\n' ' ' | cut -c1-400)"
      fi
      kill $apid 2>/dev/null; wait $apid
    fi
    k=$((k+1))
  done
  r=$((r+1))
done
echo "credtrail-vm: bench-done"
"#;

/// `xtask open-loop` (hidden; run inside the guest).
#[derive(clap::Args)]
pub struct LoopOptions {
    /// `openat`+`close` calls per path.
    #[arg(long, default_value_t = 40_000)]
    count: u64,
    /// Calls per timed batch.
    #[arg(long, default_value_t = 2_000)]
    batch: u64,
    /// Printed in each result line (`round=1 cond=lsm`).
    #[arg(long, default_value = "")]
    label: String,
    /// Time batches by the thread's CPU time (not counting time the guest
    /// scheduler gave the agent's threads).
    #[arg(long)]
    cpu_time: bool,
    /// `NAME=PATH` of existing files to open, in turn.
    #[arg(required = true)]
    work: Vec<String>,
}

/// Times the opens of each path and prints, per path, the median batch's time per call:
/// `credtrail-vm: bench <label> work=<name> ns=<ns>`.
pub fn open_loop(o: LoopOptions) -> anyhow::Result<()> {
    if o.cpu_time {
        crate::bench::use_cpu_clock();
    }
    let mut work = Vec::new();
    for w in &o.work {
        let (name, path) = w
            .split_once('=')
            .with_context(|| format!("work {w:?} is not NAME=PATH"))?;
        work.push((
            name.to_owned(),
            CString::new(PathBuf::from(path).into_os_string().into_encoded_bytes())?,
        ));
    }
    for (name, path) in &work {
        let b = crate::bench::batches(o.count, o.batch.max(1), |n| {
            crate::bench::time_opens(path, n)
        })?;
        println!(
            "{MARK} bench {} work={name} ns={:.1}",
            o.label,
            crate::bench::median(&b)
        );
    }
    Ok(())
}

/// One measured point of the guest's console.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub round: u32,
    pub cond: String,
    pub work: String,
    pub ns: f64,
}

/// What the bench printed in one boot.
#[derive(Debug, Default)]
pub struct BenchOutcome {
    pub samples: Vec<Sample>,
    pub errors: Vec<String>,
    pub done: bool,
}

/// Reads the `bench` lines of a console.
pub fn parse(console: &str) -> BenchOutcome {
    let mut out = BenchOutcome::default();
    for raw in console.lines() {
        let Some(rest) = raw.trim_end_matches('\r').strip_prefix(MARK).map(str::trim) else {
            continue;
        };
        if rest == "bench-done" {
            out.done = true;
        } else if let Some(e) = rest.strip_prefix("bench-error ") {
            out.errors.push(e.trim().to_owned());
        } else if let Some(fields) = rest.strip_prefix("bench ") {
            let get = |k: &str| {
                fields
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
            };
            if let (Some(round), Some(cond), Some(work), Some(ns)) = (
                get("round").and_then(|r| r.parse().ok()),
                get("cond"),
                get("work"),
                get("ns").and_then(|n| n.parse().ok()),
            ) {
                out.samples.push(Sample {
                    round,
                    cond: cond.to_owned(),
                    work: work.to_owned(),
                    ns,
                });
            }
        }
    }
    out
}

/// A hook's figure for one workload: the median of the per-round ratios with / without.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    pub cond: String,
    pub work: String,
    pub ratio: f64,
    pub rounds: Vec<f64>,
    /// Median per-call time without the agent and with it (ns, under emulation).
    pub without_ns: f64,
    pub with_ns: f64,
}

/// The ratios of every hook the boot measured, each against the same round's run without
/// the agent. Fails when a hook has no complete round.
pub fn ratios(o: &BenchOutcome, hooks: &[&str]) -> Result<Vec<Ratio>, String> {
    if !o.errors.is_empty() {
        return Err(format!("bench errors: {}", o.errors.join("; ")));
    }
    if !o.done {
        return Err("the bench did not finish (no bench-done line)".into());
    }
    let mut by: BTreeMap<(&str, &str, u32), f64> = BTreeMap::new();
    let mut works: Vec<&str> = Vec::new();
    for s in &o.samples {
        by.insert((s.cond.as_str(), s.work.as_str(), s.round), s.ns);
        if !works.contains(&s.work.as_str()) {
            works.push(s.work.as_str());
        }
    }
    let mut out = Vec::new();
    for &hook in hooks {
        for &work in &works {
            let (mut rounds, mut with, mut without) = (Vec::new(), Vec::new(), Vec::new());
            for s in o
                .samples
                .iter()
                .filter(|s| s.cond == hook && s.work == work)
            {
                if let Some(base) = by.get(&("without", work, s.round)) {
                    rounds.push(s.ns / base);
                    with.push(s.ns);
                    without.push(*base);
                }
            }
            if rounds.is_empty() {
                return Err(format!("no complete round for hook {hook} ({work})"));
            }
            out.push(Ratio {
                cond: hook.to_owned(),
                work: work.to_owned(),
                ratio: crate::bench::median(&rounds),
                rounds,
                without_ns: crate::bench::median(&without),
                with_ns: crate::bench::median(&with),
            });
        }
    }
    Ok(out)
}

/// `6.12` from `6.12.57+deb12-amd64`.
pub fn short_release(release: &str) -> String {
    release
        .split('.')
        .take(2)
        .map(|p| p.trim_end_matches(|c: char| !c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(".")
}

/// The result line of one hook and workload: `vm 6.12 lsm openat ratio=1.04x`, the
/// token workload as `openat-token`.
pub fn line(release: &str, r: &Ratio) -> String {
    let what = if r.work == "unwatched" {
        "openat".to_owned()
    } else {
        format!("openat-{}", r.work)
    };
    format!(
        "vm {} {} {what} ratio={:.2}x",
        short_release(release),
        r.cond,
        r.ratio
    )
}

/// Prints the bench's figures for every boot that ran it.
pub fn report(results: &[(String, Vec<Ratio>)]) -> anyhow::Result<()> {
    if results.is_empty() {
        bail!("no boot ran the bench");
    }
    println!();
    println!(
        "vm bench: openat+close per call with / without the agent, median of interleaved rounds, \
         measured under TCG emulation (qemu -icount, no KVM: time = instructions executed): \
         compare hooks with each other, not with real hardware"
    );
    for (release, ratios) in results {
        for r in ratios {
            let rounds: Vec<String> = r.rounds.iter().map(|x| format!("{x:.3}")).collect();
            println!(
                "  {release} {:<15} {:<10} without {:>8.0} ns, with {:>8.0} ns, rounds [{}]",
                r.cond,
                r.work,
                r.without_ns,
                r.with_ns,
                rounds.join(" ")
            );
        }
    }
    for (release, ratios) in results {
        for r in ratios {
            println!("{}", line(release, r));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console() -> String {
        let mut s = String::from("credtrail-vm: bench-start rounds=2\r\n");
        for (r, base, lsm) in [(1, 100.0, 110.0), (2, 200.0, 200.0)] {
            s.push_str(&format!(
                "credtrail-vm: bench round={r} cond=without work=unwatched ns={base}\r\n\
                 credtrail-vm: bench round={r} cond=without work=token ns={base}\r\n\
                 credtrail-vm: bench round={r} cond=lsm work=unwatched ns={lsm}\r\n\
                 credtrail-vm: bench round={r} cond=lsm work=token ns={}\r\n",
                lsm * 2.0
            ));
        }
        s.push_str("credtrail-vm: bench-done\r\n");
        s
    }

    #[test]
    fn ratios_pair_each_round_with_its_own_run_without_the_agent() {
        let o = parse(&console());
        assert_eq!(o.samples.len(), 8);
        assert!(o.done);
        let r = ratios(&o, &["lsm"]).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].work, "unwatched");
        assert_eq!(r[0].rounds, vec![1.1, 1.0]);
        // Median of two takes the upper one.
        assert!((r[0].ratio - 1.1).abs() < 1e-9);
        assert_eq!(
            line("6.12.57+deb12-amd64", &r[0]),
            "vm 6.12 lsm openat ratio=1.10x"
        );
        assert_eq!(
            line("6.1.0-41-amd64", &r[1]),
            "vm 6.1 lsm openat-token ratio=2.20x"
        );
    }

    #[test]
    fn a_missing_hook_an_error_or_a_cut_off_run_fails() {
        let o = parse(&console());
        let e = ratios(&o, &["fentry"]).unwrap_err();
        assert!(e.contains("no complete round for hook fentry"), "{e}");

        let cut = parse(&console().replace("credtrail-vm: bench-done\r\n", ""));
        assert!(
            ratios(&cut, &["lsm"])
                .unwrap_err()
                .contains("did not finish")
        );

        let err = parse(&format!(
            "{}credtrail-vm: bench-error round=1 cond=lsm: the agent did not start: refused\n",
            console()
        ));
        let e = ratios(&err, &["lsm"]).unwrap_err();
        assert!(e.contains("did not start"), "{e}");
    }

    #[test]
    fn releases_are_shortened_to_major_minor() {
        assert_eq!(short_release("6.12.57+deb12-amd64"), "6.12");
        assert_eq!(short_release("6.1.0-41-amd64"), "6.1");
        assert_eq!(short_release("5.10.0-35-amd64"), "5.10");
    }
}
