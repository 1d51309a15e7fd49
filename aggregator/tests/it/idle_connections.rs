//! The gRPC listeners close connections that have no open stream (issue 8,
//! open point), on real listeners through `server::serve` with a 1 s idle
//! timeout: a raw HTTP/2 client that completed its preface (and TLS with an
//! agent's certificate on the agent listener) and answers every ping, but
//! opens no stream, gets `GOAWAY` and loses its connection after the idle
//! timeout, and its slot is free again; an agent stream and a gRPC live
//! alert stream left quiet for three idle timeouts stay up (the agent's
//! next batch is acknowledged on the same stream).

use crate::api_support::{VIEWER_TOKEN, token_file_text};
use crate::common::tls::{Pki, client_config, pki_with_client};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use credtrail_aggregator::server::{ServeConfig, ServeLimits, serve};
use credtrail_aggregator::store::Synchronous;
use credtrail_proto::pb::agent as pb;
use credtrail_proto::pb::query as qpb;
use rcgen::DnType;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

const IDLE: Duration = Duration::from_secs(1);
const NODE: &str = "node-a";

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn metrics(api: SocketAddr) -> String {
    let mut s = TcpStream::connect(api).await.unwrap();
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {VIEWER_TOKEN}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("/metrics answers")
        .unwrap();
    out
}

fn value(text: &str, line_prefix: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// A raw HTTP/2 client on `io`: completes the preface and settings, answers
/// pings (h2 does), opens no stream. Returns once the server closed it, and
/// how long that took.
async fn idle_h2_client<IO>(io: IO, what: &str) -> Duration
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let started = Instant::now();
    let (send, conn) = h2::client::handshake(io)
        .await
        .unwrap_or_else(|e| panic!("{what}: HTTP/2 handshake: {e}"));
    // Held (not dropped) so the client itself never closes the connection.
    let _send = send;
    let r = tokio::time::timeout(IDLE * 6, conn).await;
    assert!(r.is_ok(), "{what}: still connected after {:?}", IDLE * 6);
    started.elapsed()
}

fn agent_tls(pki: &Pki) -> Arc<rustls::ClientConfig> {
    let mut cfg = Arc::unwrap_or_clone(client_config(pki, true));
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(cfg)
}

fn agent_msg(payload: pb::agent_message::Payload) -> pb::AgentMessage {
    pb::AgentMessage {
        node_name: NODE.to_owned(),
        sent_at: None,
        payload: Some(payload),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_stream_are_closed_and_streams_stay_up() {
    let dir = tempfile::tempdir().unwrap();
    let node_cn = format!("system:node:{NODE}");
    let (pki, paths) = pki_with_client(
        dir.path(),
        &[
            (DnType::OrganizationName, "system:nodes"),
            (DnType::CommonName, &node_cn),
        ],
    );
    let (cert, key, ca) = (paths.cert, paths.key, paths.client_ca.unwrap());
    let api_tokens = dir.path().join("api-tokens");
    std::fs::write(&api_tokens, token_file_text()).unwrap();
    let (agent, api, grpc) = (free_port(), free_port(), free_port());
    let cfg = ServeConfig {
        db: dir.path().join("agg.db"),
        db_synchronous: Synchronous::Normal,
        policy: None,
        retention: None,
        webhook_listen: None,
        webhook_tls: None,
        webhook_token_file: None,
        webhook_body_limit: 1 << 20,
        webhook_client_subjects: vec![],
        audit_log_paths: vec![],
        cloud: Default::default(),
        agent_listen: Some(agent),
        agent_tls: Some((cert, key, ca)),
        api_listen: Some(api),
        agent_identity: Default::default(),
        grpc_listen: Some(grpc),
        api_auth: credtrail_aggregator::auth::config::ApiAuthConfig {
            token_file: Some(api_tokens),
            ..Default::default()
        },
        limits: ServeLimits {
            idle_timeout: IDLE,
            shutdown_grace: Duration::from_secs(2),
            ..ServeLimits::default()
        },
    };
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(cfg, async {
        let _ = rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(10);
    for a in [agent, api, grpc] {
        while TcpStream::connect(a).await.is_err() {
            assert!(Instant::now() < deadline, "listener {a} did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // 1. The agent stream and a live alert stream, opened first.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .identity(Identity::from_pem(
            &pki.client_cert_pem,
            &pki.client_key_pem,
        ));
    let channel = Endpoint::from_shared(format!("https://{agent}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("connecting to the agent listener");
    let mut client = pb::agent_service_client::AgentServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(agent_msg(pb::agent_message::Payload::Hello(pb::Hello {
        node_name: NODE.to_owned(),
        agent_version: "test".into(),
        stream_epoch: 1,
        ..Default::default()
    })))
    .await
    .unwrap();
    let mut inbound = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("the agent stream opens")
        .into_inner();
    let welcome = tokio::time::timeout(Duration::from_secs(5), inbound.message())
        .await
        .expect("welcomed within 5 s")
        .unwrap()
        .unwrap();
    assert!(matches!(
        welcome.payload,
        Some(pb::aggregator_message::Payload::Welcome(_))
    ));

    let query = Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .expect("connecting to the gRPC API");
    let mut q = qpb::query_service_client::QueryServiceClient::new(query);
    let mut req = tonic::Request::new(qpb::StreamAlertsRequest { filter: None });
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {VIEWER_TOKEN}").parse().unwrap(),
    );
    let mut live = q
        .stream_alerts(req)
        .await
        .expect("the live stream opens")
        .into_inner();

    // 2. Idle HTTP/2 clients: h2c on the query API, TLS + the agent's
    //    certificate on the agent listener. Both are closed after ~1 s.
    let plain = TcpStream::connect(grpc).await.unwrap();
    let took = idle_h2_client(plain, "idle h2c client on the gRPC API").await;
    assert!(took >= IDLE, "closed before the idle timeout: {took:?}");
    let tcp = TcpStream::connect(agent).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(agent_tls(&pki))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("TLS with the agent's certificate");
    let took = idle_h2_client(tls, "idle h2 client on the agent listener").await;
    assert!(took >= IDLE, "closed before the idle timeout: {took:?}");

    // Counted, and the slots are free again: only the two streams'
    // connections remain (the server may drop a slot a moment after the
    // client saw the close).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let m = metrics(api).await;
        let settled = ["grpc_api", "agent"].iter().all(|l| {
            value(
                &m,
                &format!("credtrail_connections_dropped_total{{listener=\"{l}\",reason=\"idle_timeout\"}}"),
            ) >= 1
                && value(&m, &format!("credtrail_connections{{listener=\"{l}\"}}")) == 1
        });
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "idle closes not counted, or slots not freed:\n{}",
            m.lines()
                .filter(|l| l.starts_with("credtrail_connections"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 3. Both streams quiet for more than three idle timeouts: still up.
    //    The agent's next batch is acknowledged on the same stream.
    tokio::time::sleep(IDLE).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), live.message())
            .await
            .is_err(),
        "the live stream ended or sent something unexpected"
    );
    let obs = pb::Observation {
        id: format!("{NODE}/boot/after-idle"),
        time: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp(),
            nanos: 0,
        }),
        node: NODE.to_owned(),
        event: Some(pb::observation::Event::Loss(pb::Loss {
            stage: "ring_buffer".into(),
            count: 1,
            total: 1,
        })),
    };
    tx.send(agent_msg(pb::agent_message::Payload::Batch(
        pb::ObservationBatch {
            first_seq: 1,
            observations: vec![obs],
        },
    )))
    .await
    .unwrap();
    let ack = tokio::time::timeout(Duration::from_secs(5), inbound.message())
        .await
        .expect("acknowledged within 5 s")
        .expect("the agent stream is still up")
        .expect("a message");
    assert!(
        matches!(ack.payload, Some(pb::aggregator_message::Payload::Ack(_))),
        "{ack:?}"
    );
    let m = metrics(api).await;
    assert_eq!(
        value(
            &m,
            "credtrail_connections_dropped_total{listener=\"agent\",reason=\"idle_timeout\"}"
        ),
        1,
        "only the idle client was closed on the agent listener"
    );

    drop((tx, live));
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("serve stops")
        .unwrap()
        .unwrap();
}
