//! Suppressions as the API sees them: list (policy and API ones), create and
//! delete (API ones only; policy ones change in the policy file).
//!
//! Every API write is attributed: `created_by` / `deleted_by` hold the
//! authenticated principal. A delete keeps the row (marked deleted, no longer
//! loaded by detection) so the record of who silenced what survives.
//! A create is bounded: a catch-all matcher is refused and the expiry is
//! capped (policy `detection.max_suppression`).

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
    /// Not yet expired (nor deleted) at the time of the answer.
    pub active: bool,
    /// The principal that created it (API ones; `None` for policy ones and
    /// rows older than attribution).
    pub created_by: Option<String>,
    /// The principal that deleted it, and when.
    pub deleted_by: Option<String>,
    pub deleted: Option<String>,
}

/// A request to create a suppression.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSuppression {
    pub owner: String,
    pub reason: String,
    pub expires: DateTime<Utc>,
    pub matcher: SuppressionMatch,
    /// The authenticated principal asking.
    pub created_by: String,
}

/// Most active API suppressions at once (each one is checked against every alert).
pub const MAX_ACTIVE_API: i64 = 1000;
/// Longest `owner` / `reason`, and longest matcher value, in characters.
pub const MAX_TEXT: usize = 1024;
pub const MAX_MATCH_VALUE: usize = 512;

/// Whether a username pattern matches every identity (`*`, `**`, …).
fn matches_everyone(pattern: &str) -> bool {
    pattern.chars().all(|c| c == '*')
}

impl NewSuppression {
    /// Owner, reason, a future expiry no later than `now + max`, and at least
    /// one matcher that narrows (not a catch-all) are required; a CIDR must
    /// parse.
    pub fn validate(&self, now: DateTime<Utc>, max: chrono::Duration) -> Result<(), FilterError> {
        if self.owner.trim().is_empty() {
            return Err(FilterError::new("owner", "required"));
        }
        if self.reason.trim().is_empty() {
            return Err(FilterError::new("reason", "required"));
        }
        for (field, v) in [("owner", &self.owner), ("reason", &self.reason)] {
            if v.chars().count() > MAX_TEXT {
                return Err(FilterError::new(
                    field,
                    format!("longer than {MAX_TEXT} characters"),
                ));
            }
        }
        let m = &self.matcher;
        for (field, v) in [
            ("rule", &m.rule),
            ("analytic", &m.analytic),
            ("username", &m.username),
            ("credential_id", &m.credential_id),
            ("source_cidr", &m.source_cidr),
            ("namespace", &m.namespace),
            ("node", &m.node),
        ] {
            if v.as_ref()
                .is_some_and(|v| v.chars().count() > MAX_MATCH_VALUE)
            {
                return Err(FilterError::new(
                    field,
                    format!("longer than {MAX_MATCH_VALUE} characters"),
                ));
            }
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
        let cidr = m
            .source_cidr
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| {
                c.parse::<ipnet::IpNet>()
                    .map_err(|e| FilterError::new("source_cidr", format!("{c:?}: {e}")))
            })
            .transpose()?;
        let narrows = [
            &m.rule,
            &m.analytic,
            &m.credential_id,
            &m.namespace,
            &m.node,
        ]
        .iter()
        .any(|f| f.as_deref().is_some_and(|v| !v.is_empty()))
            || m.username
                .as_deref()
                .is_some_and(|u| !u.is_empty() && !matches_everyone(u))
            || cidr.is_some_and(|c| c.prefix_len() > 0);
        if !narrows {
            return Err(FilterError::new(
                "match",
                "a catch-all suppression (identity `*`, 0.0.0.0/0 or ::/0, no rule) would silence every alert; name a rule, analytic, identity, credential, namespace, node or a narrower range",
            ));
        }
        if self.expires - now > max {
            return Err(FilterError::new(
                "expires",
                format!(
                    "{} is more than {} days ahead (policy detection.max_suppression); renew it when it runs out",
                    crate::store::rfc3339(self.expires),
                    max.num_days()
                ),
            ));
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
        "SELECT id, owner, reason, created, expires, expires_ms, matcher, origin, hits, last_hit_ms, \
                created_by, deleted_by, deleted \
         FROM suppressions WHERE (?1 != 0 OR (expires_ms > ?2 AND deleted IS NULL)) \
         ORDER BY created DESC, id",
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
        let deleted: Option<String> = r.get(12)?;
        out.push(SuppressionEntry {
            owner: r.get(1)?,
            reason: r.get(2)?,
            created: r.get(3)?,
            expires: r.get(4)?,
            matcher: json_column("suppression matcher", &id, Some(&matcher))?.unwrap_or_default(),
            origin: r.get(7)?,
            hits: u64::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
            last_hit: r.get::<_, Option<i64>>(9)?.map(ms_to_time),
            active: expires_ms > now.timestamp_millis() && deleted.is_none(),
            created_by: r.get(10)?,
            deleted_by: r.get(11)?,
            deleted,
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
    let active: i64 = conn.query_row(
        "SELECT count(*) FROM suppressions WHERE origin = 'api' AND deleted IS NULL AND expires_ms > ?1",
        [now.timestamp_millis()],
        |r| r.get(0),
    )?;
    if active >= MAX_ACTIVE_API {
        return Err(FilterError::new(
            "suppressions",
            format!("{MAX_ACTIVE_API} API suppressions are already active; delete or let some expire first"),
        )
        .into());
    }
    let id = format!("api-{}", uuid::Uuid::new_v4());
    let created = crate::store::rfc3339(now);
    let expires = crate::store::rfc3339(new.expires);
    let matcher = serde_json::to_string(&new.matcher).map_err(|e| QueryError::Corrupt {
        what: "suppression matcher",
        key: id.clone(),
        message: e.to_string(),
    })?;
    conn.execute(
        "INSERT INTO suppressions (id, owner, reason, created, expires, expires_ms, matcher, origin, created_by) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'api', ?8)",
        rusqlite::params![
            id,
            new.owner,
            new.reason,
            created,
            expires,
            new.expires.timestamp_millis(),
            matcher,
            new.created_by
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
        created_by: Some(new.created_by.clone()),
        deleted_by: None,
        deleted: None,
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

/// Deletes an API suppression on behalf of `by`: detection stops using it;
/// the row stays, marked with who deleted it and when.
pub fn delete_suppression(
    conn: &Connection,
    now: DateTime<Utc>,
    id: &str,
    by: &str,
) -> Result<Deleted, QueryError> {
    let row: Option<(String, Option<String>)> = conn
        .query_row(
            "SELECT origin, deleted FROM suppressions WHERE id = ?",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match row {
        None | Some((_, Some(_))) => Ok(Deleted::NotFound),
        Some((origin, None)) if origin == "api" => {
            conn.execute(
                "UPDATE suppressions SET deleted = ?2, deleted_by = ?3 WHERE id = ?1",
                rusqlite::params![id, crate::store::rfc3339(now), by],
            )?;
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
            expires: DateTime::from_timestamp(1_000_100_000, 0).unwrap(),
            matcher: m,
            created_by: "token:alice".into(),
        }
    }

    const MAX: chrono::Duration = chrono::Duration::days(30);

    #[test]
    fn validation_names_the_missing_or_bad_field() {
        let now = DateTime::from_timestamp(1_000_000_000, 0).unwrap();
        let ok = new(SuppressionMatch {
            username: Some("eve".into()),
            ..Default::default()
        });
        assert!(ok.validate(now, MAX).is_ok());
        assert_eq!(
            new(SuppressionMatch::default())
                .validate(now, MAX)
                .unwrap_err()
                .field,
            "match"
        );
        let mut e = ok.clone();
        e.owner = " ".into();
        assert_eq!(e.validate(now, MAX).unwrap_err().field, "owner");
        let mut e = ok.clone();
        e.expires = now;
        assert_eq!(e.validate(now, MAX).unwrap_err().field, "expires");
        let bad_cidr = new(SuppressionMatch {
            source_cidr: Some("10.0.0.0/40".into()),
            ..Default::default()
        });
        assert_eq!(
            bad_cidr.validate(now, MAX).unwrap_err().field,
            "source_cidr"
        );
    }

    #[test]
    fn catch_alls_and_long_expiries_are_refused() {
        let now = DateTime::from_timestamp(1_000_000_000, 0).unwrap();
        for m in [
            SuppressionMatch {
                username: Some("*".into()),
                ..Default::default()
            },
            SuppressionMatch {
                username: Some("***".into()),
                source_cidr: Some("::/0".into()),
                ..Default::default()
            },
            SuppressionMatch {
                source_cidr: Some("0.0.0.0/0".into()),
                ..Default::default()
            },
        ] {
            let e = new(m.clone()).validate(now, MAX).unwrap_err();
            assert_eq!(e.field, "match", "{m:?}");
            assert!(e.message.contains("catch-all"), "{e:?}");
        }
        // Narrowed by a rule or a real range: accepted.
        for m in [
            SuppressionMatch {
                username: Some("*".into()),
                rule: Some("CT1547-002".into()),
                ..Default::default()
            },
            SuppressionMatch {
                source_cidr: Some("10.1.0.0/16".into()),
                ..Default::default()
            },
            SuppressionMatch {
                username: Some("system:serviceaccount:ci:*".into()),
                ..Default::default()
            },
        ] {
            assert!(new(m.clone()).validate(now, MAX).is_ok(), "{m:?}");
        }
        let mut far = new(SuppressionMatch {
            node: Some("n".into()),
            ..Default::default()
        });
        far.expires = now + MAX + chrono::Duration::seconds(1);
        let e = far.validate(now, MAX).unwrap_err();
        assert_eq!(e.field, "expires");
        assert!(e.message.contains("max_suppression"), "{e:?}");
        far.expires = now + MAX;
        assert!(far.validate(now, MAX).is_ok());
        let mut long = far.clone();
        long.reason = "x".repeat(MAX_TEXT + 1);
        assert_eq!(long.validate(now, MAX).unwrap_err().field, "reason");
        let mut long = far.clone();
        long.matcher.node = Some("n".repeat(MAX_MATCH_VALUE + 1));
        assert_eq!(long.validate(now, MAX).unwrap_err().field, "node");
    }

    #[test]
    fn active_api_suppressions_are_capped() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(crate::store::SCHEMA).unwrap();
        let now = DateTime::from_timestamp(1_000_000_000, 0).unwrap();
        let s = new(SuppressionMatch {
            node: Some("n".into()),
            ..Default::default()
        });
        for _ in 0..MAX_ACTIVE_API {
            create_suppression(&conn, now, &s).unwrap();
        }
        let e = create_suppression(&conn, now, &s).unwrap_err();
        assert!(e.to_string().contains("already active"), "{e}");
        // Deleting one makes room.
        let first = list_suppressions(&conn, now, false).unwrap()[0].id.clone();
        delete_suppression(&conn, now, &first, "token:a").unwrap();
        create_suppression(&conn, now, &s).unwrap();
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
        assert_eq!(created.created_by.as_deref(), Some("token:alice"));
        assert_eq!(
            delete_suppression(&conn, now, "pol-1", "token:bob").unwrap(),
            Deleted::PolicyOwned
        );
        assert_eq!(
            delete_suppression(&conn, now, &created.id, "token:bob").unwrap(),
            Deleted::Yes
        );
        assert_eq!(
            delete_suppression(&conn, now, &created.id, "token:bob").unwrap(),
            Deleted::NotFound
        );
        // Kept for the record, with who deleted it; no longer active.
        assert!(list_suppressions(&conn, now, false).unwrap().is_empty());
        let all = list_suppressions(&conn, now, true).unwrap();
        let d = all.iter().find(|s| s.id == created.id).unwrap();
        assert_eq!(d.deleted_by.as_deref(), Some("token:bob"));
        assert!(!d.active);
        assert!(
            crate::store::load_suppressions(&conn)
                .unwrap()
                .iter()
                .all(|s| s.id != created.id)
        );
    }
}
