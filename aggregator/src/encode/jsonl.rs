//! The alert as the API lists it (with its rule's runbook and its
//! credential's inventory link), as one JSON object.

use crate::alert::Alert;

/// One alert as a JSON object (no newline).
pub fn record(a: &Alert) -> String {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        #[serde(flatten)]
        alert: &'a Alert,
        runbook_url: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        credential_inventory: Option<super::link::InventoryLink>,
    }
    // An Alert always serializes (string keys, finite numbers).
    serde_json::to_string(&Line {
        alert: a,
        runbook_url: crate::detect::rules::runbook_url(&a.rule),
        credential_inventory: super::link::link(a),
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_record_is_the_alert_with_its_runbook() {
        let a = crate::encode::cef::tests::alert();
        let line = record(&a);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v["runbook_url"].as_str().unwrap().contains("ct1579-001"));
        let back: Alert = serde_json::from_str(&line).unwrap();
        assert_eq!(back, a);
    }
}
