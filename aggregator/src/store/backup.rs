//! `credtrail-aggregator backup`: a consistent copy of the database taken
//! with SQLite's `VACUUM INTO` from a read-only connection, so it runs
//! beside `serve` (WAL: the copy is one read transaction's snapshot; writers
//! carry on). The copy is checked (`PRAGMA integrity_check`) before it is
//! reported, and is written with mode 0600 (it holds identities and
//! addresses, never secrets). Restore: docs/OPERATIONS.md.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}: no such database")]
    Missing(PathBuf),
    #[error("{0} exists; refusing to overwrite it")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Sql {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the copy {path} fails its integrity check: {detail}")]
    Integrity { path: PathBuf, detail: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a backup copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub bytes: u64,
    pub schema_version: Option<String>,
    pub alerts: i64,
}

impl fmt::Display for BackupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backup: {} bytes, schema version {}, {} alerts, integrity ok",
            self.bytes,
            self.schema_version.as_deref().unwrap_or("none"),
            self.alerts
        )
    }
}

fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> BackupError + '_ {
    move |source| BackupError::Sql {
        path: path.to_path_buf(),
        source,
    }
}

fn open_read_only(path: &Path) -> Result<Connection, BackupError> {
    if !path.is_file() {
        return Err(BackupError::Missing(path.to_path_buf()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql(path))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(sql(path))?;
    Ok(conn)
}

/// Copies `db` to `dest` (which must not exist) and checks the copy.
pub fn to_file(db: &Path, dest: &Path) -> Result<BackupReport, BackupError> {
    if dest.exists() {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    let src = open_read_only(db)?;
    let dest_str = dest.to_str().ok_or_else(|| BackupError::Io {
        what: format!("{}", dest.display()),
        source: std::io::Error::other("the destination path is not UTF-8"),
    })?;
    src.execute("VACUUM INTO ?1", [dest_str]).map_err(sql(db))?;
    drop(src);
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        BackupError::Io {
            what: format!("chmod {}", dest.display()),
            source,
        }
    })?;
    verify(dest)
}

/// Checks a copy: integrity, schema version, alert count.
pub fn verify(copy: &Path) -> Result<BackupReport, BackupError> {
    let conn = open_read_only(copy)?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(sql(copy))?;
    if check != "ok" {
        return Err(BackupError::Integrity {
            path: copy.to_path_buf(),
            detail: check.chars().take(200).collect(),
        });
    }
    let schema_version = super::version::stored(&conn).map_err(|e| BackupError::Integrity {
        path: copy.to_path_buf(),
        detail: e.to_string(),
    })?;
    let alerts: i64 = conn
        .query_row("SELECT count(*) FROM alerts", [], |r| r.get(0))
        .unwrap_or(0);
    let bytes = std::fs::metadata(copy)
        .map_err(|source| BackupError::Io {
            what: format!("{}", copy.display()),
            source,
        })?
        .len();
    Ok(BackupReport {
        bytes,
        schema_version,
        alerts,
    })
}

/// Copies `db` into a temporary file beside it, checks it, streams it to
/// `out` and deletes it (also on failure).
pub fn to_writer(db: &Path, out: &mut dyn Write) -> Result<BackupReport, BackupError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        ".{}.backup-{}-{nanos}",
        db.file_name().and_then(|n| n.to_str()).unwrap_or("db"),
        std::process::id()
    );
    let tmp = db.with_file_name(name);
    struct Remove<'a>(&'a Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _guard = Remove(&tmp);
    let report = to_file(db, &tmp)?;
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| BackupError::Io { what, source }
    };
    let mut f = std::fs::File::open(&tmp).map_err(io("reading the copy"))?;
    std::io::copy(&mut f, out).map_err(io("writing the copy"))?;
    out.flush().map_err(io("writing the copy"))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::{Store, Synchronous};
    use super::*;

    fn meta(path: &Path, key: &str) -> Option<String> {
        let c = Connection::open(path).unwrap();
        c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .ok()
    }

    #[test]
    fn backup_copies_committed_data_beside_an_open_writer() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("live.db");
        let store = Store::open(&db, Synchronous::Full).unwrap();
        store
            .write_blocking(|tx| {
                tx.execute(
                    "INSERT INTO meta(key, value) VALUES ('committed', 'yes')",
                    [],
                )?;
                Ok(())
            })
            .unwrap();
        // A writer mid-transaction (as serve mid-batch): its rows are not in the copy,
        // and the backup neither waits for it nor blocks it.
        let mut w = Connection::open(&db).unwrap();
        let tx = w.transaction().unwrap();
        tx.execute("INSERT INTO meta(key, value) VALUES ('pending', 'no')", [])
            .unwrap();
        let dest = dir.path().join("copy.db");
        let report = to_file(&db, &dest).unwrap();
        tx.commit().unwrap();
        assert_eq!(
            report.schema_version.as_deref(),
            Some(super::super::SCHEMA_VERSION)
        );
        assert!(report.bytes > 0);
        assert_eq!(meta(&dest, "committed").as_deref(), Some("yes"));
        assert_eq!(meta(&dest, "pending"), None);
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The copy opens as a store.
        drop(Store::open(&dest, Synchronous::Full).unwrap());

        // Never overwrites; never creates a database that was not there.
        assert!(matches!(to_file(&db, &dest), Err(BackupError::Exists(_))));
        let missing = dir.path().join("nope.db");
        assert!(matches!(
            to_file(&missing, &dir.path().join("x.db")),
            Err(BackupError::Missing(_))
        ));
        assert!(!missing.exists());
        drop(store);
    }

    #[test]
    fn backup_to_a_stream_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("live.db");
        drop(Store::open(&db, Synchronous::Full).unwrap());
        let mut bytes = Vec::new();
        let report = to_writer(&db, &mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, report.bytes);
        assert!(bytes.starts_with(b"SQLite format 3\0"));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("backup"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
        // A failing writer fails the backup, and still cleans up.
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let err = to_writer(&db, &mut Broken).unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1 + extra_files(dir.path())
        );
    }

    /// WAL side files SQLite may keep beside the database.
    fn extra_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                let n = n.to_string_lossy();
                n.ends_with("-wal") || n.ends_with("-shm")
            })
            .count()
    }
}
