//! Unit tests of the enricher against real processes and real files (no
//! eBPF: raw events are built by hand, as the loader would decode them).

use std::os::unix::fs::MetadataExt as _;
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::TimeDelta;

use super::*;
use crate::identity::sha256_hex;
use crate::patterns::WatchPatterns;
use credtrail_proto::model::CredentialKind;

const UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const CID: &str = "4d9f0c3b8e7a6d5c4b3a29180716f5e4d3c2b1a09f8e7d6c5b4a392817060504";

struct World {
    _tmp: tempfile::TempDir,
    cfg: EnrichConfig,
    cgroup_id: u64,
    cgroup_path: String,
    token_dir: PathBuf,
    token: String,
}

fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let cg_root = tmp.path().join("cgroup");
    let cgroup_path = format!(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/crio-{CID}.scope",
        UID.replace('-', "_")
    );
    let cg_dir = cg_root.join(cgroup_path.trim_start_matches('/'));
    std::fs::create_dir_all(&cg_dir).unwrap();
    let pods = tmp.path().join("pods");
    let token_dir = pods
        .join(UID)
        .join("volumes/kubernetes.io~projected/kube-api-access-abcde/..2026_11_23_07_00_00.1");
    std::fs::create_dir_all(&token_dir).unwrap();
    let claims = format!(
        r#"{{"jti":"j-1","sub":"system:serviceaccount:shop:web","kubernetes.io":{{"namespace":"shop","pod":{{"name":"web-0","uid":"{UID}"}},"serviceaccount":{{"name":"web","uid":"sa-1"}}}}}}"#
    );
    let token = format!(
        "{}.{}.c2lnbmF0dXJlLWJ5dGVz",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    );
    std::fs::write(token_dir.join("token"), format!("{token}\n")).unwrap();
    // The kubelet's atomic-writer symlinks: `..data` -> `..<ts>`, `token` -> `..data/token`.
    let volume = token_dir.parent().unwrap();
    std::os::unix::fs::symlink(token_dir.file_name().unwrap(), volume.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/token", volume.join("token")).unwrap();
    World {
        cfg: EnrichConfig {
            node_name: "node-t".into(),
            proc_root: "/proc".into(),
            cgroup_root: cg_root,
            kubelet_pods_dir: pods.clone(),
            report_interval: Duration::from_secs(60),
            extra_addresses: vec!["192.0.2.10".parse().unwrap()],
            pod_cidrs: vec!["10.244.1.0/24".into()],
            patterns: WatchPatterns::new([
                format!(
                    "{}/*/volumes/kubernetes.io~projected/*/..*/token",
                    pods.display()
                ),
                "/nonexistent/credtrail/token".to_string(),
            ])
            .unwrap(),
        },
        cgroup_id: std::fs::metadata(&cg_dir).unwrap().ino(),
        cgroup_path,
        token_dir,
        token,
        _tmp: tmp,
    }
}

/// A real process to attribute events to (`sh` waiting on stdin, killed on drop).
struct Sleeper(std::process::Child);
impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper(cwd: &Path) -> Sleeper {
    let child = Command::new("sh")
        .args(["-c", "read x", "sh", "--token=hunter2"])
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let s = Sleeper(child);
    // Wait until the exec is done (cmdline is the new program's).
    let cmdline = format!("/proc/{}/cmdline", s.0.id());
    for _ in 0..200 {
        if std::fs::read(&cmdline).is_ok_and(|c| c.starts_with(b"sh\0-c\0read x")) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("sh did not start");
}

fn raw_open(w: &World, pid: u32, path: &str, time: DateTime<Utc>) -> RawOpen {
    RawOpen {
        time,
        pid,
        tgid: pid,
        uid: 0,
        comm: "sh".into(),
        cgroup_id: w.cgroup_id,
        mnt_ns: 4026531841,
        ppid: 0,
        path: path.into(),
        dirfd: None,
        flags: 0o2000000,
        inode: 0,
        source: CaptureSource::Tracepoint,
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

#[test]
fn open_is_attributed_identified_and_folded() {
    let w = world();
    let child = sleeper(&w.token_dir);
    let pid = child.0.id();
    let mut e = Enricher::new(w.cfg.clone());
    let path = w.token_dir.join("token").display().to_string();

    let obs = e
        .on_open(raw_open(&w, pid, &path, t0()))
        .expect("first read is reported");
    assert_eq!(obs.node, "node-t");
    assert!(
        obs.id.starts_with("node-t/") && obs.id.ends_with("/1"),
        "{}",
        obs.id
    );
    assert_eq!(obs.time, t0());
    let ObservationEvent::CredentialRead(r) = &obs.event else {
        panic!("{obs:?}")
    };
    assert_eq!(
        (r.source, r.flags, r.reads),
        (CaptureSource::Tracepoint, 0o2000000, 1)
    );
    assert_eq!(r.path, path);
    assert_eq!(r.inode, std::fs::metadata(&path).unwrap().ino());
    let p = r.process.as_ref().unwrap();
    assert_eq!((p.pid, p.tgid, p.uid, p.mnt_ns), (pid, pid, 0, 4026531841));
    assert_eq!(p.ppid, std::process::id());
    assert_eq!(p.comm, "sh");
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    assert_eq!(p.exe.as_deref(), sh.to_str());
    assert_eq!(
        p.cmdline,
        ["sh", "-c", "read x", "sh", "--token=[REDACTED]"]
    );
    assert_eq!(
        p.parent_comm.as_deref(),
        Some(std::fs::read_to_string("/proc/self/comm").unwrap().trim())
    );
    assert_eq!(
        r.workload,
        Some(Workload {
            cgroup_id: w.cgroup_id,
            cgroup_path: Some(w.cgroup_path.clone()),
            container_id: Some(CID.into()),
            container_runtime: Some("crio".into()),
            pod_uid: Some(UID.into()),
            pod_namespace: Some("shop".into()),
            pod_name: Some("web-0".into()),
            qos_class: Some("burstable".into()),
        })
    );
    let id = &r.credential;
    assert_eq!(id.kind, CredentialKind::ServiceAccountToken);
    assert_eq!(id.sha256, Some(sha256_hex(w.token.as_bytes())));
    let claims = id.token.as_ref().unwrap().claims.as_ref().unwrap();
    assert_eq!(claims.jti.as_deref(), Some("j-1"));
    assert_eq!(claims.pod_uid.as_deref(), Some(UID));
    assert!(!serde_json::to_string(&obs).unwrap().contains(&w.token));

    // Four more reads in the interval fold; so does the same file through a
    // relative path: resolved via the process's cwd, it is the same path.
    for s in 1..=4 {
        assert_eq!(
            e.on_open(raw_open(&w, pid, &path, t0() + TimeDelta::seconds(s))),
            None
        );
    }
    assert_eq!(
        e.on_open(raw_open(&w, pid, "token", t0() + TimeDelta::seconds(5))),
        None
    );
    assert_eq!(e.stats().folded, 5);
    assert!(e.flush_due(t0() + TimeDelta::seconds(59)).is_empty());
    let due = e.flush_due(t0() + TimeDelta::seconds(60));
    assert_eq!(due.len(), 1);
    let ObservationEvent::CredentialRead(dr) = &due[0].event else {
        panic!()
    };
    assert_eq!(dr.reads, 5);
    assert_eq!(due[0].time, t0() + TimeDelta::seconds(5));
    assert_ne!(due[0].id, obs.id);
    assert_eq!(dr.process, r.process);
}

#[test]
fn own_events_unreadable_files_and_connects() {
    let w = world();
    let child = sleeper(&w.token_dir);
    let pid = child.0.id();
    let mut e = Enricher::new(w.cfg.clone());
    let me = std::process::id();
    let path = w.token_dir.join("token").display().to_string();
    assert_eq!(e.on_open(raw_open(&w, me, &path, t0())), None);
    assert_eq!(e.stats().own_events, 1);
    // The kernel's filter is a superset: what no pattern matches is dropped.
    let other = w.token_dir.join("namespace").display().to_string();
    assert_eq!(e.on_open(raw_open(&w, pid, &other, t0())), None);
    assert_eq!(e.on_open(raw_open(&w, pid, "namespace", t0())), None);
    assert_eq!(e.stats().unwatched, 2);

    let missing = e
        .on_open(raw_open(&w, pid, "/nonexistent/credtrail/token", t0()))
        .unwrap();
    let ObservationEvent::CredentialRead(r) = &missing.event else {
        panic!()
    };
    assert_eq!(r.credential.kind, CredentialKind::Unknown);
    assert!(
        r.credential
            .error
            .as_deref()
            .unwrap()
            .starts_with("cannot open "),
        "{:?}",
        r.credential.error
    );
    assert_eq!(r.inode, 0);
    assert_eq!(e.stats().unreadable, 1);

    let c = e.on_connect(RawConnect {
        time: t0(),
        pid,
        tgid: pid,
        uid: 0,
        comm: "sh".into(),
        cgroup_id: 1_234_567_890_123,
        mnt_ns: 1,
        ppid: std::process::id(),
        local: Some("127.0.0.1:40000".parse().unwrap()),
        remote: "127.0.0.2:6443".parse().unwrap(),
        source: CaptureSource::SockState,
    });
    let ObservationEvent::ApiConnect(a) = &c.event else {
        panic!()
    };
    assert_eq!(a.remote, "127.0.0.2:6443".parse().unwrap());
    assert_eq!(a.local, Some("127.0.0.1:40000".parse().unwrap()));
    assert_eq!(a.process.as_ref().unwrap().tgid, pid);
    // Unknown cgroup id: the process's own cgroup line is used instead.
    let w2 = a.workload.as_ref().unwrap();
    assert_eq!(w2.cgroup_id, 1_234_567_890_123);
    let own_line = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(
        w2.cgroup_path.as_deref(),
        own_line.lines().find_map(|l| l.strip_prefix("0::"))
    );
    assert_eq!(e.stats().unknown_cgroups, 1);
}

#[test]
fn node_info_and_scan() {
    let w = world();
    let mut e = Enricher::new(w.cfg.clone());
    let n = e.node_info(vec!["tracepoint_openat".into()]);
    let ObservationEvent::NodeInfo(info) = &n.event else {
        panic!()
    };
    assert_eq!(info.name, "node-t");
    assert_eq!(info.hooks, ["tracepoint_openat"]);
    assert_eq!(info.pod_cidrs, ["10.244.1.0/24"]);
    assert!(info.addresses.contains(&"192.0.2.10".parse().unwrap()));

    let pats = WatchPatterns::new([format!(
        "{}/*/volumes/kubernetes.io~projected/*/..*/token",
        w.cfg.kubelet_pods_dir.display()
    )])
    .unwrap();
    // `..data/token` and `..<ts>/token` are one file: reported once, by its stable name.
    let scanned = e.scan_existing(&pats);
    assert_eq!(scanned.len(), 1);
    let ObservationEvent::CredentialRead(r) = &scanned[0].event else {
        panic!()
    };
    assert_eq!(
        r.path,
        w.token_dir
            .parent()
            .unwrap()
            .join("..data/token")
            .display()
            .to_string()
    );
    assert_eq!((r.source, r.reads, r.flags), (CaptureSource::Scan, 0, 0));
    assert_eq!(r.process, None);
    let wl = r.workload.as_ref().unwrap();
    assert_eq!(wl.pod_uid.as_deref(), Some(UID));
    assert_eq!(wl.pod_namespace.as_deref(), Some("shop"));
    assert_eq!(wl.pod_name.as_deref(), Some("web-0"));
    assert_eq!(r.credential.sha256, Some(sha256_hex(w.token.as_bytes())));
}

#[test]
fn kernel_inode_and_resolved_path_are_kept() {
    // LSM/fentry give the inode and the resolved path: no stat is needed to
    // fold, and the reported inode is the kernel's.
    let w = world();
    let child = sleeper(&w.token_dir);
    let pid = child.0.id();
    let mut e = Enricher::new(w.cfg.clone());
    let path = w.token_dir.join("token").display().to_string();
    let mut raw = raw_open(&w, pid, &path, t0());
    raw.source = CaptureSource::Lsm;
    raw.inode = 77;
    raw.ppid = 1;
    let obs = e.on_open(raw.clone()).unwrap();
    let ObservationEvent::CredentialRead(r) = &obs.event else {
        panic!()
    };
    assert_eq!((r.source, r.inode), (CaptureSource::Lsm, 77));
    assert_eq!(r.credential.sha256, Some(sha256_hex(w.token.as_bytes())));
    // The kernel's parent (here 1) wins over /proc's, with its comm.
    let p = r.process.as_ref().unwrap();
    assert_eq!(p.ppid, 1);
    assert_eq!(
        p.parent_comm.as_deref(),
        Some(std::fs::read_to_string("/proc/1/comm").unwrap().trim())
    );
    raw.time = t0() + TimeDelta::seconds(1);
    assert_eq!(e.on_open(raw), None);
}
