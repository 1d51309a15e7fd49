//! Pod uid -> namespace and name, from the kubelet's pod directory.
//!
//! What really exists under `/var/lib/kubelet/pods/<uid>/` on a kubelet:
//! - `volumes/kubernetes.io~projected/kube-api-access-*/token`: the pod's bound
//!   service-account token. Its claims name the pod and namespace exactly
//!   (`kubernetes.io.pod.name`, `kubernetes.io.namespace`) and carry the pod
//!   uid, which is checked against the directory's. Preferred source.
//! - the same volume's `namespace` file (downward API) and `etc-hosts`, whose
//!   last kubelet-written line maps the pod IP to the pod's hostname (the pod
//!   name unless `spec.hostname` is set). Fallback when the pod mounts no token
//!   (`automountServiceAccountToken: false`).
//!
//! The token is read, its claims kept, its bytes wiped at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::identity::{MAX_CREDENTIAL_BYTES, jwt, read_capped, wipe};

/// A pod's namespace and name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: Option<String>,
    pub name: Option<String>,
}

/// Cached lookups in one kubelet pods directory.
#[derive(Debug)]
pub struct KubeletPods {
    dir: PathBuf,
    cache: HashMap<String, PodRef>,
}

impl KubeletPods {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            cache: HashMap::new(),
        }
    }

    /// Namespace and name of a pod; cached once complete, re-read otherwise
    /// (the kubelet writes the pod dir while the pod starts).
    pub fn lookup(&mut self, uid: &str) -> PodRef {
        if let Some(p) = self.cache.get(uid) {
            return p.clone();
        }
        let found = read_pod(&self.dir.join(uid), uid);
        if found.namespace.is_some() && found.name.is_some() {
            self.cache.insert(uid.to_string(), found.clone());
        }
        found
    }

    /// Forgets a pod (e.g. when its directory is gone).
    pub fn forget(&mut self, uid: &str) {
        self.cache.remove(uid);
    }
}

fn read_pod(pod_dir: &Path, uid: &str) -> PodRef {
    let projected = pod_dir.join("volumes/kubernetes.io~projected");
    let volumes: Vec<PathBuf> = std::fs::read_dir(&projected)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    for v in &volumes {
        if let Some(p) = from_token(&v.join("token"), uid) {
            return p;
        }
    }
    let namespace = volumes.iter().find_map(|v| {
        std::fs::read_to_string(v.join("namespace"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    });
    let name = std::fs::read_to_string(pod_dir.join("etc-hosts"))
        .ok()
        .and_then(|s| hostname_from_etc_hosts(&s));
    PodRef { namespace, name }
}

fn from_token(path: &Path, uid: &str) -> Option<PodRef> {
    let mut bytes = read_capped(path, MAX_CREDENTIAL_BYTES).ok()?;
    let claims = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|t| jwt::parse_claims(t).ok());
    wipe(&mut bytes);
    let claims = claims?;
    if claims.pod_uid.as_deref() != Some(uid) {
        return None;
    }
    Some(PodRef {
        namespace: claims.namespace,
        name: claims.pod_name,
    })
}

/// The pod's hostname from a kubelet-managed hosts file: the last entry the
/// kubelet wrote before any `HostAliases` section, skipping loopback names.
pub fn hostname_from_etc_hosts(text: &str) -> Option<String> {
    if !text.starts_with("# Kubernetes-managed hosts file") {
        return None;
    }
    let mut last = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("# Entries added by HostAliases") {
            break;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let names = fields.get(1..).unwrap_or_default();
        if names.is_empty()
            || names
                .iter()
                .any(|n| *n == "localhost" || n.starts_with("ip6-"))
        {
            continue;
        }
        // `<ip> <fqdn> <short>` with a subdomain, else `<ip> <hostname>`.
        last = names.last().map(|n| (*n).to_string());
    }
    last
}

#[cfg(test)]
#[path = "pods_tests.rs"]
mod pods_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::1\tip6-allnodes\n10.244.1.7\tapi-0\n";

    #[test]
    fn etc_hosts_gives_the_hostname() {
        assert_eq!(hostname_from_etc_hosts(HOSTS).as_deref(), Some("api-0"));
        let sub = HOSTS.replace("api-0", "web-0.web.shop.svc.cluster.local\tweb-0");
        assert_eq!(hostname_from_etc_hosts(&sub).as_deref(), Some("web-0"));
        let aliases = format!("{HOSTS}\n# Entries added by HostAliases.\n1.2.3.4\tfoo\n");
        assert_eq!(hostname_from_etc_hosts(&aliases).as_deref(), Some("api-0"));
        assert_eq!(
            hostname_from_etc_hosts("127.0.0.1 localhost\n10.0.0.1 host\n"),
            None
        );
    }

    #[test]
    fn namespace_file_and_etc_hosts_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let uid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        let vol = dir
            .path()
            .join(uid)
            .join("volumes/kubernetes.io~projected/kube-api-access-x1");
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(vol.join("namespace"), "shop\n").unwrap();
        let mut pods = KubeletPods::new(dir.path());
        assert_eq!(
            pods.lookup(uid),
            PodRef {
                namespace: Some("shop".into()),
                name: None
            }
        );
        std::fs::write(dir.path().join(uid).join("etc-hosts"), HOSTS).unwrap();
        assert_eq!(
            pods.lookup(uid),
            PodRef {
                namespace: Some("shop".into()),
                name: Some("api-0".into())
            }
        );
        assert_eq!(pods.lookup("missing"), PodRef::default());
    }
}
