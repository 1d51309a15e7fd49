//! Group commit: one writer thread runs the write jobs waiting for it in one
//! transaction and syncs once.
//!
//! Every webhook batch and every agent's observation batch is a write job.
//! With thousands of agent streams, one transaction (and one WAL sync) per
//! job makes the sync rate the ceiling and puts every webhook POST behind a
//! queue of agents' commits. The writer thread takes the first waiting job,
//! then more that are already waiting, as long as the group has run less
//! than [`GROUP_TIME`] and holds fewer than [`MAX_GROUP`]; it runs each in
//! its own savepoint (a job that fails is rolled back alone and gets its
//! error), commits once, and only then answers every job: a 2xx or an ack
//! still means "committed" (and, with `synchronous=FULL`, synced). Many small
//! jobs (agents' reads) share one commit, and so the WAL pages they touch;
//! the time bound keeps a webhook batch from waiting for a long group.
//!
//! A job that panics rolls the whole group back; every job of that group
//! gets an error (the senders retry). The thread ends when the store is
//! dropped.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;
use rusqlite::{Connection, Transaction};

use super::{StoreError, lock};

/// Most jobs committed together.
pub const MAX_GROUP: usize = 512;
/// A group takes no further job once it has run this long.
pub const GROUP_TIME: std::time::Duration = std::time::Duration::from_millis(8);

/// Answers one job once its group's commit is known.
type Done = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// One write: runs inside the group's transaction, returns its answer.
type Job = Box<dyn FnOnce(&Transaction<'_>) -> Done + Send>;

/// Where the writer thread reports its figures (`/metrics`): how long a
/// write waited for the thread, and each group's size and time (its jobs and
/// the commit). Their sum is what a webhook POST or an agent's ack waits.
#[derive(Debug, Clone)]
pub struct WriterMetrics {
    /// Seconds from a write's submission to the start of its job.
    pub wait: Histogram,
    /// Seconds of one group: every job, then the commit (and its sync).
    pub group: Histogram,
    /// Jobs in one group.
    pub jobs: Histogram,
}

/// The writer thread; stopped and joined when dropped.
pub(super) struct GroupWriter {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    metrics: Arc<OnceLock<WriterMetrics>>,
}

impl GroupWriter {
    /// Starts the thread on `conn`; `long_wal` (file databases): raised by
    /// the checkpoint thread when the writer should finish a checkpoint.
    pub(super) fn start(
        conn: Arc<Mutex<Connection>>,
        long_wal: Option<Arc<AtomicBool>>,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let metrics = Arc::new(OnceLock::new());
        let m = metrics.clone();
        let thread = std::thread::Builder::new()
            .name("credtrail-writer".into())
            .spawn(move || run(&conn, &rx, &m, long_wal.as_deref()))
            .map_err(|e| StoreError::Task(format!("starting the writer thread: {e}")))?;
        Ok(Self {
            jobs: Some(tx),
            thread: Some(thread),
            metrics,
        })
    }

    /// Reports the writer's figures into `m` from now on (the first call wins).
    pub(super) fn instrument(&self, m: WriterMetrics) {
        let _ = self.metrics.set(m);
    }

    /// Runs `f` in the next group's transaction; resolves after its commit.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (answer, answered) = tokio::sync::oneshot::channel::<Result<T, StoreError>>();
        let (submitted, metrics) = (Instant::now(), self.metrics.clone());
        let job: Job = Box::new(move |tx| {
            if let Some(m) = metrics.get() {
                m.wait.observe(submitted.elapsed().as_secs_f64());
            }
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

fn run(
    conn: &Mutex<Connection>,
    jobs: &mpsc::Receiver<Job>,
    m: &OnceLock<WriterMetrics>,
    long_wal: Option<&AtomicBool>,
) {
    while let Ok(first) = jobs.recv() {
        let started = Instant::now();
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
        // A panic drops the jobs taken so far: each is answered with an error.
        let ran = catch_unwind(AssertUnwindSafe(|| {
            let mut done = vec![first(&tx)];
            while done.len() < MAX_GROUP && started.elapsed() < GROUP_TIME {
                match jobs.try_recv() {
                    Ok(j) => done.push(j(&tx)),
                    Err(_) => break,
                }
            }
            done
        }));
        let Ok(done) = ran else {
            tracing::error!("store: a write job panicked; its group is rolled back");
            continue; // `tx` dropped: rolled back; every job answered with an error
        };
        let commit = tx.commit().err().map(StoreError::from);
        if let Some(e) = &commit {
            tracing::error!(error = %e, "store: group commit failed");
        }
        if let Some(m) = m.get() {
            m.group.observe(started.elapsed().as_secs_f64());
            m.jobs.observe(done.len() as f64);
        }
        for d in done {
            d(commit.as_ref());
        }
        // After the answers: the jobs just committed do not wait for it.
        if let Some(long) = long_wal {
            super::checkpoint::finish(&c, long);
        }
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::histogram::exponential_buckets;
    use prometheus_client::registry::Registry;

    use super::*;

    /// A writer on an in-memory database, its figures (not yet reported)
    /// and a registry holding them as `wait`, `group` and `jobs`.
    fn writer() -> (GroupWriter, WriterMetrics, Registry) {
        let conn = Arc::new(Mutex::new(Connection::open_in_memory().unwrap()));
        let w = GroupWriter::start(conn, None).unwrap();
        let m = WriterMetrics {
            wait: Histogram::new(exponential_buckets(0.0005, 2.0, 4)),
            group: Histogram::new(exponential_buckets(0.0005, 2.0, 4)),
            jobs: Histogram::new(exponential_buckets(1.0, 2.0, 4)),
        };
        let mut reg = Registry::default();
        reg.register("wait", "", m.wait.clone());
        reg.register("group", "", m.group.clone());
        reg.register("jobs", "", m.jobs.clone());
        (w, m, reg)
    }

    /// Every write is counted once in the wait histogram, and every group in
    /// the group histograms, its size summed.
    #[test]
    fn the_writer_reports_each_write_and_each_group() {
        let (w, m, reg) = writer();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(w.write(|_| Ok(()))).unwrap();
        w.instrument(m);
        for _ in 0..3 {
            rt.block_on(w.write(|tx| Ok(tx.execute_batch("SELECT 1")?)))
                .unwrap();
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        let line = |p: &str| {
            text.lines()
                .find(|l| l.starts_with(p))
                .unwrap_or_else(|| panic!("{p} in {text}"))
                .to_owned()
        };
        // Only the writes after `instrument` are counted; one at a time, so
        // three groups of one.
        assert_eq!(line("wait_count"), "wait_count 3");
        assert_eq!(line("group_count"), "group_count 3");
        assert_eq!(line("jobs_sum"), "jobs_sum 3.0");
    }

    /// Waiting jobs join a group only while it has run less than
    /// `GROUP_TIME`: six 10 ms jobs sent at once are six groups, not two.
    #[test]
    fn a_group_takes_no_job_after_its_time() {
        let (w, m, reg) = writer();
        w.instrument(m);
        let slow = || {
            w.write(|_| {
                std::thread::sleep(GROUP_TIME + std::time::Duration::from_millis(2));
                Ok(())
            })
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = tokio::join!(slow(), slow(), slow(), slow(), slow(), slow());
            for x in [r.0, r.1, r.2, r.3, r.4, r.5] {
                x.unwrap();
            }
        });
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
        assert!(text.contains("jobs_count 6\n"), "{text}");
        assert!(text.contains("jobs_sum 6.0\n"), "{text}");
    }
}
