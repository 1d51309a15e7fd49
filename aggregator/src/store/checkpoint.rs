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

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;

/// How often the WAL is checkpointed.
pub const INTERVAL: Duration = Duration::from_millis(500);
/// The WAL file is truncated back to this size after it was reset.
const JOURNAL_SIZE_LIMIT: i64 = 64 << 20;

/// The running checkpointer; stops (and is joined) when dropped.
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Turns `writer`'s automatic checkpoint off and starts the thread on a
    /// connection of its own to `path`.
    pub(super) fn start(writer: &Connection, path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        writer.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("credtrail-checkpoint".into())
            .spawn(move || run(&conn, &rx))
            .map_err(|e| StoreError::Task(format!("starting the checkpoint thread: {e}")))?;
        Ok(Self {
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

fn run(conn: &Connection, stop: &mpsc::Receiver<()>) {
    loop {
        match stop.recv_timeout(INTERVAL) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Stopped: one last pass so a clean exit leaves a small WAL.
            _ => {
                let _ = checkpoint(conn);
                return;
            }
        }
        if let Err(e) = checkpoint(conn) {
            tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
        }
    }
}

/// One `PASSIVE` checkpoint: copies what no reader still needs, never waits.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
