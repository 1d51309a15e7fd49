//! A small bounded pool of I/O threads with a deadline per item.
//!
//! Every file and `/proc` access the agent makes on a process's behalf
//! runs here, never on the event loop: a FUSE file that never answers, a
//! `/proc/<pid>/cmdline` whose owner holds its memory lock, or any other
//! read that blocks costs one worker, not the agent. The caller waits at
//! most the deadline; a job still running then is abandoned (its worker
//! stays busy until the kernel lets go). When every worker is busy and the
//! one-slot queue is taken, a job is refused at once ([`PoolError::Saturated`]):
//! the caller counts a loss. Nothing queues without bound.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

/// Why a job gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("every I/O worker is busy")]
    Saturated,
    #[error("the file system did not answer within the deadline")]
    TimedOut,
}

/// See the module docs.
#[derive(Debug)]
pub struct IoPool {
    tx: SyncSender<Job>,
    deadline: Duration,
    saturated: AtomicU64,
    timed_out: AtomicU64,
}

impl IoPool {
    /// `workers` threads (at least 1), each job answered within `deadline`.
    pub fn new(workers: usize, deadline: Duration) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Job>(1);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("credtrail-io-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for a job.
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Self {
            tx,
            deadline,
            saturated: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
        })
    }

    /// Runs `f` on a worker and waits for its answer, at most the deadline.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (rtx, rrx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let _ = rtx.send(f());
        });
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.saturated.fetch_add(1, Ordering::Relaxed);
                return Err(PoolError::Saturated);
            }
        }
        match rrx.recv_timeout(self.deadline) {
            Ok(v) => Ok(v),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                self.timed_out.fetch_add(1, Ordering::Relaxed);
                Err(PoolError::TimedOut)
            }
        }
    }

    /// Jobs refused because every worker was busy, since start.
    pub fn saturated(&self) -> u64 {
        self.saturated.load(Ordering::Relaxed)
    }

    /// Jobs abandoned at the deadline, since start.
    pub fn timed_out(&self) -> u64 {
        self.timed_out.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn stuck_jobs_time_out_then_saturate_without_queueing() {
        let pool = IoPool::new(2, Duration::from_millis(100)).unwrap();
        assert_eq!(pool.run(|| 7), Ok(7));
        let (block_tx, block_rx) = mpsc::channel::<()>();
        let block_rx = Arc::new(Mutex::new(block_rx));
        // Two jobs that never finish (until released) take both workers,
        // a third fills the one-slot queue.
        for _ in 0..3 {
            let b = Arc::clone(&block_rx);
            let t = Instant::now();
            assert_eq!(
                pool.run(move || {
                    let _ = b.lock().map(|r| r.recv());
                }),
                Err(PoolError::TimedOut)
            );
            assert!(t.elapsed() < Duration::from_secs(2));
        }
        let t = Instant::now();
        assert_eq!(pool.run(|| 1), Err(PoolError::Saturated));
        assert!(t.elapsed() < Duration::from_millis(50), "refused at once");
        assert_eq!((pool.timed_out(), pool.saturated()), (3, 1));
        // Released, the pool answers again.
        drop(block_tx);
        let t = Instant::now();
        while pool.run(|| 2) != Ok(2) {
            assert!(t.elapsed() < Duration::from_secs(5), "pool never recovered");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
