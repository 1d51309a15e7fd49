//! The agent stream survives an aggregator restart mid-stream without losing
//! or duplicating an observation (spool + resume), and a bounded spool that
//! overflows while the aggregator is away reports its drops, never silently.
//!
//! Real parts: tonic over rustls mTLS on loopback, the aggregator's real
//! pipeline and SQLite store on disk, the agent's real stream client.

use std::time::Duration;

use credtrail_agent::stream;
use credtrail_proto::model::ObservationEvent;
use credtrail_tests::harness::{
    AgentListener, TestPki, connect_observation, free_port, hello, state_on_disk,
    stored_observation_ids, stream_config,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_restart_mid_stream_loses_nothing() {
    let pki = TestPki::new();
    let db = pki.dir.path().join("credtrail.db");
    let addr = free_port([127, 0, 0, 1]);
    let state = state_on_disk(&db);
    let listener = AgentListener::start(&pki, &state, addr).await;

    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let cfg = stream_config(&pki, "node-a", addr);
    let handle = stream::spawn(cfg, hello("node-a"), rx, Duration::from_secs(20)).unwrap();

    const N: u64 = 6000;
    for i in 0..N / 2 {
        tx.send(connect_observation("node-a", "run", i))
            .await
            .unwrap();
    }
    let (st, ok) = handle
        .wait_for(Duration::from_secs(20), |s| s.acked_seq >= 1000)
        .await;
    assert!(ok, "first acks never came: {st:?}");

    // Restart: the listener stops (open streams end), the state is dropped,
    // and a new aggregator opens the same database file.
    listener.stop().await;
    drop(state);
    for i in N / 2..N * 3 / 4 {
        tx.send(connect_observation("node-a", "run", i))
            .await
            .unwrap();
    }
    let (st, _) = handle
        .wait_for(Duration::from_secs(5), |s| !s.connected)
        .await;
    assert!(!st.connected, "{st:?}");
    let state = state_on_disk(&db);
    let listener = AgentListener::start(&pki, &state, addr).await;
    for i in N * 3 / 4..N {
        tx.send(connect_observation("node-a", "run", i))
            .await
            .unwrap();
    }
    drop(tx);
    let (st, ok) = handle
        .wait_for(Duration::from_secs(30), |s| s.finished)
        .await;
    assert!(ok, "stream did not finish: {st:?}");
    assert!(st.connects >= 2, "expected a reconnect: {st:?}");
    assert_eq!(st.acked_seq, N, "{st:?}");
    assert_eq!(st.spool_dropped, 0);
    assert_eq!(st.spool_len, 0);

    let ids = stored_observation_ids(&state.store, "node-a").await;
    assert_eq!(ids.len() as u64, N, "every observation stored exactly once");
    let mut want: Vec<String> = (0..N).map(|i| format!("node-a/run/{i}")).collect();
    want.sort();
    assert_eq!(ids, want);

    let agents = state.store.agents().await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].last_seq, N);
    assert_eq!(agents[0].stream_epoch, st.epoch);
    listener.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_drops_oldest_and_reports_the_loss() {
    let pki = TestPki::new();
    let addr = free_port([127, 0, 0, 1]);
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let mut cfg = stream_config(&pki, "node-b", addr);
    cfg.spool_capacity = 100;
    let handle = stream::spawn(cfg, hello("node-b"), rx, Duration::from_secs(20)).unwrap();
    // The aggregator is away: 250 observations into a spool of 100.
    for i in 0..250 {
        tx.send(connect_observation("node-b", "run", i))
            .await
            .unwrap();
    }
    // The first connect attempt runs concurrently with the sends: wait for
    // both the spool and the client's report of why it is not connected.
    let (st, ok) = handle
        .wait_for(Duration::from_secs(10), |s| {
            s.last_seq >= 250 && s.last_error.is_some()
        })
        .await;
    assert!(
        ok,
        "the client should take all 250 and say why it is not connected: {st:?}"
    );
    assert!(st.spool_dropped >= 150, "{st:?}");

    let db = pki.dir.path().join("b.db");
    let state = state_on_disk(&db);
    let listener = AgentListener::start(&pki, &state, addr).await;
    drop(tx);
    let (st, ok) = handle
        .wait_for(Duration::from_secs(30), |s| s.finished)
        .await;
    assert!(ok, "{st:?}");
    assert_eq!(st.spool_len, 0);

    let store = &state.store;
    let ids = stored_observation_ids(store, "node-b").await;
    // The newest observations arrive; the oldest were dropped and counted.
    assert!(ids.contains(&"node-b/run/249".to_string()));
    assert!(!ids.contains(&"node-b/run/0".to_string()));
    let losses: Vec<(u64, u64)> = store
        .read(|conn| {
            let mut stmt = conn.prepare("SELECT json FROM observations WHERE type = 'loss'")?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
        .unwrap()
        .iter()
        .map(|j| {
            let o: credtrail_proto::model::Observation = serde_json::from_str(j).unwrap();
            match o.event {
                ObservationEvent::Loss(l) => {
                    assert_eq!(l.stage, "spool");
                    (l.count, l.total)
                }
                other => panic!("not a loss: {other:?}"),
            }
        })
        .collect();
    assert!(!losses.is_empty(), "the drop was never reported");
    let reported_total = losses.iter().map(|(_, t)| *t).max().unwrap();
    // Some loss reports may themselves have been pushed out before the
    // aggregator came back; the last one's total covers every drop.
    assert_eq!(reported_total, st.spool_dropped, "{losses:?} vs {st:?}");
    // Every sequence number assigned was either stored or dropped and counted.
    assert_eq!(ids.len() as u64, st.last_seq - st.spool_dropped, "{st:?}");
    // The first heartbeat of the connection carried the drop counter to the agents table.
    let agents = store.agents().await.unwrap();
    assert_eq!(
        agents[0].drops.get("spool").copied(),
        Some(st.spool_dropped),
        "{agents:?}"
    );
    listener.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restart_with_disk_spool_resends_what_was_never_acknowledged() {
    let pki = TestPki::new();
    let addr = free_port([127, 0, 0, 1]);
    let spool_dir = pki.dir.path().join("spool");
    // The aggregator is down; the agent spools 300 observations to disk, then stops.
    let mut cfg = stream_config(&pki, "node-c", addr);
    cfg.spool_dir = Some(spool_dir.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let first = stream::spawn(cfg.clone(), hello("node-c"), rx, Duration::from_secs(1)).unwrap();
    for i in 0..300 {
        tx.send(connect_observation("node-c", "disk", i))
            .await
            .unwrap();
    }
    let (st1, ok) = first
        .wait_for(Duration::from_secs(10), |s| s.last_seq >= 300)
        .await;
    assert!(ok, "{st1:?}");
    first.abort().await;
    drop(tx);

    // A new agent process (same spool folder) finds them and, once the
    // aggregator is up, sends them in the same epoch.
    let state = state_on_disk(&pki.dir.path().join("c.db"));
    let listener = AgentListener::start(&pki, &state, addr).await;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let second = stream::spawn(cfg, hello("node-c"), rx, Duration::from_secs(20)).unwrap();
    assert_eq!(
        second.status().epoch,
        st1.epoch,
        "the disk spool keeps the epoch"
    );
    tx.send(connect_observation("node-c", "disk", 300))
        .await
        .unwrap();
    drop(tx);
    let (st2, ok) = second
        .wait_for(Duration::from_secs(20), |s| s.finished)
        .await;
    assert!(ok, "{st2:?}");
    assert_eq!(st2.acked_seq, 301);
    let ids = stored_observation_ids(&state.store, "node-c").await;
    assert_eq!(ids.len(), 301, "every spooled observation arrived once");
    listener.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_the_kernel_drop_counters() {
    let pki = TestPki::new();
    let state = state_on_disk(&pki.dir.path().join("e.db"));
    let listener = AgentListener::start(&pki, &state, free_port([127, 0, 0, 1])).await;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let handle = stream::spawn(
        stream_config(&pki, "node-e", listener.addr),
        hello("node-e"),
        rx,
        Duration::from_secs(5),
    )
    .unwrap();
    // The agent's own Loss report for the kernel ring buffer.
    let mut loss = connect_observation("node-e", "k", 0);
    loss.event = ObservationEvent::Loss(credtrail_proto::model::Loss {
        stage: "ring_buffer".into(),
        count: 7,
        total: 7,
    });
    tx.send(loss).await.unwrap();
    let mut seen = None;
    for _ in 0..50 {
        let rows = state.store.agents().await.unwrap();
        if let Some(r) = rows.first()
            && r.drops.get("ring_buffer") == Some(&7)
        {
            seen = Some(r.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = seen.expect("the heartbeat never carried ring_buffer=7 to the agents table");
    assert_eq!(row.drops.get("spool"), Some(&0));
    assert!(row.connected);
    let gauge = state
        .metrics
        .agent_reported_loss
        .get_or_create(&credtrail_aggregator::metrics::NodeLabel {
            node: "node-e".into(),
        })
        .get();
    assert_eq!(gauge, 7);
    drop(tx);
    let (st, ok) = handle
        .wait_for(Duration::from_secs(10), |s| s.finished)
        .await;
    assert!(ok, "{st:?}");
    listener.stop().await;
    // The stream's end is recorded for the coverage report (by the server's
    // stream task, which may finish just after the client does).
    let mut disconnected = false;
    for _ in 0..50 {
        if !state.store.agents().await.unwrap()[0].connected {
            disconnected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        disconnected,
        "the agents table still says node-e is connected 5 s after its stream ended"
    );
}
