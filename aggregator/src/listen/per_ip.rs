//! Per-source connection caps: one client address cannot take every slot of
//! a listener. IPv4 addresses count one by one; IPv6 addresses count per /64
//! (one host usually owns a whole /64, so counting single addresses would let
//! it open a slot per address); IPv4-mapped IPv6 counts as its IPv4 address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The key a source address is counted under.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Open connections per source key, at most `cap` each (`0`: no cap). The
/// table holds only keys with open connections, so it is bounded by the
/// listener's own connection cap.
#[derive(Debug)]
pub struct PerIp {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; dropping it gives the count back.
#[derive(Debug)]
pub struct IpTicket {
    table: Arc<PerIp>,
    key: IpAddr,
}

impl PerIp {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A ticket for one more connection from `ip`, or `None` when that source
    /// already holds `cap` connections.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpTicket> {
        let key = source_key(ip);
        if self.cap > 0 {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let n = open.entry(key).or_insert(0);
            if *n >= self.cap {
                return None;
            }
            *n += 1;
        }
        Some(IpTicket {
            table: self.clone(),
            key,
        })
    }

    /// Connections open from `ip`'s source key.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(&source_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for IpTicket {
    fn drop(&mut self) {
        if self.table.cap == 0 {
            return;
        }
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_gets_at_most_cap_connections_and_gets_them_back() {
        let t = PerIp::new(2);
        let a = t.admit(ip("127.0.0.9")).unwrap();
        let _b = t.admit(ip("127.0.0.9")).unwrap();
        assert!(t.admit(ip("127.0.0.9")).is_none());
        assert!(
            t.admit(ip("127.0.0.10")).is_some(),
            "other sources are not affected"
        );
        drop(a);
        assert_eq!(t.open_from(ip("127.0.0.9")), 1);
        assert!(t.admit(ip("127.0.0.9")).is_some());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let t = PerIp::new(1);
        let _a = t.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(t.admit(ip("2001:db8:1:2:ffff::9")).is_none(), "same /64");
        assert!(t.admit(ip("2001:db8:1:3::1")).is_some(), "another /64");
        let _v4 = t.admit(ip("192.0.2.7")).unwrap();
        assert!(t.admit(ip("::ffff:192.0.2.7")).is_none());
    }

    #[test]
    fn the_table_forgets_closed_sources() {
        let t = PerIp::new(3);
        for i in 0..100u8 {
            drop(t.admit(IpAddr::from([10, 0, 0, i])).unwrap());
        }
        assert!(t.open.lock().unwrap().is_empty());
    }

    #[test]
    fn cap_zero_admits_everyone() {
        let t = PerIp::new(0);
        let held: Vec<_> = (0..10).map(|_| t.admit(ip("127.0.0.1")).unwrap()).collect();
        assert_eq!(held.len(), 10);
    }
}
