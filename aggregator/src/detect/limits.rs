//! The bound of every detection map, from the policy (`detection.state`), and
//! the per-map figures `/metrics` shows.

use chrono::Duration;

use super::bounded::{Dropped, Limits};
use crate::policy::Policy;

/// Recent API connections are kept this long per node (sightings).
pub const CONNECT_HORIZON: Duration = Duration::minutes(60);
/// Pod addresses and reading processes/containers are forgotten after at most
/// this long unused: pod addresses are reused once a pod is gone.
pub const POD_MAX_AGE: Duration = Duration::hours(24);
/// Source addresses kept per identity in its baseline.
pub const BASELINE_IPS_PER_IDENTITY: usize = 64;
/// Node addresses per node the address map holds room for.
pub const ADDRESSES_PER_NODE: usize = 8;

/// A read of a token is forgotten this long after the token's `exp`: 5
/// minutes of clock skew between node and API server, the API server's
/// 1-minute leeway on `exp`, and up to 9 minutes for a request's audit event
/// to arrive after later observations moved the maps' clocks (webhook
/// batching, a lagging log tail). Past that the token is refused (401, and
/// such an audit event names no user or credential), so its reads can no
/// longer join anything.
pub const READ_EXPIRY_GRACE: Duration = Duration::minutes(15);

/// An identity's last sighting is written to the store at most this often.
pub const IDENTITY_NOTE_INTERVAL: Duration = Duration::minutes(10);

/// Limits of each map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapLimits {
    pub jti_places: Limits,
    pub identities: Limits,
    pub baselines: Limits,
    pub baseline_ips: Limits,
    pub roles: Limits,
    pub bindings: Limits,
    pub reads_by_key: Limits,
    pub reads_by_user: Limits,
    pub connects: Limits,
    /// Connection sightings held across all nodes.
    pub connect_sightings: usize,
    pub nodes: Limits,
    pub node_ips: Limits,
    pub pod_ips: Limits,
    pub reader_procs: Limits,
    pub reader_ctrs: Limits,
}

impl MapLimits {
    pub fn from_policy(p: &Policy) -> Self {
        let s = &p.state;
        let age = Some(s.max_age);
        // An identity's first sighting must outlive its learning window.
        let identity_age = Some(s.max_age.max(p.learning_window + Duration::days(1)));
        let pod_age = Some(s.max_age.min(POD_MAX_AGE));
        Self {
            jti_places: Limits::new(s.max_credentials, Some(p.jti_reuse_window)),
            identities: Limits::new(s.max_identities, identity_age),
            baselines: Limits::new(s.max_identities, identity_age),
            baseline_ips: Limits::new(BASELINE_IPS_PER_IDENTITY, None),
            // Roles and bindings are the cluster's current RBAC objects, not
            // history: bounded by count only (deletes remove them).
            roles: Limits::new(s.max_rbac_objects, None),
            bindings: Limits::new(s.max_rbac_objects, None),
            reads_by_key: Limits::new(s.max_credentials, age),
            reads_by_user: Limits::new(s.max_identities, age),
            connects: Limits::new(s.max_nodes, Some(CONNECT_HORIZON)),
            connect_sightings: s.max_pods,
            nodes: Limits::new(s.max_nodes, age),
            node_ips: Limits::new(s.max_nodes.saturating_mul(ADDRESSES_PER_NODE), age),
            pod_ips: Limits::new(s.max_pods, pod_age),
            reader_procs: Limits::new(s.max_pods, pod_age),
            reader_ctrs: Limits::new(s.max_pods, pod_age),
        }
    }
}

impl Default for MapLimits {
    fn default() -> Self {
        Self::from_policy(&Policy::default())
    }
}

/// One map's size and what its bounds removed since the last report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapStat {
    pub map: &'static str,
    pub entries: usize,
    pub dropped: Dropped,
}

/// How far past the wall clock an event's time may move the maps' clocks: a
/// sender's clock far in the future must not expire everything.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

/// `t`, but no later than the wall clock plus [`MAX_CLOCK_SKEW`].
pub fn clock(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    t.min(chrono::Utc::now() + MAX_CLOCK_SKEW)
}
