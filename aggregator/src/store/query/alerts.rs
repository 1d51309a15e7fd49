//! Alert list (filters + cursor paging) and get-one.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension as _, params_from_iter};

use super::filter::{AlertFilter, PageToken};
use super::{QueryError, json_column};
use crate::alert::{Alert, Severity};
use crate::store::triage as stored_triage;
use crate::triage::{StatusFilter, Triage};

/// An alert as stored, with whether a suppression matched it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlert {
    pub alert: Alert,
    /// Suppression id or `maintenance:<name>` when the alert was suppressed.
    pub suppressed_by: Option<String>,
    /// Triage state (history only in the detail: `api::ops::get_alert`).
    pub triage: Triage,
}

/// One page of alerts, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertPage {
    pub alerts: Vec<StoredAlert>,
    /// Set when more alerts may follow.
    pub next: Option<PageToken>,
}

/// `alerts.severity_rank`: 0 (info) .. 4 (critical).
pub fn severity_rank(s: Severity) -> i64 {
    match s {
        Severity::Info => 0,
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

/// The WHERE clause and its parameters for a filter.
fn where_clause(f: &AlertFilter) -> (String, Vec<Value>) {
    let mut conds: Vec<&str> = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    let mut text = |conds: &mut Vec<&str>, sql, v: &Option<String>| {
        if let Some(v) = v {
            conds.push(sql);
            params.push(Value::Text(v.clone()));
        }
    };
    text(&mut conds, "rule = ?", &f.rule);
    text(&mut conds, "analytic = ?", &f.analytic);
    text(&mut conds, "username = ?", &f.identity);
    text(&mut conds, "credential_id = ?", &f.credential_id);
    text(&mut conds, "namespace = ?", &f.namespace);
    if let Some(t) = f.since {
        conds.push("time_ms >= ?");
        params.push(Value::Integer(t.timestamp_millis()));
    }
    if let Some(t) = f.until {
        conds.push("time_ms < ?");
        params.push(Value::Integer(t.timestamp_millis()));
    }
    if let Some(s) = f.min_severity {
        // An IN list of equalities, not `>=`: the planner then searches the
        // severity index instead of walking every active alert by time.
        conds.push(match severity_rank(s) {
            0 => "severity_rank IN (0, 1, 2, 3, 4)",
            1 => "severity_rank IN (1, 2, 3, 4)",
            2 => "severity_rank IN (2, 3, 4)",
            3 => "severity_rank IN (3, 4)",
            _ => "severity_rank IN (4)",
        });
    }
    if let Some(ip) = f.source_ip {
        conds.push("source_ip = ?");
        params.push(Value::Text(ip.to_string()));
    }
    if let Some(n) = &f.node {
        // The node column, any evidence node, or an expected `node` location:
        // all indexed in `alert_nodes`.
        conds.push("seq IN (SELECT seq FROM alert_nodes WHERE node = ?)");
        params.push(Value::Text(n.clone()));
    }
    match f.status {
        None => {}
        Some(StatusFilter::Is(s)) => {
            conds.push("triage_status = ?");
            params.push(Value::Text(s.as_str().to_owned()));
        }
        // An IN list of equalities, served by the status index.
        Some(StatusFilter::AnyClosed) => conds.push(
            "triage_status IN ('closed_true_positive', 'closed_false_positive', 'closed_benign')",
        ),
    }
    if let Some(a) = &f.assignee {
        conds.push("assignee = ?");
        params.push(Value::Text(a.clone()));
    }
    if !f.include_suppressed {
        conds.push("suppressed_by IS NULL");
    }
    if conds.is_empty() {
        (String::new(), params)
    } else {
        (format!(" WHERE {}", conds.join(" AND ")), params)
    }
}

fn decode(
    id: &str,
    json: &str,
    suppressed_by: Option<String>,
    triage: Triage,
) -> Result<StoredAlert, QueryError> {
    let alert: Alert =
        json_column("alert", id, Some(json))?.ok_or_else(|| QueryError::Corrupt {
            what: "alert",
            key: id.to_owned(),
            message: "empty JSON".into(),
        })?;
    Ok(StoredAlert {
        alert,
        suppressed_by,
        triage,
    })
}

/// Alerts matching `filter`, newest first (`time_ms`, then `id`, descending),
/// at most `limit`, after the page token if any.
pub fn list_alerts(
    conn: &Connection,
    filter: &AlertFilter,
    limit: u32,
    after: Option<&PageToken>,
) -> Result<AlertPage, QueryError> {
    let (sql, params) = list_sql(filter, limit, after);
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(params))?;
    let mut alerts = Vec::new();
    let mut last: Option<PageToken> = None;
    let mut more = false;
    while let Some(row) = rows.next()? {
        if alerts.len() == limit as usize {
            more = true;
            break;
        }
        let id: String = row.get(0)?;
        let time_ms: i64 = row.get(1)?;
        let json: String = row.get(2)?;
        let triage = stored_triage::from_columns(&id, row, 4)?;
        alerts.push(decode(&id, &json, row.get(3)?, triage)?);
        last = Some(PageToken { time_ms, id });
    }
    Ok(AlertPage {
        alerts,
        next: if more { last } else { None },
    })
}

/// The list query and its parameters.
fn list_sql(filter: &AlertFilter, limit: u32, after: Option<&PageToken>) -> (String, Vec<Value>) {
    let (mut sql_where, mut params) = where_clause(filter);
    if let Some(tok) = after {
        sql_where.push_str(if sql_where.is_empty() {
            " WHERE "
        } else {
            " AND "
        });
        sql_where.push_str("(time_ms < ? OR (time_ms = ? AND id < ?))");
        params.push(Value::Integer(tok.time_ms));
        params.push(Value::Integer(tok.time_ms));
        params.push(Value::Text(tok.id.clone()));
    }
    // Fetch one more than asked to know whether a next page exists.
    params.push(Value::Integer(i64::from(limit) + 1));
    let sql = format!(
        "SELECT id, time_ms, json, suppressed_by, {} FROM alerts{sql_where} \
         ORDER BY time_ms DESC, id DESC LIMIT ?",
        stored_triage::COLUMNS
    );
    (sql, params)
}

/// One alert by id, suppressed or not.
pub fn get_alert(conn: &Connection, id: &str) -> Result<Option<StoredAlert>, QueryError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT json, suppressed_by, {} FROM alerts WHERE id = ?",
            stored_triage::COLUMNS
        ))?
        .query_row([id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                stored_triage::from_columns(id, r, 2),
            ))
        })
        .optional()?;
    row.map(|(json, sup, triage)| decode(id, &json, sup, triage?))
        .transpose()
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use crate::store::Store;

    /// `EXPLAIN QUERY PLAN` of the list query for `f`, one line per step.
    fn plan(conn: &Connection, f: &AlertFilter, after: Option<&PageToken>) -> Vec<String> {
        let (sql, params) = list_sql(f, 100, after);
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        st.query_map(params_from_iter(params), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A step that reads the whole alerts table (no index at all).
    fn full_scan(p: &[String]) -> bool {
        p.iter()
            .any(|l| l.starts_with("SCAN alerts") && !l.contains("INDEX"))
    }

    #[test]
    fn every_alert_filter_is_served_by_an_index() {
        let store = Store::open_in_memory().unwrap();
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let text = Some("x".to_owned());
        let filters: Vec<(&str, AlertFilter)> = vec![
            ("none", AlertFilter::default()),
            (
                "include_suppressed",
                AlertFilter {
                    include_suppressed: true,
                    ..Default::default()
                },
            ),
            (
                "since",
                AlertFilter {
                    since: Some(t),
                    ..Default::default()
                },
            ),
            (
                "until",
                AlertFilter {
                    until: Some(t),
                    ..Default::default()
                },
            ),
            (
                "rule",
                AlertFilter {
                    rule: text.clone(),
                    ..Default::default()
                },
            ),
            (
                "analytic",
                AlertFilter {
                    analytic: text.clone(),
                    ..Default::default()
                },
            ),
            (
                "min_severity",
                AlertFilter {
                    min_severity: Some(Severity::High),
                    ..Default::default()
                },
            ),
            (
                "identity",
                AlertFilter {
                    identity: text.clone(),
                    ..Default::default()
                },
            ),
            (
                "credential_id",
                AlertFilter {
                    credential_id: text.clone(),
                    ..Default::default()
                },
            ),
            (
                "source_ip",
                AlertFilter {
                    source_ip: Some("10.0.0.1".parse().unwrap()),
                    ..Default::default()
                },
            ),
            (
                "node",
                AlertFilter {
                    node: text.clone(),
                    ..Default::default()
                },
            ),
            (
                "node+suppressed",
                AlertFilter {
                    node: text.clone(),
                    include_suppressed: true,
                    ..Default::default()
                },
            ),
            (
                "namespace",
                AlertFilter {
                    namespace: text.clone(),
                    ..Default::default()
                },
            ),
            (
                "status",
                AlertFilter {
                    status: Some(StatusFilter::Is(crate::triage::TriageStatus::Acknowledged)),
                    ..Default::default()
                },
            ),
            (
                "status=closed",
                AlertFilter {
                    status: Some(StatusFilter::AnyClosed),
                    ..Default::default()
                },
            ),
            (
                "status+suppressed",
                AlertFilter {
                    status: Some(StatusFilter::Is(crate::triage::TriageStatus::Open)),
                    include_suppressed: true,
                    ..Default::default()
                },
            ),
            (
                "assignee",
                AlertFilter {
                    assignee: text.clone(),
                    ..Default::default()
                },
            ),
        ];
        let token = PageToken {
            time_ms: 1,
            id: "a".into(),
        };
        store
            .read_blocking(|c| {
                for (name, f) in &filters {
                    for after in [None, Some(&token)] {
                        let p = plan(c, f, after);
                        assert!(!full_scan(&p), "filter {name}: full scan of alerts: {p:?}");
                        if name.starts_with("status") || *name == "assignee" {
                            let index = if *name == "assignee" {
                                "alerts_assignee"
                            } else {
                                "alerts_triage_status"
                            };
                            assert!(
                                p.iter().any(|l| l.contains("SEARCH") && l.contains(index)),
                                "filter {name}: not served by {index}: {p:?}"
                            );
                        }
                        if *name != "none" && *name != "include_suppressed" {
                            assert!(
                                p.iter().any(|l| l.contains("SEARCH")),
                                "filter {name}: no indexed search: {p:?}"
                            );
                        }
                    }
                }
                Ok(())
            })
            .unwrap();
    }
}
