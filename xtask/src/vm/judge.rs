//! Whether a boot (or the host run) proves what it must.

use super::initramfs::TestBinary;
use super::qemu;

/// A boot passes when `/init` finished, every test binary ran and passed, the LSM list is
/// what the command line asked for, and the tests reported the expected hook kind.
pub fn judge(
    o: &qemu::BootOutcome,
    tests: &[TestBinary],
    expect: &str,
    lsm: Option<&str>,
) -> Result<(), String> {
    if o.timed_out {
        return Err("timed out".into());
    }
    let failed: Vec<&str> = o
        .results
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| n.as_str())
        .collect();
    if !failed.is_empty() {
        return Err(format!("failed: {}", failed.join(", ")));
    }
    if !o.finished {
        return Err("the guest stopped before /init printed its summary".into());
    }
    if let Some(t) = tests
        .iter()
        .find(|t| !o.results.iter().any(|(n, _)| *n == t.name))
    {
        return Err(format!("{} did not run", t.name));
    }
    if !o.skips.is_empty() {
        return Err(format!("tests skipped: {}", o.skips.join("; ")));
    }
    if let Some(lsm) = lsm {
        let active = o.lsm.as_deref().unwrap_or("");
        let has_bpf = active.split(',').any(|l| l == "bpf");
        if has_bpf != lsm.split(',').any(|l| l == "bpf") {
            return Err(format!(
                "active LSMs are {active:?}, the command line asked for {lsm:?}"
            ));
        }
    }
    let prefix = format!("{expect}_");
    if o.hooks.is_empty() {
        return Err("no test reported the hooks in use (credtrail-hook: ...)".into());
    }
    if !o.hooks.iter().any(|h| h.starts_with(&prefix)) {
        return Err(format!(
            "expected a {expect} hook, got {}",
            o.hooks.join(",")
        ));
    }
    Ok(())
}

/// The `credtrail-agent` binary's own run in the guest: its node info names a hook of the
/// expected kind, and it reported the probe read of a watched file.
pub fn judge_agent(o: &qemu::BootOutcome, expect: &str) -> Result<(), String> {
    let log = || o.agent_log.join(" | ");
    let Some(hooks) = &o.agent_hooks else {
        return Err(format!(
            "credtrail-agent reported no node info; its log: {}",
            log()
        ));
    };
    let prefix = format!("{expect}_");
    if !hooks.iter().any(|h| h.starts_with(&prefix)) {
        return Err(format!(
            "credtrail-agent used {} instead of a {expect} hook; its log: {}",
            hooks.join(","),
            log()
        ));
    }
    if o.agent_reads == 0 {
        return Err(format!(
            "credtrail-agent did not report the probe read of /root/.kube/config; its log: {}",
            log()
        ));
    }
    Ok(())
}

/// The agent's node info names the connect hook the boot asked for (`tp_btf` in `auto`).
pub fn judge_connect_hook(o: &qemu::BootOutcome, expect: &str) -> Result<(), String> {
    let hooks = o.agent_hooks.as_deref().unwrap_or_default();
    if hooks.iter().any(|h| h == expect) {
        Ok(())
    } else {
        Err(format!(
            "credtrail-agent used {} instead of the connect hook {expect}; its log: {}",
            hooks.join(","),
            o.agent_log.join(" | ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{judge, judge_agent, judge_connect_hook};
    use crate::vm::initramfs::TestBinary;
    use crate::vm::qemu::parse_console;

    fn tests() -> Vec<TestBinary> {
        ["agent_a", "agent_b"]
            .iter()
            .map(|n| TestBinary {
                name: (*n).to_owned(),
                path: n.into(),
            })
            .collect()
    }

    const LSM_ON: &str = "lockdown,capability,bpf";

    fn console(lsm: &str, hooks: &str, b: &str, extra: &str) -> String {
        format!(
            "credtrail-vm: lsm {lsm}\ncredtrail-hook: {hooks}\n{extra}\
             credtrail-vm: RESULT agent_a PASS\ncredtrail-vm: RESULT agent_b {b}\n\
             credtrail-vm: SUMMARY passed=2 failed=0\n"
        )
    }

    #[test]
    fn a_boot_passes_only_with_every_test_passed_and_the_expected_hook() {
        let ok = parse_console(&console(
            LSM_ON,
            "lsm_file_open,cgroup_connect4",
            "PASS",
            "",
        ));
        assert_eq!(judge(&ok, &tests(), "lsm", Some(LSM_ON)), Ok(()));

        let wrong_hook = parse_console(&console(LSM_ON, "tracepoint_openat", "PASS", ""));
        let e = judge(&wrong_hook, &tests(), "lsm", Some(LSM_ON)).unwrap_err();
        assert!(e.contains("expected a lsm hook"), "{e}");

        let failed = parse_console(&console(LSM_ON, "lsm_file_open", "FAIL exit=101", ""));
        let e = judge(&failed, &tests(), "lsm", Some(LSM_ON)).unwrap_err();
        assert!(e.contains("agent_b"), "{e}");

        let skipped = parse_console(&console(
            LSM_ON,
            "lsm_file_open",
            "PASS",
            "SKIP t: no BTF\n",
        ));
        let e = judge(&skipped, &tests(), "lsm", Some(LSM_ON)).unwrap_err();
        assert!(e.contains("skipped"), "{e}");

        // The kernel ignored the command line's LSM list.
        let no_bpf = parse_console(&console("lockdown,capability", "lsm_file_open", "PASS", ""));
        let e = judge(&no_bpf, &tests(), "lsm", Some(LSM_ON)).unwrap_err();
        assert!(e.contains("active LSMs"), "{e}");

        let silent = parse_console(
            "credtrail-vm: RESULT agent_a PASS\ncredtrail-vm: RESULT agent_b PASS\n\
             credtrail-vm: SUMMARY passed=2 failed=0\n",
        );
        let e = judge(&silent, &tests(), "tracepoint", None).unwrap_err();
        assert!(e.contains("no test reported"), "{e}");

        let cut = parse_console("credtrail-vm: RESULT agent_a PASS\n");
        let e = judge(&cut, &tests(), "tracepoint", None).unwrap_err();
        assert!(e.contains("before /init printed"), "{e}");
    }

    #[test]
    fn the_agent_binary_must_use_the_expected_hook_and_report_the_probe_read() {
        let node_info = |hooks: &str, reads: u32| {
            parse_console(&format!(
                "credtrail-vm: agent-node-info {{\"type\":\"node_info\",\"hooks\":[{hooks}]}}\n\
                 credtrail-vm: agent-reads {reads}\n\
                 credtrail-vm: agent-log WARN lsm refused: the sequence of 8193 jumps is too complex\n"
            ))
        };
        assert_eq!(
            judge_agent(&node_info("\"lsm_file_open\"", 1), "lsm"),
            Ok(())
        );
        let e = judge_agent(&node_info("\"tracepoint_openat\"", 1), "lsm").unwrap_err();
        assert!(
            e.contains("instead of a lsm hook") && e.contains("8193 jumps"),
            "{e}"
        );
        let e = judge_agent(&node_info("\"lsm_file_open\"", 0), "lsm").unwrap_err();
        assert!(e.contains("probe read"), "{e}");
        let e = judge_agent(&parse_console("credtrail-vm: agent-reads 0\n"), "lsm").unwrap_err();
        assert!(e.contains("no node info"), "{e}");
        let both = node_info("\"lsm_file_open\",\"tp_btf_inet_sock_set_state\"", 1);
        assert_eq!(
            judge_connect_hook(&both, "tp_btf_inet_sock_set_state"),
            Ok(())
        );
        let e = judge_connect_hook(&both, "tracepoint_inet_sock_set_state").unwrap_err();
        assert!(e.contains("instead of the connect hook"), "{e}");
    }

    #[test]
    fn a_cut_off_console_fails() {
        let cut = parse_console("credtrail-vm: RESULT agent_a PASS\n");
        let e = judge(&cut, &tests(), "tracepoint", None).unwrap_err();
        assert!(e.contains("before /init printed"), "{e}");
    }
}
