//! Privileged: the agent's conntrack lookup finds what the API server sees
//! for a masqueraded pod connection, on a real network.
//!
//! Three network namespaces created here: a "pod" (10.211.0.2), a "node"
//! routing between its two veths with an nftables MASQUERADE rule (ports
//! forced into 41000-41999), and an "API server" stand-in (10.212.0.2:6443)
//! that records the peer it accepted. The pod connects; the lookup runs in
//! the node namespace (where the agent runs and the NAT happens) with the
//! pod's own socket addresses, and must return exactly the peer the API
//! server accepted. A connection that is not NATed (from the node itself)
//! has no translation. No traffic leaves the namespaces.
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables; `cargo xtask setup`
//! installs it). Run: `cargo test -p credtrail-tests --test conntrack_nat`

use std::fs::File;
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::process::Command;
use std::time::Duration;

use credtrail_agent::conntrack;

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (needs iproute2 and nftables)"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the namespaces (and with them the veths) on drop.
struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

#[test]
fn conntrack_finds_the_masqueraded_source_the_api_server_sees() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIP conntrack_nat: not root (network namespaces need CAP_NET_ADMIN)");
        return;
    }
    let id = std::process::id() % 100_000;
    let (p, n, a) = (format!("ctp{id}"), format!("ctn{id}"), format!("cta{id}"));
    let _guard = Netns(vec![p.clone(), n.clone(), a.clone()]);
    let (vp, vn, wn, wa) = (
        format!("ct{id}vp"),
        format!("ct{id}vn"),
        format!("ct{id}wn"),
        format!("ct{id}wa"),
    );
    for ns in [&p, &n, &a] {
        sh(&["ip", "netns", "add", ns]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    sh(&[
        "ip", "link", "add", &vp, "type", "veth", "peer", "name", &vn,
    ]);
    sh(&["ip", "link", "set", &vp, "netns", &p]);
    sh(&["ip", "link", "set", &vn, "netns", &n]);
    sh(&[
        "ip", "link", "add", &wn, "type", "veth", "peer", "name", &wa,
    ]);
    sh(&["ip", "link", "set", &wn, "netns", &n]);
    sh(&["ip", "link", "set", &wa, "netns", &a]);
    for (ns, dev, addr) in [
        (&p, &vp, "10.211.0.2/24"),
        (&n, &vn, "10.211.0.1/24"),
        (&n, &wn, "10.212.0.1/24"),
        (&a, &wa, "10.212.0.2/24"),
    ] {
        sh(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
    sh(&[
        "ip",
        "-n",
        &p,
        "route",
        "add",
        "default",
        "via",
        "10.211.0.1",
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &n,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    sh(&[
        "ip",
        "netns",
        "exec",
        &n,
        "nft",
        &format!(
            "add table ip ctnat; add chain ip ctnat post {{ type nat hook postrouting priority 100 ; }} ; \
             add rule ip ctnat post oifname \"{wn}\" ip saddr 10.211.0.0/24 meta l4proto tcp masquerade to :41000-41999"
        ),
    ]);

    // The API-server stand-in: accepts two connections, reports their peers.
    let (tx, rx) = std::sync::mpsc::channel();
    let api = in_netns(&a, move || {
        let l = TcpListener::bind("10.212.0.2:6443").unwrap();
        tx.send(()).unwrap();
        let mut peers = Vec::new();
        for _ in 0..2 {
            let (mut c, peer) = l.accept().unwrap();
            peers.push(peer);
            let mut b = [0u8; 1];
            let _ = c.read(&mut b); // until the client closes
        }
        peers
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("API stand-in did not start");
    let remote: SocketAddr = "10.212.0.2:6443".parse().unwrap();

    // The pod connects; the agent (in the node namespace) looks it up with
    // the addresses of the pod's own socket.
    let (pod_local, pod_sock) = in_netns(&p, move || {
        let s = TcpStream::connect_timeout(&remote, Duration::from_secs(3)).unwrap();
        (s.local_addr().unwrap(), s)
    })
    .join()
    .unwrap();
    assert_eq!(pod_local.ip().to_string(), "10.211.0.2");
    let seen = in_netns(&n, move || conntrack::lookup(pod_local, remote))
        .join()
        .unwrap()
        .expect("conntrack lookup")
        .expect("no conntrack entry for the pod's connection");
    drop(pod_sock);
    // A connection from the node itself is not translated: the reply tuple
    // names its own address.
    let (node_local, node_seen) = in_netns(&n, move || {
        let s = TcpStream::connect_timeout(&remote, Duration::from_secs(3)).unwrap();
        let local = s.local_addr().unwrap();
        (
            local,
            conntrack::lookup(local, remote).expect("conntrack lookup"),
        )
    })
    .join()
    .unwrap();
    let peers = api.join().unwrap();

    assert_eq!(
        seen.ip().to_string(),
        "10.212.0.1",
        "masqueraded to the node"
    );
    assert!(
        (41000..=41999).contains(&seen.port()),
        "the masquerade port range applies: {seen}"
    );
    assert_eq!(peers[0], seen, "conntrack names what the API server saw");
    assert_eq!(node_seen, Some(node_local), "untranslated: reply = local");
    assert_eq!(peers[1], node_local);
    // An unknown connection has no entry.
    let none = in_netns(&n, move || {
        conntrack::lookup("10.211.0.2:1".parse().unwrap(), remote).expect("lookup")
    })
    .join()
    .unwrap();
    assert_eq!(none, None);
}
