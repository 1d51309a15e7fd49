//! Pod names from the kubelet's pod folder, where the pod itself can write
//! `etc-hosts` (it is the container's `/etc/hosts`, writable by its root).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

const UID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
const HOSTS: &str = "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::1\tip6-allnodes\n10.244.1.7\tapi-0\n";

fn token(ns: &str, pod: &str, uid: &str) -> String {
    let claims = format!(
        r#"{{"sub":"system:serviceaccount:{ns}:default","kubernetes.io":{{"namespace":"{ns}","pod":{{"name":"{pod}","uid":"{uid}"}}}}}}"#
    );
    format!(
        "{}.{}.c2ln\n",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

struct PodDir {
    _tmp: tempfile::TempDir,
    pods: PathBuf,
    volume: PathBuf,
}

fn pod_dir() -> PodDir {
    let tmp = tempfile::tempdir().unwrap();
    let pods = tmp.path().join("pods");
    let volume = pods
        .join(UID)
        .join("volumes/kubernetes.io~projected/kube-api-access-q2x7");
    std::fs::create_dir_all(&volume).unwrap();
    PodDir {
        _tmp: tmp,
        pods,
        volume,
    }
}

/// The pod's own token names it, over what the pod wrote in its hosts file.
#[test]
fn the_pods_token_wins_over_its_hosts_file() {
    let d = pod_dir();
    std::fs::write(d.volume.join("token"), token("shop", "api-0", UID)).unwrap();
    std::fs::write(d.volume.join("namespace"), "kube-system\n").unwrap();
    let forged = HOSTS.replace("api-0", "coredns-0");
    std::fs::write(d.pods.join(UID).join("etc-hosts"), forged).unwrap();
    let mut pods = KubeletPods::new(&d.pods);
    assert_eq!(
        pods.lookup(UID),
        PodRef {
            namespace: Some("shop".into()),
            name: Some("api-0".into()),
        }
    );
}

/// A token bound to another pod (copied in) does not name this one.
#[test]
fn a_token_of_another_pod_is_ignored() {
    let d = pod_dir();
    let other = "99999999-8888-7777-6666-555555555555";
    std::fs::write(d.volume.join("token"), token("prod", "vault-0", other)).unwrap();
    std::fs::write(d.volume.join("namespace"), "shop\n").unwrap();
    std::fs::write(d.pods.join(UID).join("etc-hosts"), HOSTS).unwrap();
    let mut pods = KubeletPods::new(&d.pods);
    assert_eq!(
        pods.lookup(UID),
        PodRef {
            namespace: Some("shop".into()),
            name: Some("api-0".into()),
        }
    );
    // A blank namespace file is no namespace.
    std::fs::write(d.volume.join("namespace"), " \n").unwrap();
    pods.forget(UID);
    assert_eq!(pods.lookup(UID).namespace, None);
}

/// A complete answer is cached until the pod is forgotten.
#[test]
fn complete_answers_are_cached_until_forgotten() {
    let d = pod_dir();
    std::fs::write(d.volume.join("token"), token("shop", "api-0", UID)).unwrap();
    let mut pods = KubeletPods::new(&d.pods);
    let first = pods.lookup(UID);
    assert_eq!(first.name.as_deref(), Some("api-0"));
    std::fs::write(d.volume.join("token"), token("shop", "api-1", UID)).unwrap();
    assert_eq!(pods.lookup(UID), first);
    pods.forget(UID);
    assert_eq!(pods.lookup(UID).name.as_deref(), Some("api-1"));
}

/// Lines a pod may add to its hosts file after the kubelet's entry:
/// comments, bare addresses, loopback names. None of them is its name.
#[test]
fn comments_bare_addresses_and_loopback_lines_are_not_the_hostname() {
    for extra in [
        "# added by an init container\n",
        "10.0.0.9\n",
        "127.0.0.1\tlocalhost\n",
        "::1\tip6-localhost\n",
        "\n   \n",
    ] {
        let text = format!("{HOSTS}{extra}");
        assert_eq!(
            hostname_from_etc_hosts(&text).as_deref(),
            Some("api-0"),
            "{extra:?}"
        );
    }
    // A file the kubelet did not write is not read.
    assert_eq!(hostname_from_etc_hosts(&HOSTS[1..]), None);
    assert_eq!(hostname_from_etc_hosts(""), None);
    // A kubelet file with no pod entry.
    assert_eq!(
        hostname_from_etc_hosts("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"),
        None
    );
}
