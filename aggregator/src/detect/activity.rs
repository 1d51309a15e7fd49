//! AN1547 alerts follow the credential from their source: every request by
//! that credential from that address, shortly before the alert (when still
//! remembered) and while the alert is open, becomes the alert's activity. A
//! later request that would raise the same rule, no more severe, from the
//! same address resolving to the same node/pod, extends the open alert
//! instead of raising a new one. Contract: docs/API.md, *Context for the
//! responder*.
//!
//! Everything is bounded: requests remembered per source before an alert
//! ([`BEFORE_PER_SOURCE`], [`BEFORE_WINDOW`], [`MAX_SOURCES_BEFORE`]), open
//! alerts followed ([`MAX_OPEN`]), groups per alert summary ([`MAX_GROUPS`]);
//! the requests listed per alert ([`MAX_LISTED`]) are written to the store
//! (`store/activity.rs`), not held here.

use std::collections::VecDeque;
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::bounded::{Bounded, Limits};
use crate::alert::{Alert, Severity};
use crate::audit::AuditEvent;

/// Requests before an alert are included from this long before it.
pub const BEFORE_WINDOW: Duration = Duration::minutes(15);
/// An open alert closes after this long without a request from its source…
pub const IDLE_CLOSE: Duration = Duration::hours(1);
/// …or this long after the alert.
pub const MAX_SPAN: Duration = Duration::hours(24);
/// Requests listed per alert (the rest are counted).
pub const MAX_LISTED: u32 = 100;
/// Distinct groups in an alert's summary (the rest are counted as other).
pub const MAX_GROUPS: usize = 16;
/// Open alerts followed at once (least recently active closed first).
pub const MAX_OPEN: usize = 4096;
/// Sources whose recent requests are remembered before any alert.
pub const MAX_SOURCES_BEFORE: usize = 2048;
/// Requests remembered per source before an alert.
pub const BEFORE_PER_SOURCE: usize = 8;
/// Open alerts per (credential, source): one per rule at most.
const MAX_OPEN_PER_SOURCE: usize = 8;

/// `before` the alert, the alert's own request, or `after` it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Before,
    Alert,
    After,
}

/// One request of the credential from the alert's source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityEntry {
    pub time: DateTime<Utc>,
    pub phase: Phase,
    pub verb: String,
    pub api_group: Option<String>,
    pub resource: Option<String>,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub response_code: Option<i32>,
    pub decision: String,
    pub audit_id: String,
}

/// Longest string kept in an activity entry (audit fields come from clients).
const MAX_FIELD: usize = 256;

fn cap(s: Option<&str>) -> Option<String> {
    cap_to(s, MAX_FIELD)
}

fn cap_to(s: Option<&str>, max: usize) -> Option<String> {
    // The standard library's cut (no hand-written loop that a slip could
    // turn into an endless one).
    s.map(|s| s[..s.floor_char_boundary(max)].to_owned())
}

impl ActivityEntry {
    pub fn from_event(ev: &AuditEvent, phase: Phase) -> Self {
        ActivityEntry {
            time: ev.time(),
            phase,
            verb: cap(Some(&ev.verb)).unwrap_or_default(),
            api_group: cap(ev.api_group()),
            resource: cap(ev.resource()),
            subresource: cap(ev.subresource()),
            namespace: cap(ev.namespace()),
            name: cap(ev.name()),
            response_code: ev.code(),
            decision: if ev.allowed() { "allow" } else { "deny" }.to_owned(),
            audit_id: cap(Some(&ev.audit_id)).unwrap_or_default(),
        }
    }
}

/// A summary group: verb, resource/subresource, namespace, code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub before: bool,
    pub verb: String,
    pub resource: Option<String>,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub code: Option<i32>,
    pub count: u64,
}

/// Longest string kept in a summary group (verbs, resources and namespaces
/// are at most 63 characters in Kubernetes; longer ones come from a client).
const MAX_GROUP_FIELD: usize = 64;

impl Group {
    fn of(e: &ActivityEntry) -> Self {
        let c = |s: &Option<String>| s.as_deref().and_then(|s| cap_to(Some(s), MAX_GROUP_FIELD));
        Group {
            before: e.phase == Phase::Before,
            verb: cap_to(Some(&e.verb), MAX_GROUP_FIELD).unwrap_or_default(),
            resource: c(&e.resource),
            subresource: c(&e.subresource),
            namespace: c(&e.namespace),
            code: e.response_code,
            count: 0,
        }
    }

    fn same(&self, o: &Group) -> bool {
        self.before == o.before
            && self.verb == o.verb
            && self.resource == o.resource
            && self.subresource == o.subresource
            && self.namespace == o.namespace
            && self.code == o.code
    }

    fn text(&self) -> String {
        let mut s = self.verb.clone();
        if let Some(r) = &self.resource {
            s.push(' ');
            s.push_str(r);
            if let Some(sub) = &self.subresource {
                s.push('/');
                s.push_str(sub);
            }
        }
        if let Some(ns) = &self.namespace {
            s.push_str(" in ");
            s.push_str(ns);
        }
        match self.code {
            Some(c) => s.push_str(&format!(" {c}")),
            None => s.push_str(" ?"),
        }
        if self.count > 1 {
            s.push_str(&format!(" ×{}", self.count));
        }
        s
    }
}

/// The state of one alert's activity (persisted as JSON; small and bounded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertActivity {
    pub alert_id: String,
    pub credential_key: String,
    pub source_ip: IpAddr,
    pub rule: String,
    pub severity: Severity,
    pub source_node: Option<String>,
    pub source_pod: Option<String>,
    /// The suppression or maintenance window that silenced the alert.
    #[serde(default)]
    pub suppressed_by: Option<String>,
    /// The alert's time.
    pub opened: DateTime<Utc>,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    /// Requests recorded.
    pub count: u64,
    /// 1 + would-be alerts folded in.
    pub occurrences: u32,
    /// Requests listed (stored), at most [`MAX_LISTED`].
    pub listed: u32,
    pub groups: Vec<Group>,
    /// Requests in groups past [`MAX_GROUPS`].
    pub other: u64,
}

impl AlertActivity {
    fn add(&mut self, e: &ActivityEntry) -> bool {
        self.count += 1;
        self.first = self.first.min(e.time);
        self.last = self.last.max(e.time);
        let g = Group::of(e);
        if let Some(x) = self.groups.iter_mut().find(|x| x.same(&g)) {
            x.count += 1;
        } else if self.groups.len() < MAX_GROUPS {
            self.groups.push(Group { count: 1, ..g });
        } else {
            self.other += 1;
        }
        if self.listed < MAX_LISTED {
            self.listed += 1;
            true
        } else {
            false
        }
    }

    /// `before: …; then: get secrets in kube-system 200 ×3, create pods 403`.
    pub fn summary(&self) -> String {
        let part = |before: bool| {
            self.groups
                .iter()
                .filter(|g| g.before == before)
                .map(Group::text)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (b, mut then) = (part(true), part(false));
        if self.other > 0 {
            if !then.is_empty() {
                then.push_str(", ");
            }
            then.push_str(&format!("+{} other", self.other));
        }
        if b.is_empty() {
            format!("then: {then}")
        } else {
            format!("before: {b}; then: {then}")
        }
    }

    fn closed_at(&self, t: DateTime<Utc>) -> bool {
        t - self.last > IDLE_CLOSE || t - self.opened > MAX_SPAN
    }
}

/// What a batch changed in alerts' activity: the state to upsert and the new
/// listed requests to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityChange {
    pub state: AlertActivity,
    pub entries: Vec<ActivityEntry>,
}

type SourceKey = (String, IpAddr);

/// Followed sources and open alerts.
pub struct Activity {
    before: Bounded<SourceKey, VecDeque<ActivityEntry>>,
    open: Bounded<SourceKey, Vec<AlertActivity>>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            before: Bounded::new(Limits::new(MAX_SOURCES_BEFORE, Some(BEFORE_WINDOW))),
            open: Bounded::new(Limits::new(MAX_OPEN, Some(IDLE_CLOSE))),
        }
    }
}

fn detail_str(a: &Alert, k: &str) -> Option<String> {
    a.details.get(k).and_then(|v| v.as_str()).map(str::to_owned)
}

impl Activity {
    pub fn advance(&mut self, t: DateTime<Utc>) {
        self.before.advance(t);
        self.open.advance(t);
    }

    pub fn stats(&mut self, out: &mut Vec<super::limits::MapStat>) {
        out.push(super::stat("activity_before", &mut self.before));
        out.push(super::stat("activity_open", &mut self.open));
    }

    /// Takes back open alerts' state persisted by an earlier run.
    pub fn restore(&mut self, rows: Vec<AlertActivity>) {
        for a in rows {
            self.open.advance(a.last);
            let list = self
                .open
                .entry((a.credential_key.clone(), a.source_ip))
                .or_default();
            if list.len() < MAX_OPEN_PER_SOURCE {
                list.push(a);
            }
        }
    }

    /// One final-stage request by credential `key` from `ip`, with the AN1547
    /// alerts judging it raised in `out`: folds repeats into open alerts,
    /// records the request as activity, opens new alerts (with the requests
    /// remembered before them). `remember` says whether the source is one
    /// worth remembering before an alert (not an expected place).
    pub fn on_request(
        &mut self,
        ev: &AuditEvent,
        key: &str,
        ip: IpAddr,
        remember: bool,
        out: &mut Vec<Alert>,
        ch: &mut Vec<ActivityChange>,
    ) {
        let t = ev.time();
        let sk: SourceKey = (key.to_owned(), ip);
        let mut open = self.open.remove(&sk).unwrap_or_default();
        open.retain(|a| !a.closed_at(t));
        out.retain(|a| {
            if a.analytic != "AN1547" || a.source_ip != Some(ip) {
                return true;
            }
            let (node, pod) = (detail_str(a, "source_node"), detail_str(a, "source_pod"));
            let silenced = super::suppressed_by(a);
            match open.iter_mut().find(|o| {
                o.rule == a.rule
                    && a.severity <= o.severity
                    && o.source_node == node
                    && o.source_pod == pod
                    && o.suppressed_by.as_deref() == silenced
            }) {
                Some(o) => {
                    o.occurrences = o.occurrences.saturating_add(1);
                    false
                }
                None => true,
            }
        });
        let new: Vec<&Alert> = out
            .iter()
            .filter(|a| a.analytic == "AN1547" && a.source_ip == Some(ip))
            .collect();
        // A new alert of a rule replaces that rule's older one here.
        open.retain(|o| !new.iter().any(|a| a.rule == o.rule));
        // The request extends every alert still open for this source.
        let entry = ActivityEntry::from_event(ev, Phase::After);
        for o in &mut open {
            let listed = o.add(&entry);
            ch.push(ActivityChange {
                state: o.clone(),
                entries: if listed {
                    vec![entry.clone()]
                } else {
                    Vec::new()
                },
            });
        }
        if new.is_empty() {
            if open.is_empty() && remember {
                let q = self.before.entry(sk.clone()).or_default();
                q.retain(|e| t - e.time <= BEFORE_WINDOW);
                if q.len() >= BEFORE_PER_SOURCE {
                    q.pop_front();
                }
                q.push_back(ActivityEntry::from_event(ev, Phase::Before));
            }
        } else {
            let before: Vec<ActivityEntry> = self
                .before
                .remove(&sk)
                .map(|q| {
                    q.into_iter()
                        .filter(|e| e.time <= t && t - e.time <= BEFORE_WINDOW)
                        .collect()
                })
                .unwrap_or_default();
            for a in new {
                let mut st = AlertActivity {
                    alert_id: a.id.clone(),
                    credential_key: key.to_owned(),
                    source_ip: ip,
                    rule: a.rule.clone(),
                    severity: a.severity,
                    source_node: detail_str(a, "source_node"),
                    source_pod: detail_str(a, "source_pod"),
                    suppressed_by: super::suppressed_by(a).map(str::to_owned),
                    opened: t,
                    first: t,
                    last: t,
                    count: 0,
                    occurrences: 1,
                    listed: 0,
                    groups: Vec::new(),
                    other: 0,
                };
                let own = ActivityEntry::from_event(ev, Phase::Alert);
                let mut entries = Vec::new();
                for e in before.iter().chain(std::iter::once(&own)) {
                    if st.add(e) {
                        entries.push(e.clone());
                    }
                }
                ch.push(ActivityChange {
                    state: st.clone(),
                    entries,
                });
                if open.len() >= MAX_OPEN_PER_SOURCE {
                    open.remove(0);
                }
                open.push(st);
            }
        }
        if !open.is_empty() {
            self.open.insert(sk, open);
        }
    }
}

#[cfg(test)]
#[path = "activity_tests.rs"]
mod tests;
