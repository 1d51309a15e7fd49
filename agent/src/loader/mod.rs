//! Loads the embedded eBPF object, fills its filter maps, and attaches the
//! open hook the kernel allows (LSM -> fentry -> tracepoints in `auto`
//! mode, or the one forced) plus the connect hook (`tp_btf` -> classic
//! tracepoint, or the one forced).

pub mod btf;
pub mod events;
pub mod tracefs;

use std::net::SocketAddr;

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, LpmTrie, MapData, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{BtfTracePoint, FEntry, Lsm, TracePoint},
};
use credtrail_common::{
    AF_INET, AF_INET6, CONFIG_ANY_NAME, CONFIG_GLOBAL, COUNTERS_LEN, EndpointKey, HEADS,
    HEADS_GLOBAL, KernelConfig, NAME_LEN, PREFIX_LEN, PathHeads, maps, programs,
};
use credtrail_proto::model::CaptureSource;

use crate::config::{ConnectHook, HookMode};
use crate::patterns::WatchPatterns;

/// The eBPF object built by `build.rs` (empty when built with `AYA_BUILD_SKIP=1`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/credtrail"));

/// Why the kernel programs could not be loaded or attached.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "this agent was built with AYA_BUILD_SKIP=1: it has no eBPF object (rebuild without it)"
    )]
    NoObject,
    #[error("tracefs is not mounted and mounting it failed: {0}")]
    Tracefs(#[source] std::io::Error),
    #[error("tracepoint {tracepoint} has an unexpected layout: {reason}")]
    Format { tracepoint: String, reason: String },
    #[error("loading the eBPF object: {0}")]
    Ebpf(#[from] aya::EbpfError),
    /// `bpf()` or `perf_event_open()` failed with EPERM: a seccomp profile or
    /// missing capabilities, never a kernel feature.
    #[error("{what}: Operation not permitted. {PERMISSION_HINT}")]
    Denied { what: String },
    #[error("map {map}: {reason}")]
    Map { map: &'static str, reason: String },
    #[error("program {program}: {reason}")]
    Program {
        program: &'static str,
        reason: String,
    },
    #[error("hook {hook:?} was forced but the kernel refused it: {reason}")]
    Refused { hook: HookMode, reason: String },
    #[error("connect hook {hook:?} was forced but the kernel refused it: {reason}")]
    ConnectRefused { hook: ConnectHook, reason: String },
}

/// What an EPERM from `bpf()`/`perf_event_open()` means and how to fix it.
pub const PERMISSION_HINT: &str = "The container runtime's seccomp profile or missing capabilities \
refused the bpf()/perf_event_open() system calls. Run the agent with the capabilities BPF, PERFMON, \
SYS_RESOURCE, SYS_PTRACE and DAC_READ_SEARCH and a seccomp profile that allows both calls: the \
chart's Localhost profile (agent.seccomp.type=Localhost, file deploy/seccomp/credtrail-agent.json, \
installed as <kubelet root>/seccomp/credtrail/agent.json). RuntimeDefault is not enough on CRI-O, \
podman or older containerd/Docker, whose default profiles allow these calls only with CAP_SYS_ADMIN \
(docs/OPERATIONS.md, \"Seccomp\")";

/// Whether an error chain contains EPERM.
fn is_eperm(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::EPERM))
        {
            return true;
        }
        cur = c.source();
    }
    false
}

/// The loader's error for an `aya` load failure, naming the fix on EPERM.
fn load_error(e: aya::EbpfError) -> LoadError {
    if is_eperm(&e) {
        LoadError::Denied {
            what: chain(&e)
                .trim_end_matches(": Operation not permitted (os error 1)")
                .to_owned(),
        }
    } else {
        LoadError::Ebpf(e)
    }
}

/// What the loader needs.
#[derive(Debug, Clone)]
pub struct LoadOptions<'a> {
    pub hook: HookMode,
    pub connect_hook: ConnectHook,
    pub patterns: &'a WatchPatterns,
    pub endpoints: &'a [SocketAddr],
    /// Opens by this process are not reported (the agent's own reads).
    pub agent_tgid: u32,
}

/// Loaded and attached programs. Dropping it detaches them.
pub struct Probes {
    ebpf: Ebpf,
    hooks: Vec<String>,
    open_source: CaptureSource,
    refusals: Vec<String>,
}

/// Kernel counters summed over CPUs, indexed by `credtrail_common::Counter`.
pub type Counters = [u64; COUNTERS_LEN as usize];

/// Loads, fills the maps and attaches. See the module docs.
pub fn load(opts: &LoadOptions<'_>) -> Result<Probes, LoadError> {
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let tracefs = tracefs::ensure_mounted()?;
    tracefs::check_format(
        &tracefs,
        "sock",
        "inet_sock_set_state",
        tracefs::SOCK_STATE_FIELDS,
    )?;

    let filter = opts.patterns.kernel_filter();
    raise_memlock_limit();
    let mut cfg = KernelConfig::ZERO;
    cfg.agent_tgid = opts.agent_tgid;
    cfg.suffix_lens = filter.suffix_lens();
    if filter.any_name {
        cfg.flags |= CONFIG_ANY_NAME;
    }
    let mut heads = PathHeads::ZERO;
    match filter.heads() {
        Some(list) => {
            heads.count = list.len() as u32;
            for (i, (value, mask)) in list.into_iter().enumerate() {
                heads.heads[i] = value;
                heads.masks[i] = mask;
            }
        }
        None => tracing::info!(
            "more than {HEADS} distinct path heads: the system-call hooks skip the head test"
        ),
    }
    let mut refusals = Vec::new();
    // Why LSM/fentry cannot be used whatever the kernel allows, if so.
    let mut no_offsets: Option<String> = None;
    // Why tp_btf cannot be used whatever the kernel allows, if so.
    let mut no_sock_offsets: Option<String> = None;
    // Why the raw sys_enter hook cannot be used, if so.
    let mut no_syscalls: Option<String> = None;
    match btf::Btf::from_sys_fs() {
        Ok(b) => {
            if let Err(e) = btf::syscall_config(&b, &mut cfg) {
                no_syscalls = Some(format!("system calls: {e}"));
            }
            if let Err(e) = btf::sock_offsets(&b, &mut cfg) {
                no_sock_offsets = Some(format!("struct sock offsets from BTF: {e}"));
            }
            if let Err(e) = btf::file_offsets(&b, &mut cfg) {
                no_offsets = Some(format!("struct offsets from BTF: {e}"));
            }
            if let Err(e) = btf::task_offsets(&b, &mut cfg) {
                tracing::warn!("no parent pid / mount namespace from the kernel: {e}");
            }
        }
        Err(e) => {
            no_offsets = Some(format!("kernel BTF: {e}"));
            no_sock_offsets.clone_from(&no_offsets);
            no_syscalls.clone_from(&no_offsets);
        }
    }

    // aya's parse of the kernel BTF, once, for every BTF-attached program.
    let kernel_btf = aya::Btf::from_sys_fs().map_err(|e| format!("kernel BTF: {e}"));
    let mut ebpf = EbpfLoader::new()
        .override_global(CONFIG_GLOBAL, &cfg, true)
        .override_global(HEADS_GLOBAL, &heads, true)
        .load(OBJECT)
        .map_err(load_error)?;
    fill_filter(&mut ebpf, &filter)?;
    set_endpoints(&mut ebpf, opts.endpoints)?;

    let mut hooks = Vec::new();
    let open_source = attach_open(
        &mut ebpf,
        &kernel_btf,
        opts.hook,
        &tracefs,
        Unusable {
            file_offsets: no_offsets.as_deref(),
            syscalls: no_syscalls.as_deref(),
        },
        &mut refusals,
        &mut hooks,
    )?;
    attach_connect(
        &mut ebpf,
        &kernel_btf,
        opts.connect_hook,
        no_sock_offsets.as_deref(),
        &mut refusals,
        &mut hooks,
    )?;
    Ok(Probes {
        ebpf,
        hooks,
        open_source,
        refusals,
    })
}

/// The connect hook: `tp_btf` on `inet_sock_set_state` (its arguments, no
/// record built on every TCP state change), else the classic tracepoint.
fn attach_connect(
    ebpf: &mut Ebpf,
    kernel_btf: &KernelBtf,
    mode: ConnectHook,
    no_offsets: Option<&str>,
    refusals: &mut Vec<String>,
    hooks: &mut Vec<String>,
) -> Result<(), LoadError> {
    if mode != ConnectHook::Tracepoint {
        let tried = match no_offsets {
            Some(why) => Err(why.to_owned()),
            None => attach_btf_tracepoint(
                ebpf,
                kernel_btf,
                programs::BTF_SOCK_STATE,
                "inet_sock_set_state",
            ),
        };
        match tried {
            Ok(()) => {
                hooks.push("tp_btf_inet_sock_set_state".to_owned());
                return Ok(());
            }
            Err(reason) if mode == ConnectHook::TpBtf => {
                return Err(LoadError::ConnectRefused { hook: mode, reason });
            }
            Err(reason) => {
                tracing::warn!("connect hook tp_btf refused: {reason}");
                refusals.push(format!("tp_btf_inet_sock_set_state: {reason}"));
            }
        }
    }
    attach_tracepoint(ebpf, programs::SOCK_STATE, "sock", "inet_sock_set_state")?;
    hooks.push("tracepoint_inet_sock_set_state".to_owned());
    Ok(())
}

/// aya's view of the running kernel's BTF, or why there is none.
type KernelBtf = Result<aya::Btf, String>;

fn attach_btf_tracepoint(
    ebpf: &mut Ebpf,
    kernel_btf: &KernelBtf,
    name: &'static str,
    event: &str,
) -> Result<(), String> {
    let btf = kernel_btf.as_ref().map_err(Clone::clone)?;
    let prog: &mut BtfTracePoint = program(ebpf, name)?;
    prog.load(event, btf)
        .map_err(|e| format!("load: {}", chain(&e)))?;
    prog.attach()
        .map_err(|e| format!("attach: {}", chain(&e)))?;
    Ok(())
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK, which containers
/// often cap at 64 KiB: lift it (best effort; needs CAP_SYS_RESOURCE).
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to a rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        // Kernels from 5.11 on charge maps to the memory cgroup instead.
        tracing::info!(
            "could not lift RLIMIT_MEMLOCK ({}); only kernels before 5.11 need it",
            std::io::Error::last_os_error()
        );
    }
}

/// Why hooks cannot be used whatever the kernel allows (missing BTF facts).
#[derive(Clone, Copy)]
struct Unusable<'a> {
    /// LSM and fentry: `struct file` offsets.
    file_offsets: Option<&'a str>,
    /// The raw `sys_enter` hook: system-call numbers and `pt_regs` offsets.
    syscalls: Option<&'a str>,
}

fn attach_open(
    ebpf: &mut Ebpf,
    kernel_btf: &KernelBtf,
    mode: HookMode,
    tracefs: &std::path::Path,
    unusable: Unusable<'_>,
    refusals: &mut Vec<String>,
    hooks: &mut Vec<String>,
) -> Result<CaptureSource, LoadError> {
    let order: &[HookMode] = match mode {
        HookMode::Auto => &[
            HookMode::Lsm,
            HookMode::Fentry,
            HookMode::RawTracepoint,
            HookMode::Tracepoint,
        ],
        HookMode::Lsm => &[HookMode::Lsm],
        HookMode::Fentry => &[HookMode::Fentry],
        HookMode::RawTracepoint => &[HookMode::RawTracepoint],
        HookMode::Tracepoint => &[HookMode::Tracepoint],
    };
    for &h in order {
        let why_not = match h {
            HookMode::Lsm | HookMode::Fentry => unusable.file_offsets,
            HookMode::RawTracepoint => unusable.syscalls,
            _ => None,
        };
        let result = match (h, why_not) {
            (_, Some(why)) => Err(why.to_owned()),
            (h, None) => match h {
                HookMode::Lsm => attach_lsm(ebpf, kernel_btf).map(|()| {
                    hooks.push("lsm_file_open".to_owned());
                    CaptureSource::Lsm
                }),
                HookMode::Fentry => attach_fentry(ebpf, kernel_btf).map(|()| {
                    hooks.push("fentry_security_file_open".to_owned());
                    CaptureSource::Fentry
                }),
                HookMode::RawTracepoint => {
                    attach_btf_tracepoint(ebpf, kernel_btf, programs::RAW_SYS_ENTER, "sys_enter")
                        .map(|()| {
                            hooks.push("raw_tracepoint_sys_enter".to_owned());
                            CaptureSource::Tracepoint
                        })
                }
                HookMode::Tracepoint | HookMode::Auto => attach_syscall_tps(ebpf, tracefs, hooks),
            },
        };
        match result {
            Ok(source) => {
                tracing::info!(hook = ?h, "credential opens captured by {h:?}");
                return Ok(source);
            }
            Err(reason) => {
                tracing::warn!(hook = ?h, "open hook {h:?} refused: {reason}");
                refusals.push(format!("{}: {reason}", format!("{h:?}").to_lowercase()));
                if mode != HookMode::Auto || h == HookMode::Tracepoint {
                    // EPERM from LSM/fentry is the kernel (or a sandbox)
                    // refusing trampolines, a hook refusal like any other;
                    // from the tracepoints it can only be permissions.
                    if matches!(h, HookMode::Tracepoint | HookMode::RawTracepoint)
                        && reason.contains("Operation not permitted")
                    {
                        return Err(LoadError::Denied {
                            what: format!("open hook {h:?}: {reason}"),
                        });
                    }
                    return Err(LoadError::Refused { hook: h, reason });
                }
            }
        }
    }
    unreachable!("the auto order ends with the tracepoints, which return")
}

/// Whether the BPF LSM is active (`bpf` in `/sys/kernel/security/lsm`);
/// an LSM program attaches without it but never runs.
fn bpf_lsm_active() -> Result<(), String> {
    let path = "/sys/kernel/security/lsm";
    if !std::path::Path::new(path).exists() {
        // SAFETY: valid NUL-terminated strings; no data argument.
        unsafe {
            libc::mount(
                c"securityfs".as_ptr(),
                c"/sys/kernel/security".as_ptr(),
                c"securityfs".as_ptr(),
                0,
                std::ptr::null(),
            );
        }
    }
    let lsms = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
    if lsms.trim().split(',').any(|l| l == "bpf") {
        Ok(())
    } else {
        Err(format!(
            "the BPF LSM is not active (lsm list: {})",
            lsms.trim()
        ))
    }
}

/// The LSM program needs `bpf_d_path`, which LSM programs may call from
/// kernel 5.11 on; before that the verifier refuses it ("helper call is not
/// allowed in probe") and `auto` moves on to fentry.
fn attach_lsm(ebpf: &mut Ebpf, kernel_btf: &KernelBtf) -> Result<(), String> {
    bpf_lsm_active()?;
    let btf = kernel_btf.as_ref().map_err(Clone::clone)?;
    let prog: &mut Lsm = program(ebpf, programs::LSM_FILE_OPEN)?;
    prog.load("file_open", btf)
        .map_err(|e| format!("load: {}", chain(&e)))?;
    prog.attach()
        .map_err(|e| format!("attach: {}", chain(&e)))?;
    Ok(())
}

fn attach_fentry(ebpf: &mut Ebpf, kernel_btf: &KernelBtf) -> Result<(), String> {
    let btf = kernel_btf.as_ref().map_err(Clone::clone)?;
    let prog: &mut FEntry = program(ebpf, programs::FENTRY_FILE_OPEN)?;
    prog.load("security_file_open", btf)
        .map_err(|e| format!("load: {}", chain(&e)))?;
    prog.attach()
        .map_err(|e| format!("attach: {}", chain(&e)))?;
    Ok(())
}

fn attach_syscall_tps(
    ebpf: &mut Ebpf,
    tracefs: &std::path::Path,
    hooks: &mut Vec<String>,
) -> Result<CaptureSource, String> {
    tracefs::check_format(
        tracefs,
        "syscalls",
        "sys_enter_openat",
        tracefs::OPENAT_FIELDS,
    )
    .map_err(|e| e.to_string())?;
    attach_tracepoint(ebpf, programs::TP_OPENAT, "syscalls", "sys_enter_openat")
        .map_err(|e| e.to_string())?;
    hooks.push("tracepoint_openat".to_owned());
    // openat2 is newer (5.6) and optional.
    match tracefs::check_format(
        tracefs,
        "syscalls",
        "sys_enter_openat2",
        tracefs::OPENAT2_FIELDS,
    )
    .and_then(|()| attach_tracepoint(ebpf, programs::TP_OPENAT2, "syscalls", "sys_enter_openat2"))
    {
        Ok(()) => hooks.push("tracepoint_openat2".to_owned()),
        Err(e) => tracing::warn!("openat2 not watched: {e}"),
    }
    // The legacy open(2): x86-64 still has it (static and old binaries use
    // it); arm64 never had it, so its absence is normal there.
    match tracefs::check_format(tracefs, "syscalls", "sys_enter_open", tracefs::OPEN_FIELDS)
        .and_then(|()| attach_tracepoint(ebpf, programs::TP_OPEN, "syscalls", "sys_enter_open"))
    {
        Ok(()) => hooks.push("tracepoint_open".to_owned()),
        Err(e) => tracing::info!("open(2) not watched: {e}"),
    }
    Ok(CaptureSource::Tracepoint)
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    name: &'static str,
    category: &str,
    event: &str,
) -> Result<(), LoadError> {
    let prog: &mut TracePoint = program(ebpf, name).map_err(|reason| LoadError::Program {
        program: name,
        reason,
    })?;
    prog.load().map_err(|e| LoadError::Program {
        program: name,
        reason: format!("load: {}", chain(&e)),
    })?;
    prog.attach(category, event)
        .map_err(|e| LoadError::Program {
            program: name,
            reason: format!("attach to {category}:{event}: {}", chain(&e)),
        })?;
    Ok(())
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} is missing from the object"))?;
    p.try_into()
        .map_err(|e| format!("program {name}: {}", chain(&e)))
}

/// An error with its sources (the verifier log is in the source chain).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> LoadError {
    move |e| LoadError::Map {
        map,
        reason: chain(&e),
    }
}

fn fill_filter(ebpf: &mut Ebpf, f: &crate::patterns::KernelFilter) -> Result<(), LoadError> {
    let missing = |map| LoadError::Map {
        map,
        reason: "missing from the object".into(),
    };
    {
        let mut trie: LpmTrie<_, [u8; PREFIX_LEN], u32> = ebpf
            .map_mut(maps::PREFIXES)
            .ok_or_else(|| missing(maps::PREFIXES))?
            .try_into()
            .map_err(map_err(maps::PREFIXES))?;
        for (prefix, flags) in &f.prefixes {
            let mut data = [0u8; PREFIX_LEN];
            data[..prefix.len()].copy_from_slice(prefix);
            let key = Key::new((prefix.len() * 8) as u32, data);
            trie.insert(&key, flags, 0)
                .map_err(map_err(maps::PREFIXES))?;
        }
    }
    for (name, list) in [(maps::NAMES, &f.names), (maps::SUFFIXES, &f.suffixes)] {
        let mut m: HashMap<_, [u8; NAME_LEN], u32> = ebpf
            .map_mut(name)
            .ok_or_else(|| missing(name))?
            .try_into()
            .map_err(map_err(name))?;
        for n in list {
            m.insert(n, 1, 0).map_err(map_err(name))?;
        }
    }
    Ok(())
}

/// The endpoint-map key for `addr` (IPv4-mapped IPv6 becomes IPv4).
pub fn endpoint_key(addr: &SocketAddr) -> EndpointKey {
    let mut key = EndpointKey {
        addr: [0; 16],
        port: addr.port(),
        family: AF_INET,
    };
    match addr.ip().to_canonical() {
        std::net::IpAddr::V4(v4) => key.addr[..4].copy_from_slice(&v4.octets()),
        std::net::IpAddr::V6(v6) => {
            key.addr = v6.octets();
            key.family = AF_INET6;
        }
    }
    key
}

fn set_endpoints(ebpf: &mut Ebpf, endpoints: &[SocketAddr]) -> Result<(), LoadError> {
    let mut m: HashMap<_, EndpointKey, u32> = ebpf
        .map_mut(maps::ENDPOINTS)
        .ok_or(LoadError::Map {
            map: maps::ENDPOINTS,
            reason: "missing from the object".into(),
        })?
        .try_into()
        .map_err(map_err(maps::ENDPOINTS))?;
    let keys: Vec<EndpointKey> = m.keys().filter_map(Result::ok).collect();
    for k in keys {
        m.remove(&k).map_err(map_err(maps::ENDPOINTS))?;
    }
    for e in endpoints {
        m.insert(endpoint_key(e), 1, 0)
            .map_err(map_err(maps::ENDPOINTS))?;
    }
    Ok(())
}

impl Probes {
    /// Hooks in use, e.g. `["tracepoint_openat", "tracepoint_openat2", "tracepoint_open", "tp_btf_inet_sock_set_state"]`.
    pub fn hooks(&self) -> &[String] {
        &self.hooks
    }

    /// The `source` of open observations.
    pub fn open_source(&self) -> CaptureSource {
        self.open_source
    }

    /// Why preferred hooks were not used (empty when the first choice worked).
    pub fn refusals(&self) -> &[String] {
        &self.refusals
    }

    /// Replaces the watched endpoints.
    pub fn set_endpoints(&mut self, endpoints: &[SocketAddr]) -> Result<(), LoadError> {
        set_endpoints(&mut self.ebpf, endpoints)
    }

    /// Takes the ring buffer (once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self.ebpf.take_map(maps::EVENTS).ok_or(LoadError::Map {
            map: maps::EVENTS,
            reason: "missing or already taken".into(),
        })?;
        RingBuf::try_from(map).map_err(map_err(maps::EVENTS))
    }

    /// The kernel counters, summed over CPUs.
    pub fn counters(&self) -> Result<Counters, LoadError> {
        let arr: PerCpuArray<_, u64> = self
            .ebpf
            .map(maps::COUNTERS)
            .ok_or(LoadError::Map {
                map: maps::COUNTERS,
                reason: "missing from the object".into(),
            })?
            .try_into()
            .map_err(map_err(maps::COUNTERS))?;
        let mut out = [0u64; COUNTERS_LEN as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            let values = arr.get(&(i as u32), 0).map_err(map_err(maps::COUNTERS))?;
            *slot = values.iter().sum();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keys_fold_mapped_ipv4() {
        let v4: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:6443".parse().unwrap();
        let v6: SocketAddr = "[::1]:443".parse().unwrap();
        assert_eq!(endpoint_key(&v4), endpoint_key(&mapped));
        let k = endpoint_key(&v4);
        assert_eq!(
            (k.family, k.port, &k.addr[..4], &k.addr[4..]),
            (AF_INET, 6443, &[127, 0, 0, 1][..], &[0u8; 12][..])
        );
        let k6 = endpoint_key(&v6);
        assert_eq!((k6.family, k6.port, k6.addr[15]), (AF_INET6, 443, 1));
    }
}

#[cfg(test)]
mod permission_tests {
    use super::*;

    fn create_error(errno: i32) -> aya::EbpfError {
        aya::EbpfError::MapError(aya::maps::MapError::CreateError {
            name: "CT_EVENTS".into(),
            io_error: std::io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn eperm_on_map_creation_names_the_fix() {
        let msg = load_error(create_error(libc::EPERM)).to_string();
        assert!(msg.contains("CT_EVENTS"), "{msg}");
        assert!(msg.contains("Operation not permitted"), "{msg}");
        assert!(msg.contains("seccomp"), "{msg}");
        assert!(msg.contains("credtrail-agent.json"), "{msg}");
        assert!(msg.contains("BPF, PERFMON"), "{msg}");
        // Other errors stay as they were.
        let other = load_error(create_error(libc::EINVAL));
        assert!(matches!(other, LoadError::Ebpf(_)), "{other}");
        assert!(!other.to_string().contains("seccomp"));
    }
}
