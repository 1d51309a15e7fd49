//! Token lineage and incidents.
//!
//! Every TokenRequest (`create` on `serviceaccounts/token`) that names the
//! minted token (`authentication.kubernetes.io/issued-credential-id`
//! annotation, `JTI=<uuid>`, Kubernetes 1.29+) is recorded: who minted which
//! JTI, from where, bound to what, for how long. A token minted by anyone but
//! a kubelet carries its minter's expectations; one minted by a credential
//! that already raised an alert inherits that alert's incident.
//!
//! Incidents link the alerts of one chain (read on a node → used from outside
//! → new token minted → used): each AN1547 alert about a credential joins the
//! incident of that credential, else of the credential that minted it, else
//! opens one named by its own id. State is bounded (cap + age).

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::alert::Alert;
use crate::audit::AuditEvent;

/// Bounds.
pub const MAX_MINTED: usize = 100_000;
const MAX_INCIDENT_KEYS: usize = 50_000;
const MAX_LIST: usize = 16;
/// A minted record is kept this long past its expiry (or its minting when the
/// expiry is unknown).
pub const KEEP_AFTER_EXPIRY: Duration = Duration::hours(24);
/// Longest lifetime taken from a TokenRequest (longer ones count as this).
pub const MAX_LIFE_S: i64 = 10 * 365 * 86_400;

/// One TokenRequest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Minted {
    /// `JTI=<uuid>` of the minted token.
    pub jti: String,
    /// `system:serviceaccount:<ns>:<name>` the token is for.
    pub service_account: String,
    pub minter: String,
    pub minter_credential: Option<String>,
    pub source_ip: Option<IpAddr>,
    /// `Pod/<name>`, `Secret/<name>`, `Node/<name>` when bound.
    pub bound_to: Option<String>,
    pub expiration_seconds: Option<i64>,
    pub user_agent: Option<String>,
    pub time: DateTime<Utc>,
    pub audit_id: String,
    /// The incident of the minting credential, when it had raised an alert.
    pub incident: Option<String>,
    /// The minter's expected places at minting: its token's nodes and pods,
    /// its allowances, and the minting address when the mint raised nothing.
    pub minter_nodes: Vec<String>,
    pub minter_pod_uids: Vec<String>,
    pub minter_cidrs: Vec<ipnet::IpNet>,
}

impl Minted {
    /// Whether a kubelet minted it for its pods (the claims then carry the place).
    pub fn by_kubelet(&self) -> bool {
        self.minter.starts_with("system:node:")
    }

    pub fn details(&self) -> Value {
        json!({
            "jti": self.jti,
            "minter": self.minter,
            "minter_credential": self.minter_credential,
            "source_ip": self.source_ip.map(|i| i.to_string()),
            "bound_to": self.bound_to,
            "expiration_seconds": self.expiration_seconds,
            "user_agent": self.user_agent,
            "time": self.time,
            "audit_id": self.audit_id,
        })
    }
}

/// A TokenRequest in `ev`, if it is one that names the minted token.
pub fn token_request(ev: &AuditEvent) -> Option<Minted> {
    if ev.verb != "create"
        || ev.resource() != Some("serviceaccounts")
        || ev.subresource() != Some("token")
        || !ev.succeeded()
    {
        return None;
    }
    let jti = ev.annotations.issued_credential_id.clone()?;
    let sa = format!("system:serviceaccount:{}:{}", ev.namespace()?, ev.name()?);
    let spec = ev.object().and_then(|o| o.spec);
    let expiration_seconds = spec
        .as_ref()
        .and_then(|s| s.get("expirationSeconds"))
        .and_then(Value::as_i64);
    let bound_to = spec
        .as_ref()
        .and_then(|s| s.get("boundObjectRef"))
        .and_then(|b| {
            Some(format!(
                "{}/{}",
                b.get("kind")?.as_str()?,
                b.get("name")?.as_str()?
            ))
        });
    Some(Minted {
        jti,
        service_account: sa,
        minter: ev.user.username.clone(),
        minter_credential: ev.credential_id().map(str::to_owned),
        source_ip: ev.source_ip(),
        bound_to,
        expiration_seconds,
        user_agent: ev.user_agent.clone(),
        time: ev.time(),
        audit_id: ev.audit_id.clone(),
        incident: None,
        minter_nodes: Vec::new(),
        minter_pod_uids: Vec::new(),
        minter_cidrs: Vec::new(),
    })
}

/// What an incident has gathered so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Incident {
    pub id: String,
    pub credentials: Vec<String>,
    pub sources: Vec<String>,
    pub minters: Vec<String>,
    /// `comm (pid N) on node/pod`, from read evidence.
    pub readers: Vec<String>,
    pub alerts: Vec<String>,
}

fn add(v: &mut Vec<String>, s: String) {
    if !v.contains(&s) && v.len() < MAX_LIST {
        v.push(s);
    }
}

/// Lineage and incident state.
#[derive(Debug)]
pub struct Lineage {
    minted: HashMap<String, Minted>,
    /// credential key → incident id.
    incident_of: HashMap<String, (String, DateTime<Utc>)>,
    incidents: HashMap<String, Incident>,
    /// [`MAX_MINTED`] and [`MAX_INCIDENT_KEYS`] (smaller in tests).
    max_minted: usize,
    max_incident_keys: usize,
}

impl Default for Lineage {
    fn default() -> Self {
        Self::with_caps(MAX_MINTED, MAX_INCIDENT_KEYS)
    }
}

impl Lineage {
    fn with_caps(max_minted: usize, max_incident_keys: usize) -> Self {
        Self {
            minted: HashMap::new(),
            incident_of: HashMap::new(),
            incidents: HashMap::new(),
            max_minted,
            max_incident_keys,
        }
    }

    /// Records a TokenRequest (bounded: old records go first).
    pub fn record(&mut self, mut m: Minted) {
        if m.incident.is_some() {
            // Restored: the incident was decided when it was minted.
        } else if let Some(c) = &m.minter_credential {
            m.incident = self.incident_of.get(c).map(|(i, _)| i.clone());
        }
        if m.incident.is_none() {
            m.incident = self
                .incident_of
                .get(&format!("user:{}", m.minter))
                .map(|(i, _)| i.clone());
        }
        if self.minted.len() >= self.max_minted {
            let t = m.time;
            self.minted.retain(|_, x| {
                let life =
                    Duration::seconds(x.expiration_seconds.unwrap_or(0).clamp(0, MAX_LIFE_S));
                t <= x.time + life + KEEP_AFTER_EXPIRY
            });
            if self.minted.len() >= self.max_minted {
                return;
            }
        }
        self.minted.insert(m.jti.clone(), m);
    }

    /// The maps' sizes (`minted`, `incident_keys`, `incidents`; fixed caps,
    /// nothing counted as dropped).
    pub fn stats(&self, out: &mut Vec<super::limits::MapStat>) {
        for (map, entries) in [
            ("minted", self.minted.len()),
            ("incident_keys", self.incident_of.len()),
            ("incidents", self.incidents.len()),
        ] {
            out.push(super::limits::MapStat {
                map,
                entries,
                dropped: Default::default(),
            });
        }
    }

    pub fn minted(&self, jti: &str) -> Option<&Minted> {
        self.minted.get(jti)
    }

    /// Puts an AN1547 alert about credential `key` in its incident (joining
    /// the credential's, else its minter's, else opening one) and writes the
    /// incident into `details.incident`.
    pub fn join(&mut self, key: &str, a: &mut Alert) {
        let inherited = self
            .incident_of
            .get(key)
            .map(|(i, _)| i.clone())
            .or_else(|| self.minted.get(key).and_then(|m| m.incident.clone()));
        let id = inherited.unwrap_or_else(|| a.id.clone());
        let cap = self.max_incident_keys;
        if self.incident_of.len() >= cap && !self.incident_of.contains_key(key) {
            let cut = a.time - Duration::days(7);
            self.incident_of.retain(|_, (_, t)| *t >= cut);
            let live: std::collections::HashSet<&String> =
                self.incident_of.values().map(|(i, _)| i).collect();
            self.incidents.retain(|k, _| live.contains(k));
        }
        if self.incident_of.len() < cap || self.incident_of.contains_key(key) {
            self.incident_of
                .insert(key.to_owned(), (id.clone(), a.time));
        }
        let inc = self
            .incidents
            .entry(id.clone())
            .or_insert_with(|| Incident {
                id: id.clone(),
                ..Default::default()
            });
        add(&mut inc.credentials, key.to_owned());
        if let Some(ip) = a.source_ip {
            add(&mut inc.sources, ip.to_string());
        }
        if let Some(m) = self.minted.get(key) {
            add(
                &mut inc.minters,
                format!(
                    "{} ({}) from {}",
                    m.minter,
                    m.minter_credential.as_deref().unwrap_or("no credential id"),
                    m.source_ip.map_or("?".to_owned(), |i| i.to_string())
                ),
            );
        }
        for e in a.evidence.iter().filter(|e| e.kind == "credential_read") {
            add(
                &mut inc.readers,
                format!(
                    "{} (pid {}) on {}{}",
                    e.comm.as_deref().unwrap_or("?"),
                    e.pid.map_or("?".to_owned(), |p| p.to_string()),
                    e.node,
                    e.pod
                        .as_ref()
                        .map(|p| format!(" pod {p}"))
                        .unwrap_or_default()
                ),
            );
        }
        add(&mut inc.alerts, a.id.clone());
        if !a.details.is_object() {
            a.details = json!({});
        }
        a.details["incident"] = serde_json::to_value(&*inc).unwrap_or(Value::Null);
    }
}

#[cfg(test)]
#[path = "lineage_tests.rs"]
mod tests;
