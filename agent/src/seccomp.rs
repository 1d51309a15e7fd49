//! The agent's seccomp profile (`deploy/seccomp/credtrail-agent.json`):
//! containers/common's default profile with `bpf` and `perf_event_open`
//! allowed without CAP_SYS_ADMIN. Embedded so that the agent's own image can
//! install it on the node (`--install-seccomp-profile`, the chart's init
//! container) in the kubelet's seccomp directory before the agent container
//! starts under it.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

/// The profile, as shipped in `deploy/seccomp/`.
pub const PROFILE: &str = include_str!("../../deploy/seccomp/credtrail-agent.json");

/// Writes [`PROFILE`] to `dest` (parent directories created, mode 0644),
/// through a temporary file and a rename so that a runtime never reads half
/// a profile. Leaves an identical file untouched.
pub fn install(dest: &Path) -> anyhow::Result<()> {
    if std::fs::read(dest).is_ok_and(|b| b == PROFILE.as_bytes()) {
        return Ok(());
    }
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .with_context(|| format!("{}: no parent directory", dest.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile_in(dir)?;
    tmp.1
        .write_all(PROFILE.as_bytes())
        .and_then(|()| tmp.1.sync_all())
        .with_context(|| format!("writing {}", tmp.0.display()))?;
    std::fs::rename(&tmp.0, dest)
        .with_context(|| format!("renaming {} to {}", tmp.0.display(), dest.display()))?;
    Ok(())
}

/// A new file in `dir`, mode 0644, named for this process.
fn tempfile_in(dir: &Path) -> anyhow::Result<(std::path::PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(format!(".credtrail-agent.json.{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok((path, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules_for(p: &serde_json::Value, call: &str) -> Vec<serde_json::Value> {
        p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"].as_array().unwrap().iter().any(|n| n == call))
            .cloned()
            .collect()
    }

    #[test]
    fn profile_allows_bpf_and_perf_event_open_unconditionally_and_keeps_the_rest_closed() {
        let p: serde_json::Value = serde_json::from_str(PROFILE).unwrap();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        for call in ["bpf", "perf_event_open"] {
            let rules = rules_for(&p, call);
            assert_eq!(rules.len(), 1, "{call}: {rules:?}");
            assert_eq!(rules[0]["action"], "SCMP_ACT_ALLOW");
            assert!(rules[0]["args"].as_array().unwrap().is_empty());
            assert_eq!(rules[0]["includes"], serde_json::json!({}));
        }
        // What the default profile keeps for CAP_SYS_ADMIN stays so.
        for call in [
            "kexec_load",
            "init_module",
            "delete_module",
            "open_by_handle_at",
        ] {
            let rules = rules_for(&p, call);
            assert!(
                rules.iter().all(|r| r["action"] != "SCMP_ACT_ALLOW"
                    || r["includes"]["caps"]
                        .as_array()
                        .is_some_and(|c| !c.is_empty())),
                "{call} allowed without a capability: {rules:?}"
            );
        }
        // Ordinary calls stay allowed.
        assert!(
            rules_for(&p, "openat")
                .iter()
                .any(|r| r["action"] == "SCMP_ACT_ALLOW")
        );
    }

    #[test]
    fn install_writes_atomically_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("seccomp/credtrail/agent.json");
        install(&dest).unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), PROFILE);
        install(&dest).unwrap();
        std::fs::write(&dest, "stale").unwrap();
        install(&dest).unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), PROFILE);
        let names: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
        assert!(install(Path::new("agent.json")).is_err());
    }
}
