//! The `agents` table: one row per node agent, written by the agent stream
//! (`crate::agents`) and read by the coverage report.
//!
//! `last_seq` is the highest observation sequence number durably stored for
//! the agent's current `stream_epoch`; it is the resume point told to a
//! reconnecting agent.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension as _, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, rfc3339};

/// What an agent says about itself when its stream opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentHello {
    pub node: String,
    pub agent_version: String,
    pub kernel: String,
    pub hooks: Vec<String>,
    pub addresses: Vec<String>,
    pub stream_epoch: u64,
}

/// One row of the `agents` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRow {
    pub node: String,
    pub agent_version: String,
    pub kernel: String,
    pub hooks: Vec<String>,
    pub addresses: Vec<String>,
    pub first_seen: String,
    pub last_contact: String,
    pub last_seq: u64,
    pub stream_epoch: u64,
    /// Drop totals by stage (`ring_buffer`, `spool`, ...), from the last heartbeat.
    pub drops: BTreeMap<String, u64>,
    pub connected: bool,
}

// SQLite integers are i64: u64 values are stored by their bits.
fn to_sql(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}
fn from_sql(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

impl Store {
    /// Records a Hello (creating the row on first contact) and returns the
    /// resume point: the stored `last_seq` when the epoch is the one already
    /// stored, else 0 (a new epoch starts from scratch).
    pub async fn agent_hello(
        &self,
        hello: AgentHello,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.write(move |tx| {
            let now = rfc3339(now);
            let prev: Option<(Option<i64>, Option<i64>)> = tx
                .query_row(
                    "SELECT stream_epoch, last_seq FROM agents WHERE node = ?1",
                    [&hello.node],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let resume = match prev {
                Some((Some(epoch), Some(seq))) if from_sql(epoch) == hello.stream_epoch => {
                    from_sql(seq)
                }
                _ => 0,
            };
            tx.execute(
                "INSERT INTO agents (node, agent_version, kernel, hooks, addresses, first_seen,
                                     last_contact, last_seq, drops, connected, stream_epoch)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, '{}', 1, ?8)
                 ON CONFLICT(node) DO UPDATE SET
                     agent_version = excluded.agent_version, kernel = excluded.kernel,
                     hooks = excluded.hooks, addresses = excluded.addresses,
                     last_contact = excluded.last_contact, last_seq = excluded.last_seq,
                     connected = 1, stream_epoch = excluded.stream_epoch",
                params![
                    hello.node,
                    hello.agent_version,
                    hello.kernel,
                    serde_json::to_string(&hello.hooks)?,
                    serde_json::to_string(&hello.addresses)?,
                    now,
                    to_sql(resume),
                    to_sql(hello.stream_epoch),
                ],
            )?;
            Ok(resume)
        })
        .await
    }

    /// Records that everything up to `last_seq` of `epoch` is stored.
    pub async fn agent_stored(
        &self,
        node: &str,
        epoch: u64,
        last_seq: u64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let node = node.to_string();
        self.write(move |tx| {
            tx.execute(
                "UPDATE agents SET last_seq = ?1, last_contact = ?2
                 WHERE node = ?3 AND stream_epoch = ?4 AND last_seq < ?1",
                params![to_sql(last_seq), rfc3339(now), node, to_sql(epoch)],
            )?;
            Ok(())
        })
        .await
    }

    /// Records a heartbeat: last contact and the drop totals.
    pub async fn agent_heartbeat(
        &self,
        node: &str,
        drops: BTreeMap<String, u64>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let node = node.to_string();
        self.write(move |tx| {
            tx.execute(
                "UPDATE agents SET drops = ?1, last_contact = ?2 WHERE node = ?3",
                params![serde_json::to_string(&drops)?, rfc3339(now), node],
            )?;
            Ok(())
        })
        .await
    }

    /// Marks the agent's stream closed.
    pub async fn agent_disconnected(
        &self,
        node: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let node = node.to_string();
        self.write(move |tx| {
            tx.execute(
                "UPDATE agents SET connected = 0, last_contact = ?1 WHERE node = ?2",
                params![rfc3339(now), node],
            )?;
            Ok(())
        })
        .await
    }

    /// Counts refused claims of `node`'s agent, by reason (`count` at once),
    /// keeping the latest message (coverage shows them).
    pub async fn agent_refused(
        &self,
        node: &str,
        refusals: Vec<(&'static str, u64, String)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let node = node.to_string();
        self.write(move |tx| {
            let mut st = tx.prepare_cached(
                "INSERT INTO agent_refusals(node, reason, count, last_ms, last_message)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(node, reason) DO UPDATE SET count = count + excluded.count,
                     last_ms = excluded.last_ms, last_message = excluded.last_message",
            )?;
            for (reason, count, message) in refusals {
                st.execute(params![
                    node,
                    reason,
                    i64::try_from(count).unwrap_or(i64::MAX),
                    super::ms(now),
                    message
                ])?;
            }
            Ok(())
        })
        .await
    }

    /// Every agent ever seen, by node name.
    pub async fn agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT node, agent_version, kernel, hooks, addresses, first_seen, last_contact,
                        last_seq, stream_epoch, drops, connected
                 FROM agents ORDER BY node",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, Option<i64>>(10)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (node, version, kernel, hooks, addrs, first, last, seq, epoch, drops, conn) =
                    row?;
                out.push(AgentRow {
                    node,
                    agent_version: version.unwrap_or_default(),
                    kernel: kernel.unwrap_or_default(),
                    hooks: serde_json::from_str(hooks.as_deref().unwrap_or("[]"))?,
                    addresses: serde_json::from_str(addrs.as_deref().unwrap_or("[]"))?,
                    first_seen: first.unwrap_or_default(),
                    last_contact: last.unwrap_or_default(),
                    last_seq: seq.map(from_sql).unwrap_or(0),
                    stream_epoch: epoch.map(from_sql).unwrap_or(0),
                    drops: serde_json::from_str(drops.as_deref().unwrap_or("{}"))?,
                    connected: conn.unwrap_or(0) != 0,
                });
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(epoch: u64) -> AgentHello {
        AgentHello {
            node: "node-a".into(),
            agent_version: "0.1.0".into(),
            kernel: "6.18".into(),
            hooks: vec!["tracepoint_openat".into()],
            addresses: vec!["127.10.0.1".into()],
            stream_epoch: epoch,
        }
    }

    #[tokio::test]
    async fn resume_point_survives_within_an_epoch_and_resets_across() {
        let store = Store::open_in_memory().unwrap();
        let now = Utc::now();
        let big = u64::MAX - 3;
        assert_eq!(store.agent_hello(hello(big), now).await.unwrap(), 0);
        store.agent_stored("node-a", big, 40, now).await.unwrap();
        // An older ack never moves the mark back.
        store.agent_stored("node-a", big, 10, now).await.unwrap();
        store.agent_disconnected("node-a", now).await.unwrap();
        assert!(!store.agents().await.unwrap()[0].connected);
        assert_eq!(store.agent_hello(hello(big), now).await.unwrap(), 40);
        let drops = BTreeMap::from([("spool".to_string(), 3u64)]);
        store
            .agent_heartbeat("node-a", drops.clone(), now)
            .await
            .unwrap();
        let rows = store.agents().await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].stream_epoch, big);
        assert_eq!(rows[0].last_seq, 40);
        assert_eq!(rows[0].drops, drops);
        assert!(rows[0].connected);
        // A restarted agent (new epoch) starts from 0.
        assert_eq!(store.agent_hello(hello(7), now).await.unwrap(), 0);
        assert_eq!(store.agents().await.unwrap()[0].last_seq, 0);
    }
}
