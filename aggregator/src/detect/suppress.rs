//! Maintenance windows and suppressions: a matching alert is kept (stored,
//! queryable) but marked `details.suppressed_by` and not raised.

use crate::alert::Alert;
use crate::policy::Suppression;

use super::{Changes, Detector};

/// The suppression (or `maintenance:<name>`) that silenced an alert.
pub fn suppressed_by(a: &Alert) -> Option<&str> {
    a.details.get("suppressed_by").and_then(|v| v.as_str())
}

/// The node an alert is about: where its source resolved, else its first evidence.
pub fn alert_node(a: &Alert) -> Option<String> {
    a.details
        .get("source_node")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .or_else(|| a.evidence.first().map(|e| e.node.clone()))
}

fn matches(s: &Suppression, a: &Alert) -> bool {
    let m = &s.matcher;
    let eq =
        |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| Some(w) == have);
    a.time < s.expires
        && eq(&m.rule, Some(&a.rule))
        && eq(&m.analytic, Some(&a.analytic))
        && m.username
            .as_ref()
            .is_none_or(|u| crate::policy::Pattern(u.clone()).matches(&a.identity.username))
        && eq(&m.credential_id, a.credential_id.as_deref())
        && s.source_cidr
            .is_none_or(|c| a.source_ip.is_some_and(|ip| c.contains(&ip)))
        && eq(&m.namespace, a.request.namespace.as_deref())
        && eq(&m.node, alert_node(a).as_deref())
}

impl Detector {
    pub(super) fn apply_suppression(&self, a: &mut Alert, ch: &mut Changes) {
        let node = alert_node(a);
        let window = self.policy.maintenance.iter().find(|w| {
            a.time >= w.start
                && a.time < w.end
                && (w.nodes.is_empty()
                    || node.as_ref().is_some_and(|n| w.nodes.contains(n))
                    || a.expected
                        .iter()
                        .any(|e| e.kind == "node" && w.nodes.contains(&e.value)))
                && (w.identities.is_empty()
                    || w.identities.iter().any(|p| p.matches(&a.identity.username)))
                && (w.rules.is_empty() || w.rules.iter().any(|r| *r == a.rule || *r == a.analytic))
        });
        let by = match window {
            Some(w) => format!("maintenance:{}", w.name),
            None => match self.suppressions.iter().find(|s| matches(s, a)) {
                Some(s) => {
                    ch.suppression_hits
                        .push((s.id.clone(), a.time.timestamp_millis()));
                    s.id.clone()
                }
                None => return,
            },
        };
        if !a.details.is_object() {
            a.details = serde_json::json!({});
        }
        a.details["suppressed_by"] = serde_json::Value::String(by);
    }
}

#[cfg(test)]
#[path = "suppress_tests.rs"]
mod tests;
