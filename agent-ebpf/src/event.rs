//! Filling the event header: process identity from helpers, parent and
//! mount namespace from `task_struct` with offsets user space found in BTF.

use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
    bpf_get_current_task, bpf_get_current_uid_gid, bpf_ktime_get_ns, bpf_probe_read_kernel,
};
use credtrail_common::{CONFIG_TASK_OFFSETS, EventHeader, EventKind, KernelConfig, Source};

/// Fills `h` for the current task.
///
/// # Safety
/// `h` must be valid for writes.
#[inline(always)]
pub unsafe fn fill_header(
    h: *mut EventHeader,
    kind: EventKind,
    source: Source,
    cfg: &KernelConfig,
) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let (ppid, mnt_ns) = if cfg.flags & CONFIG_TASK_OFFSETS != 0 {
        // SAFETY: reads through bpf_probe_read_kernel, which tolerates bad pointers.
        unsafe { task_info(cfg) }
    } else {
        (0, 0)
    };
    // SAFETY: helpers without preconditions; `h` is valid per the contract.
    unsafe {
        h.write(EventHeader {
            kind: kind as u32,
            source: source as u32,
            ktime_ns: bpf_ktime_get_ns(),
            pid: pid_tgid as u32,
            tgid: (pid_tgid >> 32) as u32,
            ppid,
            uid: uid_gid as u32,
            gid: (uid_gid >> 32) as u32,
            _pad0: 0,
            cgroup_id: bpf_get_current_cgroup_id(),
            mnt_ns,
            comm: bpf_get_current_comm().unwrap_or([0; 16]),
        });
    }
}

/// Parent tgid and mount-namespace inode of the current task (0 on error).
#[inline(always)]
unsafe fn task_info(cfg: &KernelConfig) -> (u32, u64) {
    // SAFETY: every dereference goes through bpf_probe_read_kernel.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let parent: *const u8 =
            bpf_probe_read_kernel(task.add(cfg.task_real_parent as usize).cast())
                .unwrap_or(core::ptr::null());
        let ppid = if parent.is_null() {
            0
        } else {
            bpf_probe_read_kernel::<u32>(parent.add(cfg.task_tgid as usize).cast()).unwrap_or(0)
        };
        let nsproxy: *const u8 = bpf_probe_read_kernel(task.add(cfg.task_nsproxy as usize).cast())
            .unwrap_or(core::ptr::null());
        if nsproxy.is_null() {
            return (ppid, 0);
        }
        let mnt_ns: *const u8 =
            bpf_probe_read_kernel(nsproxy.add(cfg.nsproxy_mnt_ns as usize).cast())
                .unwrap_or(core::ptr::null());
        if mnt_ns.is_null() {
            return (ppid, 0);
        }
        let inum =
            bpf_probe_read_kernel::<u32>(mnt_ns.add(cfg.mnt_ns_inum as usize).cast()).unwrap_or(0);
        (ppid, u64::from(inum))
    }
}
