//! What the audit stream itself teaches about the cluster, beside agents and
//! the policy: node addresses (requests by `system:node:<name>`, Node objects'
//! `status.addresses`), pod ranges (Nodes' `spec.podCIDRs`), API endpoints
//! (the `kubernetes` Service's Endpoints/EndpointSlices), and node deletion.
//!
//! Learned facts never override the policy or an agent: an address is learned
//! only when it is internal, inside the configured node ranges (when any),
//! outside the configured pod/service ranges, and not already another node's
//! or a pod's. A node that already has addresses keeps them unless it is
//! re-registered (a Node `create`, or a new uid: node replacement). Facts not
//! confirmed within `detection.learned_ttl` are forgotten. State is bounded.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use serde::Serialize;
use serde_json::Value;

use crate::audit::AuditEvent;
use crate::policy::Policy;

use super::sightings::Location;

/// Bounds: nodes learned, addresses and pod ranges per node, API endpoints.
const MAX_NODES: usize = 20_000;
const MAX_ADDRS: usize = 8;
const MAX_CIDRS: usize = 4;
const MAX_ENDPOINTS: usize = 16;

/// Private, CGNAT, ULA, link-local and loopback: "unknown internal" when
/// nothing else places them. Everything else (documentation ranges included)
/// is public: "outside".
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Where a learned fact came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Provenance {
    /// `kubelet request`, `Node status.addresses`, `Node spec.podCIDRs`,
    /// `kubernetes EndpointSlice`, `kubernetes Endpoints`.
    pub source: std::borrow::Cow<'static, str>,
    pub audit_id: String,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
struct LearnedNode {
    uid: Option<String>,
    addresses: Vec<(IpAddr, Provenance)>,
    pod_cidrs: Vec<(IpNet, Provenance)>,
}

/// One node as learned, for the nodes inventory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearnedNodeView {
    pub node: String,
    pub uid: Option<String>,
    pub addresses: Vec<(String, Provenance)>,
    pub pod_cidrs: Vec<(String, Provenance)>,
}

/// A change the pipeline stores (nodes inventory, `learned` section).
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterChange {
    Learned(LearnedNodeView),
    /// A node deleted in the audit stream: its addresses and ranges released.
    Released {
        node: String,
        audit_id: String,
        time_ms: i64,
    },
}

/// Facts learned from the audit stream.
#[derive(Debug, Default)]
pub struct ClusterFacts {
    nodes: HashMap<String, LearnedNode>,
    /// Nodes deleted in the audit stream: their credentials teach nothing
    /// until the node registers again (bounded).
    deleted: HashMap<String, DateTime<Utc>>,
    last_silence_check: Option<DateTime<Utc>>,
    api_endpoints: Vec<(IpAddr, Provenance)>,
    /// Node writes whose addresses or pod ranges were ignored because the
    /// writer may not set them (`detect/node_writes.rs`), since the last
    /// [`ClusterFacts::take_refused`].
    refused: u64,
}

fn prov(source: &'static str, ev: &AuditEvent) -> Provenance {
    Provenance {
        source: source.into(),
        audit_id: ev.audit_id.clone(),
        first: ev.time(),
        last: ev.time(),
    }
}

fn fresh(p: &Provenance, t: DateTime<Utc>, ttl: chrono::Duration) -> bool {
    ttl <= chrono::Duration::zero() || t <= p.last + ttl
}

/// `(uid, [(address type, address)], podCIDRs)` of a Node object.
type NodeObject = (Option<String>, Vec<(String, IpAddr)>, Vec<IpNet>);

/// The Node object in an event's response (else request).
fn node_object(ev: &AuditEvent) -> Option<NodeObject> {
    let obj = ev.object()?;
    if obj.kind.as_deref().is_some_and(|k| k != "Node") {
        return None;
    }
    let addrs = obj
        .status
        .as_ref()
        .and_then(|s| s.get("addresses"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    let ty = x.get("type")?.as_str()?;
                    let ip = x.get("address")?.as_str()?.parse().ok()?;
                    matches!(ty, "InternalIP" | "ExternalIP").then(|| (ty.to_owned(), ip))
                })
                .take(MAX_ADDRS)
                .collect()
        })
        .unwrap_or_default();
    let cidrs = obj
        .spec
        .as_ref()
        .and_then(|s| {
            s.get("podCIDRs")
                .and_then(Value::as_array)
                .cloned()
                .or_else(|| s.get("podCIDR").map(|c| vec![c.clone()]))
        })
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str()?.parse().ok())
                .take(MAX_CIDRS)
                .collect()
        })
        .unwrap_or_default();
    Some((obj.metadata.uid.clone(), addrs, cidrs))
}

/// Addresses of the `kubernetes` Service's endpoints in an event, if it is about them.
fn api_endpoint_addrs(ev: &AuditEvent) -> Vec<(&'static str, IpAddr)> {
    let res = ev.resource().unwrap_or("");
    let obj = match ev.object() {
        Some(o) => o,
        None => return Vec::new(),
    };
    if ev.namespace() != Some("default") {
        return Vec::new();
    }
    let name = ev.name().or(obj.metadata.name.as_deref()).unwrap_or("");
    let mut out = Vec::new();
    let strs = |v: Option<&Value>| -> Vec<IpAddr> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str()?.parse().ok()).collect())
            .unwrap_or_default()
    };
    if res == "endpointslices" && (name == "kubernetes" || name.starts_with("kubernetes-")) {
        for e in obj
            .endpoints
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for ip in strs(e.get("addresses")) {
                out.push(("kubernetes EndpointSlice", ip));
            }
        }
    } else if res == "endpoints" && name == "kubernetes" {
        for s in obj
            .subsets
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for a in s
                .get("addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(ip) = a
                    .get("ip")
                    .and_then(Value::as_str)
                    .and_then(|x| x.parse().ok())
                {
                    out.push(("kubernetes Endpoints", ip));
                }
            }
        }
    }
    out.truncate(MAX_ENDPOINTS);
    out
}

/// What else already owns an address (agents, configuration): never overridden.
pub struct Owners {
    /// Where the agents place the address, if anywhere.
    pub agent: Option<Location>,
    /// Whether the node has an agent that reported within the grace period.
    pub node_has_agent: bool,
}

impl ClusterFacts {
    /// The maps' sizes (`learned_nodes`, `deleted_nodes`, `api_endpoints`;
    /// fixed caps, nothing counted as dropped).
    pub fn stats(&self, out: &mut Vec<super::limits::MapStat>) {
        for (map, entries) in [
            ("learned_nodes", self.nodes.len()),
            ("deleted_nodes", self.deleted.len()),
            ("api_endpoints", self.api_endpoints.len()),
        ] {
            out.push(super::limits::MapStat {
                map,
                entries,
                dropped: Default::default(),
            });
        }
    }

    /// Learns from one (final-stage) event; returns what changed.
    pub fn learn(
        &mut self,
        ev: &AuditEvent,
        ttl: chrono::Duration,
        policy: &Policy,
        owners: &dyn Fn(IpAddr, &str) -> Owners,
    ) -> Vec<ClusterChange> {
        let t = ev.time();
        let mut out = Vec::new();
        if !ev.succeeded() {
            return out;
        }
        let res = ev.resource().unwrap_or("");
        if res == "nodes" && ev.verb == "delete" && ev.subresource().is_none() {
            if let Some(name) = ev.name() {
                self.nodes.remove(name);
                if self.deleted.len() >= MAX_NODES {
                    let oldest = self
                        .deleted
                        .iter()
                        .min_by_key(|(_, t)| **t)
                        .map(|(k, _)| k.clone());
                    if let Some(k) = oldest {
                        self.deleted.remove(&k);
                    }
                }
                self.deleted.insert(name.to_owned(), t);
                out.push(ClusterChange::Released {
                    node: name.to_owned(),
                    audit_id: ev.audit_id.clone(),
                    time_ms: t.timestamp_millis(),
                });
            }
            return out;
        }
        for (source, ip) in api_endpoint_addrs(ev) {
            if let Some((_, p)) = self.api_endpoints.iter_mut().find(|(a, _)| *a == ip) {
                p.last = t;
            } else if self.api_endpoints.len() < MAX_ENDPOINTS {
                self.api_endpoints.push((ip, prov(source, ev)));
            }
        }
        // A kubelet speaks for its node only with the node credential (user
        // `system:node:<name>` in group `system:nodes`), never impersonated.
        let writer_node = ev
            .user
            .username
            .strip_prefix("system:node:")
            .filter(|_| ev.user.groups.iter().any(|g| g == "system:nodes"))
            .filter(|_| ev.impersonated_user.is_none());
        let mut changed: Option<String> = None;
        // A Node object written (registration, status, podCIDR assignment).
        if res == "nodes"
            && matches!(ev.verb.as_str(), "create" | "update" | "patch")
            && let Some((uid, addrs, cidrs)) = node_object(ev)
            && let Some(name) = ev
                .name()
                .map(str::to_owned)
                .or_else(|| ev.object().and_then(|o| o.metadata.name))
        {
            'node: {
                // Only the node itself or the cloud node controller teaches a
                // node's addresses (node_writes.rs); anything else is ignored
                // and counted.
                let w = super::node_writes::writer(ev, &name);
                if !w.may_set_pod_cidrs() {
                    if !addrs.is_empty() || !cidrs.is_empty() {
                        self.refused += 1;
                    }
                    break 'node;
                }
                if ev.verb == "create" || self.replaced(&name, uid.as_deref()) {
                    self.reset(&name, uid.clone());
                    self.deleted.remove(&name);
                }
                // kube-controller-manager's own Node writes (pod range
                // assignment) echo the addresses: ignored below, not counted
                // (every other writer that gets here may set addresses).
                for (_, ip) in addrs.into_iter().filter(|_| w.may_set_addresses()) {
                    // A node may only vouch for internal addresses; public ones
                    // need the cloud node controller.
                    let by_self = w == super::node_writes::Writer::SelfNode;
                    if (is_internal(ip) || !by_self)
                        && self.may_own(&name, ip, policy, &owners(ip, &name))
                    {
                        self.add_addr(&name, ip, prov("Node status.addresses", ev), t);
                        changed = Some(name.clone());
                    }
                }
                if let Some(u) = &uid
                    && let Some(n) = self.nodes.get_mut(&name)
                    && n.uid.is_none()
                {
                    n.uid = Some(u.clone());
                }
                for c in cidrs {
                    let pol = policy;
                    let ok =
                        pol.pod_cidrs.is_empty() || pol.pod_cidrs.iter().any(|p| p.contains(&c));
                    if ok {
                        self.add_cidr(&name, c, prov("Node spec.podCIDRs", ev), t);
                        changed = Some(name.clone());
                    }
                }
            }
        }
        // A kubelet's own request: the address it comes from is its node's,
        // if the node has none yet (a new node) or is being registered.
        if let Some(name) = writer_node
            && let Some(ip) = ev.source_ip()
            && is_internal(ip)
        {
            let o = owners(ip, name);
            let known = self.addresses(name, t, ttl);
            let registering = res == "nodes" && ev.verb == "create";
            let first = known.is_empty() && !o.node_has_agent && !self.deleted.contains_key(name);
            if known.contains(&ip) {
                self.add_addr(name, ip, prov("kubelet request", ev), t);
                // A node alive at its address keeps its pod ranges (a
                // podCIDR is immutable once assigned).
                if let Some(n) = self.nodes.get_mut(name) {
                    for (_, p) in &mut n.pod_cidrs {
                        p.last = p.last.max(t);
                    }
                }
            } else if (first || registering) && self.may_own(name, ip, policy, &o) {
                if registering {
                    self.deleted.remove(name);
                }
                self.add_addr(name, ip, prov("kubelet request", ev), t);
                changed = Some(name.to_owned());
                // Its pod ranges (assigned by the node IPAM controller) live
                // with it, as above.
                if let Some(n) = self.nodes.get_mut(name) {
                    for (_, p) in &mut n.pod_cidrs {
                        p.last = p.last.max(t);
                    }
                }
            }
        }
        if let Some(n) = changed
            && let Some(v) = self.view(&n)
        {
            out.push(ClusterChange::Learned(v));
        }
        out
    }

    /// Node writes ignored since the last call (see `refused`).
    pub fn take_refused(&mut self) -> u64 {
        std::mem::take(&mut self.refused)
    }

    fn replaced(&self, name: &str, uid: Option<&str>) -> bool {
        match (self.nodes.get(name).and_then(|n| n.uid.as_deref()), uid) {
            (Some(old), Some(new)) => old != new,
            _ => false,
        }
    }

    fn reset(&mut self, name: &str, uid: Option<String>) {
        if self.nodes.len() >= MAX_NODES && !self.nodes.contains_key(name) {
            return;
        }
        self.nodes.insert(
            name.to_owned(),
            LearnedNode {
                uid,
                ..Default::default()
            },
        );
    }

    /// Whether `node` may be taught `ip`: policy and agents win.
    fn may_own(&self, node: &str, ip: IpAddr, p: &Policy, o: &Owners) -> bool {
        if p.pod_cidrs
            .iter()
            .chain(&p.service_cidrs)
            .any(|c| c.contains(&ip))
        {
            return false;
        }
        if !p.node_cidrs.is_empty() && !p.node_cidrs.iter().any(|c| c.contains(&ip)) {
            return false;
        }
        if let Some(l) = &o.agent
            && (l.node != node || l.pod_uid.is_some() || l.via != "node address")
        {
            return false;
        }
        // Not another learned node's address, nor inside a learned pod range.
        !self.nodes.iter().any(|(n, ln)| {
            (n != node && ln.addresses.iter().any(|(a, _)| *a == ip))
                || ln.pod_cidrs.iter().any(|(c, _)| c.contains(&ip))
        })
    }

    fn entry(&mut self, name: &str) -> Option<&mut LearnedNode> {
        if self.nodes.len() >= MAX_NODES && !self.nodes.contains_key(name) {
            return None;
        }
        Some(self.nodes.entry(name.to_owned()).or_default())
    }

    fn add_addr(&mut self, name: &str, ip: IpAddr, p: Provenance, t: DateTime<Utc>) {
        // An address belongs to one node: the newest claim wins.
        for (n, ln) in self.nodes.iter_mut() {
            if n != name {
                ln.addresses.retain(|(a, _)| *a != ip);
            }
        }
        let Some(n) = self.entry(name) else { return };
        match n.addresses.iter_mut().find(|(a, _)| *a == ip) {
            Some((_, old)) => old.last = t,
            None => {
                if n.addresses.len() >= MAX_ADDRS {
                    n.addresses.remove(0);
                }
                n.addresses.push((ip, p));
            }
        }
    }

    fn add_cidr(&mut self, name: &str, c: IpNet, p: Provenance, t: DateTime<Utc>) {
        let Some(n) = self.entry(name) else { return };
        match n.pod_cidrs.iter_mut().find(|(x, _)| *x == c) {
            Some((_, old)) => old.last = t,
            None => {
                if n.pod_cidrs.len() >= MAX_CIDRS {
                    n.pod_cidrs.remove(0);
                }
                n.pod_cidrs.push((c, p));
            }
        }
    }

    /// A node's learned addresses still fresh at `t`.
    pub fn addresses(&self, name: &str, t: DateTime<Utc>, ttl: chrono::Duration) -> Vec<IpAddr> {
        self.nodes.get(name).map_or_else(Vec::new, |n| {
            n.addresses
                .iter()
                .filter(|(_, p)| fresh(p, t, ttl))
                .map(|(a, _)| *a)
                .collect()
        })
    }

    /// Where the learned facts place `ip` at `t` (one pass, no allocation;
    /// the smallest node name wins a tie).
    pub fn resolve(&self, ip: IpAddr, t: DateTime<Utc>, ttl: chrono::Duration) -> Option<Location> {
        let mut by_addr: Option<&String> = None;
        let mut by_cidr: Option<&String> = None;
        for (n, ln) in &self.nodes {
            if ln
                .addresses
                .iter()
                .any(|(a, p)| *a == ip && fresh(p, t, ttl))
                && by_addr.is_none_or(|b| n < b)
            {
                by_addr = Some(n);
            }
            if ln
                .pod_cidrs
                .iter()
                .any(|(c, p)| c.contains(&ip) && fresh(p, t, ttl))
                && by_cidr.is_none_or(|b| n < b)
            {
                by_cidr = Some(n);
            }
        }
        let (node, via) = match (by_addr, by_cidr) {
            (Some(n), _) => (n, "node address (learned)"),
            (None, Some(n)) => (n, "node pod CIDR (learned)"),
            (None, None) => return None,
        };
        Some(Location {
            node: node.clone(),
            pod_uid: None,
            pod: None,
            via,
        })
    }

    /// Whether the agents' silence should be checked at `t` (once a minute of
    /// event time: the check walks every node).
    pub fn silence_check_due(&mut self, t: DateTime<Utc>) -> bool {
        if self
            .last_silence_check
            .is_some_and(|l| t < l + chrono::Duration::minutes(1))
        {
            return false;
        }
        self.last_silence_check = Some(t);
        true
    }

    /// Whether `ip` is a learned API-server endpoint (the control plane).
    pub fn is_api_endpoint(&self, ip: IpAddr, t: DateTime<Utc>, ttl: chrono::Duration) -> bool {
        self.api_endpoints
            .iter()
            .any(|(a, p)| *a == ip && fresh(p, t, ttl))
    }

    /// Forgets a node (deleted, or its agent gone past the grace period).
    pub fn release(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// One node as learned.
    pub fn view(&self, name: &str) -> Option<LearnedNodeView> {
        let n = self.nodes.get(name)?;
        Some(LearnedNodeView {
            node: name.to_owned(),
            uid: n.uid.clone(),
            addresses: n
                .addresses
                .iter()
                .map(|(a, p)| (a.to_string(), p.clone()))
                .collect(),
            pod_cidrs: n
                .pod_cidrs
                .iter()
                .map(|(c, p)| (c.to_string(), p.clone()))
                .collect(),
        })
    }

    /// Restores a stored node (its facts keep their times: expiry goes on).
    pub fn restore(&mut self, v: LearnedNodeView) {
        if self.nodes.len() >= MAX_NODES {
            return;
        }
        let n = LearnedNode {
            uid: v.uid,
            addresses: v
                .addresses
                .into_iter()
                .filter_map(|(a, p)| Some((a.parse().ok()?, p)))
                .take(MAX_ADDRS)
                .collect(),
            pod_cidrs: v
                .pod_cidrs
                .into_iter()
                .filter_map(|(c, p)| Some((c.parse().ok()?, p)))
                .take(MAX_CIDRS)
                .collect(),
        };
        self.nodes.insert(v.node, n);
    }

    /// Learned API endpoints, for the inventory.
    pub fn api_endpoints(&self) -> Vec<(String, Provenance)> {
        self.api_endpoints
            .iter()
            .map(|(a, p)| (a.to_string(), p.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(
        id: &str,
        at: i64,
        user: &str,
        ip: &str,
        verb: &str,
        res: &str,
        extra: Value,
    ) -> AuditEvent {
        let t = DateTime::from_timestamp(1_800_000_000 + at, 0).unwrap();
        // A kubelet's credential is in group system:nodes, as the API server reports it.
        let groups = if user.starts_with("system:node:") {
            json!(["system:nodes", "system:authenticated"])
        } else {
            json!(["system:authenticated"])
        };
        let mut v = json!({
            "level": "RequestResponse", "auditID": id, "stage": "ResponseComplete",
            "verb": verb, "user": {"username": user, "groups": groups}, "sourceIPs": [ip],
            "objectRef": {"resource": res},
            "responseStatus": {"code": 200}, "requestReceivedTimestamp": t.to_rfc3339(),
        });
        if let (Some(o), Some(x)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in x {
                o.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn node_obj(name: &str, uid: &str, addrs: &[(&str, &str)], cidr: Option<&str>) -> Value {
        let a: Vec<Value> = addrs
            .iter()
            .map(|(t, a)| json!({"type": t, "address": a}))
            .collect();
        json!({"objectRef": {"resource": "nodes", "name": name},
               "responseObject": {"kind": "Node", "metadata": {"name": name, "uid": uid},
                  "spec": cidr.map_or(json!({}), |c| json!({"podCIDRs": [c]})),
                  "status": {"addresses": a}}})
    }

    struct T {
        f: ClusterFacts,
        p: Policy,
        agent: Option<Location>,
    }

    impl T {
        fn new(policy: &str) -> Self {
            T {
                f: ClusterFacts::default(),
                p: Policy::from_yaml("t", policy).unwrap(),
                agent: None,
            }
        }
        fn learn(&mut self, e: &AuditEvent) -> Vec<ClusterChange> {
            let agent = self.agent.clone();
            let owners = move |_: IpAddr, _: &str| Owners {
                agent: agent.clone(),
                node_has_agent: false,
            };
            self.f
                .learn(e, chrono::Duration::hours(24), &self.p, &owners)
        }
        fn at(&self, ip: &str, at: i64) -> Option<String> {
            let t = DateTime::from_timestamp(1_800_000_000 + at, 0).unwrap();
            self.f
                .resolve(ip.parse().unwrap(), t, chrono::Duration::hours(24))
                .map(|l| format!("{} via {}", l.node, l.via))
        }
    }

    const NODE_Q: &str = "system:node:node-q";

    #[test]
    fn a_new_node_is_learned_from_its_kubelet_and_keeps_its_address() {
        let mut t = T::new("");
        t.learn(&ev(
            "1",
            0,
            NODE_Q,
            "10.0.1.90",
            "update",
            "leases",
            json!({}),
        ));
        assert_eq!(
            t.at("10.0.1.90", 1).as_deref(),
            Some("node-q via node address (learned)")
        );
        // The same credential elsewhere (stolen, used from another address) teaches nothing.
        t.learn(&ev("2", 5, NODE_Q, "10.0.2.7", "get", "secrets", json!({})));
        assert_eq!(t.at("10.0.2.7", 6), None);
        // Public sources never teach.
        t.learn(&ev(
            "3",
            5,
            "system:node:node-z",
            "203.0.113.8",
            "update",
            "leases",
            json!({}),
        ));
        assert_eq!(t.at("203.0.113.8", 6), None);
        // Learned facts expire...
        assert_eq!(t.at("10.0.1.90", 25 * 3600), None);
        // ...unless confirmed: a live kubelet keeps its address and pod ranges.
        let mut t = T::new("");
        t.learn(&ev(
            "4",
            0,
            "system:kube-controller-manager",
            "10.0.0.2",
            "patch",
            "nodes",
            node_obj(
                "node-q",
                "u1",
                &[("InternalIP", "10.0.1.90")],
                Some("10.244.7.0/24"),
            ),
        ));
        t.learn(&ev(
            "5",
            20 * 3600,
            NODE_Q,
            "10.0.1.90",
            "update",
            "leases",
            json!({}),
        ));
        assert!(
            t.at("10.244.7.9", 30 * 3600).is_some(),
            "pod range kept alive"
        );
        assert!(t.at("10.0.1.90", 30 * 3600).is_some());
    }

    #[test]
    fn policy_ranges_and_agents_win() {
        let mut t = T::new("cluster:\n  node_cidrs: [10.0.1.0/24]\n  pod_cidrs: [10.244.0.0/16]\n");
        t.learn(&ev(
            "1",
            0,
            NODE_Q,
            "10.244.3.9",
            "update",
            "leases",
            json!({}),
        ));
        assert_eq!(t.at("10.244.3.9", 1), None, "a pod address is not a node's");
        t.learn(&ev(
            "2",
            0,
            NODE_Q,
            "10.9.9.9",
            "update",
            "leases",
            json!({}),
        ));
        assert_eq!(
            t.at("10.9.9.9", 1),
            None,
            "outside the configured node ranges"
        );
        t.agent = Some(Location {
            node: "node-b".into(),
            pod_uid: None,
            pod: None,
            via: "node address",
        });
        t.learn(&ev(
            "3",
            0,
            NODE_Q,
            "10.0.1.12",
            "update",
            "leases",
            json!({}),
        ));
        assert_eq!(t.at("10.0.1.12", 1), None, "node-b's agent claims it");
        // A pod range outside the configured pod ranges is refused.
        t.agent = None;
        t.learn(&ev(
            "4",
            0,
            "system:kube-controller-manager",
            "10.0.0.2",
            "patch",
            "nodes",
            node_obj("node-q", "u1", &[], Some("192.168.50.0/24")),
        ));
        assert_eq!(t.at("192.168.50.7", 1), None);
    }

    #[test]
    fn node_objects_teach_addresses_and_ranges_and_a_new_uid_replaces_them() {
        let mut t = T::new("");
        let kcm = "system:kube-controller-manager";
        t.learn(&ev(
            "1",
            0,
            kcm,
            "10.0.0.2",
            "patch",
            "nodes",
            node_obj(
                "node-q",
                "u1",
                &[("InternalIP", "10.0.1.90")],
                Some("10.244.7.0/24"),
            ),
        ));
        assert_eq!(
            t.at("10.244.7.33", 1).as_deref(),
            Some("node-q via node pod CIDR (learned)")
        );
        // The kubelet may not vouch for a public address of its own.
        t.learn(&ev(
            "2",
            2,
            NODE_Q,
            "10.0.1.90",
            "patch",
            "nodes",
            node_obj("node-q", "u1", &[("ExternalIP", "198.51.100.4")], None),
        ));
        assert_eq!(t.at("198.51.100.4", 3), None);
        // The cloud node controller may.
        t.learn(&ev(
            "3",
            4,
            "system:serviceaccount:kube-system:cloud-node-controller",
            "10.0.0.2",
            "patch",
            "nodes",
            node_obj("node-q", "u1", &[("ExternalIP", "198.51.100.4")], None),
        ));
        assert!(t.at("198.51.100.4", 5).is_some());
        // Replacement: same name, new uid, new address.
        t.learn(&ev(
            "4",
            9,
            kcm,
            "10.0.0.2",
            "update",
            "nodes",
            node_obj("node-q", "u2", &[("InternalIP", "10.0.1.91")], None),
        ));
        assert_eq!(t.at("10.0.1.90", 10), None);
        assert_eq!(t.at("10.244.7.33", 10), None);
        // A controller's Node write teaches no address (node_writes.rs)...
        assert_eq!(t.at("10.0.1.91", 10), None);
        // ...the new node's own status does.
        t.learn(&ev(
            "5",
            11,
            NODE_Q,
            "10.0.1.91",
            "patch",
            "nodes",
            node_obj("node-q", "u2", &[("InternalIP", "10.0.1.91")], None),
        ));
        assert!(t.at("10.0.1.91", 12).is_some());
    }

    #[test]
    fn deletion_releases_and_the_deleted_credential_teaches_nothing_until_it_registers() {
        let mut t = T::new("");
        t.learn(&ev(
            "1",
            0,
            NODE_Q,
            "10.0.1.90",
            "update",
            "leases",
            json!({}),
        ));
        let mut del = ev(
            "2",
            5,
            "system:serviceaccount:kube-system:cluster-autoscaler",
            "10.0.0.2",
            "delete",
            "nodes",
            json!({}),
        );
        del.object_ref.as_mut().unwrap().name = Some("node-q".into());
        let ch = t.learn(&del);
        assert!(matches!(&ch[0], ClusterChange::Released { node, .. } if node == "node-q"));
        assert_eq!(t.at("10.0.1.90", 6), None);
        t.learn(&ev(
            "3",
            7,
            NODE_Q,
            "10.0.1.90",
            "get",
            "secrets",
            json!({}),
        ));
        assert_eq!(t.at("10.0.1.90", 8), None, "a deleted node's credential");
        // A new node reuses the address.
        t.learn(&ev(
            "4",
            9,
            "system:node:node-r",
            "10.0.1.90",
            "create",
            "nodes",
            json!({}),
        ));
        assert_eq!(
            t.at("10.0.1.90", 10).as_deref(),
            Some("node-r via node address (learned)")
        );
        // node-q re-registers elsewhere.
        t.learn(&ev(
            "5",
            11,
            NODE_Q,
            "10.0.1.95",
            "create",
            "nodes",
            json!({}),
        ));
        assert!(t.at("10.0.1.95", 12).is_some());
    }

    #[test]
    fn api_endpoints_come_from_the_kubernetes_endpointslice_only() {
        let mut t = T::new("");
        let mut e = ev(
            "1",
            0,
            "system:apiserver",
            "::1",
            "update",
            "endpointslices",
            json!({
            "objectRef": {"resource": "endpointslices", "namespace": "default", "name": "kubernetes"},
            "responseObject": {"kind": "EndpointSlice", "metadata": {"name": "kubernetes"},
                "endpoints": [{"addresses": ["10.0.0.2"]}]}}),
        );
        t.learn(&e);
        let now = DateTime::from_timestamp(1_800_000_001, 0).unwrap();
        let ttl = chrono::Duration::hours(24);
        assert!(t.f.is_api_endpoint("10.0.0.2".parse().unwrap(), now, ttl));
        e.object_ref.as_mut().unwrap().name = Some("evil".into());
        e.response_object = Some(crate::audit::RawObject::from_value(&json!({
            "kind": "EndpointSlice", "metadata": {"name": "evil"},
            "endpoints": [{"addresses": ["10.9.9.9"]}]})));
        t.learn(&e);
        assert!(!t.f.is_api_endpoint("10.9.9.9".parse().unwrap(), now, ttl));
    }

    #[test]
    fn internal_ranges_are_internal_and_everything_else_is_outside() {
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
            "::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(a.parse().unwrap()), "{a}");
        }
        for a in [
            "203.0.113.7",
            "198.51.100.1",
            "192.0.2.1",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2001:db8::1",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
    }
}

#[cfg(test)]
#[path = "cluster_more_tests.rs"]
mod more_tests;
