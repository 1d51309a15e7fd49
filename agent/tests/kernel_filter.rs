//! Real eBPF on this kernel: the loader's hook choice, the in-kernel path
//! filter and the connect filter. Needs root; without it (or without
//! kernel BTF) each test prints why it is skipped.
//!
//! Run: `cargo test -p credtrail-agent --test kernel_filter -- --test-threads=1`

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use credtrail_agent::loader::{self, LoadError, LoadOptions, Probes, events};
use credtrail_agent::patterns::WatchPatterns;
use credtrail_agent::{ConnectHook, HookMode};
use credtrail_common::Counter;
use credtrail_proto::model::CaptureSource;

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: loading eBPF programs needs root".into());
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Some("the kernel has no BTF".into());
    }
    None
}

macro_rules! require_root {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED {}: {why}", module_path!());
            return;
        }
    };
}

fn load(
    hook: HookMode,
    patterns: &WatchPatterns,
    endpoints: &[SocketAddr],
) -> Result<Probes, LoadError> {
    load_with(hook, ConnectHook::Tracepoint, patterns, endpoints)
}

fn load_with(
    hook: HookMode,
    connect_hook: ConnectHook,
    patterns: &WatchPatterns,
    endpoints: &[SocketAddr],
) -> Result<Probes, LoadError> {
    loader::load(&LoadOptions {
        hook,
        connect_hook,
        patterns,
        endpoints,
        agent_tgid: std::process::id(),
    })
}

/// Reads ring-buffer events until `want` of them match `keep` or 3 s pass.
fn collect(
    ring: &mut RingBuf<MapData>,
    want: usize,
    keep: impl Fn(&events::KernelEvent) -> bool,
) -> Vec<events::KernelEvent> {
    let clock = events::Clock::now();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut out = Vec::new();
    while Instant::now() < deadline && out.len() < want {
        while let Some(item) = ring.next() {
            let ev = events::decode(&item, &clock).expect("kernel record decodes");
            if keep(&ev) {
                out.push(ev);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Anything late would show up here.
    std::thread::sleep(Duration::from_millis(200));
    while let Some(item) = ring.next() {
        let ev = events::decode(&item, &clock).expect("kernel record decodes");
        if keep(&ev) {
            out.push(ev);
        }
    }
    out
}

/// Opens `path` from another process (`cat`), as a credential reader would.
fn cat(path: &std::path::Path) {
    Command::new("cat")
        .arg(path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run cat");
}

/// Opens `path` with the legacy `open(2)` system call (not `openat`) from a
/// child process (the test's own opens are filtered as the agent's).
fn legacy_open(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: the child makes only raw system calls, then `_exit`s.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let fd = libc::syscall(libc::SYS_open, c.as_ptr(), libc::O_RDONLY);
            libc::_exit(if fd >= 0 { 0 } else { 1 });
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        assert_eq!(
            status,
            0,
            "the child's open(2) of {} failed",
            path.display()
        );
    }
}

/// The two system-call-level hooks: the raw `sys_enter` tracepoint and the
/// classic `sys_enter_open*` ones.
#[test]
fn tracepoints_report_only_watched_paths_and_filter_in_kernel() {
    require_root!();
    for (mode, hooks) in [
        (
            HookMode::RawTracepoint,
            &["raw_tracepoint_sys_enter", "tracepoint_inet_sock_set_state"][..],
        ),
        (
            HookMode::Tracepoint,
            &[
                "tracepoint_openat",
                "tracepoint_openat2",
                "tracepoint_open",
                "tracepoint_inet_sock_set_state",
            ][..],
        ),
    ] {
        syscall_hook_reports_only_watched_paths(mode, hooks);
    }
}

fn syscall_hook_reports_only_watched_paths(mode: HookMode, hooks: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    let creds = dir.path().join("creds/sa");
    std::fs::create_dir_all(&creds).unwrap();
    let watched = creds.join("token");
    let same_prefix_other_name = creds.join("namespace");
    let pem = creds.join("client.pem");
    let legacy = dir.path().join("creds/legacy/token");
    std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    for f in [&watched, &same_prefix_other_name, &pem, &legacy] {
        std::fs::write(f, "x").unwrap();
    }
    let patterns = WatchPatterns::new([
        format!("{root}/creds/*/token"),
        format!("{root}/creds/*/*.pem"),
    ])
    .unwrap();
    let mut probes = load(mode, &patterns, &[]).unwrap_or_else(|e| panic!("{mode:?}: {e}"));
    assert_eq!(probes.hooks(), hooks);
    let mut ring = probes.take_events().unwrap();
    let before = probes.counters().unwrap();

    // Our own opens are dropped in the kernel (the agent's tgid).
    std::fs::read(&watched).unwrap();
    cat(&watched);
    cat(&pem);
    cat(&same_prefix_other_name);
    cat(std::path::Path::new("/etc/hostname"));
    legacy_open(&legacy);

    let opens = collect(
        &mut ring,
        3,
        |e| matches!(e, events::KernelEvent::Open(o) if o.path.starts_with(&root)),
    );
    let paths: Vec<String> = opens
        .iter()
        .map(|e| match e {
            events::KernelEvent::Open(o) => {
                if o.path != legacy.display().to_string() {
                    assert_eq!(o.comm, "cat");
                }
                assert_ne!(o.tgid, std::process::id());
                assert_ne!(o.mnt_ns, 0, "mount namespace from the kernel");
                o.path.clone()
            }
            events::KernelEvent::Connect(_) => unreachable!(),
        })
        .collect();
    assert_eq!(
        paths,
        vec![
            watched.display().to_string(),
            pem.display().to_string(),
            legacy.display().to_string()
        ],
        "{mode:?}: only the watched paths, once each, from cat and the legacy open(2)"
    );
    let after = probes.counters().unwrap();
    let delta = |c: Counter| after[c as usize] - before[c as usize];
    // token (ours + cat's), pem, namespace passed the prefix test ...
    assert!(
        delta(Counter::PrefixHit) >= 4,
        "prefix hits {}",
        delta(Counter::PrefixHit)
    );
    // ... but only cat's token and pem passed the name test and were sent.
    assert!(delta(Counter::Emitted) >= 2);
    assert_eq!(after[Counter::RingbufFull as usize], 0);
}

/// Opens `name` relative to `dir` (`openat(dirfd, name)`) from a child
/// process and returns its pid; whether the open succeeded does not matter.
fn child_openat(dir: &std::path::Path, name: &str) -> u32 {
    let d = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: the child makes only raw system calls, then `_exit`s.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let dfd = libc::open(d.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            libc::openat(dfd, n.as_ptr(), libc::O_RDONLY);
            libc::_exit(0);
        }
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
        pid as u32
    }
}

/// The system-call hooks judge a relative path by its last component: one
/// that fits in the first bytes read (`openat(dirfd, "token")`) is judged on
/// them, a longer one on the full copy; both are sent with their directory
/// descriptor, and short unwatched names are dropped in the kernel.
#[test]
fn relative_opens_are_judged_by_their_name_short_or_long() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    let deep = dir.path().join("a-long-directory-name/sa");
    std::fs::create_dir_all(&deep).unwrap();
    for f in ["token", "notes", "x.pem"] {
        std::fs::write(dir.path().join(f), "x").unwrap();
    }
    std::fs::write(deep.join("token"), "x").unwrap();
    let patterns = WatchPatterns::new([
        format!("{root}/token"),
        format!("{root}/*.pem"),
        format!("{root}/a-long-directory-name/*/token"),
    ])
    .unwrap();
    for mode in [HookMode::RawTracepoint, HookMode::Tracepoint] {
        let mut probes = load(mode, &patterns, &[]).unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        let mut ring = probes.take_events().unwrap();
        // Short: the whole path is in the first 16 bytes read. Longer
        // than 16 bytes: the full copy is judged.
        let pids: Vec<u32> = [
            "token",
            "./token",
            "notes",
            "x.pem",
            "./notes",
            "a-long-directory-name/sa/token",
            "a-long-directory-name/sa/notes",
        ]
        .into_iter()
        .map(|name| child_openat(dir.path(), name))
        .collect();
        let wanted = [
            "token",
            "./token",
            "x.pem",
            "a-long-directory-name/sa/token",
        ];
        let opens = collect(
            &mut ring,
            wanted.len() + 1,
            |e| matches!(e, events::KernelEvent::Open(o) if pids.contains(&o.tgid)),
        );
        let paths: Vec<(String, Option<i32>)> = opens
            .iter()
            .map(|e| match e {
                events::KernelEvent::Open(o) => (o.path.clone(), o.dirfd),
                events::KernelEvent::Connect(_) => unreachable!(),
            })
            .collect();
        let names: Vec<&str> = paths.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, wanted, "{mode:?}: {paths:?}");
        assert!(
            paths.iter().all(|(_, fd)| fd.is_some_and(|fd| fd >= 0)),
            "{mode:?}: every relative open carries its directory descriptor: {paths:?}"
        );
    }
}

/// Both connect hooks: `tp_btf` (preferred) and the classic tracepoint.
#[test]
fn connects_to_watched_endpoints_carry_the_local_port() {
    require_root!();
    for (hook, name) in [
        (ConnectHook::TpBtf, "tp_btf_inet_sock_set_state"),
        (ConnectHook::Tracepoint, "tracepoint_inet_sock_set_state"),
    ] {
        watched_connects_are_reported(hook, name);
    }
}

fn watched_connects_are_reported(hook: ConnectHook, name: &str) {
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let v6 = match TcpListener::bind("[::1]:0") {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("no IPv6 loopback ({e}); testing IPv4 only");
            None
        }
    };
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut endpoints = vec![v4.local_addr().unwrap()];
    if let Some(l) = &v6 {
        endpoints.push(l.local_addr().unwrap());
    }
    let patterns = WatchPatterns::default();
    let mut probes = load_with(HookMode::Tracepoint, hook, &patterns, &endpoints)
        .unwrap_or_else(|e| panic!("loading with connect hook {hook:?}: {e}"));
    assert!(
        probes.hooks().iter().any(|h| h == name),
        "{hook:?}: {:?}",
        probes.hooks()
    );
    let mut ring = probes.take_events().unwrap();

    let mut expected = Vec::new();
    for l in std::iter::once(&v4).chain(v6.as_ref()) {
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        expected.push((s.local_addr().unwrap(), l.local_addr().unwrap()));
    }
    let _unwatched = TcpStream::connect(other.local_addr().unwrap()).unwrap();

    let got = collect(
        &mut ring,
        expected.len() + 1,
        |e| matches!(e, events::KernelEvent::Connect(c) if c.tgid == std::process::id()),
    );
    let got: Vec<(SocketAddr, SocketAddr)> = got
        .into_iter()
        .map(|e| match e {
            events::KernelEvent::Connect(c) => (c.local.expect("local address"), c.remote),
            events::KernelEvent::Open(_) => unreachable!(),
        })
        .collect();
    assert_eq!(
        got, expected,
        "{hook:?}: one event per watched connect, none for the other port"
    );
}

#[test]
fn forced_hooks_fail_clearly_or_report_resolved_paths_with_inodes() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    // LSM/fentry report the resolved path (`bpf_d_path`): canonicalize.
    let root = dir.path().canonicalize().unwrap();
    let token = root.join("token");
    let other = root.join("other");
    std::fs::write(&token, "x").unwrap();
    std::fs::write(&other, "x").unwrap();
    let patterns = WatchPatterns::new([format!("{}/token", root.display())]).unwrap();
    for (mode, name, source) in [
        (HookMode::Lsm, "lsm_file_open", CaptureSource::Lsm),
        (
            HookMode::Fentry,
            "fentry_security_file_open",
            CaptureSource::Fentry,
        ),
    ] {
        match load(mode, &patterns, &[]) {
            Ok(mut p) => {
                assert!(p.hooks().iter().any(|h| h == name), "{:?}", p.hooks());
                assert!(!p.hooks().iter().any(|h| h.starts_with("tracepoint_open")));
                assert_eq!(p.open_source(), source);
                let mut ring = p.take_events().unwrap();
                cat(&other);
                cat(&token);
                let got = collect(
                    &mut ring,
                    1,
                    |e| matches!(e, events::KernelEvent::Open(o) if o.path.starts_with(root.to_str().unwrap())),
                );
                let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&token).unwrap());
                match got.as_slice() {
                    [events::KernelEvent::Open(o)] => {
                        assert_eq!(o.path, token.display().to_string());
                        assert_eq!(o.source, source);
                        assert_eq!(o.inode, ino, "inode from the kernel");
                        assert_eq!(o.comm, "cat");
                    }
                    other => panic!(
                        "{mode:?}: expected one open of {}, got {other:?}",
                        token.display()
                    ),
                }
                eprintln!(
                    "{mode:?} is allowed on this kernel and reports: {:?}",
                    p.hooks()
                );
            }
            Err(LoadError::Refused { hook, reason }) => {
                assert_eq!(hook, mode);
                assert!(!reason.is_empty());
                eprintln!("{mode:?} refused as expected here: {reason}");
            }
            Err(e) => panic!("{mode:?}: unexpected error kind: {e}"),
        }
    }
}

#[test]
fn auto_picks_the_best_allowed_hook_and_says_why_others_were_refused() {
    require_root!();
    let patterns = WatchPatterns::default();
    let p = load_with(HookMode::Auto, ConnectHook::Auto, &patterns, &[])
        .expect("auto always finds a hook");
    let open_hooks: Vec<&String> = p
        .hooks()
        .iter()
        .filter(|h| !h.contains("sock_set_state"))
        .collect();
    assert!(!open_hooks.is_empty());
    // Where LSM and fentry are refused (this sandbox), the raw sys_enter
    // tracepoint comes next: every kernel we test has BTF raw tracepoints.
    if !open_hooks[0].starts_with("lsm_") && !open_hooks[0].starts_with("fentry_") {
        assert_eq!(open_hooks, ["raw_tracepoint_sys_enter"]);
        assert_eq!(
            p.refusals().len(),
            2,
            "LSM and fentry refusals: {:?}",
            p.refusals()
        );
        assert_eq!(
            p.open_source(),
            credtrail_proto::model::CaptureSource::Tracepoint
        );
    }
    // Connects: tp_btf wherever the kernel has BTF (every kernel we test).
    assert!(
        p.hooks().iter().any(|h| h == "tp_btf_inet_sock_set_state"),
        "{:?}",
        p.hooks()
    );
}

#[test]
fn a_full_ring_buffer_is_counted_not_silent() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    let token = dir.path().join("token");
    std::fs::write(&token, "x").unwrap();
    let patterns = WatchPatterns::new([format!("{root}/token")]).unwrap();
    let mut probes = load(HookMode::Tracepoint, &patterns, &[]).expect("load");
    // Hold the ring buffer without reading it.
    let _ring = probes.take_events().unwrap();
    let record = std::mem::size_of::<credtrail_common::OpenEvent>() as u64 + 8;
    let capacity = u64::from(credtrail_common::EVENTS_BYTES) / record;
    let opens = capacity * 2;
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "i=0; while [ $i -lt {opens} ]; do : < '{}'; i=$((i+1)); done",
            token.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let c = probes.counters().unwrap();
    let (emitted, lost) = (
        c[Counter::Emitted as usize],
        c[Counter::RingbufFull as usize],
    );
    assert!(
        emitted <= capacity,
        "emitted {emitted} > capacity {capacity}"
    );
    assert!(lost > 0, "nothing counted as lost");
    assert!(
        emitted + lost >= opens,
        "{emitted} + {lost} < {opens} opens"
    );
}
