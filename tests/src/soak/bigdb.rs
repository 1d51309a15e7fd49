//! A large aggregator database, written directly (`credtrail-soak make-db`),
//! for measuring start-up on it (`credtrail-soak restart`).
//!
//! It holds what the aggregator's own pipeline writes for the soak's traffic
//! shape ([`super::traffic`]) at 3,000 events/s, scaled to `events`: one
//! dedupe record per event (compact keys, as `store/ingest.rs` writes them),
//! one batch row per 300 events, the identities (200 stable service accounts,
//! 50 kubelets, a CI job per 30 churned events) with one baseline address
//! each, one credential-use row per bound token (1,000 pods' tokens rotated
//! hourly, one per CI job), a RoleBinding per 2,000 events, and a coverage
//! row. SQLite's recursive CTEs generate the rows, so ten million events take
//! about a minute.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use rusqlite::Connection;

/// Rows written, by table.
#[derive(Debug, Default)]
pub struct Made {
    pub events: u64,
    pub identities: u64,
    pub credential_uses: u64,
    pub bindings: u64,
    pub seconds: f64,
}

/// Writes a database of `events` audit events at `path` (created fresh).
pub fn make(path: &Path, events: u64) -> anyhow::Result<Made> {
    let t = Instant::now();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    // The aggregator creates its schema.
    drop(credtrail_aggregator::store::Store::open(
        path,
        credtrail_aggregator::store::Synchronous::Normal,
    )?);
    let c = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    c.pragma_update(None, "journal_mode", "DELETE")?;
    c.pragma_update(None, "synchronous", "OFF")?;
    let eps = 3000u64;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let span_ms = i64::try_from(events * 1000 / eps).unwrap_or(i64::MAX);
    let t0 = now_ms - span_ms;
    let jobs = events / 10 / 30;
    let hours = (events / eps / 3600) + 1;
    let bindings = events / 2000;
    let chunk = 300 * 3334u64; // whole batches per transaction
    let mut done = 0u64;
    while done < events {
        let n = chunk.min(events - done);
        let tx = c.unchecked_transaction()?;
        tx.execute(
            "WITH RECURSIVE b(i) AS (SELECT ?1 UNION ALL SELECT i + 300 FROM b WHERE i + 300 < ?1 + ?2)
             INSERT INTO audit_batches(id, source, received_ms, events, accepted, duplicates)
             SELECT i / 300 + 1, 'webhook', ?3 + i * 1000 / ?4 + 5, 300, 300, 0 FROM b",
            rusqlite::params![done, n, t0, eps],
        )?;
        tx.execute(
            "WITH RECURSIVE e(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM e WHERE i + 1 < ?1 + ?2)
             INSERT INTO audit_events(time_ms, audit_id, stage, batch_id)
             SELECT ?3 + i * 1000 / ?4, randomblob(16), 'C', i / 300 + 1 FROM e",
            rusqlite::params![done, n, t0, eps],
        )?;
        tx.commit()?;
        done += n;
        eprintln!("make-db: {done} events");
    }
    let uuid = "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-a' || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))";
    let tx = c.unchecked_transaction()?;
    // Identities: stable service accounts, kubelets, CI jobs.
    tx.execute_batch(&format!(
        "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < 200)
         INSERT INTO identities SELECT printf('system:serviceaccount:team-%03d:app-%04d', i % 40, i), {t0}, {now_ms} FROM s;
         WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < 50)
         INSERT INTO identities SELECT printf('system:node:node-%04d', i), {t0}, {now_ms} FROM s;
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i + 1 <= {jobs})
         INSERT INTO identities SELECT printf('system:serviceaccount:ci-%05d:job-%d', i % 10000, i),
             {t0} + i * {span_ms} / max({jobs}, 1), {t0} + i * {span_ms} / max({jobs}, 1) + 60000 FROM s;
         INSERT INTO baselines SELECT username, printf('10.%d.%d.%d', 64 + abs(random() % 4), abs(random() % 256), abs(random() % 250) + 2),
             first_seen_ms, last_seen_ms, 30, 0 FROM identities;"
    ))?;
    // Credential uses: one row per bound token and source.
    tx.execute_batch(&format!(
        "WITH RECURSIVE p(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM p WHERE i + 1 < 1000 * {hours})
         INSERT INTO credential_uses SELECT 'JTI=' || {uuid},
             printf('system:serviceaccount:team-%03d:app-%04d', (i % 1000 / 5) % 40, i % 1000 / 5),
             printf('10.%d.%d.%d', 64 + (i % 1000 % 50) / 256, (i % 1000) % 50, (i % 1000) % 250 + 2), 'unknown', NULL,
             {t0} + (i / 1000) * 3600000, {t0} + (i / 1000) * 3600000 + 3599000, 2000, {uuid} FROM p;
         INSERT INTO credential_uses SELECT 'JTI=' || {uuid}, i.username, b.source_ip, 'unknown', NULL,
             i.first_seen_ms, i.last_seen_ms, 30, {uuid}
             FROM identities i JOIN baselines b ON b.username = i.username WHERE i.username LIKE 'system:serviceaccount:ci-%';
         INSERT INTO credential_uses SELECT printf('X509SHA256=%064x', rowid), username, source_ip, 'unknown', NULL,
             first_seen_ms, last_seen_ms, 100000, {uuid} FROM baselines WHERE username LIKE 'system:node:%';
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i + 1 <= {bindings})
         INSERT INTO bindings SELECT 'RoleBinding', printf('team-%03d', i % 40), printf('soak-%d', i), 'ClusterRole', 'view',
             printf('[{{\"kind\":\"ServiceAccount\",\"name\":\"app-%04d\",\"namespace\":\"team-%03d\"}}]', i % 200, i % 40), 0,
             'create', 'system:serviceaccount:argocd:argocd-application-controller', '10.244.250.10', {uuid},
             {t0} + i * {span_ms} / max({bindings}, 1), 0 FROM s;
         INSERT INTO coverage_audit_sources VALUES ('webhook', {now_ms}, {now_ms}, {events}, 0);
         INSERT OR REPLACE INTO meta VALUES ('audit_keys_compact_since', '{min}');",
        min = i64::MIN
    ))?;
    tx.commit()?;
    let count = |t: &str| -> anyhow::Result<u64> {
        Ok(c.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| {
            r.get::<_, i64>(0)
        })? as u64)
    };
    Ok(Made {
        events: count("audit_events")?,
        identities: count("identities")?,
        credential_uses: count("credential_uses")?,
        bindings: count("bindings")?,
        seconds: t.elapsed().as_secs_f64(),
    })
}
