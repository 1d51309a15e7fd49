//! The store's read side: a small pool of read-only connections for queries,
//! each query bounded by a deadline, and one more connection kept for health
//! checks alone, so `/readyz` never waits behind slow queries.
//!
//! Waiting for a free connection is asynchronous (a semaphore): queued queries
//! hold no blocking-pool thread. A query past its deadline is interrupted
//! (`sqlite3_interrupt`), counted, and fails.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::{StoreError, lock};

/// Default number of read-only query connections.
pub const DEFAULT_READERS: usize = 4;
/// Default deadline of one query.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// How the store serves reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Read-only connections for queries (at least 1).
    pub readers: usize,
    /// A query running longer is interrupted.
    pub query_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            readers: DEFAULT_READERS,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
        }
    }
}

pub(super) struct ReadPool {
    free: Mutex<Vec<Arc<Mutex<Connection>>>>,
    slots: Semaphore,
    health: Arc<Mutex<Connection>>,
    timeout: Duration,
    timeouts: Mutex<Option<Counter>>,
}

impl ReadPool {
    pub(super) fn new(
        conns: Vec<Arc<Mutex<Connection>>>,
        health: Arc<Mutex<Connection>>,
        timeout: Duration,
    ) -> Self {
        Self {
            slots: Semaphore::new(conns.len()),
            free: Mutex::new(conns),
            health,
            timeout,
            timeouts: Mutex::new(None),
        }
    }

    pub(super) fn count_timeouts(&self, c: Counter) {
        *self
            .timeouts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(c);
    }

    fn take(&self) -> Arc<Mutex<Connection>> {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .expect("a permit guarantees a free connection")
    }

    fn give(&self, c: Arc<Mutex<Connection>>) {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(c);
    }

    /// Runs `f` on a pooled connection, on the blocking pool; past the
    /// deadline the query is interrupted (`SQLITE_INTERRUPT`) and counted.
    pub(super) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .slots
            .acquire()
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let conn = self.take();
        let interrupt = lock(&conn).get_interrupt_handle();
        let c = conn.clone();
        let task = tokio::task::spawn_blocking(move || f(&lock(&c)));
        tokio::pin!(task);
        let out = tokio::select! {
            r = &mut task => r,
            () = tokio::time::sleep(self.timeout) => {
                interrupt.interrupt();
                self.timed_out();
                task.await
            }
        };
        self.give(conn);
        out.map_err(|e| StoreError::Task(e.to_string()))?
    }

    fn timed_out(&self) {
        if let Some(c) = &*self
            .timeouts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            c.inc();
        }
        tracing::warn!(
            timeout_ms = self.timeout.as_millis() as u64,
            "query interrupted: it ran past the query timeout"
        );
    }

    /// Runs `f` on a pooled connection from a blocking context (tests,
    /// start-up; no deadline).
    pub(super) fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = {
            let free = self
                .free
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            free.first().cloned().unwrap_or_else(|| self.health.clone())
        };
        f(&lock(&conn))
    }

    /// A trivial read on the health connection (never one of the query
    /// connections), with a short deadline.
    pub(super) async fn health(&self) -> Result<(), StoreError> {
        let conn = self.health.clone();
        tokio::task::spawn_blocking(move || {
            let c = lock(&conn);
            c.query_row("SELECT count(*) FROM meta", [], |r| r.get::<_, i64>(0))?;
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, Synchronous};

    #[tokio::test]
    async fn a_query_past_its_deadline_is_interrupted_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(
            &dir.path().join("db"),
            Synchronous::Normal,
            StoreOptions {
                readers: 1,
                query_timeout: Duration::from_millis(200),
            },
        )
        .unwrap();
        let counter = Counter::default();
        store.count_query_timeouts(counter.clone());
        let endless = store
            .read(|c| {
                Ok(c.query_row(
                    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n) \
                     SELECT count(*) FROM n",
                    [],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .await;
        let err = endless.expect_err("an endless query must be interrupted");
        assert!(err.to_string().contains("interrupt"), "{err}");
        assert_eq!(counter.get(), 1);
        // The connection went back to the pool and serves the next query.
        let n = store
            .read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await
            .unwrap();
        assert_eq!(n, 1);
        store.health().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_answers_while_every_query_connection_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with(
            &dir.path().join("db"),
            Synchronous::Normal,
            StoreOptions {
                readers: 2,
                query_timeout: Duration::from_secs(30),
            },
        )
        .unwrap();
        // Two queries hold both query connections until released; a third waits.
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let (started_tx, mut started) = tokio::sync::mpsc::channel::<()>(4);
        let mut busy = Vec::new();
        for _ in 0..3 {
            let (s, gate, started_tx) = (store.clone(), gate.clone(), started_tx.clone());
            busy.push(tokio::spawn(async move {
                s.read(move |_| {
                    let _ = started_tx.blocking_send(());
                    let _ = gate.lock().unwrap().recv();
                    Ok(())
                })
                .await
            }));
        }
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(10), started.recv())
                .await
                .expect("two queries hold the pool");
        }
        tokio::time::timeout(Duration::from_secs(5), store.health())
            .await
            .expect("health waited behind busy queries")
            .unwrap();
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        for b in busy {
            b.await.unwrap().unwrap();
        }
    }
}
