//! Start-up scan: credential files already on the node.
//!
//! A token read before the agent started is otherwise unknown until its next
//! read. The scan finds every existing file matching the watch patterns (on
//! the host: the DaemonSet mounts the host's credential folders at the same
//! paths), identifies each, and names the pod when the file sits in the
//! kubelet's pod folder (`<pods dir>/<uid>/...`).

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use chrono::{DateTime, Utc};
use credtrail_proto::model::CredentialIdentity;

use crate::identity::{self, MAX_CREDENTIAL_BYTES, RefReader};
use crate::patterns::WatchPatterns;

/// One credential file found by the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanHit {
    /// Path on the host (without the scan root).
    pub path: String,
    pub inode: u64,
    /// The file's modification time (when the credential was written).
    pub time: DateTime<Utc>,
    /// The pod that owns it, when it sits in the kubelet's pod folder.
    pub pod_uid: Option<String>,
    pub credential: CredentialIdentity,
}

/// Reads files a kubeconfig refers to, below the scan root.
struct HostRefs<'a> {
    root: &'a Path,
    base: Option<&'a Path>,
}

impl RefReader for HostRefs<'_> {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        let abs = if path.starts_with('/') {
            Path::new(path).to_path_buf()
        } else {
            self.base?.join(path)
        };
        let rel = abs.strip_prefix("/").ok()?;
        identity::read_capped(&self.root.join(rel), MAX_CREDENTIAL_BYTES).ok()
    }
}

/// How stable a name is, lower first: the name a process uses (no `..`
/// component, e.g. `<volume>/token`), then `..data/...`, then the
/// timestamped folder the kubelet replaces on every refresh.
fn name_rank(path: &Path) -> (u8, usize) {
    let comps: Vec<_> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let rank = if !comps.iter().any(|c| c.starts_with("..")) {
        0
    } else if comps.iter().any(|c| c == "..data") {
        1
    } else {
        2
    };
    (rank, path.as_os_str().len())
}

/// Existing files matching the patterns, one path per file (the kubelet's
/// symlinks give one token three names: `token`, `..data/token`, `..<ts>/token`).
fn unique_files(patterns: &WatchPatterns, root: &Path) -> Vec<std::path::PathBuf> {
    let mut by_file: Vec<((u64, u64), std::path::PathBuf)> = Vec::new();
    for found in patterns.find_existing(root) {
        let Ok(meta) = std::fs::metadata(&found) else {
            continue;
        };
        let key = (meta.dev(), meta.ino());
        match by_file.iter_mut().find(|(k, _)| *k == key) {
            Some((_, best)) if name_rank(&found) < name_rank(best) => *best = found,
            Some(_) => {}
            None => by_file.push((key, found)),
        }
    }
    by_file.into_iter().map(|(_, p)| p).collect()
}

/// Scans below `root` for files matching `patterns`; each file once.
pub fn scan(patterns: &WatchPatterns, root: &Path, kubelet_pods_dir: &Path) -> Vec<ScanHit> {
    let mut hits = Vec::new();
    for found in unique_files(patterns, root) {
        let Ok(rel) = found.strip_prefix(root) else {
            continue;
        };
        let host_path = Path::new("/").join(rel);
        let path = host_path.to_string_lossy().into_owned();
        let meta = std::fs::metadata(&found).ok();
        let credential = match identity::read_capped(&found, MAX_CREDENTIAL_BYTES) {
            Ok(mut bytes) => {
                let refs = HostRefs {
                    root,
                    base: host_path.parent(),
                };
                let id = identity::identify(&path, &bytes, &refs);
                identity::wipe(&mut bytes);
                id
            }
            Err(e) => CredentialIdentity {
                error: Some(e.to_string()),
                ..Default::default()
            },
        };
        hits.push(ScanHit {
            inode: meta.as_ref().map(|m| m.ino()).unwrap_or(0),
            time: meta
                .as_ref()
                .and_then(|m| DateTime::from_timestamp(m.mtime(), 0))
                .unwrap_or_else(Utc::now),
            pod_uid: pod_uid_of(&host_path, kubelet_pods_dir),
            path,
            credential,
        });
    }
    hits
}

/// `<pods dir>/<uid>/...` -> `<uid>`.
pub fn pod_uid_of(path: &Path, kubelet_pods_dir: &Path) -> Option<String> {
    let rest = path.strip_prefix(kubelet_pods_dir).ok()?;
    let first = rest.components().next()?;
    let uid = first.as_os_str().to_str()?;
    (rest.components().count() > 1).then(|| uid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use credtrail_proto::model::CredentialKind;

    #[test]
    fn scan_finds_and_identifies_below_a_root() {
        let root = tempfile::tempdir().unwrap();
        let uid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        let vol = root
            .path()
            .join("var/lib/kubelet/pods")
            .join(uid)
            .join("volumes/kubernetes.io~projected/kube-api-access-q/..2026_11_23_07_00_00.1");
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(vol.join("token"), "opaque").unwrap();
        std::fs::create_dir_all(root.path().join("etc/kubernetes")).unwrap();
        std::fs::write(
            root.path().join("etc/kubernetes/admin.conf"),
            "kind: Config\nusers:\n- name: u\n  user: {token: t}\n",
        )
        .unwrap();
        let mut hits = scan(
            &WatchPatterns::default(),
            root.path(),
            Path::new("/var/lib/kubelet/pods"),
        );
        hits.sort_by(|a, b| a.path.cmp(&b.path));
        // The timestamped folder is the only name here (no symlinks made).
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].path, "/etc/kubernetes/admin.conf");
        assert_eq!(hits[0].credential.kind, CredentialKind::Kubeconfig);
        assert_eq!(hits[0].pod_uid, None);
        assert!(hits[1].path.ends_with("/..2026_11_23_07_00_00.1/token"));
        assert_eq!(hits[1].credential.kind, CredentialKind::ServiceAccountToken);
        assert_eq!(hits[1].pod_uid.as_deref(), Some(uid));
        assert_eq!(
            hits[1].inode,
            std::fs::metadata(vol.join("token")).unwrap().ino()
        );
    }

    #[test]
    fn pod_uid_needs_a_file_below_the_pod() {
        let pods = Path::new("/var/lib/kubelet/pods");
        assert_eq!(
            pod_uid_of(Path::new("/var/lib/kubelet/pods/u1/x"), pods).as_deref(),
            Some("u1")
        );
        assert_eq!(
            pod_uid_of(Path::new("/var/lib/kubelet/pods/u1"), pods),
            None
        );
        assert_eq!(pod_uid_of(Path::new("/etc/x"), pods), None);
    }
}
