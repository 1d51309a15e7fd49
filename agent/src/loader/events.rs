//! Ring-buffer records -> raw events ([`RawOpen`], [`RawConnect`]), with
//! the kernel's monotonic clock converted to wall-clock time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use chrono::{DateTime, Utc};
use credtrail_common::{
    AF_INET, AF_INET6, ConnectEvent, EventHeader, EventKind, OpenEvent, PATH_LEN, Source,
};
use credtrail_proto::model::CaptureSource;

/// A watched file was opened (from the kernel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOpen {
    pub time: DateTime<Utc>,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    pub mnt_ns: u64,
    /// Parent tgid as the kernel saw it (0 = unknown); used when `/proc` no
    /// longer has the process.
    pub ppid: u32,
    pub path: String,
    /// For a relative path: the directory descriptor it is relative to
    /// (`openat(dirfd, ...)`); None for the working directory (`AT_FDCWD`)
    /// or when the hook cannot know it.
    pub dirfd: Option<i32>,
    pub flags: u32,
    /// 0 when the hook cannot know it (tracepoints); then filled by `stat`.
    pub inode: u64,
    pub source: CaptureSource,
}

/// A connect to an API-server endpoint (from the kernel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawConnect {
    pub time: DateTime<Utc>,
    pub pid: u32,
    pub tgid: u32,
    pub uid: u32,
    pub comm: String,
    pub cgroup_id: u64,
    pub mnt_ns: u64,
    /// Parent tgid as the kernel saw it (0 = unknown).
    pub ppid: u32,
    pub local: Option<SocketAddr>,
    pub remote: SocketAddr,
    pub source: CaptureSource,
}

/// One decoded kernel event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    Open(RawOpen),
    Connect(RawConnect),
}

/// Why a record could not be decoded (counted, never fatal).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its kind needs")]
    Short(usize),
    #[error("unknown event kind {0}")]
    Kind(u32),
    #[error("unknown event source {0}")]
    Source(u32),
    #[error("unknown address family {0}")]
    Family(u32),
}

/// Converts `CLOCK_MONOTONIC` nanoseconds (`bpf_ktime_get_ns`) to wall time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall-clock nanoseconds minus monotonic nanoseconds.
    offset_ns: i128,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl Clock {
    /// Measures the offset now.
    pub fn now() -> Self {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Self {
            offset_ns: real - mono,
        }
    }

    /// Wall time of a kernel timestamp.
    pub fn wall(&self, ktime_ns: u64) -> DateTime<Utc> {
        let ns = i128::from(ktime_ns) + self.offset_ns;
        let ns = i64::try_from(ns).unwrap_or(i64::MAX);
        DateTime::from_timestamp_nanos(ns)
    }
}

fn read<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < std::mem::size_of::<T>() {
        return Err(DecodeError::Short(bytes.len()));
    }
    // SAFETY: length checked; T is a #[repr(C)] plain-old-data type from
    // credtrail-common; read_unaligned copes with any alignment.
    Ok(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
}

fn comm(c: &[u8; 16]) -> String {
    let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
    String::from_utf8_lossy(&c[..end]).into_owned()
}

fn source(v: u32) -> Result<CaptureSource, DecodeError> {
    Ok(match Source::from_u32(v).ok_or(DecodeError::Source(v))? {
        Source::Lsm => CaptureSource::Lsm,
        Source::Fentry => CaptureSource::Fentry,
        Source::TracepointOpenat
        | Source::TracepointOpenat2
        | Source::TracepointOpen
        | Source::RawSysEnter => CaptureSource::Tracepoint,
        Source::SockState => CaptureSource::SockState,
    })
}

fn addr(family: u32, b: &[u8; 16], port: u16) -> Result<SocketAddr, DecodeError> {
    let ip = if family == u32::from(AF_INET) {
        IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else if family == u32::from(AF_INET6) {
        // An IPv4-mapped address is shown as the IPv4 address.
        Ipv6Addr::from(*b).to_canonical()
    } else {
        return Err(DecodeError::Family(family));
    };
    Ok(SocketAddr::new(ip, port))
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8], clock: &Clock) -> Result<KernelEvent, DecodeError> {
    let h: EventHeader = read(bytes)?;
    let time = clock.wall(h.ktime_ns);
    match EventKind::from_u32(h.kind).ok_or(DecodeError::Kind(h.kind))? {
        EventKind::Open => {
            let ev: OpenEvent = read(bytes)?;
            let len = (ev.path_len as usize).min(PATH_LEN);
            let path = &ev.path[..len];
            let path = &path[..path.iter().position(|&b| b == 0).unwrap_or(path.len())];
            Ok(KernelEvent::Open(RawOpen {
                time,
                pid: h.pid,
                tgid: h.tgid,
                uid: h.uid,
                comm: comm(&h.comm),
                cgroup_id: h.cgroup_id,
                mnt_ns: h.mnt_ns,
                ppid: h.ppid,
                path: String::from_utf8_lossy(path).into_owned(),
                dirfd: (!path.starts_with(b"/") && ev.dirfd >= 0).then_some(ev.dirfd),
                flags: ev.flags,
                inode: ev.inode,
                source: source(h.source)?,
            }))
        }
        EventKind::Connect => {
            let ev: ConnectEvent = read(bytes)?;
            let local = addr(ev.family, &ev.local_addr, ev.local_port)?;
            Ok(KernelEvent::Connect(RawConnect {
                time,
                pid: h.pid,
                tgid: h.tgid,
                uid: h.uid,
                comm: comm(&h.comm),
                cgroup_id: h.cgroup_id,
                mnt_ns: h.mnt_ns,
                ppid: h.ppid,
                local: (local.port() != 0).then_some(local),
                remote: addr(ev.family, &ev.remote_addr, ev.remote_port)?,
                source: source(h.source)?,
            }))
        }
    }
}

/// The parent pid from a record's header (0 when unknown); the raw event
/// types have no field for it.
pub fn ppid(bytes: &[u8]) -> Option<u32> {
    read::<EventHeader>(bytes)
        .ok()
        .map(|h| h.ppid)
        .filter(|&p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: EventKind, source: Source) -> EventHeader {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"curl");
        EventHeader {
            kind: kind as u32,
            source: source as u32,
            ktime_ns: 5_000_000_000,
            pid: 11,
            tgid: 10,
            ppid: 1,
            uid: 1000,
            gid: 1000,
            _pad0: 0,
            cgroup_id: 77,
            mnt_ns: 4026531841,
            comm,
        }
    }

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a #[repr(C)] value without padding.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    #[test]
    fn open_record_decodes() {
        let mut path = [0u8; PATH_LEN];
        let p = b"/etc/kubernetes/admin.conf";
        path[..p.len()].copy_from_slice(p);
        let ev = OpenEvent {
            header: header(EventKind::Open, Source::TracepointOpenat2),
            flags: 0o2000000,
            open_flags: 0,
            path_len: p.len() as u32,
            dirfd: credtrail_common::OPEN_DIRFD_CWD,
            inode: 0,
            path,
        };
        let clock = Clock {
            offset_ns: 1_700_000_000_000_000_000,
        };
        let KernelEvent::Open(o) = decode(&bytes_of(&ev), &clock).unwrap() else {
            panic!("not an open")
        };
        assert_eq!(o.path, "/etc/kubernetes/admin.conf");
        assert_eq!((o.pid, o.tgid, o.uid, o.cgroup_id), (11, 10, 1000, 77));
        assert_eq!(o.comm, "curl");
        assert_eq!(o.source, CaptureSource::Tracepoint);
        assert_eq!(o.time.timestamp(), 1_700_000_005);
        assert_eq!(ppid(&bytes_of(&ev)), Some(1));
        assert_eq!(o.dirfd, None, "absolute path: no dirfd");
        // A relative path keeps the directory descriptor it is relative to.
        let mut rel = ev;
        rel.path = [0u8; PATH_LEN];
        rel.path[..5].copy_from_slice(b"token");
        rel.path_len = 5;
        rel.dirfd = 7;
        let KernelEvent::Open(o) = decode(&bytes_of(&rel), &clock).unwrap() else {
            panic!("not an open")
        };
        assert_eq!((o.path.as_str(), o.dirfd), ("token", Some(7)));
        rel.dirfd = credtrail_common::OPEN_DIRFD_CWD;
        let KernelEvent::Open(o) = decode(&bytes_of(&rel), &clock).unwrap() else {
            panic!("not an open")
        };
        assert_eq!(o.dirfd, None, "AT_FDCWD: the working directory");
    }

    #[test]
    fn connect_record_decodes_mapped_ipv4_as_ipv4() {
        let mut local = [0u8; 16];
        local[10] = 0xff;
        local[11] = 0xff;
        local[12..].copy_from_slice(&[127, 0, 0, 1]);
        let mut remote = local;
        remote[15] = 2;
        let ev = ConnectEvent {
            header: header(EventKind::Connect, Source::SockState),
            family: u32::from(AF_INET6),
            local_port: 40000,
            remote_port: 6443,
            local_addr: local,
            remote_addr: remote,
        };
        let KernelEvent::Connect(c) = decode(&bytes_of(&ev), &Clock::now()).unwrap() else {
            panic!("not a connect")
        };
        assert_eq!(c.local, Some("127.0.0.1:40000".parse().unwrap()));
        assert_eq!(c.remote, "127.0.0.2:6443".parse().unwrap());
        assert_eq!(c.source, CaptureSource::SockState);
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert_eq!(
            decode(&[0u8; 10], &Clock::now()),
            Err(DecodeError::Short(10))
        );
        let mut h = header(EventKind::Open, Source::Lsm);
        h.kind = 99;
        assert_eq!(
            decode(&bytes_of(&h), &Clock::now()),
            Err(DecodeError::Kind(99))
        );
        let h = header(EventKind::Open, Source::Lsm);
        assert_eq!(
            decode(&bytes_of(&h), &Clock::now()),
            Err(DecodeError::Short(72))
        );
    }
}
