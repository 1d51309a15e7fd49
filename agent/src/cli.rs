//! The `credtrail-agent` command line. Every flag has an environment
//! variable (names in [`crate::config`]), so a DaemonSet can set either.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;

use crate::config::{
    self as c, AgentConfig, ConfigError, ConnectHook, FileConfig, HookMode, load_file,
    parse_duration,
};
use crate::patterns::{DEFAULT_PATTERNS, WatchPatterns};

/// credtrail node agent: reports, with eBPF, which process opens which
/// Kubernetes credential file and which process connects to the API server.
///
/// Needs root (or CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH).
/// Output goes to the aggregator (`--aggregator`) or to a JSON-lines file
/// (`--output jsonl PATH|-`, one observation per line, format in
/// docs/OBSERVATIONS.md). Precedence: flags, then environment, then the
/// `--config` file, then the built-in defaults (`--print-config`).
#[derive(Debug, Clone, Parser)]
#[command(name = "credtrail-agent", version, max_term_width = 100)]
pub struct Cli {
    /// YAML configuration file (keys as printed by --print-config).
    #[arg(long, env = c::ENV_CONFIG, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Print the configuration file's defaults, commented, and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Write the agent's seccomp profile (containers/common's default plus
    /// `bpf` and `perf_event_open`) to PATH and exit: the chart's init
    /// container installs it in the kubelet's seccomp directory.
    #[arg(long, value_name = "PATH")]
    pub install_seccomp_profile: Option<PathBuf>,

    /// Write observations as JSON lines: `--output jsonl PATH` appends to
    /// PATH, `--output jsonl -` writes to standard output. In the
    /// environment: `CREDTRAIL_OUTPUT="jsonl PATH"`.
    #[arg(long, env = c::ENV_OUTPUT, num_args = 1..=2, value_names = ["FORMAT", "PATH"])]
    pub output: Vec<String>,

    /// This node's name (the downward API's `NODE_NAME`); default: the hostname.
    #[arg(long, env = c::ENV_NODE_NAME, value_name = "NAME")]
    pub node_name: Option<String>,

    /// Kernel hook for credential opens. `auto` tries the BPF LSM
    /// `file_open` hook, then fentry on `security_file_open`, then the BTF
    /// raw tracepoint `sys_enter` (open calls picked by number), then the
    /// `sys_enter_openat`/`openat2`/`open` tracepoints, logging why each was
    /// refused. Forcing one fails if the kernel refuses it.
    #[arg(long, visible_alias = "hook-mode", env = c::ENV_HOOK_MODE, value_enum, value_name = "HOOK")]
    pub hook: Option<HookMode>,

    /// How API-server connects are captured: `auto` attaches the
    /// `inet_sock_set_state` tracepoint as a BTF raw tracepoint (`tp-btf`,
    /// cheapest) and falls back to the classic tracepoint if the kernel
    /// refuses it. Forcing one fails if the kernel refuses it.
    #[arg(long, env = c::ENV_CONNECT_HOOK, value_enum, value_name = "HOOK")]
    pub connect_hook: Option<ConnectHook>,

    /// API-server endpoint (`IP:PORT`, IPv4 or IPv6 `[addr]:port`) whose
    /// TCP connects are reported with both ends, e.g. the `kubernetes`
    /// Service ClusterIP:443 and the real endpoints :6443. Repeatable; in
    /// the environment, comma-separated.
    #[arg(long = "api-endpoint", env = c::ENV_API_ENDPOINTS, value_delimiter = ',', value_name = "ADDR:PORT")]
    pub api_endpoints: Vec<SocketAddr>,

    /// Extra watched path pattern (absolute; `*` and `?` match within one
    /// path component, `{a,b}` lists alternatives). Repeatable; in the
    /// environment, colon-separated.
    #[arg(long, env = c::ENV_WATCH, value_delimiter = ':', value_name = "PATTERN")]
    pub watch: Vec<String>,

    /// Do not watch the built-in credential paths (service-account tokens,
    /// kubelet projected tokens, kubeconfigs, kubelet client certificates).
    #[arg(long, env = c::ENV_NO_DEFAULT_WATCH)]
    pub no_default_watch: bool,

    /// cgroup v2 root, to name the cgroup, container and pod of a process.
    /// [default: /sys/fs/cgroup]
    #[arg(long, env = c::ENV_CGROUP_ROOT, value_name = "PATH")]
    pub cgroup_root: Option<PathBuf>,

    /// The host's /proc (e.g. /host/proc in a container), for process
    /// details and to read credentials through each process's root.
    /// [default: /proc]
    #[arg(long, env = c::ENV_PROC_ROOT, value_name = "PATH")]
    pub proc_root: Option<PathBuf>,

    /// The kubelet's pods folder, to name pods from their uid and to scan
    /// projected tokens. [default: /var/lib/kubelet/pods]
    #[arg(long, env = c::ENV_KUBELET_PODS_DIR, value_name = "PATH")]
    pub kubelet_pods_dir: Option<PathBuf>,

    /// Repeated reads of one file by one process are reported once per
    /// interval, with a count (`60s`, `5m`, `250ms`). [default: 60s]
    #[arg(long, env = c::ENV_REPORT_INTERVAL, value_name = "DURATION")]
    pub report_interval: Option<String>,

    /// Skip the start-up scan of credential files already on the node.
    #[arg(long, env = c::ENV_NO_SCAN)]
    pub no_scan: bool,

    /// Extra address of this node to report (beside its interface
    /// addresses). Repeatable; in the environment, comma-separated.
    #[arg(long = "node-address", env = c::ENV_NODE_ADDRESSES, value_delimiter = ',', value_name = "IP")]
    pub node_addresses: Vec<IpAddr>,

    /// Pod CIDR of this node. Repeatable; in the environment, comma-separated.
    #[arg(long = "pod-cidr", env = c::ENV_POD_CIDRS, value_delimiter = ',', value_name = "CIDR")]
    pub pod_cidrs: Vec<String>,

    /// Bound of the queue between the event loop and the output; overflow
    /// is counted and reported as a `loss` observation. [default: 4096]
    #[arg(long, env = c::ENV_CHANNEL_CAPACITY, value_name = "N")]
    pub channel_capacity: Option<usize>,

    /// Log format on standard error (filter from CREDTRAIL_LOG, else RUST_LOG;
    /// default info).
    #[arg(long, env = c::ENV_LOG_FORMAT, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Serve `GET /healthz` and `/readyz` for the kubelet's probes on this
    /// address (e.g. `0.0.0.0:9101` in the pod's own network namespace).
    #[arg(long, env = c::ENV_HEALTH_LISTEN, value_name = "ADDR:PORT")]
    pub health_listen: Option<SocketAddr>,

    #[command(flatten)]
    pub stream: StreamArgs,
}

/// Streaming to the aggregator (gRPC, mTLS).
#[derive(Debug, Clone, clap::Args)]
pub struct StreamArgs {
    /// Aggregator agent endpoint, `https://host:port`; observations are
    /// streamed there (with acks, resume and a bounded spool).
    #[arg(long, env = c::ENV_AGGREGATOR, value_name = "URL")]
    pub aggregator: Option<String>,

    /// CA certificate (PEM) that signed the aggregator's certificate.
    #[arg(long, env = c::ENV_TLS_CA, value_name = "PATH", requires = "aggregator")]
    pub tls_ca: Option<PathBuf>,

    /// This agent's client certificate (PEM, CN `system:node:<node>`).
    #[arg(long, env = c::ENV_TLS_CERT, value_name = "PATH", requires = "aggregator")]
    pub tls_cert: Option<PathBuf>,

    /// This agent's private key (PEM).
    #[arg(long, env = c::ENV_TLS_KEY, value_name = "PATH", requires = "aggregator")]
    pub tls_key: Option<PathBuf>,

    /// Projected ServiceAccount token (audience `credtrail`) to present
    /// instead of a client certificate; re-read for every connection.
    #[arg(
        long,
        env = "CREDTRAIL_TOKEN_FILE",
        value_name = "PATH",
        requires = "aggregator"
    )]
    pub token_file: Option<PathBuf>,

    /// Mirror the unacknowledged spool to this folder (survives restarts).
    #[arg(long, env = c::ENV_SPOOL_DIR, value_name = "PATH")]
    pub spool_dir: Option<PathBuf>,

    /// Spool bound in observations; beyond it the oldest are dropped and
    /// reported. [default: 100000]
    #[arg(long, env = c::ENV_SPOOL_CAPACITY, value_name = "N")]
    pub spool_capacity: Option<usize>,

    /// Spool bound in bytes (`201326592`, `192Mi`, `1Gi`), in memory and in
    /// the --spool-dir files, which never exceed it: keep it below the
    /// volume's size limit. Beyond it the oldest are dropped and reported.
    /// At least 1 MiB. [default: 192Mi]
    #[arg(long, env = c::ENV_SPOOL_MAX_BYTES, value_name = "BYTES", value_parser = parse_bytes)]
    pub spool_max_bytes: Option<u64>,
}

/// A byte count: digits, optionally followed by `Ki`, `Mi`, `Gi` (or `KiB`,
/// `MiB`, `GiB`); at least [`crate::stream::disk::MIN_MAX_BYTES`].
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count (e.g. 201326592, 192Mi, 1Gi)"))?;
    let shift = match unit {
        "" => 0,
        "Ki" | "KiB" => 10,
        "Mi" | "MiB" => 20,
        "Gi" | "GiB" => 30,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (Ki, Mi or Gi)")),
    };
    let bytes = n
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    let min = crate::stream::disk::MIN_MAX_BYTES;
    if bytes < min {
        return Err(format!(
            "{s:?} is below the smallest spool bound, {min} bytes"
        ));
    }
    Ok(bytes)
}

/// Log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where observations go locally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    Stdout,
    File(PathBuf),
}

impl Cli {
    /// The `--output` choice, if any; an error names what was wrong.
    pub fn output_target(&self) -> Result<Option<OutputTarget>, String> {
        let words: Vec<&str> = self
            .output
            .iter()
            .flat_map(|s| s.split_whitespace())
            .collect();
        match words.as_slice() {
            [] => Ok(None),
            ["jsonl", "-"] => Ok(Some(OutputTarget::Stdout)),
            ["jsonl", path] => Ok(Some(OutputTarget::File(PathBuf::from(path)))),
            [fmt, _] => Err(format!("--output: unknown format {fmt:?} (only jsonl)")),
            _ => Err("--output takes a format and a path: `--output jsonl PATH|-`".into()),
        }
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn output_forms() {
        let cli = Cli::try_parse_from(["a", "--output", "jsonl", "-"]).unwrap();
        assert_eq!(cli.output_target(), Ok(Some(OutputTarget::Stdout)));
        let cli = Cli::try_parse_from(["a", "--output", "jsonl", "/tmp/o.jsonl"]).unwrap();
        assert_eq!(
            cli.output_target(),
            Ok(Some(OutputTarget::File("/tmp/o.jsonl".into())))
        );
        let cli = Cli::try_parse_from(["a", "--output", "jsonl /tmp/x"]).unwrap();
        assert_eq!(
            cli.output_target(),
            Ok(Some(OutputTarget::File("/tmp/x".into())))
        );
        let cli = Cli::try_parse_from(["a", "--output", "csv", "-"]).unwrap();
        assert!(cli.output_target().unwrap_err().contains("csv"));
        let cli = Cli::try_parse_from(["a", "--output", "jsonl"]).unwrap();
        assert!(cli.output_target().is_err());
    }

    #[test]
    fn every_option_is_explained_in_help() {
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for flag in [
            "--config",
            "--output",
            "--node-name",
            "--hook",
            "--api-endpoint",
            "--watch",
            "--no-default-watch",
            "--cgroup-root",
            "--proc-root",
            "--kubelet-pods-dir",
            "--report-interval",
            "--no-scan",
            "--node-address",
            "--pod-cidr",
            "--channel-capacity",
            "--log-format",
            "--aggregator",
            "--tls-ca",
            "--tls-cert",
            "--tls-key",
            "--spool-dir",
            "--spool-capacity",
            "--spool-max-bytes",
            "--health-listen",
            "--print-config",
            "--connect-hook",
        ] {
            let line = help.lines().position(|l| l.trim_start().starts_with(flag));
            let line = line.unwrap_or_else(|| panic!("{flag} missing from --help"));
            let explained = help
                .lines()
                .nth(line + 1)
                .is_some_and(|l| l.trim().len() > 10);
            assert!(explained, "{flag} has no explanation in --help");
        }
        for env in [
            c::ENV_NODE_NAME,
            c::ENV_CONNECT_HOOK,
            c::ENV_HOOK_MODE,
            c::ENV_API_ENDPOINTS,
            c::ENV_AGGREGATOR,
        ] {
            assert!(help.contains(env), "{env} missing from --help");
        }
    }

    #[test]
    fn byte_counts_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_bytes("201326592"), Ok(201_326_592));
        assert_eq!(parse_bytes("192Mi"), Ok(192 << 20));
        assert_eq!(parse_bytes("192MiB"), Ok(192 << 20));
        assert_eq!(parse_bytes("2Gi"), Ok(2 << 30));
        for bad in [
            "",
            "Mi",
            "12 MB",
            "1.5Gi",
            "-5Mi",
            "99999999999Gi",
            "1Ki",
            "1B",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_bytes("1Ki").unwrap_err().contains("smallest"));
        let cli = Cli::try_parse_from(["a", "--spool-max-bytes", "64Mi"]).unwrap();
        assert_eq!(cli.stream.spool_max_bytes, Some(64 << 20));
        assert!(Cli::try_parse_from(["a", "--spool-max-bytes", "lots"]).is_err());
    }

    #[test]
    fn hook_and_endpoints_parse() {
        let cli = Cli::try_parse_from([
            "a",
            "--hook-mode",
            "tracepoint",
            "--api-endpoint",
            "[::1]:6443",
            "--api-endpoint",
            "127.0.0.1:443",
        ])
        .unwrap();
        assert_eq!(cli.hook, Some(HookMode::Tracepoint));
        assert_eq!(cli.api_endpoints.len(), 2);
        assert!(Cli::try_parse_from(["a", "--hook", "kprobe"]).is_err());
        assert!(Cli::try_parse_from(["a", "--api-endpoint", "localhost"]).is_err());
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
}
