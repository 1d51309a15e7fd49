//! The domain observation model: what an agent reports about its node.
//!
//! This is the middle of the three type layers (kernel layout in
//! `credtrail-common`, this domain model, the protobuf messages in
//! [`crate::pb`]). It is also the agent's JSON-lines format (`--output jsonl`),
//! which `credtrail-aggregator replay --observations` reads back: one
//! [`Observation`] per line, serialized with serde_json. The format is
//! documented in `docs/OBSERVATIONS.md`.
//!
//! Nothing here may hold a secret: a credential is described by its claims and
//! fingerprints ([`CredentialIdentity`]), never by its bytes.

use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// Reads `null` as the type's default: docs/OBSERVATIONS.md documents these
/// fields as null when unknown.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One observation from one node's agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Unique and stable: `<node>/<agent boot id>/<counter>`.
    pub id: String,
    /// Wall-clock time the kernel saw the event (or the scan found the file).
    pub time: DateTime<Utc>,
    /// Node name (`NODE_NAME`, else the hostname).
    pub node: String,
    /// What was seen.
    #[serde(flatten)]
    pub event: ObservationEvent,
}

/// The payload of an observation; `"type"` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[expect(
    clippy::large_enum_variant,
    reason = "credential reads dominate the stream; boxing them would cost an allocation each"
)]
pub enum ObservationEvent {
    /// The agent started or its node identity changed.
    NodeInfo(NodeInfo),
    /// A process opened a watched credential file (or the start-up scan found one).
    CredentialRead(CredentialRead),
    /// A process connected to an API-server endpoint.
    ApiConnect(ApiConnect),
    /// Events were lost (ring buffer full, spool bound hit, ...). Never silent.
    Loss(Loss),
}

/// Identity of the node an agent runs on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// The node's own addresses (every non-loopback interface address, plus
    /// configured extras).
    #[serde(default, deserialize_with = "nullable")]
    pub addresses: Vec<IpAddr>,
    /// Pod CIDRs of this node, when known (configuration).
    #[serde(default, deserialize_with = "nullable")]
    pub pod_cidrs: Vec<String>,
    pub agent_version: String,
    pub kernel_release: String,
    /// Which kernel hooks are in use, e.g. `["lsm_file_open", "cgroup_connect4"]`.
    #[serde(default, deserialize_with = "nullable")]
    pub hooks: Vec<String>,
    /// What the hooks in use cannot see (one sentence each); empty when
    /// nothing is known to be missed.
    #[serde(default)]
    pub blind_spots: Vec<String>,
}

/// How an event was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureSource {
    /// BPF LSM `file_open`.
    Lsm,
    /// fentry on `security_file_open`.
    Fentry,
    /// `syscalls:sys_enter_openat` / `openat2` tracepoints.
    Tracepoint,
    /// The agent's start-up scan of credential files already on the node.
    Scan,
    /// cgroup `connect4`/`connect6`.
    CgroupConnect,
    /// `sock:inet_sock_set_state` to ESTABLISHED.
    SockState,
}

/// The process behind an event.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Process {
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    /// `/proc/<pid>/exe`, when readable.
    #[serde(default)]
    pub exe: Option<String>,
    /// Command line, with values that look like secrets redacted.
    #[serde(default, deserialize_with = "nullable")]
    pub cmdline: Vec<String>,
    /// Parent's comm, when known.
    #[serde(default)]
    pub parent_comm: Option<String>,
    pub mnt_ns: u64,
}

/// Where in the cluster the process runs: cgroup, container, pod.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Workload {
    /// 0 (`null` in JSON is accepted) when unknown.
    #[serde(default, deserialize_with = "nullable")]
    pub cgroup_id: u64,
    /// Path below the cgroup v2 root, e.g. `/kubepods.slice/.../cri-containerd-<id>.scope`.
    #[serde(default)]
    pub cgroup_path: Option<String>,
    #[serde(default)]
    pub container_id: Option<String>,
    /// `containerd`, `crio`, `docker`.
    #[serde(default)]
    pub container_runtime: Option<String>,
    #[serde(default)]
    pub pod_uid: Option<String>,
    #[serde(default)]
    pub pod_namespace: Option<String>,
    #[serde(default)]
    pub pod_name: Option<String>,
    /// `guaranteed`, `burstable`, `besteffort`.
    #[serde(default)]
    pub qos_class: Option<String>,
}

/// A credential file was opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialRead {
    pub source: CaptureSource,
    /// Absent for the start-up scan.
    #[serde(default)]
    pub process: Option<Process>,
    #[serde(default)]
    pub workload: Option<Workload>,
    /// Path as the process named it (inside its mount namespace).
    pub path: String,
    /// Open flags (`O_*`), as the kernel saw them.
    pub flags: u32,
    pub inode: u64,
    /// Reads of this file by this process folded into this report (one report
    /// per process and file per interval).
    pub reads: u32,
    pub credential: CredentialIdentity,
}

/// A TCP connection to an API-server endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiConnect {
    pub source: CaptureSource,
    #[serde(default)]
    pub process: Option<Process>,
    #[serde(default)]
    pub workload: Option<Workload>,
    /// Local address and port of the socket after the connect.
    #[serde(default)]
    pub local: Option<SocketAddr>,
    /// The source address and port after NAT (masquerade), from the node's
    /// conntrack reply tuple, when it differs from `local`: then this, not
    /// `local`, is what the API server sees in `sourceIPs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translated: Option<SocketAddr>,
    /// The endpoint connected to.
    pub remote: SocketAddr,
}

/// Loss report: counts of events that could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Loss {
    /// Where the loss happened: `ring_buffer`, `spool`, `enrich`, ...
    pub stage: String,
    /// Events lost since the previous loss report for this stage.
    pub count: u64,
    /// Total since the agent started.
    pub total: u64,
}

/// What kind of credential a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// A JWT (projected or legacy service-account token).
    ServiceAccountToken,
    /// A kubeconfig file.
    Kubeconfig,
    /// A PEM client certificate (kubelet client cert and the like).
    ClientCertificate,
    /// A PEM private key: fingerprinted, never parsed further.
    PrivateKey,
    /// Unreadable or unrecognised content.
    #[default]
    Unknown,
    /// A FIFO, device, socket or directory at a watched path: reported
    /// with its type in `error`, never read.
    NotARegularFile,
}

/// Identifies a credential without holding it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CredentialIdentity {
    pub kind: CredentialKind,
    /// Lowercase hex SHA-256 of the file's content (of the trimmed token for a
    /// token file). Identifies the credential, reveals nothing.
    #[serde(default)]
    pub sha256: Option<String>,
    /// For a token file.
    #[serde(default)]
    pub token: Option<TokenIdentity>,
    /// For a kubeconfig.
    #[serde(default)]
    pub kubeconfig: Option<KubeconfigIdentity>,
    /// For a certificate file: the first certificate.
    #[serde(default)]
    pub certificate: Option<CertIdentity>,
    /// Why the content could not be identified, when it could not.
    #[serde(default)]
    pub error: Option<String>,
}

/// A bearer token, by fingerprint and claims.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TokenIdentity {
    /// Lowercase hex SHA-256 of the token string.
    pub sha256: String,
    /// The JWT claims, when the token is a JWT.
    #[serde(default)]
    pub claims: Option<JwtClaims>,
}

/// JWT claims that identify a Kubernetes service-account token.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JwtClaims {
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub aud: Vec<String>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub exp: Option<i64>,
    /// `kubernetes.io.namespace` (or legacy `kubernetes.io/serviceaccount/namespace`).
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub service_account_name: Option<String>,
    #[serde(default)]
    pub service_account_uid: Option<String>,
    #[serde(default)]
    pub pod_name: Option<String>,
    #[serde(default)]
    pub pod_uid: Option<String>,
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub node_uid: Option<String>,
    /// Legacy secret-based tokens: `kubernetes.io/serviceaccount/secret.name`.
    #[serde(default)]
    pub secret_name: Option<String>,
}

/// A kubeconfig, by its users (never their secrets).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KubeconfigIdentity {
    #[serde(default)]
    pub current_context: Option<String>,
    /// Cluster server URLs named in the file.
    #[serde(default, deserialize_with = "nullable")]
    pub servers: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub users: Vec<KubeconfigUser>,
}

/// One `users[]` entry of a kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KubeconfigUser {
    pub name: String,
    #[serde(default)]
    pub client_certificate: Option<CertIdentity>,
    #[serde(default)]
    pub token: Option<TokenIdentity>,
    /// `exec.command`, when the user authenticates through an exec plugin.
    #[serde(default)]
    pub exec_command: Option<String>,
    /// `auth-provider.name` (oidc, gcp, azure ...).
    #[serde(default)]
    pub auth_provider: Option<String>,
    /// Basic-auth username (the password is never read out).
    #[serde(default)]
    pub username: Option<String>,
}

/// A certificate, by fingerprint and subject.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CertIdentity {
    /// Lowercase hex SHA-256 of the DER, as in `X509SHA256=<hex>`.
    pub sha256: String,
    #[serde(default)]
    pub subject_cn: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub subject_o: Vec<String>,
    #[serde(default)]
    pub issuer_cn: Option<String>,
    #[serde(default)]
    pub not_before: Option<DateTime<Utc>>,
    #[serde(default)]
    pub not_after: Option<DateTime<Utc>>,
}

impl CertIdentity {
    /// The value the API server writes in `authentication.kubernetes.io/credential-id`.
    pub fn credential_id(&self) -> String {
        format!("X509SHA256={}", self.sha256)
    }
}

impl JwtClaims {
    /// The value the API server writes in `authentication.kubernetes.io/credential-id`.
    pub fn credential_id(&self) -> Option<String> {
        self.jti.as_ref().map(|jti| format!("JTI={jti}"))
    }

    /// `system:serviceaccount:<ns>:<name>`, from the claims.
    pub fn username(&self) -> Option<String> {
        match (&self.namespace, &self.service_account_name) {
            (Some(ns), Some(name)) => Some(format!("system:serviceaccount:{ns}:{name}")),
            _ => self.sub.clone(),
        }
    }
}

impl CredentialIdentity {
    /// Every `credential-id` value this credential can show in an audit event
    /// (`JTI=...` for bound tokens, `X509SHA256=...` for client certificates).
    pub fn credential_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        if let Some(id) = self
            .token
            .as_ref()
            .and_then(|t| t.claims.as_ref())
            .and_then(JwtClaims::credential_id)
        {
            ids.push(id);
        }
        if let Some(c) = &self.certificate {
            ids.push(c.credential_id());
        }
        if let Some(k) = &self.kubeconfig {
            for u in &k.users {
                if let Some(c) = &u.client_certificate {
                    ids.push(c.credential_id());
                }
                if let Some(id) = u
                    .token
                    .as_ref()
                    .and_then(|t| t.claims.as_ref())
                    .and_then(JwtClaims::credential_id)
                {
                    ids.push(id);
                }
            }
        }
        ids
    }
}

/// Errors reading the JSON-lines format.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    #[error("line {line}: not a credtrail observation: {source}")]
    Parse {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// Parses one JSON line into an observation; `line` is 1-based, for the message.
pub fn parse_jsonl_line(line_no: usize, line: &str) -> Result<Observation, JsonlError> {
    serde_json::from_str(line).map_err(|source| JsonlError::Parse {
        line: line_no,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_read_round_trips_as_tagged_json() {
        let obs = Observation {
            id: "node-a/1/7".into(),
            time: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            node: "node-a".into(),
            event: ObservationEvent::CredentialRead(CredentialRead {
                source: CaptureSource::Tracepoint,
                process: Some(Process {
                    pid: 10,
                    tgid: 10,
                    comm: "curl".into(),
                    ..Default::default()
                }),
                workload: None,
                path: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
                flags: 0,
                inode: 42,
                reads: 1,
                credential: CredentialIdentity {
                    kind: CredentialKind::ServiceAccountToken,
                    token: Some(TokenIdentity {
                        sha256: "ab".into(),
                        claims: Some(JwtClaims {
                            jti: Some("1234".into()),
                            ..Default::default()
                        }),
                    }),
                    ..Default::default()
                },
            }),
        };
        let line = serde_json::to_string(&obs).unwrap();
        assert!(line.contains(r#""type":"credential_read""#), "{line}");
        assert_eq!(parse_jsonl_line(1, &line).unwrap(), obs);
        let ObservationEvent::CredentialRead(read) = &obs.event else {
            unreachable!()
        };
        assert_eq!(
            read.credential.credential_ids(),
            vec!["JTI=1234".to_string()]
        );
    }

    /// Every example line in docs/OBSERVATIONS.md is accepted as written.
    #[test]
    fn every_documented_example_is_accepted() {
        let doc = include_str!("../../docs/OBSERVATIONS.md");
        let mut lines = Vec::new();
        let mut in_json = false;
        for l in doc.lines() {
            match l.trim() {
                "```json" => in_json = true,
                "```" => in_json = false,
                x if in_json && !x.is_empty() => lines.push(x),
                _ => {}
            }
        }
        assert!(lines.len() >= 5, "the document's examples were not found");
        let mut types = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let o = parse_jsonl_line(i + 1, l).unwrap_or_else(|e| panic!("{e}: {l}"));
            types.push(serde_json::to_value(&o).unwrap()["type"].clone());
        }
        for t in ["node_info", "credential_read", "api_connect", "loss"] {
            assert!(types.iter().any(|x| x == t), "no {t} example");
        }
    }

    /// Fields the document calls nullable take `null`.
    #[test]
    fn documented_nullable_fields_take_null() {
        let w: Workload = serde_json::from_str(
            r#"{"cgroup_id":null,"cgroup_path":null,"container_id":null,"container_runtime":null,
                "pod_uid":null,"pod_namespace":null,"pod_name":null,"qos_class":null}"#,
        )
        .unwrap();
        assert_eq!(w, Workload::default());
        let p: Process = serde_json::from_str(
            r#"{"pid":1,"tgid":1,"ppid":0,"uid":0,"comm":"x","exe":null,"cmdline":null,"parent_comm":null,"mnt_ns":1}"#,
        )
        .unwrap();
        assert!(p.cmdline.is_empty() && p.exe.is_none());
        let c: ApiConnect = serde_json::from_str(
            r#"{"source":"sock_state","process":null,"workload":null,"local":null,"translated":null,"remote":"10.0.0.1:443"}"#,
        )
        .unwrap();
        assert!(c.local.is_none() && c.translated.is_none());
        // A wrong type is still refused, with the field named.
        let e = serde_json::from_str::<Workload>(r#"{"cgroup_id":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
    }

    #[test]
    fn garbage_line_names_the_line() {
        let err = parse_jsonl_line(3, "{\"type\":\"nope\"}").unwrap_err();
        assert!(err.to_string().starts_with("line 3:"), "{err}");
    }
}
