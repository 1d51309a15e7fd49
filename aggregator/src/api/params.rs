//! Strict parsing of HTTP query parameters: every value is checked, and an
//! unknown parameter is an error (a typo must not silently widen a filter).

use std::collections::HashMap;

use crate::store::query::filter::{parse_severity, parse_time};
use crate::store::query::inventory::{BindingQuery, CredentialQuery};
use crate::store::query::{AlertFilter, FilterError};

pub type Query = HashMap<String, String>;

/// Alert filter parameters.
pub const ALERT_FILTER_KEYS: &[&str] = &[
    "since",
    "until",
    "rule",
    "analytic",
    "min_severity",
    "identity",
    "credential_id",
    "source_ip",
    "node",
    "namespace",
    "include_suppressed",
    "status",
    "assignee",
];

/// Fails on a parameter not in `allowed`.
pub fn check_known(q: &Query, allowed: &[&[&str]]) -> Result<(), FilterError> {
    let mut unknown: Vec<&str> = q
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.iter().any(|set| set.contains(k)))
        .collect();
    unknown.sort_unstable();
    match unknown.first() {
        None => Ok(()),
        Some(_) => Err(FilterError::new(
            "query",
            format!("unknown parameter(s): {}", unknown.join(", ")),
        )),
    }
}

fn text(q: &Query, k: &str) -> Option<String> {
    q.get(k).filter(|v| !v.is_empty()).cloned()
}

pub fn boolean(q: &Query, k: &'static str) -> Result<bool, FilterError> {
    match q.get(k).map(String::as_str) {
        None | Some("") | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(other) => Err(FilterError::new(
            k,
            format!("{other:?} is not true or false"),
        )),
    }
}

pub fn number<T: std::str::FromStr>(q: &Query, k: &'static str) -> Result<Option<T>, FilterError> {
    match q.get(k).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| FilterError::new(k, format!("{v:?} is not a valid number"))),
    }
}

/// The alert filter from query parameters (keys in [`ALERT_FILTER_KEYS`]).
pub fn alert_filter(q: &Query) -> Result<AlertFilter, FilterError> {
    let f = AlertFilter {
        since: text(q, "since")
            .map(|s| parse_time("since", &s))
            .transpose()?,
        until: text(q, "until")
            .map(|s| parse_time("until", &s))
            .transpose()?,
        rule: text(q, "rule"),
        analytic: text(q, "analytic"),
        min_severity: text(q, "min_severity")
            .map(|s| parse_severity(&s))
            .transpose()?,
        identity: text(q, "identity"),
        credential_id: text(q, "credential_id"),
        source_ip: text(q, "source_ip")
            .map(|s| {
                s.parse().map_err(|_| {
                    FilterError::new("source_ip", format!("{s:?} is not an IP address"))
                })
            })
            .transpose()?,
        node: text(q, "node"),
        namespace: text(q, "namespace"),
        include_suppressed: boolean(q, "include_suppressed")?,
        status: text(q, "status")
            .map(|s| crate::triage::StatusFilter::parse(&s))
            .transpose()?,
        assignee: text(q, "assignee"),
    };
    f.validate()?;
    Ok(f)
}

pub fn credential_query(q: &Query) -> Result<CredentialQuery, FilterError> {
    check_known(q, &[&["credential_id", "node", "identity", "limit"]])?;
    Ok(CredentialQuery {
        credential_id: text(q, "credential_id"),
        node: text(q, "node"),
        identity: text(q, "identity"),
        limit: number(q, "limit")?.unwrap_or(0),
    })
}

pub fn binding_query(q: &Query) -> Result<BindingQuery, FilterError> {
    check_known(
        q,
        &[&["namespace", "high_privilege_only", "include_deleted"]],
    )?;
    Ok(BindingQuery {
        // Present but empty means cluster-scoped only.
        namespace: q.get("namespace").cloned(),
        high_privilege_only: boolean(q, "high_privilege_only")?,
        include_deleted: boolean(q, "include_deleted")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Query {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn unknown_parameter_is_named() {
        let e = check_known(&q(&[("rulez", "x")]), &[ALERT_FILTER_KEYS]).unwrap_err();
        assert!(e.to_string().contains("rulez"), "{e}");
    }

    #[test]
    fn filter_parses_every_field() {
        let f = alert_filter(&q(&[
            ("since", "2026-01-01T00:00:00Z"),
            ("min_severity", "high"),
            ("source_ip", "127.0.0.9"),
            ("include_suppressed", "true"),
        ]))
        .unwrap();
        assert!(f.since.is_some());
        assert_eq!(f.min_severity, Some(crate::alert::Severity::High));
        assert!(f.include_suppressed);
    }

    #[test]
    fn bad_time_is_rejected() {
        let e = alert_filter(&q(&[("since", "yesterday")])).unwrap_err();
        assert_eq!(e.field, "since");
    }
}
