//! The aggregator's durable store: embedded SQLite (WAL), one file (`--db`).
//!
//! The schema is [`SCHEMA`] (`schema.sql`). One writer connection (every
//! batch is one transaction) and one reader connection, each behind a mutex;
//! blocking work runs on tokio's blocking pool through [`Store::read`] and
//! [`Store::write`].
//!
//! Durability: the webhook answers 2xx only after the batch's transaction has
//! committed. With `synchronous=FULL` (the default here) a committed
//! transaction survives power loss; `--db-synchronous normal` keeps it across a
//! process crash only (WAL is synced at checkpoints), which is faster.

mod agents;
pub mod backup;
mod changes;
mod ingest;
mod load;
pub mod query;
mod retention;
#[cfg(test)]
mod tests;
mod version;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

pub use agents::{AgentHello, AgentRow};
pub use changes::write_changes;
pub use ingest::{
    apply_policy, count_rejected, finish_audit_batch, insert_alerts, insert_audit_events,
    insert_observations, load_log_offset, save_log_offset,
};
pub use load::{LoadedState, load_state, load_suppressions};
pub use retention::{Pruned, prune};

/// The schema, applied at every open (`CREATE ... IF NOT EXISTS`).
pub const SCHEMA: &str = include_str!("schema.sql");
/// Bumped when the schema changes incompatibly (2: narrow `audit_events`).
pub const SCHEMA_VERSION: &str = "2";

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("encoding stored JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("store task failed: {0}")]
    Task(String),
    #[error(
        "the database has schema version {found}, newer than this binary's ({known}): run the \
         newer credtrail-aggregator, or restore a backup taken before the upgrade (docs/OPERATIONS.md)"
    )]
    NewerSchema { found: String, known: &'static str },
}

/// SQLite `synchronous` setting for the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Synchronous {
    /// Sync the WAL on every commit: a 2xx survives power loss.
    #[default]
    Full,
    /// Sync at checkpoints only: a 2xx survives a process crash, not power loss.
    Normal,
}

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
    path: Option<PathBuf>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path, sync: Synchronous) -> Result<Self, StoreError> {
        let open = |p: &Path| {
            Connection::open(p).map_err(|source| StoreError::Open {
                path: p.to_path_buf(),
                source,
            })
        };
        let mut writer = open(path)?;
        writer.busy_timeout(std::time::Duration::from_secs(10))?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(
            None,
            "synchronous",
            match sync {
                Synchronous::Full => "FULL",
                Synchronous::Normal => "NORMAL",
            },
        )?;
        writer.pragma_update(None, "foreign_keys", "ON")?;
        apply_schema(&mut writer)?;
        let reader = open(path)?;
        reader.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(Self {
            inner: Arc::new(Inner {
                writer: Arc::new(Mutex::new(writer)),
                reader: Arc::new(Mutex::new(reader)),
                path: Some(path.to_path_buf()),
            }),
        })
    }

    /// An in-memory store (replay, tests): one connection serves reads and writes.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        apply_schema(&mut conn)?;
        let conn = Arc::new(Mutex::new(conn));
        Ok(Self {
            inner: Arc::new(Inner {
                writer: conn.clone(),
                reader: conn,
                path: None,
            }),
        })
    }

    /// The database file, `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Runs `f` with the reader connection on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.inner.reader.clone();
        tokio::task::spawn_blocking(move || f(&lock(&conn)))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` inside one write transaction on the blocking pool; commits if
    /// `f` succeeds, rolls back otherwise.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.inner.writer.clone();
        tokio::task::spawn_blocking(move || write_tx(&mut lock(&conn), f))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Synchronous read, for callers already off the async runtime.
    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&lock(&self.inner.reader))
    }

    /// Synchronous write transaction, for callers already off the async runtime.
    pub fn write_blocking<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        write_tx(&mut lock(&self.inner.writer), f)
    }
}

/// Applies [`SCHEMA`] and migrates a version-1 database (whose `audit_events`
/// held a per-event summary keyed by auditID) to the narrow, time-keyed dedupe
/// table, keeping its keys.
fn apply_schema(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    version::check(&tx)?;
    let v1: bool = tx.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('audit_events') WHERE name = 'verb'",
        [],
        |r| r.get(0),
    )?;
    if v1 {
        tx.execute_batch("ALTER TABLE audit_events RENAME TO audit_events_v1")?;
    }
    tx.execute_batch(SCHEMA)?;
    if v1 {
        tx.execute_batch(
            "INSERT OR IGNORE INTO audit_events(time_ms, audit_id, stage, batch_id)
                 SELECT time_ms, audit_id, stage, batch_id FROM audit_events_v1;
             DROP TABLE audit_events_v1;",
        )?;
    }
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('schema_version', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [SCHEMA_VERSION],
    )?;
    tx.commit()?;
    Ok(())
}

fn write_tx<T>(
    conn: &mut Connection,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.transaction()?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// Locks a connection; a panic while holding it poisons nothing we rely on
/// (SQLite rolls the open transaction back), so poisoning is ignored.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Milliseconds since the Unix epoch.
pub fn ms(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// RFC 3339 with microseconds and `Z`: sorts as text.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
