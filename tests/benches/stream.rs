//! Stream benchmark: observations per second from the agent's stream client
//! to the aggregator's agent service, over real gRPC + mTLS on loopback,
//! batched, with zero loss (every observation acknowledged and counted).
//!
//! Printed, from the same run:
//! - baseline: converting and protobuf-encoding/decoding the same
//!   observations in one thread, without any network (the floor cost of the
//!   wire format);
//! - stream: the full path into a counting sink (the transport's figure);
//! - stream + store: the full path into the real pipeline and SQLite store
//!   (`synchronous=NORMAL`), what a deployed aggregator sustains.
//!
//! Run: `cargo bench -p credtrail-tests --bench stream` (optionally
//! `-- <observations>`; default 400000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use credtrail_agent::stream;
use credtrail_aggregator::agents::ObservationSink;
use credtrail_aggregator::metrics::Metrics;
use credtrail_aggregator::store::Store;
use credtrail_proto::model::Observation;
use credtrail_proto::pb::agent as pb;
use credtrail_tests::harness::{
    AgentListener, TestPki, connect_observation, free_port, hello, state_on_disk, stream_config,
};
use prost::Message as _;

#[derive(Clone, Default)]
struct CountingSink(Arc<AtomicU64>);

impl ObservationSink for CountingSink {
    async fn ingest(&self, _node: &str, batch: Vec<Observation>) -> Result<(), String> {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

fn baseline(obs: &[Observation]) -> f64 {
    let start = Instant::now();
    let mut n = 0usize;
    for chunk in obs.chunks(1024) {
        let batch = pb::ObservationBatch {
            first_seq: 1,
            observations: chunk.iter().cloned().map(Into::into).collect(),
        };
        let bytes = batch.encode_to_vec();
        let back = pb::ObservationBatch::decode(bytes.as_slice()).expect("decode");
        for o in back.observations {
            let _m: Observation = o.try_into().expect("convert");
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn run_stream(
    pki: &TestPki,
    listener: &AgentListener,
    node: &str,
    obs: Vec<Observation>,
) -> (f64, u64) {
    let n = obs.len() as u64;
    let mut cfg = stream_config(pki, node, listener.addr);
    cfg.spool_capacity = obs.len() + 16;
    cfg.max_batch = 2048;
    cfg.max_in_flight = 64 * 1024;
    let (tx, rx) = tokio::sync::mpsc::channel(8192);
    let handle = stream::spawn(cfg, hello(node), rx, Duration::from_secs(120)).expect("stream");
    let (st, ok) = handle
        .wait_for(Duration::from_secs(10), |s| s.connected)
        .await;
    assert!(ok, "not connected: {st:?}");
    let start = Instant::now();
    let feeder = tokio::spawn(async move {
        for o in obs {
            tx.send(o).await.expect("stream input");
        }
    });
    let (st, ok) = handle
        .wait_for(Duration::from_secs(300), |s| s.acked_seq >= n)
        .await;
    let secs = start.elapsed().as_secs_f64();
    assert!(ok, "not all acknowledged: {st:?}");
    feeder.await.expect("feeder");
    assert_eq!(st.spool_dropped, 0, "loss in the spool");
    handle.abort().await;
    (n as f64 / secs, st.acked_seq)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(400_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let make = |node: &str| (0..n as u64).map(|i| connect_observation(node, "bench", i)).collect::<Vec<_>>();
        let base = baseline(&make("node-base"));

        let pki = TestPki::new();
        let sink = CountingSink::default();
        let store = Store::open_in_memory().expect("store");
        let listener = AgentListener::start_with(&pki, sink.clone(), store, Arc::new(Metrics::new()), free_port([127, 0, 0, 1])).await;
        let (rate, acked) = run_stream(&pki, &listener, "node-bench", make("node-bench")).await;
        assert_eq!(sink.0.load(Ordering::Relaxed), n as u64, "sink count != sent");
        assert_eq!(acked, n as u64);
        listener.stop().await;

        let db_dir = tempfile::tempdir().expect("tmp");
        let state = state_on_disk(&db_dir.path().join("bench.db"));
        let listener = AgentListener::start(&pki, &state, free_port([127, 0, 0, 1])).await;
        let stored_n = (n / 4).max(1);
        let obs: Vec<Observation> = make("node-store").into_iter().take(stored_n).collect();
        let (rate_store, _) = run_stream(&pki, &listener, "node-store", obs).await;
        let stored: i64 = state
            .store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM observations WHERE node = 'node-store'", [], |r| r.get(0))?))
            .await
            .expect("count");
        assert_eq!(stored as usize, stored_n, "stored != sent");
        listener.stop().await;

        println!("stream benchmark ({n} observations, api_connect, batches of up to 2048, loopback gRPC + mTLS, 2 worker threads)");
        println!("  baseline  convert+encode+decode, no network : {:>10.0} obs/s", base);
        println!(
            "  stream    client -> gRPC -> service -> sink  : {:>10.0} obs/s  ({:.2}x baseline), zero loss ({n}/{n} acked and counted)",
            rate,
            rate / base
        );
        println!(
            "  stream + pipeline + SQLite ({stored_n} obs)       : {:>10.0} obs/s  ({:.2}x baseline), zero loss ({stored_n}/{stored_n} stored)",
            rate_store,
            rate_store / base
        );
        println!("  target: >= 200000 obs/s through the stream: {}", if rate >= 200_000.0 { "met" } else { "NOT met" });
    });
}
