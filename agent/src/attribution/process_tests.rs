//! `/proc` entries as a hostile process shapes them (its comm, its command
//! line), read from a fake `/proc` so that every value is exact.

use std::path::PathBuf;

use super::*;

/// A fake `/proc/<pid>`: `stat`, `status`, `exe`, `cmdline`.
fn fake_proc(root: &Path, pid: u32, stat: &str, cmdline: &[u8]) -> PathBuf {
    let dir = root.join(pid.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("stat"), stat).unwrap();
    std::fs::write(
        dir.join("status"),
        "Name:\tcurl\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t1000\t1000\t1000\nGid:\t0\t0\t0\t0\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("/usr/bin/curl (deleted)", dir.join("exe")).unwrap();
    std::fs::write(dir.join("cmdline"), cmdline).unwrap();
    dir
}

/// A comm is whatever the process set (`prctl(PR_SET_NAME)`): spaces and
/// parentheses that imitate the next fields do not move them.
#[test]
fn a_comm_imitating_the_stat_fields_does_not_move_them() {
    assert_eq!(
        parse_stat("42 (x) R 99 (y) S 7 42 42 0 -1").unwrap(),
        ("x) R 99 (y".to_string(), 7)
    );
    assert_eq!(parse_stat("42 () S 3 1").unwrap(), (String::new(), 3));
    assert_eq!(
        parse_stat("42 (a\nb) S 3").unwrap(),
        ("a\nb".to_string(), 3)
    );
    assert_eq!(parse_stat("42 (c) S 4294967295").unwrap().1, u32::MAX);
    assert_eq!(
        parse_stat("42 (c) S 4294967296"),
        Err(StatError::BadPpid("4294967296".into()))
    );
    assert_eq!(
        parse_stat("42 (c) S -1"),
        Err(StatError::BadPpid("-1".into()))
    );
    assert_eq!(parse_stat(""), Err(StatError::NoComm));
    assert_eq!(parse_stat("42 (c S 1"), Err(StatError::NoComm));
    assert_eq!(parse_stat("42 c) S 1"), Err(StatError::NoComm));
    assert_eq!(parse_stat("42 (c)"), Err(StatError::NoPpid));
}

#[test]
fn every_field_is_read_from_proc() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fake_proc(
        root,
        42,
        "42 (curl) S 7 42 42 0 -1 4194560\n",
        b"curl\0-H\0Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2ln\0--token\0s3cr3t\0https://10.0.0.1:6443/api\0",
    );
    let parent = root.join("7");
    std::fs::create_dir_all(&parent).unwrap();
    std::fs::write(parent.join("comm"), "bash\n").unwrap();
    let info = proc_info(root, 42);
    assert_eq!(info.ppid, 7);
    assert_eq!(info.comm.as_deref(), Some("curl"));
    assert_eq!(info.uid, Some(1000));
    assert_eq!(info.exe.as_deref(), Some("/usr/bin/curl (deleted)"));
    assert_eq!(info.parent_comm.as_deref(), Some("bash"));
    assert_eq!(info.cmdline.len(), 6);
    assert_eq!(info.cmdline[0], "curl");
    assert_eq!(info.cmdline[1], "-H");
    assert_eq!(info.cmdline[3], "--token");
    assert_eq!(info.cmdline[5], "https://10.0.0.1:6443/api");
    let all = info.cmdline.join(" ");
    assert!(
        !all.contains("s3cr3t") && !all.contains("eyJzdWIi"),
        "{all}"
    );
}

/// A process whose parent is 0 (a container's init seen from the host
/// after a reparent, or the idle task) has no parent comm, even if a pid 0
/// folder exists.
#[test]
fn ppid_zero_has_no_parent_comm() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fake_proc(root, 1, "1 (init) S 0 1 1 0\n", b"/sbin/init\0");
    std::fs::create_dir_all(root.join("0")).unwrap();
    std::fs::write(root.join("0/comm"), "swapper/0\n").unwrap();
    let info = proc_info(root, 1);
    assert_eq!(info.ppid, 0);
    assert_eq!(info.parent_comm, None);
    assert_eq!(info.cmdline, vec!["/sbin/init".to_string()]);
}

/// Empty arguments (`a\0\0b`) and invalid UTF-8 in a command line.
#[test]
fn empty_and_non_utf8_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fake_proc(root, 5, "5 (sh) S 1 5 5 0\n", b"sh\0\0-c\0\xffok\0");
    let info = proc_info(root, 5);
    assert_eq!(info.cmdline, vec!["sh", "-c", "\u{fffd}ok"]);
}

/// A command line of exactly [`MAX_CMDLINE_BYTES`] is kept whole; one byte
/// more and its last (cut) argument is dropped and the cut is marked.
#[test]
fn command_lines_are_cut_at_the_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let exact = b"x\0".repeat(MAX_CMDLINE_BYTES / 2);
    assert_eq!(exact.len(), MAX_CMDLINE_BYTES);
    fake_proc(root, 10, "10 (x) S 1\n", &exact);
    let info = proc_info(root, 10);
    assert_eq!(info.cmdline.len(), MAX_CMDLINE_BYTES / 2);
    assert!(info.cmdline.iter().all(|a| a == "x"));
    let mut over = exact.clone();
    over.push(b'y');
    fake_proc(root, 11, "11 (x) S 1\n", &over);
    let info = proc_info(root, 11);
    assert_eq!(info.cmdline.len(), MAX_CMDLINE_BYTES / 2);
    assert_eq!(
        info.cmdline.last().map(String::as_str),
        Some(CMDLINE_TRUNCATED)
    );
    assert!(
        info.cmdline[..MAX_CMDLINE_BYTES / 2 - 1]
            .iter()
            .all(|a| a == "x")
    );
    assert_eq!(MAX_CMDLINE_BYTES, 4096);
}

/// A process gone between the event and the read: nothing, no panic.
#[test]
fn a_missing_process_gives_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(proc_info(tmp.path(), 77), ProcInfo::default());
}
