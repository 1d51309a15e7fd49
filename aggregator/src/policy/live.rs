//! The policy in force, swappable while the aggregator runs.
//!
//! Detection itself holds its own `Arc<Policy>` inside the detector (swapped
//! under the detector's lock, between two batches, by
//! [`crate::pipeline::Pipeline::set_policy`]), so the hot path reads a plain
//! `Arc`. [`LivePolicy`] is what everything else reads (the agent stream's
//! range checks, the suppression cap of the API): one read lock and an `Arc`
//! clone per batch or request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::Policy;

/// The current policy, its generation (0 at start, +1 per reload) and the
/// SHA-256 of the file it came from.
#[derive(Debug)]
pub struct LivePolicy {
    current: RwLock<(Arc<Policy>, String)>,
    generation: AtomicU64,
}

/// What `sha256` reads for the built-in default policy (no `--policy`).
pub const DEFAULT_SHA256: &str = "default";

impl LivePolicy {
    /// `sha256`: hex digest of the policy file, or `None` for the built-in default.
    pub fn new(policy: Arc<Policy>, sha256: Option<[u8; 32]>) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new((policy, hex_or_default(sha256))),
            generation: AtomicU64::new(0),
        })
    }

    /// A policy that never changes (tests, replay).
    pub fn fixed(policy: Policy) -> Arc<Self> {
        Self::new(Arc::new(policy), None)
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .clone()
    }

    /// Hex SHA-256 of the file in force (or [`DEFAULT_SHA256`]).
    pub fn sha256(&self) -> String {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1
            .clone()
    }

    /// Reloads applied since start.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Puts `policy` in force; returns the new generation.
    pub(crate) fn set(&self, policy: Arc<Policy>, sha256: Option<[u8; 32]>) -> u64 {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (policy, hex_or_default(sha256));
        self.generation.fetch_add(1, Ordering::Relaxed) + 1
    }
}

fn hex_or_default(sha256: Option<[u8; 32]>) -> String {
    sha256.map_or_else(|| DEFAULT_SHA256.to_owned(), hex::encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swap_is_seen_by_every_reader_and_counted() {
        let live = LivePolicy::fixed(Policy::default());
        assert_eq!((live.generation(), live.sha256().as_str()), (0, "default"));
        let before = live.current();
        let mut p = Policy::default();
        p.high_privilege_roles.push("ClusterRole/deployer".into());
        assert_eq!(live.set(Arc::new(p), Some([7; 32])), 1);
        assert_eq!(
            live.current().high_privilege_roles,
            ["ClusterRole/deployer"]
        );
        assert!(
            before.high_privilege_roles.is_empty(),
            "held copies stay as they were"
        );
        assert_eq!(live.sha256(), "07".repeat(32));
        assert_eq!(live.generation(), 1, "the reload is counted");
        // A second reload is the second generation; back to the default file.
        assert_eq!(live.set(Arc::new(Policy::default()), None), 2);
        assert_eq!((live.generation(), live.sha256().as_str()), (2, "default"));
        assert!(live.current().high_privilege_roles.is_empty());
    }
}
