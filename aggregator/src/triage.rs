//! Alert triage, the domain side: statuses, the triage state an alert
//! carries, one attributed change, and the validation of a requested change
//! (bounded, never interpreted). Stored by `store/triage.rs`; served by
//! `api/triage.rs` (docs/API.md, *Triage*).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::store::query::FilterError;

/// Longest note, in characters.
pub const MAX_NOTE: usize = 4096;
/// Longest assignee, in characters.
pub const MAX_ASSIGNEE: usize = 256;
/// History entries kept per alert (the oldest beyond are dropped, counted).
pub const MAX_HISTORY: usize = 200;

/// A triage status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TriageStatus {
    #[default]
    Open,
    Acknowledged,
    ClosedTruePositive,
    ClosedFalsePositive,
    ClosedBenign,
}

impl TriageStatus {
    pub const ALL: [TriageStatus; 5] = [
        TriageStatus::Open,
        TriageStatus::Acknowledged,
        TriageStatus::ClosedTruePositive,
        TriageStatus::ClosedFalsePositive,
        TriageStatus::ClosedBenign,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriageStatus::Open => "open",
            TriageStatus::Acknowledged => "acknowledged",
            TriageStatus::ClosedTruePositive => "closed_true_positive",
            TriageStatus::ClosedFalsePositive => "closed_false_positive",
            TriageStatus::ClosedBenign => "closed_benign",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn is_closed(self) -> bool {
        matches!(
            self,
            TriageStatus::ClosedTruePositive
                | TriageStatus::ClosedFalsePositive
                | TriageStatus::ClosedBenign
        )
    }
}

/// The `status` filter: one exact status, or any closed one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Is(TriageStatus),
    AnyClosed,
}

impl StatusFilter {
    pub fn parse(s: &str) -> Result<Self, FilterError> {
        if s == "closed" {
            return Ok(StatusFilter::AnyClosed);
        }
        TriageStatus::parse(s).map(StatusFilter::Is).ok_or_else(|| {
            FilterError::new(
                "status",
                format!(
                    "{s:?} is not one of open, acknowledged, closed_true_positive, closed_false_positive, closed_benign, closed"
                ),
            )
        })
    }

    pub fn matches(self, s: TriageStatus) -> bool {
        match self {
            StatusFilter::Is(want) => want == s,
            StatusFilter::AnyClosed => s.is_closed(),
        }
    }
}

/// One attributed change, as kept in the alert's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TriageChange {
    pub at: DateTime<Utc>,
    /// The authenticated principal.
    pub by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<TriageStatus>,
    /// `Some(None)`: unassigned; `None`: the assignee was left as it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assignee: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An alert's triage state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Triage {
    pub status: TriageStatus,
    pub assignee: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
    /// Oldest first; only in the detail view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<TriageChange>>,
    /// History entries dropped past [`MAX_HISTORY`] (detail view, when any).
    #[serde(skip_serializing_if = "is_zero")]
    pub history_dropped: u64,
    /// The latest note written (text, never interpreted).
    pub last_note: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A stored triage change, as the live stream carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct TriageEvent {
    /// The alert (for the stream's filters).
    pub alert: crate::alert::Alert,
    /// The state before and after the change (without history).
    pub before: Triage,
    pub after: Triage,
    pub change: TriageChange,
}

/// Triage events buffered per live-stream client before it is told it lagged.
pub const EVENT_CHANNEL: usize = 1024;

/// A requested change, before attribution.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TriageUpdate {
    pub status: Option<TriageStatus>,
    /// `Some(None)` unassigns.
    pub assignee: Option<Option<String>>,
    pub note: Option<String>,
}

/// Control characters (C0, DEL, C1) other than those `allowed`.
fn has_control(s: &str, allowed: &[char]) -> bool {
    s.chars().any(|c| c.is_control() && !allowed.contains(&c))
}

impl TriageUpdate {
    /// At least one field; an assignee of 1..=[`MAX_ASSIGNEE`] characters
    /// without control characters; a note of 1..=[`MAX_NOTE`] characters
    /// without control characters other than newline and tab.
    pub fn validate(&self) -> Result<(), FilterError> {
        if self.status.is_none() && self.assignee.is_none() && self.note.is_none() {
            return Err(FilterError::new(
                "body",
                "nothing to change: give at least one of status, assignee, note",
            ));
        }
        if let Some(Some(a)) = &self.assignee {
            if a.trim().is_empty() {
                return Err(FilterError::new("assignee", "empty; send null to unassign"));
            }
            if a.chars().count() > MAX_ASSIGNEE {
                return Err(FilterError::new(
                    "assignee",
                    format!("longer than {MAX_ASSIGNEE} characters"),
                ));
            }
            if has_control(a, &[]) {
                return Err(FilterError::new("assignee", "contains control characters"));
            }
        }
        if let Some(n) = &self.note {
            if n.trim().is_empty() {
                return Err(FilterError::new("note", "empty"));
            }
            if n.chars().count() > MAX_NOTE {
                return Err(FilterError::new(
                    "note",
                    format!("longer than {MAX_NOTE} characters"),
                ));
            }
            if has_control(n, &['\n', '\t']) {
                return Err(FilterError::new(
                    "note",
                    "contains control characters (only newline and tab are allowed)",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_closed_filter_matches_every_closed_one() {
        for s in TriageStatus::ALL {
            assert_eq!(TriageStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        let closed = StatusFilter::parse("closed").unwrap();
        assert!(!closed.matches(TriageStatus::Open));
        assert!(!closed.matches(TriageStatus::Acknowledged));
        assert!(closed.matches(TriageStatus::ClosedBenign));
        assert_eq!(StatusFilter::parse("opened").unwrap_err().field, "status");
        assert!(
            !StatusFilter::parse("open")
                .unwrap()
                .matches(TriageStatus::Acknowledged)
        );
    }

    #[test]
    fn updates_are_bounded_and_name_the_field() {
        let field = |u: TriageUpdate| u.validate().unwrap_err().field;
        assert_eq!(field(TriageUpdate::default()), "body");
        let note = |n: &str| TriageUpdate {
            note: Some(n.into()),
            ..Default::default()
        };
        assert!(note("multi\nline\twith tab").validate().is_ok());
        assert_eq!(field(note(&"x".repeat(MAX_NOTE + 1))), "note");
        assert!(note(&"é".repeat(MAX_NOTE)).validate().is_ok());
        assert_eq!(field(note("\u{1b}[31mred")), "note");
        assert_eq!(field(note("cr\rreturn")), "note");
        assert_eq!(field(note("\u{9b}c1")), "note");
        assert_eq!(field(note("  ")), "note");
        let who = |a: &str| TriageUpdate {
            assignee: Some(Some(a.into())),
            ..Default::default()
        };
        assert!(who("alice").validate().is_ok());
        assert_eq!(field(who("")), "assignee");
        assert_eq!(field(who("a\nb")), "assignee");
        assert_eq!(field(who(&"a".repeat(MAX_ASSIGNEE + 1))), "assignee");
        let unassign = TriageUpdate {
            assignee: Some(None),
            ..Default::default()
        };
        assert!(unassign.validate().is_ok());
    }
}
