//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses 1,000
//! WAL pages: that batch (and the webhook POST waiting for it) pays for
//! copying the WAL into the database file and syncing it, tens of
//! milliseconds. The writer turns the automatic checkpoint off and this
//! thread, on its own connection, runs a `PASSIVE` checkpoint every
//! [`INTERVAL`]: it never waits for the writer and the writer never waits
//! for it. Durability is unchanged: every commit still syncs the WAL
//! (`synchronous=FULL`) before the webhook answers, and a WAL not yet
//! checkpointed is replayed at the next open.
//!
//! A passive checkpoint alone never lets the WAL start over under sustained
//! load: SQLite rewinds the WAL only when a write transaction begins with
//! every frame already copied back, and with the writer committing every
//! few milliseconds a pass on another connection never catches up. The WAL
//! then grew without end (11.7 GB in 90 s of the scale bench,
//! docs/SCALING.md), and every commit paid for extending the file (the
//! kernel zeroing new pages: 27 % of the writer's time). So once the WAL
//! holds [`RESTART_FRAMES`] frames this thread raises a flag, and the writer
//! thread, after answering its group, finishes the copy itself (only the
//! frames this thread has not copied yet): its next transaction then writes
//! from the start of the WAL file again, over pages already allocated.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;

/// How often the WAL is checkpointed.
pub const INTERVAL: Duration = Duration::from_millis(500);
/// The WAL file is truncated back to this size after it was reset.
const JOURNAL_SIZE_LIMIT: i64 = 64 << 20;
/// WAL frames (a page and a 24-byte header each: 32 MiB of 4 KiB pages)
/// after which the writer is asked to finish a checkpoint so the WAL starts
/// over.
pub const RESTART_FRAMES: i64 = 8192;

/// The running checkpointer; stops (and is joined) when dropped.
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    long: Arc<AtomicBool>,
}

impl Checkpointer {
    /// Turns `writer`'s automatic checkpoint off and starts the thread on a
    /// connection of its own to `path`; the WAL is long at `restart_frames`.
    pub(super) fn start(
        writer: &Connection,
        path: &Path,
        restart_frames: i64,
    ) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        writer.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (tx, rx) = mpsc::channel::<()>();
        let long = Arc::new(AtomicBool::new(false));
        let flag = long.clone();
        let thread = std::thread::Builder::new()
            .name("credtrail-checkpoint".into())
            .spawn(move || run(&conn, &rx, &flag, restart_frames))
            .map_err(|e| StoreError::Task(format!("starting the checkpoint thread: {e}")))?;
        Ok(Self {
            stop: Some(tx),
            thread: Some(thread),
            long,
        })
    }

    /// Raised while the WAL is long; the writer finishes the checkpoint
    /// ([`finish`]) and lowers it.
    pub(super) fn long_wal(&self) -> Arc<AtomicBool> {
        self.long.clone()
    }
}

fn run(conn: &Connection, stop: &mpsc::Receiver<()>, long: &AtomicBool, restart_frames: i64) {
    loop {
        match stop.recv_timeout(INTERVAL) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Stopped: one last pass so a clean exit leaves a small WAL.
            _ => {
                let _ = checkpoint(conn);
                return;
            }
        }
        match checkpoint(conn) {
            Ok(log) if log >= restart_frames => long.store(true, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; retrying"),
        }
    }
}

/// One `PASSIVE` checkpoint: copies what no reader still needs, never
/// waits; returns the frames in the WAL (`PRAGMA wal_checkpoint`'s `log`).
fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
}

/// On the writer's connection, between groups, once per raising of `long`:
/// copies the frames the checkpoint thread has not; when every frame is
/// copied the next write transaction rewinds the WAL. A pass that could not
/// finish (the checkpoint thread mid-pass, or a query still reading old
/// frames) is not retried after every group: the checkpoint thread raises
/// the flag again at its next pass while the WAL is still long, so a long
/// query costs the writer at most one extra pass per [`INTERVAL`].
pub(super) fn finish(writer: &Connection, long: &AtomicBool) {
    if !long.swap(false, Ordering::Relaxed) {
        return;
    }
    if let Err(e) = checkpoint(writer) {
        tracing::warn!(error = %e, "WAL checkpoint on the writer failed; retrying");
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
