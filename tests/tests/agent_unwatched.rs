//! Privileged: opens and connects that do not match the watch patterns or
//! the API endpoints produce no observation, even from a pod, even when the
//! file name is one the kernel's cheap name test passes (`token`, `config`).
//! A process outside any pod reading a kubeconfig is reported with its own
//! (non-pod) cgroup, and serves as the fence that proves the agent has
//! processed everything before it.
//!
//! Run: `cargo test -p credtrail-tests --test agent_unwatched -- --test-threads=1`

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use credtrail_agent::patterns::{DEFAULT_PATTERNS, WatchPatterns};
use credtrail_agent::{AgentConfig, start};
use credtrail_proto::model::{CredentialKind, Observation, ObservationEvent};
use credtrail_tests::certs::Ca;
use credtrail_tests::fixtures::child::run_if_child;
use credtrail_tests::fixtures::observe::{
    collect_until, expected_open_path, expected_open_source, process_of,
};
use credtrail_tests::fixtures::{
    Child, KubeconfigFixture, KubeletPod, PodCgroup, PodSpec, Step, TlsApiServer,
    skip_unless_privileged,
};

/// Longest wait for expected observations (returns as soon as they arrive;
/// generous for the VM's emulated CPU).
const WAIT: Duration = Duration::from_secs(60);
const TEST: &str = "unwatched_opens_and_connects_produce_nothing";

#[test]
fn unwatched_opens_and_connects_produce_nothing() {
    run_if_child();
    credtrail_tests::fixtures::observe::init_logging("credtrail_agent=info");
    if skip_unless_privileged(TEST) {
        return;
    }
    let ca = Ca::new("credtrail-test-cluster-ca").unwrap();
    let spec = PodSpec::new("quiet", "idle-0", "node-a", "default");
    let pod = KubeletPod::create(spec.clone(), &ca.cert_pem()).unwrap();
    let cid = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let cgroup = PodCgroup::create("guaranteed", &spec.uid, &cid).unwrap();
    let api = TlsApiServer::start(Ipv4Addr::new(127, 77, 1, 1), &ca).unwrap();
    // The fence reads a kubelet-style kubeconfig naming its certificate by path.
    let kc =
        KubeconfigFixture::create_kubelet(&ca, &format!("https://{}", api.addr), "node-a").unwrap();
    // Same IP as the API server, other port; and another IP, any port.
    let same_ip = TcpListener::bind(api.addr.ip().to_string() + ":0").unwrap();
    let other_ip = TcpListener::bind((Ipv4Addr::new(127, 77, 1, 2), 0)).unwrap();

    // Unwatched files whose last component passes the kernel's name test.
    let decoy_dir = pod.root().join("decoys");
    std::fs::create_dir_all(decoy_dir.join(".kube")).unwrap();
    for f in ["token", ".kube/config", "admin.conf", "client.pem"] {
        std::fs::write(decoy_dir.join(f), "decoy").unwrap();
    }
    let mut patterns: Vec<String> = DEFAULT_PATTERNS.iter().map(|s| s.to_string()).collect();
    patterns.extend(pod.watch_patterns());
    patterns.push(kc.watch_pattern());
    let cfg = AgentConfig {
        node_name: "credtrail-test-node".into(),
        cgroup_root: cgroup.root().to_path_buf(),
        kubelet_pods_dir: pod.pods_dir.clone(),
        patterns: WatchPatterns::new(&patterns).unwrap(),
        api_endpoints: vec![api.addr],
        report_interval: Duration::from_secs(60),
        scan_on_start: false,
        ..AgentConfig::default()
    };
    let mut quiet_steps: Vec<Step> = ["token", ".kube/config", "admin.conf", "client.pem"]
        .iter()
        .map(|f| Step::Read {
            path: decoy_dir.join(f),
            times: 2,
        })
        .collect();
    quiet_steps.extend([
        Step::Read {
            path: pod.volume_dir.join("ca.crt"),
            times: 2,
        },
        Step::Read {
            path: pod.volume_dir.join("namespace"),
            times: 2,
        },
        Step::Read {
            path: "/proc/version".into(),
            times: 1,
        },
        Step::Connect {
            addr: same_ip.local_addr().unwrap(),
        },
        Step::Connect {
            addr: other_ip.local_addr().unwrap(),
        },
    ]);
    let fence_steps = vec![Step::Read {
        path: kc.path.clone(),
        times: 1,
    }];

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut all: Vec<Observation> = Vec::new();
    rt.block_on(async {
        let mut agent = start(cfg).await.expect("agent starts");
        let source = expected_open_source(agent.hooks());
        let mut quiet = Child::spawn(TEST, &quiet_steps).unwrap();
        cgroup.add(quiet.pid).unwrap();
        quiet.go().unwrap();
        // The fence runs after the quiet child is done: once its read is
        // reported, everything the quiet child did has gone through the agent.
        let mut fence = Child::spawn(TEST, &fence_steps).unwrap();
        fence.go().unwrap();
        let fence_pid = fence.pid;
        let ok = collect_until(&mut agent.observations, &mut all, WAIT, |o| {
            o.iter()
                .any(|o| process_of(o).is_some_and(|p| p.tgid == fence_pid))
        })
        .await;
        collect_until(
            &mut agent.observations,
            &mut all,
            Duration::from_millis(500),
            |_| false,
        )
        .await;
        assert!(ok, "the fence read was never reported");

        let from_quiet: Vec<&Observation> = all
            .iter()
            .filter(|o| process_of(o).is_some_and(|p| p.tgid == quiet.pid))
            .collect();
        assert!(
            from_quiet.is_empty(),
            "unwatched activity was reported: {from_quiet:#?}"
        );
        let from_pod_cgroup: Vec<&Observation> = all
            .iter()
            .filter(|o| match &o.event {
                ObservationEvent::CredentialRead(r) => r
                    .workload
                    .as_ref()
                    .is_some_and(|w| w.cgroup_id == cgroup.id),
                ObservationEvent::ApiConnect(c) => c
                    .workload
                    .as_ref()
                    .is_some_and(|w| w.cgroup_id == cgroup.id),
                _ => false,
            })
            .collect();
        assert!(from_pod_cgroup.is_empty(), "{from_pod_cgroup:#?}");

        // The fence: a host process, outside any pod.
        let fence_obs: Vec<&Observation> = all
            .iter()
            .filter(|o| process_of(o).is_some_and(|p| p.tgid == fence_pid))
            .collect();
        assert_eq!(fence_obs.len(), 1, "{fence_obs:#?}");
        let ObservationEvent::CredentialRead(r) = &fence_obs[0].event else {
            panic!("{:?}", fence_obs[0])
        };
        assert_eq!(r.source, source);
        assert_eq!(
            r.path,
            expected_open_path(
                source,
                &kc.path.display().to_string(),
                &std::fs::canonicalize(&kc.path)
                    .unwrap()
                    .display()
                    .to_string()
            )
        );
        assert_eq!(r.inode, std::fs::metadata(&kc.path).unwrap().ino());
        assert_eq!(r.reads, 1);
        assert_eq!(
            r.credential.kind,
            CredentialKind::Kubeconfig,
            "{:?}",
            r.credential.error
        );
        assert_eq!(r.credential.error, None);
        // The certificate the kubeconfig names by path, read in the reader's root.
        let k = r.credential.kubeconfig.as_ref().unwrap();
        assert_eq!(k.current_context.as_deref(), Some("default-context"));
        assert_eq!(k.users.len(), 1);
        let cert = k.users[0]
            .client_certificate
            .as_ref()
            .expect("certificate found by path");
        assert_eq!(cert.sha256, kc.client.sha256_hex());
        assert_eq!(cert.subject_cn.as_deref(), Some("system:node:node-a"));
        assert_eq!(cert.subject_o, vec!["system:nodes".to_string()]);
        let json: String = all
            .iter()
            .map(|o| serde_json::to_string(o).unwrap())
            .collect();
        for s in kc.secret_strings() {
            assert!(!json.contains(&s), "kubelet certificate or key leaked");
        }
        let p = r.process.as_ref().unwrap();
        assert_eq!(
            (p.pid, p.tgid, p.ppid),
            (fence.tid, fence_pid, std::process::id())
        );
        let w = r.workload.as_ref().unwrap();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let own_path = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap()
            .to_string();
        let own_id = std::fs::metadata(cgroup.root().join(own_path.trim_start_matches('/')))
            .unwrap()
            .ino();
        assert_eq!(w.cgroup_id, own_id);
        assert_eq!(w.cgroup_path.as_deref(), Some(own_path.as_str()));
        assert_eq!(
            (
                &w.container_id,
                &w.container_runtime,
                &w.pod_uid,
                &w.pod_namespace,
                &w.pod_name,
                &w.qos_class
            ),
            (&None, &None, &None, &None, &None, &None)
        );
        agent.shutdown().await;
        quiet.finish().unwrap();
        fence.finish().unwrap();
    });
}
