//! The demo's story as an end-to-end test: real eBPF (the agent in-process,
//! on this kernel), real gRPC + mTLS (agent stream), the real audit webhook
//! (the API-server simulator posting `EventList` batches over HTTPS), the
//! real aggregator (`server::serve` on a SQLite file), alerts read through the
//! real HTTP query API. Asserts each alert and each non-alert, and that no
//! secret reached the aggregator's store or the agent's spool.
//!
//! Needs root, BTF and cgroup v2; otherwise prints `SKIP` with the reason.
//! Run: `cargo test -p credtrail-tests --test e2e e2e_story -- --test-threads=1`.

use std::time::Duration;

use credtrail_agent::patterns::{DEFAULT_PATTERNS, WatchPatterns};
use credtrail_agent::stream::{self, HelloInfo, StreamConfig};
use credtrail_agent::{AgentConfig, start};
use credtrail_aggregator::alert::SourceClass;
use credtrail_aggregator::ingest::tls::TlsPaths;
use credtrail_aggregator::server::{ServeConfig, serve};
use credtrail_aggregator::store::Synchronous;
use credtrail_tests::demo::{self, env::Addrs, env::DemoEnv, report};
use credtrail_tests::fixtures::skip_unless_privileged;

fn serve_config(env: &DemoEnv) -> ServeConfig {
    let a = &env.addrs;
    let p = &env.pki;
    ServeConfig {
        db: env.dir.join("credtrail.db"),
        db_synchronous: Synchronous::Normal,
        policy: Some(env.policy.clone()),
        retention: None,
        webhook_listen: Some(a.webhook),
        webhook_tls: Some(TlsPaths {
            cert: p.server_cert.clone(),
            key: p.server_key.clone(),
            client_ca: Some(p.cluster_ca.clone()),
        }),
        webhook_token_file: None,
        webhook_body_limit: 32 << 20,
        webhook_client_subjects: Vec::new(),
        audit_log_paths: vec![],
        cloud: Default::default(),
        agent_listen: Some(a.agent_listen),
        agent_tls: Some((
            p.server_cert.clone(),
            p.server_key.clone(),
            p.agents_ca.clone(),
        )),
        api_listen: Some(a.api_listen),
        agent_identity: Default::default(),
        grpc_listen: Some(a.grpc_listen),
        api_auth: credtrail_aggregator::auth::config::ApiAuthConfig {
            token_file: Some(env.api_token_file.clone()),
            ..Default::default()
        },
        limits: Default::default(),
    }
}

#[test]
fn story_raises_exactly_the_expected_alerts() {
    if skip_unless_privileged("story_raises_exactly_the_expected_alerts") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(story());
}

async fn story() {
    let work = tempfile::tempdir().unwrap();
    let env = DemoEnv::prepare(work.path(), Addrs::free()).unwrap();
    let a = env.addrs.clone();

    // The aggregator, in-process, on the embedded store.
    let (stop_agg, stopped) = tokio::sync::oneshot::channel::<()>();
    let aggregator = tokio::spawn(serve(serve_config(&env), async move {
        let _ = stopped.await;
    }));
    let mut healthy = false;
    for _ in 0..100 {
        if let Ok((200, _)) = report::http_get(a.api_listen, "/healthz").await {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "aggregator not healthy");

    let sim = demo::start_apisim(&env).await.unwrap();

    // The agent, in-process, with real eBPF, streaming over mTLS.
    let mut patterns: Vec<String> = DEFAULT_PATTERNS.iter().map(|s| s.to_string()).collect();
    patterns.extend(env.watch_patterns());
    let cfg = AgentConfig {
        node_name: env.node.clone(),
        cgroup_root: env.cgroup.root().to_path_buf(),
        proc_root: "/proc".into(),
        kubelet_pods_dir: env.pod.pods_dir.clone(),
        patterns: WatchPatterns::new(&patterns).unwrap(),
        api_endpoints: vec![a.apiserver],
        report_interval: Duration::from_secs(60),
        scan_on_start: true,
        extra_addresses: vec![a.node_ip],
        pod_cidrs: vec!["127.10.1.0/24".into()],
        ..AgentConfig::default()
    };
    let mut agent = start(cfg).await.expect("the agent starts (eBPF)");
    let hooks = agent.hooks().to_vec();
    let observations = std::mem::replace(&mut agent.observations, tokio::sync::mpsc::channel(1).1);
    let mut scfg = StreamConfig::new(
        format!("https://{}", a.agent_listen),
        env.pki.server_ca.clone(),
        env.agent.cert.clone(),
        env.agent.key.clone(),
    );
    scfg.spool_dir = Some(env.dir.join("spool"));
    let hello = HelloInfo {
        node_name: env.node.clone(),
        agent_version: "e2e".into(),
        kernel_release: String::new(),
        hooks: hooks.clone(),
        addresses: vec![a.node_ip],
        pod_cidrs: vec!["127.10.1.0/24".into()],
    };
    let stream = stream::spawn(scfg, hello, observations, Duration::from_secs(10)).unwrap();
    let (st, ok) = stream
        .wait_for(Duration::from_secs(20), |s| s.connected && s.acked_seq >= 1)
        .await;
    assert!(ok, "agent stream not connected: {st:?}");

    let apisim_bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_credtrail-apisim"));
    let results = demo::play(&env, &sim, &apisim_bin, |s| eprintln!("{s}"))
        .await
        .unwrap();
    assert_eq!(
        results.iter().map(|(_, r)| r.status).collect::<Vec<_>>(),
        vec![200, 200, 201, 201],
        "API answers"
    );
    assert_eq!(
        sim.audit.stats().events_sent,
        4,
        "every request's audit event went through the webhook"
    );
    let events = sim.events();
    assert_eq!(
        events[0]["sourceIPs"].as_array().unwrap().last().unwrap(),
        &a.pod_ip.to_string()
    );
    assert_eq!(
        events[1]["sourceIPs"].as_array().unwrap().last().unwrap(),
        &a.outside_ip.to_string()
    );
    assert_eq!(
        events[0]["user"]["extra"]["authentication.kubernetes.io/pod-name"][0],
        env.pod.spec.name.as_str()
    );
    assert_eq!(events[2]["level"], "RequestResponse");
    assert_eq!(
        events[2]["responseObject"]["roleRef"]["name"],
        "cluster-admin"
    );

    // Detection finishes on the last batch, then the alerts through the query API.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let alerts = report::fetch_alerts(a.api_listen, &env.api_token)
        .await
        .unwrap();
    eprintln!("{}", report::render(&alerts));
    if let Err(e) = demo::check_alerts(&env, &alerts) {
        panic!("alerts differ from the story:\n{e}\n{alerts:#?}");
    }
    // Non-alerts, said plainly.
    assert!(
        !alerts.iter().any(|x| x.source_ip == Some(a.pod_ip)),
        "the workload's own use alerted"
    );
    assert!(
        !alerts.iter().any(|x| x.source_ip == Some(a.ci_ip)),
        "the CI grant alerted"
    );
    assert!(
        !alerts
            .iter()
            .any(|x| x.identity.username == "system:serviceaccount:ci:deployer"),
        "the CI identity alerted"
    );
    let grant = alerts.iter().find(|x| x.analytic == "AN1579").unwrap();
    assert_eq!(grant.source_class, SourceClass::Outside);
    assert_eq!(grant.request.name.as_deref(), Some("contractor-breakglass"));
    // The off-node alert names the process that read the token in the pod.
    assert!(
        alerts
            .iter()
            .filter(|x| x.analytic == "AN1547")
            .any(|x| x.evidence.iter().any(|e| {
                e.kind == "credential_read" && e.comm.as_deref() == Some("web") && e.pid.is_some()
            })),
        "no AN1547 alert names the reading process: {alerts:#?}"
    );

    // Coverage: the agent is recorded with its hooks and contact.
    let (code, nodes) = report::http_get(a.api_listen, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        report::metric(&nodes, "credtrail_agents_connected"),
        Some(1.0)
    );

    // Shut down: the agent's stream flushes, the aggregator stops.
    agent.shutdown().await;
    stream.abort().await;
    sim.shutdown().await;
    let _ = stop_agg.send(());
    aggregator.await.unwrap().unwrap();

    // Secrets never left the node: the raw tokens and alice's key are in no
    // byte the aggregator stored, nor in the agent's spool.
    let alice_key = std::fs::read_to_string(&env.alice.key).unwrap();
    let key_body: String = alice_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let secrets = [
        ("pod token", env.pod_token.clone()),
        (
            "pod token signature",
            env.pod_token.rsplit('.').next().unwrap().to_string(),
        ),
        ("CI token", env.ci_token.clone()),
        ("alice's key", key_body.chars().take(64).collect()),
    ];
    let mut files = vec![env.dir.join("credtrail.db")];
    for f in ["credtrail.db-wal", "credtrail.db-shm"] {
        if env.dir.join(f).exists() {
            files.push(env.dir.join(f));
        }
    }
    for e in std::fs::read_dir(env.dir.join("spool")).unwrap() {
        files.push(e.unwrap().path());
    }
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for (what, s) in &secrets {
            assert!(
                !text.contains(s.as_str()),
                "{what} found in {}",
                f.display()
            );
        }
    }
}
