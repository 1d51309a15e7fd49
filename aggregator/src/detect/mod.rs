//! Detection: AN1547 (credential used off its node) and AN1579
//! (high-privilege grant), with tuning (learning window, maintenance windows,
//! approved automation, suppressions).
//!
//! The [`Detector`] is synchronous and holds its state in memory; the
//! pipeline persists the [`Changes`] it reports and restores the state at
//! start ([`Detector::restore`]).

pub mod activity;
mod alerts;
mod an1547;
mod an1579;
mod an1579_roles;
pub mod bounded;
mod builtin;
pub mod changes;
mod cidr_index;
pub mod cluster;
mod effective;
mod expect;
#[cfg(test)]
#[path = "expiry_tests.rs"]
mod expiry_tests;
#[cfg(test)]
#[path = "judge_tests.rs"]
mod judge_tests;
pub mod limits;
#[cfg(test)]
mod limits_tests;
pub mod lineage;
mod mint;
#[cfg(test)]
#[path = "node_write_tests.rs"]
mod node_write_tests;
mod node_writes;
pub mod patch;
pub mod rbac;
mod read_lists;
mod reload;
#[cfg(test)]
#[path = "restore_tests.rs"]
mod restore_tests;
pub mod rules;
pub mod sightings;
mod suppress;
#[cfg(test)]
mod testkit;

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use credtrail_proto::model::Observation;

use crate::alert::Alert;
use crate::audit::{AuditEvent, PolicyRule, RoleRef, Subject};
use crate::policy::{Policy, Suppression};
use crate::store::LoadedState;
use bounded::Bounded;
pub use changes::Changes;
use limits::{MapLimits, MapStat};
pub use rules::{RULES, RuleDef};
pub use suppress::{alert_node, suppressed_by};

/// A role as the detector knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RoleEntry {
    rules: Vec<PolicyRule>,
    reasons: Vec<String>,
}

/// A binding as the detector knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BindingEntry {
    role_ref: Option<RoleRef>,
    subjects: Vec<Subject>,
}

/// `(kind, namespace, name)`.
type ObjKey = (String, String, String);

/// A place a JTI was used from.
#[derive(Debug, Clone)]
struct Place {
    place: String,
    ip: IpAddr,
    last: DateTime<Utc>,
    audit_id: String,
}

/// The places one JTI was used from: almost always one, so the list starts
/// with room for one (a `Vec`'s first push would make room for four).
#[derive(Debug, Clone)]
struct Places(Vec<Place>);

impl Default for Places {
    fn default() -> Self {
        Self(Vec::with_capacity(1))
    }
}

impl std::ops::Deref for Places {
    type Target = Vec<Place>;
    fn deref(&self) -> &Vec<Place> {
        &self.0
    }
}

impl std::ops::DerefMut for Places {
    fn deref_mut(&mut self) -> &mut Vec<Place> {
        &mut self.0
    }
}

/// When an identity was first seen, and when its last sighting was last
/// written to the store (`identities.last_seen_ms`, at most every
/// [`limits::IDENTITY_NOTE_INTERVAL`]: retention and the capped start-up
/// load go by it).
#[derive(Debug, Clone, Copy)]
struct IdentitySeen {
    first: DateTime<Utc>,
    noted: DateTime<Utc>,
}

/// The detection engine. Every map is [`Bounded`] by count and age
/// ([`MapLimits`], from the policy's `detection.state`).
pub struct Detector {
    policy: Arc<Policy>,
    limits: MapLimits,
    sight: sightings::Sightings,
    roles: Bounded<ObjKey, RoleEntry>,
    bindings: Bounded<ObjKey, BindingEntry>,
    /// username -> source IP -> learned inside the learning window.
    baselines: Bounded<String, Bounded<IpAddr, bool>>,
    identities: Bounded<String, IdentitySeen>,
    jti_places: Bounded<String, Places>,
    suppressions: Vec<Suppression>,
    /// What the audit stream taught about the cluster.
    cluster: cluster::ClusterFacts,
    /// Who minted which token; incidents linking alerts.
    lineage: lineage::Lineage,
    /// AN1547 alerts' activity from their source; repeats folded in.
    activity: activity::Activity,
}

impl Detector {
    pub fn new(policy: Arc<Policy>) -> Self {
        let lim = MapLimits::from_policy(&policy);
        let mut d = Self {
            policy: policy.clone(),
            limits: lim,
            sight: sightings::Sightings::with_limits(&lim),
            roles: Bounded::new(lim.roles),
            bindings: Bounded::new(lim.bindings),
            baselines: Bounded::new(lim.baselines),
            identities: Bounded::new(lim.identities),
            jti_places: Bounded::new(lim.jti_places),
            suppressions: policy.suppressions.clone(),
            cluster: cluster::ClusterFacts::default(),
            lineage: lineage::Lineage::default(),
            activity: activity::Activity::default(),
        };
        for r in &policy.roles {
            d.roles.insert(
                (r.kind.clone(), r.namespace.clone(), r.name.clone()),
                RoleEntry {
                    reasons: rbac::high_privilege_reasons(&r.rules),
                    rules: r.rules.clone(),
                },
            );
        }
        d
    }

    /// Restores state persisted by earlier runs.
    pub fn restore(&mut self, s: LoadedState) {
        for (node, addrs, cidrs, at) in s.nodes {
            self.sight.advance(at);
            self.sight.set_node(&node, addrs, cidrs);
        }
        for (key, user, r) in s.reads {
            self.sight.advance(r.time);
            self.sight.restore_read(key, user, r);
        }
        let mut scratch = Changes::default();
        for o in &s.recent_connects {
            self.sight
                .observe(o, &mut scratch.credential_reads, &mut scratch.node_network);
        }
        for r in s.roles {
            // Stored rows (learned from audit events, or the policy's copy when
            // nothing was learned) replace what `new` took from the policy.
            self.roles.insert(
                (r.kind, r.namespace, r.name),
                RoleEntry {
                    rules: r.rules,
                    reasons: r.reasons,
                },
            );
        }
        for b in s.bindings {
            self.bindings.insert(
                (b.kind, b.namespace, b.name),
                BindingEntry {
                    role_ref: b
                        .role_kind
                        .zip(b.role_name)
                        .map(|(kind, name)| RoleRef { kind, name }),
                    subjects: b.subjects,
                },
            );
        }
        let ips = self.limits.baseline_ips;
        for (user, ip, learned, at) in s.baselines {
            self.baselines.advance(at);
            self.baselines
                .entry(user)
                .or_insert_with(|| Bounded::new(ips))
                .insert(ip, learned);
        }
        for (user, first, at) in s.identities {
            self.identities.advance(at);
            self.identities
                .insert(user, IdentitySeen { first, noted: at });
        }
        if !s.suppressions.is_empty() {
            self.suppressions = s.suppressions;
        }
    }

    /// Restores lineage and learned nodes persisted by earlier runs.
    pub fn restore_learned(&mut self, l: crate::store::learned::LoadedLearned) {
        for m in l.minted {
            self.lineage.record(m);
        }
        for n in l.nodes {
            self.cluster.restore(n);
        }
    }

    /// Takes back open alerts' activity persisted by an earlier run.
    pub fn restore_activity(&mut self, rows: Vec<activity::AlertActivity>) {
        self.activity.restore(rows);
    }

    /// Forgets one baseline source of `user` (after review): the next use
    /// from there is judged as new.
    pub fn drop_baseline(&mut self, user: &str, ip: IpAddr) -> bool {
        let Some(b) = self.baselines.get_mut(user) else {
            return false;
        };
        let had = b.remove(&ip).is_some();
        if b.is_empty() {
            self.baselines.remove(user);
        }
        had
    }

    /// Replaces the suppressions (policy + API-created).
    pub fn set_suppressions(&mut self, s: Vec<Suppression>) {
        self.suppressions = s;
    }

    /// Users of these events whose state the detector does not hold (never
    /// loaded, or let go by a bound): the pipeline loads them from the store
    /// ([`Detector::restore_identities`]) before judging, so an identity
    /// coming back keeps its first sighting and baseline.
    pub fn missing_identities<'a>(
        &self,
        events: impl Iterator<Item = &'a AuditEvent>,
    ) -> Vec<String> {
        let mut out: Vec<String> = events
            .filter(|e| e.stage.is_final())
            .map(|e| e.user.username.as_str())
            .filter(|u| !u.is_empty() && !self.identities.contains_key(*u))
            .map(str::to_owned)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Takes back identities' stored state (see [`Detector::missing_identities`]).
    pub fn restore_identities(&mut self, ids: Vec<crate::store::StoredIdentity>) {
        let ips = self.limits.baseline_ips;
        for id in ids {
            if !id.baselines.is_empty() {
                let b = self
                    .baselines
                    .entry(id.username.clone())
                    .or_insert_with(|| Bounded::new(ips));
                for (ip, learned) in id.baselines {
                    let e = b.entry(ip).or_insert(learned);
                    *e |= learned;
                }
            }
            self.identities.insert(
                id.username,
                IdentitySeen {
                    first: id.first,
                    noted: id.last,
                },
            );
        }
    }

    /// Moves every map's clock to `t` (an event's time, never past the wall
    /// clock's near future) and expires what its age limit forgets.
    fn advance(&mut self, t: DateTime<Utc>) {
        let t = limits::clock(t);
        self.roles.advance(t);
        self.bindings.advance(t);
        self.baselines.advance(t);
        self.identities.advance(t);
        self.jti_places.advance(t);
        // A token past its `exp` (and the grace) is refused by the API
        // server: its reads and the places its JTI was used can go. Only
        // when no place was used after that: claims are not verified on the
        // node, and a planted file naming a victim's JTI with an `exp` long
        // past must not wipe the places of the real token (CT1547-003).
        let jti = &mut self.jti_places;
        self.sight.advance_with(t, |key, at| {
            if jti
                .get(key)
                .is_some_and(|p| p.iter().all(|p| p.last.timestamp_millis() <= at))
            {
                jti.remove(key);
                jti.count_expired(1);
            }
        });
        self.activity.advance(t);
    }

    /// Each map's size, and what its bounds removed since the last call.
    pub fn state_stats(&mut self) -> Vec<MapStat> {
        let mut out = vec![
            stat("roles", &mut self.roles),
            stat("bindings", &mut self.bindings),
            stat("baselines", &mut self.baselines),
            stat("identities", &mut self.identities),
            stat("jti_places", &mut self.jti_places),
        ];
        self.sight.state_stats(&mut out);
        self.activity.stats(&mut out);
        self.cluster.stats(&mut out);
        self.lineage.stats(&mut out);
        out
    }

    /// Takes in one agent observation.
    pub fn observe(&mut self, obs: &Observation, ch: &mut Changes) {
        self.sight
            .observe(obs, &mut ch.credential_reads, &mut ch.node_network);
    }

    /// Learns cluster facts from `ev` (before judging it: a registering node
    /// is a new node, not another one); releases deleted and silent nodes.
    fn learn_cluster(&mut self, ev: &AuditEvent, ch: &mut Changes) {
        let t = ev.time();
        let (ttl, grace) = (self.policy.learned_ttl, self.policy.node_grace);
        let silent = if self.cluster.silence_check_due(t) {
            self.sight.silent_nodes(t, grace)
        } else {
            Vec::new()
        };
        for n in silent {
            self.sight.remove_node(&n);
            ch.cluster.push(cluster::ClusterChange::Released {
                node: n,
                audit_id: String::new(),
                time_ms: t.timestamp_millis(),
            });
        }
        let sight = &self.sight;
        let owners = |ip: IpAddr, node: &str| cluster::Owners {
            agent: sight.resolve(ip),
            node_has_agent: sight.has_agent(node, t, grace),
        };
        let changes = self.cluster.learn(ev, ttl, &self.policy, &owners);
        for c in &changes {
            if let cluster::ClusterChange::Released { node, .. } = c {
                self.sight.remove_node(node);
            }
        }
        ch.cluster.extend(changes);
    }

    /// `CT1547-006`: a Node's addresses written by an identity that is not
    /// that node nor a Kubernetes component, when the write carries an
    /// address (in its request body) not already known for the node
    /// (node-problem-detector's condition patches carry none; a full
    /// status repeating the node's addresses is not alerted; neither
    /// teaches anything).
    fn judge_node_write(&mut self, ev: &AuditEvent, out: &mut Vec<Alert>) {
        let Some(node) = node_writes::addressed_node(ev) else {
            return;
        };
        let w = node_writes::writer(ev, &node);
        if w != node_writes::Writer::Other {
            return;
        }
        let t = ev.time();
        let known = self.cluster.addresses(&node, t, self.policy.learned_ttl);
        let new = node_writes::requested_addresses(ev).into_iter().any(|ip| {
            !known.contains(&ip) && self.sight.resolve(ip).is_none_or(|l| l.node != node)
        });
        // A write whose body the audit level hides (Metadata) teaches
        // nothing, so it cannot launder a source either.
        if new && let Some(a) = node_writes::judge(ev, &node, w) {
            out.push(a);
        }
    }

    /// Judges one (new) audit event; returns its alerts, suppressed ones
    /// marked (see [`suppressed_by`]).
    pub fn judge(&mut self, ev: &AuditEvent, ch: &mut Changes) -> Vec<Alert> {
        let mut out = Vec::new();
        self.advance(ev.time());
        if ev.stage.is_final() {
            self.judge_node_write(ev, &mut out);
            self.learn_cluster(ev, ch);
            ch.node_writes_refused += self.cluster.take_refused();
            self.judge_rbac(ev, ch, &mut out);
            for a in out.iter_mut().filter(|a| a.analytic == "AN1579") {
                if a.details.is_object() {
                    self.add_effective_permissions(a);
                }
            }
            let class = self.judge_credential(ev, ch, &mut out);
            let minted = self.judge_mint(ev, &mut out);
            let key = ev
                .credential_id()
                .map_or_else(|| format!("user:{}", ev.user.username), str::to_owned);
            for a in &mut out {
                self.apply_suppression(a, ch);
            }
            // After suppression (a repeat folds only into an alert silenced
            // the same way: a window's end raises anew), before incidents (a
            // folded repeat is no alert of its own).
            if let (Some(class), Some(ip)) = (class, ev.source_ip()) {
                use crate::alert::SourceClass as C;
                let remember = matches!(class, C::OtherNode | C::OtherPod | C::Outside);
                self.activity
                    .on_request(ev, &key, ip, remember, &mut out, &mut ch.activity);
            }
            for a in out.iter_mut().filter(|a| a.analytic == "AN1547") {
                self.lineage.join(&key, a);
            }
            if let Some(m) = minted {
                ch.minted.push(m.clone());
                self.lineage.record(m);
            }
            return out;
        }
        for a in &mut out {
            self.apply_suppression(a, ch);
        }
        out
    }
}

pub(crate) fn stat<K: std::hash::Hash + Eq, V>(
    map: &'static str,
    m: &mut Bounded<K, V>,
) -> MapStat {
    MapStat {
        map,
        entries: m.len(),
        dropped: m.take_dropped(),
    }
}
