//! Alert filters and page tokens: the domain side of every alert query (HTTP,
//! gRPC, the live stream and exports all use these).

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use crate::alert::{Alert, Severity};

/// A filter value that is not acceptable; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {message}")]
pub struct FilterError {
    pub field: &'static str,
    pub message: String,
}

impl FilterError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Filters on alerts; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertFilter {
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Strictly before.
    pub until: Option<DateTime<Utc>>,
    pub rule: Option<String>,
    pub analytic: Option<String>,
    /// This severity or higher.
    pub min_severity: Option<Severity>,
    /// Exact username.
    pub identity: Option<String>,
    pub credential_id: Option<String>,
    pub source_ip: Option<IpAddr>,
    /// The node the source resolved to, a node in the evidence, or an expected `node` location.
    pub node: Option<String>,
    /// The request's namespace.
    pub namespace: Option<String>,
    /// Also list alerts a suppression or maintenance window matched (stored,
    /// not raised). Lists only; the live stream carries raised alerts.
    pub include_suppressed: bool,
    /// Triage status (`crate::triage`): one exact status or any closed one.
    pub status: Option<crate::triage::StatusFilter>,
    /// Exact assignee.
    pub assignee: Option<String>,
}

/// Parses `info|low|medium|high|critical` (any case).
pub fn parse_severity(s: &str) -> Result<Severity, FilterError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "info" => Severity::Info,
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        other => {
            return Err(FilterError::new(
                "min_severity",
                format!("{other:?} is not one of info, low, medium, high, critical"),
            ));
        }
    })
}

/// Parses an RFC 3339 time for the named field.
pub fn parse_time(field: &'static str, s: &str) -> Result<DateTime<Utc>, FilterError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| FilterError::new(field, format!("{s:?} is not an RFC 3339 time: {e}")))
}

impl AlertFilter {
    /// Checks the filter as a whole (each field was checked when parsed).
    pub fn validate(&self) -> Result<(), FilterError> {
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since > until
        {
            return Err(FilterError::new(
                "since",
                format!("{since} is after until {until}"),
            ));
        }
        Ok(())
    }

    /// Whether an alert passes the filter: the same meaning as the SQL query,
    /// used for the live stream.
    pub fn matches(&self, a: &Alert) -> bool {
        fn eq(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w == have)
        }
        let ms = a.time.timestamp_millis();
        self.since.is_none_or(|t| ms >= t.timestamp_millis())
            && self.until.is_none_or(|t| ms < t.timestamp_millis())
            && eq(&self.rule, &a.rule)
            && eq(&self.analytic, &a.analytic)
            && self.min_severity.is_none_or(|s| a.severity >= s)
            && eq(&self.identity, &a.identity.username)
            && self
                .credential_id
                .as_ref()
                .is_none_or(|c| a.credential_id.as_ref() == Some(c))
            && self.source_ip.is_none_or(|ip| a.source_ip == Some(ip))
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| a.request.namespace.as_ref() == Some(ns))
            && self.node.as_ref().is_none_or(|n| {
                crate::detect::alert_node(a).as_ref() == Some(n) || alert_nodes(a).any(|x| x == n)
            })
    }
}

impl AlertFilter {
    /// Whether a triage state passes the `status` and `assignee` filters
    /// (the rest of the filter is judged on the alert by [`Self::matches`]).
    pub fn matches_triage(&self, t: &crate::triage::Triage) -> bool {
        self.status.is_none_or(|s| s.matches(t.status))
            && self
                .assignee
                .as_ref()
                .is_none_or(|a| t.assignee.as_ref() == Some(a))
    }
}

/// Nodes an alert names besides the one stored in `alerts.node`
/// ([`crate::detect::alert_node`]): evidence nodes and expected `node` locations.
pub fn alert_nodes(a: &Alert) -> impl Iterator<Item = &str> {
    a.evidence.iter().map(|e| e.node.as_str()).chain(
        a.expected
            .iter()
            .filter(|e| e.kind == "node")
            .map(|e| e.value.as_str()),
    )
}

/// Where a page ends: the (time, id) of its last alert. Alerts are ordered
/// newest first, ties broken by id descending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken {
    /// `alerts.time_ms` of the last alert returned.
    pub time_ms: i64,
    pub id: String,
}

impl PageToken {
    /// Opaque text form (URL-safe).
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.time_ms, self.id))
    }

    pub fn decode(s: &str) -> Result<Self, FilterError> {
        let bad = |why: &str| FilterError::new("page_token", format!("{s:?}: {why}"));
        let raw = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad("not a token this server issued"))?;
        let raw = String::from_utf8(raw).map_err(|_| bad("not a token this server issued"))?;
        let (time_ms, id) = raw
            .split_once('|')
            .ok_or_else(|| bad("not a token this server issued"))?;
        let time_ms: i64 = time_ms.parse().map_err(|_| bad("bad time in token"))?;
        Ok(PageToken {
            time_ms,
            id: id.to_owned(),
        })
    }
}

/// Default and maximum page sizes.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// `0` means the default; above the maximum is an error.
pub fn page_size(n: u32) -> Result<u32, FilterError> {
    match n {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n <= MAX_PAGE_SIZE => Ok(n),
        n => Err(FilterError::new(
            "page_size",
            format!("{n} is above the maximum {MAX_PAGE_SIZE}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_token_round_trips() {
        let t = PageToken {
            time_ms: 1_700_000_000_005,
            id: "abc|def".into(),
        };
        assert_eq!(PageToken::decode(&t.encode()).unwrap(), t);
    }

    #[test]
    fn garbage_page_token_is_rejected() {
        let e = PageToken::decode("!!!").unwrap_err();
        assert_eq!(e.field, "page_token");
    }

    #[test]
    fn severity_parse_is_case_insensitive_and_strict() {
        assert_eq!(parse_severity("HIGH").unwrap(), Severity::High);
        assert!(parse_severity("severe").is_err());
    }

    #[test]
    fn since_after_until_is_rejected() {
        let f = AlertFilter {
            since: Some(DateTime::from_timestamp(2, 0).unwrap()),
            until: Some(DateTime::from_timestamp(1, 0).unwrap()),
            ..Default::default()
        };
        assert_eq!(f.validate().unwrap_err().field, "since");
    }
}
