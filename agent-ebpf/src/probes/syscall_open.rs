//! Shared body of the `sys_enter_openat`/`openat2`/`open` tracepoints.
//!
//! Cheapest first test: one fixed-size read of the path's first
//! `PREFIX_LEN` bytes, its first 8 bytes against the heads of the watched
//! prefixes, then one LPM-trie lookup; only on a prefix hit is the
//! whole path copied (straight into the ring-buffer entry) and its last
//! component tested. Relative paths never match the (absolute) prefixes:
//! they are not reported. The inode is left 0 (user space stats the file).

use aya_ebpf::helpers::{
    bpf_get_current_pid_tgid, bpf_probe_read_user_buf, bpf_probe_read_user_str_bytes,
    generated::bpf_probe_read_user_str,
};
use credtrail_common::{
    Counter, EventKind, NAME_LEN, OPEN_PATH_TRUNCATED, OpenEvent, PATH_LEN, PREFIX_ANY_NAME,
    PREFIX_LEN, Source,
};

use crate::{
    config::config,
    event::fill_header,
    filter::{head_passes, name_passes, prefix_flags},
    maps::{CT_EVENTS, count},
};

/// Handles one open of the user-space path `filename`; `flags` gives the
/// `O_*` flags (called only for a path that is reported).
///
/// # Safety
/// `filename` is a user-space pointer (read with `bpf_probe_read_user*`).
#[inline(always)]
pub unsafe fn handle(
    filename: *const u8,
    source: Source,
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
    if !head_passes(&head) {
        return Ok(());
    }
    let Some(pflags) = prefix_flags(&head) else {
        return Ok(());
    };
    count(Counter::PrefixHit);
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
            // NAME_LEN bytes (suffix only).
            let mut name_len = NAME_LEN;
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
        (*ev)._pad0 = 0;
        (*ev).inode = 0;
    }
    entry.submit(0);
    count(Counter::Emitted);
    Ok(())
}
