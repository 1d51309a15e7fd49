//! Triage writes (docs/API.md, *Triage*): the shared operation behind
//! `POST /api/v1/alerts/{id}/triage` and gRPC `TriageAlert`, the
//! "suppress alerts like this" suggestion of a false-positive close, and the
//! HTTP route. Attribution is the authenticated principal, never a name from
//! the request; the change is stored, then broadcast to live streams.

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::ApiError;
use crate::alert::Alert;
use crate::auth::Principal;
use crate::policy::SuppressionMatch;
use crate::state::AppState;
use crate::store::query::suppressions::{MAX_TEXT, NewSuppression};
use crate::store::query::{self, FilterError, StoredAlert};
use crate::store::triage as stored;
use crate::triage::{Triage, TriageEvent, TriageStatus, TriageUpdate};

/// Longest alert id accepted (ids are hashes; anything longer is not one).
const MAX_ID: usize = 256;
/// Default life of a suggested suppression (shortened to the policy's cap).
pub const SUGGESTION_TTL: Duration = Duration::days(7);

/// A suppression offered for a false-positive close: the body of
/// `POST /api/v1/suppressions`, not yet submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Suggestion {
    pub owner: String,
    pub reason: String,
    #[serde(serialize_with = "rfc3339_seconds")]
    pub expires: DateTime<Utc>,
    #[serde(rename = "match")]
    pub matcher: SuppressionMatch,
}

fn rfc3339_seconds<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

/// "Suppress alerts like this": the alert's rule, its identity (exact: an
/// identity with `*` would be read as a pattern, so the credential id stands
/// in for it) and its source (`/32`, `/128`). Refused (with the reason) when
/// neither an exact identity nor a credential can anchor it, or when the
/// suppression guards ([`NewSuppression::validate`]) would refuse it.
pub fn suggest(
    a: &Alert,
    by: &str,
    note: Option<&str>,
    now: DateTime<Utc>,
    max: Duration,
) -> Result<Suggestion, String> {
    let username = &a.identity.username;
    let exact_user = !username.is_empty() && !username.contains('*');
    let credential = a.credential_id.clone().filter(|c| !c.is_empty());
    if !exact_user && credential.is_none() {
        return Err(format!(
            "the alert's identity {username:?} cannot be matched exactly (a `*` is read as a pattern) and it names no credential: a suggestion would silence more than alerts like this one; write the suppression by hand"
        ));
    }
    let matcher = SuppressionMatch {
        rule: Some(a.rule.clone()),
        username: exact_user.then(|| username.clone()),
        credential_id: if exact_user { None } else { credential },
        source_cidr: a.source_ip.map(|ip| {
            let len = if ip.is_ipv4() { 32 } else { 128 };
            format!("{ip}/{len}")
        }),
        ..Default::default()
    };
    let ttl = SUGGESTION_TTL.min(max);
    let expires = DateTime::from_timestamp((now + ttl).timestamp(), 0).unwrap_or(now + ttl);
    let mut reason = format!(
        "closed as false positive by {by}: alert {} ({})",
        a.id, a.rule
    );
    if let Some(n) = note {
        let room = MAX_TEXT.saturating_sub(reason.chars().count() + 2);
        reason.push_str(": ");
        reason.extend(n.chars().take(room));
    }
    let s = Suggestion {
        owner: by.to_owned(),
        reason,
        expires,
        matcher,
    };
    NewSuppression {
        owner: s.owner.clone(),
        reason: s.reason.clone(),
        expires: s.expires,
        matcher: s.matcher.clone(),
        created_by: by.to_owned(),
    }
    .validate(now, max)
    .map_err(|e| format!("no suggestion: {e}"))?;
    Ok(s)
}

/// What a triage write answers.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The alert with its new triage, history included.
    pub alert: StoredAlert,
    /// For a false-positive close: the suggestion, or why there is none.
    pub suggestion: Option<Result<Suggestion, String>>,
}

/// Applies `update` to alert `id` on behalf of principal `by`: validates,
/// stores (one transaction), broadcasts the change to live streams.
pub async fn triage_alert(
    state: &AppState,
    id: String,
    update: TriageUpdate,
    by: String,
) -> Result<Outcome, ApiError> {
    if id.is_empty() {
        return Err(FilterError::new("id", "required").into());
    }
    if id.len() > MAX_ID {
        return Err(FilterError::new("id", format!("longer than {MAX_ID} bytes")).into());
    }
    update.validate()?;
    let (key, who, change) = (id.clone(), by.clone(), update.clone());
    let done = state
        .store
        .write(move |tx| {
            // The time is taken under the writer's lock, so history order
            // and change times agree however many responders write at once.
            let now = Utc::now();
            Ok((|| {
                let Some(applied) = stored::apply(tx, &key, &change, &who, now)? else {
                    return Ok(None);
                };
                let alert = query::get_alert(tx, &key)?;
                Ok::<_, query::QueryError>(alert.map(|a| (a, applied, now)))
            })())
        })
        .await??;
    let Some((mut alert, applied, now)) = done else {
        return Err(ApiError::NotFound(format!("no alert with id {id:?}")));
    };
    alert.triage = applied.after.clone();
    // No receiver (no live client) is not an error.
    let _ = state.triage_events.send(TriageEvent {
        alert: alert.alert.clone(),
        before: applied.before,
        after: Triage {
            history: None,
            ..applied.after
        },
        change: applied.change,
    });
    let suggestion = (update.status == Some(TriageStatus::ClosedFalsePositive)).then(|| {
        suggest(
            &alert.alert,
            &by,
            update.note.as_deref(),
            now,
            state.policy.current().max_suppression,
        )
    });
    Ok(Outcome { alert, suggestion })
}

/// The `data` of a `triage` server-sent event.
pub fn stream_data(t: &TriageEvent) -> String {
    serde_json::json!({ "id": t.alert.id, "triage": t.after, "change": t.change }).to_string()
}

/// The gRPC stream message of a triage change.
pub fn stream_pb(t: &TriageEvent) -> credtrail_proto::pb::query::TriageEvent {
    credtrail_proto::pb::query::TriageEvent {
        id: t.alert.id.clone(),
        triage: Some((&t.after).into()),
        change: Some((&t.change).into()),
    }
}

/// gRPC `TriageAlert` for principal `by`.
pub async fn triage_pb(
    state: &AppState,
    r: credtrail_proto::pb::query::TriageAlertRequest,
    by: String,
) -> Result<credtrail_proto::pb::query::TriageAlertResponse, ApiError> {
    let update = TriageUpdate::try_from(&r)?;
    let out = triage_alert(state, r.id, update, by).await?;
    let (suggested, unavailable) = match &out.suggestion {
        Some(Ok(s)) => (Some(s.into()), String::new()),
        Some(Err(why)) => (None, why.clone()),
        None => (None, String::new()),
    };
    Ok(credtrail_proto::pb::query::TriageAlertResponse {
        alert: Some((&out.alert).into()),
        suggested_suppression: suggested,
        suggestion_unavailable: unavailable,
    })
}

/// The route, merged into the API router.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/alerts/{id}/triage", post(post_triage))
}

/// Absent → `None`; `null` → `Some(None)`; a value → `Some(Some(v))`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Body of `POST /api/v1/alerts/{id}/triage`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriageBody {
    #[serde(default)]
    status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    assignee: Option<Option<String>>,
    #[serde(default)]
    note: Option<String>,
}

/// Parses a triage body (pure: also a fuzz entry).
pub fn parse_body(body: &[u8]) -> Result<TriageUpdate, FilterError> {
    let b: TriageBody = serde_json::from_slice(body)
        .map_err(|e| FilterError::new("body", format!("not a triage change: {e}")))?;
    let status = b
        .status
        .map(|s| {
            TriageStatus::parse(&s).ok_or_else(|| {
                FilterError::new(
                    "status",
                    format!(
                        "{s:?} is not one of open, acknowledged, closed_true_positive, closed_false_positive, closed_benign"
                    ),
                )
            })
        })
        .transpose()?;
    let u = TriageUpdate {
        status,
        assignee: b.assignee,
        note: b.note,
    };
    u.validate()?;
    Ok(u)
}

/// The answer of a triage write.
#[derive(Serialize)]
pub struct Answer<'a> {
    pub id: &'a str,
    pub triage: &'a Triage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggested_suppression: Option<&'a Suggestion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion_unavailable: Option<&'a str>,
}

impl<'a> From<&'a Outcome> for Answer<'a> {
    fn from(o: &'a Outcome) -> Self {
        Answer {
            id: &o.alert.alert.id,
            triage: &o.alert.triage,
            suggested_suppression: o.suggestion.as_ref().and_then(|s| s.as_ref().ok()),
            suggestion_unavailable: o
                .suggestion
                .as_ref()
                .and_then(|s| s.as_ref().err())
                .map(String::as_str),
        }
    }
}

async fn post_triage(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let update = parse_body(&body)?;
    let out = triage_alert(&state, id, update, who.name).await?;
    Ok(Json(Answer::from(&out)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Identity, RequestInfo, Severity, SourceClass};

    fn alert(user: &str, cred: Option<&str>, ip: Option<&str>) -> Alert {
        Alert {
            id: "a1".into(),
            rule: "CT1547-002".into(),
            analytic: "AN1547".into(),
            techniques: vec![],
            severity: Severity::High,
            time: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            identity: Identity {
                username: user.into(),
                ..Default::default()
            },
            credential_id: cred.map(Into::into),
            source_ip: ip.map(|i| i.parse().unwrap()),
            source_class: SourceClass::Outside,
            claimed_source_ips: vec![],
            expected: vec![],
            request: RequestInfo::default(),
            evidence: vec![],
            audit_ids: vec!["x".into()],
            observation_ids: vec![],
            reason: String::new(),
            details: serde_json::Value::Null,
        }
    }

    const MAX: Duration = Duration::days(30);

    #[test]
    fn the_suggestion_names_rule_identity_and_source_and_passes_the_guards() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let s = suggest(
            &alert("system:serviceaccount:ci:runner", None, Some("203.0.113.7")),
            "token:alice",
            Some("CI runner"),
            now,
            MAX,
        )
        .unwrap();
        assert_eq!(s.matcher.rule.as_deref(), Some("CT1547-002"));
        assert_eq!(
            s.matcher.username.as_deref(),
            Some("system:serviceaccount:ci:runner")
        );
        assert_eq!(s.matcher.source_cidr.as_deref(), Some("203.0.113.7/32"));
        assert_eq!(s.expires, now + SUGGESTION_TTL);
        assert!(s.reason.ends_with(": CI runner"), "{}", s.reason);
        // The policy's cap wins when shorter.
        let s = suggest(
            &alert("u", None, Some("::1")),
            "t",
            None,
            now,
            Duration::days(2),
        )
        .unwrap();
        assert_eq!(s.expires, now + Duration::days(2));
        assert_eq!(s.matcher.source_cidr.as_deref(), Some("::1/128"));
        // A long note is cut so the reason stays within the guard's bound.
        let s = suggest(
            &alert("u", None, None),
            "t",
            Some(&"n".repeat(5000)),
            now,
            MAX,
        )
        .unwrap();
        assert!(s.reason.chars().count() <= MAX_TEXT);
    }

    #[test]
    fn a_pattern_like_identity_never_becomes_a_pattern() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        for user in ["*", "system:*", "a*b"] {
            let e =
                suggest(&alert(user, None, Some("203.0.113.7")), "t", None, now, MAX).unwrap_err();
            assert!(e.contains("pattern"), "{e}");
            // With a credential, the credential anchors it instead.
            let s = suggest(
                &alert(user, Some("JTI=1"), Some("203.0.113.7")),
                "t",
                None,
                now,
                MAX,
            )
            .unwrap();
            assert_eq!(s.matcher.username, None);
            assert_eq!(s.matcher.credential_id.as_deref(), Some("JTI=1"));
        }
    }

    #[test]
    fn bodies_are_strict_and_name_the_field() {
        let u = parse_body(br#"{"status":"acknowledged","assignee":null}"#).unwrap();
        assert_eq!(u.status, Some(TriageStatus::Acknowledged));
        assert_eq!(u.assignee, Some(None));
        let u = parse_body(br#"{"note":"x"}"#).unwrap();
        assert_eq!(u.assignee, None);
        for (body, field) in [
            (&br#"{"status":"closed"}"#[..], "status"),
            (br#"{"status":"done"}"#, "status"),
            (br#"{}"#, "body"),
            (br#"{"by":"token:admin","note":"x"}"#, "body"),
            (br#"{"assignee":""}"#, "assignee"),
            (br#"not json"#, "body"),
        ] {
            assert_eq!(
                parse_body(body).unwrap_err().field,
                field,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
