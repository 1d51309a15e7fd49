//! The OCSF 1.7.0 objects a Detection Finding of ours is made of: serde
//! structs for exactly the attributes `ocsf.rs` emits (names as in the schema).

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct DetectionFinding {
    pub activity_id: u32,
    pub activity_name: &'static str,
    pub category_uid: u32,
    pub category_name: &'static str,
    pub class_uid: u32,
    pub class_name: &'static str,
    pub type_uid: u32,
    pub type_name: &'static str,
    pub severity_id: u32,
    pub severity: &'static str,
    pub status_id: u32,
    pub status: &'static str,
    /// Milliseconds since the epoch: the time of the request.
    pub time: i64,
    pub message: String,
    pub is_alert: bool,
    pub metadata: Metadata,
    pub finding_info: FindingInfo,
    pub evidences: Vec<EvidenceObj>,
    pub resources: Vec<Resource>,
    pub observables: Vec<Observable>,
    /// What has no OCSF attribute: source class, expected places, client-set
    /// source IPs, the rule's details.
    pub unmapped: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct Metadata {
    pub version: &'static str,
    pub product: Product,
    pub uid: String,
    pub event_code: String,
    pub log_name: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Product {
    pub name: &'static str,
    pub vendor_name: &'static str,
    pub version: &'static str,
    pub uid: &'static str,
}

#[derive(Debug, Serialize)]
pub struct FindingInfo {
    pub uid: String,
    pub title: String,
    pub desc: String,
    pub types: Vec<String>,
    pub analytic: Analytic,
    pub attacks: Vec<Attack>,
    pub src_url: String,
    pub first_seen_time: i64,
    pub last_seen_time: i64,
    pub related_events: Vec<RelatedEvent>,
}

#[derive(Debug, Serialize)]
pub struct Analytic {
    pub uid: String,
    pub name: String,
    pub category: String,
    pub type_id: u32,
    #[serde(rename = "type")]
    pub type_: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Attack {
    pub technique: Named,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_technique: Option<Named>,
    pub tactic: Named,
    pub version: &'static str,
}

#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord, Clone)]
pub struct Named {
    pub uid: String,
    pub name: String,
}

#[derive(Debug, Serialize)]
pub struct RelatedEvent {
    pub uid: String,
    #[serde(rename = "type")]
    pub type_: &'static str,
}

/// One piece of evidence: the API request, or one agent observation.
#[derive(Debug, Serialize, Default)]
pub struct EvidenceObj {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_endpoint: Option<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_request: Option<HttpRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<File>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct Api {
    pub operation: String,
    pub service: Service,
    pub request: ApiRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<ApiResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Group>,
}

#[derive(Debug, Serialize)]
pub struct Service {
    pub name: &'static str,
}

#[derive(Debug, Serialize)]
pub struct ApiRequest {
    pub uid: String,
}

#[derive(Debug, Serialize)]
pub struct ApiResponse {
    pub code: i32,
}

#[derive(Debug, Serialize)]
pub struct Group {
    pub name: String,
}

#[derive(Debug, Serialize)]
pub struct Actor {
    pub user: User,
}

#[derive(Debug, Serialize)]
pub struct User {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub type_id: u32,
    #[serde(rename = "type")]
    pub type_: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Group>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub programmatic_credentials: Vec<Credential>,
}

#[derive(Debug, Serialize)]
pub struct Credential {
    pub uid: String,
    #[serde(rename = "type")]
    pub type_: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Endpoint {
    pub ip: String,
}

#[derive(Debug, Serialize)]
pub struct HttpRequest {
    pub url: Url,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Url {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_string: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Process {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Container {
    pub uid: String,
}

#[derive(Debug, Serialize)]
pub struct Device {
    pub name: String,
    pub hostname: String,
    /// 99 "Other": OCSF has no type for a Kubernetes node.
    pub type_id: u32,
    #[serde(rename = "type")]
    pub type_: &'static str,
}

#[derive(Debug, Serialize)]
pub struct File {
    pub name: String,
    pub path: String,
    /// 1 "Regular File".
    pub type_id: u32,
}

#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resource {
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Observable {
    pub name: String,
    pub type_id: u32,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub value: String,
}
