//! What agents saw: credential reads, API-server connections, node
//! addresses and pod addresses, held in memory for the join.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use credtrail_proto::model::{
    ApiConnect, CredentialIdentity, CredentialRead, NodeInfo, Observation, Workload,
};
use ipnet::IpNet;

use super::bounded::Bounded;
use super::changes::{CredentialReadRow, NodeNetRow};
use super::limits::{MapLimits, MapStat};
use super::read_lists::ReadLists;

/// Bound on connections kept per node.
const CONNECTS_PER_NODE: usize = 8192;
/// A node's connection queue keeps at most this much spare room once drained
/// (a burst must not pin its peak capacity for good).
const CONNECTS_SPARE: usize = 64;
/// Connections older than this (relative to the newest) are forgotten.
const CONNECT_HORIZON_MIN: i64 = 60;

/// A process (or the start-up scan) read a credential on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSighting {
    pub node: String,
    /// 0 for the start-up scan.
    pub tgid: u32,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    /// `namespace/name`.
    pub pod: Option<String>,
    pub path: String,
    pub time: DateTime<Utc>,
    pub observation_id: String,
    /// The token's `exp` (service-account tokens that carry one): the read
    /// is forgotten [`super::limits::READ_EXPIRY_GRACE`] after it. `None`
    /// (legacy Secret tokens, kubeconfigs, certificates, files): the age
    /// limit only.
    pub expires: Option<DateTime<Utc>>,
}

/// A process connected to the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSighting {
    pub node: String,
    pub time: DateTime<Utc>,
    pub local_ip: Option<IpAddr>,
    pub tgid: u32,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
    pub pod: Option<String>,
    pub observation_id: String,
}

/// What an address belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub node: String,
    pub pod_uid: Option<String>,
    pub pod: Option<String>,
    /// `node address`, `pod address`, `node pod CIDR`.
    pub via: &'static str,
}

#[derive(Debug, Clone, Default)]
struct NodeNet {
    pod_cidrs: Vec<IpNet>,
    /// The agent's latest observation (None: restored, not heard from since).
    last: Option<DateTime<Utc>>,
}

/// Agents' view of the cluster; every map [`Bounded`] by count and age.
///
/// One read sighting is shared (`Arc`) by its credential's and its user's
/// lists and by every judged event that cites it, never copied.
#[derive(Debug)]
pub struct Sightings {
    by_key: ReadLists,
    by_user: ReadLists,
    connects: Bounded<String, VecDeque<ConnectSighting>>,
    /// Connection sightings held across all nodes (at most `max_connects`:
    /// the oldest node's oldest go first).
    connects_total: usize,
    max_connects: usize,
    nodes: Bounded<String, NodeNet>,
    node_ips: Bounded<IpAddr, String>,
    pod_ips: Bounded<IpAddr, Location>,
    /// Processes (node, tgid) and containers (node, id) that read any credential.
    reader_procs: Bounded<(String, u32), ()>,
    reader_ctrs: Bounded<(String, String), ()>,
    /// Pod CIDR → node, for [`Sightings::resolve`] without a pass over `nodes`.
    cidrs: super::cidr_index::CidrIndex,
}

impl Default for Sightings {
    fn default() -> Self {
        Self::with_limits(&MapLimits::default())
    }
}

fn pod_of(w: Option<&Workload>) -> (Option<String>, Option<String>, Option<String>) {
    match w {
        Some(w) => (
            w.container_id.clone(),
            w.pod_uid.clone(),
            match (&w.pod_namespace, &w.pod_name) {
                (Some(ns), Some(n)) => Some(format!("{ns}/{n}")),
                _ => None,
            },
        ),
        None => (None, None, None),
    }
}

/// Identities (usernames) a credential carries: token subject, certificate CN.
pub fn credential_usernames(c: &CredentialIdentity) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(u) = c
        .token
        .as_ref()
        .and_then(|t| t.claims.as_ref())
        .and_then(|c| c.username())
    {
        out.push(u);
    }
    if let Some(cn) = c.certificate.as_ref().and_then(|c| c.subject_cn.clone()) {
        out.push(cn);
    }
    if let Some(k) = &c.kubeconfig {
        for u in &k.users {
            if let Some(cn) = u
                .client_certificate
                .as_ref()
                .and_then(|c| c.subject_cn.clone())
            {
                out.push(cn);
            }
            if let Some(n) = u
                .token
                .as_ref()
                .and_then(|t| t.claims.as_ref())
                .and_then(|c| c.username())
            {
                out.push(n);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Inventory keys of a credential: its credential-ids, else its fingerprint.
pub fn credential_keys(c: &CredentialIdentity) -> Vec<String> {
    let mut keys = c.credential_ids();
    if keys.is_empty()
        && let Some(fp) = c.token.as_ref().map(|t| &t.sha256).or(c.sha256.as_ref())
    {
        keys.push(format!("sha256:{fp}"));
    }
    keys
}

/// When a read of this credential stops mattering: a service-account
/// token's `exp`. Legacy Secret tokens (no `exp`), kubeconfigs (their users'
/// tokens included), certificates and other files: never (age limit only).
fn token_expiry(c: &CredentialIdentity) -> Option<DateTime<Utc>> {
    if c.kind != credtrail_proto::model::CredentialKind::ServiceAccountToken {
        return None;
    }
    let exp = c.token.as_ref()?.claims.as_ref()?.exp?;
    DateTime::from_timestamp(exp, 0)
}

impl Sightings {
    pub fn with_limits(l: &MapLimits) -> Self {
        Self {
            by_key: ReadLists::new(l.reads_by_key),
            by_user: ReadLists::new(l.reads_by_user),
            connects: Bounded::new(l.connects),
            connects_total: 0,
            max_connects: l.connect_sightings.max(1),
            nodes: Bounded::new(l.nodes),
            node_ips: Bounded::new(l.node_ips),
            pod_ips: Bounded::new(l.pod_ips),
            reader_procs: Bounded::new(l.reader_procs),
            reader_ctrs: Bounded::new(l.reader_ctrs),
            cidrs: Default::default(),
        }
    }

    /// Moves every map's clock to `t` and expires what is too old.
    pub fn advance(&mut self, t: DateTime<Utc>) {
        self.advance_with(t, |_, _| {});
    }

    /// [`Sightings::advance`], handing `gone` each credential key whose
    /// reads expired with their token, and when (ms: `exp` plus the grace).
    pub fn advance_with(&mut self, t: DateTime<Utc>, gone: impl FnMut(&str, i64)) {
        let t = super::limits::clock(t);
        self.by_key.map.advance(t);
        self.by_key.expire(gone);
        self.by_user.map.advance(t);
        self.by_user.expire(|_, _| {});
        let total = &mut self.connects_total;
        self.connects
            .advance_with(t, |_, q| *total -= q.len().min(*total));
        self.nodes.advance(t);
        self.node_ips.advance(t);
        self.pod_ips.advance(t);
        self.reader_procs.advance(t);
        self.reader_ctrs.advance(t);
    }

    /// Each map's size and what its bounds removed since the last call.
    pub fn state_stats(&mut self, out: &mut Vec<MapStat>) {
        use super::stat;
        out.extend([
            stat("reads_by_key", &mut self.by_key.map),
            stat("reads_by_user", &mut self.by_user.map),
            stat("connects", &mut self.connects),
            MapStat {
                map: "connect_sightings",
                entries: self.connects_total,
                dropped: super::bounded::Dropped::default(),
            },
            stat("nodes", &mut self.nodes),
            stat("node_ips", &mut self.node_ips),
            stat("pod_ips", &mut self.pod_ips),
            stat("reader_procs", &mut self.reader_procs),
            stat("reader_ctrs", &mut self.reader_ctrs),
        ]);
    }

    /// Takes in one observation; returns inventory rows to store.
    pub fn observe(
        &mut self,
        obs: &Observation,
        reads: &mut Vec<CredentialReadRow>,
        nets: &mut Vec<NodeNetRow>,
    ) {
        use credtrail_proto::model::ObservationEvent as E;
        self.advance(obs.time);
        if let Some(n) = self.nodes.get_mut(&obs.node) {
            n.last = Some(n.last.map_or(obs.time, |l| l.max(obs.time)));
        }
        match &obs.event {
            E::NodeInfo(n) => nets.push(self.node_info(&obs.node, n, obs.time)),
            E::CredentialRead(r) => self.read(obs, r, reads),
            E::ApiConnect(c) => self.connect(obs, c),
            E::Loss(_) => {}
        }
    }

    fn node_info(&mut self, node: &str, n: &NodeInfo, time: DateTime<Utc>) -> NodeNetRow {
        // An agent speaks for its own node only: the observation's node (the
        // stream checked it against the client certificate), never `n.name`.
        let name = node;
        let pod_cidrs = n.pod_cidrs.iter().filter_map(|c| c.parse().ok()).collect();
        self.set_node(name, n.addresses.clone(), pod_cidrs);
        if let Some(x) = self.nodes.get_mut(name) {
            x.last = Some(time);
        }
        NodeNetRow {
            node: name.to_owned(),
            addresses: n.addresses.iter().map(ToString::to_string).collect(),
            pod_cidrs: n.pod_cidrs.clone(),
            time_ms: time.timestamp_millis(),
        }
    }

    /// Records a node's addresses and pod CIDRs (also used when restoring).
    /// A node's new report replaces its old addresses (node replacement).
    pub fn set_node(&mut self, node: &str, addresses: Vec<IpAddr>, pod_cidrs: Vec<IpNet>) {
        self.node_ips
            .retain(|ip, n| n != node || addresses.contains(ip));
        for a in &addresses {
            self.node_ips.insert(*a, node.to_owned());
            self.pod_ips.remove(a);
        }
        let last = self.nodes.get(node).and_then(|n| n.last);
        for c in &pod_cidrs {
            self.cidrs.insert(*c, node);
        }
        self.nodes
            .insert(node.to_owned(), NodeNet { pod_cidrs, last });
        if self.cidrs.stale() {
            let nodes = &self.nodes;
            self.cidrs.rebuild(
                nodes
                    .iter()
                    .flat_map(|(n, v)| v.pod_cidrs.iter().map(move |c| (c, n.as_str()))),
            );
        }
    }

    /// Forgets where a node is (deleted, or gone past the grace period): its
    /// addresses, pod addresses and pod ranges are released. Reads stay (they
    /// are history, and name the process if the credential turns up again).
    pub fn remove_node(&mut self, node: &str) {
        self.node_ips.retain(|_, n| n != node);
        self.pod_ips.retain(|_, l| l.node != node);
        self.nodes.remove(node);
        if let Some(q) = self.connects.remove(node) {
            self.connects_total -= q.len().min(self.connects_total);
        }
    }

    /// Whether `node`'s agent reported within `grace` of `t` (a restored node
    /// counts until it is heard from or released).
    pub fn has_agent(&self, node: &str, t: DateTime<Utc>, grace: Duration) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.last.is_none_or(|l| t <= l + grace))
    }

    /// Nodes whose agent has been silent longer than `grace` at `t`.
    pub fn silent_nodes(&self, t: DateTime<Utc>, grace: Duration) -> Vec<String> {
        let mut v: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.last.is_some_and(|l| t > l + grace))
            .map(|(k, _)| k.clone())
            .collect();
        v.sort();
        v
    }

    fn read(&mut self, obs: &Observation, r: &CredentialRead, rows: &mut Vec<CredentialReadRow>) {
        let (container_id, pod_uid, pod) = pod_of(r.workload.as_ref());
        let p = r.process.as_ref();
        let s = Arc::new(ReadSighting {
            node: obs.node.clone(),
            tgid: p.map_or(0, |p| p.tgid),
            comm: p.map(|p| p.comm.clone()),
            exe: p.and_then(|p| p.exe.clone()),
            container_id,
            pod_uid,
            pod,
            path: r.path.clone(),
            time: obs.time,
            observation_id: obs.id.clone(),
            expires: token_expiry(&r.credential),
        });
        let users = credential_usernames(&r.credential);
        let keys = credential_keys(&r.credential);
        let fingerprint = r
            .credential
            .token
            .as_ref()
            .map(|t| t.sha256.clone())
            .or_else(|| r.credential.sha256.clone());
        let kind = serde_json::to_value(r.credential.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        self.note_reader(&s);
        let w = r.workload.as_ref();
        for key in &keys {
            rows.push(CredentialReadRow {
                key: key.clone(),
                kind: kind.clone(),
                username: users.first().cloned(),
                fingerprint: fingerprint.clone(),
                node: s.node.clone(),
                pod_namespace: w.and_then(|w| w.pod_namespace.clone()),
                pod_name: w.and_then(|w| w.pod_name.clone()),
                pod_uid: s.pod_uid.clone(),
                container_id: s.container_id.clone(),
                tgid: s.tgid,
                comm: s.comm.clone(),
                exe: s.exe.clone(),
                path: s.path.clone(),
                time_ms: obs.time.timestamp_millis(),
                reads: r.reads.max(1),
                observation_id: obs.id.clone(),
                expires_ms: s.expires.map(|e| e.timestamp_millis()),
            });
            self.by_key.add(key, s.clone());
        }
        for u in users {
            self.by_user.add(&u, s.clone());
        }
    }

    fn note_reader(&mut self, s: &ReadSighting) {
        if s.tgid != 0 {
            self.reader_procs.insert((s.node.clone(), s.tgid), ());
        }
        if let Some(c) = &s.container_id {
            self.reader_ctrs.insert((s.node.clone(), c.clone()), ());
        }
    }

    /// Whether this connecting process (or its container) read any credential:
    /// then it presumably used its own.
    pub fn read_any(&self, c: &ConnectSighting) -> bool {
        (c.tgid != 0 && self.reader_procs.contains_key(&(c.node.clone(), c.tgid)))
            || c.container_id
                .as_ref()
                .is_some_and(|id| self.reader_ctrs.contains_key(&(c.node.clone(), id.clone())))
    }

    /// Restores one stored read sighting.
    pub fn restore_read(&mut self, key: String, username: Option<String>, s: ReadSighting) {
        let s = Arc::new(s);
        self.note_reader(&s);
        if let Some(u) = username {
            self.by_user.add(&u, s.clone());
        }
        self.by_key.add(&key, s);
    }

    fn connect(&mut self, obs: &Observation, c: &ApiConnect) {
        let (container_id, pod_uid, pod) = pod_of(c.workload.as_ref());
        let socket_ip = c.local.map(|a| a.ip());
        // What the API server sees: the NAT'd source when the agent found one.
        let local_ip = c.translated.map(|a| a.ip()).or(socket_ip);
        if let Some(ip) = socket_ip {
            // A hostNetwork pod connects from its node's address: that stays a node address.
            if pod_uid.is_some() && !self.node_ips.contains_key(&ip) {
                self.pod_ips.insert(
                    ip,
                    Location {
                        node: obs.node.clone(),
                        pod_uid: pod_uid.clone(),
                        pod: pod.clone(),
                        via: "pod address",
                    },
                );
            } else if pod_uid.is_none() {
                // Only host processes connect from a node address.
                self.pod_ips.remove(&ip);
                self.node_ips.entry(ip).or_insert_with(|| obs.node.clone());
            }
        }
        let p = c.process.as_ref();
        if !self.connects.contains_key(&obs.node) {
            let total = &mut self.connects_total;
            self.connects
                .make_room_with(|_, q| *total -= q.len().min(*total));
        }
        let q = self.connects.entry(obs.node.clone()).or_default();
        let before = q.len();
        q.push_back(ConnectSighting {
            node: obs.node.clone(),
            time: obs.time,
            local_ip,
            tgid: p.map_or(0, |p| p.tgid),
            comm: p.map(|p| p.comm.clone()),
            exe: p.and_then(|p| p.exe.clone()),
            container_id,
            pod_uid,
            pod,
            observation_id: obs.id.clone(),
        });
        // Checked: times are validated upstream, but no input may panic here.
        let horizon = obs
            .time
            .checked_sub_signed(Duration::minutes(CONNECT_HORIZON_MIN))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        // Ends on an empty queue whatever the condition says.
        while q
            .front()
            .is_some_and(|f| q.len() > CONNECTS_PER_NODE || f.time < horizon)
        {
            q.pop_front();
        }
        if q.capacity() > q.len().max(CONNECTS_SPARE) * 4 {
            q.shrink_to(q.len() * 2);
        }
        self.connects_total = (self.connects_total + q.len()).saturating_sub(before);
        self.bound_connects();
    }

    /// Keeps the connection sightings of all nodes within `max_connects`,
    /// dropping the oldest of the least recently reporting node (amortized
    /// O(1): each sighting leaves once).
    fn bound_connects(&mut self) {
        while self.connects_total > self.max_connects {
            let Some((_, q)) = self.connects.front_mut() else {
                self.connects_total = 0;
                return;
            };
            if q.pop_front().is_some() {
                self.connects_total -= 1;
                self.connects.count_cap_dropped(1);
            } else {
                self.connects.pop_front();
            }
        }
    }

    /// Where an address is, as far as the agents know.
    pub fn resolve(&self, ip: IpAddr) -> Option<Location> {
        if let Some(n) = self.node_ips.get(&ip) {
            return Some(Location {
                node: n.clone(),
                pod_uid: None,
                pod: None,
                via: "node address",
            });
        }
        if let Some(l) = self.pod_ips.get(&ip) {
            return Some(l.clone());
        }
        let holds = |n: &str| {
            self.nodes
                .get(n)
                .is_some_and(|v| v.pod_cidrs.iter().any(|c| c.contains(&ip)))
        };
        self.cidrs.lookup(ip, holds).map(|n| Location {
            node: n.clone(),
            pod_uid: None,
            pod: None,
            via: "node pod CIDR",
        })
    }

    /// Whether any agent has reported in.
    pub fn knows_cluster(&self) -> bool {
        !self.nodes.is_empty() || !self.node_ips.is_empty()
    }

    /// Reads of a credential, by credential-id / fingerprint key.
    pub fn reads_by_key(&self, key: &str) -> &[Arc<ReadSighting>] {
        self.by_key.get(key)
    }

    /// Reads of any credential carrying this identity.
    pub fn reads_by_user(&self, username: &str) -> &[Arc<ReadSighting>] {
        self.by_user.get(username)
    }

    /// Connections on `node` from `ip` (when the agent knew the local address)
    /// within `[t - before, t + 2s]`, oldest first.
    pub fn connects_near(
        &self,
        node: &str,
        ip: IpAddr,
        t: DateTime<Utc>,
        before: Duration,
    ) -> Vec<&ConnectSighting> {
        let lo = t
            .checked_sub_signed(before)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let hi = t
            .checked_add_signed(Duration::seconds(2))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.connects.get(node).map_or_else(Vec::new, |q| {
            q.iter()
                .filter(|c| c.time >= lo && c.time <= hi)
                .filter(|c| c.local_ip.is_none_or(|l| l == ip))
                .collect()
        })
    }
}

#[cfg(test)]
#[path = "sightings_tests.rs"]
mod tests;
