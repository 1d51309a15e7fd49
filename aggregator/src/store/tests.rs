//! The dedupe record (`audit_events`) and the schema migration.

use std::sync::Arc;

use chrono::Utc;
use rusqlite::Connection;

use super::{SCHEMA_VERSION, Store, Synchronous, insert_audit_events, prune};
use crate::audit::{AuditEvent, parse_event};

fn event(id: &str, stage: &str, time: &str) -> AuditEvent {
    parse_event(
        format!(
            r#"{{"level":"Metadata","auditID":"{id}","stage":"{stage}","verb":"get",
                "user":{{"username":"alice"}},"requestReceivedTimestamp":"{time}"}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

/// Per event of one batch: stored for the first time?
fn fresh(store: &Store, events: &[AuditEvent]) -> Vec<bool> {
    store
        .write_blocking(|tx| Ok(insert_audit_events(tx, "test", Utc::now(), events)?.1))
        .unwrap()
}

#[test]
fn a_resent_event_is_a_duplicate_within_and_across_batches() {
    let store = Store::open_in_memory().unwrap();
    let a = event("a", "ResponseComplete", "2026-03-01T10:00:00.123456Z");
    let a_started = event("a", "ResponseStarted", "2026-03-01T10:00:00.123456Z");
    let b = event("b", "ResponseComplete", "2026-03-01T10:00:00.123456Z");
    assert_eq!(
        fresh(&store, &[a.clone(), a_started.clone(), a.clone()]),
        [true, true, false]
    );
    assert_eq!(fresh(&store, &[b, a, a_started]), [true, false, false]);
    let stored: i64 = store
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(stored, 3);
}

#[test]
fn an_audit_id_reused_by_another_request_at_another_time_is_kept() {
    // Clients may set the Audit-ID header; a second request reusing an ID
    // must not be dropped as a "duplicate" of the first.
    let store = Store::open_in_memory().unwrap();
    let first = event(
        "chosen-by-client",
        "ResponseComplete",
        "2026-03-01T10:00:00Z",
    );
    let later = event(
        "chosen-by-client",
        "ResponseComplete",
        "2026-03-01T11:30:00Z",
    );
    assert_eq!(fresh(&store, std::slice::from_ref(&first)), [true]);
    assert_eq!(fresh(&store, &[later, first]), [true, false]);
}

#[test]
fn retention_deletes_the_events_older_than_the_cut_only() {
    let store = Store::open_in_memory().unwrap();
    fresh(
        &store,
        &[
            event("old", "ResponseComplete", "2026-01-01T00:00:00Z"),
            event("new", "ResponseComplete", "2026-03-01T00:00:00Z"),
        ],
    );
    let now = "2026-03-02T00:00:00Z".parse().unwrap();
    let pruned = store
        .write_blocking(|tx| prune(tx, now, chrono::Duration::days(30)))
        .unwrap();
    assert_eq!(pruned.audit_events, 1);
    // The kept one still dedupes; the pruned one is forgotten.
    assert_eq!(
        fresh(
            &store,
            &[
                event("new", "ResponseComplete", "2026-03-01T00:00:00Z"),
                event("old", "ResponseComplete", "2026-01-01T00:00:00Z"),
            ]
        ),
        [false, true]
    );
}

#[test]
fn a_version_1_database_is_migrated_keeping_its_dedupe_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let t = chrono::DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
        .unwrap()
        .timestamp_millis();
    {
        // The version-1 layout: a wide per-event summary keyed by auditID.
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO meta VALUES ('schema_version', '1');
             CREATE TABLE audit_events (audit_id TEXT NOT NULL, stage TEXT NOT NULL,
                 batch_id INTEGER NOT NULL, time_ms INTEGER NOT NULL, level TEXT NOT NULL,
                 verb TEXT NOT NULL, username TEXT NOT NULL, source_ip TEXT, api_group TEXT,
                 resource TEXT, subresource TEXT, namespace TEXT, name TEXT, code INTEGER,
                 credential_id TEXT, PRIMARY KEY (audit_id, stage)) WITHOUT ROWID;
             CREATE INDEX audit_events_time ON audit_events(time_ms);
             CREATE INDEX audit_events_user ON audit_events(username, time_ms);",
        )
        .unwrap();
        c.execute(
            "INSERT INTO audit_events VALUES ('a', 'ResponseComplete', 7, ?1, 'Metadata', 'get',
                 'alice', NULL, NULL, NULL, NULL, NULL, NULL, 200, NULL)",
            [t],
        )
        .unwrap();
    }
    let store = Store::open(&path, Synchronous::Full).unwrap();
    let (version, columns, row): (String, String, (i64, String, String, i64)) = store
        .read_blocking(|c| {
            Ok((
                c.query_row(
                    "SELECT value FROM meta WHERE key = 'schema_version'",
                    [],
                    |r| r.get(0),
                )?,
                c.query_row(
                    "SELECT group_concat(name, ',') FROM pragma_table_info('audit_events')",
                    [],
                    |r| r.get(0),
                )?,
                c.query_row(
                    "SELECT time_ms, audit_id, stage, batch_id FROM audit_events",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )?,
            ))
        })
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(columns, "time_ms,audit_id,stage,batch_id");
    assert_eq!(row, (t, "a".into(), "ResponseComplete".into(), 7));
    // The migrated key still dedupes the resent event.
    assert_eq!(
        fresh(
            &store,
            &[event("a", "ResponseComplete", "2026-03-01T10:00:00Z")]
        ),
        [false]
    );
    drop(store);
    // Opening again is a no-op.
    let store = Store::open(&path, Synchronous::Full).unwrap();
    assert_eq!(
        fresh(
            &store,
            &[event("a", "ResponseComplete", "2026-03-01T10:00:00Z")]
        ),
        [false]
    );
}

#[test]
fn a_version_2_database_gets_node_keyed_observations_and_the_alert_node_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.db");
    {
        // Today's schema, then the version-2 parts put back: observations
        // keyed by id alone, no alert_nodes.
        let c = Connection::open(&path).unwrap();
        c.execute_batch(super::SCHEMA).unwrap();
        c.execute_batch(
            "DROP TRIGGER alert_nodes_follow;
             DROP TABLE alert_nodes;
             DROP TABLE observations;
             CREATE TABLE observations (id TEXT PRIMARY KEY, node TEXT NOT NULL,
                 time_ms INTEGER NOT NULL, type TEXT NOT NULL, json TEXT NOT NULL);
             CREATE INDEX observations_time ON observations(time_ms);
             CREATE INDEX observations_node ON observations(node, time_ms);
             INSERT INTO observations VALUES ('node-a/b/1', 'node-a', 5, 'loss', '{}');
             INSERT INTO alerts(id, time, time_ms, rule, analytic, severity, severity_rank,
                 username, source_class, node, created_ms, json)
             VALUES ('al-1', 't', 1, 'CT1547-001', 'AN1547', 'high', 3, 'u', 'other_node',
                 'node-c', 1,
                 '{\"evidence\":[{\"node\":\"node-e\"}],\"expected\":[{\"kind\":\"node\",\"value\":\"node-x\"},{\"kind\":\"pod\",\"value\":\"ns/p\"}]}');
             UPDATE meta SET value = '2' WHERE key = 'schema_version';",
        )
        .unwrap();
    }
    let store = Store::open(&path, Synchronous::Full).unwrap();
    let (pk, obs, nodes, version) = store
        .read_blocking(|c| {
            let pk: String = c.query_row(
                "SELECT group_concat(name, ',') FROM
                    (SELECT name FROM pragma_table_info('observations') WHERE pk > 0 ORDER BY pk)",
                [],
                |r| r.get(0),
            )?;
            let obs: (String, String) =
                c.query_row("SELECT node, id FROM observations", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            let nodes: String = c.query_row(
                "SELECT group_concat(node, ',') FROM (SELECT node FROM alert_nodes ORDER BY node)",
                [],
                |r| r.get(0),
            )?;
            let v: String = c.query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )?;
            Ok((pk, obs, nodes, v))
        })
        .unwrap();
    assert_eq!(pk, "node,id");
    assert_eq!(obs, ("node-a".to_owned(), "node-a/b/1".to_owned()));
    assert_eq!(nodes, "node-c,node-e,node-x");
    assert_eq!(version, SCHEMA_VERSION);
    // Deleting an alert (retention) takes its node rows along.
    store
        .write_blocking(|tx| Ok(tx.execute("DELETE FROM alerts", [])?))
        .unwrap();
    let left: i64 = store
        .read_blocking(|c| Ok(c.query_row("SELECT count(*) FROM alert_nodes", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn uuid_audit_ids_are_stored_as_16_bytes_and_still_deduplicate() {
    let store = Store::open_in_memory().unwrap();
    let id = "5b2c6a3e-8f0d-4f7a-9c51-0e4d2a7b9f13";
    let t = "2026-03-01T10:00:00Z";
    let upper = id.to_uppercase();
    let evs = [
        event(id, "ResponseComplete", t),
        event(&upper, "ResponseComplete", t), // not canonical: kept as its text
        event("not-a-uuid", "ResponseComplete", t),
    ];
    assert_eq!(fresh(&store, &evs), [true, true, true]);
    assert_eq!(fresh(&store, &evs), [false, false, false]);
    let rows: Vec<(String, i64, String)> = store
        .read_blocking(|c| {
            let mut st = c.prepare(
                "SELECT typeof(audit_id), length(audit_id), stage FROM audit_events ORDER BY 1, 2",
            )?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .unwrap();
    assert_eq!(
        rows,
        [
            ("blob".to_owned(), 16, "C".to_owned()),
            ("text".to_owned(), 10, "C".to_owned()),
            ("text".to_owned(), 36, "C".to_owned()),
        ]
    );
    // The bytes are the UUID's: nothing of the ID is lost.
    let bytes: Vec<u8> = store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT audit_id FROM audit_events WHERE typeof(audit_id) = 'blob'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(uuid::Uuid::from_slice(&bytes).unwrap().to_string(), id);
}

#[test]
fn retention_forgets_idle_identities_with_their_baselines_and_keeps_live_ones() {
    let store = Store::open_in_memory().unwrap();
    let day = 86_400_000i64;
    let now: chrono::DateTime<Utc> = "2026-03-02T00:00:00Z".parse().unwrap();
    let n = now.timestamp_millis();
    store
        .write_blocking(|tx| {
            // idle: last seen 40 days ago; live: first seen long ago, seen today,
            // its baseline row not refreshed since (baselines are written once).
            tx.execute_batch(&format!(
                "INSERT INTO identities VALUES ('idle', {a}, {a}), ('live', {a}, {n});
                 INSERT INTO baselines VALUES ('idle', '10.0.0.1', {a}, {a}, 1, 1),
                                              ('live', '10.0.0.2', {a}, {a}, 1, 1);
                 INSERT INTO bindings VALUES ('RoleBinding', 'ns', 'gone', NULL, NULL, '[]', 0, 'delete',
                     'admin', NULL, 'x', {a}, 1);",
                a = n - 40 * day
            ))?;
            Ok(())
        })
        .unwrap();
    let pruned = store
        .write_blocking(|tx| prune(tx, now, chrono::Duration::days(30)))
        .unwrap();
    assert_eq!(
        (pruned.identities, pruned.baselines, pruned.deleted_rbac),
        (1, 1, 1)
    );
    let left: String = store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT group_concat(username) FROM (SELECT username FROM identities
                     UNION ALL SELECT username FROM baselines)",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(left, "live,live");
}

/// Commits do not checkpoint (the writer's automatic checkpoint is off); the
/// checkpoint thread copies the WAL into the database file within a few
/// intervals, and what was committed is there after a reopen.
#[test]
fn the_wal_is_checkpointed_off_the_commit_path_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = Store::open(&path, Synchronous::Full).unwrap();
    let auto: i64 = store
        .write_blocking(|tx| Ok(tx.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))?))
        .unwrap();
    assert_eq!(auto, 0, "the writer must not checkpoint inside a commit");
    let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let before = size();
    for b in 0..20 {
        let evs: Vec<AuditEvent> = (0..200)
            .map(|i| {
                event(
                    &format!("e{b}-{i}"),
                    "ResponseComplete",
                    "2026-03-01T10:00:00Z",
                )
            })
            .collect();
        fresh(&store, &evs);
    }
    let deadline = std::time::Instant::now() + super::checkpoint::INTERVAL * 8;
    while size() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file did not grow: no checkpoint ran within {:?}",
            super::checkpoint::INTERVAL * 8
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    drop(store);
    let c = Connection::open(&path).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 4000);
}

/// Identities and baselines of a database written before they were `WITHOUT
/// ROWID` are moved into the new tables at open, every row kept.
#[test]
fn rowid_identity_tables_are_migrated_keeping_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE identities (username TEXT PRIMARY KEY, first_seen_ms INTEGER NOT NULL,
                 last_seen_ms INTEGER NOT NULL);
             CREATE TABLE baselines (username TEXT NOT NULL, source_ip TEXT NOT NULL,
                 first_seen_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,
                 count INTEGER NOT NULL, learned INTEGER NOT NULL,
                 PRIMARY KEY (username, source_ip));
             INSERT INTO identities VALUES ('alice', 1, 2), ('bob', 3, 4);
             INSERT INTO baselines VALUES ('alice', '10.0.0.1', 1, 2, 5, 1),
                 ('alice', '10.0.0.2', 1, 2, 1, 0), ('bob', '10.0.0.3', 3, 4, 2, 1);",
        )
        .unwrap();
    }
    let store = Store::open(&path, Synchronous::Full).unwrap();
    let (ids, bls, rowless): (i64, i64, i64) = store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT (SELECT count(*) FROM identities), (SELECT count(*) FROM baselines),
                   (SELECT count(*) FROM sqlite_master WHERE name IN ('identities', 'baselines')
                      AND sql LIKE '%WITHOUT ROWID%')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?)
        })
        .unwrap();
    assert_eq!((ids, bls, rowless), (2, 3, 2));
    let learned: i64 = store
        .read_blocking(|c| {
            Ok(c.query_row(
                "SELECT learned FROM baselines WHERE username = 'alice' AND source_ip = '10.0.0.2'",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(learned, 0);
    drop(store);
    // Opening again migrates nothing more.
    drop(Store::open(&path, Synchronous::Full).unwrap());
}

/// Concurrent writes share transactions (group commit); one that fails is
/// rolled back alone and gets its error, the others are committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_is_rolled_back_alone_in_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("g.db"), Synchronous::Full).unwrap();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.write(move |tx| {
                let ev = event(&format!("g{i}"), "ResponseComplete", "2026-03-01T10:00:00Z");
                insert_audit_events(tx, "test", Utc::now(), &[ev])?;
                if i % 5 == 0 {
                    return Err(super::StoreError::Task(format!("job {i} fails")));
                }
                Ok(i)
            })
            .await
        }));
    }
    let mut ok = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(v) => {
                assert_eq!(v, i);
                ok += 1;
            }
            Err(e) => {
                assert_eq!(i % 5, 0, "job {i} failed: {e}");
                assert!(e.to_string().contains(&format!("job {i} fails")));
            }
        }
    }
    assert_eq!(ok, 48);
    let (rows, batches): (i64, i64) = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT (SELECT count(*) FROM audit_events), (SELECT count(*) FROM audit_batches)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(
        (rows, batches),
        (48, 48),
        "the failed jobs' rows are rolled back"
    );
}

/// Under writes with no pause between them (four threads keep the writer's
/// queue full), the WAL still starts over: the writer finishes the
/// checkpoint once the WAL is long, so the file stays small instead of
/// growing with everything written (11.7 GB in 90 s of the scale bench
/// before), also after a long query held old frames. Each rewind changes
/// the WAL header's salt (bytes 16..20).
#[test]
fn the_wal_starts_over_under_writes_without_a_pause() {
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let wal = dir.path().join("w.db-wal");
    let store = Store::open_restarting_at(
        &path,
        Synchronous::Normal,
        super::StoreOptions::default(),
        64,
    )
    .unwrap();
    let (stop, written) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicI64::new(0)),
    );
    let writers: Vec<_> =
        (0..4)
            .map(|w| {
                let (store, stop, written) = (store.clone(), stop.clone(), written.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    let mut b = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let evs: Vec<AuditEvent> = (0..50)
                            .map(|i| {
                                event(
                                    &format!("w{w}-{b}-{i}"),
                                    "ResponseComplete",
                                    "2026-03-01T10:00:00Z",
                                )
                            })
                            .collect();
                        // Through the writer thread, as the webhook and the
                        // agents write.
                        rt.block_on(store.write(move |tx| {
                            Ok(insert_audit_events(tx, "test", Utc::now(), &evs)?.1)
                        }))
                        .unwrap();
                        written.fetch_add(50, Ordering::Relaxed);
                        b += 1;
                    }
                })
            })
            .collect();
    let salt = || {
        std::fs::read(&wal)
            .ok()
            .and_then(|b| b.get(16..20).map(<[u8]>::to_vec))
    };
    // A long query first (an API client's, up to the query timeout): it
    // pins old frames, so no pass can finish while it reads; once it ends
    // the WAL must still start over.
    let reader = Connection::open(&path).unwrap();
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM audit_events;")
        .unwrap();
    std::thread::sleep(super::checkpoint::INTERVAL * 3);
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    let (mut rewinds, mut last) = (0, None);
    let deadline = std::time::Instant::now() + super::checkpoint::INTERVAL * 30;
    while rewinds < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let now = salt();
        if now.is_some() && last.is_some() && now != last {
            rewinds += 1;
        }
        last = now.or(last);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let total = written.load(Ordering::Relaxed);
    assert!(
        rewinds >= 3,
        "the WAL started over {rewinds} times while {total} events were written"
    );
    drop(store);
    let n: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, total, "every write is there after the rewinds");
}
