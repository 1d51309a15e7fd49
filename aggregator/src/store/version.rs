//! The schema-version guard: a binary never opens a database written by a
//! newer one (whose tables it would misread or "migrate" into damage). An
//! older database is migrated in place by `apply_schema`; a newer one is
//! refused with both versions named, before anything is written.

use rusqlite::{Connection, OptionalExtension as _};

use super::{SCHEMA_VERSION, StoreError};

/// The version recorded in `meta`, `None` for a new (empty) database.
pub(super) fn stored(conn: &Connection) -> Result<Option<String>, StoreError> {
    let has_meta: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
        [],
        |r| r.get(0),
    )?;
    if !has_meta {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()?)
}

/// Refuses a database whose schema is newer than [`SCHEMA_VERSION`] (or not
/// a version number at all).
pub(super) fn check(conn: &Connection) -> Result<(), StoreError> {
    let Some(found) = stored(conn)? else {
        return Ok(());
    };
    let known: u32 = SCHEMA_VERSION.parse().expect("SCHEMA_VERSION is a number");
    match found.trim().parse::<u32>() {
        Ok(v) if v <= known => Ok(()),
        _ => Err(StoreError::NewerSchema {
            found: found.chars().take(32).collect(),
            known: SCHEMA_VERSION,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Store, Synchronous};
    use super::*;

    fn set_version(path: &std::path::Path, v: &str) {
        let c = Connection::open(path).unwrap();
        c.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [v],
        )
        .unwrap();
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        drop(Store::open(&db, Synchronous::Full).unwrap());
        // Same version and older ones open.
        drop(Store::open(&db, Synchronous::Full).unwrap());
        set_version(&db, "1");
        drop(Store::open(&db, Synchronous::Full).unwrap());
        let c = Connection::open(&db).unwrap();
        assert_eq!(stored(&c).unwrap().as_deref(), Some(SCHEMA_VERSION));
        drop(c);

        let newer = (SCHEMA_VERSION.parse::<u32>().unwrap() + 1).to_string();
        for v in [newer.as_str(), "999999999999", "3-beta", ""] {
            set_version(&db, v);
            let err = Store::open(&db, Synchronous::Full).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, StoreError::NewerSchema { .. }), "{v}: {msg}");
            assert!(
                msg.contains(SCHEMA_VERSION) && msg.contains("newer"),
                "{msg}"
            );
            // Nothing was rewritten: the stored version is still the newer one.
            let c = Connection::open(&db).unwrap();
            assert_eq!(stored(&c).unwrap().as_deref(), Some(v));
        }
        // A hostile, long version string is cut in the message.
        set_version(&db, &"9".repeat(5000));
        let msg = Store::open(&db, Synchronous::Full).unwrap_err().to_string();
        assert!(msg.len() < 400, "{msg}");
    }
}
