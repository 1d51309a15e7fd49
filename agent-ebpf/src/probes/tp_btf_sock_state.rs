//! `tp_btf` on `inet_sock_set_state(const struct sock *sk, int oldstate,
//! int newstate)`: the kernel's own arguments, without the record the
//! classic tracepoint fills on every TCP state change of every socket, so
//! the common case (a transition that does not matter) costs two register
//! tests. The socket's fields are read at offsets the loader takes from the
//! running kernel's BTF (`sock_*` in the configuration). Logic in
//! `sock_state.rs`.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use credtrail_common::{CONFIG_SOCK_OFFSETS, KernelConfig, Source};

use super::sock_state::{SockView, interesting, on_state};
use crate::config::config;

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn ct_btf_sock_state(ctx: BtfTracePointContext) -> u32 {
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    if !interesting(old, new) {
        return 0;
    }
    let cfg = config();
    if cfg.flags & CONFIG_SOCK_OFFSETS == 0 {
        return 0;
    }
    let sock = Sock {
        sk: ctx.arg(0),
        cfg,
    };
    on_state(&sock, old, new, Source::SockState);
    0
}

/// A `struct sock *` and where its fields are.
struct Sock {
    sk: *const u8,
    cfg: KernelConfig,
}

impl Sock {
    /// A field at `off`, zero if it cannot be read.
    #[inline(always)]
    fn read<T: Copy + Default>(&self, off: u32) -> T {
        // SAFETY: a probe read: a bad address gives an error, not a fault.
        unsafe { bpf_probe_read_kernel(self.sk.add(off as usize).cast::<T>()).unwrap_or_default() }
    }

    #[inline(always)]
    fn read_addr<const N: usize>(&self, off: u32) -> [u8; N] {
        // SAFETY: as `read`.
        unsafe {
            bpf_probe_read_kernel(self.sk.add(off as usize).cast::<[u8; N]>()).unwrap_or([0; N])
        }
    }
}

impl SockView for Sock {
    #[inline(always)]
    fn skaddr(&self) -> u64 {
        self.sk as u64
    }
    #[inline(always)]
    fn protocol(&self) -> u16 {
        self.read(self.cfg.sock_protocol)
    }
    #[inline(always)]
    fn family(&self) -> u16 {
        self.read(self.cfg.sock_family)
    }
    #[inline(always)]
    fn local_port(&self) -> u16 {
        // `skc_num` is host order already.
        self.read(self.cfg.sock_num)
    }
    #[inline(always)]
    fn remote_port(&self) -> u16 {
        u16::from_be(self.read(self.cfg.sock_dport))
    }
    #[inline(always)]
    fn local_v4(&self) -> [u8; 4] {
        self.read_addr(self.cfg.sock_rcv_saddr)
    }
    #[inline(always)]
    fn remote_v4(&self) -> [u8; 4] {
        self.read_addr(self.cfg.sock_daddr)
    }
    #[inline(always)]
    fn local_v6(&self) -> [u8; 16] {
        self.read_addr(self.cfg.sock_v6_rcv_saddr)
    }
    #[inline(always)]
    fn remote_v6(&self) -> [u8; 16] {
        self.read_addr(self.cfg.sock_v6_daddr)
    }
}
