//! Group commit: one writer thread runs the write jobs waiting for it in one
//! transaction and syncs once.
//!
//! Every webhook batch and every agent's observation batch is a write job.
//! With thousands of agent streams, one transaction (and one WAL sync) per
//! job makes the sync rate the ceiling and puts every webhook POST behind a
//! queue of agents' commits. The writer thread takes the first waiting job,
//! then up to [`MAX_GROUP`] - 1 more that are already waiting, runs each in
//! its own savepoint (a job that fails is rolled back alone and gets its
//! error), commits once, and only then answers every job: a 2xx or an ack
//! still means "committed" (and, with `synchronous=FULL`, synced).
//!
//! A job that panics rolls the whole group back; every job of that group
//! gets an error (the senders retry). The thread ends when the store is
//! dropped.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, Transaction};

use super::{StoreError, lock};

/// Most jobs committed together.
pub const MAX_GROUP: usize = 64;

/// Answers one job once its group's commit is known.
type Done = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// One write: runs inside the group's transaction, returns its answer.
type Job = Box<dyn FnOnce(&Transaction<'_>) -> Done + Send>;

/// The writer thread; stopped and joined when dropped.
pub(super) struct GroupWriter {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl GroupWriter {
    pub(super) fn start(conn: Arc<Mutex<Connection>>) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("credtrail-writer".into())
            .spawn(move || run(&conn, &rx))
            .map_err(|e| StoreError::Task(format!("starting the writer thread: {e}")))?;
        Ok(Self {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `f` in the next group's transaction; resolves after its commit.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel::<Result<T, StoreError>>();
        let job: Job = Box::new(move |tx| {
            let r = in_savepoint(tx, f);
            Box::new(move |commit: Option<&StoreError>| {
                let out = match (r, commit) {
                    (Ok(v), None) => Ok(v),
                    (Ok(_), Some(e)) => Err(StoreError::Task(format!("commit failed: {e}"))),
                    (Err(e), _) => Err(e),
                };
                let _ = answer.send(out);
            })
        });
        self.jobs
            .as_ref()
            .ok_or_else(|| StoreError::Task("the store is closed".into()))?
            .send(job)
            .map_err(|_| StoreError::Task("the store writer stopped".into()))?;
        answered.await.map_err(|_| {
            StoreError::Task("the write was rolled back with its group (see the log)".into())
        })?
    }
}

impl Drop for GroupWriter {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `f` inside a savepoint: rolled back alone when it fails.
fn in_savepoint<T>(
    tx: &Transaction<'_>,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    tx.execute_batch("SAVEPOINT job")?;
    match f(tx) {
        Ok(v) => {
            tx.execute_batch("RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

fn run(conn: &Mutex<Connection>, jobs: &mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        let mut c = lock(conn);
        // IMMEDIATE: the write lock is taken (or waited for) up front, so
        // no job can fail on upgrading a read to a write.
        let tx = match c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                // Dropping the jobs answers each with an error.
                tracing::error!(error = %e, "store: cannot begin a transaction");
                continue;
            }
        };
        let ran = catch_unwind(AssertUnwindSafe(|| {
            group.into_iter().map(|j| j(&tx)).collect::<Vec<Done>>()
        }));
        let Ok(done) = ran else {
            tracing::error!("store: a write job panicked; its group is rolled back");
            continue; // `tx` dropped: rolled back; every job answered with an error
        };
        let commit = tx.commit().err().map(StoreError::from);
        if let Some(e) = &commit {
            tracing::error!(error = %e, "store: group commit failed");
        }
        for d in done {
            d(commit.as_ref());
        }
    }
}
