//! Shared body of the LSM and fentry open hooks: dentry-name test first
//! (no path built), then `bpf_d_path` into the ring-buffer entry, then the
//! prefix test on the built path.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel, generated::bpf_d_path};
use credtrail_common::{
    CONFIG_ANY_NAME, CONFIG_FILE_OFFSETS, Counter, EventKind, NAME_LEN, OPEN_PATH_TRUNCATED,
    OpenEvent, PATH_LEN, PREFIX_LEN, Source,
};

use crate::{
    config::config,
    event::fill_header,
    filter::{name_passes, prefix_flags},
    maps::{CT_EVENTS, count},
};

/// Handles one `struct file *` being opened.
///
/// # Safety
/// `file` must be the hook's trusted `struct file *` argument.
#[inline(always)]
pub unsafe fn handle(file: *const u8, source: Source) -> Result<(), i64> {
    let cfg = config();
    if cfg.flags & CONFIG_FILE_OFFSETS == 0 {
        return Ok(());
    }
    // SAFETY: kernel reads through bpf_probe_read_kernel; offsets from BTF.
    unsafe {
        if cfg.flags & CONFIG_ANY_NAME == 0 {
            let (name, len) = dentry_name(file, &cfg)?;
            if !name_passes(name, len, cfg.suffix_lens) {
                return Ok(());
            }
        }
        count(Counter::NameHit);
        if (bpf_get_current_pid_tgid() >> 32) as u32 == cfg.agent_tgid {
            return Ok(());
        }
        let Some(mut entry) = CT_EVENTS.reserve::<OpenEvent>(0) else {
            count(Counter::RingbufFull);
            return Ok(());
        };
        let ev = entry.as_mut_ptr();
        let path = (&raw mut (*ev).path).cast::<u8>();
        // bpf_d_path needs the verifier to see `&file->f_path`: the trusted
        // file pointer plus a constant offset (a read-only global).
        let n = bpf_d_path(
            file.add(cfg.file_f_path as usize).cast_mut().cast(),
            path.cast(),
            PATH_LEN as u32,
        );
        if n <= 0 {
            entry.discard(0);
            count(Counter::ReadError);
            return Ok(());
        }
        let mut head = [0u8; PREFIX_LEN];
        for (i, h) in head.iter_mut().enumerate() {
            *h = *path.add(i);
        }
        if prefix_flags(&head).is_none() {
            entry.discard(0);
            return Ok(());
        }
        count(Counter::PrefixHit);
        fill_header(&raw mut (*ev).header, EventKind::Open, source, &cfg);
        let f_inode: *const u8 = bpf_probe_read_kernel(file.add(cfg.file_f_inode as usize).cast())
            .unwrap_or(core::ptr::null());
        let inode = if f_inode.is_null() {
            0
        } else {
            bpf_probe_read_kernel::<u64>(f_inode.add(cfg.inode_i_ino as usize).cast()).unwrap_or(0)
        };
        (*ev).flags =
            bpf_probe_read_kernel::<u32>(file.add(cfg.file_f_flags as usize).cast()).unwrap_or(0);
        (*ev).open_flags = if n as usize >= PATH_LEN {
            OPEN_PATH_TRUNCATED
        } else {
            0
        };
        (*ev).path_len = (n - 1) as u32;
        (*ev).dirfd = credtrail_common::OPEN_DIRFD_CWD;
        (*ev).inode = inode;
        entry.submit(0);
        count(Counter::Emitted);
    }
    Ok(())
}

/// Address and length of the file's dentry name, or of its last
/// `NAME_LEN` bytes when it is longer (see `name_passes`).
#[inline(always)]
unsafe fn dentry_name(
    file: *const u8,
    cfg: &credtrail_common::KernelConfig,
) -> Result<(*const u8, usize), i64> {
    // SAFETY: reads through bpf_probe_read_kernel.
    unsafe {
        let dentry: *const u8 = bpf_probe_read_kernel(
            file.add((cfg.file_f_path + cfg.path_dentry) as usize)
                .cast(),
        )
        .map_err(|e| {
            count(Counter::ReadError);
            i64::from(e)
        })?;
        let qstr = dentry.add(cfg.dentry_d_name as usize);
        let len = bpf_probe_read_kernel::<u32>(qstr.add(cfg.qstr_len as usize).cast()).unwrap_or(0)
            as usize;
        let name: *const u8 = bpf_probe_read_kernel(qstr.add(cfg.qstr_name as usize).cast())
            .unwrap_or(core::ptr::null());
        if name.is_null() {
            return Ok((name, 0));
        }
        if len > NAME_LEN {
            Ok((name.add(len - NAME_LEN), NAME_LEN))
        } else {
            Ok((name, len))
        }
    }
}
