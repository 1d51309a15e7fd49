//! The cgroup walk: its depth bound, and what it does not follow.

use std::os::unix::fs::MetadataExt as _;

use super::*;

fn ino(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

/// A hierarchy deeper than [`MAX_DEPTH`] (a container nesting cgroups
/// without end) is walked to that depth and no further.
#[test]
fn the_walk_stops_at_its_depth_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut deepest = dir.path().to_path_buf();
    let mut rel = String::new();
    let mut at_depth = Vec::new();
    for i in 1..=MAX_DEPTH + 2 {
        deepest.push(format!("d{i}"));
        rel.push_str(&format!("/d{i}"));
        at_depth.push((deepest.clone(), rel.clone()));
    }
    std::fs::create_dir_all(&deepest).unwrap();
    let mut paths = CgroupPaths::new(dir.path());
    paths.rewalk();
    assert_eq!(paths.walks(), 1);
    let (first, first_rel) = &at_depth[0];
    assert_eq!(
        paths.path_of(ino(first)).as_deref(),
        Some(first_rel.as_str())
    );
    let (last_in, last_rel) = &at_depth[MAX_DEPTH - 1];
    assert_eq!(
        paths.path_of(ino(last_in)).as_deref(),
        Some(last_rel.as_str())
    );
    assert_eq!(paths.path_of(ino(&at_depth[MAX_DEPTH].0)), None);
    assert_eq!(paths.path_of(ino(&deepest)), None);
    // The misses right after the walk did not walk again.
    assert_eq!(paths.walks(), 1);
    assert_eq!(MAX_DEPTH, 12);
}

/// Files and symlinks are no cgroups: a symlink back up (a loop) is not
/// followed, and a file's inode is not taken for a cgroup's.
#[test]
fn files_and_symlinks_are_not_walked() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("kubepods.slice");
    std::fs::create_dir(&a).unwrap();
    std::fs::write(a.join("cgroup.procs"), "").unwrap();
    std::os::unix::fs::symlink("..", a.join("up")).unwrap();
    let mut paths = CgroupPaths::new(dir.path());
    paths.rewalk();
    assert_eq!(paths.path_of(ino(&a)).as_deref(), Some("/kubepods.slice"));
    assert_eq!(paths.path_of(ino(dir.path())).as_deref(), Some("/"));
    assert_eq!(paths.path_of(ino(&a.join("cgroup.procs"))), None);
    assert_eq!(paths.by_id.len(), 2);
}

/// A cgroup root that does not exist gives no paths, and no panic.
#[test]
fn a_missing_root_gives_nothing() {
    let mut paths = CgroupPaths::new("/nonexistent-credtrail-cgroup-root");
    assert_eq!(paths.path_of(1), None);
    assert_eq!(paths.walks(), 1);
    assert!(paths.by_id.is_empty());
}
