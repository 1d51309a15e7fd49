//! Parsers for the forms audit events arrive in.
//!
//! - webhook body: an `EventList` (items may lack kind/apiVersion), or a single `Event`;
//! - log files ([`InputFormat::Native`]): JSON lines, a single (pretty-printed)
//!   `Event`, an `EventList`; a leading UTF-8 BOM is skipped;
//! - cloud wrappers, only when asked for ([`InputFormat::AksEventHubs`],
//!   [`InputFormat::AzureLogAnalytics`]); in native mode they are rejected
//!   with a message naming the option to use.
//!
//! A malformed event never stops the others: it is reported in
//! [`Parsed::errors`] with where it was.

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::AuditEvent;

/// How to read a file of audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum InputFormat {
    /// What kube-apiserver writes: JSON lines, an Event, or an EventList.
    #[default]
    Native,
    /// AKS diagnostic logs via Event Hubs: `{"records":[{"properties":{"log":"<event JSON>"}}]}`
    /// (or one record).
    AksEventHubs,
    /// Azure Log Analytics query results: rows with `log_s` = event JSON
    /// (`{"body":{"value":[...]}}`, `{"value":[...]}` or `[...]`).
    AzureLogAnalytics,
    /// GKE: Cloud Logging `LogEntry` objects with a `k8s.io` AuditLog
    /// `protoPayload` (JSON lines, a JSON array, or concatenated).
    GkeCloudLogging,
    /// EKS: CloudWatch Logs subscription payloads from `/aws/eks/<cluster>/cluster`
    /// (gzip or plain; one or more payloads).
    EksCloudwatch,
}

impl InputFormat {
    /// The `--input-format` spelling.
    pub fn option_name(self) -> &'static str {
        match self {
            InputFormat::Native => "native",
            InputFormat::AksEventHubs => "aks-event-hubs",
            InputFormat::AzureLogAnalytics => "azure-log-analytics",
            InputFormat::GkeCloudLogging => "gke-cloud-logging",
            InputFormat::EksCloudwatch => "eks-cloudwatch",
        }
    }
}

/// One rejected input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {reason}")]
pub struct ParseError {
    /// `line 3`, `item 2`, `record 5`, `document`.
    pub location: String,
    pub reason: String,
}

impl ParseError {
    pub fn new(location: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            location: location.into(),
            reason: reason.into(),
        }
    }

    /// A short, stable reason label for metrics.
    pub fn label(&self) -> &'static str {
        let r = &self.reason;
        if r.contains(" wrapper ") {
            "wrapper_format"
        } else if r.contains("methodName") {
            "unknown_method"
        } else if r.contains("serviceName") || r.contains("protoPayload") {
            "not_k8s_audit"
        } else if r.contains("decompresses past the limit") {
            "gzip_too_large"
        } else if r.contains("corrupt gzip") {
            "bad_gzip"
        } else if r.contains("not base64") {
            "bad_base64"
        } else if r.contains("missing field") {
            "missing_field"
        } else if r.contains("wrapper") {
            "wrapper_format"
        } else if r.contains("invalid type") || r.contains("unknown variant") {
            "invalid_field"
        } else {
            "malformed_json"
        }
    }
}

/// Events read from one input, and what was rejected or skipped.
#[derive(Debug, Default)]
pub struct Parsed {
    pub events: Vec<AuditEvent>,
    pub errors: Vec<ParseError>,
    /// Items deliberately left out, by reason (`control_message`,
    /// `not_audit_stream`): not errors, but counted.
    pub skipped: std::collections::BTreeMap<&'static str, u64>,
}

impl Parsed {
    pub(super) fn skip(&mut self, reason: &'static str, n: u64) {
        *self.skipped.entry(reason).or_default() += n;
    }

    /// Adds another document's results.
    pub fn extend(&mut self, other: Parsed) {
        self.events.extend(other.events);
        self.errors.extend(other.errors);
        for (k, v) in other.skipped {
            self.skip(k, v);
        }
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

pub(super) fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(BOM).unwrap_or(b)
}

/// Parses one event (one JSON line).
pub fn parse_event(bytes: &[u8]) -> Result<AuditEvent, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[derive(Deserialize)]
struct EventList {
    #[serde(default)]
    kind: Option<String>,
    /// Raw items: each parsed on its own (the raw objects inside an event
    /// need serde_json's own reader, not a `Value`).
    items: Vec<Box<serde_json::value::RawValue>>,
}

/// Parses a webhook POST body: an `EventList` (or one `Event`). The whole
/// body is rejected if any item is malformed, so the API server's retry
/// cannot half-store a batch; the error names the item.
pub fn parse_webhook_body(body: &[u8]) -> Result<Vec<AuditEvent>, ParseError> {
    let body = strip_bom(body);
    #[derive(Deserialize)]
    struct Fast {
        items: Vec<AuditEvent>,
    }
    if let Ok(f) = serde_json::from_slice::<Fast>(body) {
        return Ok(f.items);
    }
    // Slow path: say exactly what is wrong.
    match serde_json::from_slice::<EventList>(body) {
        Ok(list) => {
            if let Some(k) = list.kind.as_deref().filter(|k| *k != "EventList") {
                return Err(ParseError::new(
                    "body",
                    format!("kind {k:?} is not EventList"),
                ));
            }
            let mut out = Vec::with_capacity(list.items.len());
            for (i, raw) in list.items.into_iter().enumerate() {
                out.push(
                    serde_json::from_str(raw.get())
                        .map_err(|e| ParseError::new(format!("items[{i}]"), e.to_string()))?,
                );
            }
            Ok(out)
        }
        Err(list_err) => match parse_event(body) {
            Ok(ev) => Ok(vec![ev]),
            Err(_) => Err(ParseError::new(
                "body",
                format!("not an audit.k8s.io EventList: {list_err}"),
            )),
        },
    }
}

/// Parses a whole file (or stdin) in the given format.
pub fn parse_document(bytes: &[u8], format: InputFormat) -> Parsed {
    let bytes = strip_bom(bytes);
    match format {
        InputFormat::Native => parse_native(bytes),
        InputFormat::AksEventHubs => parse_aks(bytes),
        InputFormat::AzureLogAnalytics => parse_log_analytics(bytes),
        InputFormat::GkeCloudLogging => super::gke::parse(bytes),
        InputFormat::EksCloudwatch => super::eks::parse(bytes),
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

fn parse_native(bytes: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    // JSON lines if the first non-blank line is a complete JSON value.
    let first = bytes.split(|b| *b == b'\n').find(|l| !is_blank(l));
    let Some(first) = first else { return out };
    let lines_mode = serde_json::from_slice::<IgnoredAny>(first).is_ok();
    if lines_mode {
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if is_blank(line) {
                continue;
            }
            let line = strip_bom(line);
            match parse_event(line) {
                Ok(ev) => out.events.push(ev),
                Err(e) => {
                    let loc = format!("line {}", i + 1);
                    match explain(line) {
                        Some(why) => out.errors.push(ParseError::new(loc, why)),
                        None => match parse_webhook_body(line) {
                            Ok(evs) => out.events.extend(evs),
                            Err(_) => out.errors.push(ParseError::new(loc, e.to_string())),
                        },
                    }
                }
            }
        }
        return out;
    }
    // One document: an Event or an EventList, possibly pretty-printed.
    match parse_event(bytes) {
        Ok(ev) => out.events.push(ev),
        Err(e) => {
            if let Some(why) = explain(bytes) {
                out.errors.push(ParseError::new("document", why));
            } else if let Ok(list) = serde_json::from_slice::<EventList>(bytes) {
                for (i, raw) in list.items.into_iter().enumerate() {
                    match serde_json::from_str(raw.get()) {
                        Ok(ev) => out.events.push(ev),
                        Err(e) => out
                            .errors
                            .push(ParseError::new(format!("items[{i}]"), e.to_string())),
                    }
                }
            } else {
                out.errors.push(ParseError::new("document", e.to_string()));
            }
        }
    }
    out
}

/// Recognises wrapper formats given to the native reader.
fn explain(bytes: &[u8]) -> Option<String> {
    if super::inflate::is_gzip(bytes) {
        return Some("this is gzip-compressed data (a cloud wrapper), not audit JSON; CloudWatch Logs subscription payloads (EKS) are read with --input-format eks-cloudwatch".to_owned());
    }
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default, rename = "protoPayload")]
        proto_payload: Option<IgnoredAny>,
        #[serde(default, rename = "logName")]
        log_name: Option<IgnoredAny>,
        #[serde(default, rename = "messageType")]
        message_type: Option<IgnoredAny>,
        #[serde(default, rename = "logEvents")]
        log_events: Option<IgnoredAny>,
        #[serde(default)]
        records: Option<IgnoredAny>,
        #[serde(default, rename = "requestId")]
        request_id: Option<IgnoredAny>,
        #[serde(default)]
        properties: Option<IgnoredAny>,
        #[serde(default)]
        body: Option<IgnoredAny>,
        #[serde(default)]
        log_s: Option<IgnoredAny>,
    }
    let p: Probe = match serde_json::from_slice(bytes) {
        Ok(p) => p,
        // `gcloud logging read --format=json` writes an array of entries.
        Err(_) => serde_json::from_slice::<Vec<Probe>>(bytes)
            .ok()?
            .into_iter()
            .next()?,
    };
    if p.proto_payload.is_some() || p.log_name.is_some() {
        Some("this is a Cloud Logging LogEntry wrapper (protoPayload), not an audit event; GKE audit logs are read with --input-format gke-cloud-logging".to_owned())
    } else if p.message_type.is_some() || p.log_events.is_some() {
        Some("this is a CloudWatch Logs subscription wrapper (logEvents[].message), not an audit event; EKS audit logs are read with --input-format eks-cloudwatch".to_owned())
    } else if p.records.is_some() && p.request_id.is_some() {
        Some("this is an Amazon Data Firehose HTTP endpoint request wrapper (records[].data), not an audit event; Firehose delivers it to /v1/firehose/eks; its decoded records are read with --input-format eks-cloudwatch".to_owned())
    } else if p.records.is_some() || p.properties.is_some() {
        Some("this is an AKS Event Hubs wrapper (records[].properties.log), not an audit event; read it with --input-format aks-event-hubs".to_owned())
    } else if p.body.is_some() || p.log_s.is_some() {
        Some("this is an Azure Log Analytics wrapper (rows with log_s), not an audit event; read it with --input-format azure-log-analytics".to_owned())
    } else {
        None
    }
}

/// Parses a JSON string holding one event (wrappers carry events as strings).
pub(super) fn parse_embedded(out: &mut Parsed, loc: String, s: &str) {
    match parse_event(s.trim().as_bytes()) {
        Ok(ev) => out.events.push(ev),
        Err(e) => out.errors.push(ParseError::new(loc, e.to_string())),
    }
}

fn parse_aks(bytes: &[u8]) -> Parsed {
    #[derive(Deserialize)]
    struct Props {
        #[serde(default)]
        log: Option<String>,
    }
    #[derive(Deserialize)]
    struct Record {
        #[serde(default)]
        category: Option<String>,
        #[serde(default)]
        properties: Option<Props>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Doc {
        Batch { records: Vec<Record> },
        One(Record),
    }
    let mut out = Parsed::default();
    let docs: Vec<Doc> = match serde_json::Deserializer::from_slice(bytes)
        .into_iter::<Doc>()
        .collect::<Result<_, _>>()
    {
        Ok(d) => d,
        Err(e) => {
            out.errors.push(ParseError::new(
                "document",
                format!("not an AKS Event Hubs record batch: {e}"),
            ));
            return out;
        }
    };
    let mut n = 0;
    for d in docs {
        let records = match d {
            Doc::Batch { records } => records,
            Doc::One(r) => vec![r],
        };
        for r in records {
            let loc = format!("record {n}");
            n += 1;
            if r.category
                .as_deref()
                .is_some_and(|c| !c.starts_with("kube-audit"))
            {
                continue; // other diagnostic categories share the hub
            }
            match r.properties.and_then(|p| p.log) {
                Some(log) => parse_embedded(&mut out, loc, &log),
                None => out
                    .errors
                    .push(ParseError::new(loc, "record has no properties.log")),
            }
        }
    }
    out
}

fn parse_log_analytics(bytes: &[u8]) -> Parsed {
    #[derive(Deserialize)]
    struct Row {
        #[serde(default)]
        log_s: Option<String>,
    }
    #[derive(Deserialize)]
    struct Value {
        value: Vec<Row>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Doc {
        Response { body: Value },
        Value(Value),
        Rows(Vec<Row>),
        One(Row),
    }
    let mut out = Parsed::default();
    let rows = match serde_json::from_slice::<Doc>(bytes) {
        Ok(Doc::Response { body }) => body.value,
        Ok(Doc::Value(v)) => v.value,
        Ok(Doc::Rows(r)) => r,
        Ok(Doc::One(r)) => vec![r],
        Err(e) => {
            out.errors.push(ParseError::new(
                "document",
                format!("not an Azure Log Analytics result: {e}"),
            ));
            return out;
        }
    };
    for (i, r) in rows.into_iter().enumerate() {
        match r.log_s {
            Some(s) => parse_embedded(&mut out, format!("row {i}"), &s),
            None => out
                .errors
                .push(ParseError::new(format!("row {i}"), "row has no log_s")),
        }
    }
    out
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
