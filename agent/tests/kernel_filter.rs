//! Real eBPF on this kernel: the loader's hook choice, the in-kernel path
//! filter and the connect filter. Needs root; without it (or without
//! kernel BTF) each test prints why it is skipped.
//!
//! Run: `cargo test -p credtrail-agent --test kernel_filter -- --test-threads=1`

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use credtrail_agent::HookMode;
use credtrail_agent::loader::{self, LoadError, LoadOptions, Probes, events};
use credtrail_agent::patterns::WatchPatterns;
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
    loader::load(&LoadOptions {
        hook,
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

#[test]
fn tracepoints_report_only_watched_paths_and_filter_in_kernel() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap().to_owned();
    let creds = dir.path().join("creds/sa");
    std::fs::create_dir_all(&creds).unwrap();
    let watched = creds.join("token");
    let same_prefix_other_name = creds.join("namespace");
    let pem = creds.join("client.pem");
    for f in [&watched, &same_prefix_other_name, &pem] {
        std::fs::write(f, "x").unwrap();
    }
    let patterns = WatchPatterns::new([
        format!("{root}/creds/*/token"),
        format!("{root}/creds/*/*.pem"),
    ])
    .unwrap();
    let mut probes = load(HookMode::Tracepoint, &patterns, &[]).expect("tracepoints load");
    assert_eq!(
        probes.hooks(),
        [
            "tracepoint_openat",
            "tracepoint_openat2",
            "tracepoint_inet_sock_set_state"
        ]
    );
    let mut ring = probes.take_events().unwrap();
    let before = probes.counters().unwrap();

    // Our own opens are dropped in the kernel (the agent's tgid).
    std::fs::read(&watched).unwrap();
    cat(&watched);
    cat(&pem);
    cat(&same_prefix_other_name);
    cat(std::path::Path::new("/etc/hostname"));

    let opens = collect(
        &mut ring,
        2,
        |e| matches!(e, events::KernelEvent::Open(o) if o.path.starts_with(&root)),
    );
    let paths: Vec<String> = opens
        .iter()
        .map(|e| match e {
            events::KernelEvent::Open(o) => {
                assert_eq!(o.comm, "cat");
                assert_ne!(o.tgid, std::process::id());
                assert_ne!(o.mnt_ns, 0, "mount namespace from the kernel");
                o.path.clone()
            }
            events::KernelEvent::Connect(_) => unreachable!(),
        })
        .collect();
    assert_eq!(
        paths,
        vec![watched.display().to_string(), pem.display().to_string()],
        "only the watched paths, once each, from cat"
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

#[test]
fn connects_to_watched_endpoints_carry_the_local_port() {
    require_root!();
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
    let mut probes = load(HookMode::Tracepoint, &patterns, &endpoints).expect("load");
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
        "one event per watched connect, none for the other port"
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
    let p = load(HookMode::Auto, &patterns, &[]).expect("auto always finds a hook");
    let open_hooks: Vec<&String> = p
        .hooks()
        .iter()
        .filter(|h| !h.contains("sock_set_state"))
        .collect();
    assert!(!open_hooks.is_empty());
    if open_hooks[0].starts_with("tracepoint_") {
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
    assert!(
        p.hooks()
            .iter()
            .any(|h| h == "tracepoint_inet_sock_set_state")
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
