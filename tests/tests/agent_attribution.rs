//! Privileged: attribution across cgroup layouts (systemd and cgroupfs
//! drivers; containerd, CRI-O and Docker names) and users. Four containers of one
//! burstable pod, each in a cgroup of another layout, read the pod's token
//! through the kubelet's folder (`..data/token`); two of them run as
//! other users (65534, 1000). Every workload and process field is checked.
//!
//! Run: `cargo test -p credtrail-tests --test agent_attribution -- --test-threads=1`

use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use credtrail_agent::patterns::WatchPatterns;
use credtrail_agent::{AgentConfig, start};
use credtrail_proto::model::{CredentialKind, Observation, ObservationEvent, Workload};
use credtrail_tests::certs::Ca;
use credtrail_tests::fixtures::child::run_if_child;
use credtrail_tests::fixtures::observe::{
    collect_until, expected_open_path, expected_open_source, process_of,
};
use credtrail_tests::fixtures::{
    Child, KubeletPod, Layout, PodCgroup, PodSpec, Step, skip_unless_privileged,
};

/// Longest wait for expected observations (returns as soon as they arrive;
/// generous for the VM's emulated CPU).
const WAIT: Duration = Duration::from_secs(60);
const TEST: &str = "containers_in_every_cgroup_layout_are_attributed";

#[test]
fn containers_in_every_cgroup_layout_are_attributed() {
    run_if_child();
    credtrail_tests::fixtures::observe::init_logging("credtrail_agent=info");
    if skip_unless_privileged(TEST) {
        return;
    }
    let ca = Ca::new("credtrail-test-cluster-ca").unwrap();
    let spec = PodSpec::new("batch", "report-28391-abcde", "node-b", "reporter");
    let pod = KubeletPod::create(spec.clone(), &ca.cert_pem()).unwrap();
    let token = pod.volume_dir.join("..data/token");
    let cases = [
        (Layout::CgroupfsContainerd, 0, "ct-cgfs-ctrd"),
        (Layout::CgroupfsCrio, 65534, "ct-cgfs-crio"),
        (Layout::SystemdCrio, 0, "ct-sd-crio"),
        (Layout::SystemdDocker, 1000, "ct-sd-docker"),
    ];
    let cgroups: Vec<PodCgroup> = cases
        .iter()
        .map(|(layout, _, _)| {
            let cid = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            PodCgroup::create_with(*layout, "burstable", &spec.uid, &cid).unwrap()
        })
        .collect();
    let cfg = AgentConfig {
        node_name: "credtrail-test-node".into(),
        cgroup_root: cgroups[0].root().to_path_buf(),
        kubelet_pods_dir: pod.pods_dir.clone(),
        patterns: WatchPatterns::new(pod.watch_patterns()).unwrap(),
        report_interval: Duration::from_secs(60),
        scan_on_start: false,
        ..AgentConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut agent = start(cfg).await.expect("agent starts");
        let source = expected_open_source(agent.hooks());
        let mut children = Vec::new();
        for ((_, uid, comm), cg) in cases.iter().zip(&cgroups) {
            let mut steps = vec![Step::SetComm {
                name: (*comm).into(),
            }];
            if *uid != 0 {
                steps.push(Step::SetUid { uid: *uid });
            }
            steps.push(Step::Read {
                path: token.clone(),
                times: 1,
            });
            let mut c = Child::spawn(TEST, &steps).unwrap();
            cg.add(c.pid).unwrap();
            c.go().unwrap();
            children.push(c);
        }
        let pids: Vec<u32> = children.iter().map(|c| c.pid).collect();
        let mut all: Vec<Observation> = Vec::new();
        let ok = collect_until(&mut agent.observations, &mut all, WAIT, |o| {
            pids.iter().all(|pid| {
                o.iter()
                    .any(|o| process_of(o).is_some_and(|p| p.tgid == *pid))
            })
        })
        .await;
        collect_until(
            &mut agent.observations,
            &mut all,
            Duration::from_millis(500),
            |_| false,
        )
        .await;
        assert!(ok, "missing reports: {all:#?}");
        let inode = std::fs::metadata(&pod.token_file).unwrap().ino();
        for (((layout, uid, comm), cg), child) in cases.iter().zip(&cgroups).zip(&children) {
            let mine: Vec<&Observation> = all
                .iter()
                .filter(|o| process_of(o).is_some_and(|p| p.tgid == child.pid))
                .collect();
            assert_eq!(mine.len(), 1, "{layout:?}: {mine:#?}");
            let ObservationEvent::CredentialRead(r) = &mine[0].event else {
                panic!("{:?}", mine[0])
            };
            assert_eq!(
                (r.source, r.reads, r.inode),
                (source, 1, inode),
                "{layout:?}"
            );
            let resolved = std::fs::canonicalize(&pod.token_file).unwrap();
            assert_eq!(
                r.path,
                expected_open_path(
                    source,
                    &token.display().to_string(),
                    &resolved.display().to_string()
                )
            );
            let p = r.process.as_ref().unwrap();
            assert_eq!(
                (p.pid, p.tgid, p.ppid),
                (child.tid, child.pid, std::process::id()),
                "{layout:?}"
            );
            assert_eq!(p.uid, *uid, "{layout:?}");
            assert_eq!(p.comm, *comm);
            assert_eq!(
                p.exe,
                Some(std::env::current_exe().unwrap().display().to_string()),
                "{layout:?}"
            );
            assert_eq!(
                r.workload.as_ref(),
                Some(&Workload {
                    cgroup_id: cg.id,
                    cgroup_path: Some(cg.rel_path.clone()),
                    container_id: Some(cg.container_id.clone()),
                    container_runtime: layout.runtime().map(str::to_owned),
                    pod_uid: Some(spec.uid.clone()),
                    pod_namespace: Some(spec.namespace.clone()),
                    pod_name: Some(spec.name.clone()),
                    qos_class: Some("burstable".into()),
                }),
                "{layout:?}"
            );
            assert_eq!(r.credential.kind, CredentialKind::ServiceAccountToken);
            let claims = r
                .credential
                .token
                .as_ref()
                .unwrap()
                .claims
                .as_ref()
                .unwrap();
            assert_eq!(claims.jti.as_deref(), Some(spec.jti.as_str()));
            assert_eq!(claims.pod_uid.as_deref(), Some(spec.uid.as_str()));
        }
        let output: String = all
            .iter()
            .map(|o| serde_json::to_string(o).unwrap())
            .collect();
        assert!(!output.contains(&pod.token), "raw token leaked");
        agent.shutdown().await;
        for c in children {
            c.finish().unwrap();
        }
    });
}
