//! Suppressions as the API sees them: list (policy and API ones), create and
//! delete (API ones only; policy ones change in the policy file).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _};
use serde::Serialize;

use super::filter::FilterError;
use super::{QueryError, json_column, ms_to_time};
use crate::policy::SuppressionMatch;

/// A suppression as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuppressionEntry {
    pub id: String,
    pub owner: String,
    pub reason: String,
    pub created: String,
    pub expires: String,
    #[serde(rename = "match")]
    pub matcher: SuppressionMatch,
    /// `policy` or `api`.
    pub origin: String,
    /// Alerts it suppressed.
    pub hits: u64,
    pub last_hit: Option<DateTime<Utc>>,
    /// Not yet expired at the time of the answer.
    pub active: bool,
}

/// A request to create a suppression.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSuppression {
    pub owner: String,
    pub reason: String,
    pub expires: DateTime<Utc>,
    pub matcher: SuppressionMatch,
}

impl NewSuppression {
    /// Owner, reason, a future expiry and at least one matcher are required;
    /// a CIDR must parse.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), FilterError> {
        if self.owner.trim().is_empty() {
            return Err(FilterError::new("owner", "required"));
        }
        if self.reason.trim().is_empty() {
            return Err(FilterError::new("reason", "required"));
        }
        if self.expires <= now {
            return Err(FilterError::new(
                "expires",
                format!("{} is not in the future", self.expires),
            ));
        }
        let m = &self.matcher;
        if [
            &m.rule,
            &m.analytic,
            &m.username,
            &m.credential_id,
            &m.source_cidr,
            &m.namespace,
            &m.node,
        ]
        .iter()
        .all(|f| f.as_deref().is_none_or(str::is_empty))
        {
            return Err(FilterError::new(
                "match",
                "at least one of rule, analytic, username, credential_id, source_cidr, namespace, node is required",
            ));
        }
        if let Some(c) = &m.source_cidr {
            c.parse::<ipnet::IpNet>()
                .map_err(|e| FilterError::new("source_cidr", format!("{c:?}: {e}")))?;
        }
        Ok(())
    }
}

/// Suppressions, newest first; expired ones only when asked.
pub fn list_suppressions(
    conn: &Connection,
    now: DateTime<Utc>,
    include_expired: bool,
) -> Result<Vec<SuppressionEntry>, QueryError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, owner, reason, created, expires, expires_ms, matcher, origin, hits, last_hit_ms \
         FROM suppressions WHERE (?1 != 0 OR expires_ms > ?2) ORDER BY created DESC, id",
    )?;
    let mut rows = stmt.query(rusqlite::params![
        i64::from(include_expired),
        now.timestamp_millis()
    ])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        let matcher: String = r.get(6)?;
        let expires_ms: i64 = r.get(5)?;
        out.push(SuppressionEntry {
            owner: r.get(1)?,
            reason: r.get(2)?,
            created: r.get(3)?,
            expires: r.get(4)?,
            matcher: json_column("suppression matcher", &id, Some(&matcher))?.unwrap_or_default(),
            origin: r.get(7)?,
            hits: u64::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
            last_hit: r.get::<_, Option<i64>>(9)?.map(ms_to_time),
            active: expires_ms > now.timestamp_millis(),
            id,
        });
    }
    Ok(out)
}

/// Inserts an API suppression (validated by the caller) and returns it.
pub fn create_suppression(
    conn: &Connection,
    now: DateTime<Utc>,
    new: &NewSuppression,
) -> Result<SuppressionEntry, QueryError> {
    let id = format!("api-{}", uuid::Uuid::new_v4());
    let created = crate::store::rfc3339(now);
    let expires = crate::store::rfc3339(new.expires);
    let matcher = serde_json::to_string(&new.matcher).map_err(|e| QueryError::Corrupt {
        what: "suppression matcher",
        key: id.clone(),
        message: e.to_string(),
    })?;
    conn.execute(
        "INSERT INTO suppressions (id, owner, reason, created, expires, expires_ms, matcher, origin) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'api')",
        rusqlite::params![
            id,
            new.owner,
            new.reason,
            created,
            expires,
            new.expires.timestamp_millis(),
            matcher
        ],
    )?;
    Ok(SuppressionEntry {
        id,
        owner: new.owner.clone(),
        reason: new.reason.clone(),
        created,
        expires,
        matcher: new.matcher.clone(),
        origin: "api".into(),
        hits: 0,
        last_hit: None,
        active: true,
    })
}

/// Outcome of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Yes,
    NotFound,
    /// From the policy file: change it there.
    PolicyOwned,
}

/// Deletes an API suppression.
pub fn delete_suppression(conn: &Connection, id: &str) -> Result<Deleted, QueryError> {
    let origin: Option<String> = conn
        .query_row("SELECT origin FROM suppressions WHERE id = ?", [id], |r| {
            r.get(0)
        })
        .optional()?;
    match origin.as_deref() {
        None => Ok(Deleted::NotFound),
        Some("api") => {
            conn.execute("DELETE FROM suppressions WHERE id = ?", [id])?;
            Ok(Deleted::Yes)
        }
        Some(_) => Ok(Deleted::PolicyOwned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(m: SuppressionMatch) -> NewSuppression {
        NewSuppression {
            owner: "soc".into(),
            reason: "drill".into(),
            expires: DateTime::from_timestamp(2_000_000_000, 0).unwrap(),
            matcher: m,
        }
    }

    #[test]
    fn validation_names_the_missing_or_bad_field() {
        let now = DateTime::from_timestamp(1_000_000_000, 0).unwrap();
        let ok = new(SuppressionMatch {
            username: Some("eve".into()),
            ..Default::default()
        });
        assert!(ok.validate(now).is_ok());
        assert_eq!(
            new(SuppressionMatch::default())
                .validate(now)
                .unwrap_err()
                .field,
            "match"
        );
        let mut e = ok.clone();
        e.owner = " ".into();
        assert_eq!(e.validate(now).unwrap_err().field, "owner");
        let mut e = ok.clone();
        e.expires = now;
        assert_eq!(e.validate(now).unwrap_err().field, "expires");
        let bad_cidr = new(SuppressionMatch {
            source_cidr: Some("10.0.0.0/40".into()),
            ..Default::default()
        });
        assert_eq!(bad_cidr.validate(now).unwrap_err().field, "source_cidr");
    }

    #[test]
    fn api_suppressions_round_trip_and_policy_ones_are_kept() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(crate::store::SCHEMA).unwrap();
        conn.execute(
            "INSERT INTO suppressions (id, owner, reason, created, expires, expires_ms, matcher, origin) \
             VALUES ('pol-1', 'p', 'r', '2001-01-01T00:00:00Z', '2001-01-02T00:00:00Z', 978393600000, '{\"rule\":\"X\"}', 'policy')",
            [],
        )
        .unwrap();
        let now = DateTime::from_timestamp(1_000_000_000, 0).unwrap();
        let created = create_suppression(
            &conn,
            now,
            &new(SuppressionMatch {
                node: Some("node-a".into()),
                ..Default::default()
            }),
        )
        .unwrap();
        // The policy one expired in 2001: hidden unless asked for.
        let active = list_suppressions(&conn, now, false).unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0], created);
        let all = list_suppressions(&conn, now, true).unwrap();
        assert_eq!(all.len(), 2);
        assert!(!all.iter().find(|s| s.id == "pol-1").unwrap().active);
        assert_eq!(
            delete_suppression(&conn, "pol-1").unwrap(),
            Deleted::PolicyOwned
        );
        assert_eq!(
            delete_suppression(&conn, &created.id).unwrap(),
            Deleted::Yes
        );
        assert_eq!(
            delete_suppression(&conn, &created.id).unwrap(),
            Deleted::NotFound
        );
    }
}
