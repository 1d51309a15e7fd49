//! Agent configuration: environment variable names, the YAML file, and
//! resolving CLI/env > file > defaults into an [`AgentConfig`].
//!
//! Every problem is collected before giving up, so one run names them all.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::Cli;
use crate::patterns::{DEFAULT_PATTERNS, WatchPatterns};
use crate::run::{AgentConfig, ConnectHook, HookMode};

/// Node name (Kubernetes downward API).
pub const ENV_NODE_NAME: &str = "NODE_NAME";
pub const ENV_CONFIG: &str = "CREDTRAIL_CONFIG";
pub const ENV_OUTPUT: &str = "CREDTRAIL_OUTPUT";
pub const ENV_HOOK_MODE: &str = crate::run::ENV_HOOK_MODE;
pub const ENV_CONNECT_HOOK: &str = crate::run::ENV_CONNECT_HOOK;
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

/// CLI/env over the file over the defaults.
pub fn resolve(cli: &Cli) -> Result<AgentConfig, ConfigError> {
    let mut errors = Vec::new();
    let file = match &cli.config {
        Some(p) => match load_file(p) {
            Ok(f) => f,
            Err(e) => {
                errors.extend(e.0);
                FileConfig::default()
            }
        },
        None => FileConfig::default(),
    };
    let mut cfg = AgentConfig {
        hook: cli.hook.unwrap_or(file.hook),
        connect_hook: cli.connect_hook.unwrap_or(file.connect_hook),
        ..AgentConfig::default()
    };
    if let Some(n) = cli.node_name.clone().or(file.node_name.clone()) {
        if n.trim().is_empty() {
            errors.push("node name is empty".into());
        }
        cfg.node_name = n.trim().to_owned();
    }
    cfg.api_endpoints = file.api_endpoints.clone();
    cfg.api_endpoints.extend(cli.api_endpoints.iter().copied());
    let mut patterns: Vec<String> = Vec::new();
    if file.default_watch && !cli.no_default_watch {
        patterns.extend(DEFAULT_PATTERNS.iter().map(|s| (*s).to_owned()));
    }
    patterns.extend(file.watch.iter().cloned());
    patterns.extend(cli.watch.iter().cloned());
    match WatchPatterns::new(&patterns) {
        Ok(p) => cfg.patterns = p,
        Err(e) => errors.push(e.to_string()),
    }
    cfg.cgroup_root = cli.cgroup_root.clone().unwrap_or(file.cgroup_root.clone());
    cfg.proc_root = cli.proc_root.clone().unwrap_or(file.proc_root.clone());
    cfg.kubelet_pods_dir = cli
        .kubelet_pods_dir
        .clone()
        .unwrap_or(file.kubelet_pods_dir.clone());
    let interval = cli
        .report_interval
        .as_deref()
        .unwrap_or(&file.report_interval);
    match parse_duration(interval) {
        Ok(d) => cfg.report_interval = d,
        Err(e) => errors.push(format!("report interval: {e}")),
    }
    cfg.scan_on_start = file.scan_on_start && !cli.no_scan;
    cfg.extra_addresses = file.node_addresses.clone();
    cfg.extra_addresses
        .extend(cli.node_addresses.iter().copied());
    cfg.pod_cidrs = file.pod_cidrs.clone();
    cfg.pod_cidrs.extend(cli.pod_cidrs.iter().cloned());
    for c in &cfg.pod_cidrs {
        if c.parse::<ipnet::IpNet>().is_err() {
            errors.push(format!("pod CIDR {c:?} is not a CIDR"));
        }
    }
    cfg.channel_capacity = cli.channel_capacity.unwrap_or(file.channel_capacity);
    if cfg.channel_capacity == 0 {
        errors.push("channel capacity must be at least 1".into());
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError(errors))
    }
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
    use clap::Parser as _;

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
    fn file_then_flags_and_every_error_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(
            &path,
            "hook: tracepoint\napi_endpoints: ['10.0.0.1:6443']\nwatch: ['/srv/creds/*.token']\n\
             report_interval: 5m\nscan_on_start: false\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "credtrail-agent",
            "--config",
            path.to_str().unwrap(),
            "--api-endpoint",
            "127.0.0.1:443",
            "--node-name",
            "node-a",
        ])
        .unwrap();
        let cfg = resolve(&cli).unwrap();
        assert_eq!(cfg.hook, HookMode::Tracepoint);
        assert_eq!(
            cfg.api_endpoints,
            vec![
                "10.0.0.1:6443".parse().unwrap(),
                "127.0.0.1:443".parse().unwrap()
            ]
        );
        assert!(cfg.patterns.matches("/srv/creds/a.token"));
        assert!(cfg.patterns.matches("/etc/kubernetes/admin.conf"));
        assert_eq!(cfg.report_interval, Duration::from_secs(300));
        assert!(!cfg.scan_on_start);
        assert_eq!(cfg.node_name, "node-a");

        std::fs::write(&path, "report_interval: never\npod_cidrs: ['nope']\n").unwrap();
        let cli = Cli::try_parse_from([
            "credtrail-agent",
            "--config",
            path.to_str().unwrap(),
            "--watch",
            "relative/x",
        ])
        .unwrap();
        let err = resolve(&cli).unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(err.to_string().contains("report interval"), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
        assert!(err.to_string().contains("relative/x"), "{err}");
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
}
