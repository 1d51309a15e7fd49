//! Classic tracepoint `sock:inet_sock_set_state` (fallback when `tp_btf` is
//! refused): reads the tracepoint's record. Logic in `sock_state.rs`.
//!
//! Record layout (checked by the loader against tracefs): skaddr 8,
//! oldstate 16, newstate 20, sport 24, dport 26, family 28, protocol 30,
//! saddr 32, daddr 36, saddr_v6 40, daddr_v6 56. Ports are host order.

use aya_ebpf::{
    EbpfContext, helpers::bpf_probe_read_kernel, macros::tracepoint, programs::TracePointContext,
};
use credtrail_common::Source;

use super::sock_state::{SockView, interesting, on_state};

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

#[tracepoint]
pub fn ct_sock_state(ctx: TracePointContext) -> u32 {
    let record = Record(ctx.as_ptr().cast::<u8>().cast_const());
    let (old, new): (i32, i32) = (record.field(OLDSTATE), record.field(NEWSTATE));
    if interesting(old, new) {
        on_state(&record, old, new, Source::SockState);
    }
    0
}

/// The tracepoint's record.
struct Record(*const u8);

impl Record {
    /// A scalar field: one load at a constant offset from the context (the
    /// verifier refuses loads through a moved context pointer).
    #[inline(always)]
    fn field<T: Copy>(&self, off: usize) -> T {
        // SAFETY: callers pass an aligned offset inside the record.
        unsafe { self.0.add(off).cast::<T>().read() }
    }

    /// An address field, copied with a probe read (a byte-wise copy would
    /// move the context pointer). Zero on error.
    #[inline(always)]
    fn addr<const N: usize>(&self, off: usize) -> [u8; N] {
        // SAFETY: probe read of the record.
        unsafe { bpf_probe_read_kernel(self.0.add(off).cast::<[u8; N]>()).unwrap_or([0; N]) }
    }
}

impl SockView for Record {
    #[inline(always)]
    fn skaddr(&self) -> u64 {
        self.field(SKADDR)
    }
    #[inline(always)]
    fn protocol(&self) -> u16 {
        self.field(PROTOCOL)
    }
    #[inline(always)]
    fn family(&self) -> u16 {
        self.field(FAMILY)
    }
    #[inline(always)]
    fn local_port(&self) -> u16 {
        self.field(SPORT)
    }
    #[inline(always)]
    fn remote_port(&self) -> u16 {
        self.field(DPORT)
    }
    #[inline(always)]
    fn local_v4(&self) -> [u8; 4] {
        self.addr(SADDR)
    }
    #[inline(always)]
    fn remote_v4(&self) -> [u8; 4] {
        self.addr(DADDR)
    }
    #[inline(always)]
    fn local_v6(&self) -> [u8; 16] {
        self.addr(SADDR_V6)
    }
    #[inline(always)]
    fn remote_v6(&self) -> [u8; 16] {
        self.addr(DADDR_V6)
    }
}
