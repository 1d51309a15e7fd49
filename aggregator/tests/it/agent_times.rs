//! The agent stream on a real mTLS listener on loopback refuses observations
//! with implausible times (issue 8, point 6): each is named in the Ack's
//! `rejected` with the reason and counted as `implausible_time`, the
//! sequence still advances (the agent never resends it), the stream stays
//! up, and a plausible batch right after is stored.

use std::sync::Arc;
use std::time::Duration;

use credtrail_aggregator::agents::{TlsFiles, serve};
use credtrail_aggregator::listen::Limits;
use credtrail_aggregator::metrics::{Metrics, RejectLabel};
use credtrail_aggregator::policy::Policy;
use credtrail_aggregator::state::AppState;
use credtrail_aggregator::store::{Store, Synchronous};
use credtrail_proto::pb::agent as pb;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::net::TcpListener;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

const NODE: &str = "node-a";

fn observation(id: &str, seconds: i64) -> pb::Observation {
    pb::Observation {
        id: format!("{NODE}/boot/{id}"),
        time: Some(prost_types::Timestamp { seconds, nanos: 0 }),
        node: NODE.to_owned(),
        event: Some(pb::observation::Event::Loss(pb::Loss {
            stage: "ring_buffer".into(),
            count: 1,
            total: 1,
        })),
    }
}

fn msg(payload: pb::agent_message::Payload) -> pb::AgentMessage {
    pb::AgentMessage {
        node_name: NODE.to_owned(),
        sent_at: None,
        payload: Some(payload),
    }
}

async fn next(
    inbound: &mut tonic::Streaming<pb::AggregatorMessage>,
) -> pb::aggregator_message::Payload {
    tokio::time::timeout(Duration::from_secs(5), inbound.message())
        .await
        .expect("the aggregator answered within 5 s")
        .expect("the stream is still up")
        .expect("a message, not the end of the stream")
        .payload
        .expect("a payload")
}

#[tokio::test]
async fn implausible_observation_times_are_refused_in_the_ack_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, s: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, s).unwrap();
        p
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "agents CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let agent_key = KeyPair::generate().unwrap();
    let mut ap = CertificateParams::new(Vec::<String>::new()).unwrap();
    ap.distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    ap.distinguished_name
        .push(DnType::CommonName, format!("system:node:{NODE}"));
    let agent = ap.signed_by(&agent_key, &ca).unwrap();
    let files = TlsFiles {
        cert: w("server.pem", &server.pem()),
        key: w("server.key", &server_key.serialize_pem()),
        client_ca: Some(w("ca.pem", &ca.pem())),
        identity: Default::default(),
    };

    let store = Store::open(&dir.path().join("agg.db"), Synchronous::Normal).unwrap();
    let app = AppState::new(store, Policy::default(), Arc::new(Metrics::new())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_app = app.clone();
    let server = tokio::spawn(async move {
        serve(listener, &files, Limits::default(), server_app, async {
            let _ = stop_rx.await;
        })
        .await
    });

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .identity(Identity::from_pem(agent.pem(), agent_key.serialize_pem()));
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connecting to the agent listener");
    let mut client = pb::agent_service_client::AgentServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(msg(pb::agent_message::Payload::Hello(pb::Hello {
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
        .expect("the stream is accepted")
        .into_inner();
    assert!(matches!(
        next(&mut inbound).await,
        pb::aggregator_message::Payload::Welcome(_)
    ));

    let now = chrono::Utc::now().timestamp();
    // chrono's minimum + 60 s, 1970, just before 2000, two days ahead; then one good one.
    let min_plus_60 = chrono::DateTime::<chrono::Utc>::MIN_UTC.timestamp() + 60;
    let times = [min_plus_60, 0, 946_684_799, now + 2 * 86_400, now];
    tx.send(msg(pb::agent_message::Payload::Batch(
        pb::ObservationBatch {
            first_seq: 1,
            observations: times
                .iter()
                .enumerate()
                .map(|(i, t)| observation(&i.to_string(), *t))
                .collect(),
        },
    )))
    .await
    .unwrap();
    let pb::aggregator_message::Payload::Ack(ack) = next(&mut inbound).await else {
        panic!("expected an Ack");
    };
    assert_eq!(ack.seq, 5, "{ack:?}");
    let seqs: Vec<u64> = ack.rejected.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4], "{ack:?}");
    assert!(ack.rejected[0].reason.contains("before 2000"), "{ack:?}");
    assert!(
        ack.rejected[3].reason.contains("more than a day"),
        "{ack:?}"
    );
    let refused = app
        .metrics
        .rejected
        .get_or_create(&RejectLabel {
            source: "agent".into(),
            reason: "implausible_time".into(),
        })
        .get();
    assert_eq!(refused, 4);

    // The stream carries on.
    tx.send(msg(pb::agent_message::Payload::Batch(
        pb::ObservationBatch {
            first_seq: 6,
            observations: vec![observation("later", now)],
        },
    )))
    .await
    .unwrap();
    let pb::aggregator_message::Payload::Ack(ack) = next(&mut inbound).await else {
        panic!("expected an Ack");
    };
    assert_eq!((ack.seq, ack.rejected.len()), (6, 0), "{ack:?}");
    let stored: i64 = app
        .store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM observations", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(stored, 2, "only the two plausible observations are stored");

    drop(tx);
    drop(inbound);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the listener stopped within 5 s")
        .unwrap()
        .unwrap();
}
