//! Explicit conversions between the domain types and the generated
//! `credtrail.query.v1` messages. Generated types stop here: the rest of the
//! aggregator never sees them.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use credtrail_proto::pb::query as pb;

use crate::alert::{
    Alert, Evidence, ExpectedLocation, Identity, RequestInfo, Severity, SourceClass,
};
use crate::store::query::{AlertFilter, FilterError, StoredAlert};

/// A proto message that cannot become a domain value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("field `{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("field `{0}` is required")]
    Missing(&'static str),
}

impl From<FilterError> for ConvertError {
    fn from(e: FilterError) -> Self {
        ConvertError::Invalid {
            field: e.field,
            message: e.message,
        }
    }
}

/// Domain time to protobuf `Timestamp`.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// Protobuf `Timestamp` to domain time.
pub fn time_from(
    field: &'static str,
    t: &prost_types::Timestamp,
) -> Result<DateTime<Utc>, ConvertError> {
    let nanos = u32::try_from(t.nanos).map_err(|_| ConvertError::Invalid {
        field,
        message: format!("negative nanos {}", t.nanos),
    })?;
    DateTime::from_timestamp(t.seconds, nanos).ok_or_else(|| ConvertError::Invalid {
        field,
        message: format!("timestamp {}s out of range", t.seconds),
    })
}

impl From<Severity> for pb::Severity {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Info => pb::Severity::Info,
            Severity::Low => pb::Severity::Low,
            Severity::Medium => pb::Severity::Medium,
            Severity::High => pb::Severity::High,
            Severity::Critical => pb::Severity::Critical,
        }
    }
}

/// `None` for `SEVERITY_UNSPECIFIED`; an error for a number no enum value has.
pub fn severity_from(field: &'static str, raw: i32) -> Result<Option<Severity>, ConvertError> {
    let s = pb::Severity::try_from(raw).map_err(|_| ConvertError::Invalid {
        field,
        message: format!("unknown severity {raw}"),
    })?;
    Ok(match s {
        pb::Severity::Unspecified => None,
        pb::Severity::Info => Some(Severity::Info),
        pb::Severity::Low => Some(Severity::Low),
        pb::Severity::Medium => Some(Severity::Medium),
        pb::Severity::High => Some(Severity::High),
        pb::Severity::Critical => Some(Severity::Critical),
    })
}

impl From<SourceClass> for pb::SourceClass {
    fn from(c: SourceClass) -> Self {
        match c {
            SourceClass::ExpectedPod => pb::SourceClass::ExpectedPod,
            SourceClass::ExpectedNode => pb::SourceClass::ExpectedNode,
            SourceClass::OtherNode => pb::SourceClass::OtherNode,
            SourceClass::OtherPod => pb::SourceClass::OtherPod,
            SourceClass::TrustedRange => pb::SourceClass::TrustedRange,
            SourceClass::Outside => pb::SourceClass::Outside,
            SourceClass::Unknown => pb::SourceClass::Unknown,
        }
    }
}

impl TryFrom<pb::SourceClass> for SourceClass {
    type Error = ConvertError;
    fn try_from(c: pb::SourceClass) -> Result<Self, ConvertError> {
        Ok(match c {
            pb::SourceClass::Unspecified => return Err(ConvertError::Missing("source_class")),
            pb::SourceClass::ExpectedPod => SourceClass::ExpectedPod,
            pb::SourceClass::ExpectedNode => SourceClass::ExpectedNode,
            pb::SourceClass::OtherNode => SourceClass::OtherNode,
            pb::SourceClass::OtherPod => SourceClass::OtherPod,
            pb::SourceClass::TrustedRange => SourceClass::TrustedRange,
            pb::SourceClass::Outside => SourceClass::Outside,
            pb::SourceClass::Unknown => SourceClass::Unknown,
        })
    }
}

impl From<&Identity> for pb::Identity {
    fn from(i: &Identity) -> Self {
        let (sa_ns, sa_name) = match &i.service_account {
            Some((ns, name)) => (Some(ns.clone()), Some(name.clone())),
            None => (None, None),
        };
        pb::Identity {
            username: i.username.clone(),
            uid: i.uid.clone(),
            groups: i.groups.clone(),
            service_account_namespace: sa_ns,
            service_account_name: sa_name,
            impersonated_by: i.impersonated_by.clone(),
        }
    }
}

impl From<pb::Identity> for Identity {
    fn from(i: pb::Identity) -> Self {
        let service_account = match (i.service_account_namespace, i.service_account_name) {
            (Some(ns), Some(name)) => Some((ns, name)),
            _ => None,
        };
        Identity {
            username: i.username,
            uid: i.uid,
            groups: i.groups,
            service_account,
            impersonated_by: i.impersonated_by,
        }
    }
}

impl From<&ExpectedLocation> for pb::ExpectedLocation {
    fn from(e: &ExpectedLocation) -> Self {
        pb::ExpectedLocation {
            kind: e.kind.clone(),
            value: e.value.clone(),
            basis: e.basis.clone(),
        }
    }
}

impl From<pb::ExpectedLocation> for ExpectedLocation {
    fn from(e: pb::ExpectedLocation) -> Self {
        ExpectedLocation {
            kind: e.kind,
            value: e.value,
            basis: e.basis,
        }
    }
}

impl From<&RequestInfo> for pb::RequestInfo {
    fn from(r: &RequestInfo) -> Self {
        pb::RequestInfo {
            verb: r.verb.clone(),
            api_group: r.api_group.clone(),
            resource: r.resource.clone(),
            subresource: r.subresource.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            request_uri: r.request_uri.clone(),
            user_agent: r.user_agent.clone(),
            decision: r.decision.clone(),
            response_code: r.response_code,
        }
    }
}

impl From<pb::RequestInfo> for RequestInfo {
    fn from(r: pb::RequestInfo) -> Self {
        RequestInfo {
            verb: r.verb,
            api_group: r.api_group,
            resource: r.resource,
            subresource: r.subresource,
            namespace: r.namespace,
            name: r.name,
            request_uri: r.request_uri,
            user_agent: r.user_agent,
            decision: r.decision,
            response_code: r.response_code,
        }
    }
}

impl From<&Evidence> for pb::Evidence {
    fn from(e: &Evidence) -> Self {
        pb::Evidence {
            kind: e.kind.clone(),
            observation_id: e.observation_id.clone(),
            node: e.node.clone(),
            pod: e.pod.clone(),
            container_id: e.container_id.clone(),
            pid: e.pid,
            comm: e.comm.clone(),
            exe: e.exe.clone(),
            path: e.path.clone(),
            time: Some(timestamp(e.time)),
        }
    }
}

impl TryFrom<pb::Evidence> for Evidence {
    type Error = ConvertError;
    fn try_from(e: pb::Evidence) -> Result<Self, ConvertError> {
        let time = e.time.ok_or(ConvertError::Missing("evidence.time"))?;
        Ok(Evidence {
            kind: e.kind,
            observation_id: e.observation_id,
            node: e.node,
            pod: e.pod,
            container_id: e.container_id,
            pid: e.pid,
            comm: e.comm,
            exe: e.exe,
            path: e.path,
            time: time_from("evidence.time", &time)?,
        })
    }
}

impl From<&Alert> for pb::Alert {
    fn from(a: &Alert) -> Self {
        pb::Alert {
            id: a.id.clone(),
            rule: a.rule.clone(),
            analytic: a.analytic.clone(),
            techniques: a.techniques.clone(),
            severity: pb::Severity::from(a.severity).into(),
            time: Some(timestamp(a.time)),
            identity: Some((&a.identity).into()),
            credential_id: a.credential_id.clone(),
            source_ip: a.source_ip.map(|ip| ip.to_string()),
            source_class: pb::SourceClass::from(a.source_class).into(),
            claimed_source_ips: a.claimed_source_ips.clone(),
            expected: a.expected.iter().map(Into::into).collect(),
            request: Some((&a.request).into()),
            evidence: a.evidence.iter().map(Into::into).collect(),
            audit_ids: a.audit_ids.clone(),
            observation_ids: a.observation_ids.clone(),
            reason: a.reason.clone(),
            details_json: if a.details.is_null() {
                String::new()
            } else {
                a.details.to_string()
            },
            suppressed_by: None,
            // A domain alert without stored state (live stream, replay): open.
            triage: Some(pb::Triage::from(&crate::triage::Triage::default())),
            credential_inventory: super::context::link(a).map(|l| pb::CredentialInventoryLink {
                credential_id: l.credential_id,
                path: l.path,
            }),
            ..Default::default()
        }
    }
}

impl From<&StoredAlert> for pb::Alert {
    fn from(s: &StoredAlert) -> Self {
        pb::Alert {
            suppressed_by: s.suppressed_by.clone(),
            triage: Some(pb::Triage::from(&s.triage)),
            ..pb::Alert::from(&s.alert)
        }
    }
}

impl TryFrom<pb::Alert> for Alert {
    type Error = ConvertError;
    fn try_from(a: pb::Alert) -> Result<Self, ConvertError> {
        let severity =
            severity_from("severity", a.severity)?.ok_or(ConvertError::Missing("severity"))?;
        let source_class = pb::SourceClass::try_from(a.source_class)
            .map_err(|_| ConvertError::Invalid {
                field: "source_class",
                message: format!("unknown source class {}", a.source_class),
            })?
            .try_into()?;
        let time = a.time.ok_or(ConvertError::Missing("time"))?;
        let source_ip = a
            .source_ip
            .map(|s| {
                s.parse::<IpAddr>().map_err(|e| ConvertError::Invalid {
                    field: "source_ip",
                    message: format!("{s:?}: {e}"),
                })
            })
            .transpose()?;
        let details = if a.details_json.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&a.details_json).map_err(|e| ConvertError::Invalid {
                field: "details_json",
                message: e.to_string(),
            })?
        };
        Ok(Alert {
            id: a.id,
            rule: a.rule,
            analytic: a.analytic,
            techniques: a.techniques,
            severity,
            time: time_from("time", &time)?,
            identity: a.identity.ok_or(ConvertError::Missing("identity"))?.into(),
            credential_id: a.credential_id,
            source_ip,
            source_class,
            claimed_source_ips: a.claimed_source_ips,
            expected: a.expected.into_iter().map(Into::into).collect(),
            request: a.request.ok_or(ConvertError::Missing("request"))?.into(),
            evidence: a
                .evidence
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
            audit_ids: a.audit_ids,
            observation_ids: a.observation_ids,
            reason: a.reason,
            details,
        })
    }
}

impl TryFrom<pb::AlertFilter> for AlertFilter {
    type Error = ConvertError;
    fn try_from(f: pb::AlertFilter) -> Result<Self, ConvertError> {
        let source_ip = f
            .source_ip
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpAddr>().map_err(|e| ConvertError::Invalid {
                    field: "source_ip",
                    message: format!("{s:?} is not an IP address: {e}"),
                })
            })
            .transpose()?;
        let filter = AlertFilter {
            since: f
                .since
                .as_ref()
                .map(|t| time_from("since", t))
                .transpose()?,
            until: f
                .until
                .as_ref()
                .map(|t| time_from("until", t))
                .transpose()?,
            rule: non_empty(f.rule),
            analytic: non_empty(f.analytic),
            min_severity: severity_from("min_severity", f.min_severity)?,
            identity: non_empty(f.identity),
            credential_id: non_empty(f.credential_id),
            source_ip,
            node: non_empty(f.node),
            namespace: non_empty(f.namespace),
            include_suppressed: f.include_suppressed,
            status: super::convert_triage::status_filter(f.status)?,
            assignee: non_empty(f.assignee),
        };
        filter.validate()?;
        Ok(filter)
    }
}

pub(crate) fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Alert {
        Alert {
            id: "a1".into(),
            rule: "CT1547-001".into(),
            analytic: "AN1547".into(),
            techniques: vec!["T1528".into(), "T1550.001".into()],
            severity: Severity::High,
            time: DateTime::from_timestamp(1_700_000_000, 123_000_000).unwrap(),
            identity: Identity {
                username: "system:serviceaccount:ns:sa".into(),
                uid: Some("u1".into()),
                groups: vec!["system:serviceaccounts".into()],
                service_account: Some(("ns".into(), "sa".into())),
                impersonated_by: None,
            },
            credential_id: Some("JTI=abc".into()),
            source_ip: Some("127.0.9.9".parse().unwrap()),
            source_class: SourceClass::Outside,
            claimed_source_ips: vec!["10.0.0.1".into()],
            expected: vec![ExpectedLocation {
                kind: "node".into(),
                value: "node-a".into(),
                basis: "token claims".into(),
            }],
            request: RequestInfo {
                verb: "get".into(),
                resource: Some("secrets".into()),
                namespace: Some("ns".into()),
                request_uri: "/api/v1/namespaces/ns/secrets".into(),
                decision: "allow".into(),
                response_code: Some(200),
                ..Default::default()
            },
            evidence: vec![Evidence {
                kind: "credential_read".into(),
                observation_id: "node-a/1/2".into(),
                node: "node-a".into(),
                pid: Some(7),
                time: DateTime::from_timestamp(1_699_999_990, 0).unwrap(),
                ..Default::default()
            }],
            audit_ids: vec!["aud-1".into()],
            observation_ids: vec!["node-a/1/2".into()],
            reason: "used off its node".into(),
            details: serde_json::json!({"k": 1}),
        }
    }

    #[test]
    fn alert_round_trips_through_proto() {
        let a = sample();
        let back = Alert::try_from(pb::Alert::from(&a)).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn proto_alert_without_time_is_rejected() {
        let mut p = pb::Alert::from(&sample());
        p.time = None;
        assert_eq!(
            Alert::try_from(p).unwrap_err(),
            ConvertError::Missing("time")
        );
    }

    #[test]
    fn filter_with_bad_ip_names_the_field() {
        let f = pb::AlertFilter {
            source_ip: Some("not-an-ip".into()),
            ..Default::default()
        };
        let err = AlertFilter::try_from(f).unwrap_err();
        assert!(err.to_string().contains("source_ip"), "{err}");
    }

    #[test]
    fn filter_with_unknown_severity_is_rejected() {
        let f = pb::AlertFilter {
            min_severity: 42,
            ..Default::default()
        };
        assert!(AlertFilter::try_from(f).is_err());
    }
}
