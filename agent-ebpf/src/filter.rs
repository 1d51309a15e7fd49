//! The kernel side of the watched-path filter (the user-space model is
//! `credtrail_agent::patterns::KernelFilter`; keep both in step).
//!
//! - Prefix test: the first `PREFIX_LEN` bytes of a path, looked up in the
//!   `CT_PREFIXES` LPM trie (longest watched literal prefix wins).
//! - Name test: the last path component, by exact name (`CT_NAMES`, names
//!   shorter than `NAME_LEN`) or by its ending (`CT_SUFFIXES`, endings
//!   shorter than `NAME_LEN`, e.g. `.pem`).
//!
//! Written for the verifier (also the 5.10/6.1 ones): no loop whose exits
//! depend on the data, keys zero-padded by string-copy helpers into zeroed
//! stack buffers rather than by per-byte branches.

use aya_ebpf::{helpers::generated::bpf_probe_read_kernel_str, maps::lpm_trie::Key};
use credtrail_common::{HEAD_LEN, HEADS, NAME_LEN, PREFIX_LEN, PathHeads};

use crate::config::CT_HEADS;
use crate::maps::{CT_NAMES, CT_PREFIXES, CT_SUFFIXES};

/// The head test, before the prefix trie (a trie lookup costs more than
/// these compares, and most paths a node opens, under `/proc`, `/usr`,
/// `/sys`, `/dev`, share no head with a watched prefix): the first
/// `HEAD_LEN` bytes, masked, against each head in `CT_HEADS`.
#[inline(always)]
pub fn head_passes(head: &[u8; PREFIX_LEN]) -> bool {
    let t: *const PathHeads = &raw const CT_HEADS;
    // SAFETY: field reads of a static (a frozen read-only map).
    let n = unsafe { core::ptr::read_volatile(&raw const (*t).count) } as usize;
    if n == 0 {
        return true;
    }
    let mut b = [0u8; HEAD_LEN];
    b.copy_from_slice(&head[..HEAD_LEN]);
    let h = u64::from_le_bytes(b);
    for i in 0..HEADS {
        if i >= n {
            break;
        }
        // SAFETY: as above; `i < HEADS`.
        let (v, m) = unsafe {
            (
                core::ptr::read_volatile(&raw const (*t).heads[i]),
                core::ptr::read_volatile(&raw const (*t).masks[i]),
            )
        };
        if h & m == v {
            return true;
        }
    }
    false
}

/// Flags of the longest watched prefix of `head`, if any.
#[inline(always)]
pub fn prefix_flags(head: &[u8; PREFIX_LEN]) -> Option<u32> {
    let key = Key::new((PREFIX_LEN * 8) as u32, *head);
    CT_PREFIXES.get(&key).copied()
}

/// A NUL-padded key from the kernel string at `src` (at most NAME_LEN - 1 bytes).
#[inline(always)]
unsafe fn key_from(src: *const u8) -> [u8; NAME_LEN] {
    let mut key = [0u8; NAME_LEN];
    // SAFETY: a probe read into a stack buffer of the given size.
    unsafe {
        bpf_probe_read_kernel_str(key.as_mut_ptr().cast(), NAME_LEN as u32, src.cast());
    }
    key
}

/// Name test on the last component, given by its kernel address and length.
/// For a component longer than `NAME_LEN`, pass its last `NAME_LEN` bytes
/// (`name` = end - NAME_LEN, `len` = NAME_LEN): no exact match is then possible.
///
/// Exact names: one lookup. Endings: one lookup per ending length in use
/// (`suffix_lens`, a load-time constant, so the verifier drops the unused
/// lengths). No data-dependent loop and no comparison on `len` beyond the
/// first: the verifier sees a handful of paths whatever the name.
///
/// # Safety
/// `name` is read only through probe-read helpers.
#[inline(always)]
pub unsafe fn name_passes(name: *const u8, len: usize, suffix_lens: u32) -> bool {
    // SAFETY: probe reads only.
    unsafe {
        if len < NAME_LEN && CT_NAMES.get(key_from(name)).is_some() {
            return true;
        }
        // The name is NUL-terminated at `end` (dentry names and the copied
        // path both are). For an ending longer than the name the read starts
        // before it: at worst a false hit, which user space drops.
        let end = name.wrapping_add(len);
        for l in 1..NAME_LEN {
            if suffix_lens & (1 << l) != 0
                && CT_SUFFIXES.get(key_from(end.wrapping_sub(l))).is_some()
            {
                return true;
            }
        }
        false
    }
}
