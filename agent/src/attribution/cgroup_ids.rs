//! cgroup id -> cgroup path, by walking the cgroup v2 hierarchy.
//!
//! On cgroup v2 the id `bpf_get_current_cgroup_id()` returns is the inode
//! number of the cgroup's directory. The walk result is cached; a miss
//! triggers a fresh walk, at most once per [`MIN_REWALK`], so a storm of
//! events from a cgroup that vanished does not turn into a storm of walks.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Shortest time between two full walks triggered by misses.
pub const MIN_REWALK: Duration = Duration::from_millis(200);

/// Deepest level walked below the root (kubepods nests 4-5 levels; kind 6).
const MAX_DEPTH: usize = 12;

/// Cached map of cgroup ids to paths below one cgroup v2 root.
#[derive(Debug)]
pub struct CgroupPaths {
    root: PathBuf,
    by_id: HashMap<u64, String>,
    last_walk: Option<Instant>,
    walks: u64,
}

impl CgroupPaths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            by_id: HashMap::new(),
            last_walk: None,
            walks: 0,
        }
    }

    /// Full walks done so far (for tests and metrics).
    pub fn walks(&self) -> u64 {
        self.walks
    }

    /// The path (`/`-rooted, relative to the cgroup root) of a cgroup id.
    pub fn path_of(&mut self, id: u64) -> Option<String> {
        if let Some(p) = self.by_id.get(&id) {
            return Some(p.clone());
        }
        // Cheap check first: a cached path may have been replaced by a new
        // cgroup of the same name; re-walking covers it.
        if self.last_walk.is_some_and(|t| t.elapsed() < MIN_REWALK) {
            return None;
        }
        self.rewalk();
        self.by_id.get(&id).cloned()
    }

    /// Walks the hierarchy again, replacing the cache.
    pub fn rewalk(&mut self) {
        let mut map = HashMap::new();
        walk(&self.root, "", 0, &mut map);
        self.by_id = map;
        self.last_walk = Some(Instant::now());
        self.walks += 1;
    }
}

fn walk(dir: &Path, rel: &str, depth: usize, out: &mut HashMap<u64, String>) {
    let Ok(meta) = std::fs::metadata(dir) else {
        return;
    };
    out.insert(
        meta.ino(),
        if rel.is_empty() {
            "/".into()
        } else {
            rel.into()
        },
    );
    if depth >= MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        walk(&entry.path(), &format!("{rel}/{name}"), depth + 1, out);
    }
}

#[cfg(test)]
#[path = "cgroup_ids_tests.rs"]
mod cgroup_ids_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_directory_inodes_and_misses_rewalk() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("kubepods.slice/a.slice");
        std::fs::create_dir_all(&a).unwrap();
        let mut paths = CgroupPaths::new(dir.path());
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(
            paths.path_of(ino(&a)).as_deref(),
            Some("/kubepods.slice/a.slice")
        );
        assert_eq!(paths.path_of(ino(dir.path())).as_deref(), Some("/"));
        assert_eq!(paths.walks(), 1);
        let b = a.join("b.scope");
        std::fs::create_dir(&b).unwrap();
        std::thread::sleep(MIN_REWALK);
        assert_eq!(
            paths.path_of(ino(&b)).as_deref(),
            Some("/kubepods.slice/a.slice/b.scope")
        );
        assert_eq!(paths.walks(), 2);
        // An unknown id right after a walk does not walk again.
        assert_eq!(paths.path_of(u64::MAX), None);
        assert_eq!(paths.walks(), 2);
    }
}
