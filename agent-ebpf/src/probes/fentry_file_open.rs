//! fentry on `security_file_open(struct file *)`.

use aya_ebpf::{macros::fentry, programs::FEntryContext};
use credtrail_common::Source;

use super::file_open;

#[fentry(function = "security_file_open")]
pub fn ct_fentry_file_open(ctx: FEntryContext) -> i32 {
    let _ = try_fentry_file_open(&ctx);
    0
}

fn try_fentry_file_open(ctx: &FEntryContext) -> Result<(), i64> {
    let file: *const u8 = ctx.arg(0);
    // SAFETY: `file` is the traced function's `struct file *` argument.
    unsafe { file_open::handle(file, Source::Fentry) }
}
