//! Outbound TCP connects to watched API-server endpoints, with both ends
//! after the connect: the logic shared by the two programs on the
//! `sock:inet_sock_set_state` tracepoint (`tp_btf_sock_state.rs`, preferred,
//! and the classic `tp_sock_state.rs`), which differ only in how they read
//! the socket ([`SockView`]).
//!
//! CLOSE -> SYN_SENT runs in the connecting task's context (inside
//! `connect()`), with the destination set, so the endpoint test and the
//! process identity are taken there and remembered by socket address in an
//! LRU map. SYN_SENT -> ESTABLISHED runs in softirq context, where the
//! current task means nothing, but the socket then holds the local address
//! and port the kernel chose: the event is emitted there. Any other exit
//! from SYN_SENT forgets the socket. cgroup `connect4/6` would see the
//! destination before the connect, but not the local port, and only below
//! the cgroup they are attached to.

use credtrail_common::{
    AF_INET, AF_INET6, ConnectEvent, Counter, EndpointKey, EventHeader, EventKind, PendingConnect,
    Source,
};

use crate::{
    config::config,
    event::fill_header,
    maps::{CT_ENDPOINTS, CT_EVENTS, CT_PENDING, count},
};

pub const IPPROTO_TCP: u16 = 6;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_CLOSE: i32 = 7;

/// The socket as one program sees it. Ports are host order; addresses are
/// as on the wire.
pub trait SockView {
    /// The `struct sock *`, as a map key.
    fn skaddr(&self) -> u64;
    fn protocol(&self) -> u16;
    fn family(&self) -> u16;
    fn local_port(&self) -> u16;
    fn remote_port(&self) -> u16;
    fn local_v4(&self) -> [u8; 4];
    fn remote_v4(&self) -> [u8; 4];
    fn local_v6(&self) -> [u8; 16];
    fn remote_v6(&self) -> [u8; 16];
}

/// Whether a transition matters at all: the cheap first test, on the states
/// alone (every TCP state change of every socket comes through here).
#[inline(always)]
pub fn interesting(old: i32, new: i32) -> bool {
    old == TCP_SYN_SENT || (old == TCP_CLOSE && new == TCP_SYN_SENT)
}

/// One state change of a socket (after [`interesting`]).
#[inline(always)]
pub fn on_state<S: SockView>(s: &S, old: i32, new: i32, source: Source) {
    if s.protocol() != IPPROTO_TCP {
        return;
    }
    if old == TCP_CLOSE && new == TCP_SYN_SENT {
        on_syn_sent(s, source);
        return;
    }
    if old != TCP_SYN_SENT {
        return;
    }
    let skaddr = s.skaddr();
    // SAFETY: the map value is read before the entry is removed below.
    if new == TCP_ESTABLISHED
        && let Some(p) = unsafe { CT_PENDING.get(skaddr) }
    {
        let header: EventHeader = p.header;
        emit(s, header);
    }
    let _ = CT_PENDING.remove(skaddr);
}

/// In `connect()`: remember the task if the destination is watched.
#[inline(always)]
fn on_syn_sent<S: SockView>(s: &S, source: Source) {
    let family = s.family();
    let mut key = EndpointKey {
        addr: [0; 16],
        port: s.remote_port(),
        family,
    };
    if family == AF_INET {
        key.addr[..4].copy_from_slice(&s.remote_v4());
    } else if family == AF_INET6 {
        let d = s.remote_v6();
        if d[..10] == [0; 10] && d[10] == 0xff && d[11] == 0xff {
            // IPv4-mapped: look it up as IPv4.
            key.family = AF_INET;
            key.addr[..4].copy_from_slice(&d[12..]);
        } else {
            key.addr = d;
        }
    } else {
        return;
    }
    // SAFETY: a lookup; the value is not kept.
    if unsafe { CT_ENDPOINTS.get(key) }.is_none() {
        return;
    }
    let cfg = config();
    let mut pending = PendingConnect {
        header: EventHeader::ZERO,
    };
    // SAFETY: `pending.header` is a valid, writable header.
    unsafe { fill_header(&raw mut pending.header, EventKind::Connect, source, &cfg) };
    if CT_PENDING.insert(s.skaddr(), pending, 0).is_err() {
        count(Counter::PendingFull);
    }
}

/// In ESTABLISHED: emit with both ends.
#[inline(always)]
fn emit<S: SockView>(s: &S, header: EventHeader) {
    let Some(mut entry) = CT_EVENTS.reserve::<ConnectEvent>(0) else {
        count(Counter::RingbufFull);
        return;
    };
    let family = s.family();
    let mut ev = ConnectEvent {
        header,
        family: u32::from(family),
        local_port: s.local_port(),
        remote_port: s.remote_port(),
        local_addr: [0; 16],
        remote_addr: [0; 16],
    };
    if family == AF_INET {
        ev.local_addr[..4].copy_from_slice(&s.local_v4());
        ev.remote_addr[..4].copy_from_slice(&s.remote_v4());
    } else {
        ev.local_addr = s.local_v6();
        ev.remote_addr = s.remote_v6();
    }
    // SAFETY: `entry` is reserved for a `ConnectEvent`.
    unsafe { entry.as_mut_ptr().write(ev) };
    entry.submit(0);
    count(Counter::Emitted);
}
