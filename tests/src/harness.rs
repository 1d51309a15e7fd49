//! Building blocks for stream tests, the stream benchmark and the end-to-end
//! test: a throw-away PKI on disk, the aggregator's agent listener
//! in-process, stream client configurations, synthetic observations.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use credtrail_agent::stream::{HelloInfo, StreamConfig};
use credtrail_aggregator::agents::{self, ObservationSink, TlsFiles};
use credtrail_aggregator::metrics::Metrics;
use credtrail_aggregator::policy::Policy;
use credtrail_aggregator::state::AppState;
use credtrail_aggregator::store::{Store, Synchronous};
use credtrail_proto::model::{ApiConnect, CaptureSource, Observation, ObservationEvent, Process};
use credtrail_proto::pb::agent as pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::certs::{CertKeyPaths, Pki, PkiPaths, write_cert_key};

/// A PKI written to a temporary directory.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub paths: PkiPaths,
}

impl TestPki {
    /// CAs and a serving certificate for `127.0.0.1` and `localhost`.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::generate(&["127.0.0.1"]).expect("PKI");
        let paths = pki.write(dir.path()).expect("writing PKI");
        Self { dir, pki, paths }
    }

    /// Writes a node agent's client certificate (CN `system:node:<node>`).
    pub fn agent(&self, node: &str) -> CertKeyPaths {
        let ck = self.pki.agents_ca.agent(node).expect("agent cert");
        write_cert_key(self.dir.path(), &format!("agent-{node}"), &ck).expect("writing agent cert")
    }

    /// The agent listener's TLS files.
    pub fn listener_tls(&self) -> TlsFiles {
        TlsFiles {
            cert: self.paths.server_cert.clone(),
            key: self.paths.server_key.clone(),
            client_ca: Some(self.paths.agents_ca.clone()),
            identity: Default::default(),
        }
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

/// An aggregator state on a database file (survives a "restart").
pub fn state_on_disk(db: &Path) -> AppState {
    let store = Store::open(db, Synchronous::Normal).expect("opening the store");
    AppState::new(store, Policy::default(), Arc::new(Metrics::new())).expect("aggregator state")
}

/// The agent listener, in-process, on a real TCP port.
pub struct AgentListener {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl AgentListener {
    /// Serves the agent stream into `sink`, recording agents in `store`.
    pub async fn start_with<S: ObservationSink>(
        pki: &TestPki,
        sink: S,
        store: Store,
        metrics: Arc<Metrics>,
        addr: SocketAddr,
    ) -> Self {
        let listener = bind_retry(addr).await;
        let addr = listener.local_addr().expect("listener address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let tls = pki.listener_tls();
        let task = tokio::spawn(async move {
            agents::serve_with(listener, &tls, sink, store, metrics, async move {
                let _ = stopped.await;
            })
            .await
        });
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Serves the agent stream into the aggregator's real pipeline, with the
    /// state's policy bounding what agents may claim.
    pub async fn start(pki: &TestPki, state: &AppState, addr: SocketAddr) -> Self {
        let listener = bind_retry(addr).await;
        let addr = listener.local_addr().expect("listener address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let tls = pki.listener_tls();
        let state = state.clone();
        let task = tokio::spawn(async move {
            agents::serve(
                listener,
                &tls,
                credtrail_aggregator::listen::Limits::default(),
                state,
                async move {
                    let _ = stopped.await;
                },
            )
            .await
        });
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Graceful stop: open streams end with `unavailable`.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match tokio::time::timeout(Duration::from_secs(10), &mut self.task).await {
            Ok(r) => r.expect("listener task").expect("listener"),
            Err(_) => panic!("the agent listener did not stop within 10 s"),
        }
    }
}

/// Binds `addr`, retrying for a while (a just-closed port may linger).
async fn bind_retry(addr: SocketAddr) -> tokio::net::TcpListener {
    for _ in 0..50 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("could not bind {addr}");
}

/// A stream client configuration for `node`, with short backoff for tests.
pub fn stream_config(pki: &TestPki, node: &str, listener: SocketAddr) -> StreamConfig {
    let cert = pki.agent(node);
    let mut cfg = StreamConfig::new(
        format!("https://{listener}"),
        pki.paths.server_ca.clone(),
        cert.cert,
        cert.key,
    );
    cfg.backoff_min = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(500);
    cfg.heartbeat_interval = Duration::from_millis(200);
    cfg
}

/// What a test agent says in its Hello.
pub fn hello(node: &str) -> HelloInfo {
    HelloInfo {
        node_name: node.into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        kernel_release: "test".into(),
        hooks: vec!["tracepoint_openat".into()],
        addresses: vec!["127.10.0.1".parse().expect("ip")],
        pod_cidrs: vec![],
    }
}

/// A synthetic API-server connect observation, number `i` of `node`.
pub fn connect_observation(node: &str, run: &str, i: u64) -> Observation {
    Observation {
        id: format!("{node}/{run}/{i}"),
        time: Utc::now(),
        node: node.into(),
        event: ObservationEvent::ApiConnect(ApiConnect {
            source: CaptureSource::SockState,
            process: Some(Process {
                pid: 1000 + (i % 1000) as u32,
                tgid: 1000 + (i % 1000) as u32,
                ppid: 1,
                uid: 0,
                comm: "kubectl".into(),
                exe: Some("/usr/bin/kubectl".into()),
                cmdline: vec!["kubectl".into(), "get".into(), "pods".into()],
                parent_comm: Some("bash".into()),
                mnt_ns: 4026531840,
            }),
            workload: None,
            local: Some(SocketAddr::from((
                [127, 10, 0, 1],
                40000 + (i % 20000) as u16,
            ))),
            remote: SocketAddr::from(([127, 10, 0, 2], 6443)),
            translated: None,
        }),
    }
}

/// Observation ids stored for `node`.
pub async fn stored_observation_ids(store: &Store, node: &str) -> Vec<String> {
    let node = node.to_string();
    store
        .read(move |conn| {
            let mut stmt =
                conn.prepare("SELECT id FROM observations WHERE node = ?1 ORDER BY id")?;
            let ids = stmt
                .query_map([&node], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ids)
        })
        .await
        .expect("reading observations")
}

/// A free loopback port (bound, then released).
pub fn free_port(ip: [u8; 4]) -> SocketAddr {
    let l = std::net::TcpListener::bind(SocketAddr::from((ip, 0))).expect("binding a free port");
    l.local_addr().expect("address")
}

/// A raw gRPC channel to the agent listener, authenticated as `node`.
pub async fn channel(pki: &TestPki, node: &str, addr: std::net::SocketAddr) -> Channel {
    let cert = pki.agent(node);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(&pki.paths.server_ca).unwrap(),
        ))
        .identity(Identity::from_pem(
            std::fs::read(cert.cert).unwrap(),
            std::fs::read(cert.key).unwrap(),
        ));
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A Hello message as an agent would send it.
pub fn hello_msg(node: &str, epoch: u64) -> pb::AgentMessage {
    pb::AgentMessage {
        node_name: node.into(),
        sent_at: None,
        payload: Some(pb::agent_message::Payload::Hello(pb::Hello {
            node_name: node.into(),
            agent_version: "test".into(),
            stream_epoch: epoch,
            ..Default::default()
        })),
    }
}

/// A batch message with consecutive sequence numbers from `first_seq`.
pub fn batch_msg(
    node: &str,
    first_seq: u64,
    observations: Vec<pb::Observation>,
) -> pb::AgentMessage {
    pb::AgentMessage {
        node_name: node.into(),
        sent_at: None,
        payload: Some(pb::agent_message::Payload::Batch(pb::ObservationBatch {
            first_seq,
            observations,
        })),
    }
}

/// Awaits `fut` for at most `limit`; panics naming `what` otherwise: a test
/// waiting for a message, an ack or a connection fails in seconds saying what
/// never came, instead of hanging.
#[track_caller]
pub fn within<F: std::future::Future>(
    what: &str,
    limit: Duration,
    fut: F,
) -> impl std::future::Future<Output = F::Output> {
    let caller = std::panic::Location::caller();
    let what = what.to_owned();
    async move {
        match tokio::time::timeout(limit, fut).await {
            Ok(v) => v,
            Err(_) => panic!("{caller}: waited {limit:?} for {what}: it never came"),
        }
    }
}

/// The usual bound of [`within`].
pub const SOON: Duration = Duration::from_secs(5);
