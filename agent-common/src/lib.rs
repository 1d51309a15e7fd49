#![no_std]
//! Binary layout shared by credtrail's eBPF programs (`agent-ebpf`) and the
//! user-space agent: ring-buffer events, map keys and values, the load-time
//! configuration, and the names of maps and programs.
//!
//! Every type is `#[repr(C)]` with explicit padding fields, so that both sides
//! agree byte for byte; `size_of` assertions below fail the build on drift.
//! Flags are `u32`. Event kinds have stable numbers: a retired number is never
//! reused.

/// Names of the maps in the eBPF object.
pub mod maps {
    /// `RingBuf` of events to user space.
    pub const EVENTS: &str = "CT_EVENTS";
    /// `PerCpuArray<u64>` of counters, indexed by [`crate::Counter`].
    pub const COUNTERS: &str = "CT_COUNTERS";
    /// `LpmTrie<[u8; PREFIX_LEN], u32>`: watched path prefixes, value = `PREFIX_*` flags.
    pub const PREFIXES: &str = "CT_PREFIXES";
    /// `HashMap<[u8; NAME_LEN], u32>`: exact watched file names shorter than `NAME_LEN` (NUL padded).
    pub const NAMES: &str = "CT_NAMES";
    /// `HashMap<[u8; NAME_LEN], u32>`: watched file-name endings (NUL padded), e.g. `.pem`.
    pub const SUFFIXES: &str = "CT_SUFFIXES";
    /// `HashMap<EndpointKey, u32>`: watched API-server endpoints.
    pub const ENDPOINTS: &str = "CT_ENDPOINTS";
    /// `LruHashMap<u64 /* struct sock * */, PendingConnect>`: connects in SYN_SENT.
    pub const PENDING: &str = "CT_PENDING";
    /// `PerCpuArray<OpenEvent>` (one entry): scratch space to build an open event.
    pub const SCRATCH: &str = "CT_SCRATCH";
}

/// Names of the programs (their function names in `agent-ebpf`).
pub mod programs {
    /// BPF LSM `file_open`.
    pub const LSM_FILE_OPEN: &str = "ct_lsm_file_open";
    /// fentry on `security_file_open`.
    pub const FENTRY_FILE_OPEN: &str = "ct_fentry_file_open";
    /// Tracepoint `syscalls:sys_enter_openat`.
    pub const TP_OPENAT: &str = "ct_tp_openat";
    /// Tracepoint `syscalls:sys_enter_openat2`.
    pub const TP_OPENAT2: &str = "ct_tp_openat2";
    /// Tracepoint `syscalls:sys_enter_open` (the legacy `open(2)`, still on x86-64).
    pub const TP_OPEN: &str = "ct_tp_open";
    /// BTF raw tracepoint `sys_enter` (every system call; the open ones are
    /// picked by number): no per-call record is built.
    pub const RAW_SYS_ENTER: &str = "ct_raw_sys_enter";
    /// Tracepoint `sock:inet_sock_set_state`.
    pub const SOCK_STATE: &str = "ct_sock_state";
    /// The same tracepoint as a BTF-typed raw tracepoint (`tp_btf`): called
    /// with the kernel's arguments, without the classic tracepoint's record.
    pub const BTF_SOCK_STATE: &str = "ct_btf_sock_state";
}

/// Name of the read-only global holding [`KernelConfig`].
pub const CONFIG_GLOBAL: &str = "CT_CONFIG";

/// Bytes of a path compared against the prefix trie before any string copy.
pub const PREFIX_LEN: usize = 16;
/// Bytes of a file name (last path component) kept in the name maps.
pub const NAME_LEN: usize = 16;
/// Size of the path buffer in an [`OpenEvent`] (paths longer are truncated
/// and flagged with [`OPEN_PATH_TRUNCATED`]).
pub const PATH_LEN: usize = 512;
/// Size of the ring buffer in bytes (a power of two, a multiple of the page size).
pub const EVENTS_BYTES: u32 = 1 << 20;
/// Entries of the pending-connect LRU map.
pub const PENDING_ENTRIES: u32 = 8192;
/// Maximum entries of the pattern maps and the endpoint map.
pub const FILTER_ENTRIES: u32 = 256;

/// Prefix flag: every file name under this prefix passes the name test
/// (a pattern whose last component cannot be tested by exact name or suffix).
pub const PREFIX_ANY_NAME: u32 = 1;

/// [`KernelConfig::flags`]: some pattern needs every file name (LSM/fentry
/// must not reject on the dentry name).
pub const CONFIG_ANY_NAME: u32 = 1;
/// [`KernelConfig::flags`]: the `task_*`/`nsproxy_*` offsets are valid.
pub const CONFIG_TASK_OFFSETS: u32 = 2;
/// [`KernelConfig::flags`]: the `file_*`/`dentry_*`/`inode_*` offsets are valid.
pub const CONFIG_FILE_OFFSETS: u32 = 4;
/// [`KernelConfig::flags`]: the `sock_*` offsets are valid.
pub const CONFIG_SOCK_OFFSETS: u32 = 8;
/// [`KernelConfig::flags`]: the `nr_*` and `regs_arg` fields are valid.
pub const CONFIG_SYSCALLS: u32 = 16;

/// [`OpenEvent::open_flags`] bit: the path did not fit in [`PATH_LEN`].
pub const OPEN_PATH_TRUNCATED: u32 = 1;

/// Event kinds; stable numbers (retired ones stay holes).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// [`OpenEvent`].
    Open = 1,
    /// [`ConnectEvent`].
    Connect = 2,
}

impl EventKind {
    /// The kind with this number, if any.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Open),
            2 => Some(Self::Connect),
            _ => None,
        }
    }
}

/// Which hook produced an event; stable numbers.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Lsm = 1,
    Fentry = 2,
    TracepointOpenat = 3,
    TracepointOpenat2 = 4,
    SockState = 5,
    TracepointOpen = 6,
    RawSysEnter = 7,
}

impl Source {
    /// The source with this number, if any.
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Lsm),
            2 => Some(Self::Fentry),
            3 => Some(Self::TracepointOpenat),
            4 => Some(Self::TracepointOpenat2),
            5 => Some(Self::SockState),
            6 => Some(Self::TracepointOpen),
            7 => Some(Self::RawSysEnter),
            _ => None,
        }
    }
}

/// Indexes into the per-CPU counter array. The first ones are losses.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Ring-buffer reservation failed: an event was lost.
    RingbufFull = 0,
    /// Reading user or kernel memory failed: an event was lost.
    ReadError = 1,
    /// A SYN_SENT connect could not be remembered: its connect is lost.
    PendingFull = 2,
    /// A path passed the prefix test (statistics).
    PrefixHit = 3,
    /// A file name passed the name test (statistics).
    NameHit = 4,
    /// Events written to the ring buffer (statistics).
    Emitted = 5,
}

/// Number of counters in [`maps::COUNTERS`].
pub const COUNTERS_LEN: u32 = 8;

/// Configuration set once at load time (a read-only global, so the verifier
/// sees constants). Struct offsets come from the running kernel's BTF, since
/// the programs are built without CO-RE; zero when not found.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelConfig {
    /// `CONFIG_*` bits.
    pub flags: u32,
    /// The agent's own tgid: its reads of credential files are not reported.
    pub agent_tgid: u32,
    /// Bit `n` set: some watched suffix (`CT_SUFFIXES`) is `n` bytes long.
    pub suffix_lens: u32,
    pub file_f_path: u32,
    pub file_f_inode: u32,
    pub file_f_flags: u32,
    pub path_dentry: u32,
    pub dentry_d_name: u32,
    pub qstr_len: u32,
    pub qstr_name: u32,
    pub inode_i_ino: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_nsproxy: u32,
    pub nsproxy_mnt_ns: u32,
    /// Offset of `ns.inum` inside `struct mnt_namespace`.
    pub mnt_ns_inum: u32,
    /// Offsets inside `struct sock` (`__sk_common.skc_*` and `sk_protocol`),
    /// for the `tp_btf` connect program.
    pub sock_family: u32,
    pub sock_protocol: u32,
    /// `skc_num`: local port, host order.
    pub sock_num: u32,
    /// `skc_dport`: remote port, network order.
    pub sock_dport: u32,
    pub sock_daddr: u32,
    pub sock_rcv_saddr: u32,
    pub sock_v6_daddr: u32,
    pub sock_v6_rcv_saddr: u32,
    /// System call numbers of `open`, `openat`, `openat2` on this
    /// architecture ([`NO_SYSCALL`] where it has none), for the raw
    /// `sys_enter` program.
    pub nr_open: u32,
    pub nr_openat: u32,
    pub nr_openat2: u32,
    /// Offsets in `struct pt_regs` of the first three system-call arguments.
    pub regs_arg: [u32; 3],
}

/// The system-call hooks' first test, before the prefix trie, in its own
/// read-only global ([`HEADS_GLOBAL`]) so that the programs which copy
/// [`KernelConfig`] (LSM/fentry on every open) do not copy this table: the
/// first [`HEAD_LEN`] bytes of the path (little-endian `u64`), masked, must
/// equal one of `heads` (each the start of a watched prefix, masked to its
/// length when shorter). Paths under `/proc`, `/usr`, `/sys`, ... stop here.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathHeads {
    /// Heads in use; 0 turns the head test off (every path goes on to the
    /// prefix trie).
    pub count: u32,
    pub _pad0: u32,
    pub heads: [u64; HEADS],
    pub masks: [u64; HEADS],
}

impl PathHeads {
    /// No heads: the test is off.
    pub const ZERO: Self = Self {
        count: 0,
        _pad0: 0,
        heads: [0; HEADS],
        masks: [0; HEADS],
    };
}

/// Name of the read-only global holding [`PathHeads`].
pub const HEADS_GLOBAL: &str = "CT_HEADS";

/// Capacity of [`PathHeads::heads`].
pub const HEADS: usize = 16;
/// Bytes of a path compared by the head test.
pub const HEAD_LEN: usize = 8;

/// [`KernelConfig::nr_open`] etc.: this architecture has no such call.
pub const NO_SYSCALL: u32 = u32::MAX;

impl KernelConfig {
    /// All zero: no offsets known, no flags.
    pub const ZERO: Self = Self {
        flags: 0,
        agent_tgid: 0,
        suffix_lens: 0,
        file_f_path: 0,
        file_f_inode: 0,
        file_f_flags: 0,
        path_dentry: 0,
        dentry_d_name: 0,
        qstr_len: 0,
        qstr_name: 0,
        inode_i_ino: 0,
        task_real_parent: 0,
        task_tgid: 0,
        task_nsproxy: 0,
        nsproxy_mnt_ns: 0,
        mnt_ns_inum: 0,
        sock_family: 0,
        sock_protocol: 0,
        sock_num: 0,
        sock_dport: 0,
        sock_daddr: 0,
        sock_rcv_saddr: 0,
        sock_v6_daddr: 0,
        sock_v6_rcv_saddr: 0,
        nr_open: NO_SYSCALL,
        nr_openat: NO_SYSCALL,
        nr_openat2: NO_SYSCALL,
        regs_arg: [0; 3],
    };
}

impl EventHeader {
    /// All zero.
    pub const ZERO: Self = Self {
        kind: 0,
        source: 0,
        ktime_ns: 0,
        pid: 0,
        tgid: 0,
        ppid: 0,
        uid: 0,
        gid: 0,
        _pad0: 0,
        cgroup_id: 0,
        mnt_ns: 0,
        comm: [0; 16],
    };
}

/// What every event starts with.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    /// [`EventKind`] number.
    pub kind: u32,
    /// [`Source`] number.
    pub source: u32,
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ktime_ns: u64,
    /// Thread id.
    pub pid: u32,
    /// Process id.
    pub tgid: u32,
    /// Parent's tgid (0 when the offsets are unknown).
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub _pad0: u32,
    pub cgroup_id: u64,
    /// Mount namespace inode (0 when the offsets are unknown).
    pub mnt_ns: u64,
    pub comm: [u8; 16],
}

/// `AT_FDCWD`: a relative path is relative to the working directory.
pub const OPEN_DIRFD_CWD: i32 = -100;

/// A watched credential file was opened.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct OpenEvent {
    pub header: EventHeader,
    /// `O_*` flags of the open.
    pub flags: u32,
    /// `OPEN_*` bits.
    pub open_flags: u32,
    /// Bytes of `path` used (without the NUL).
    pub path_len: u32,
    /// The system-call hooks: the directory descriptor a relative path is
    /// relative to (`openat(dirfd, ...)`), [`OPEN_DIRFD_CWD`] for the working
    /// directory; [`OPEN_DIRFD_CWD`] from LSM/fentry (their paths are absolute).
    pub dirfd: i32,
    /// Inode number (0 from the tracepoints: user space fills it in).
    pub inode: u64,
    /// NUL-terminated path.
    pub path: [u8; PATH_LEN],
}

/// A TCP connection to a watched endpoint was established.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectEvent {
    pub header: EventHeader,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u32,
    /// Host byte order.
    pub local_port: u16,
    /// Host byte order.
    pub remote_port: u16,
    /// IPv4 in the first 4 bytes.
    pub local_addr: [u8; 16],
    /// IPv4 in the first 4 bytes.
    pub remote_addr: [u8; 16],
}

/// Key of the endpoint map. IPv4 in the first 4 bytes, the rest zero; an
/// IPv4-mapped IPv6 destination is looked up as IPv4.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub addr: [u8; 16],
    /// Host byte order.
    pub port: u16,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub family: u16,
}

/// A connect seen in SYN_SENT (process context), waiting for ESTABLISHED.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingConnect {
    pub header: EventHeader,
}

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;

const _: () = {
    assert!(core::mem::size_of::<EventHeader>() == 72);
    assert!(core::mem::size_of::<OpenEvent>() == 72 + 24 + PATH_LEN);
    assert!(core::mem::size_of::<ConnectEvent>() == 72 + 8 + 32);
    assert!(core::mem::size_of::<EndpointKey>() == 20);
    assert!(core::mem::size_of::<PendingConnect>() == 72);
    assert!(core::mem::size_of::<KernelConfig>() == 30 * 4);
    assert!(core::mem::size_of::<PathHeads>() == 8 + 2 * HEADS * 8);
    assert!(PATH_LEN.is_power_of_two());
    assert!(PREFIX_LEN == NAME_LEN);
};

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all these are #[repr(C)], made only of integers and byte
    // arrays, with no implicit padding (checked by the size assertions).
    unsafe impl aya::Pod for super::KernelConfig {}
    unsafe impl aya::Pod for super::PathHeads {}
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::OpenEvent {}
    unsafe impl aya::Pod for super::ConnectEvent {}
    unsafe impl aya::Pod for super::EndpointKey {}
    unsafe impl aya::Pod for super::PendingConnect {}
}
