//! The load-time configuration: a read-only global that user space sets
//! with `EbpfLoader::override_global` (the verifier sees its values as constants).

use credtrail_common::{KernelConfig, PathHeads};

#[unsafe(no_mangle)]
pub static CT_CONFIG: KernelConfig = KernelConfig::ZERO;

/// The head test's table (read field by field by `filter::head_passes`).
#[unsafe(no_mangle)]
pub static CT_HEADS: PathHeads = PathHeads::ZERO;

/// The configuration user space set at load time.
#[inline(always)]
pub fn config() -> KernelConfig {
    // SAFETY: a plain read of a static; volatile so the compiler does not
    // fold the zero initialiser.
    unsafe { core::ptr::read_volatile(&raw const CT_CONFIG) }
}
