//! Alert exports a SIEM can take: JSON lines (one alert object per line, the
//! same JSON as the API) and ArcSight CEF (one event per line).

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::alert::{Alert, Severity};

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Cef,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "cef" => Some(Format::Cef),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/x-ndjson",
            Format::Cef => "text/plain; charset=utf-8",
        }
    }

    /// One line (with its newline) for one alert.
    pub fn line(self, a: &Alert) -> String {
        match self {
            Format::Jsonl => {
                // The alert as the list shows it: with its rule's runbook.
                #[derive(serde::Serialize)]
                struct Line<'a> {
                    #[serde(flatten)]
                    alert: &'a Alert,
                    runbook_url: String,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    credential_inventory: Option<super::context::InventoryLink>,
                }
                // An Alert always serializes (string keys, finite numbers).
                let mut s = serde_json::to_string(&Line {
                    alert: a,
                    runbook_url: crate::detect::rules::runbook_url(&a.rule),
                    credential_inventory: super::context::link(a),
                })
                .unwrap_or_default();
                s.push('\n');
                s
            }
            Format::Cef => {
                let mut s = cef_line(a);
                s.push('\n');
                s
            }
        }
    }
}

/// CEF severity 0..=10.
pub fn cef_severity(s: Severity) -> u8 {
    match s {
        Severity::Info => 1,
        Severity::Low => 3,
        Severity::Medium => 5,
        Severity::High => 8,
        Severity::Critical => 10,
    }
}

/// Header fields escape `\` and `|`.
fn header(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\r', '\n'], " ")
}

/// Extension values escape `\`, `=` and newlines.
pub(crate) fn ext(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace("\r\n", "\\n")
        .replace(['\n', '\r'], "\\n")
}

/// One alert as a CEF:0 record (without the newline).
pub fn cef_line(a: &Alert) -> String {
    let name = format!("{} {}", a.analytic, a.rule);
    let mut out = format!(
        "CEF:0|credtrail|credtrail-aggregator|{}|{}|{}|{}|",
        header(env!("CARGO_PKG_VERSION")),
        header(&a.rule),
        header(&name),
        cef_severity(a.severity)
    );
    let mut kv: Vec<(&str, String)> = vec![
        ("rt", a.time.timestamp_millis().to_string()),
        ("externalId", a.id.clone()),
        ("suser", a.identity.username.clone()),
        ("act", a.request.verb.clone()),
        ("request", a.request.request_uri.clone()),
        ("outcome", a.request.decision.clone()),
        ("msg", a.reason.clone()),
        ("cs1Label", "analytic".into()),
        ("cs1", a.analytic.clone()),
        ("cs2Label", "techniques".into()),
        ("cs2", a.techniques.join(",")),
        ("cs3Label", "credentialId".into()),
        ("cs3", a.credential_id.clone().unwrap_or_default()),
        ("cs4Label", "sourceClass".into()),
        (
            "cs4",
            serde_json::to_value(a.source_class)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        ),
        ("cs5Label", "namespace".into()),
        ("cs5", a.request.namespace.clone().unwrap_or_default()),
        ("cs6Label", "auditIds".into()),
        ("cs6", a.audit_ids.join(",")),
    ];
    match a.source_ip {
        Some(IpAddr::V4(ip)) => kv.push(("src", ip.to_string())),
        Some(IpAddr::V6(ip)) => kv.push(("c6a2", ip.to_string())),
        None => {}
    }
    if let Some(ev) = a.evidence.first() {
        kv.push(("dhost", ev.node.clone()));
        if let Some(c) = &ev.comm {
            kv.push(("sproc", c.clone()));
        }
        if let Some(p) = ev.pid {
            kv.push(("spid", p.to_string()));
        }
    }
    let mut first = true;
    for (k, v) in kv {
        if v.is_empty() {
            continue;
        }
        if !first {
            out.push(' ');
        }
        first = false;
        let _ = write!(out, "{k}={}", ext(&v));
    }
    out
}

/// A parsed CEF record: the 7 header fields and the extension pairs in order.
pub type CefRecord = (Vec<String>, Vec<(String, String)>);

/// Parses a CEF line back into its 7 header fields and extension pairs.
/// Used by tests and documented as the reference reading of our output.
pub fn parse_cef(line: &str) -> Option<CefRecord> {
    let rest = line.strip_prefix("CEF:")?;
    let mut headers = Vec::new();
    let mut cur = String::new();
    let mut chars = rest.chars();
    while headers.len() < 7 {
        match chars.next()? {
            '\\' => cur.push(chars.next()?),
            '|' => headers.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    let ext_text: String = chars.collect();
    // Split on unescaped spaces that start a `key=`.
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut key = String::new();
    let mut val = String::new();
    let mut in_val = false;
    let mut it = ext_text.chars().peekable();
    while let Some(c) = it.next() {
        if !in_val {
            if c == '=' {
                in_val = true;
            } else {
                key.push(c);
            }
            continue;
        }
        match c {
            '\\' => match it.next()? {
                'n' => val.push('\n'),
                other => val.push(other),
            },
            ' ' => {
                // A space followed by `word=` starts the next pair.
                let ahead: String = it.clone().take_while(|c| *c != ' ' && *c != '=').collect();
                let next_is_key = !ahead.is_empty()
                    && it.clone().nth(ahead.chars().count()) == Some('=')
                    && ahead.chars().all(|c| c.is_ascii_alphanumeric());
                if next_is_key {
                    pairs.push((std::mem::take(&mut key), std::mem::take(&mut val)));
                    in_val = false;
                } else {
                    val.push(' ');
                }
            }
            c => val.push(c),
        }
    }
    if in_val {
        pairs.push((key, val));
    }
    Some((headers, pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Identity, RequestInfo, SourceClass};
    use chrono::DateTime;

    fn alert() -> Alert {
        Alert {
            id: "id-1".into(),
            rule: "CT1579-001".into(),
            analytic: "AN1579".into(),
            techniques: vec!["T1098.006".into()],
            severity: Severity::Critical,
            time: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            identity: Identity {
                username: "eve|admin".into(),
                ..Default::default()
            },
            credential_id: None,
            source_ip: Some("127.0.0.7".parse().unwrap()),
            source_class: SourceClass::Outside,
            claimed_source_ips: vec![],
            expected: vec![],
            request: RequestInfo {
                verb: "create".into(),
                request_uri: "/apis/rbac?x=1".into(),
                decision: "allow".into(),
                ..Default::default()
            },
            evidence: vec![],
            audit_ids: vec!["a1".into(), "a2".into()],
            observation_ids: vec![],
            reason: "granted cluster-admin to system:anonymous; a=b\\c".into(),
            details: serde_json::Value::Null,
        }
    }

    #[test]
    fn cef_escapes_and_parses_back() {
        let a = alert();
        let line = cef_line(&a);
        let (h, kv) = parse_cef(&line).expect(&line);
        assert_eq!(h[0], "0");
        assert_eq!(h[4], "CT1579-001");
        assert_eq!(h[6], "10");
        let get = |k: &str| kv.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
        assert_eq!(get("suser").as_deref(), Some("eve|admin"));
        assert_eq!(get("msg").as_deref(), Some(a.reason.as_str()));
        assert_eq!(get("request").as_deref(), Some("/apis/rbac?x=1"));
        assert_eq!(get("src").as_deref(), Some("127.0.0.7"));
        assert_eq!(get("cs6").as_deref(), Some("a1,a2"));
    }

    #[test]
    fn jsonl_line_is_one_alert() {
        let line = Format::Jsonl.line(&alert());
        assert_eq!(line.matches('\n').count(), 1);
        let back: Alert = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(back, alert());
    }
}
