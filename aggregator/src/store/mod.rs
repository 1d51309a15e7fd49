//! The aggregator's durable store: embedded SQLite (WAL), one file (`--db`).
//!
//! The schema is [`SCHEMA`] (`schema.sql`). One writer connection behind a
//! mutex, driven by one writer thread that commits the writes waiting at the
//! same moment together (group commit, [`group`]; each write in its own
//! savepoint), WAL checkpoints on a thread of their own ([`checkpoint`]), a small pool of read-only query
//! connections with a per-query deadline, and one read-only connection for
//! health checks ([`pool`]); blocking work runs on tokio's blocking pool
//! through [`Store::read`] and [`Store::write`].
//!
//! Durability: the webhook answers 2xx only after the batch's transaction has
//! committed. With `synchronous=FULL` (the default here) a committed
//! transaction survives power loss; `--db-synchronous normal` keeps it across a
//! process crash only (WAL is synced at checkpoints), which is faster.

pub mod activity;
mod agents;
pub mod backup;
mod changes;
mod checkpoint;
mod group;
pub use group::WriterMetrics;
mod ingest;
pub mod inventory_ctx;
pub mod learned;
mod load;
mod pool;
pub mod query;
mod retention;
#[cfg(test)]
mod tests;
pub mod triage;
mod version;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension as _};

pub use agents::{AgentHello, AgentRow};
pub use changes::write_changes;
pub use ingest::{
    apply_policy, count_rejected, finish_audit_batch, insert_alerts, insert_audit_events,
    insert_observations, load_log_offset, save_log_offset,
};
pub use load::{
    LoadedState, StoredIdentity, load_identities, load_state, load_state_capped, load_suppressions,
};
pub use pool::{DEFAULT_QUERY_TIMEOUT, DEFAULT_READERS, StoreOptions};
pub use retention::{Pruned, prune};

/// The schema, applied at every open (`CREATE ... IF NOT EXISTS`).
pub const SCHEMA: &str = include_str!("schema.sql");
/// Bumped when the schema changes incompatibly (2: narrow `audit_events`;
/// 3: observations keyed by (node, id); 4: alert triage, `store/triage.rs`).
pub const SCHEMA_VERSION: &str = "4";
/// The writer's SQLite page cache, KiB (a negative `cache_size` is KiB).
const WRITER_CACHE_KIB: i64 = -64 * 1024;

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
    readers: Arc<pool::ReadPool>,
    path: Option<PathBuf>,
    /// The writer thread (group commit).
    group: group::GroupWriter,
    /// File databases: WAL checkpoints on their own thread.
    _checkpointer: Option<checkpoint::Checkpointer>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database file at `path`, with the
    /// default read pool.
    pub fn open(path: &Path, sync: Synchronous) -> Result<Self, StoreError> {
        Self::open_with(path, sync, StoreOptions::default())
    }

    /// Opens the database file at `path` with `opts.readers` read-only query
    /// connections and the query deadline.
    pub fn open_with(
        path: &Path,
        sync: Synchronous,
        opts: StoreOptions,
    ) -> Result<Self, StoreError> {
        Self::open_restarting_at(path, sync, opts, checkpoint::RESTART_FRAMES)
    }

    /// [`Self::open_with`], the writer finishing a checkpoint once the WAL
    /// holds `restart_frames` frames ([`checkpoint`]).
    fn open_restarting_at(
        path: &Path,
        sync: Synchronous,
        opts: StoreOptions,
        restart_frames: i64,
    ) -> Result<Self, StoreError> {
        let open = |p: &Path| {
            Connection::open(p).map_err(|source| StoreError::Open {
                path: p.to_path_buf(),
                source,
            })
        };
        let open_ro = |p: &Path| -> Result<Arc<Mutex<Connection>>, StoreError> {
            use rusqlite::OpenFlags as F;
            let c = Connection::open_with_flags(
                p,
                F::SQLITE_OPEN_READ_ONLY | F::SQLITE_OPEN_NO_MUTEX | F::SQLITE_OPEN_URI,
            )
            .map_err(|source| StoreError::Open {
                path: p.to_path_buf(),
                source,
            })?;
            c.busy_timeout(std::time::Duration::from_secs(10))?;
            c.pragma_update(None, "query_only", "ON")?;
            Ok(Arc::new(Mutex::new(c)))
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
        // Statement journals (a statement inside a transaction that may have
        // to roll back alone) in memory rather than a temp file, and a page
        // cache that holds the indexes' hot pages: at 5,000 events/s the
        // default 2 MiB cache spilled mid-transaction and re-read index pages
        // through the OS on every insert (docs/SCALING.md).
        writer.pragma_update(None, "temp_store", "MEMORY")?;
        writer.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
        apply_schema(&mut writer)?;
        let readers = (0..opts.readers.max(1))
            .map(|_| open_ro(path))
            .collect::<Result<Vec<_>, _>>()?;
        let health = open_ro(path)?;
        let checkpointer = checkpoint::Checkpointer::start(&writer, path, restart_frames)?;
        let writer = Arc::new(Mutex::new(writer));
        Ok(Self {
            inner: Arc::new(Inner {
                group: group::GroupWriter::start(writer.clone(), Some(checkpointer.long_wal()))?,
                writer,
                readers: Arc::new(pool::ReadPool::new(readers, health, opts.query_timeout)),
                path: Some(path.to_path_buf()),
                _checkpointer: Some(checkpointer),
            }),
        })
    }

    /// An in-memory store (replay, tests): one connection serves reads and writes.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let mut conn = Connection::open_in_memory()?;
        apply_schema(&mut conn)?;
        let conn = Arc::new(Mutex::new(conn));
        let readers = pool::ReadPool::new(vec![conn.clone()], conn.clone(), DEFAULT_QUERY_TIMEOUT);
        Ok(Self {
            inner: Arc::new(Inner {
                group: group::GroupWriter::start(conn.clone(), None)?,
                writer: conn,
                readers: Arc::new(readers),
                path: None,
                _checkpointer: None,
            }),
        })
    }

    /// The database file, `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Runs `f` with a pooled read-only connection on the blocking pool,
    /// interrupted past the query deadline.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.readers.read(f).await
    }

    /// A trivial read on the health connection: never waits for queries.
    pub async fn health(&self) -> Result<(), StoreError> {
        self.inner.readers.health().await
    }

    /// Counts interrupted queries into `c` (`credtrail_query_timeouts_total`).
    pub fn count_query_timeouts(&self, c: prometheus_client::metrics::counter::Counter) {
        self.inner.readers.count_timeouts(c);
    }

    /// Reports the writer thread's figures (wait, group time and size) into
    /// `m` (`credtrail_store_write_*`).
    pub fn instrument_writer(&self, m: group::WriterMetrics) {
        self.inner.group.instrument(m);
    }

    /// Runs `f` on the writer thread inside a transaction it may share with
    /// other writes waiting at the same time (group commit, [`group`]): `f`'s
    /// changes are rolled back alone if it fails; the call returns after the
    /// commit.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.inner.group.write(f).await
    }

    /// Synchronous read, for callers already off the async runtime.
    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.inner.readers.read_blocking(f)
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
    // IMMEDIATE: take the write lock first, waiting (busy timeout) for a
    // running aggregator's writer; a deferred transaction that reads first
    // cannot wait when it later needs to write (SQLITE_BUSY at once).
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    version::check(&tx)?;
    let v1: bool = tx.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('audit_events') WHERE name = 'verb'",
        [],
        |r| r.get(0),
    )?;
    if v1 {
        tx.execute_batch("ALTER TABLE audit_events RENAME TO audit_events_v1")?;
    }
    // Version 2 keyed observations by id alone.
    let obs_by_id: bool = tx.query_row(
        "SELECT count(*) = 1 FROM pragma_table_info('observations') WHERE pk > 0",
        [],
        |r| r.get(0),
    )?;
    if obs_by_id {
        tx.execute_batch(
            "DROP INDEX IF EXISTS observations_time;
             DROP INDEX IF EXISTS observations_node;
             ALTER TABLE observations RENAME TO observations_v2;",
        )?;
    }
    let had_alert_nodes: bool = tx.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'alert_nodes'",
        [],
        |r| r.get(0),
    )?;
    // Identities and baselines became WITHOUT ROWID tables (their rows live
    // in their primary key's B-tree instead of a table plus an index).
    let mut rowid_tables = Vec::new();
    for t in ROWLESS {
        let sql: Option<String> = tx
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [t],
                |r| r.get(0),
            )
            .optional()?;
        if sql.is_some_and(|s| !s.to_ascii_uppercase().contains("WITHOUT ROWID")) {
            tx.execute_batch(&format!("ALTER TABLE {t} RENAME TO {t}_rowid"))?;
            rowid_tables.push(t);
        }
    }
    tx.execute_batch(SCHEMA)?;
    for t in rowid_tables {
        tx.execute_batch(&format!(
            "INSERT OR IGNORE INTO {t} SELECT * FROM {t}_rowid; DROP TABLE {t}_rowid;"
        ))?;
    }
    // Suppressions gained attribution columns: add them to older databases.
    for (col, decl) in [
        ("created_by", "TEXT"),
        ("deleted_by", "TEXT"),
        ("deleted", "TEXT"),
    ] {
        let has: bool = tx.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('suppressions') WHERE name = ?1",
            [col],
            |r| r.get(0),
        )?;
        if !has {
            tx.execute_batch(&format!("ALTER TABLE suppressions ADD COLUMN {col} {decl}"))?;
        }
    }
    // Credential reads gained their token's expiry (older rows: none).
    let has_expiry: bool = tx.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('credential_reads') WHERE name = 'expires_ms'",
        [],
        |r| r.get(0),
    )?;
    if !has_expiry {
        tx.execute_batch("ALTER TABLE credential_reads ADD COLUMN expires_ms INTEGER")?;
    }
    tx.execute_batch(learned::LEARNED_SCHEMA)?;
    triage::migrate(&tx)?;
    tx.execute_batch(activity::ACTIVITY_SCHEMA)?;
    if !had_alert_nodes {
        // Version 2 had no node index: fill it from the stored alerts once.
        tx.execute_batch(
            "INSERT OR IGNORE INTO alert_nodes(node, seq)
                 SELECT node, seq FROM alerts WHERE node IS NOT NULL
             UNION ALL
                 SELECT json_extract(e.value, '$.node'), a.seq
                 FROM alerts a, json_each(a.json, '$.evidence') e
                 WHERE json_extract(e.value, '$.node') IS NOT NULL
             UNION ALL
                 SELECT json_extract(x.value, '$.value'), a.seq
                 FROM alerts a, json_each(a.json, '$.expected') x
                 WHERE json_extract(x.value, '$.kind') = 'node'
                   AND json_extract(x.value, '$.value') IS NOT NULL;",
        )?;
    }
    if obs_by_id {
        tx.execute_batch(
            "INSERT OR IGNORE INTO observations(node, id, time_ms, type, json)
                 SELECT node, id, time_ms, type, json FROM observations_v2;
             DROP TABLE observations_v2;",
        )?;
    }
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

/// Tables stored `WITHOUT ROWID` since schema version 3 (migrated at open).
const ROWLESS: [&str; 2] = ["identities", "baselines"];

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
