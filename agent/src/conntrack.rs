//! The translated (NAT'd) source of an API-server connection, from the
//! node's conntrack table over netlink (`NETLINK_NETFILTER`, ctnetlink).
//!
//! A pod whose traffic is masqueraded (Calico `natOutgoing`, ip-masq-agent,
//! an API server outside the pod network) reaches the API server with the
//! node's address: the API server's `sourceIPs` then name the node, not the
//! pod. The connection's conntrack entry holds both: the original tuple
//! (pod address → API server) and the reply tuple (API server → translated
//! address). The agent runs in the node's network namespace, where the NAT
//! happens, and asks for the entry of each connect it saw
//! (`IPCTNL_MSG_CT_GET` with the original tuple); the reply tuple's
//! destination is what the API server sees.
//!
//! One request per API-server connect, answered from the kernel's hash
//! table; bounded by a 200 ms receive timeout. Any failure (conntrack not
//! loaded, no entry, no permission) is "no translation known", never an error
//! on the observation path; the first failure to open the socket disables
//! the lookups (logged once).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd as _;
use std::sync::{Mutex, OnceLock};

use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, SocketAddr as NlAddr, protocols::NETLINK_NETFILTER};

/// Errors of one lookup (reported to the caller of [`lookup`]; [`translated`]
/// turns them into "unknown").
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("conntrack netlink socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("conntrack request: {0}")]
    Io(#[source] std::io::Error),
    #[error("conntrack answer could not be decoded: {0}")]
    Decode(String),
    #[error("local and remote address families differ")]
    Family,
}

const RECV_TIMEOUT_MS: i64 = 200;
const RECV_BUF: usize = 8192;

fn open() -> Result<Socket, ConntrackError> {
    let mut s = Socket::new(NETLINK_NETFILTER).map_err(ConntrackError::Socket)?;
    s.bind_auto().map_err(ConntrackError::Socket)?;
    s.connect(&NlAddr::new(0, 0))
        .map_err(ConntrackError::Socket)?;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: RECV_TIMEOUT_MS * 1000,
    };
    // SAFETY: setsockopt with a valid fd and a timeval of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::from_ref(&tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(ConntrackError::Socket(std::io::Error::last_os_error()));
    }
    Ok(s)
}

fn request(local: SocketAddr, remote: SocketAddr, seq: u32) -> Result<Vec<u8>, ConntrackError> {
    let family = match (local.ip(), remote.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) => NetfilterProtoFamily::IPv4,
        (IpAddr::V6(_), IpAddr::V6(_)) => NetfilterProtoFamily::IPv6,
        _ => return Err(ConntrackError::Family),
    };
    let orig = ConntrackAttribute::CtaTupleOrig(vec![
        Tuple::Ip(vec![
            IPTuple::SourceAddress(local.ip()),
            IPTuple::DestinationAddress(remote.ip()),
        ]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(Protocol::Tcp),
            ProtoTuple::SourcePort(local.port()),
            ProtoTuple::DestinationPort(remote.port()),
        ]),
    ]);
    let mut hdr = NetlinkHeader::default();
    hdr.flags = NLM_F_REQUEST;
    hdr.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        hdr,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, 0),
            ConntrackMessage::Get(vec![orig]),
        )),
    );
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    Ok(buf)
}

/// The reply tuple's destination of a decoded answer.
fn reply_destination(attrs: &[ConntrackAttribute]) -> Option<SocketAddr> {
    attrs.iter().find_map(|a| match a {
        ConntrackAttribute::CtaTupleReply(tuples) => {
            let mut ip = None;
            let mut port = None;
            for t in tuples {
                match t {
                    Tuple::Ip(v) => {
                        for x in v {
                            if let IPTuple::DestinationAddress(a) = x {
                                ip = Some(*a);
                            }
                        }
                    }
                    Tuple::Proto(v) => {
                        for x in v {
                            if let ProtoTuple::DestinationPort(p) = x {
                                port = Some(*p);
                            }
                        }
                    }
                    _ => {}
                }
            }
            Some(SocketAddr::new(ip?, port?))
        }
        _ => None,
    })
}

/// Looks up the connection `local → remote` (TCP) on `sock`: the address the
/// peer sees for it (the reply tuple's destination), `None` when conntrack
/// has no entry for it.
pub fn lookup_on(
    sock: &Socket,
    local: SocketAddr,
    remote: SocketAddr,
    seq: u32,
) -> Result<Option<SocketAddr>, ConntrackError> {
    let req = request(local, remote, seq)?;
    sock.send(&req, 0).map_err(ConntrackError::Io)?;
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let n = sock
            .recv(&mut &mut buf[..], 0)
            .map_err(ConntrackError::Io)?;
        let mut off = 0;
        while off < n {
            let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[off..n])
                .map_err(|e| ConntrackError::Decode(e.to_string()))?;
            let len = msg.header.length as usize;
            if msg.header.sequence_number == seq {
                match msg.payload {
                    NetlinkPayload::InnerMessage(NetfilterMessage {
                        inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)),
                        ..
                    }) => return Ok(reply_destination(&attrs)),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        let err = e.to_io();
                        return if err.raw_os_error() == Some(libc::ENOENT) {
                            Ok(None)
                        } else {
                            Err(ConntrackError::Io(err))
                        };
                    }
                    NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(None),
                    _ => {}
                }
            }
            if len == 0 {
                break;
            }
            off += (len + 3) & !3;
        }
    }
}

/// Opens a socket and looks up one connection (tests, one-off use).
pub fn lookup(local: SocketAddr, remote: SocketAddr) -> Result<Option<SocketAddr>, ConntrackError> {
    lookup_on(&open()?, local, remote, 1)
}

struct Shared {
    sock: Option<Socket>,
    seq: u32,
    disabled: bool,
}

static SHARED: OnceLock<Mutex<Shared>> = OnceLock::new();

/// The translated source of the connection `local → remote`, when conntrack
/// shows one that differs from `local`; `None` otherwise (no NAT, unknown).
pub fn translated(local: Option<SocketAddr>, remote: SocketAddr) -> Option<SocketAddr> {
    let local = local?;
    let m = SHARED.get_or_init(|| {
        Mutex::new(Shared {
            sock: None,
            seq: 0,
            disabled: false,
        })
    });
    let mut g = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if g.disabled {
        return None;
    }
    if g.sock.is_none() {
        match open() {
            Ok(s) => g.sock = Some(s),
            Err(e) => {
                tracing::warn!("conntrack lookups disabled (NAT'd sources unknown): {e}");
                g.disabled = true;
                return None;
            }
        }
    }
    g.seq = g.seq.wrapping_add(1);
    let seq = g.seq;
    let res = lookup_on(g.sock.as_ref()?, local, remote, seq);
    match res {
        Ok(Some(seen)) if seen != local => Some(seen),
        Ok(_) => None,
        Err(e) => {
            tracing::debug!("conntrack lookup {local} -> {remote}: {e}");
            // A timeout or a stray answer may leave the socket out of step.
            g.sock = None;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_the_original_tuple() {
        let buf = request(
            "10.244.1.7:51324".parse().unwrap(),
            "10.0.0.1:6443".parse().unwrap(),
            7,
        )
        .unwrap();
        let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&buf).unwrap();
        assert_eq!(msg.header.flags, NLM_F_REQUEST);
        let NetlinkPayload::InnerMessage(NetfilterMessage {
            inner: NetfilterMessageInner::Conntrack(ConntrackMessage::Get(attrs)),
            ..
        }) = msg.payload
        else {
            panic!("not a conntrack get: {:?}", msg.payload)
        };
        let ConntrackAttribute::CtaTupleOrig(t) = &attrs[0] else {
            panic!("{attrs:?}")
        };
        assert!(t.contains(&Tuple::Ip(vec![
            IPTuple::SourceAddress("10.244.1.7".parse().unwrap()),
            IPTuple::DestinationAddress("10.0.0.1".parse().unwrap()),
        ])));
    }

    #[test]
    fn mixed_families_are_refused() {
        assert!(matches!(
            request("10.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap(), 1),
            Err(ConntrackError::Family)
        ));
    }

    #[test]
    fn reply_destination_is_the_translated_source() {
        let attrs = vec![ConntrackAttribute::CtaTupleReply(vec![
            Tuple::Ip(vec![
                IPTuple::SourceAddress("10.0.0.1".parse().unwrap()),
                IPTuple::DestinationAddress("10.0.1.11".parse().unwrap()),
            ]),
            Tuple::Proto(vec![
                ProtoTuple::Protocol(Protocol::Tcp),
                ProtoTuple::SourcePort(6443),
                ProtoTuple::DestinationPort(40112),
            ]),
        ])];
        assert_eq!(
            reply_destination(&attrs),
            Some("10.0.1.11:40112".parse().unwrap())
        );
        assert_eq!(reply_destination(&[]), None);
    }
}
