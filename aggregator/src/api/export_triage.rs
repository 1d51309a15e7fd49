//! Exports with the alert's triage: JSON lines carry the `triage` object
//! (without history) as the list does; CEF adds `flexString1` (status),
//! `flexString2` (assignee) and the vendor keys `ctTriageBy` (principal of
//! the last change) and `ctTriageNote` (latest note), escaped like every
//! other extension value. Notes and assignees are responders' free text:
//! escaped, never interpreted.

use super::export::{Format, ext};
use crate::store::query::StoredAlert;
use crate::triage::Triage;

/// One export line (with its newline) for a stored alert.
pub fn line(format: Format, s: &StoredAlert) -> String {
    let t = Triage {
        history: None,
        ..s.triage.clone()
    };
    if format == Format::Jsonl {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            #[serde(flatten)]
            alert: &'a crate::alert::Alert,
            runbook_url: String,
            // The context branch's link (export.rs carries it too).
            #[serde(skip_serializing_if = "Option::is_none")]
            credential_inventory: Option<super::context::InventoryLink>,
            triage: &'a Triage,
        }
        let mut out = serde_json::to_string(&Line {
            alert: &s.alert,
            runbook_url: crate::detect::rules::runbook_url(&s.alert.rule),
            credential_inventory: super::context::link(&s.alert),
            triage: &t,
        })
        .unwrap_or_default();
        out.push('\n');
        out
    } else if format == Format::Cef {
        let mut out = super::export::cef_line(&s.alert);
        out.push_str(" flexString1Label=triageStatus flexString1=");
        out.push_str(t.status.as_str());
        if let Some(a) = &t.assignee {
            out.push_str(" flexString2Label=assignee flexString2=");
            out.push_str(&ext(a));
        }
        if let Some(by) = &t.updated_by {
            out.push_str(" ctTriageBy=");
            out.push_str(&ext(by));
        }
        if let Some(n) = &t.last_note {
            out.push_str(" ctTriageNote=");
            out.push_str(&ext(n));
        }
        out.push('\n');
        out
    } else {
        format.line(&s.alert)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triage::TriageStatus;

    fn stored(note: &str, assignee: &str) -> StoredAlert {
        let a: crate::alert::Alert = serde_json::from_value(serde_json::json!({
            "id": "a1", "rule": "CT1547-002", "analytic": "AN1547", "techniques": [],
            "severity": "high", "time": "2026-01-01T00:00:00Z",
            "identity": {"username": "u"}, "source_class": "outside",
            "request": {"verb": "get", "request_uri": "/x", "decision": "allow"},
            "audit_ids": ["x"], "reason": "r"
        }))
        .unwrap();
        StoredAlert {
            alert: a,
            suppressed_by: None,
            triage: Triage {
                status: TriageStatus::ClosedBenign,
                assignee: Some(assignee.into()),
                updated_by: Some("token:alice".into()),
                last_note: Some(note.into()),
                ..Default::default()
            },
        }
    }

    #[test]
    fn hostile_notes_stay_inside_their_field() {
        let note = "ok\nCEF:0|evil|x|1|y|z|10|act=delete suser=admin\r\n\\ end=";
        let s = stored(note, "eve externalId=forged");
        let cef = line(Format::Cef, &s);
        // One record, one line: the note cannot start a record or add a key.
        assert_eq!(cef.matches('\n').count(), 1, "{cef}");
        assert!(cef.ends_with('\n'));
        assert!(!cef.contains(" act=delete"), "{cef}");
        assert!(!cef.contains(" suser=admin"), "{cef}");
        assert!(!cef.contains(" externalId=forged"), "{cef}");
        assert!(cef.contains("flexString1=closed_benign"), "{cef}");
        assert!(cef.contains("flexString2=eve externalId\\=forged"), "{cef}");
        let json = line(Format::Jsonl, &s);
        assert_eq!(json.matches('\n').count(), 1, "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["triage"]["last_note"], note);
        assert_eq!(v["triage"]["status"], "closed_benign");
        assert!(v["triage"].get("history").is_none());
    }
}
