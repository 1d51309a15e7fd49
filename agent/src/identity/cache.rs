//! Identities of files already read, keyed by what changes when the file
//! does (device, inode, size, mtime, ctime), so a token read by many
//! processes is read and parsed once.
//!
//! Kubeconfigs are not cached: their identity depends on other files they
//! name (`client-certificate: /var/lib/kubelet/pki/kubelet-client-current.pem`
//! is rotated without the kubeconfig changing).

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt as _;

use credtrail_proto::model::{CredentialIdentity, CredentialKind};

/// Most identities kept; the cache is cleared when full.
pub const MAX_CACHED: usize = 4096;

/// What identifies one version of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileKey {
    pub fn of(meta: &Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    pub fn ino(&self) -> u64 {
        self.ino
    }
}

/// The cache.
#[derive(Debug, Default)]
pub struct IdentityCache {
    map: HashMap<FileKey, CredentialIdentity>,
    hits: u64,
}

impl IdentityCache {
    pub fn get(&mut self, key: &FileKey) -> Option<CredentialIdentity> {
        let found = self.map.get(key).cloned();
        if found.is_some() {
            self.hits += 1;
        }
        found
    }

    /// Keeps an identity unless it depends on other files or is an error.
    pub fn insert(&mut self, key: FileKey, id: &CredentialIdentity) {
        if id.kind == CredentialKind::Kubeconfig || id.error.is_some() {
            return;
        }
        if self.map.len() >= MAX_CACHED {
            self.map.clear();
        }
        self.map.insert(key, id.clone());
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod cache_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_a_new_key_and_kubeconfigs_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "a").unwrap();
        let k1 = FileKey::of(&std::fs::metadata(&p).unwrap());
        let mut c = IdentityCache::default();
        let id = CredentialIdentity {
            kind: CredentialKind::ServiceAccountToken,
            sha256: Some("x".into()),
            ..Default::default()
        };
        c.insert(k1, &id);
        assert_eq!(c.get(&k1), Some(id.clone()));
        assert_eq!(c.hits(), 1);
        std::fs::write(&p, "bb").unwrap();
        let k2 = FileKey::of(&std::fs::metadata(&p).unwrap());
        assert_ne!(k1, k2);
        assert_eq!(c.get(&k2), None);
        let kc = CredentialIdentity {
            kind: CredentialKind::Kubeconfig,
            ..Default::default()
        };
        c.insert(k2, &kc);
        assert_eq!(c.get(&k2), None);
    }
}
