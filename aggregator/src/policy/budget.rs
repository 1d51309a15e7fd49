//! The memory budget of detection state (`detection.state.memory_budget_mib`):
//! what one entry of each capped family of maps costs, the caps a budget
//! gives when the policy sets none, and the estimate a policy's caps are
//! checked against at load.
//!
//! The per-entry figures are heap bytes including the allocator's per-chunk
//! overhead (what RSS pays), as measured by `aggregator/tests/state_memory.rs`,
//! which fails when an entry costs more than its figure here; docs/SCALING.md
//! ("Sizing guide") has the table.

/// The default budget: detection state stays within this, leaving the rest
/// of a 1 GiB RSS target to the process, SQLite's caches and batches in
/// flight (about 500 MiB at 5,000 nodes, docs/SCALING.md).
pub const DEFAULT_BUDGET_MIB: usize = 448;
/// The smallest budget accepted: the fixed-size maps and a little room.
pub const MIN_BUDGET_MIB: usize = 128;
/// The largest budget accepted (a typo must not lift every bound).
pub const MAX_BUDGET_MIB: usize = 256 * 1024;

/// A credential read (by credential key, by identity, reading process and
/// container).
pub const BYTES_READ: usize = 1_500;
/// A tracked JTI (one place).
pub const BYTES_JTI: usize = 350;
/// An identity's first sighting and a baseline of one source.
pub const BYTES_IDENTITY: usize = 700;
/// A pod address and one API-connect sighting.
pub const BYTES_POD_ADDRESS: usize = 1_000;
/// A reading process and container, kept for 24 h: counted again per pod
/// because they outlive the read's entry.
pub const BYTES_READER: usize = 300;
/// All of a pod's share.
pub const BYTES_POD: usize = BYTES_POD_ADDRESS + BYTES_READER;
/// A node with its eight addresses (`ADDRESSES_PER_NODE`) and a pod range.
pub const BYTES_NODE: usize = 1_700;
/// A role with two rules.
pub const BYTES_ROLE: usize = 1_800;
/// A binding with two subjects.
pub const BYTES_BINDING: usize = 700;
/// A role and a binding (`max_rbac_objects` bounds each map).
pub const BYTES_RBAC: usize = BYTES_ROLE + BYTES_BINDING;
/// Maps whose caps are fixed, at those caps: token lineage (100,000 minted
/// tokens), incidents (50,000 keys), nodes learned from the audit stream
/// (20,000), alert activity (2,048 sources × 8 requests, 4,096 open alerts).
pub const FIXED_MIB: usize = 112;

/// One family of maps sharing a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The cap's field under `detection.state`.
    pub field: &'static str,
    /// Bytes per unit of the cap, all the family's maps together.
    pub bytes: usize,
    /// Percent of the budget (after [`FIXED_MIB`]) its default cap takes.
    pub share_percent: usize,
}

/// `max_credentials` bounds the reads by credential and the tracked JTIs.
pub const CREDENTIALS: Family = Family {
    field: "max_credentials",
    bytes: BYTES_READ + BYTES_JTI,
    share_percent: 55,
};
/// `max_identities` bounds first sightings, baselines and reads by identity.
pub const IDENTITIES: Family = Family {
    field: "max_identities",
    bytes: BYTES_IDENTITY,
    share_percent: 15,
};
/// `max_pods` bounds pod addresses, connect sightings and readers.
pub const PODS: Family = Family {
    field: "max_pods",
    bytes: BYTES_POD,
    share_percent: 15,
};
/// `max_nodes` bounds nodes and their addresses.
pub const NODES: Family = Family {
    field: "max_nodes",
    bytes: BYTES_NODE,
    share_percent: 5,
};
/// `max_rbac_objects` bounds roles and bindings (each).
pub const RBAC: Family = Family {
    field: "max_rbac_objects",
    bytes: BYTES_RBAC,
    share_percent: 10,
};

const MIB: u128 = 1 << 20;

impl Family {
    /// The cap this family gets from `budget_mib` when the policy sets none.
    pub fn default_cap(&self, budget_mib: usize) -> usize {
        let room = (budget_mib.saturating_sub(FIXED_MIB) as u128) * MIB;
        let cap = room * self.share_percent as u128 / 100 / self.bytes as u128;
        usize::try_from(cap).unwrap_or(usize::MAX).max(1)
    }

    /// Bytes `cap` entries of this family take, at most.
    pub fn bytes_at(&self, cap: usize) -> u128 {
        cap as u128 * self.bytes as u128
    }
}

/// The caps, each with its family.
pub fn families(s: &super::StateLimits) -> [(Family, usize); 5] {
    [
        (CREDENTIALS, s.max_credentials),
        (IDENTITIES, s.max_identities),
        (PODS, s.max_pods),
        (NODES, s.max_nodes),
        (RBAC, s.max_rbac_objects),
    ]
}

/// Memory the state can take at these caps (the fixed-size maps included), in bytes.
pub fn estimate_bytes(s: &super::StateLimits) -> u128 {
    families(s)
        .iter()
        .map(|(f, cap)| f.bytes_at(*cap))
        .sum::<u128>()
        + FIXED_MIB as u128 * MIB
}

/// [`estimate_bytes`] in MiB, rounded up.
pub fn estimate_mib(s: &super::StateLimits) -> u128 {
    estimate_bytes(s).div_ceil(MIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shares_of_a_budget_add_up_to_it() {
        let shares: usize = [CREDENTIALS, IDENTITIES, PODS, NODES, RBAC]
            .iter()
            .map(|f| f.share_percent)
            .sum();
        assert_eq!(shares, 100);
        for budget in [MIN_BUDGET_MIB, DEFAULT_BUDGET_MIB, 4096, MAX_BUDGET_MIB] {
            let s = super::super::StateLimits::from_budget(budget);
            let est = estimate_mib(&s);
            assert!(
                est <= budget as u128,
                "budget {budget} MiB: default caps need {est} MiB"
            );
            assert!(
                est + 2 >= budget as u128,
                "budget {budget} MiB: default caps use only {est} MiB"
            );
        }
    }

    #[test]
    fn the_default_budget_is_well_under_a_gibibyte() {
        let s = super::super::StateLimits::default();
        assert_eq!(s.memory_budget_mib, DEFAULT_BUDGET_MIB);
        assert!(estimate_mib(&s) <= 512, "{}", estimate_mib(&s));
        // A 500-node cluster's pods each hold a live token and a reader.
        assert!(s.max_credentials >= 100_000, "{s:?}");
        assert!(s.max_pods >= 15_000 && s.max_nodes >= 5_000, "{s:?}");
    }

    /// The caps a budget gives are the ones docs/SCALING.md's sizing table
    /// and its `memory_budget_mib: 2048` example promise operators.
    #[test]
    fn the_caps_of_a_budget_are_the_documented_ones() {
        let caps = |b: usize| {
            let s = super::super::StateLimits::from_budget(b);
            [
                s.max_credentials,
                s.max_identities,
                s.max_pods,
                s.max_nodes,
                s.max_rbac_objects,
            ]
        };
        assert_eq!(
            caps(DEFAULT_BUDGET_MIB),
            [104_744, 75_497, 40_652, 10_362, 14_092]
        );
        assert_eq!(caps(2048), [603_526, 435_009, 234_235, 59_707, 81_201]);
        // Below the fixed maps' share every cap is one entry, never zero.
        assert_eq!(caps(FIXED_MIB), [1; 5]);
    }
}
