//! Triage conversions between the domain ([`crate::triage`]) and the
//! generated `credtrail.query.v1` messages.

use credtrail_proto::pb::query as pb;

use super::convert::{ConvertError, timestamp};
use super::triage::Suggestion;
use crate::triage::{StatusFilter, Triage, TriageChange, TriageStatus, TriageUpdate};

impl From<TriageStatus> for pb::TriageStatus {
    fn from(s: TriageStatus) -> Self {
        match s {
            TriageStatus::Open => pb::TriageStatus::Open,
            TriageStatus::Acknowledged => pb::TriageStatus::Acknowledged,
            TriageStatus::ClosedTruePositive => pb::TriageStatus::ClosedTruePositive,
            TriageStatus::ClosedFalsePositive => pb::TriageStatus::ClosedFalsePositive,
            TriageStatus::ClosedBenign => pb::TriageStatus::ClosedBenign,
        }
    }
}

fn status_enum(field: &'static str, v: i32) -> Result<pb::TriageStatus, ConvertError> {
    pb::TriageStatus::try_from(v).map_err(|_| ConvertError::Invalid {
        field,
        message: format!("unknown triage status {v}"),
    })
}

/// `AlertFilter.status`: UNSPECIFIED = no constraint, CLOSED = any closed.
pub fn status_filter(v: i32) -> Result<Option<StatusFilter>, ConvertError> {
    Ok(match status_enum("status", v)? {
        pb::TriageStatus::Unspecified => None,
        pb::TriageStatus::Closed => Some(StatusFilter::AnyClosed),
        s => Some(StatusFilter::Is(status_value(s).unwrap_or_default())),
    })
}

fn status_value(s: pb::TriageStatus) -> Option<TriageStatus> {
    match s {
        pb::TriageStatus::Open => Some(TriageStatus::Open),
        pb::TriageStatus::Acknowledged => Some(TriageStatus::Acknowledged),
        pb::TriageStatus::ClosedTruePositive => Some(TriageStatus::ClosedTruePositive),
        pb::TriageStatus::ClosedFalsePositive => Some(TriageStatus::ClosedFalsePositive),
        pb::TriageStatus::ClosedBenign => Some(TriageStatus::ClosedBenign),
        pb::TriageStatus::Unspecified | pb::TriageStatus::Closed => None,
    }
}

impl TryFrom<&pb::TriageAlertRequest> for TriageUpdate {
    type Error = ConvertError;
    /// UNSPECIFIED leaves the status, CLOSED is refused; an empty assignee
    /// unassigns.
    fn try_from(r: &pb::TriageAlertRequest) -> Result<Self, ConvertError> {
        let status = match status_enum("status", r.status)? {
            pb::TriageStatus::Unspecified => None,
            pb::TriageStatus::Closed => {
                return Err(ConvertError::Invalid {
                    field: "status",
                    message: "TRIAGE_STATUS_CLOSED is a filter; close as true positive, false positive or benign".into(),
                });
            }
            s => status_value(s),
        };
        Ok(TriageUpdate {
            status,
            assignee: r
                .assignee
                .as_ref()
                .map(|a| (!a.is_empty()).then(|| a.clone())),
            note: r.note.clone(),
        })
    }
}

impl From<&TriageChange> for pb::TriageChange {
    fn from(c: &TriageChange) -> Self {
        pb::TriageChange {
            at: Some(timestamp(c.at)),
            by: c.by.clone(),
            status: c
                .status
                .map_or(pb::TriageStatus::Unspecified, Into::into)
                .into(),
            assignee_changed: c.assignee.is_some(),
            assignee: c.assignee.clone().flatten(),
            note: c.note.clone(),
        }
    }
}

impl From<&Triage> for pb::Triage {
    fn from(t: &Triage) -> Self {
        pb::Triage {
            status: pb::TriageStatus::from(t.status).into(),
            assignee: t.assignee.clone(),
            updated_at: t.updated_at.map(timestamp),
            updated_by: t.updated_by.clone().unwrap_or_default(),
            history: t
                .history
                .iter()
                .flatten()
                .map(pb::TriageChange::from)
                .collect(),
            history_dropped: t.history_dropped,
            last_note: t.last_note.clone(),
        }
    }
}

impl From<&Suggestion> for pb::CreateSuppressionRequest {
    fn from(s: &Suggestion) -> Self {
        pb::CreateSuppressionRequest {
            owner: s.owner.clone(),
            reason: s.reason.clone(),
            expires: Some(timestamp(s.expires)),
            r#match: Some((&s.matcher).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_and_request_statuses_convert() {
        assert_eq!(status_filter(0).unwrap(), None);
        assert_eq!(
            status_filter(pb::TriageStatus::Closed as i32).unwrap(),
            Some(StatusFilter::AnyClosed)
        );
        assert_eq!(
            status_filter(pb::TriageStatus::Open as i32).unwrap(),
            Some(StatusFilter::Is(TriageStatus::Open))
        );
        assert!(status_filter(99).is_err());
        let mut r = pb::TriageAlertRequest {
            id: "a".into(),
            status: pb::TriageStatus::Closed as i32,
            assignee: Some(String::new()),
            note: None,
        };
        assert!(TriageUpdate::try_from(&r).is_err());
        r.status = pb::TriageStatus::ClosedBenign as i32;
        let u = TriageUpdate::try_from(&r).unwrap();
        assert_eq!(u.status, Some(TriageStatus::ClosedBenign));
        assert_eq!(u.assignee, Some(None));
        for s in TriageStatus::ALL {
            assert_eq!(status_value(pb::TriageStatus::from(s)), Some(s));
        }
    }
}
