//! Privileged: a hostile pod against the real agent (real eBPF programs on
//! this kernel), each attack from a pod-shaped cgroup:
//!
//! - a FIFO, a 1 GiB sparse file and a symlink to `/dev/zero` at watched
//!   paths: nothing is read, the agent keeps reporting other reads and stops
//!   within 2 s;
//! - a chroot'ed reader and a reader that exits at once, naming a path where
//!   the host has a victim's token: never reported with the host's token;
//! - every spelling of a token's path (relative, `openat(dirfd)`, `//`,
//!   `/./`, `..`, a symlink the process made): seen and identified;
//! - 100,000 opens of one token by one process: one report per interval, the
//!   agent's CPU time printed;
//! - malformed tokens and kubeconfigs full of a marker string: the marker is
//!   in no observation, log line or encoded stream message.
//!
//! Run: `cargo test -p credtrail-tests --test agent_hostile -- --test-threads=1`
//! (root; prints `SKIP ...` and passes without asserting when not root).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use credtrail_agent::patterns::WatchPatterns;
use credtrail_agent::{AgentConfig, RunningAgent, start};
use credtrail_proto::model::{
    CaptureSource, CredentialKind, CredentialRead, Observation, ObservationEvent,
};
use credtrail_tests::certs::Ca;
use credtrail_tests::fixtures::child::run_if_child;
use credtrail_tests::fixtures::observe::{collect_until, expected_open_source, init_logging};
use credtrail_tests::fixtures::{
    Child, KubeletPod, PodCgroup, PodSpec, Step, skip_unless_privileged,
};
use sha2::{Digest as _, Sha256};

/// Longest wait for expected observations (generous for the VM's emulated CPU).
const WAIT: Duration = Duration::from_secs(60);
/// How long to keep listening for what must NOT come.
fn quiet() -> Duration {
    if std::env::var_os("CREDTRAIL_IN_VM").is_some() {
        Duration::from_secs(8)
    } else {
        Duration::from_secs(3)
    }
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn container_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn config(cgroup: &PodCgroup, pods_dir: &Path, patterns: &[String]) -> AgentConfig {
    AgentConfig {
        node_name: "credtrail-hostile-node".into(),
        cgroup_root: cgroup.root().to_path_buf(),
        proc_root: "/proc".into(),
        kubelet_pods_dir: pods_dir.to_path_buf(),
        patterns: WatchPatterns::new(patterns).unwrap(),
        report_interval: Duration::from_secs(600),
        scan_on_start: false,
        ..AgentConfig::default()
    }
}

fn reads_by(obs: &[Observation], tgid: u32) -> Vec<&CredentialRead> {
    obs.iter()
        .filter_map(|o| match &o.event {
            ObservationEvent::CredentialRead(r)
                if r.process.as_ref().is_some_and(|p| p.tgid == tgid) =>
            {
                Some(r)
            }
            _ => None,
        })
        .collect()
}

/// Spawns a child running `steps` in `cgroup` and lets it run them.
fn run_child(test: &str, steps: &[Step], cgroup: &PodCgroup) -> Child {
    let mut child = Child::spawn(test, steps).unwrap();
    cgroup.add(child.pid).unwrap();
    child.go().unwrap();
    child
}

/// Shuts the agent down and asserts it took less than 2 s.
async fn stop_within_2s(agent: RunningAgent) {
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), agent.shutdown())
        .await
        .expect("the agent did not stop within 2 s");
    println!("agent stopped in {:?}", t.elapsed());
}

/// A scratch folder under /tmp that every process sees (no mount namespace).
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("credtrail-hostile-")
        .tempdir_in("/tmp")
        .unwrap()
}

#[test]
fn fifo_sparse_file_and_dev_zero_neither_block_nor_get_read() {
    run_if_child();
    let _logs = init_logging("credtrail_agent=info");
    let test = "fifo_sparse_file_and_dev_zero_neither_block_nor_get_read";
    if skip_unless_privileged(test) {
        return;
    }
    let ca = Ca::new("credtrail-hostile-ca").unwrap();
    let spec = PodSpec::new("attack", "fifo-0", "node-a", "default");
    let pod = KubeletPod::create(spec.clone(), &ca.cert_pem()).unwrap();
    let cgroup = PodCgroup::create("besteffort", &spec.uid, &container_id()).unwrap();
    let d = scratch();
    for sub in ["fifo", "sparse", "zero"] {
        std::fs::create_dir(d.path().join(sub)).unwrap();
    }
    let fifo = d.path().join("fifo/token");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let sparse = d.path().join("sparse/token");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let zero = d.path().join("zero/token");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let mut patterns = pod.watch_patterns();
    patterns.push(format!("{}/*/token", d.path().display()));
    let cfg = config(&cgroup, &pod.pods_dir, &patterns);
    let open = |path: &Path| Step::Open {
        path: path.to_path_buf(),
        at: None,
        times: 1,
        nonblock: true,
        may_fail: false,
    };
    let rt = runtime();
    rt.block_on(async {
        let mut agent = start(cfg).await.expect("agent starts");
        let source = expected_open_source(agent.hooks());
        // LSM/fentry report `/dev/zero` itself (not watched).
        let attacks_seen = match source {
            CaptureSource::Lsm | CaptureSource::Fentry => 2,
            _ => 3,
        };
        let mut all = Vec::new();
        // The attacks first, then a real token read by another process.
        let attacker = run_child(test, &[open(&fifo), open(&sparse), open(&zero)], &cgroup);
        let reader = run_child(test, &[open(&pod.token_path)], &cgroup);
        let token_sha = sha(pod.token.as_bytes());
        let ok = collect_until(&mut agent.observations, &mut all, WAIT, |o| {
            reads_by(o, reader.pid)
                .iter()
                .any(|r| r.credential.sha256.as_deref() == Some(&token_sha))
                && reads_by(o, attacker.pid).len() >= attacks_seen
        })
        .await;
        assert!(
            ok,
            "the token read after the attacks was not reported: {all:#?}"
        );
        let attacks = reads_by(&all, attacker.pid);
        let by_path = |p: &Path| {
            attacks
                .iter()
                .find(|r| r.path == p.display().to_string())
                .copied()
        };
        let f = by_path(&fifo).expect("the FIFO open is reported");
        assert_eq!(f.credential.kind, CredentialKind::NotARegularFile, "{f:?}");
        assert!(
            f.credential.error.as_deref().unwrap().contains("fifo"),
            "{f:?}"
        );
        assert_eq!(f.credential.sha256, None);
        let s = by_path(&sparse).expect("the sparse file open is reported");
        assert!(
            s.credential
                .error
                .as_deref()
                .unwrap()
                .contains("larger than"),
            "{s:?}"
        );
        assert_eq!(s.credential.sha256, None);
        match source {
            // LSM/fentry report the resolved path (`/dev/zero`), not watched.
            CaptureSource::Lsm | CaptureSource::Fentry => {}
            _ => {
                let z = by_path(&zero).expect("the /dev/zero symlink open is reported");
                assert_eq!(z.credential.kind, CredentialKind::NotARegularFile);
                assert!(
                    z.credential
                        .error
                        .as_deref()
                        .unwrap()
                        .contains("character device"),
                    "{z:?}"
                );
            }
        }
        drop((attacker, reader));
        stop_within_2s(agent).await;
    });
}

#[test]
fn chrooted_and_exited_readers_never_get_the_hosts_token() {
    run_if_child();
    let _logs = init_logging("credtrail_agent=info");
    let test = "chrooted_and_exited_readers_never_get_the_hosts_token";
    if skip_unless_privileged(test) {
        return;
    }
    let ca = Ca::new("credtrail-hostile-ca").unwrap();
    let spec = PodSpec::new("victims", "victim-0", "node-a", "admin");
    let victim = KubeletPod::create(spec.clone(), &ca.cert_pem()).unwrap();
    let attacker_spec = PodSpec::new("attack", "chroot-0", "node-a", "default");
    let cgroup = PodCgroup::create("besteffort", &attacker_spec.uid, &container_id()).unwrap();
    // The attacker's root: an empty folder (the victim's path is not in it).
    let jail = scratch();
    let cfg = config(&cgroup, &victim.pods_dir, &victim.watch_patterns());
    let named = victim.token_path.clone();
    let steps = |exit: bool| {
        let mut s = vec![
            Step::Chroot {
                dir: jail.path().to_path_buf(),
            },
            Step::Open {
                path: named.clone(),
                at: None,
                times: 1,
                nonblock: true,
                may_fail: true,
            },
        ];
        if exit {
            s.push(Step::Exit);
        }
        s
    };
    let victim_sha = sha(victim.token.as_bytes());
    let rt = runtime();
    rt.block_on(async {
        let mut agent = start(cfg).await.expect("agent starts");
        let source = expected_open_source(agent.hooks());
        let mut all = Vec::new();
        let stays = run_child(test, &steps(false), &cgroup);
        let exits = run_child(test, &steps(true), &cgroup);
        let (a, b) = (stays.pid, exits.pid);
        if matches!(source, CaptureSource::Lsm | CaptureSource::Fentry) {
            // Failed opens never reach LSM/fentry: nothing to report.
            collect_until(&mut agent.observations, &mut all, quiet(), |_| false).await;
        } else {
            // The system-call hooks see the attempts: reported, without identity.
            let ok = collect_until(&mut agent.observations, &mut all, WAIT, |o| {
                !reads_by(o, a).is_empty() && !reads_by(o, b).is_empty()
            })
            .await;
            assert!(ok, "the chroot'ed opens were not reported: {all:#?}");
            for r in reads_by(&all, a).into_iter().chain(reads_by(&all, b)) {
                let e = r.credential.error.as_deref().unwrap_or_default();
                assert!(
                    e.starts_with("cannot open") || e.contains("process exited"),
                    "{r:?}"
                );
            }
        }
        for r in reads_by(&all, a).into_iter().chain(reads_by(&all, b)) {
            assert_eq!(r.credential.sha256, None, "host token attributed: {r:?}");
        }
        let json = serde_json::to_string(&all).unwrap();
        assert!(
            !json.contains(&victim_sha),
            "the victim's token was reported"
        );
        drop(stays);
        stop_within_2s(agent).await;
    });
}

#[test]
fn every_spelling_of_a_token_path_is_seen() {
    run_if_child();
    let _logs = init_logging("credtrail_agent=info");
    let test = "every_spelling_of_a_token_path_is_seen";
    if skip_unless_privileged(test) {
        return;
    }
    let ca = Ca::new("credtrail-hostile-ca").unwrap();
    let spec = PodSpec::new("attack", "paths-0", "node-a", "default");
    let pod = KubeletPod::create(spec.clone(), &ca.cert_pem()).unwrap();
    let cgroup = PodCgroup::create("besteffort", &spec.uid, &container_id()).unwrap();
    let cfg = config(&cgroup, &pod.pods_dir, &pod.watch_patterns());
    let links = scratch();
    let vol = pod.volume_dir.clone();
    let tok = pod.token_path.display().to_string();
    let vol_name = vol.file_name().unwrap().to_str().unwrap().to_owned();
    let open = |path: &str, at: Option<&Path>| Step::Open {
        path: path.into(),
        at: at.map(Path::to_path_buf),
        times: 1,
        nonblock: false,
        may_fail: false,
    };
    // (what, steps): each variant in its own process (one report each).
    let variants: Vec<(&str, Vec<Step>)> = vec![
        (
            "relative",
            vec![Step::Chdir { dir: vol.clone() }, open("token", None)],
        ),
        ("openat(dirfd)", vec![open("token", Some(&vol))]),
        ("//", vec![open(&format!("/{tok}"), None)]),
        ("/./", vec![open(&format!("/.{tok}"), None)]),
        ("/../ at the root", vec![open(&format!("/..{tok}"), None)]),
        (
            "dir/../dir",
            vec![open(
                &format!("{}/../{vol_name}/token", vol.display()),
                None,
            )],
        ),
        (
            "relative ../",
            vec![
                Step::Chdir {
                    dir: vol.join("..data"),
                },
                open("../token", None),
            ],
        ),
        (
            "own symlink, relative",
            vec![
                Step::Symlink {
                    target: pod.token_path.clone(),
                    link: links.path().join("token"),
                },
                Step::Chdir {
                    dir: links.path().to_path_buf(),
                },
                open("token", None),
            ],
        ),
    ];
    let token_sha = sha(pod.token.as_bytes());
    let accepted = [tok.clone(), pod.token_file.display().to_string()];
    let rt = runtime();
    rt.block_on(async {
        let mut agent = start(cfg).await.expect("agent starts");
        let source = expected_open_source(agent.hooks());
        let mut all = Vec::new();
        let mut missing = Vec::new();
        let mut children = Vec::new();
        for (what, steps) in &variants {
            let child = run_child(test, steps, &cgroup);
            let pid = child.pid;
            children.push(child);
            let ok = collect_until(&mut agent.observations, &mut all, WAIT, |o| {
                !reads_by(o, pid).is_empty()
            })
            .await;
            if !ok {
                missing.push(*what);
                continue;
            }
            let r = reads_by(&all, pid)[0];
            println!("{what}: reported as {}", r.path);
            assert!(accepted.contains(&r.path), "{what}: path {}", r.path);
            assert_eq!(
                r.credential.sha256.as_deref(),
                Some(token_sha.as_str()),
                "{what}: {r:?}"
            );
        }
        assert!(missing.is_empty(), "not seen: {missing:?}");
        // A symlink with an innocent name at an unwatched absolute path: the
        // file hooks resolve it; the system-call hooks cannot, and say so.
        let x = links.path().join("x");
        let steps = [
            Step::Symlink {
                target: pod.token_path.clone(),
                link: x.clone(),
            },
            open(x.to_str().unwrap(), None),
        ];
        let child = run_child(test, &steps, &cgroup);
        let pid = child.pid;
        children.push(child);
        let ObservationEvent::NodeInfo(info) = all[0].event.clone() else {
            panic!("first observation is not node info: {:?}", all[0]);
        };
        match source {
            CaptureSource::Lsm | CaptureSource::Fentry => {
                assert!(info.blind_spots.is_empty(), "{:?}", info.blind_spots);
                assert!(
                    collect_until(&mut agent.observations, &mut all, WAIT, |o| {
                        !reads_by(o, pid).is_empty()
                    })
                    .await,
                    "the innocent symlink was not seen"
                );
            }
            _ => {
                collect_until(&mut agent.observations, &mut all, quiet(), |_| false).await;
                assert!(reads_by(&all, pid).is_empty());
                assert!(
                    info.blind_spots.iter().any(|b| b.contains("symlink")),
                    "the blind spot is not declared: {:?}",
                    info.blind_spots
                );
            }
        }
        drop(children);
        stop_within_2s(agent).await;
    });
}

#[test]
fn a_hundred_thousand_opens_are_one_report_at_bounded_cost() {
    run_if_child();
    let _logs = init_logging("credtrail_agent=info");
    let test = "a_hundred_thousand_opens_are_one_report_at_bounded_cost";
    if skip_unless_privileged(test) {
        return;
    }
    let ca = Ca::new("credtrail-hostile-ca").unwrap();
    let spec = PodSpec::new("attack", "flood-0", "node-a", "default");
    let pod = KubeletPod::create(spec.clone(), &ca.cert_pem()).unwrap();
    let cgroup = PodCgroup::create("besteffort", &spec.uid, &container_id()).unwrap();
    let cfg = config(&cgroup, &pod.pods_dir, &pod.watch_patterns());
    // 100,000 here; fewer under the VMs' emulated CPU (CI time), same code path.
    let opens: u32 = if std::env::var_os("CREDTRAIL_IN_VM").is_some() {
        20_000
    } else {
        100_000
    };
    let steps = [Step::Open {
        path: pod.token_path.clone(),
        at: None,
        times: opens,
        nonblock: false,
        may_fail: false,
    }];
    let rt = runtime();
    rt.block_on(async {
        let mut agent = start(cfg).await.expect("agent starts");
        expected_open_source(agent.hooks());
        let cpu0 = cpu_time();
        let t0 = Instant::now();
        let child = run_child(test, &steps, &cgroup);
        let opened = t0.elapsed();
        let mut all = Vec::new();
        let pid = child.pid;
        assert!(
            collect_until(&mut agent.observations, &mut all, WAIT, |o| {
                !reads_by(o, pid).is_empty()
            })
            .await,
            "the flood was not reported at all"
        );
        // Let the agent work through what the ring buffer holds.
        collect_until(&mut agent.observations, &mut all, quiet(), |_| false).await;
        let cpu = cpu_time() - cpu0;
        let reports = reads_by(&all, pid).len();
        let losses: Vec<_> = all
            .iter()
            .filter_map(|o| match &o.event {
                ObservationEvent::Loss(l) => Some((l.stage.clone(), l.total)),
                _ => None,
            })
            .collect();
        println!(
            "{opens} opens in {opened:?}: {reports} report(s), losses {losses:?}, agent CPU time {cpu:?}"
        );
        assert_eq!(reports, 1, "one report per interval: {all:#?}");
        // Generous: the point is that it is bounded, not a benchmark.
        let bound = if std::env::var_os("CREDTRAIL_IN_VM").is_some() {
            Duration::from_secs(240)
        } else {
            Duration::from_secs(30)
        };
        assert!(cpu < bound, "agent CPU time {cpu:?} over {bound:?}");
        drop(child);
        stop_within_2s(agent).await;
    });
}

/// CPU time of this process (the agent runs in it; the children do not).
fn cpu_time() -> Duration {
    // SAFETY: rusage is plain data; zero is a valid value; a valid out pointer.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

const MARKER: &str = "CTSECRETMARKER9q4z";

/// Malformed credentials whose every secret-bearing value is the marker.
fn marker_files(dir: &Path) -> Vec<PathBuf> {
    use base64::Engine as _;
    let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let s = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let m = MARKER;
    let files: Vec<(&str, String)> = vec![
        ("t1/token", m.to_owned()),
        ("t2/token", format!("{m}.{m}.{m}")),
        (
            "t3/token",
            format!("{}.{}.{m}", b("{\"alg\":\"RS256\"}"), b(m)),
        ),
        (
            "t4/token",
            format!(
                "{}.{}.{m}",
                b("{\"alg\":\"RS256\"}"),
                b(&format!("{{\"exp\":\"{m}\",\"sub\":[\"{m}\"]}}"))
            ),
        ),
        (
            "t5/token",
            format!(
                "{}.{}.{m}",
                b(&format!("{{\"alg\":{{\"{m}\":1}}}}")),
                b("{}")
            ),
        ),
        (
            "k1/x.kubeconfig",
            format!("users:\n- name: u\n  user: {m}\n"),
        ),
        (
            "k2/x.kubeconfig",
            format!("users:\n- name: u\n  user:\n    token: {{t: {m}}}\n    password: {m}\n"),
        ),
        (
            "k3/x.kubeconfig",
            format!(
                "users:\n- name: u\n  user:\n    client-certificate-data: \"{m}%%\"\n    client-key-data: {m}\n"
            ),
        ),
        (
            "k4/x.kubeconfig",
            format!(
                "users:\n- name: u\n  user:\n    client-certificate-data: {}\n",
                s(&format!("-----BEGIN {m}-----\n{m}\n"))
            ),
        ),
        ("k5/x.kubeconfig", format!("kind: {m}\nusers: []\n")),
        ("k6/x.kubeconfig", format!("{m}: [unclosed\n")),
        (
            "k7/x.kubeconfig",
            format!("users:\n- name: u\n  user:\n    token: {m}\n    username: [{m}]\n"),
        ),
        (
            "k8/x.kubeconfig",
            format!(
                "users:\n- name: u\n  user:\n    client-certificate-data: {}\n",
                s(&format!(
                    "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                    s(m)
                ))
            ),
        ),
    ];
    files
        .into_iter()
        .map(|(rel, content)| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
            p
        })
        .collect()
}

#[test]
fn secret_markers_reach_no_observation_log_or_stream_message() {
    run_if_child();
    let logs = init_logging("credtrail_agent=debug");
    let test = "secret_markers_reach_no_observation_log_or_stream_message";
    if skip_unless_privileged(test) {
        return;
    }
    let spec = PodSpec::new("attack", "markers-0", "node-a", "default");
    let cgroup = PodCgroup::create("besteffort", &spec.uid, &container_id()).unwrap();
    let d = scratch();
    let files = marker_files(d.path());
    let patterns = vec![
        format!("{}/*/token", d.path().display()),
        format!("{}/*/*.kubeconfig", d.path().display()),
    ];
    let mut cfg = config(&cgroup, d.path(), &patterns);
    cfg.scan_on_start = false;
    let steps: Vec<Step> = files
        .iter()
        .map(|p| Step::Open {
            path: p.clone(),
            at: None,
            times: 1,
            nonblock: false,
            may_fail: false,
        })
        .collect();
    let rt = runtime();
    rt.block_on(async {
        let mut agent = start(cfg).await.expect("agent starts");
        expected_open_source(agent.hooks());
        let mut all = Vec::new();
        let child = run_child(test, &steps, &cgroup);
        let pid = child.pid;
        let n = files.len();
        let ok = collect_until(&mut agent.observations, &mut all, WAIT, |o| {
            reads_by(o, pid).len() >= n
        })
        .await;
        let seen: Vec<&str> = reads_by(&all, pid)
            .iter()
            .map(|r| r.path.as_str())
            .collect();
        assert!(ok, "not every marker file was reported: {seen:?}");
        for r in reads_by(&all, pid) {
            assert!(
                r.credential.error.is_some() || r.credential.token.is_some(),
                "{r:?}"
            );
        }
        // Observations (JSON lines), stream messages (the protobuf the stream
        // and its spool carry), log lines.
        let json = serde_json::to_string(&all).unwrap();
        assert!(!json.contains(MARKER), "marker in an observation");
        for o in &all {
            let bytes = prost::Message::encode_to_vec(
                &credtrail_proto::pb::agent::Observation::from(o.clone()),
            );
            assert!(
                !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
                "marker in an encoded stream observation"
            );
        }
        assert!(!logs.text().contains(MARKER), "marker in a log line");
        drop(child);
        stop_within_2s(agent).await;
    });
}

/// The shipping binary: `CREDTRAIL_AGENT_BIN`, else `/bin/credtrail-agent`
/// (the VMs), else next to the test binary's folder (`target/<profile>/`).
fn agent_binary() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("CREDTRAIL_AGENT_BIN").map(PathBuf::from),
        Some(PathBuf::from("/bin/credtrail-agent")),
        std::env::current_exe()
            .ok()
            .and_then(|e| Some(e.parent()?.parent()?.join("credtrail-agent"))),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

/// Waits until `file` holds `needle` (at most `wait`).
fn wait_for_text(file: &Path, needle: &str, wait: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < wait {
        if std::fs::read_to_string(file).is_ok_and(|s| s.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn sigterm_ends_the_agent_binary_within_2s_after_a_fifo_attack() {
    run_if_child();
    let test = "sigterm_ends_the_agent_binary_within_2s_after_a_fifo_attack";
    if skip_unless_privileged(test) {
        return;
    }
    let Some(bin) = agent_binary() else {
        println!("SKIP {test}: no credtrail-agent binary (build it, or set CREDTRAIL_AGENT_BIN)");
        return;
    };
    let spec = PodSpec::new("attack", "fifo-bin-0", "node-a", "default");
    let cgroup = PodCgroup::create("besteffort", &spec.uid, &container_id()).unwrap();
    let d = scratch();
    std::fs::create_dir(d.path().join("fifo")).unwrap();
    std::fs::create_dir(d.path().join("good")).unwrap();
    let fifo = d.path().join("fifo/token");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let good = d.path().join("good/token");
    std::fs::write(&good, "opaque-test-token").unwrap();
    let out = d.path().join("out.jsonl");
    let mut agent = std::process::Command::new(&bin)
        .args([
            "--node-name",
            "credtrail-hostile-bin",
            "--no-scan",
            "--output",
            "jsonl",
        ])
        .arg(&out)
        .arg("--watch")
        .arg(format!("{}/*/token", d.path().display()))
        .arg("--cgroup-root")
        .arg(cgroup.root())
        .spawn()
        .unwrap();
    let started = wait_for_text(&out, "node_info", WAIT);
    let open = |p: &Path| Step::Open {
        path: p.to_path_buf(),
        at: None,
        times: 1,
        nonblock: true,
        may_fail: false,
    };
    let attacker = started.then(|| run_child(test, &[open(&fifo)], &cgroup));
    let reader = started.then(|| run_child(test, &[open(&good)], &cgroup));
    let reported = started && wait_for_text(&out, &good.display().to_string(), WAIT);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let t = Instant::now();
    let mut exited = None;
    while t.elapsed() < Duration::from_secs(2) {
        if let Ok(Some(status)) = agent.try_wait() {
            exited = Some(status);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t.elapsed();
    if exited.is_none() {
        let _ = agent.kill();
    }
    let _ = agent.wait();
    drop((attacker, reader));
    assert!(started, "the agent binary did not start");
    assert!(
        reported,
        "a token read after the FIFO attack was not reported"
    );
    println!("agent binary exited {took:?} after SIGTERM: {exited:?}");
    assert!(exited.is_some(), "the agent binary ignored SIGTERM for 2 s");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("not_a_regular_file"),
        "the FIFO is not reported as what it is"
    );
}
