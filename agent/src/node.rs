//! Node identity: name, addresses, kernel release.

use std::net::IpAddr;

use credtrail_proto::model::NodeInfo;

/// Environment variable the DaemonSet fills from the downward API (`spec.nodeName`).
pub const NODE_NAME_ENV: &str = "NODE_NAME";

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
pub fn addresses() -> Vec<IpAddr> {
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

/// The node-info payload for this node.
pub fn node_info(name: &str, hooks: Vec<String>, pod_cidrs: Vec<String>) -> NodeInfo {
    NodeInfo {
        name: name.to_string(),
        addresses: addresses(),
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
        let addrs = addresses();
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
}
