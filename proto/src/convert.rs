//! Conversions between the domain model ([`crate::model`]) and the protobuf
//! messages ([`crate::pb::agent`]).
//!
//! Domain to protobuf cannot fail (`From`); protobuf to domain is `TryFrom`,
//! and its error names the offending field by its path in the message, e.g.
//! `credential_read.credential.kind: unknown enum value 9`.

use std::net::{IpAddr, SocketAddr};

use chrono::{DateTime, Utc};

use crate::model;
use crate::pb::agent as pb;

/// A protobuf message that does not describe a valid domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConvertError {
    /// Path of the bad field, e.g. `api_connect.remote.ip`.
    pub field: String,
    pub reason: String,
}

impl ConvertError {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn missing(field: &str) -> Self {
        Self::new(field, "missing")
    }

    /// Prefixes the field path with the enclosing field.
    pub(crate) fn within(mut self, parent: &str) -> Self {
        self.field = format!("{parent}.{}", self.field);
        self
    }
}

pub(crate) type Result<T> = std::result::Result<T, ConvertError>;

// ---------- helpers ----------

pub(crate) fn ts_to_pb(t: &DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub(crate) fn ts_from_pb(field: &str, t: &prost_types::Timestamp) -> Result<DateTime<Utc>> {
    let nanos = u32::try_from(t.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| ConvertError::new(field, format!("nanos {} out of range", t.nanos)))?;
    DateTime::from_timestamp(t.seconds, nanos)
        .ok_or_else(|| ConvertError::new(field, format!("seconds {} out of range", t.seconds)))
}

fn ip_from_pb(field: &str, s: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|_| ConvertError::new(field, format!("not an IP address: {s:?}")))
}

fn ips_from_pb(field: &str, v: &[String]) -> Result<Vec<IpAddr>> {
    v.iter()
        .enumerate()
        .map(|(i, s)| ip_from_pb(&format!("{field}[{i}]"), s))
        .collect()
}

/// Converts an optional message field, naming the field in any error.
pub(crate) fn optional<P, M>(field: &str, value: Option<P>) -> Result<Option<M>>
where
    M: TryFrom<P, Error = ConvertError>,
{
    value
        .map(M::try_from)
        .transpose()
        .map_err(|e| e.within(field))
}

/// Converts a message field that must be present, naming the field in any error.
pub(crate) fn required<P, M>(field: &str, value: Option<P>) -> Result<M>
where
    M: TryFrom<P, Error = ConvertError>,
{
    optional(field, value)?.ok_or_else(|| ConvertError::missing(field))
}

pub(crate) fn required_string(field: &str, s: String) -> Result<String> {
    if s.is_empty() {
        Err(ConvertError::missing(field))
    } else {
        Ok(s)
    }
}

impl From<SocketAddr> for pb::SocketAddress {
    fn from(a: SocketAddr) -> Self {
        Self {
            ip: a.ip().to_string(),
            port: u32::from(a.port()),
        }
    }
}

impl TryFrom<pb::SocketAddress> for SocketAddr {
    type Error = ConvertError;
    fn try_from(a: pb::SocketAddress) -> Result<Self> {
        let ip = ip_from_pb("ip", &a.ip)?;
        let port = u16::try_from(a.port)
            .map_err(|_| ConvertError::new("port", format!("{} is not a TCP port", a.port)))?;
        Ok(SocketAddr::new(ip, port))
    }
}

// ---------- enums ----------

impl From<model::CaptureSource> for pb::CaptureSource {
    fn from(s: model::CaptureSource) -> Self {
        use model::CaptureSource as M;
        match s {
            M::Lsm => Self::Lsm,
            M::Fentry => Self::Fentry,
            M::Tracepoint => Self::Tracepoint,
            M::Scan => Self::Scan,
            M::CgroupConnect => Self::CgroupConnect,
            M::SockState => Self::SockState,
        }
    }
}

fn source_from_pb(field: &str, v: i32) -> Result<model::CaptureSource> {
    use model::CaptureSource as M;
    match pb::CaptureSource::try_from(v) {
        Ok(pb::CaptureSource::Lsm) => Ok(M::Lsm),
        Ok(pb::CaptureSource::Fentry) => Ok(M::Fentry),
        Ok(pb::CaptureSource::Tracepoint) => Ok(M::Tracepoint),
        Ok(pb::CaptureSource::Scan) => Ok(M::Scan),
        Ok(pb::CaptureSource::CgroupConnect) => Ok(M::CgroupConnect),
        Ok(pb::CaptureSource::SockState) => Ok(M::SockState),
        Ok(pb::CaptureSource::Unspecified) => Err(ConvertError::missing(field)),
        Err(_) => Err(ConvertError::new(field, format!("unknown enum value {v}"))),
    }
}

impl From<model::CredentialKind> for pb::CredentialKind {
    fn from(k: model::CredentialKind) -> Self {
        use model::CredentialKind as M;
        match k {
            M::ServiceAccountToken => Self::ServiceAccountToken,
            M::Kubeconfig => Self::Kubeconfig,
            M::ClientCertificate => Self::ClientCertificate,
            M::PrivateKey => Self::PrivateKey,
            M::Unknown => Self::Unknown,
            M::NotARegularFile => Self::NotARegularFile,
        }
    }
}

pub(crate) fn kind_from_pb(field: &str, v: i32) -> Result<model::CredentialKind> {
    use model::CredentialKind as M;
    match pb::CredentialKind::try_from(v) {
        Ok(pb::CredentialKind::ServiceAccountToken) => Ok(M::ServiceAccountToken),
        Ok(pb::CredentialKind::Kubeconfig) => Ok(M::Kubeconfig),
        Ok(pb::CredentialKind::ClientCertificate) => Ok(M::ClientCertificate),
        Ok(pb::CredentialKind::PrivateKey) => Ok(M::PrivateKey),
        Ok(pb::CredentialKind::Unknown) => Ok(M::Unknown),
        Ok(pb::CredentialKind::NotARegularFile) => Ok(M::NotARegularFile),
        Ok(pb::CredentialKind::Unspecified) => Err(ConvertError::missing(field)),
        Err(_) => Err(ConvertError::new(field, format!("unknown enum value {v}"))),
    }
}

// ---------- observation ----------

impl From<model::Observation> for pb::Observation {
    fn from(o: model::Observation) -> Self {
        use pb::observation::Event;
        let event = match o.event {
            model::ObservationEvent::NodeInfo(n) => Event::NodeInfo(n.into()),
            model::ObservationEvent::CredentialRead(r) => Event::CredentialRead(r.into()),
            model::ObservationEvent::ApiConnect(c) => Event::ApiConnect(c.into()),
            model::ObservationEvent::Loss(l) => Event::Loss(l.into()),
        };
        Self {
            id: o.id,
            time: Some(ts_to_pb(&o.time)),
            node: o.node,
            event: Some(event),
        }
    }
}

impl TryFrom<pb::Observation> for model::Observation {
    type Error = ConvertError;
    fn try_from(o: pb::Observation) -> Result<Self> {
        use pb::observation::Event;
        let id = required_string("id", o.id)?;
        let time = ts_from_pb(
            "time",
            o.time
                .as_ref()
                .ok_or_else(|| ConvertError::missing("time"))?,
        )?;
        let node = required_string("node", o.node)?;
        let event = match o.event.ok_or_else(|| ConvertError::missing("event"))? {
            Event::NodeInfo(n) => model::ObservationEvent::NodeInfo(
                n.try_into()
                    .map_err(|e: ConvertError| e.within("node_info"))?,
            ),
            Event::CredentialRead(r) => model::ObservationEvent::CredentialRead(
                r.try_into()
                    .map_err(|e: ConvertError| e.within("credential_read"))?,
            ),
            Event::ApiConnect(c) => model::ObservationEvent::ApiConnect(
                c.try_into()
                    .map_err(|e: ConvertError| e.within("api_connect"))?,
            ),
            Event::Loss(l) => model::ObservationEvent::Loss(l.into()),
        };
        Ok(Self {
            id,
            time,
            node,
            event,
        })
    }
}

impl From<model::NodeInfo> for pb::NodeInfo {
    fn from(n: model::NodeInfo) -> Self {
        Self {
            name: n.name,
            addresses: n.addresses.iter().map(ToString::to_string).collect(),
            pod_cidrs: n.pod_cidrs,
            agent_version: n.agent_version,
            kernel_release: n.kernel_release,
            hooks: n.hooks,
            blind_spots: n.blind_spots,
        }
    }
}

impl TryFrom<pb::NodeInfo> for model::NodeInfo {
    type Error = ConvertError;
    fn try_from(n: pb::NodeInfo) -> Result<Self> {
        Ok(Self {
            name: required_string("name", n.name)?,
            addresses: ips_from_pb("addresses", &n.addresses)?,
            pod_cidrs: n.pod_cidrs,
            agent_version: n.agent_version,
            kernel_release: n.kernel_release,
            hooks: n.hooks,
            blind_spots: n.blind_spots,
        })
    }
}

impl From<model::Process> for pb::Process {
    fn from(p: model::Process) -> Self {
        Self {
            pid: p.pid,
            tgid: p.tgid,
            ppid: p.ppid,
            uid: p.uid,
            comm: p.comm,
            exe: p.exe,
            cmdline: p.cmdline,
            parent_comm: p.parent_comm,
            mnt_ns: p.mnt_ns,
        }
    }
}

impl From<pb::Process> for model::Process {
    fn from(p: pb::Process) -> Self {
        Self {
            pid: p.pid,
            tgid: p.tgid,
            ppid: p.ppid,
            uid: p.uid,
            comm: p.comm,
            exe: p.exe,
            cmdline: p.cmdline,
            parent_comm: p.parent_comm,
            mnt_ns: p.mnt_ns,
        }
    }
}

impl From<model::Workload> for pb::Workload {
    fn from(w: model::Workload) -> Self {
        Self {
            cgroup_id: w.cgroup_id,
            cgroup_path: w.cgroup_path,
            container_id: w.container_id,
            container_runtime: w.container_runtime,
            pod_uid: w.pod_uid,
            pod_namespace: w.pod_namespace,
            pod_name: w.pod_name,
            qos_class: w.qos_class,
        }
    }
}

impl From<pb::Workload> for model::Workload {
    fn from(w: pb::Workload) -> Self {
        Self {
            cgroup_id: w.cgroup_id,
            cgroup_path: w.cgroup_path,
            container_id: w.container_id,
            container_runtime: w.container_runtime,
            pod_uid: w.pod_uid,
            pod_namespace: w.pod_namespace,
            pod_name: w.pod_name,
            qos_class: w.qos_class,
        }
    }
}

impl From<model::CredentialRead> for pb::CredentialRead {
    fn from(r: model::CredentialRead) -> Self {
        Self {
            source: pb::CaptureSource::from(r.source) as i32,
            process: r.process.map(Into::into),
            workload: r.workload.map(Into::into),
            path: r.path,
            flags: r.flags,
            inode: r.inode,
            reads: r.reads,
            credential: Some(r.credential.into()),
        }
    }
}

impl TryFrom<pb::CredentialRead> for model::CredentialRead {
    type Error = ConvertError;
    fn try_from(r: pb::CredentialRead) -> Result<Self> {
        Ok(Self {
            source: source_from_pb("source", r.source)?,
            process: r.process.map(Into::into),
            workload: r.workload.map(Into::into),
            path: required_string("path", r.path)?,
            flags: r.flags,
            inode: r.inode,
            reads: r.reads,
            credential: required("credential", r.credential)?,
        })
    }
}

impl From<model::ApiConnect> for pb::ApiConnect {
    fn from(c: model::ApiConnect) -> Self {
        Self {
            source: pb::CaptureSource::from(c.source) as i32,
            process: c.process.map(Into::into),
            workload: c.workload.map(Into::into),
            local: c.local.map(Into::into),
            remote: Some(c.remote.into()),
            translated: c.translated.map(Into::into),
        }
    }
}

impl TryFrom<pb::ApiConnect> for model::ApiConnect {
    type Error = ConvertError;
    fn try_from(c: pb::ApiConnect) -> Result<Self> {
        Ok(Self {
            source: source_from_pb("source", c.source)?,
            process: c.process.map(Into::into),
            workload: c.workload.map(Into::into),
            local: optional("local", c.local)?,
            remote: required("remote", c.remote)?,
            translated: optional("translated", c.translated)?,
        })
    }
}

impl From<model::Loss> for pb::Loss {
    fn from(l: model::Loss) -> Self {
        Self {
            stage: l.stage,
            count: l.count,
            total: l.total,
        }
    }
}

impl From<pb::Loss> for model::Loss {
    fn from(l: pb::Loss) -> Self {
        Self {
            stage: l.stage,
            count: l.count,
            total: l.total,
        }
    }
}

mod credential;
#[cfg(test)]
mod tests;
