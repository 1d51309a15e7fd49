//! What the aggregator's agent listener refuses, and how:
//! - a Hello for another node than the certificate's: `permission_denied`;
//! - a certificate from another CA: the TLS handshake fails;
//! - bytes that are not protobuf, and protocol violations: `invalid_argument`
//!   with the reason, counted, while another agent's stream carries on;
//! - a malformed observation inside a good batch: refused alone, named in
//!   the Ack, counted; the rest of the batch is stored.

use std::time::Duration;

use credtrail_agent::stream;
use credtrail_aggregator::metrics::RejectLabel;
use credtrail_aggregator::state::AppState;
use credtrail_proto::pb::agent as pb;
use credtrail_tests::certs::{Ca, write_cert_key};
use credtrail_tests::harness::{
    AgentListener, SOON, TestPki, batch_msg, channel, connect_observation, free_port, hello,
    hello_msg, state_on_disk, stored_observation_ids, stream_config, within,
};
use tonic::transport::Channel;

fn rejected(state: &AppState, reason: &str) -> u64 {
    state
        .metrics
        .rejected
        .get_or_create(&RejectLabel {
            source: "agent".into(),
            reason: reason.into(),
        })
        .get()
}

async fn setup() -> (TestPki, AppState, AgentListener) {
    let pki = TestPki::new();
    let state = state_on_disk(&pki.dir.path().join("db"));
    let listener = AgentListener::start(&pki, &state, free_port([127, 0, 0, 1])).await;
    (pki, state, listener)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_for_another_node_is_refused() {
    let (pki, state, listener) = setup().await;
    // The certificate says node-a; the agent claims node-b.
    let cfg = stream_config(&pki, "node-a", listener.addr);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let handle = stream::spawn(cfg, hello("node-b"), rx, Duration::from_secs(1)).unwrap();
    tx.send(connect_observation("node-b", "x", 1))
        .await
        .unwrap();
    let (st, ok) = handle
        .wait_for(Duration::from_secs(10), |s| {
            s.last_error
                .as_deref()
                .is_some_and(|e| e.contains("PermissionDenied"))
        })
        .await;
    assert!(ok, "{st:?}");
    let err = st.last_error.unwrap();
    assert!(
        err.contains("\"node-a\"") && err.contains("\"node-b\""),
        "{err}"
    );
    assert_eq!(st.connects, 0);
    handle.abort().await;
    assert!(
        stored_observation_ids(&state.store, "node-b")
            .await
            .is_empty()
    );
    assert!(
        state.store.agents().await.unwrap().is_empty(),
        "no agent row for a refused hello"
    );
    assert!(rejected(&state, "node_mismatch") >= 1);
    listener.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca_is_refused() {
    let (pki, state, listener) = setup().await;
    let rogue = Ca::new("rogue CA").unwrap().agent("node-a").unwrap();
    let paths = write_cert_key(pki.dir.path(), "rogue", &rogue).unwrap();
    let mut cfg = stream_config(&pki, "node-a", listener.addr);
    cfg.cert = paths.cert;
    cfg.key = paths.key;
    let (_tx, rx) = tokio::sync::mpsc::channel(16);
    let handle = stream::spawn(cfg, hello("node-a"), rx, Duration::from_secs(1)).unwrap();
    let (st, ok) = handle
        .wait_for(Duration::from_secs(10), |s| s.last_error.is_some())
        .await;
    assert!(ok, "{st:?}");
    assert_eq!(st.connects, 0, "{st:?}");
    handle.abort().await;
    assert!(state.store.agents().await.unwrap().is_empty());
    listener.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_refused_clearly_and_other_agents_carry_on() {
    let (pki, state, listener) = setup().await;
    // A good agent streams the whole time.
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let good = stream::spawn(
        stream_config(&pki, "node-good", listener.addr),
        hello("node-good"),
        rx,
        Duration::from_secs(20),
    )
    .unwrap();
    for i in 0..500 {
        tx.send(connect_observation("node-good", "g", i))
            .await
            .unwrap();
    }
    let (st, ok) = good
        .wait_for(Duration::from_secs(10), |s| s.acked_seq >= 500)
        .await;
    assert!(ok, "{st:?}");

    // 1. Bytes that are not protobuf, on an authenticated stream.
    let mut grpc = tonic::client::Grpc::new(channel(&pki, "node-bad", listener.addr).await);
    grpc.ready().await.unwrap();
    let garbage = vec![0x52u8, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02];
    let resp = grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter(vec![garbage])),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/credtrail.agent.v1.AgentService/Stream",
            ),
            RawCodec,
        )
        .await;
    let status = match resp {
        Ok(r) => {
            let mut s = r.into_inner();
            within("the error status for garbage bytes", SOON, async {
                loop {
                    match s.message().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => panic!("stream ended without an error status"),
                        Err(st) => break st,
                    }
                }
            })
            .await
        }
        Err(st) => st,
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("undecodable"), "{status:?}");
    assert!(rejected(&state, "undecodable") >= 1);

    // 2. A batch before any hello.
    let mut client = pb::agent_service_client::AgentServiceClient::new(
        channel(&pki, "node-bad", listener.addr).await,
    );
    let err = first_error(&mut client, vec![batch_msg("node-bad", 1, vec![])]).await;
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("first message"), "{err:?}");

    // 3. Sequence number 0.
    let obs: pb::Observation = connect_observation("node-bad", "b", 0).into();
    let err = first_error(
        &mut client,
        vec![
            hello_msg("node-bad", 7),
            batch_msg("node-bad", 0, vec![obs.clone()]),
        ],
    )
    .await;
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("first_seq"), "{err:?}");

    // 4. One malformed observation in a good batch: refused alone and named.
    let mut bad = obs.clone();
    if let Some(pb::observation::Event::ApiConnect(c)) = &mut bad.event {
        c.remote.as_mut().unwrap().ip = "999.1.1.1".into();
    }
    let mut ok2: pb::Observation = connect_observation("node-bad", "b", 2).into();
    ok2.id = "node-bad/b/2".into();
    let (out_tx, out_rx) = tokio::sync::mpsc::channel(4);
    out_tx.send(hello_msg("node-bad", 8)).await.unwrap();
    out_tx
        .send(batch_msg("node-bad", 1, vec![obs, bad, ok2]))
        .await
        .unwrap();
    let mut inbound = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(out_rx))
        .await
        .unwrap()
        .into_inner();
    let welcome = within("the welcome", SOON, inbound.message())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        welcome.payload,
        Some(pb::aggregator_message::Payload::Welcome(_))
    ));
    let Some(pb::aggregator_message::Payload::Ack(ack)) =
        within("the ack of the mixed batch", SOON, inbound.message())
            .await
            .unwrap()
            .unwrap()
            .payload
    else {
        panic!("expected an ack");
    };
    assert_eq!(ack.seq, 3);
    assert_eq!(ack.rejected.len(), 1);
    assert_eq!(ack.rejected[0].seq, 2);
    assert!(
        ack.rejected[0].reason.starts_with("api_connect.remote.ip:"),
        "{:?}",
        ack.rejected
    );
    drop(out_tx);
    assert_eq!(
        stored_observation_ids(&state.store, "node-bad").await,
        vec!["node-bad/b/0".to_string(), "node-bad/b/2".to_string()]
    );
    assert!(rejected(&state, "malformed_observation") >= 1);

    // The good agent was never disturbed.
    for i in 500..1000 {
        tx.send(connect_observation("node-good", "g", i))
            .await
            .unwrap();
    }
    drop(tx);
    let (st, ok) = good.wait_for(Duration::from_secs(20), |s| s.finished).await;
    assert!(ok, "{st:?}");
    assert_eq!((st.acked_seq, st.connects), (1000, 1), "{st:?}");
    assert_eq!(
        stored_observation_ids(&state.store, "node-good")
            .await
            .len(),
        1000
    );
    listener.stop().await;
}

async fn first_error(
    client: &mut pb::agent_service_client::AgentServiceClient<Channel>,
    msgs: Vec<pb::AgentMessage>,
) -> tonic::Status {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    for m in msgs {
        tx.send(m).await.unwrap();
    }
    let mut inbound = match client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return s,
    };
    let status = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match inbound.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("stream ended without an error"),
                Err(s) => return s,
            }
        }
    })
    .await
    .expect("no error status within 10 s");
    drop(tx);
    status
}

/// Sends raw bytes as gRPC messages; decodes answers as raw bytes.
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        *self
    }
    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf as _;
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}
