//! BPF LSM `file_open`: the preferred open hook. It never denies: it
//! always returns 0 (or the previous LSM program's verdict).

use aya_ebpf::{macros::lsm, programs::LsmContext};
use credtrail_common::Source;

use super::file_open;

#[lsm(hook = "file_open")]
pub fn ct_lsm_file_open(ctx: LsmContext) -> i32 {
    // LSM_HOOK(int, 0, file_open, struct file *file): arg 1 is the previous verdict.
    let prev: i32 = ctx.arg(1);
    let _ = try_lsm_file_open(&ctx);
    prev
}

fn try_lsm_file_open(ctx: &LsmContext) -> Result<(), i64> {
    let file: *const u8 = ctx.arg(0);
    // SAFETY: `file` is the hook's `struct file *` argument.
    unsafe { file_open::handle(file, Source::Lsm) }
}
