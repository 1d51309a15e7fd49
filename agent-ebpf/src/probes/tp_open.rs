//! Tracepoint `syscalls:sys_enter_open` (fallback open hook): the legacy
//! `open(2)`, which static and older binaries still call on x86-64.
//! Record layout (checked by the loader against tracefs):
//! `filename` at 16 (pointer), `flags` at 24.

use aya_ebpf::{EbpfContext, macros::tracepoint, programs::TracePointContext};
use credtrail_common::Source;

use super::syscall_open;

const FILENAME: usize = 16;
const FLAGS: usize = 24;

#[tracepoint]
pub fn ct_tp_open(ctx: TracePointContext) -> u32 {
    let _ = try_tp_open(&ctx);
    0
}

fn try_tp_open(ctx: &TracePointContext) -> Result<(), i64> {
    let base = ctx.as_ptr().cast::<u8>();
    // SAFETY: direct reads of the tracepoint record at its documented offsets.
    unsafe {
        let filename = base.add(FILENAME).cast::<*const u8>().read();
        let flags = base.add(FLAGS).cast::<u64>().read() as u32;
        syscall_open::handle(
            filename,
            Source::TracepointOpen,
            || credtrail_common::OPEN_DIRFD_CWD,
            || flags,
        )
    }
}
