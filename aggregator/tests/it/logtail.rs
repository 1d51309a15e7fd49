//! The audit log backend: complete lines only, malformed lines counted,
//! rotation, truncation and restarts without reading an event twice or
//! skipping one.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use credtrail_aggregator::ingest::logtail::LogTailer;
use credtrail_aggregator::metrics::Metrics;
use credtrail_aggregator::policy::Policy;
use credtrail_aggregator::state::AppState;
use credtrail_aggregator::store::{Store, Synchronous};

fn line(id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{{"username":"u"}},"sourceIPs":["127.0.1.1"],"requestReceivedTimestamp":"2026-01-01T00:00:00Z"}}"#
    ) + "\n"
}

fn append(p: &Path, s: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap();
    f.write_all(s.as_bytes()).unwrap();
    f.sync_all().unwrap();
}

fn app(db: &Path) -> AppState {
    AppState::new(
        Store::open(db, Synchronous::Normal).unwrap(),
        Policy::default(),
        Arc::new(Metrics::new()),
    )
    .unwrap()
}

/// `(stored events, sum of accepted, sum of duplicates)`.
async fn counts(app: &AppState) -> (i64, i64, i64) {
    app.store
        .read(|c| {
            Ok(c.query_row(
                "SELECT (SELECT count(*) FROM audit_events), coalesce(sum(accepted),0), coalesce(sum(duplicates),0) FROM audit_batches",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?)
        })
        .await
        .unwrap()
}

async fn wait_for(app: &AppState, n: i64) {
    for _ in 0..500 {
        if counts(app).await.0 >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {n} events: {:?}", counts(app).await);
}

struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn start(app: &AppState, log: &Path) -> Running {
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let t = LogTailer::new(log.to_path_buf(), app.pipeline.clone())
        .poll_interval(Duration::from_millis(10));
    let task = tokio::spawn(async move {
        t.run(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

#[tokio::test]
async fn tails_complete_lines_counts_bad_ones_and_follows_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let db = dir.path().join("agg.db");
    append(&log, &(line("a1") + &line("a2") + &line("a3")));
    let app = app(&db);
    let run = start(&app, &log);
    wait_for(&app, 3).await;

    // A partial line waits for its newline.
    let l4 = line("a4");
    append(&log, &l4[..40]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(counts(&app).await.0, 3);
    append(&log, &l4[40..]);
    wait_for(&app, 4).await;

    // A malformed line is rejected, counted, and skipped.
    append(&log, &("{\"kind\": 0}\n".to_owned() + &line("a5")));
    wait_for(&app, 5).await;
    assert!(
        app.metrics
            .encode()
            .contains("reason=\"malformed_line\"} 1"),
        "{}",
        app.metrics.encode()
    );

    // Rotation: the last lines of the old file, then the new file.
    append(&log, &line("a6"));
    std::fs::rename(&log, dir.path().join("audit.log.1")).unwrap();
    append(&dir.path().join("audit.log.1"), &line("a7"));
    append(&log, &(line("b1") + &line("b2")));
    wait_for(&app, 9).await;
    run.stop().await;
    let (events, accepted, dups) = counts(&app).await;
    assert_eq!((events, accepted, dups), (9, 9, 0), "nothing read twice");
}

#[tokio::test]
async fn restart_resumes_at_the_saved_offset_and_finishes_a_file_rotated_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let db = dir.path().join("agg.db");
    append(&log, &(line("r1") + &line("r2")));
    {
        let app = app(&db);
        let run = start(&app, &log);
        wait_for(&app, 2).await;
        run.stop().await;
    }
    // While down: more lines, then a rotation and a new file.
    append(&log, &(line("r3") + &line("r4")));
    std::fs::rename(&log, dir.path().join("audit-2026.log")).unwrap();
    append(&log, &line("r5"));
    let app = app(&db);
    let run = start(&app, &log);
    wait_for(&app, 5).await;
    // And a restart with nothing new reads nothing again.
    run.stop().await;
    let run = start(&app, &log);
    tokio::time::sleep(Duration::from_millis(100)).await;
    run.stop().await;
    let (events, accepted, dups) = counts(&app).await;
    assert_eq!((events, accepted, dups), (5, 5, 0), "every event once");
}

#[tokio::test]
async fn truncation_starts_over_from_zero() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    append(&log, &(line("t1") + &line("t2") + &line("t3")));
    let app = app(&dir.path().join("agg.db"));
    let run = start(&app, &log);
    wait_for(&app, 3).await;
    // copytruncate: same inode, shorter.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    append(&log, &line("t4"));
    wait_for(&app, 4).await;
    run.stop().await;
}

#[tokio::test]
async fn two_rotations_while_down_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let db = dir.path().join("agg.db");
    append(&log, &line("x1"));
    {
        let app = app(&db);
        let run = start(&app, &log);
        wait_for(&app, 1).await;
        run.stop().await;
    }
    append(&log, &line("x2"));
    std::fs::rename(&log, dir.path().join("audit.log.2")).unwrap();
    append(&log, &line("x3"));
    std::thread::sleep(Duration::from_millis(20));
    std::fs::rename(&log, dir.path().join("audit.log.1")).unwrap();
    append(&dir.path().join("audit.log.1.gz"), "not read");
    append(&dir.path().join("audit-policy.yaml"), "not: read\n");
    append(&log, &line("x4"));
    let app = app(&db);
    let run = start(&app, &log);
    wait_for(&app, 4).await;
    run.stop().await;
    assert_eq!(counts(&app).await, (4, 4, 0));
    assert!(
        !app.metrics.encode().contains("malformed_line"),
        "no other file was read"
    );
}
