//! Agent configuration: the settings [`AgentConfig`] and hook choices,
//! environment variable names, and the YAML file. The command line
//! (`crate::cli`) resolves CLI/env > file > defaults into an [`AgentConfig`].
//!
//! Every problem is collected before giving up, so one run names them all.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::patterns::{DEFAULT_PATTERNS, WatchPatterns};

/// Node name (Kubernetes downward API).
pub const ENV_NODE_NAME: &str = "NODE_NAME";
pub const ENV_CONFIG: &str = "CREDTRAIL_CONFIG";
pub const ENV_OUTPUT: &str = "CREDTRAIL_OUTPUT";
pub const ENV_API_ENDPOINTS: &str = "CREDTRAIL_API_ENDPOINTS";
pub const ENV_WATCH: &str = "CREDTRAIL_WATCH";
pub const ENV_NO_DEFAULT_WATCH: &str = "CREDTRAIL_NO_DEFAULT_WATCH";
pub const ENV_CGROUP_ROOT: &str = "CREDTRAIL_CGROUP_ROOT";
pub const ENV_PROC_ROOT: &str = "CREDTRAIL_PROC_ROOT";
pub const ENV_KUBELET_PODS_DIR: &str = "CREDTRAIL_KUBELET_PODS_DIR";
pub const ENV_REPORT_INTERVAL: &str = "CREDTRAIL_REPORT_INTERVAL";
pub const ENV_NO_SCAN: &str = "CREDTRAIL_NO_SCAN";
pub const ENV_NODE_ADDRESSES: &str = "CREDTRAIL_NODE_ADDRESSES";
pub const ENV_POD_CIDRS: &str = "CREDTRAIL_POD_CIDRS";
pub const ENV_CHANNEL_CAPACITY: &str = "CREDTRAIL_CHANNEL_CAPACITY";
pub const ENV_LOG_FORMAT: &str = "CREDTRAIL_LOG_FORMAT";
pub const ENV_AGGREGATOR: &str = "CREDTRAIL_AGGREGATOR";
pub const ENV_TLS_CA: &str = "CREDTRAIL_TLS_CA";
pub const ENV_TLS_CERT: &str = "CREDTRAIL_TLS_CERT";
pub const ENV_TLS_KEY: &str = "CREDTRAIL_TLS_KEY";
pub const ENV_SPOOL_DIR: &str = "CREDTRAIL_SPOOL_DIR";
pub const ENV_SPOOL_CAPACITY: &str = "CREDTRAIL_SPOOL_CAPACITY";
pub const ENV_SPOOL_MAX_BYTES: &str = "CREDTRAIL_SPOOL_MAX_BYTES";
pub const ENV_HEALTH_LISTEN: &str = "CREDTRAIL_HEALTH_LISTEN";
/// The log filter (tracing EnvFilter syntax); `RUST_LOG` is read when it is unset.
pub const ENV_LOG: &str = "CREDTRAIL_LOG";

/// Environment variable that forces the open-capture hook (`auto|lsm|fentry|raw-tracepoint|tracepoint`).
pub const ENV_HOOK_MODE: &str = "CREDTRAIL_HOOK_MODE";

/// Which kernel hook captures credential opens.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum HookMode {
    /// Try LSM, then fentry, then the raw `sys_enter` tracepoint, then the
    /// `sys_enter_open*` tracepoints; use the first that loads.
    #[default]
    Auto,
    /// BPF LSM `file_open` only (error if refused).
    Lsm,
    /// fentry on `security_file_open` only (error if refused).
    Fentry,
    /// The BTF raw tracepoint `sys_enter`, open calls picked by number
    /// (error if refused).
    RawTracepoint,
    /// The `sys_enter_openat`/`openat2`/`open` tracepoints only.
    Tracepoint,
}

impl std::str::FromStr for HookMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_value("hook mode", s)
    }
}

/// Environment variable that forces the connect hook (`auto|tp-btf|tracepoint`).
pub const ENV_CONNECT_HOOK: &str = "CREDTRAIL_CONNECT_HOOK";

/// How the `sock:inet_sock_set_state` tracepoint is attached for API-server
/// connects.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectHook {
    /// `tp-btf` where the kernel allows it, else the classic tracepoint.
    #[default]
    Auto,
    /// BTF-typed raw tracepoint (`tp_btf`, kernel 5.5+ with BTF): no record
    /// is built for the many state changes that do not matter.
    TpBtf,
    /// The classic tracepoint.
    Tracepoint,
}

impl std::str::FromStr for ConnectHook {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_value("connect hook", s)
    }
}

/// Parses a value the way the CLI does (clap's names, any case), also
/// accepting `_` for `-` (the config file's spelling), for the environment.
fn parse_value<T: clap::ValueEnum>(what: &str, s: &str) -> Result<T, String> {
    let v = s.trim().replace('_', "-");
    T::from_str(&v, true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|x| x.to_possible_value())
            .map(|p| p.get_name().to_owned())
            .collect();
        format!("{what} {v:?} is not one of {}", names.join(", "))
    })
}

/// Everything [`start`] needs. `Default` gives the documented defaults and
/// honours [`ENV_HOOK_MODE`].
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Node name (`NODE_NAME`, else the hostname).
    pub node_name: String,
    /// cgroup v2 root, for cgroup id -> path attribution.
    pub cgroup_root: PathBuf,
    /// Where `/proc` is (the host's, when the agent runs in a container).
    pub proc_root: PathBuf,
    /// The kubelet's pods folder (`/var/lib/kubelet/pods`).
    pub kubelet_pods_dir: PathBuf,
    /// Watched credential paths.
    pub patterns: WatchPatterns,
    /// API-server endpoints whose connects are reported.
    pub api_endpoints: Vec<SocketAddr>,
    /// Open-capture hook.
    pub hook: HookMode,
    /// How the connect tracepoint is attached.
    pub connect_hook: ConnectHook,
    /// Repeated reads of one file by one process are reported once per interval.
    pub report_interval: Duration,
    /// Scan existing credential files at start.
    pub scan_on_start: bool,
    /// Extra node addresses to report beside the interface addresses.
    pub extra_addresses: Vec<IpAddr>,
    /// This node's pod CIDRs, when known.
    pub pod_cidrs: Vec<String>,
    /// Capacity of [`RunningAgent::observations`]; when full, observations
    /// are dropped and counted (a `Loss` with stage `channel`).
    pub channel_capacity: usize,
}

/// A setting from the environment variable `var`; the default when it is
/// unset, empty or not understood (with a warning).
fn from_env<T: std::str::FromStr<Err = String> + Default + std::fmt::Debug>(var: &str) -> T {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v.parse().unwrap_or_else(|e| {
            let d = T::default();
            tracing::warn!("{var}: {e}; using {d:?}");
            d
        }),
        _ => T::default(),
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        let hook = from_env(ENV_HOOK_MODE);
        let connect_hook = from_env(ENV_CONNECT_HOOK);
        Self {
            node_name: default_node_name(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            proc_root: PathBuf::from("/proc"),
            kubelet_pods_dir: PathBuf::from("/var/lib/kubelet/pods"),
            patterns: WatchPatterns::default(),
            api_endpoints: Vec::new(),
            hook,
            connect_hook,
            report_interval: Duration::from_secs(60),
            scan_on_start: true,
            extra_addresses: Vec::new(),
            pod_cidrs: Vec::new(),
            channel_capacity: 4096,
        }
    }
}

/// `NODE_NAME`, else the hostname, else `unknown`.
pub fn default_node_name() -> String {
    if let Ok(n) = std::env::var(ENV_NODE_NAME)
        && !n.trim().is_empty()
    {
        return n.trim().to_owned();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The YAML configuration file. Every key is optional; command-line flags
/// and environment variables override it. `credtrail-agent --print-config`
/// prints this with the defaults filled in.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Node name; default `NODE_NAME`, else the hostname.
    pub node_name: Option<String>,
    /// Open-capture hook: auto, lsm, fentry, raw_tracepoint, tracepoint.
    pub hook: HookMode,
    /// Connect hook: auto, tp-btf, tracepoint.
    pub connect_hook: ConnectHook,
    /// API-server endpoints (`IP:PORT`) whose connects are reported.
    pub api_endpoints: Vec<SocketAddr>,
    /// Use the built-in watched patterns (DEFAULT_PATTERNS).
    pub default_watch: bool,
    /// Extra watched path patterns.
    pub watch: Vec<String>,
    pub cgroup_root: PathBuf,
    pub proc_root: PathBuf,
    pub kubelet_pods_dir: PathBuf,
    /// Repeated reads of a file by a process are reported once per interval (`60s`, `5m`).
    pub report_interval: String,
    /// Scan credential files already on the node at start.
    pub scan_on_start: bool,
    /// Extra node addresses to report.
    pub node_addresses: Vec<IpAddr>,
    /// This node's pod CIDRs.
    pub pod_cidrs: Vec<String>,
    /// Bound of the internal observation queue (overflow is counted and reported).
    pub channel_capacity: usize,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            node_name: None,
            hook: HookMode::Auto,
            connect_hook: ConnectHook::Auto,
            api_endpoints: Vec::new(),
            default_watch: true,
            watch: Vec::new(),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            proc_root: PathBuf::from("/proc"),
            kubelet_pods_dir: PathBuf::from("/var/lib/kubelet/pods"),
            report_interval: "60s".into(),
            scan_on_start: true,
            node_addresses: Vec::new(),
            pod_cidrs: Vec::new(),
            channel_capacity: 4096,
        }
    }
}

/// Problems found in the configuration (all of them).
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigError(pub Vec<String>);

/// Reads the YAML file.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(vec![format!("reading {}: {e}", path.display())]))?;
    serde_norway::from_str(&text).map_err(|e| ConfigError(vec![format!("{}: {e}", path.display())]))
}

/// `90`, `90s`, `5m`, `1h`, `250ms` -> a duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("duration {s:?} does not start with a number"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        other => {
            return Err(format!(
                "duration {s:?}: unknown unit {other:?} (ms, s, m, h)"
            ));
        }
    };
    if d.is_zero() {
        return Err(format!("duration {s:?} must be more than zero"));
    }
    Ok(d)
}

/// The defaults as commented YAML (for `--print-config`).
pub fn default_yaml() -> String {
    let body = serde_norway::to_string(&FileConfig::default()).unwrap_or_default();
    let mut out = String::from(
        "# credtrail-agent configuration (all keys optional; flags and env override).\n\
         # default_watch: true watches these built-in patterns:\n",
    );
    for p in DEFAULT_PATTERNS {
        out.push_str(&format!("#   {p}\n"));
    }
    out.push_str("# watch: extra patterns (`*`, `?` within a component; `{a,b}`).\n");
    out.push_str(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn unknown_keys_are_refused_and_defaults_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, "hooks: lsm\n").unwrap();
        let err = load_file(&path).unwrap_err();
        assert!(err.to_string().contains("hooks"), "{err}");
        let back: FileConfig = serde_norway::from_str(&default_yaml()).unwrap();
        assert_eq!(back, FileConfig::default());
    }

    #[test]
    fn hook_mode_parses_env_spellings() {
        assert_eq!("LSM".parse::<HookMode>(), Ok(HookMode::Lsm));
        assert_eq!(" tracepoint ".parse::<HookMode>(), Ok(HookMode::Tracepoint));
        assert!("kprobe".parse::<HookMode>().unwrap_err().contains("kprobe"));
        assert_eq!(
            "raw_tracepoint".parse::<HookMode>(),
            Ok(HookMode::RawTracepoint)
        );
        assert_eq!("TP_BTF".parse::<ConnectHook>(), Ok(ConnectHook::TpBtf));
        assert_eq!(
            "tracepoint".parse::<ConnectHook>(),
            Ok(ConnectHook::Tracepoint)
        );
        assert!(
            "kprobe"
                .parse::<ConnectHook>()
                .unwrap_err()
                .contains("tp-btf")
        );
    }
}
