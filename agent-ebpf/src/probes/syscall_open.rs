//! Shared body of the `sys_enter_openat`/`openat2`/`open` tracepoints.
//!
//! Cheapest first test: one fixed-size read of the path's first
//! `PREFIX_LEN` bytes, its first 8 bytes against the heads of the watched
//! prefixes, then one LPM-trie lookup; only on a prefix hit is the
//! whole path copied (straight into the ring-buffer entry) and its last
//! component tested. A path that cannot be judged by its prefix — relative
//! (`cd dir; cat token`, `openat(dirfd, "token")`) or spelled with `//`,
//! `/./` or `/..` in its first `PREFIX_LEN` bytes — goes to the name test
//! alone: user space resolves it (cwd or dirfd, inside the process's root)
//! and drops what matches no pattern. An ordinary absolute path that misses
//! the head or the trie costs one more scan of the 16 bytes already read.
//! The inode is left 0 (user space stats the file).

use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes,
    generated::bpf_probe_read_user_str,
};
use credtrail_common::{
    Counter, EventKind, KernelConfig, NAME_LEN, OPEN_PATH_TRUNCATED, OpenEvent, PATH_LEN,
    PREFIX_ANY_NAME, PREFIX_LEN, Source,
};

use crate::{
    config::{CT_CONFIG, config},
    event::fill_header,
    filter::{head_passes, name_passes, prefix_flags},
    maps::{CT_EVENTS, count},
};

/// Handles one open of the user-space path `filename`; `dirfd` and `flags`
/// give the directory descriptor and the `O_*` flags (called only for a
/// path that is reported).
///
/// # Safety
/// `filename` is a user-space pointer (read with `bpf_probe_read_user*`).
#[inline(always)]
pub unsafe fn handle(
    filename: *const u8,
    source: Source,
    dirfd: impl FnOnce() -> i32,
    flags: impl FnOnce() -> u32,
) -> Result<(), i64> {
    let mut head = [0u8; PREFIX_LEN];
    // SAFETY: user reads through the helpers, which tolerate bad pointers.
    unsafe {
        if bpf_probe_read_user_buf(filename, &mut head).is_err() {
            // The string may end right before an unmapped page: read it as a string.
            head = [0u8; PREFIX_LEN];
            if bpf_probe_read_user_str_bytes(filename, &mut head).is_err() {
                return Ok(());
            }
        }
    }
    let pflags = if head_passes(&head) {
        prefix_flags(&head)
    } else {
        None
    };
    let pflags = match pflags {
        Some(f) => {
            count(Counter::PrefixHit);
            f
        }
        // Not judged by its prefix: the name test decides, on the bytes
        // already read when the whole path fits in them.
        None if odd_head(&head) => {
            if short_name_misses(&head) {
                return Ok(());
            }
            0
        }
        None => return Ok(()),
    };
    let cfg = config();
    if (bpf_get_current_pid_tgid() >> 32) as u32 == cfg.agent_tgid {
        return Ok(());
    }
    let Some(mut entry) = CT_EVENTS.reserve::<OpenEvent>(0) else {
        count(Counter::RingbufFull);
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reserved entry of the right size.
    unsafe {
        let path = (&raw mut (*ev).path).cast::<u8>();
        let n = bpf_probe_read_user_str(path.cast(), PATH_LEN as u32, filename.cast());
        if n <= 0 {
            entry.discard(0);
            count(Counter::ReadError);
            return Ok(());
        }
        let len = ((n - 1) as usize) & (PATH_LEN - 1);
        if pflags & PREFIX_ANY_NAME == 0 {
            // The last component: scan back from the end for '/', at most
            // NAME_LEN steps; a longer component is tested on its last
            // NAME_LEN bytes (suffix only). A relative path without '/'
            // (`token`) is all name.
            let mut name_len = if len < NAME_LEN { len } else { NAME_LEN };
            for k in 1..=NAME_LEN {
                if k > len {
                    break;
                }
                if *path.add((len - k) & (PATH_LEN - 1)) == b'/' {
                    name_len = k - 1;
                    break;
                }
            }
            if name_len > len || !name_passes(path.add(len - name_len), name_len, cfg.suffix_lens) {
                entry.discard(0);
                return Ok(());
            }
        }
        count(Counter::NameHit);
        fill_header(&raw mut (*ev).header, EventKind::Open, source, &cfg);
        (*ev).flags = flags();
        (*ev).open_flags = if n as usize >= PATH_LEN {
            OPEN_PATH_TRUNCATED
        } else {
            0
        };
        (*ev).path_len = len as u32;
        (*ev).dirfd = dirfd();
        (*ev).inode = 0;
    }
    entry.submit(0);
    count(Counter::Emitted);
    Ok(())
}

/// Whether the path ends inside `head` (its NUL is among the first
/// `PREFIX_LEN` bytes) and its last component fails the name test: then
/// nothing more needs reading (the common relative open, `openat(dirfd,
/// "name")`, costs no ring-buffer reserve and no second read). A longer path
/// is left to the full read (`false`).
#[inline(always)]
fn short_name_misses(head: &[u8; PREFIX_LEN]) -> bool {
    let mut len = PREFIX_LEN;
    for (i, &b) in head.iter().enumerate() {
        if b == 0 {
            len = i;
            break;
        }
    }
    if len >= PREFIX_LEN {
        return false;
    }
    let mut start = 0;
    for (i, &b) in head.iter().enumerate() {
        if i < len && b == b'/' {
            start = i + 1;
        }
    }
    let cfg: *const KernelConfig = &raw const CT_CONFIG;
    // SAFETY: a field read of a static; `name_passes` reads the stack copy
    // through probe-read helpers, and its NUL is at `len` < PREFIX_LEN.
    unsafe {
        let suffix_lens = core::ptr::read_volatile(&raw const (*cfg).suffix_lens);
        !name_passes(
            head.as_ptr().add(start & (PREFIX_LEN - 1)),
            len - start,
            suffix_lens,
        )
    }
}

/// Whether a path's first bytes say its prefix cannot be judged: it is
/// relative, or holds `//` or `/.` (`/./`, `/../`, and hidden directories,
/// which the name test then decides) before byte `PREFIX_LEN`.
#[inline(always)]
fn odd_head(head: &[u8; PREFIX_LEN]) -> bool {
    if head[0] != b'/' {
        return head[0] != 0;
    }
    let mut prev_slash = false;
    for &b in head.iter() {
        if b == 0 {
            return false;
        }
        if prev_slash && (b == b'/' || b == b'.') {
            return true;
        }
        prev_slash = b == b'/';
    }
    false
}
