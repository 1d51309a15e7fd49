//! Node identity: name, addresses, kernel release.
//!
//! Addresses: the node's own addresses are what the aggregator uses to tell
//! "this node" from "another node" in audit `sourceIPs`, so a wrong one
//! raises false alerts. In a pod (its own network namespace) the interfaces
//! carry the pod's address, never the node's: there the addresses come from
//! the downward API (`status.hostIP` in [`NODE_IP_ENV`], `status.hostIPs` in
//! [`NODE_IPS_ENV`]) and the interfaces are not read. On the host's network
//! namespace (the agent run on the node, or `hostNetwork`) every interface
//! address is the node's and is reported as well.

use std::net::IpAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use credtrail_proto::model::NodeInfo;

/// Environment variable the DaemonSet fills from the downward API (`spec.nodeName`).
pub const NODE_NAME_ENV: &str = "NODE_NAME";
/// Environment variable the DaemonSet fills from the downward API (`status.hostIP`).
pub const NODE_IP_ENV: &str = "NODE_IP";
/// Environment variable the DaemonSet fills from the downward API
/// (`status.hostIPs`: comma-separated, dual-stack; Kubernetes 1.30+).
pub const NODE_IPS_ENV: &str = "NODE_IPS";
/// At most this many downward-API addresses are taken (a node has one or two).
const MAX_DOWNWARD_ADDRESSES: usize = 16;

/// The node name: `NODE_NAME` when set and not empty, else the hostname.
pub fn node_name() -> String {
    std::env::var(NODE_NAME_ENV)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(hostname)
}

/// The kernel's hostname (`/proc/sys/kernel/hostname`), or `unknown`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The kernel release (`uname -r`).
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Every address of every interface, minus loopback and IPv6 link-local,
/// sorted and deduplicated.
pub fn interface_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and its sa_family says which sockaddr it is.
        let ip = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sa = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
                    IpAddr::from(u32::from_be(sa.sin_addr.s_addr).to_be_bytes())
                }
                libc::AF_INET6 => {
                    let sa = &*ifa.ifa_addr.cast::<libc::sockaddr_in6>();
                    IpAddr::from(sa.sin6_addr.s6_addr)
                }
                _ => continue,
            }
        };
        let link_local_v6 = matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
        if !ip.is_loopback() && !link_local_v6 {
            out.push(ip);
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    out
}

/// The inode number of the initial PID namespace (`PROC_PID_INIT_INO`):
/// fixed for years, so `<proc>/1/ns/pid` with this number means `<proc>/1`
/// is the host's init.
const PID_NS_INIT_INO: u64 = 0xEFFF_FFFC;
/// The inode number of the initial network namespace, fixed from Linux 6.18
/// on (`NET_NS_INIT_INO`, `include/uapi/linux/nsfs.h`); before, it was
/// allocated at boot from the dynamic range (0xF0000000 up), so it never
/// equals this number by chance.
const NET_NS_INIT_INO: u64 = 0xEFFF_FFF9;

/// The agent's network namespace relative to the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetNamespace {
    /// The host's: interface addresses are the node's.
    Host,
    /// Its own (a pod without `hostNetwork`): interface addresses are the pod's.
    Own,
    /// Cannot tell, and why; interface addresses are not trusted.
    Unknown(String),
}

/// Which network namespace the agent is in: by the initial namespace's fixed
/// inode number where the kernel has one ([`by_fixed_inode`]), else by
/// comparing with PID 1's ([`by_init_process`]).
pub fn net_namespace(proc_root: &Path) -> NetNamespace {
    match ns_id(Path::new("/proc/self/ns/net")) {
        Ok((_, ino)) => by_fixed_inode(ino, &kernel_release())
            .unwrap_or_else(|| by_init_process(&proc_root.join("1"))),
        Err(e) => NetNamespace::Unknown(e),
    }
}

/// `Some` when the network namespace's inode number decides it: the fixed
/// initial number means the host's; from 6.18 on, any other number means
/// another namespace. `None` on older kernels.
pub fn by_fixed_inode(own_net_ino: u64, kernel_release: &str) -> Option<NetNamespace> {
    if own_net_ino == NET_NS_INIT_INO {
        return Some(NetNamespace::Host);
    }
    let mut parts = kernel_release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().ok());
    let version = (parts.next()??, parts.next()??);
    (version >= (6, 18)).then_some(NetNamespace::Own)
}

/// Compares `/proc/self/ns/net` with `init`'s (`<proc_root>/1`). `init` is
/// the host's init only when its PID namespace is the initial one (the agent
/// has host PID, or `proc_root` is the host's `/proc`); otherwise the answer
/// is [`NetNamespace::Unknown`]. Reading PID 1's namespaces needs
/// `CAP_SYS_PTRACE`, which the DaemonSet grants.
pub fn by_init_process(init: &Path) -> NetNamespace {
    match ns_id(&init.join("ns/pid")) {
        Ok((_, PID_NS_INIT_INO)) => {}
        Ok(_) => {
            return NetNamespace::Unknown(format!(
                "{} is not the host's init (not in the initial PID namespace: no host PID)",
                init.display()
            ));
        }
        Err(e) => return NetNamespace::Unknown(e),
    }
    match (
        ns_id(&init.join("ns/net")),
        ns_id(Path::new("/proc/self/ns/net")),
    ) {
        (Ok(host), Ok(own)) if host == own => NetNamespace::Host,
        (Ok(_), Ok(_)) => NetNamespace::Own,
        (Err(e), _) | (_, Err(e)) => NetNamespace::Unknown(e),
    }
}

/// A namespace's identity: the nsfs device and inode of its `/proc` link.
fn ns_id(link: &Path) -> Result<(u64, u64), String> {
    std::fs::metadata(link)
        .map(|m| (m.dev(), m.ino()))
        .map_err(|e| format!("{}: {e}", link.display()))
}

/// The addresses the downward API gave ([`NODE_IP_ENV`], [`NODE_IPS_ENV`]),
/// deduplicated, and a message per entry that is not an IP address.
pub fn downward_addresses() -> (Vec<IpAddr>, Vec<String>) {
    let var = |k: &str| std::env::var(k).ok();
    parse_downward(var(NODE_IP_ENV).as_deref(), var(NODE_IPS_ENV).as_deref())
}

fn parse_downward(ip: Option<&str>, ips: Option<&str>) -> (Vec<IpAddr>, Vec<String>) {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut bad = Vec::new();
    let entries = [(NODE_IP_ENV, ip), (NODE_IPS_ENV, ips)];
    for (var, value) in entries {
        for item in value.unwrap_or("").split(',').map(str::trim) {
            if item.is_empty() {
                continue;
            }
            match item.parse::<IpAddr>() {
                Ok(a) if a.is_loopback() || a.is_unspecified() => {
                    bad.push(format!("{var}: {a} is not a node address; ignored"));
                }
                Ok(a) if out.len() < MAX_DOWNWARD_ADDRESSES => {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
                Ok(a) => bad.push(format!(
                    "{var}: more than {MAX_DOWNWARD_ADDRESSES} addresses; {a} ignored"
                )),
                Err(_) => bad.push(format!(
                    "{var}: {:?} is not an IP address; ignored",
                    item.chars().take(64).collect::<String>()
                )),
            }
        }
    }
    (out, bad)
}

/// The node's addresses from the downward API and, in the host's network
/// namespace only, the interfaces; with a note when none could be found.
pub fn node_addresses(downward: &[IpAddr], ns: &NetNamespace) -> (Vec<IpAddr>, Option<String>) {
    let mut out = downward.to_vec();
    let skipped = match ns {
        NetNamespace::Host => {
            for a in interface_addresses() {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
            None
        }
        NetNamespace::Own => Some(
            "the agent runs in its own network namespace: its interfaces carry the pod's address, not the node's".to_owned(),
        ),
        NetNamespace::Unknown(why) => Some(format!(
            "cannot tell whether the agent shares the host's network namespace ({why}): interface addresses are not reported"
        )),
    };
    let note = match (out.is_empty(), skipped) {
        (true, Some(why)) => Some(format!(
            "no node address reported: {why}; set {NODE_IP_ENV}/{NODE_IPS_ENV} from the downward API (status.hostIP, status.hostIPs) or --node-address"
        )),
        _ => None,
    };
    (out, note)
}

/// The node-info payload for this node. `proc_root` is where the host's
/// `/proc` is mounted (PID 1 there is compared with the agent's namespace);
/// `configured` are addresses from the configuration (`--node-address`).
pub fn node_info(
    name: &str,
    hooks: Vec<String>,
    pod_cidrs: Vec<String>,
    proc_root: &Path,
    configured: &[IpAddr],
) -> NodeInfo {
    let (mut downward, bad) = downward_addresses();
    for a in configured {
        if !downward.contains(a) {
            downward.push(*a);
        }
    }
    for b in &bad {
        tracing::warn!("{b}");
    }
    let ns = net_namespace(proc_root);
    let (addresses, note) = node_addresses(&downward, &ns);
    if let Some(note) = note {
        tracing::warn!("{note}");
    } else {
        tracing::info!(?addresses, netns = ?ns, "node addresses");
    }
    NodeInfo {
        name: name.to_string(),
        addresses,
        pod_cidrs,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        kernel_release: kernel_release(),
        blind_spots: blind_spots(&hooks),
        hooks,
    }
}

/// What the open hooks in `hooks` cannot see, one sentence each (see
/// docs/OBSERVATIONS.md, "What each hook sees").
pub fn blind_spots(hooks: &[String]) -> Vec<String> {
    let btf_file_hook = hooks
        .iter()
        .any(|h| h == "lsm_file_open" || h == "fentry_security_file_open");
    if btf_file_hook {
        return Vec::new();
    }
    vec![
        "system-call hooks: opens through io_uring and open_by_handle_at are not seen".into(),
        "system-call hooks: an absolute path that does not start with a watched prefix is not \
         seen even when it leads to a credential (a symlink or hard link the process made, \
         e.g. /tmp/x -> a token, or /proc/<pid>/root/...); relative paths, openat(dirfd), \
         //, /./ and .. are seen"
            .into(),
        "system-call hooks: a relative path is resolved after the open, through the process's \
         cwd or dirfd; if the process exited or closed the dirfd first, it is reported \
         without identity, with why"
            .into(),
        "system-call hooks: for patterns ending in `*`, only paths spelled with the watched \
         prefix are seen"
            .into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_exclude_loopback_and_match_the_interfaces() {
        let addrs = interface_addresses();
        assert!(addrs.iter().all(|a| !a.is_loopback()), "{addrs:?}");
        // Cross-check against the kernel's own IPv4 view: every address in
        // /proc/net/fib_trie marked "/32 host LOCAL" that is not loopback is listed.
        let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
        let lines: Vec<&str> = trie.lines().collect();
        for w in lines.windows(2) {
            if w[1].contains("/32 host LOCAL") {
                let ip: IpAddr = w[0].trim().trim_start_matches("|-- ").parse().unwrap();
                if !ip.is_loopback() {
                    assert!(addrs.contains(&ip), "{ip} missing from {addrs:?}");
                }
            }
        }
        assert!(!kernel_release().is_empty());
        let mut buf = [0u8; 256];
        // SAFETY: buf is writable for its length.
        assert_eq!(
            unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) },
            0
        );
        let end = buf.iter().position(|b| *b == 0).unwrap();
        assert_eq!(hostname(), std::str::from_utf8(&buf[..end]).unwrap());
    }

    #[test]
    fn downward_addresses_parse_dedupe_and_refuse_junk() {
        let (a, bad) = parse_downward(
            Some("192.0.2.7"),
            Some("192.0.2.7, 2001:db8::7,,not-an-ip,127.0.0.1,0.0.0.0"),
        );
        assert_eq!(
            a,
            [
                "192.0.2.7".parse::<IpAddr>().unwrap(),
                "2001:db8::7".parse().unwrap()
            ]
        );
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad.iter().any(|b| b.contains("\"not-an-ip\"")), "{bad:?}");
        let many: String = (1..=40).map(|i| format!("10.0.0.{i},")).collect();
        let (a, bad) = parse_downward(None, Some(&many));
        assert_eq!(a.len(), MAX_DOWNWARD_ADDRESSES);
        assert_eq!(bad.len(), 40 - MAX_DOWNWARD_ADDRESSES);
        // A huge hostile value is cut in the message.
        let (_, bad) = parse_downward(Some(&"x".repeat(10_000)), None);
        assert!(bad[0].len() < 200, "{}", bad[0]);
    }

    #[test]
    fn interfaces_count_only_in_the_hosts_namespace() {
        let d: Vec<IpAddr> = vec!["192.0.2.7".parse().unwrap()];
        let (a, note) = node_addresses(&d, &NetNamespace::Own);
        assert_eq!((a, note), (d.clone(), None));
        let (a, note) = node_addresses(&[], &NetNamespace::Own);
        assert!(a.is_empty());
        let note = note.unwrap();
        assert!(
            note.contains("own network namespace") && note.contains("NODE_IPS"),
            "{note}"
        );
        let (a, note) = node_addresses(&[], &NetNamespace::Unknown("why".into()));
        assert!(a.is_empty() && note.unwrap().contains("(why)"));
        let (a, note) = node_addresses(&d, &NetNamespace::Host);
        assert!(note.is_none());
        assert_eq!(a[0], d[0]);
        for i in interface_addresses() {
            assert!(a.contains(&i), "{i} missing from {a:?}");
        }
    }

    #[test]
    fn fixed_inode_numbers_decide_from_6_18_only() {
        assert_eq!(
            by_fixed_inode(NET_NS_INIT_INO, "5.10.0"),
            Some(NetNamespace::Host)
        );
        assert_eq!(
            by_fixed_inode(0xF000_0123, "6.18.44-fc"),
            Some(NetNamespace::Own)
        );
        assert_eq!(
            by_fixed_inode(0xF000_0123, "7.0.1"),
            Some(NetNamespace::Own)
        );
        assert_eq!(by_fixed_inode(0xF000_0123, "6.17.9"), None);
        assert_eq!(by_fixed_inode(0xF000_0123, "garbage"), None);
        assert_eq!(by_fixed_inode(0xF000_0123, ""), None);
    }

    #[test]
    fn init_process_comparison() {
        // Our own /proc entry stands in for PID 1: same namespaces as ours.
        let me = Path::new("/proc/self");
        let in_init_pid_ns = ns_id(&me.join("ns/pid")).is_ok_and(|(_, i)| i == PID_NS_INIT_INO);
        if in_init_pid_ns {
            assert_eq!(by_init_process(me), NetNamespace::Host);
        } else {
            assert!(
                matches!(by_init_process(me), NetNamespace::Unknown(w) if w.contains("no host PID"))
            );
        }
        let missing = by_init_process(Path::new("/nonexistent/1"));
        assert!(matches!(missing, NetNamespace::Unknown(w) if w.contains("/nonexistent/1/ns/pid")));
    }

    /// What [`in_own_network_namespace`] runs inside the namespace: prints
    /// the namespace verdicts and the NodeInfo the agent would send.
    #[test]
    #[ignore = "run by in_own_network_namespace inside a network namespace"]
    fn netns_child() {
        let Ok(parent) = std::env::var("CREDTRAIL_NETNS_PARENT") else {
            eprintln!("netns_child runs only under in_own_network_namespace");
            return;
        };
        let info = node_info("node-x", vec![], vec![], Path::new("/proc"), &[]);
        let vs_parent = by_init_process(&Path::new("/proc").join(parent));
        println!(
            "NETNS-RESULT {}",
            serde_json::json!({
                "info": info,
                "netns": format!("{:?}", net_namespace(Path::new("/proc"))),
                "vs_parent": format!("{vs_parent:?}"),
                "interfaces": interface_addresses(),
            })
        );
    }

    /// The agent's node identity inside its own network namespace (as in a
    /// pod): an interface carrying a "pod" address is never reported; the
    /// downward-API addresses are; without them, nothing is.
    #[test]
    fn in_own_network_namespace() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "SKIP in_own_network_namespace: not root (unshare --net needs CAP_SYS_ADMIN)"
            );
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let run = |node_ips: Option<&str>| -> serde_json::Value {
            let script = "ip link add ct-pod0 type veth peer name ct-pod1 \
                 && ip addr add 10.213.7.9/24 dev ct-pod0 \
                 && ip link set ct-pod0 up && exec \"$0\" --exact node::tests::netns_child \
                 --ignored --nocapture --test-threads=1";
            let mut cmd = std::process::Command::new("unshare");
            cmd.args(["--net", "--", "sh", "-c", script])
                .arg(&exe)
                .env("CREDTRAIL_NETNS_PARENT", std::process::id().to_string())
                .env_remove(NODE_IP_ENV)
                .env_remove(NODE_IPS_ENV);
            if let Some(v) = node_ips {
                cmd.env(NODE_IPS_ENV, v)
                    .env(NODE_IP_ENV, v.split(',').next().unwrap());
            }
            let out = cmd.output().expect("running unshare (util-linux)");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "child failed: {}\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let line = stdout
                .lines()
                .find_map(|l| l.split_once("NETNS-RESULT ").map(|(_, r)| r))
                .unwrap_or_else(|| panic!("no result line in {stdout}"));
            serde_json::from_str(line).unwrap()
        };
        let pod_ip = serde_json::json!("10.213.7.9");

        let v = run(Some("192.0.2.44,2001:db8::44"));
        assert_eq!(v["netns"], "Own", "{v}");
        assert_eq!(v["vs_parent"], "Own", "{v}");
        assert!(v["interfaces"].as_array().unwrap().contains(&pod_ip), "{v}");
        assert_eq!(
            v["info"]["addresses"],
            serde_json::json!(["192.0.2.44", "2001:db8::44"]),
            "{v}"
        );
        assert_eq!(v["info"]["name"], "node-x");

        let v = run(None);
        assert_eq!(v["netns"], "Own", "{v}");
        assert_eq!(v["info"]["addresses"], serde_json::json!([]), "{v}");

        // The same code on the host's namespace reports its interfaces.
        assert_eq!(net_namespace(Path::new("/proc")), NetNamespace::Host);
        let host = node_info("node-x", vec![], vec![], Path::new("/proc"), &[]);
        for a in interface_addresses() {
            assert!(
                host.addresses.contains(&a),
                "{a} missing from {:?}",
                host.addresses
            );
        }
        assert!(!host.addresses.contains(&"10.213.7.9".parse().unwrap()));
    }
}
