//! Typed subset of `audit.k8s.io/v1` (and `v1beta1`) `Event`: only the fields
//! detection and the store need; unknown fields are ignored (serde's default),
//! so v1beta1-only fields (`timestamp`, `metadata`) and future fields pass.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Audit level of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
    /// A level this version does not know.
    #[serde(other)]
    Other,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
            Level::Other => "Other",
        }
    }
}

/// Stage of the request an event was written at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
    #[serde(other)]
    Other,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::RequestReceived => "RequestReceived",
            Stage::ResponseStarted => "ResponseStarted",
            Stage::ResponseComplete => "ResponseComplete",
            Stage::Panic => "Panic",
            Stage::Other => "Other",
        }
    }

    /// Whether detection judges events of this stage. Only the final stages
    /// carry the response code and object; `ResponseStarted` (long-running
    /// requests) is always followed by `ResponseComplete`.
    pub fn is_final(self) -> bool {
        matches!(self, Stage::ResponseComplete | Stage::Panic)
    }
}

/// `user.extra` keys set by the API server for bound tokens and x509 clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserExtra {
    #[serde(rename = "authentication.kubernetes.io/credential-id", default)]
    pub credential_id: Vec<String>,
    #[serde(rename = "authentication.kubernetes.io/node-name", default)]
    pub node_name: Vec<String>,
    #[serde(rename = "authentication.kubernetes.io/node-uid", default)]
    pub node_uid: Vec<String>,
    #[serde(rename = "authentication.kubernetes.io/pod-name", default)]
    pub pod_name: Vec<String>,
    #[serde(rename = "authentication.kubernetes.io/pod-uid", default)]
    pub pod_uid: Vec<String>,
}

/// `user` / `impersonatedUser`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub extra: UserExtra,
}

/// `objectRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub api_group: Option<String>,
    #[serde(default)]
    pub subresource: Option<String>,
}

/// `responseStatus` (a `metav1.Status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ResponseStatus {
    #[serde(default)]
    pub code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// The annotations detection reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Annotations {
    #[serde(rename = "authorization.k8s.io/decision", default)]
    pub decision: Option<String>,
    #[serde(rename = "authorization.k8s.io/reason", default)]
    pub reason: Option<String>,
    /// `JTI=<uuid>` of a token minted by this TokenRequest (`create` on
    /// `serviceaccounts/token`, Kubernetes 1.29+).
    #[serde(rename = "authentication.kubernetes.io/issued-credential-id", default)]
    pub issued_credential_id: Option<String>,
}

/// `metadata` of a request/response object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
}

/// `roleRef` of a binding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub struct RoleRef {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// A binding subject.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
pub struct Subject {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// An RBAC `PolicyRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_resource_ur_ls: Vec<String>,
}

/// The parts of a request/response object that RBAC detection reads
/// (bindings and roles), as read by [`super::read_object`]: every field that
/// had an unexpected shape is `None`/skipped and named in `unreadable`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct K8sObject {
    pub kind: Option<String>,
    pub metadata: ObjectMeta,
    pub role_ref: Option<RoleRef>,
    pub subjects: Option<Vec<Subject>>,
    pub rules: Option<Vec<PolicyRule>>,
    /// Fields present but unreadable (`subjects[1].name: expected a string`).
    pub unreadable: Vec<String>,
    /// Kept as JSON, read when needed (Node, TokenRequest, Service).
    pub spec: Option<serde_json::Value>,
    pub status: Option<serde_json::Value>,
    /// EndpointSlice `endpoints`.
    pub endpoints: Option<serde_json::Value>,
    /// Endpoints `subsets`.
    pub subsets: Option<serde_json::Value>,
}

/// `requestObject` / `responseObject` kept as the raw JSON the API server
/// wrote: an object, a JSON-patch array, a string, anything. Interpreted only
/// where detection needs it ([`super::read_object`], `detect::patch`), so no
/// shape can make the event unreadable.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct RawObject(Box<serde_json::value::RawValue>);

/// Never the content: a request or response object may be a Secret.
impl std::fmt::Debug for RawObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawObject({} bytes)", self.0.get().len())
    }
}

impl RawObject {
    /// The JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }

    /// The value; `None` only if the text is not JSON (it always is when
    /// it came through the parser).
    pub fn value(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.0.get()).ok()
    }

    /// Wraps a value (tests, builders).
    pub fn from_value(v: &serde_json::Value) -> Self {
        // A Value always serializes.
        Self(serde_json::value::to_raw_value(v).unwrap_or_else(|_| {
            serde_json::value::RawValue::from_string("null".to_owned()).unwrap()
        }))
    }
}

impl PartialEq for RawObject {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// One audit event (`audit.k8s.io/v1` or `v1beta1`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub level: Level,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: Stage,
    #[serde(rename = "requestURI", default)]
    pub request_uri: String,
    pub verb: String,
    pub user: UserInfo,
    #[serde(default)]
    pub impersonated_user: Option<UserInfo>,
    #[serde(rename = "sourceIPs", default)]
    pub source_ips: Vec<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    #[serde(default)]
    pub response_status: Option<ResponseStatus>,
    #[serde(default)]
    pub request_object: Option<RawObject>,
    #[serde(default)]
    pub response_object: Option<RawObject>,
    #[serde(default)]
    pub request_received_timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    pub stage_timestamp: Option<DateTime<Utc>>,
    /// v1beta1 only.
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    pub annotations: Annotations,
}

impl AuditEvent {
    /// When the request was received (falls back to the v1beta1 `timestamp`,
    /// then the stage time; the Unix epoch if none is present).
    pub fn time(&self) -> DateTime<Utc> {
        self.request_received_timestamp
            .or(self.timestamp)
            .or(self.stage_timestamp)
            .unwrap_or_default()
    }

    /// The last `sourceIPs` entry, the only one the client cannot forge.
    /// An IPv4-mapped IPv6 address (`::ffff:10.0.1.11`, what a dual-stack
    /// listener or proxy may log for an IPv4 peer) is the IPv4 address it
    /// holds, so it matches the node and pod addresses agents report.
    pub fn source_ip(&self) -> Option<IpAddr> {
        self.source_ips
            .last()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
    }

    /// Whether the request is a server-side dry run (`dryRun=All` in the
    /// query, as `kubectl --dry-run=server` and `kubectl diff` send): the API
    /// server ran admission and validation but persisted nothing. The key and
    /// value are matched exactly as the API server reads them; anything else
    /// (`dryrun=All`, `dryRun=all`) is not a dry run (the server ignores the
    /// first and refuses the second).
    pub fn dry_run(&self) -> bool {
        self.request_uri
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|kv| kv == "dryRun=All"))
    }

    /// All but the last `sourceIPs` entry (client-set, X-Forwarded-For).
    pub fn claimed_source_ips(&self) -> &[String] {
        match self.source_ips.split_last() {
            Some((_, rest)) => rest,
            None => &[],
        }
    }

    /// The response code, when logged.
    pub fn code(&self) -> Option<i32> {
        self.response_status.as_ref().and_then(|s| s.code)
    }

    /// Whether the request was allowed: the authorization annotation, else
    /// the response code (401/403 are denials).
    pub fn allowed(&self) -> bool {
        match self.annotations.decision.as_deref() {
            Some("forbid") => false,
            Some("allow") => !matches!(self.code(), Some(401 | 403)),
            _ => !matches!(self.code(), Some(401 | 403)),
        }
    }

    /// Whether the request succeeded (2xx, or allowed with no code logged).
    pub fn succeeded(&self) -> bool {
        match self.code() {
            Some(c) => (200..300).contains(&c),
            None => self.allowed(),
        }
    }

    /// `authentication.kubernetes.io/credential-id` of the authenticated user.
    pub fn credential_id(&self) -> Option<&str> {
        self.user.extra.credential_id.first().map(String::as_str)
    }

    pub fn resource(&self) -> Option<&str> {
        self.object_ref.as_ref().and_then(|o| o.resource.as_deref())
    }

    pub fn namespace(&self) -> Option<&str> {
        self.object_ref
            .as_ref()
            .and_then(|o| o.namespace.as_deref())
    }

    pub fn name(&self) -> Option<&str> {
        self.object_ref.as_ref().and_then(|o| o.name.as_deref())
    }

    pub fn subresource(&self) -> Option<&str> {
        self.object_ref
            .as_ref()
            .and_then(|o| o.subresource.as_deref())
    }

    pub fn api_group(&self) -> Option<&str> {
        self.object_ref
            .as_ref()
            .and_then(|o| o.api_group.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(extra: &str) -> AuditEvent {
        let s = format!(
            r#"{{"level":"Request","auditID":"a","stage":"ResponseComplete","verb":"get","user":{{"username":"u"}},"requestReceivedTimestamp":"2024-01-01T00:00:00Z"{extra}}}"#
        );
        serde_json::from_str(&s).unwrap()
    }

    #[test]
    fn last_source_ip_is_judged_and_the_rest_are_claims() {
        let e = ev(r#","sourceIPs":["1.2.3.4","10.0.0.1"]"#);
        assert_eq!(e.source_ip(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(e.claimed_source_ips(), ["1.2.3.4"]);
        assert_eq!(ev("").source_ip(), None);
        assert_eq!(ev(r#","sourceIPs":["garbage"]"#).source_ip(), None);
    }

    #[test]
    fn an_ipv4_mapped_source_is_its_ipv4_address() {
        let e = ev(r#","sourceIPs":["::ffff:10.0.1.11"]"#);
        assert_eq!(e.source_ip(), Some("10.0.1.11".parse().unwrap()));
        // Only the mapped form (::ffff:0:0/96) is rewritten: a real IPv6
        // address, or the deprecated IPv4-compatible form, stays as it is.
        let e = ev(r#","sourceIPs":["2001:db8::a00:10b"]"#);
        assert_eq!(e.source_ip(), Some("2001:db8::a00:10b".parse().unwrap()));
        let e = ev(r#","sourceIPs":["::10.0.1.11"]"#);
        assert_eq!(e.source_ip(), Some("::a00:10b".parse().unwrap()));
    }

    #[test]
    fn only_the_exact_dry_run_parameter_is_a_dry_run() {
        let uri = |u: &str| ev(&format!(r#","requestURI":"{u}""#));
        let crb = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
        assert!(uri(&format!("{crb}?dryRun=All&fieldManager=kubectl-create")).dry_run());
        assert!(
            uri(&format!(
                "{crb}/x?fieldManager=kubectl-client-side-apply&dryRun=All"
            ))
            .dry_run()
        );
        for real in [
            crb.to_owned(),
            format!("{crb}?fieldManager=kubectl-create"),
            format!("{crb}?dryrun=All"),
            format!("{crb}?dryRun=all"),
            format!("{crb}?xdryRun=All"),
            format!("{crb}?dryRun=All2"),
            format!("{crb}/dryRun=All"),
        ] {
            assert!(!uri(&real).dry_run(), "{real}");
        }
    }

    #[test]
    fn decision_from_annotation_or_code() {
        assert!(ev(r#","responseStatus":{"code":200}"#).allowed());
        assert!(!ev(r#","responseStatus":{"code":403}"#).allowed());
        assert!(!ev(r#","annotations":{"authorization.k8s.io/decision":"forbid"}"#).allowed());
        let conflict = ev(r#","responseStatus":{"code":409}"#);
        assert!(conflict.allowed() && !conflict.succeeded());
    }

    #[test]
    fn objects_of_any_shape_are_kept_raw() {
        // kubectl patch --type=json: an array of operations whose value is an object.
        let e = ev(
            r#","requestObject":[{"op":"add","path":"/subjects/-","value":{"kind":"User","name":"eve"}}],"responseObject":"text""#,
        );
        assert!(e.request_object.unwrap().json().starts_with("[{\"op\""));
        assert_eq!(e.response_object.unwrap().json(), "\"text\"");
        let e = ev(r#","requestObject":null,"responseObject":42"#);
        assert!(e.request_object.is_none());
        assert_eq!(e.response_object.unwrap().json(), "42");
    }

    #[test]
    fn debug_output_never_shows_an_object() {
        let e = ev(r#","requestObject":{"kind":"Secret","data":{"token":"c2VjcmV0LXRva2Vu"}}"#);
        let dbg = format!("{e:?}");
        assert!(!dbg.contains("c2VjcmV0LXRva2Vu"), "{dbg}");
        assert!(dbg.contains("RawObject(53 bytes)"), "{dbg}");
    }

    #[test]
    fn unknown_levels_and_stages_do_not_fail() {
        let s = r#"{"level":"Future","auditID":"a","stage":"Later","verb":"get","user":{"username":"u"},"newField":{"x":1}}"#;
        let e: AuditEvent = serde_json::from_str(s).unwrap();
        assert_eq!((e.level, e.stage), (Level::Other, Stage::Other));
        assert!(!e.stage.is_final());
    }

    /// A v1 event with every field detection reads, as kube-apiserver writes it.
    const FULL: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"9f1c","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/serviceaccounts/web/token","verb":"create","user":{"username":"system:serviceaccount:shop:web","uid":"u-1","groups":["system:serviceaccounts"],"extra":{"authentication.kubernetes.io/credential-id":["JTI=7d2e"],"authentication.kubernetes.io/node-name":["node-a"],"authentication.kubernetes.io/pod-name":["web-0"]}},"sourceIPs":["198.51.100.9","10.0.1.11"],"userAgent":"kubectl/v1.31.0","objectRef":{"resource":"serviceaccounts","namespace":"shop","name":"web","apiGroup":"","apiVersion":"v1","subresource":"token"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"TokenRequest"},"responseObject":{"kind":"TokenRequest","status":{}},"requestReceivedTimestamp":"2026-03-01T10:00:00.000001Z","stageTimestamp":"2026-03-01T10:00:00.002Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed"}}"#;

    #[test]
    fn every_field_detection_reads_is_read() {
        let e: AuditEvent = serde_json::from_str(FULL).unwrap();
        assert_eq!(
            (e.level.as_str(), e.stage.as_str()),
            ("RequestResponse", "ResponseComplete")
        );
        assert!(e.stage.is_final());
        assert_eq!(e.credential_id(), Some("JTI=7d2e"));
        assert_eq!(e.user.extra.node_name, ["node-a"]);
        assert_eq!(
            (
                e.api_group(),
                e.resource(),
                e.namespace(),
                e.name(),
                e.subresource()
            ),
            (
                Some(""),
                Some("serviceaccounts"),
                Some("shop"),
                Some("web"),
                Some("token")
            )
        );
        assert_eq!(
            (e.code(), e.allowed(), e.succeeded()),
            (Some(201), true, true)
        );
        assert_eq!(e.source_ip(), Some("10.0.1.11".parse().unwrap()));
        assert_eq!(e.claimed_source_ips(), ["198.51.100.9"]);
        assert_eq!(e.time().to_rfc3339(), "2026-03-01T10:00:00.000001+00:00");
        assert_eq!(
            e.request_object.as_ref().unwrap().value().unwrap()["kind"],
            "TokenRequest"
        );
        // No objectRef: none of its fields.
        let bare = ev("");
        assert_eq!(
            (
                bare.api_group(),
                bare.resource(),
                bare.namespace(),
                bare.name(),
                bare.subresource()
            ),
            (None, None, None, None, None)
        );
        assert_eq!((bare.credential_id(), bare.code()), (None, None));
        assert!(bare.claimed_source_ips().is_empty());
    }

    #[test]
    fn the_time_falls_back_to_the_v1beta1_timestamp_then_the_stage_time() {
        let base = r#"{"level":"Metadata","auditID":"a","stage":"ResponseComplete","verb":"get","user":{"username":"u"}"#;
        let at = |extra: &str| {
            serde_json::from_str::<AuditEvent>(&format!("{base}{extra}}}"))
                .unwrap()
                .time()
                .to_rfc3339()
        };
        assert_eq!(
            at(r#","timestamp":"2018-10-26T13:38:34Z","stageTimestamp":"2018-10-26T13:38:35Z""#),
            "2018-10-26T13:38:34+00:00"
        );
        assert_eq!(
            at(r#","stageTimestamp":"2018-10-26T13:38:35Z""#),
            "2018-10-26T13:38:35+00:00"
        );
        assert_eq!(at(""), "1970-01-01T00:00:00+00:00");
    }

    #[test]
    fn levels_and_stages_read_as_the_api_server_spells_them() {
        for (text, level) in [
            ("None", Level::None),
            ("Metadata", Level::Metadata),
            ("Request", Level::Request),
            ("RequestResponse", Level::RequestResponse),
        ] {
            assert_eq!(serde_json::from_value::<Level>(text.into()).unwrap(), level);
            assert_eq!(level.as_str(), text);
        }
        assert_eq!(Level::Other.as_str(), "Other");
        for (text, stage, fin) in [
            ("RequestReceived", Stage::RequestReceived, false),
            ("ResponseStarted", Stage::ResponseStarted, false),
            ("ResponseComplete", Stage::ResponseComplete, true),
            ("Panic", Stage::Panic, true),
        ] {
            assert_eq!(serde_json::from_value::<Stage>(text.into()).unwrap(), stage);
            assert_eq!((stage.as_str(), stage.is_final()), (text, fin));
        }
        assert_eq!(Stage::Other.as_str(), "Other");
    }

    #[test]
    fn events_are_equal_only_with_the_same_objects() {
        let a = ev(r#","requestObject":{"kind":"Role"}"#);
        assert_eq!(a, ev(r#","requestObject":{"kind":"Role"}"#));
        assert_ne!(a, ev(r#","requestObject":{"kind":"ClusterRole"}"#));
        assert_eq!(
            RawObject::from_value(&serde_json::json!({"a": [1]})).json(),
            r#"{"a":[1]}"#
        );
    }

    #[test]
    fn an_allow_decision_with_a_refusal_code_is_not_allowed() {
        let allow = |code: i32| {
            ev(&format!(
                r#","annotations":{{"authorization.k8s.io/decision":"allow"}},"responseStatus":{{"code":{code}}}"#
            ))
        };
        assert!(allow(200).allowed() && allow(200).succeeded());
        assert!(!allow(401).allowed() && !allow(403).allowed());
        // No code logged: the decision says.
        let no_code = ev(r#","annotations":{"authorization.k8s.io/decision":"forbid"}"#);
        assert!(!no_code.allowed() && !no_code.succeeded());
        assert!(ev("").succeeded(), "allowed, no code");
    }
}
