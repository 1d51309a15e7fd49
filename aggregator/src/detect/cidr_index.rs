//! Which node's pod CIDR holds an address, in O(number of distinct prefix
//! lengths) instead of a pass over every node: the CIDRs are keyed by
//! network, and an address is looked up once per prefix length in use
//! (one or two in a real cluster: `/24` per node, a `/64` for IPv6).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

/// Pod CIDR → nodes. Entries of nodes that changed or were forgotten stay
/// until the next rebuild; lookups confirm each hit with the caller.
#[derive(Debug, Default)]
pub struct CidrIndex {
    by_net: HashMap<IpNet, BTreeSet<String>>,
    /// `(is IPv6, prefix length)` in use.
    lens: BTreeSet<(bool, u8)>,
    entries: usize,
    live_at_rebuild: usize,
}

impl CidrIndex {
    pub fn insert(&mut self, net: IpNet, node: &str) {
        let net = net.trunc();
        if self.by_net.entry(net).or_default().insert(node.to_owned()) {
            self.entries += 1;
        }
        self.lens.insert((net.addr().is_ipv6(), net.prefix_len()));
    }

    /// Whether enough stale entries piled up that a rebuild (from the live
    /// nodes) is due; amortized O(1) per insert.
    pub fn stale(&self) -> bool {
        self.entries > 2 * self.live_at_rebuild + 64
    }

    /// Replaces the index with these `(cidr, node)` pairs.
    pub fn rebuild<'a>(&mut self, live: impl Iterator<Item = (&'a IpNet, &'a str)>) {
        *self = Self::default();
        for (net, node) in live {
            self.insert(*net, node);
        }
        self.live_at_rebuild = self.entries;
    }

    /// The first node by name whose CIDR holds `ip` and for which `confirm`
    /// holds (the node still has that CIDR).
    pub fn lookup(&self, ip: IpAddr, confirm: impl Fn(&str) -> bool) -> Option<&String> {
        let mut best: Option<&String> = None;
        for &(v6, len) in &self.lens {
            if v6 != ip.is_ipv6() {
                continue;
            }
            let Ok(net) = IpNet::new(ip, len) else {
                continue;
            };
            if let Some(nodes) = self.by_net.get(&net.trunc())
                && let Some(n) = nodes.iter().find(|n| confirm(n))
                && best.is_none_or(|b| n < b)
            {
                best = Some(n);
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_node_by_cidr_first_by_name_and_confirmed() {
        let mut x = CidrIndex::default();
        x.insert("10.1.2.0/24".parse().unwrap(), "node-b");
        x.insert("10.1.0.0/16".parse().unwrap(), "node-a");
        x.insert("fd00:1::/64".parse().unwrap(), "node-c");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(x.lookup(ip("10.1.2.9"), |_| true).unwrap(), "node-a");
        assert_eq!(
            x.lookup(ip("10.1.2.9"), |n| n != "node-a").unwrap(),
            "node-b"
        );
        assert_eq!(x.lookup(ip("10.1.9.9"), |_| true).unwrap(), "node-a");
        assert_eq!(x.lookup(ip("fd00:1::5"), |_| true).unwrap(), "node-c");
        assert!(x.lookup(ip("10.2.0.1"), |_| true).is_none());
        for i in 0..200 {
            x.insert(format!("10.9.{i}.0/24").parse().unwrap(), "node-z");
        }
        assert!(x.stale());
        let live: Vec<(IpNet, String)> = vec![("10.1.2.0/24".parse().unwrap(), "node-b".into())];
        x.rebuild(live.iter().map(|(n, s)| (n, s.as_str())));
        assert!(!x.stale());
        assert!(x.lookup(ip("10.9.3.1"), |_| true).is_none());
    }

    #[test]
    fn the_first_name_wins_whichever_prefix_length_finds_it() {
        let mut x = CidrIndex::default();
        x.insert("10.1.0.0/16".parse().unwrap(), "node-b");
        x.insert("10.1.2.0/24".parse().unwrap(), "node-a");
        let ip = "10.1.2.9".parse().unwrap();
        assert_eq!(x.lookup(ip, |_| true).unwrap(), "node-a");
        // A v6 range of the same length never answers for a v4 address.
        x.insert("fd00::/16".parse().unwrap(), "node-0");
        assert_eq!(x.lookup(ip, |_| true).unwrap(), "node-a");
    }

    #[test]
    fn a_rebuild_is_due_past_twice_the_live_entries_and_64() {
        let mut x = CidrIndex::default();
        let live: Vec<(IpNet, String)> = (0..10)
            .map(|i| (format!("10.0.{i}.0/24").parse().unwrap(), format!("n{i}")))
            .collect();
        x.rebuild(live.iter().map(|(n, s)| (n, s.as_str())));
        // The same pair again is no new entry.
        x.insert("10.0.0.0/24".parse().unwrap(), "n0");
        for i in 0..74 {
            assert!(!x.stale(), "{} entries", 10 + i);
            x.insert(format!("10.9.{i}.0/24").parse().unwrap(), "moved");
        }
        assert!(!x.stale(), "84 entries: 2 x 10 + 64");
        x.insert("10.8.0.0/24".parse().unwrap(), "moved");
        assert!(x.stale(), "85 entries");
    }
}
