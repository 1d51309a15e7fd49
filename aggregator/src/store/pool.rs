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
