//! Privileged: the real agent (real eBPF programs on this kernel) watching a
//! pod-shaped process read its projected service-account token and a
//! kubeconfig with an embedded client certificate, then call a local TLS
//! "API server". Every field of the observations is checked, repeated reads
//! fold into one report with the right count, and no byte of any secret
//! appears in the output.
//!
//! Run: `cargo test -p credtrail-tests --test agent_credentials -- --test-threads=1`
//! (root; prints `SKIP ...` and passes without asserting when not root).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use credtrail_agent::patterns::{DEFAULT_PATTERNS, WatchPatterns};
use credtrail_agent::{AgentConfig, start};
use credtrail_proto::model::{
    ApiConnect, CaptureSource, CredentialKind, CredentialRead, JwtClaims, Observation,
    ObservationEvent, Process, Workload,
};
use credtrail_tests::certs::Ca;
use credtrail_tests::fixtures::child::{SA_DIR, run_if_child};
use credtrail_tests::fixtures::observe::{
    assert_no_secret, collect_until, expected_open_path, expected_open_source, process_of,
};
use credtrail_tests::fixtures::{
    Child, KubeconfigFixture, KubeletPod, PodCgroup, PodSpec, Step, TlsApiServer,
    skip_unless_privileged,
};
use sha2::{Digest as _, Sha256};

/// Longest wait for expected observations (returns as soon as they arrive;
/// generous for the VM's emulated CPU).
const WAIT: Duration = Duration::from_secs(60);
const NODE: &str = "credtrail-test-node";
/// The report interval: long enough that all reads of the child fall in
/// one interval, also under the VM's emulated CPU (`CREDTRAIL_IN_VM`).
fn interval() -> Duration {
    if std::env::var_os("CREDTRAIL_IN_VM").is_some() {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(3)
    }
}
const READS: u32 = 25;

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

fn mnt_ns_of(pid: u32, tid: u32) -> u64 {
    let link = std::fs::read_link(format!("/proc/{pid}/task/{tid}/ns/mnt")).unwrap();
    let s = link.to_string_lossy();
    s.trim_start_matches("mnt:[")
        .trim_end_matches(']')
        .parse()
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn expected_claims(spec: &PodSpec) -> JwtClaims {
    JwtClaims {
        iss: Some(spec.issuer.clone()),
        sub: Some(format!(
            "system:serviceaccount:{}:{}",
            spec.namespace, spec.service_account
        )),
        aud: vec![spec.audience.clone()],
        jti: Some(spec.jti.clone()),
        iat: Some(spec.iat),
        nbf: Some(spec.iat),
        exp: Some(spec.exp),
        namespace: Some(spec.namespace.clone()),
        service_account_name: Some(spec.service_account.clone()),
        service_account_uid: Some(spec.service_account_uid.clone()),
        pod_name: Some(spec.name.clone()),
        pod_uid: Some(spec.uid.clone()),
        node_name: Some(spec.node_name.clone()),
        node_uid: Some(spec.node_uid.clone()),
        secret_name: None,
    }
}

fn reads_of<'a>(obs: &'a [Observation], tgid: u32, path: &str) -> Vec<&'a CredentialRead> {
    obs.iter()
        .filter_map(|o| match &o.event {
            ObservationEvent::CredentialRead(r)
                if r.path == path && r.process.as_ref().is_some_and(|p| p.tgid == tgid) =>
            {
                Some(r)
            }
            _ => None,
        })
        .collect()
}

fn connects_of(obs: &[Observation], tgid: u32) -> Vec<&ApiConnect> {
    obs.iter()
        .filter_map(|o| match &o.event {
            ObservationEvent::ApiConnect(c)
                if c.process.as_ref().is_some_and(|p| p.tgid == tgid) =>
            {
                Some(c)
            }
            _ => None,
        })
        .collect()
}

#[test]
fn pod_process_token_kubeconfig_and_api_connect_are_reported_without_secrets() {
    run_if_child();
    let logs = credtrail_tests::fixtures::observe::init_logging("credtrail_agent=debug");
    if skip_unless_privileged(
        "pod_process_token_kubeconfig_and_api_connect_are_reported_without_secrets",
    ) {
        return;
    }
    let ca = Ca::new("credtrail-test-cluster-ca").unwrap();
    let spec = PodSpec::new("payments", "api-7d9f8b6c5-x2x4q", "node-a", "api");
    let pod = KubeletPod::create(spec.clone(), &ca.cert_pem()).unwrap();
    let cgroup = PodCgroup::create("besteffort", &spec.uid, &container_id()).unwrap();
    let api = TlsApiServer::start(Ipv4Addr::new(127, 77, 0, 1), &ca).unwrap();
    let kc = KubeconfigFixture::create(
        &ca,
        &format!("https://{}", api.addr),
        "kubernetes-admin",
        &["kubeadm:cluster-admins"],
    )
    .unwrap();
    // Listener that is NOT an API endpoint: connects to it must produce nothing.
    let other = TcpListener::bind((Ipv4Addr::new(127, 77, 0, 2), 0)).unwrap();
    let other_addr = other.local_addr().unwrap();

    let mut patterns: Vec<String> = DEFAULT_PATTERNS.iter().map(|s| s.to_string()).collect();
    patterns.extend(pod.watch_patterns());
    patterns.push(kc.watch_pattern());
    // LSM/fentry report the path the kernel resolved (`..data` followed).
    patterns.push(format!("{SA_DIR}/..*/token"));
    let cfg = AgentConfig {
        node_name: NODE.into(),
        cgroup_root: cgroup.root().to_path_buf(),
        proc_root: "/proc".into(),
        kubelet_pods_dir: pod.pods_dir.clone(),
        patterns: WatchPatterns::new(&patterns).unwrap(),
        api_endpoints: vec![api.addr],
        report_interval: interval(),
        scan_on_start: true,
        ..AgentConfig::default()
    };
    // Containers name the token through `/var/run`, an absolute symlink to
    // `/run` in most images (and on this host): the agent must resolve it in
    // the process's root, not its own. Where `/var/run` is not a symlink
    // (a busybox VM), the `/run` name is used.
    let token_in_pod = if std::fs::read_link("/var/run").is_ok_and(|t| t == Path::new("/run")) {
        "/var/run/secrets/kubernetes.io/serviceaccount/token".to_string()
    } else {
        format!("{SA_DIR}/token")
    };
    let ca_in_pod = format!("{SA_DIR}/ca.crt");
    let not_watched = pod.root().join("token");
    std::fs::write(&not_watched, "not a watched file").unwrap();
    let test = "pod_process_token_kubeconfig_and_api_connect_are_reported_without_secrets";
    let steps = vec![
        Step::SetComm {
            name: "ct-reader".into(),
        },
        Step::MountServiceAccount {
            volume: pod.volume_dir.clone(),
        },
        // First what must produce nothing: unwatched opens (one named `token`
        // in an unwatched folder, one next to the token), a non-API connect.
        Step::Read {
            path: not_watched.clone(),
            times: 3,
        },
        Step::Read {
            path: ca_in_pod.clone().into(),
            times: 3,
        },
        Step::Connect { addr: other_addr },
        // Then the watched ones.
        Step::Read {
            path: token_in_pod.clone().into(),
            times: READS,
        },
        Step::Read {
            path: kc.path.clone(),
            times: 1,
        },
        Step::ApiGet {
            addr: api.addr,
            ca_pem: ca.cert_pem(),
        },
    ];

    let rt = runtime();
    let mut all: Vec<Observation> = Vec::new();
    let (child_pid, child_tid, child_mnt_ns) = rt.block_on(async {
        let mut agent = start(cfg).await.expect("agent starts");
        let open_source = expected_open_source(agent.hooks());
        let hooks = agent.hooks().to_vec();

        // Node info first.
        assert!(collect_until(&mut agent.observations, &mut all, WAIT, |o| !o.is_empty()).await);
        let ObservationEvent::NodeInfo(info) = &all[0].event else {
            panic!("first observation is not node info: {:?}", all[0]);
        };
        assert_eq!(all[0].node, NODE);
        assert_eq!(info.name, NODE);
        assert_eq!(info.hooks, hooks);
        assert_eq!(info.agent_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(
            info.kernel_release,
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap()
                .trim()
        );
        assert!(
            info.addresses.iter().all(|a| !a.is_loopback()),
            "{:?}",
            info.addresses
        );

        let started = chrono::Utc::now();
        let mut child = Child::spawn(test, &steps).unwrap();
        cgroup.add(child.pid).unwrap();
        assert_eq!(cgroup.pids(), vec![child.pid]);
        child.go().unwrap();
        let (pid, tid) = (child.pid, child.tid);
        let mnt_ns = mnt_ns_of(pid, tid);
        let kc_path = expected_open_path(
            open_source,
            &kc.path.display().to_string(),
            &std::fs::canonicalize(&kc.path)
                .unwrap()
                .display()
                .to_string(),
        );
        let token_path = expected_open_path(
            open_source,
            &token_in_pod,
            &format!(
                "{SA_DIR}/{}/token",
                credtrail_tests::fixtures::kubelet::TS_DIR
            ),
        );
        let token_in_pod2 = token_path.clone();
        // The first token report, the kubeconfig read and the connect, then
        // the folded token reads once the interval ends.
        let ok = collect_until(&mut agent.observations, &mut all, WAIT, |o| {
            reads_of(o, pid, &token_in_pod2).len() >= 2
                && !reads_of(o, pid, &kc_path).is_empty()
                && !connects_of(o, pid).is_empty()
        })
        .await;
        // Anything stray still in flight.
        collect_until(
            &mut agent.observations,
            &mut all,
            Duration::from_secs(1),
            |_| false,
        )
        .await;
        assert!(
            ok,
            "expected observations missing; got for pid {pid}: {:#?}",
            all.iter()
                .filter(|o| process_of(o).is_some_and(|p| p.tgid == pid))
                .collect::<Vec<_>>()
        );
        agent.shutdown().await;
        let expect = Expect {
            pid,
            tid,
            mnt_ns,
            window: (started, chrono::Utc::now()),
            source: open_source,
            token_path,
            kc_path,
        };
        check_observations(&all, &pod, &cgroup, &kc, &api, other_addr, &expect);
        child.finish().unwrap();
        (pid, tid, mnt_ns)
    });
    eprintln!(
        "checked {} observations (child pid {child_pid} tid {child_tid} mnt {child_mnt_ns})",
        all.len()
    );

    // No byte of any secret anywhere in the output.
    let output: String = all
        .iter()
        .map(|o| serde_json::to_string(o).unwrap() + "\n")
        .collect();
    let sig = pod.token.rsplit('.').next().unwrap().to_string();
    let payload = pod.token.split('.').nth(1).unwrap().to_string();
    let mut secrets = vec![
        ("raw token", pod.token.clone()),
        ("token signature", sig),
        ("token payload (encoded)", payload),
        ("kubeconfig text", kc.text.clone()),
        ("client cert PEM", kc.client.cert_pem.clone()),
        ("client key PEM", kc.client.key_pem.clone()),
        (
            "client key DER (base64)",
            base64::engine::general_purpose::STANDARD.encode(&kc.key_der),
        ),
    ];
    secrets.extend(
        kc.secret_strings()
            .into_iter()
            .map(|s| ("kubeconfig secret encoding", s)),
    );
    assert_no_secret(&output, &secrets);
    // Nor in the agent's logs.
    let logged = logs.text();
    assert_no_secret(&logged, &secrets);
    // Raw DER bytes cannot appear in JSON text, but the lossy text of them could:
    // check their longest printable runs too.
    for der in [&kc.client.der, &kc.key_der] {
        let lossy = String::from_utf8_lossy(der);
        for run in lossy
            .split(|c: char| !c.is_ascii_graphic())
            .filter(|r| r.len() >= 12)
        {
            assert!(!output.contains(run), "DER bytes {run:?} leaked");
        }
    }
}

/// What the child is and how its opens must be reported.
struct Expect {
    pid: u32,
    tid: u32,
    mnt_ns: u64,
    /// Wall-clock span in which the child acted (its events' kernel times
    /// must convert into it).
    window: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    source: CaptureSource,
    /// The token's path as reported (named or resolved, by hook).
    token_path: String,
    kc_path: String,
}

fn check_observations(
    all: &[Observation],
    pod: &KubeletPod,
    cgroup: &PodCgroup,
    kc: &KubeconfigFixture,
    api: &TlsApiServer,
    other_addr: SocketAddr,
    e: &Expect,
) {
    let (pid, tid, mnt_ns, open_source) = (e.pid, e.tid, e.mnt_ns, e.source);
    let spec = &pod.spec;
    let exe = std::env::current_exe().unwrap().display().to_string();
    let my_comm = std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim()
        .to_string();
    let test = "pod_process_token_kubeconfig_and_api_connect_are_reported_without_secrets";
    let expected_process = Process {
        pid: tid,
        tgid: pid,
        ppid: std::process::id(),
        uid: 0,
        comm: "ct-reader".into(),
        exe: Some(exe.clone()),
        cmdline: [
            exe.as_str(),
            test,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        parent_comm: Some(my_comm),
        mnt_ns,
    };
    let expected_workload = Workload {
        cgroup_id: cgroup.id,
        cgroup_path: Some(cgroup.rel_path.clone()),
        container_id: Some(cgroup.container_id.clone()),
        container_runtime: Some("containerd".into()),
        pod_uid: Some(spec.uid.clone()),
        pod_namespace: Some(spec.namespace.clone()),
        pod_name: Some(spec.name.clone()),
        qos_class: Some("besteffort".into()),
    };
    assert_ne!(
        mnt_ns,
        mnt_ns_of(std::process::id(), std::process::id()),
        "child has its own mount ns"
    );

    // The agent's own opens (it reads every credential it reports, and this
    // process wrote the fixtures) are never reported.
    assert!(
        all.iter()
            .all(|o| process_of(o).is_none_or(|p| p.tgid != std::process::id())),
        "the agent reported its own process"
    );
    // The child's events carry kernel times converted into the wall clock.
    for o in all
        .iter()
        .filter(|o| process_of(o).is_some_and(|p| p.tgid == pid))
    {
        assert!(
            e.window.0 <= o.time && o.time <= e.window.1,
            "{} outside {:?}",
            o.time,
            e.window
        );
    }
    // Observation ids are unique and name the node.
    let ids: HashSet<&str> = all.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "duplicate observation ids");
    assert!(
        all.iter()
            .all(|o| o.node == NODE && o.id.starts_with(&format!("{NODE}/")))
    );

    // --- Start-up scan: the pod's token (three names for one file) and the kubeconfig.
    let scanned: Vec<&CredentialRead> = all
        .iter()
        .filter_map(|o| match &o.event {
            ObservationEvent::CredentialRead(r) if r.source == CaptureSource::Scan => Some(r),
            _ => None,
        })
        .collect();
    let vol = pod.volume_dir.display().to_string();
    // The kubelet's symlinks name the token three ways; it is one file, scanned once.
    let scanned_token_paths: Vec<&str> = scanned
        .iter()
        .filter(|r| r.path.starts_with(&vol))
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        scanned_token_paths,
        vec![pod.token_path.display().to_string()]
    );
    let token_ino = std::fs::metadata(&pod.token_file).unwrap().ino();
    for r in scanned.iter().filter(|r| r.path.starts_with(&vol)) {
        assert_eq!(r.process, None);
        assert_eq!((r.flags, r.reads, r.inode), (0, 0, token_ino), "{}", r.path);
        assert_eq!(
            r.workload,
            Some(Workload {
                pod_uid: Some(spec.uid.clone()),
                pod_namespace: Some(spec.namespace.clone()),
                pod_name: Some(spec.name.clone()),
                ..Default::default()
            })
        );
        assert_eq!(r.credential.kind, CredentialKind::ServiceAccountToken);
        assert_eq!(r.credential.sha256, Some(sha(pod.token.as_bytes())));
        assert_eq!(
            r.credential.token.as_ref().unwrap().claims,
            Some(expected_claims(spec))
        );
        assert_eq!(r.credential.error, None);
    }
    let kc_path = kc.path.display().to_string();
    let kc_scan: Vec<_> = scanned.iter().filter(|r| r.path == kc_path).collect();
    assert_eq!(kc_scan.len(), 1, "kubeconfig scanned once");
    assert_eq!(kc_scan[0].workload, None);
    check_kubeconfig_identity(kc_scan[0], kc, api);

    // --- The token read in the pod: one report at once, the rest folded.
    let token_reads = reads_of(all, pid, &e.token_path);
    assert_eq!(token_reads.len(), 2, "{token_reads:#?}");
    assert_eq!(token_reads[0].reads, 1);
    assert_eq!(token_reads[1].reads, READS - 1);
    for r in &token_reads {
        assert_eq!(r.source, open_source);
        assert_eq!(r.process.as_ref(), Some(&expected_process));
        assert_eq!(r.workload.as_ref(), Some(&expected_workload));
        assert_eq!(r.inode, token_ino);
        check_open_flags(r.flags, open_source);
        assert_eq!(r.credential.kind, CredentialKind::ServiceAccountToken);
        assert_eq!(r.credential.sha256, Some(sha(pod.token.as_bytes())));
        let tok = r.credential.token.as_ref().unwrap();
        assert_eq!(tok.sha256, sha(pod.token.as_bytes()));
        assert_eq!(tok.claims, Some(expected_claims(spec)));
        assert_eq!(r.credential.kubeconfig, None);
        assert_eq!(r.credential.certificate, None);
        assert_eq!(r.credential.error, None);
        assert_eq!(
            r.credential.credential_ids(),
            vec![format!("JTI={}", spec.jti)]
        );
    }

    // --- The kubeconfig read.
    let kc_reads = reads_of(all, pid, &e.kc_path);
    assert_eq!(kc_reads.len(), 1, "{kc_reads:#?}");
    let r = kc_reads[0];
    assert_eq!((r.source, r.reads), (open_source, 1));
    assert_eq!(r.process.as_ref(), Some(&expected_process));
    assert_eq!(r.workload.as_ref(), Some(&expected_workload));
    assert_eq!(r.inode, std::fs::metadata(&kc.path).unwrap().ino());
    check_open_flags(r.flags, open_source);
    check_kubeconfig_identity(r, kc, api);

    // --- The API connect; nothing for the other listener.
    let connects = connects_of(all, pid);
    let peers = api.peers();
    assert!(!connects.is_empty());
    let mut sources = HashSet::new();
    for c in &connects {
        assert!(
            sources.insert(format!("{:?}", c.source)),
            "two {:?} reports of one connect",
            c.source
        );
        assert!(
            matches!(
                c.source,
                CaptureSource::SockState | CaptureSource::CgroupConnect
            ),
            "{:?}",
            c.source
        );
        assert_eq!(
            c.remote, api.addr,
            "only the API endpoint is reported, not {other_addr}"
        );
        assert_eq!(c.process.as_ref(), Some(&expected_process));
        assert_eq!(c.workload.as_ref(), Some(&expected_workload));
        if c.source == CaptureSource::SockState {
            let local = c.local.expect("local address after connect");
            assert!(
                peers.contains(&local),
                "local {local} not among the API server's peers {peers:?}"
            );
        }
    }

    // --- Nothing else from the child: no unwatched open, no other connect.
    let mine: Vec<&Observation> = all
        .iter()
        .filter(|o| process_of(o).is_some_and(|p| p.tgid == pid))
        .collect();
    assert_eq!(
        mine.len(),
        token_reads.len() + kc_reads.len() + connects.len(),
        "unexpected observations: {mine:#?}"
    );
    assert!(api.served() >= 1);
}

fn check_open_flags(flags: u32, source: CaptureSource) {
    let o_cloexec = libc::O_CLOEXEC as u32;
    assert_eq!(
        flags & libc::O_ACCMODE as u32,
        libc::O_RDONLY as u32,
        "flags {flags:#x}"
    );
    if source == CaptureSource::Tracepoint {
        // Exactly what std::fs::File::open passes to openat.
        assert_eq!(flags, o_cloexec | libc::O_RDONLY as u32, "flags {flags:#x}");
    }
}

fn check_kubeconfig_identity(r: &CredentialRead, kc: &KubeconfigFixture, api: &TlsApiServer) {
    let id = &r.credential;
    assert_eq!(id.kind, CredentialKind::Kubeconfig, "{:?}", id.error);
    assert_eq!(id.sha256, Some(sha(kc.text.as_bytes())));
    assert_eq!(id.error, None);
    let k = id.kubeconfig.as_ref().unwrap();
    assert_eq!(k.current_context.as_deref(), Some(kc.context.as_str()));
    assert_eq!(k.servers, vec![format!("https://{}", api.addr)]);
    assert_eq!(k.users.len(), 1);
    let u = &k.users[0];
    assert_eq!(u.name, kc.user);
    let cert = u.client_certificate.as_ref().unwrap();
    assert_eq!(cert.sha256, kc.client.sha256_hex());
    assert_eq!(cert.subject_cn.as_deref(), Some("kubernetes-admin"));
    assert_eq!(cert.subject_o, vec!["kubeadm:cluster-admins".to_string()]);
    assert_eq!(cert.issuer_cn.as_deref(), Some("credtrail-test-cluster-ca"));
    assert!(cert.not_before.is_some() && cert.not_after.is_some());
    assert_eq!(
        (
            u.token.as_ref(),
            u.exec_command.as_ref(),
            u.auth_provider.as_ref(),
            u.username.as_ref()
        ),
        (None, None, None, None)
    );
    assert_eq!(
        id.credential_ids(),
        vec![format!("X509SHA256={}", kc.client.sha256_hex())]
    );
}
