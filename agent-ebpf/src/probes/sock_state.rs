//! Tracepoint `sock:inet_sock_set_state`: outbound TCP connects to watched
//! API-server endpoints, with both ends after the connect.
//!
//! Why this hook: CLOSE -> SYN_SENT runs in the connecting task's context
//! (inside `connect()`), with the destination set, so the endpoint test and
//! the process identity are taken there and remembered by socket address
//! (`skaddr`, a plain value in the record) in an LRU map. SYN_SENT ->
//! ESTABLISHED runs in softirq context, where the current task means nothing,
//! but the record then holds the local address and port the kernel chose:
//! the event is emitted there. Any other exit from SYN_SENT forgets the
//! socket. cgroup `connect4/6` would see the destination before the connect,
//! but not the local port, and only below the cgroup they are attached to.
//!
//! Record layout (checked by the loader against tracefs): skaddr 8,
//! oldstate 16, newstate 20, sport 24, dport 26, family 28, protocol 30,
//! saddr 32, daddr 36, saddr_v6 40, daddr_v6 56. Ports are host order.

use aya_ebpf::{
    EbpfContext, helpers::bpf_probe_read_kernel, macros::tracepoint, programs::TracePointContext,
};
use credtrail_common::{
    AF_INET, AF_INET6, ConnectEvent, Counter, EndpointKey, EventHeader, EventKind, PendingConnect,
    Source,
};

use crate::{
    config::config,
    event::fill_header,
    maps::{CT_ENDPOINTS, CT_EVENTS, CT_PENDING, count},
};

const SKADDR: usize = 8;
const OLDSTATE: usize = 16;
const NEWSTATE: usize = 20;
const SPORT: usize = 24;
const DPORT: usize = 26;
const FAMILY: usize = 28;
const PROTOCOL: usize = 30;
const SADDR: usize = 32;
const DADDR: usize = 36;
const SADDR_V6: usize = 40;
const DADDR_V6: usize = 56;

const IPPROTO_TCP: u16 = 6;
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_CLOSE: i32 = 7;

#[tracepoint]
pub fn ct_sock_state(ctx: TracePointContext) -> u32 {
    let _ = try_sock_state(&ctx);
    0
}

/// A scalar field: one load at a constant offset from the context (the
/// verifier refuses loads through a moved context pointer).
#[inline(always)]
unsafe fn field<T: Copy>(base: *const u8, off: usize) -> T {
    // SAFETY: the caller passes an aligned offset inside the tracepoint record.
    unsafe { base.add(off).cast::<T>().read() }
}

/// An address field, copied with a probe read (a byte-wise copy would move
/// the context pointer). Zero on error.
#[inline(always)]
unsafe fn addr_field<const N: usize>(base: *const u8, off: usize) -> [u8; N] {
    // SAFETY: probe read of the record.
    unsafe { bpf_probe_read_kernel(base.add(off).cast::<[u8; N]>()).unwrap_or([0; N]) }
}

fn try_sock_state(ctx: &TracePointContext) -> Result<(), i64> {
    let base = ctx.as_ptr().cast::<u8>().cast_const();
    // SAFETY: reads of the record at its documented offsets.
    unsafe {
        if field::<u16>(base, PROTOCOL) != IPPROTO_TCP {
            return Ok(());
        }
        let old: i32 = field(base, OLDSTATE);
        let new: i32 = field(base, NEWSTATE);
        if old == TCP_CLOSE && new == TCP_SYN_SENT {
            return on_syn_sent(base);
        }
        if old != TCP_SYN_SENT {
            return Ok(());
        }
        let skaddr: u64 = field(base, SKADDR);
        if new == TCP_ESTABLISHED
            && let Some(p) = CT_PENDING.get(skaddr)
        {
            let header: EventHeader = p.header;
            emit(base, header);
        }
        let _ = CT_PENDING.remove(skaddr);
    }
    Ok(())
}

/// In `connect()`: remember the task if the destination is watched.
unsafe fn on_syn_sent(base: *const u8) -> Result<(), i64> {
    // SAFETY: reads of the record at its documented offsets.
    unsafe {
        let family: u16 = field(base, FAMILY);
        let mut key = EndpointKey {
            addr: [0; 16],
            port: field(base, DPORT),
            family,
        };
        if family == AF_INET {
            let d: [u8; 4] = addr_field(base, DADDR);
            key.addr[..4].copy_from_slice(&d);
        } else if family == AF_INET6 {
            let d: [u8; 16] = addr_field(base, DADDR_V6);
            if d[..10] == [0; 10] && d[10] == 0xff && d[11] == 0xff {
                // IPv4-mapped: look it up as IPv4.
                key.family = AF_INET;
                key.addr[..4].copy_from_slice(&d[12..]);
            } else {
                key.addr = d;
            }
        } else {
            return Ok(());
        }
        if CT_ENDPOINTS.get(key).is_none() {
            return Ok(());
        }
        let cfg = config();
        let mut pending = PendingConnect {
            header: EventHeader::ZERO,
        };
        fill_header(
            &raw mut pending.header,
            EventKind::Connect,
            Source::SockState,
            &cfg,
        );
        let skaddr: u64 = field(base, SKADDR);
        if CT_PENDING.insert(skaddr, pending, 0).is_err() {
            count(Counter::PendingFull);
        }
    }
    Ok(())
}

/// In ESTABLISHED: emit with both ends.
unsafe fn emit(base: *const u8, header: EventHeader) {
    let Some(mut entry) = CT_EVENTS.reserve::<ConnectEvent>(0) else {
        count(Counter::RingbufFull);
        return;
    };
    // SAFETY: reads of the record at documented offsets; `entry` is reserved.
    unsafe {
        let family: u16 = field(base, FAMILY);
        let mut ev = ConnectEvent {
            header,
            family: u32::from(family),
            local_port: field(base, SPORT),
            remote_port: field(base, DPORT),
            local_addr: [0; 16],
            remote_addr: [0; 16],
        };
        if family == AF_INET {
            let s: [u8; 4] = addr_field(base, SADDR);
            let d: [u8; 4] = addr_field(base, DADDR);
            ev.local_addr[..4].copy_from_slice(&s);
            ev.remote_addr[..4].copy_from_slice(&d);
        } else {
            ev.local_addr = addr_field(base, SADDR_V6);
            ev.remote_addr = addr_field(base, DADDR_V6);
        }
        entry.as_mut_ptr().write(ev);
    }
    entry.submit(0);
    count(Counter::Emitted);
}
