//! What an agent may claim: pure checks of `NodeInfo` and observations
//! against the node its client certificate names and the policy's cluster
//! ranges. No I/O, no state: the stream service calls these on every message,
//! and the fuzz targets call them directly.
//!
//! Rules (docs/SECURITY.md, "Agents speak only for their node"):
//! - `NodeInfo.name` and every observation's `node` equal the certificate's
//!   node (whole message refused otherwise);
//! - observation ids start with `<node>/` (ids are also keyed by node in the
//!   store, so one node cannot pre-claim another's ids);
//! - a claimed node address must not be unspecified, multicast or broadcast,
//!   and must lie inside the policy's node or pod ranges when the policy sets
//!   any cluster range;
//! - a claimed pod CIDR must parse, be no wider than [`MAX_POD_CIDR_WIDTH_V4`]
//!   / [`MAX_POD_CIDR_WIDTH_V6`] (never a /0), and lie inside one of the
//!   policy's pod ranges when those are set.
//!
//! Out-of-range addresses and CIDRs are dropped one by one (each is a
//! [`Refusal`], counted per node); the rest of the `NodeInfo` is kept, so one
//! odd interface (a `docker0` bridge) does not blind the node's whole claim.

use std::net::IpAddr;

use credtrail_proto::model::{NodeInfo, Observation, ObservationEvent};
use ipnet::IpNet;

use crate::policy::Policy;

/// Widest IPv4 pod CIDR an agent may claim for its node: a /12 is already
/// a million addresses, far more than one node's pods.
pub const MAX_POD_CIDR_WIDTH_V4: u8 = 12;
/// Widest IPv6 pod CIDR an agent may claim for its node.
pub const MAX_POD_CIDR_WIDTH_V6: u8 = 48;

/// Why a claim was refused. `reason()` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("node: {claimed:?} is not the certificate's node {cert:?}")]
    NodeMismatch { cert: String, claimed: String },
    #[error("node_info.name: {claimed:?} is not the certificate's node {cert:?}")]
    NodeInfoName { cert: String, claimed: String },
    #[error("id: {id:?} does not start with the node's prefix {node:?}/")]
    IdPrefix { node: String, id: String },
    #[error("node_info.addresses: {0} is not a unicast host address")]
    AddressNotUnicast(IpAddr),
    #[error("node_info.addresses: {0} is outside the policy's node and pod ranges")]
    AddressOutsideCluster(IpAddr),
    #[error("node_info.pod_cidrs: {0:?} is not a CIDR")]
    PodCidrUnparsable(String),
    #[error(
        "node_info.pod_cidrs: {cidr} is wider than /{max} (the widest pod CIDR a node may claim)"
    )]
    PodCidrTooWide { cidr: IpNet, max: u8 },
    #[error("node_info.pod_cidrs: {0} is outside the policy's pod ranges")]
    PodCidrOutsideCluster(IpNet),
}

impl Refusal {
    /// Stable short name for metrics (`credtrail_rejected_total{reason}`,
    /// `credtrail_agent_refused_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NodeMismatch { .. } | Refusal::NodeInfoName { .. } => "node_mismatch",
            Refusal::IdPrefix { .. } => "id_prefix",
            Refusal::AddressNotUnicast(_) => "address_not_unicast",
            Refusal::AddressOutsideCluster(_) => "address_outside_cluster",
            Refusal::PodCidrUnparsable(_) => "pod_cidr_unparsable",
            Refusal::PodCidrTooWide { .. } => "pod_cidr_too_wide",
            Refusal::PodCidrOutsideCluster(_) => "pod_cidr_outside_cluster",
        }
    }
}

/// A `NodeInfo` with every claim that passed; `dropped` lists the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedNodeInfo {
    pub info: NodeInfo,
    pub dropped: Vec<Refusal>,
}

/// Whether the policy sets any cluster range (then claims must lie inside).
fn cluster_ranges_set(p: &Policy) -> bool {
    !p.node_cidrs.is_empty() || !p.pod_cidrs.is_empty()
}

fn unicast(ip: IpAddr) -> bool {
    // Loopback stays allowed: the agent never reports it, and the loopback
    // test clusters (and the demo) use 127.x addresses as node addresses.
    !(ip.is_unspecified() || ip.is_multicast() || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast()))
}

fn check_address(ip: IpAddr, p: &Policy) -> Result<(), Refusal> {
    if !unicast(ip) {
        return Err(Refusal::AddressNotUnicast(ip));
    }
    if cluster_ranges_set(p)
        && !p
            .node_cidrs
            .iter()
            .chain(&p.pod_cidrs)
            .any(|c| c.contains(&ip))
    {
        return Err(Refusal::AddressOutsideCluster(ip));
    }
    Ok(())
}

fn check_pod_cidr(s: &str, p: &Policy) -> Result<IpNet, Refusal> {
    let net: IpNet = s
        .trim()
        .parse()
        .map_err(|_| Refusal::PodCidrUnparsable(s.chars().take(64).collect()))?;
    let max = match net {
        IpNet::V4(_) => MAX_POD_CIDR_WIDTH_V4,
        IpNet::V6(_) => MAX_POD_CIDR_WIDTH_V6,
    };
    if net.prefix_len() < max {
        return Err(Refusal::PodCidrTooWide { cidr: net, max });
    }
    if !p.pod_cidrs.is_empty() && !p.pod_cidrs.iter().any(|c| c.contains(&net)) {
        return Err(Refusal::PodCidrOutsideCluster(net));
    }
    Ok(net.trunc())
}

/// Checks a `NodeInfo` sent by the agent whose certificate names `cert_node`.
/// A name for another node refuses it whole; out-of-range addresses and pod
/// CIDRs are dropped and listed.
pub fn validate_node_info(
    cert_node: &str,
    info: &NodeInfo,
    policy: &Policy,
) -> Result<CheckedNodeInfo, Refusal> {
    if info.name != cert_node {
        return Err(Refusal::NodeInfoName {
            cert: cert_node.to_owned(),
            claimed: info.name.clone(),
        });
    }
    let mut dropped = Vec::new();
    let mut out = info.clone();
    out.addresses = info
        .addresses
        .iter()
        .copied()
        .filter(|ip| match check_address(*ip, policy) {
            Ok(()) => true,
            Err(r) => {
                dropped.push(r);
                false
            }
        })
        .collect();
    out.pod_cidrs = info
        .pod_cidrs
        .iter()
        .filter_map(|c| match check_pod_cidr(c, policy) {
            Ok(net) => Some(net.to_string()),
            Err(r) => {
                dropped.push(r);
                None
            }
        })
        .collect();
    Ok(CheckedNodeInfo { info: out, dropped })
}

/// Checks one observation from the agent whose certificate names `cert_node`:
/// its node and id prefix. (`NodeInfo` payloads go through
/// [`validate_node_info`] as well.)
pub fn validate_observation(cert_node: &str, obs: &Observation) -> Result<(), Refusal> {
    if obs.node != cert_node {
        return Err(Refusal::NodeMismatch {
            cert: cert_node.to_owned(),
            claimed: obs.node.clone(),
        });
    }
    let prefixed = obs
        .id
        .strip_prefix(cert_node)
        .is_some_and(|rest| rest.starts_with('/'));
    if !prefixed {
        return Err(Refusal::IdPrefix {
            node: cert_node.to_owned(),
            id: obs.id.chars().take(128).collect(),
        });
    }
    if let ObservationEvent::NodeInfo(n) = &obs.event
        && n.name != cert_node
    {
        return Err(Refusal::NodeInfoName {
            cert: cert_node.to_owned(),
            claimed: n.name.clone(),
        });
    }
    Ok(())
}

/// Both checks: the observation as accepted (a `NodeInfo` with its dropped
/// claims removed) and every refusal. `Err` refuses it whole.
pub fn check_observation(
    cert_node: &str,
    mut obs: Observation,
    policy: &Policy,
) -> Result<(Observation, Vec<Refusal>), Refusal> {
    validate_observation(cert_node, &obs)?;
    let mut dropped = Vec::new();
    if let ObservationEvent::NodeInfo(n) = &mut obs.event {
        let checked = validate_node_info(cert_node, n, policy)?;
        *n = checked.info;
        dropped = checked.dropped;
    }
    Ok((obs, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> Policy {
        Policy::from_yaml("test", yaml).unwrap()
    }

    fn info(name: &str, addrs: &[&str], cidrs: &[&str]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            pod_cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
            ..NodeInfo::default()
        }
    }

    const CLUSTER: &str = "cluster:\n  node_cidrs: [10.0.0.0/16]\n  pod_cidrs: [10.244.0.0/16]\n";

    #[test]
    fn another_nodes_name_is_refused_whole() {
        let e = validate_node_info("node-a", &info("node-b", &[], &[]), &Policy::default())
            .unwrap_err();
        assert_eq!(e.reason(), "node_mismatch");
        assert!(e.to_string().contains("node-b"), "{e}");
    }

    #[test]
    fn claims_outside_the_cluster_ranges_are_dropped() {
        let p = policy(CLUSTER);
        let c = validate_node_info(
            "node-a",
            &info(
                "node-a",
                &["10.0.0.5", "198.51.100.7", "10.244.1.1", "0.0.0.0"],
                &[
                    "10.244.1.0/24",
                    "0.0.0.0/0",
                    "198.51.100.0/24",
                    "10.244.0.0/8",
                    "x",
                ],
            ),
            &p,
        )
        .unwrap();
        assert_eq!(
            c.info.addresses,
            vec![
                "10.0.0.5".parse::<IpAddr>().unwrap(),
                "10.244.1.1".parse().unwrap()
            ]
        );
        assert_eq!(c.info.pod_cidrs, vec!["10.244.1.0/24".to_owned()]);
        let reasons: Vec<_> = c.dropped.iter().map(Refusal::reason).collect();
        assert_eq!(
            reasons,
            vec![
                "address_outside_cluster",
                "address_not_unicast",
                "pod_cidr_too_wide",
                "pod_cidr_outside_cluster",
                "pod_cidr_too_wide",
                "pod_cidr_unparsable"
            ]
        );
    }

    #[test]
    fn without_cluster_ranges_only_width_and_unicast_are_checked() {
        let c = validate_node_info(
            "n",
            &info(
                "n",
                &["198.51.100.7", "::"],
                &["10.0.0.0/12", "10.0.0.0/11", "::/0"],
            ),
            &Policy::default(),
        )
        .unwrap();
        assert_eq!(c.info.addresses.len(), 1);
        assert_eq!(c.info.pod_cidrs, vec!["10.0.0.0/12".to_owned()]);
        assert_eq!(c.dropped.len(), 3);
    }

    #[test]
    fn observations_must_name_the_certificates_node_and_prefix_their_id() {
        let o = |node: &str, id: &str| Observation {
            id: id.into(),
            time: chrono::Utc::now(),
            node: node.into(),
            event: ObservationEvent::NodeInfo(info(node, &[], &[])),
        };
        assert!(validate_observation("a", &o("a", "a/boot/1")).is_ok());
        assert_eq!(
            validate_observation("a", &o("b", "b/boot/1"))
                .unwrap_err()
                .reason(),
            "node_mismatch"
        );
        assert_eq!(
            validate_observation("a", &o("a", "b/boot/1"))
                .unwrap_err()
                .reason(),
            "id_prefix"
        );
        assert_eq!(
            validate_observation("a", &o("a", "ab/boot/1"))
                .unwrap_err()
                .reason(),
            "id_prefix"
        );
    }
}
