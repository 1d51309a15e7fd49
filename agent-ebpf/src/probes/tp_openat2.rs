//! Tracepoint `syscalls:sys_enter_openat2` (fallback open hook).
//! Record layout (checked by the loader against tracefs):
//! `dfd` at 16, `filename` at 24, `struct open_how *how` at 32 (`flags` is its first u64).

use aya_ebpf::{
    EbpfContext, helpers::bpf_probe_read_user, macros::tracepoint, programs::TracePointContext,
};
use credtrail_common::Source;

use super::syscall_open;

const DFD: usize = 16;
const FILENAME: usize = 24;
const HOW: usize = 32;

#[tracepoint]
pub fn ct_tp_openat2(ctx: TracePointContext) -> u32 {
    let _ = try_tp_openat2(&ctx);
    0
}

fn try_tp_openat2(ctx: &TracePointContext) -> Result<(), i64> {
    let base = ctx.as_ptr().cast::<u8>();
    // SAFETY: direct reads of the tracepoint record at its documented offsets;
    // the user pointer `how` is read through bpf_probe_read_user.
    unsafe {
        let dfd = base.add(DFD).cast::<u64>().read() as i32;
        let filename = base.add(FILENAME).cast::<*const u8>().read();
        let how = base.add(HOW).cast::<*const u64>().read();
        syscall_open::handle(
            filename,
            Source::TracepointOpenat2,
            || dfd,
            || bpf_probe_read_user(how).unwrap_or(0) as u32,
        )
    }
}
