//! EKS: CloudWatch Logs subscription payloads (`--input-format eks-cloudwatch`).
//!
//! EKS control-plane logging writes the `audit` log type to the log group
//! `/aws/eks/<cluster>/cluster`, stream `kube-apiserver-audit-<id>`; a
//! subscription filter sends batches of it to Kinesis Data Streams, Data
//! Firehose or Lambda as
//! `{"messageType":"DATA_MESSAGE","owner":…,"logGroup":…,"logStream":…,
//! "subscriptionFilters":[…],"logEvents":[{"id":…,"timestamp":…,"message":"<audit event JSON>"}]}`,
//! gzip-compressed (a Kinesis or Firehose record holds one such payload).
//!
//! - gzip is detected by its magic number and decompressed up to
//!   [`MAX_INFLATED_BYTES`](super::inflate::MAX_INFLATED_BYTES) (a bomb is refused);
//! - a document may hold several payloads (concatenated, one per line, or a
//!   JSON array: what Firehose writes to S3 and what a file export holds);
//! - `CONTROL_MESSAGE` payloads (CloudWatch checking the destination) are
//!   skipped and counted (`control_message`);
//! - only streams named `kube-apiserver-audit…` are judged; the others
//!   (`kube-apiserver-`, `authenticator-`, `kube-scheduler-`…, sent when the
//!   filter covers more log types) are skipped and counted (`not_audit_stream`).

use serde::Deserialize;

use super::inflate::{MAX_INFLATED_BYTES, maybe_gunzip};
use super::parse::{ParseError, Parsed, parse_embedded};

/// The stream prefix of EKS audit logs.
pub const AUDIT_STREAM_PREFIX: &str = "kube-apiserver-audit";

#[derive(Deserialize)]
struct LogEvent {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    message_type: String,
    #[serde(default)]
    log_stream: Option<String>,
    #[serde(default)]
    log_events: Vec<LogEvent>,
}

/// Reads one document (one record, one file) of subscription payloads.
pub(super) fn parse(bytes: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    parse_into(&mut out, bytes, "");
    out
}

/// Like [`parse`], adding to `out`; locations are prefixed with `loc`.
pub(crate) fn parse_into(out: &mut Parsed, bytes: &[u8], loc: &str) {
    let bytes = match maybe_gunzip(bytes, MAX_INFLATED_BYTES) {
        Ok(b) => b,
        Err(e) => {
            out.errors
                .push(ParseError::new(format!("{loc}document"), e.to_string()));
            return;
        }
    };
    let bytes = super::parse::strip_bom(&bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let payloads: Vec<Result<Payload, serde_json::Error>> = if first == Some(&b'[') {
        match serde_json::from_slice::<Vec<Payload>>(bytes) {
            Ok(v) => v.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        }
    } else {
        serde_json::Deserializer::from_slice(bytes)
            .into_iter::<Payload>()
            .collect()
    };
    if payloads.is_empty() {
        out.errors.push(ParseError::new(
            format!("{loc}document"),
            "empty: no CloudWatch Logs subscription payload",
        ));
    }
    for (i, p) in payloads.into_iter().enumerate() {
        let here = format!("{loc}payload {i}");
        let p = match p {
            Ok(p) => p,
            Err(e) => {
                out.errors.push(ParseError::new(
                    here,
                    format!("not a CloudWatch Logs subscription payload: {e}"),
                ));
                // A framing error: the rest cannot be found.
                break;
            }
        };
        match p.message_type.as_str() {
            "DATA_MESSAGE" => {}
            "CONTROL_MESSAGE" => {
                out.skip("control_message", 1);
                continue;
            }
            other => {
                out.errors.push(ParseError::new(
                    here,
                    format!("messageType {other:?} is neither DATA_MESSAGE nor CONTROL_MESSAGE"),
                ));
                continue;
            }
        }
        if !p
            .log_stream
            .as_deref()
            .is_some_and(|s| s.starts_with(AUDIT_STREAM_PREFIX))
        {
            out.skip("not_audit_stream", p.log_events.len() as u64);
            continue;
        }
        for (j, e) in p.log_events.into_iter().enumerate() {
            let at = format!("{here} logEvents[{j}]");
            match e.message {
                Some(m) => parse_embedded(out, at, &m),
                None => out
                    .errors
                    .push(ParseError::new(at, "log event has no message")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EV: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":"2024-01-01T00:00:00Z"}"#;

    fn payload(stream: &str, msgs: &[&str]) -> String {
        let ev: Vec<_> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| serde_json::json!({"id": i.to_string(), "timestamp": 1, "message": m}))
            .collect();
        serde_json::json!({"messageType":"DATA_MESSAGE","owner":"111122223333","logGroup":"/aws/eks/c/cluster","logStream":stream,"subscriptionFilters":["f"],"logEvents":ev}).to_string()
    }

    #[test]
    fn control_messages_and_other_streams_are_skipped_and_counted() {
        let doc = format!(
            "{}\n{}\n{}",
            r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}"#,
            payload("authenticator-abc", &["time=x level=info"]),
            payload("kube-apiserver-audit-abc", &[EV, "not json"]),
        );
        let p = parse(doc.as_bytes());
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
        assert!(p.errors[0].location.contains("payload 2 logEvents[1]"));
        assert_eq!(p.skipped.get("control_message"), Some(&1));
        assert_eq!(p.skipped.get("not_audit_stream"), Some(&1));
    }

    #[test]
    fn unknown_message_type_is_an_error() {
        let p = parse(br#"{"messageType":"OTHER","logEvents":[]}"#);
        assert!(p.errors[0].reason.contains("OTHER"));
    }

    fn gz(b: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_gzip_record_and_a_json_array_of_payloads_are_read() {
        // What a Kinesis or Firehose record holds: one gzip-compressed payload.
        let one = payload("kube-apiserver-audit-abc", &[EV]);
        let p = parse(&gz(one.as_bytes()));
        assert_eq!(p.events.len(), 1, "{:?}", p.errors);
        assert_eq!(p.events[0].audit_id, "a1");
        // What Firehose writes to S3 or an export holds: a JSON array.
        let doc = format!(
            " \n[{},{}]",
            payload("kube-apiserver-audit-abc", &[EV]),
            payload("kube-apiserver-audit-def", &[EV, EV])
        );
        let p = parse(doc.as_bytes());
        assert_eq!((p.events.len(), p.errors.len()), (3, 0), "{:?}", p.errors);
        // A broken array is one error for the document.
        let p = parse(b"[{\"messageType\":\"DATA_MESSAGE\"},");
        assert_eq!(p.events.len(), 0);
        assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
        assert_eq!(p.errors[0].location, "payload 0");
    }

    #[test]
    fn empty_corrupt_and_unframed_documents_are_named() {
        let p = parse(b" \n");
        assert_eq!(
            p.errors[0].to_string(),
            "document: empty: no CloudWatch Logs subscription payload"
        );
        let mut bad = gz(payload("kube-apiserver-audit-abc", &[EV]).as_bytes());
        bad.truncate(bad.len() - 4);
        let p = parse(&bad);
        assert_eq!(p.errors[0].label(), "bad_gzip", "{:?}", p.errors);
        // A framing error keeps what was read before it.
        let doc = format!(
            "{}\n{{\"messageType\":",
            payload("kube-apiserver-audit-abc", &[EV])
        );
        let p = parse(doc.as_bytes());
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.errors.len(), 1, "{:?}", p.errors);
        assert_eq!(p.errors[0].location, "payload 1");
    }
}
