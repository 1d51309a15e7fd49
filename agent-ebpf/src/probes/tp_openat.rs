//! Tracepoint `syscalls:sys_enter_openat` (fallback open hook).
//! Record layout (checked by the loader against tracefs):
//! `dfd` at 16, `filename` at 24 (pointer), `flags` at 32.

use aya_ebpf::{EbpfContext, macros::tracepoint, programs::TracePointContext};
use credtrail_common::Source;

use super::syscall_open;

const DFD: usize = 16;
const FILENAME: usize = 24;
const FLAGS: usize = 32;

#[tracepoint]
pub fn ct_tp_openat(ctx: TracePointContext) -> u32 {
    let _ = try_tp_openat(&ctx);
    0
}

fn try_tp_openat(ctx: &TracePointContext) -> Result<(), i64> {
    let base = ctx.as_ptr().cast::<u8>();
    // SAFETY: direct reads of the tracepoint record at its documented offsets.
    unsafe {
        let dfd = base.add(DFD).cast::<u64>().read() as i32;
        let filename = base.add(FILENAME).cast::<*const u8>().read();
        let flags = base.add(FLAGS).cast::<u64>().read() as u32;
        syscall_open::handle(filename, Source::TracepointOpenat, || dfd, || flags)
    }
}
