//! Plausibility of times that come from outside: audit events and agent
//! observations. A time before 2000-01-01 or more than a day after the
//! moment we received it is refused (counted under
//! [`REASON`]) before it reaches detection, so no time arithmetic
//! downstream can reach chrono's limits and no sender is told to retry an
//! input that can never succeed.

use chrono::{DateTime, TimeDelta, Utc};
use credtrail_proto::model::Observation;

use crate::audit::AuditEvent;

/// The reject-metric reason for an implausible time.
pub const REASON: &str = "implausible_time";

/// Earliest accepted time: 2000-01-01T00:00:00Z.
pub const EARLIEST_UNIX: i64 = 946_684_800;

/// How far after the receive time a time may lie (clock skew).
pub const MAX_AHEAD: TimeDelta = TimeDelta::days(1);

/// A time outside the plausible range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Implausible {
    #[error("{field}: {time} is before 2000-01-01T00:00:00Z")]
    TooOld { field: &'static str, time: String },
    #[error("{field}: {time} is more than a day after the receive time {now}")]
    TooNew {
        field: &'static str,
        time: String,
        now: String,
    },
}

fn show(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Checks one time against the receive time `now`.
pub fn check(field: &'static str, t: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), Implausible> {
    if t.timestamp() < EARLIEST_UNIX {
        return Err(Implausible::TooOld {
            field,
            time: show(t),
        });
    }
    let latest = now
        .checked_add_signed(MAX_AHEAD)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if t > latest {
        return Err(Implausible::TooNew {
            field,
            time: show(t),
            now: show(now),
        });
    }
    Ok(())
}

/// Checks every time an audit event carries.
pub fn check_audit_event(ev: &AuditEvent, now: DateTime<Utc>) -> Result<(), Implausible> {
    let times = [
        ("requestReceivedTimestamp", ev.request_received_timestamp),
        ("stageTimestamp", ev.stage_timestamp),
        ("timestamp", ev.timestamp),
    ];
    for (field, t) in times {
        if let Some(t) = t {
            check(field, t, now)?;
        }
    }
    Ok(())
}

/// Checks an agent observation's time.
pub fn check_observation(obs: &Observation, now: DateTime<Utc>) -> Result<(), Implausible> {
    check("time", obs.time, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn range_edges() {
        let now = t("2026-01-01T00:00:00Z");
        assert!(check("x", t("2000-01-01T00:00:00Z"), now).is_ok());
        assert!(matches!(
            check("x", t("1999-12-31T23:59:59Z"), now),
            Err(Implausible::TooOld { .. })
        ));
        assert!(check("x", t("2026-01-02T00:00:00Z"), now).is_ok());
        assert!(matches!(
            check("x", t("2026-01-02T00:00:01Z"), now),
            Err(Implausible::TooNew { .. })
        ));
    }

    #[test]
    fn chrono_limits_are_refused_without_panicking() {
        let now = Utc::now();
        let e = check("time", DateTime::<Utc>::MIN_UTC, now).unwrap_err();
        assert!(e.to_string().contains("before 2000"), "{e}");
        assert!(check("time", DateTime::<Utc>::MAX_UTC, now).is_err());
        // A receive time at the very end of chrono's range does not overflow.
        assert!(check("time", now, DateTime::<Utc>::MAX_UTC).is_ok());
    }

    #[test]
    fn every_audit_timestamp_is_checked() {
        let now = t("2026-01-01T00:00:00Z");
        let ev: AuditEvent = crate::audit::parse_event(
            br#"{"level":"Metadata","auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":"2025-12-31T00:00:00Z","stageTimestamp":"-262143-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        let e = check_audit_event(&ev, now).unwrap_err();
        assert!(e.to_string().starts_with("stageTimestamp"), "{e}");
    }
}
