//! Exactly once into the store: a resend that overlaps what the aggregator
//! already stored is skipped by (node, epoch, sequence), counted as
//! duplicates, and the Welcome of a new stream says where to resume.

use credtrail_aggregator::metrics::NodeLabel;
use credtrail_proto::pb::agent as pb;
use credtrail_tests::harness::{
    AgentListener, SOON, TestPki, batch_msg, channel, connect_observation, free_port, hello_msg,
    state_on_disk, stored_observation_ids, within,
};

async fn open(
    client: &mut pb::agent_service_client::AgentServiceClient<tonic::transport::Channel>,
    epoch: u64,
) -> (
    tokio::sync::mpsc::Sender<pb::AgentMessage>,
    tonic::Streaming<pb::AggregatorMessage>,
    u64,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(hello_msg("node-d", epoch)).await.unwrap();
    let mut inbound = client
        .stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let Some(pb::aggregator_message::Payload::Welcome(w)) =
        within("the welcome", SOON, inbound.message())
            .await
            .unwrap()
            .unwrap()
            .payload
    else {
        panic!("expected a welcome");
    };
    (tx, inbound, w.acked_seq)
}

async fn ack(inbound: &mut tonic::Streaming<pb::AggregatorMessage>) -> u64 {
    match within("an ack", SOON, inbound.message())
        .await
        .unwrap()
        .unwrap()
        .payload
    {
        Some(pb::aggregator_message::Payload::Ack(a)) => a.seq,
        other => panic!("expected an ack, got {other:?}"),
    }
}

fn obs(range: std::ops::Range<u64>) -> Vec<pb::Observation> {
    range
        .map(|i| connect_observation("node-d", "d", i).into())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_resend_is_stored_once() {
    let pki = TestPki::new();
    let state = state_on_disk(&pki.dir.path().join("db"));
    let listener = AgentListener::start(&pki, &state, free_port([127, 0, 0, 1])).await;
    let mut client = pb::agent_service_client::AgentServiceClient::new(
        channel(&pki, "node-d", listener.addr).await,
    );

    let (tx, mut inbound, resume) = open(&mut client, 42).await;
    assert_eq!(resume, 0, "a new epoch starts from scratch");
    tx.send(batch_msg("node-d", 1, obs(1..4))).await.unwrap();
    assert_eq!(ack(&mut inbound).await, 3);
    drop(tx);

    // Reconnect in the same epoch: resume point 3; the agent resends 2..=5.
    let (tx, mut inbound, resume) = open(&mut client, 42).await;
    assert_eq!(resume, 3);
    tx.send(batch_msg("node-d", 2, obs(2..6))).await.unwrap();
    assert_eq!(ack(&mut inbound).await, 5);
    // An entirely old batch: acknowledged at the mark, nothing stored.
    tx.send(batch_msg("node-d", 1, obs(1..3))).await.unwrap();
    assert_eq!(ack(&mut inbound).await, 5);
    drop(tx);

    let ids = stored_observation_ids(&state.store, "node-d").await;
    assert_eq!(
        ids,
        (1..6).map(|i| format!("node-d/d/{i}")).collect::<Vec<_>>()
    );
    let dups = state
        .metrics
        .observations_duplicate
        .get_or_create(&NodeLabel {
            node: "node-d".into(),
        })
        .get();
    assert_eq!(dups, 4, "2 skipped from the overlap + 2 from the old batch");

    // A restarted agent (new epoch) starts again from 0.
    let (_tx, _inbound, resume) = open(&mut client, 43).await;
    assert_eq!(resume, 0);
    listener.stop().await;
}
