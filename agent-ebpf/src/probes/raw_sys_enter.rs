//! BTF raw tracepoint `sys_enter(struct pt_regs *regs, long id)` (fallback
//! open hook, preferred to the `syscalls:sys_enter_open*` tracepoints).
//!
//! It runs for every system call, but a call that is not `open`, `openat`
//! or `openat2` costs one comparison of `id` with three constants. The
//! classic per-syscall tracepoints instead build a record for each call
//! they watch before the program runs. The system-call numbers and the
//! `pt_regs` offsets of the arguments come from user space (they depend on
//! the architecture), in the load-time configuration.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel, macros::btf_tracepoint, programs::BtfTracePointContext,
};
use credtrail_common::{CONFIG_SYSCALLS, KernelConfig, Source};

use super::syscall_open;
use crate::config::CT_CONFIG;

#[btf_tracepoint(function = "sys_enter")]
pub fn ct_raw_sys_enter(ctx: BtfTracePointContext) -> u32 {
    let id: i64 = ctx.arg(1);
    // Field reads, not a copy of the whole configuration: this runs on
    // every system call. The configuration is a frozen read-only map, so
    // the verifier knows these values.
    let cfg: *const KernelConfig = &raw const CT_CONFIG;
    // SAFETY: reads of fields of a static.
    let (open, openat, openat2) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*cfg).nr_open),
            core::ptr::read_volatile(&raw const (*cfg).nr_openat),
            core::ptr::read_volatile(&raw const (*cfg).nr_openat2),
        )
    };
    let regs: *const u8 = ctx.arg(0);
    // The path argument is loaded straight from `regs` (a BTF pointer: the
    // verifier makes the load fault-tolerant), at an offset that is a
    // constant in each branch; no helper call. Directory and flags are read
    // only for a path that is reported.
    // (path argument, flags argument, flags behind a pointer)
    let (filename, path_arg, flags_arg, how) = if id == i64::from(openat) {
        (reg(regs, 1), 1, 2, false)
    } else if id == i64::from(open) {
        (reg(regs, 0), 0, 1, false)
    } else if id == i64::from(openat2) {
        (reg(regs, 1), 1, 2, true)
    } else {
        return 0;
    };
    // SAFETY: as above.
    let flags = unsafe { core::ptr::read_volatile(&raw const (*cfg).flags) };
    if flags & CONFIG_SYSCALLS == 0 {
        return 0;
    }
    // SAFETY: as above.
    let offsets = unsafe { core::ptr::read_volatile(&raw const (*cfg).regs_arg) };
    let arg = |n: usize| -> u64 {
        let off = match n {
            0 => offsets[0],
            1 => offsets[1],
            _ => offsets[2],
        };
        // SAFETY: a probe read of the user registers saved at entry.
        unsafe { bpf_probe_read_kernel(regs.add(off as usize).cast::<u64>()).unwrap_or(0) }
    };
    let dirfd = || {
        if path_arg == 1 {
            arg(0) as i32
        } else {
            credtrail_common::OPEN_DIRFD_CWD
        }
    };
    // SAFETY: `filename` is the call's user-space path pointer; `how` is a
    // user pointer read with bpf_probe_read_user.
    let _ = unsafe {
        syscall_open::handle(filename as *const u8, Source::RawSysEnter, dirfd, || {
            let value = arg(flags_arg);
            if how {
                aya_ebpf::helpers::bpf_probe_read_user(value as *const u64).unwrap_or(0) as u32
            } else {
                value as u32
            }
        })
    };
    0
}

/// System-call argument `i` (a constant at each call) from the tracepoint's
/// `struct pt_regs *`: one direct load at the offset user space found in BTF
/// (a constant to the verifier: the configuration is a frozen read-only map).
#[inline(always)]
fn reg(regs: *const u8, i: usize) -> u64 {
    let cfg: *const KernelConfig = &raw const CT_CONFIG;
    // SAFETY: a field read of a static; `regs` is the BTF-typed argument,
    // whose loads the verifier checks against `struct pt_regs`.
    unsafe {
        let off = core::ptr::read_volatile(&raw const (*cfg).regs_arg[i]);
        regs.add(off as usize).cast::<u64>().read()
    }
}
