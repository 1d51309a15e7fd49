//! Unit tests of `sightings.rs`: what the agents' observations teach
//! (where an address is, who read what, which process connected), what is
//! forgotten and when, and the bounds, each through `Sightings::observe` fed
//! observations in the documented JSON format.

use chrono::{DateTime, Duration};
use credtrail_proto::model::{CredentialIdentity, Observation};
use serde_json::{Value, json};

use super::*;
use crate::detect::limits::MapLimits;
use crate::detect::testkit::{node_info, t, token_read};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ts(at: i64) -> String {
    t(at).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn feed(s: &mut Sightings, obs: &[Observation]) -> (Vec<CredentialReadRow>, Vec<NodeNetRow>) {
    let (mut reads, mut nets) = (Vec::new(), Vec::new());
    for o in obs {
        s.observe(o, &mut reads, &mut nets);
    }
    (reads, nets)
}

/// An API connection on `node` at `at` by `tgid` (0: no process) from
/// `local` (and NAT'd to `translated`), in `workload` (JSON, or null).
fn conn(
    node: &str,
    id: &str,
    at: i64,
    tgid: u32,
    local: Option<&str>,
    translated: Option<&str>,
    workload: Value,
) -> Observation {
    let process = if tgid == 0 {
        Value::Null
    } else {
        json!({"pid": tgid, "tgid": tgid, "ppid": 1, "uid": 0, "comm": "c",
               "exe": "/usr/bin/c", "cmdline": ["c"], "mnt_ns": 1})
    };
    serde_json::from_value(json!({
        "id": id, "time": ts(at), "node": node, "type": "api_connect",
        "source": "cgroup_connect", "process": process, "workload": workload,
        "local": local.map(|l| format!("{l}:40000")),
        "translated": translated.map(|l| format!("{l}:50000")),
        "remote": "127.0.0.1:6443",
    }))
    .unwrap()
}

fn pod(ns: &str, name: &str, uid: &str, ctr: &str) -> Value {
    json!({"cgroup_id": 1, "container_id": ctr, "pod_uid": uid,
           "pod_namespace": ns, "pod_name": name})
}

/// A credential read on `node` by `tgid` in `workload` of `credential` (JSON).
fn read(
    node: &str,
    id: &str,
    at: i64,
    tgid: u32,
    workload: Value,
    credential: Value,
) -> Observation {
    let process = if tgid == 0 {
        Value::Null
    } else {
        json!({"pid": tgid, "tgid": tgid, "ppid": 1, "uid": 0, "comm": "r",
               "exe": "/usr/bin/r", "cmdline": ["r"], "mnt_ns": 1})
    };
    serde_json::from_value(json!({
        "id": id, "time": ts(at), "node": node, "type": "credential_read",
        "source": "tracepoint", "process": process, "workload": workload,
        "path": "/etc/cred", "flags": 0, "inode": 7, "reads": 1,
        "credential": credential,
    }))
    .unwrap()
}

fn two_nodes() -> Sightings {
    let mut s = Sightings::default();
    feed(
        &mut s,
        &[
            node_info("node-a", 0, &["10.0.0.1"], &["10.1.1.0/24"]),
            node_info("node-b", 0, &["10.0.0.2"], &["10.1.2.0/24"]),
        ],
    );
    s
}

fn at(s: &Sightings, a: &str) -> Option<(String, &'static str, Option<String>)> {
    s.resolve(ip(a)).map(|l| (l.node, l.via, l.pod))
}

#[test]
fn addresses_resolve_to_node_pod_and_pod_range() {
    let mut s = two_nodes();
    assert!(s.knows_cluster());
    feed(
        &mut s,
        &[conn(
            "node-b",
            "c1",
            1,
            5,
            Some("10.1.2.7"),
            None,
            pod("shop", "web-1", "u1", "k1"),
        )],
    );
    assert_eq!(
        at(&s, "10.0.0.1"),
        Some(("node-a".into(), "node address", None))
    );
    assert_eq!(
        at(&s, "10.1.2.7"),
        Some(("node-b".into(), "pod address", Some("shop/web-1".into())))
    );
    assert_eq!(
        s.resolve(ip("10.1.2.7")).unwrap().pod_uid.as_deref(),
        Some("u1")
    );
    assert_eq!(
        at(&s, "10.1.1.9"),
        Some(("node-a".into(), "node pod CIDR", None))
    );
    assert_eq!(at(&s, "10.9.9.9"), None);
}

#[test]
fn a_cluster_is_known_from_a_node_report_or_a_host_connection_alone() {
    let s = Sightings::default();
    assert!(!s.knows_cluster());
    let mut s = Sightings::default();
    feed(
        &mut s,
        &[conn(
            "node-a",
            "c",
            0,
            5,
            Some("10.0.0.5"),
            None,
            Value::Null,
        )],
    );
    assert!(s.knows_cluster(), "a host process's address is its node's");
    assert_eq!(
        at(&s, "10.0.0.5"),
        Some(("node-a".into(), "node address", None))
    );
}

#[test]
fn a_host_network_pod_keeps_its_nodes_address_a_host_process_takes_back_a_pod_address() {
    let mut s = two_nodes();
    // A hostNetwork pod connects from node-a's address: still node-a's.
    feed(
        &mut s,
        &[conn(
            "node-a",
            "c1",
            1,
            5,
            Some("10.0.0.1"),
            None,
            pod("kube-system", "proxy", "u2", "k2"),
        )],
    );
    assert_eq!(
        at(&s, "10.0.0.1"),
        Some(("node-a".into(), "node address", None))
    );
    // A pod address, later used by a host process (the address was reused).
    feed(
        &mut s,
        &[
            conn(
                "node-b",
                "c2",
                2,
                6,
                Some("10.0.0.9"),
                None,
                pod("shop", "web-2", "u3", "k3"),
            ),
            conn("node-b", "c3", 3, 7, Some("10.0.0.9"), None, Value::Null),
        ],
    );
    assert_eq!(
        at(&s, "10.0.0.9"),
        Some(("node-b".into(), "node address", None))
    );
}

#[test]
fn a_nodes_new_report_replaces_its_addresses_only() {
    let mut s = two_nodes();
    feed(
        &mut s,
        &[node_info("node-a", 10, &["10.0.0.11"], &["10.1.1.0/24"])],
    );
    assert_eq!(at(&s, "10.0.0.1"), None, "node-a's old address released");
    assert_eq!(at(&s, "10.0.0.11").map(|l| l.0), Some("node-a".into()));
    assert_eq!(
        at(&s, "10.0.0.2").map(|l| l.0),
        Some("node-b".into()),
        "node-b's kept"
    );
}

#[test]
fn a_removed_node_releases_its_addresses_and_connections_only() {
    let mut s = two_nodes();
    feed(
        &mut s,
        &[
            conn(
                "node-a",
                "a1",
                1,
                5,
                Some("10.1.1.5"),
                None,
                pod("x", "p1", "ua", "ka"),
            ),
            conn(
                "node-a",
                "a2",
                2,
                5,
                Some("10.1.1.5"),
                None,
                pod("x", "p1", "ua", "ka"),
            ),
            conn(
                "node-b",
                "b1",
                3,
                6,
                Some("10.1.2.5"),
                None,
                pod("x", "p2", "ub", "kb"),
            ),
        ],
    );
    assert_eq!(total(&mut s), 3);
    s.remove_node("node-a");
    assert_eq!(at(&s, "10.0.0.1"), None);
    assert_eq!(at(&s, "10.1.1.5"), None, "its pod addresses and range");
    assert_eq!(at(&s, "10.0.0.2").map(|l| l.0), Some("node-b".into()));
    assert_eq!(at(&s, "10.1.2.5").map(|l| l.1), Some("pod address"));
    assert!(
        s.connects_near("node-a", ip("10.1.1.5"), t(2), Duration::minutes(5))
            .is_empty()
    );
    assert_eq!(total(&mut s), 1, "node-b's connection is still counted");
    assert!(!s.has_agent("node-a", t(4), Duration::minutes(5)));
}

/// The `connect_sightings` figure of `state_stats`.
fn total(s: &mut Sightings) -> usize {
    stats(s, "connect_sightings").0
}

/// `(entries, dropped by the cap, dropped by age)` of one map.
fn stats(s: &mut Sightings, map: &str) -> (usize, u64, u64) {
    let mut out = Vec::new();
    s.state_stats(&mut out);
    let m = out.iter().find(|m| m.map == map).unwrap();
    (m.entries, m.dropped.cap, m.dropped.age)
}

#[test]
fn an_agent_counts_until_its_grace_has_passed_a_restored_node_until_heard_from() {
    let grace = Duration::minutes(5);
    let mut s = two_nodes();
    // Any observation of node-a is a sign of life.
    feed(
        &mut s,
        &[conn("node-a", "c", 60, 5, None, None, Value::Null)],
    );
    let end = 60 + grace.num_seconds();
    assert!(s.has_agent("node-a", t(end), grace), "on the edge");
    assert!(!s.has_agent("node-a", t(end + 1), grace));
    assert!(s.has_agent("node-b", t(grace.num_seconds()), grace));
    assert!(!s.has_agent("node-b", t(grace.num_seconds() + 1), grace));
    assert!(!s.has_agent("node-z", t(0), grace), "never reported");
    assert_eq!(s.silent_nodes(t(end), grace), ["node-b"]);
    assert_eq!(s.silent_nodes(t(end + 1), grace), ["node-a", "node-b"]);
    assert!(s.silent_nodes(t(grace.num_seconds()), grace).is_empty());
    // Restored from the store: counts as present, never silent, until heard from.
    s.set_node("node-r", vec![ip("10.0.0.30")], vec![]);
    assert!(s.has_agent("node-r", t(100_000), grace));
    assert!(
        !s.silent_nodes(t(100_000), grace)
            .contains(&"node-r".to_owned())
    );
}

#[test]
fn connections_near_a_request_are_those_in_the_window_from_its_address() {
    let mut s = two_nodes();
    feed(
        &mut s,
        &[
            conn("node-a", "early", 0, 5, Some("10.0.0.1"), None, Value::Null),
            conn("node-a", "lo", 40, 5, Some("10.0.0.1"), None, Value::Null),
            conn(
                "node-a",
                "other-ip",
                50,
                5,
                Some("10.0.0.3"),
                None,
                Value::Null,
            ),
            conn("node-a", "no-local", 55, 6, None, None, Value::Null),
            conn(
                "node-a",
                "nat",
                58,
                7,
                Some("10.1.1.4"),
                Some("10.0.0.1"),
                Value::Null,
            ),
            conn("node-a", "hi", 102, 5, Some("10.0.0.1"), None, Value::Null),
            conn(
                "node-a",
                "late",
                103,
                5,
                Some("10.0.0.1"),
                None,
                Value::Null,
            ),
        ],
    );
    let near: Vec<&str> = s
        .connects_near("node-a", ip("10.0.0.1"), t(100), Duration::seconds(60))
        .iter()
        .map(|c| c.observation_id.as_str())
        .collect();
    assert_eq!(near, ["lo", "no-local", "nat", "hi"]);
    assert!(
        s.connects_near("node-b", ip("10.0.0.1"), t(100), Duration::seconds(60))
            .is_empty()
    );
}

#[test]
fn connection_sightings_name_the_process_and_its_pod() {
    let mut s = two_nodes();
    feed(
        &mut s,
        &[conn(
            "node-a",
            "c",
            1,
            42,
            Some("10.1.1.8"),
            None,
            pod("shop", "web-1", "u1", "k1"),
        )],
    );
    let c = s.connects_near("node-a", ip("10.1.1.8"), t(1), Duration::seconds(5))[0];
    assert_eq!(
        (c.tgid, c.comm.as_deref(), c.exe.as_deref(), c.local_ip),
        (42, Some("c"), Some("/usr/bin/c"), Some(ip("10.1.1.8")))
    );
    assert_eq!(
        (
            c.container_id.as_deref(),
            c.pod_uid.as_deref(),
            c.pod.as_deref()
        ),
        (Some("k1"), Some("u1"), Some("shop/web-1"))
    );
    // A workload without a pod name names no pod.
    feed(
        &mut s,
        &[conn(
            "node-a",
            "d",
            2,
            43,
            Some("10.1.1.9"),
            None,
            json!({"container_id": "k9", "pod_namespace": "shop"}),
        )],
    );
    let c = s.connects_near("node-a", ip("10.1.1.9"), t(2), Duration::seconds(0))[0];
    assert_eq!(
        (
            c.container_id.as_deref(),
            c.pod_uid.as_deref(),
            c.pod.as_deref()
        ),
        (Some("k9"), None, None)
    );
}

#[test]
fn connections_older_than_the_horizon_are_forgotten_the_edge_kept() {
    let mut s = two_nodes();
    let h = CONNECT_HORIZON_MIN * 60;
    feed(
        &mut s,
        &[
            conn("node-a", "old", 0, 5, Some("10.0.0.1"), None, Value::Null),
            conn("node-a", "edge", 1, 5, Some("10.0.0.1"), None, Value::Null),
            conn(
                "node-a",
                "new",
                1 + h,
                5,
                Some("10.0.0.1"),
                None,
                Value::Null,
            ),
        ],
    );
    let near: Vec<&str> = s
        .connects_near("node-a", ip("10.0.0.1"), t(1 + h), Duration::seconds(2 * h))
        .iter()
        .map(|c| c.observation_id.as_str())
        .collect();
    assert_eq!(near, ["edge", "new"]);
    assert_eq!(total(&mut s), 2);
    // A node silent past the horizon: its queue goes, and the count with it.
    feed(
        &mut s,
        &[node_info("node-b", 2 + 2 * h, &["10.0.0.2"], &[])],
    );
    assert_eq!(total(&mut s), 0);
}

/// `n` connections of one process on `node` at `at`: the first observed,
/// the rest copies of it (many observations, quickly).
fn fill(s: &mut Sightings, node: &str, at: i64, n: usize) {
    feed(s, &[conn(node, "f", at, 5, None, None, Value::Null)]);
    let q = s.connects.entry(node.to_owned()).or_default();
    let c = q.back().unwrap().clone();
    q.extend(std::iter::repeat_n(c, n - 1));
    s.connects_total += n - 1;
}

#[test]
fn connections_are_bounded_per_node_and_in_all() {
    let mut s = two_nodes();
    fill(&mut s, "node-a", 1, CONNECTS_PER_NODE);
    let one = conn("node-a", "c", 1, 5, Some("10.0.0.1"), None, Value::Null);
    for _ in 0..3 {
        s.observe(&one, &mut Vec::new(), &mut Vec::new());
    }
    assert_eq!(s.connects.get("node-a").unwrap().len(), CONNECTS_PER_NODE);
    assert_eq!(total(&mut s), CONNECTS_PER_NODE);
    // All nodes together: at most `connect_sightings`, the least recently
    // reporting node's oldest first.
    let l = MapLimits {
        connect_sightings: 3,
        ..MapLimits::default()
    };
    let mut s = Sightings::with_limits(&l);
    feed(
        &mut s,
        &[
            conn("node-a", "a1", 1, 5, None, None, Value::Null),
            conn("node-a", "a2", 2, 5, None, None, Value::Null),
            conn("node-b", "b1", 3, 5, None, None, Value::Null),
            conn("node-b", "b2", 4, 5, None, None, Value::Null),
        ],
    );
    let ids = |s: &Sightings, n: &str| -> Vec<String> {
        s.connects_near(n, ip("10.0.0.1"), t(4), Duration::seconds(10))
            .iter()
            .map(|c| c.observation_id.clone())
            .collect()
    };
    assert_eq!(ids(&s, "node-a"), ["a2"]);
    assert_eq!(ids(&s, "node-b"), ["b1", "b2"]);
    // (One report takes the drop counts: read them first.)
    assert_eq!(stats(&mut s, "connects").1, 1, "the drop is counted");
    assert_eq!(stats(&mut s, "connect_sightings").0, 3);
}

/// Sightings holding the connections of two nodes at most.
fn two_queues() -> Sightings {
    Sightings::with_limits(&MapLimits {
        connects: crate::detect::bounded::Limits::new(2, None),
        ..MapLimits::default()
    })
}

#[test]
fn connection_queues_are_bounded_by_node_count_and_the_total_follows() {
    let mut s = two_queues();
    feed(
        &mut s,
        &[
            conn("node-a", "a1", 1, 5, None, None, Value::Null),
            conn("node-a", "a2", 2, 5, None, None, Value::Null),
            conn("node-b", "b1", 3, 5, None, None, Value::Null),
            conn("node-c", "c1", 4, 5, None, None, Value::Null),
            conn("node-c", "c2", 5, 5, None, None, Value::Null),
        ],
    );
    assert_eq!(total(&mut s), 3, "node-a's two went with its queue");
    assert!(
        s.connects_near("node-a", ip("10.0.0.1"), t(2), Duration::seconds(10))
            .is_empty()
    );
}

#[test]
fn a_drained_connection_queue_gives_back_its_room() {
    let mut s = two_nodes();
    let h = CONNECT_HORIZON_MIN * 60;
    fill(&mut s, "node-a", 1, 4000);
    fill(&mut s, "node-a", 1000, 100);
    // The burst leaves the horizon: the queue keeps room for twice what it
    // holds, no more than four times.
    feed(
        &mut s,
        &[conn("node-a", "later", 2 + h, 5, None, None, Value::Null)],
    );
    let q = s.connects.get("node-a").unwrap();
    assert_eq!(q.len(), 101);
    let room = q.capacity();
    assert!(
        (2 * 101..=4 * 101).contains(&q.capacity()),
        "capacity {}",
        q.capacity()
    );
    // Drained to two: room within four times the spare is kept (no
    // reallocation for a node whose traffic ebbs and flows).
    let later = conn("node-a", "l2", 1001 + h, 5, None, None, Value::Null);
    feed(&mut s, &[later]);
    let q = s.connects.get("node-a").unwrap();
    assert_eq!(q.len(), 2);
    assert_eq!(q.capacity(), room);
    assert!(room <= 4 * CONNECTS_SPARE, "capacity {room}");
}

const SA_TOKEN: &str = "service_account_token";

fn token(jti: Option<&str>, exp: Option<i64>) -> Value {
    let mut claims = json!({"sub": "system:serviceaccount:shop:web", "namespace": "shop",
        "service_account_name": "web"});
    if let Some(j) = jti {
        claims["jti"] = json!(j);
    }
    if let Some(e) = exp {
        claims["exp"] = json!(t(e).timestamp());
    }
    json!({"sha256": "ab".repeat(32), "claims": claims})
}

fn cred(v: Value) -> CredentialIdentity {
    serde_json::from_value(v).unwrap()
}

#[test]
fn reads_are_keyed_by_credential_id_else_by_fingerprint() {
    let with_jti = cred(
        json!({"kind": SA_TOKEN, "sha256": "ef".repeat(32), "token": token(Some("j1"), None)}),
    );
    assert_eq!(credential_keys(&with_jti), ["JTI=j1"]);
    let legacy =
        cred(json!({"kind": SA_TOKEN, "sha256": "ef".repeat(32), "token": token(None, None)}));
    assert_eq!(
        credential_keys(&legacy),
        [format!("sha256:{}", "ab".repeat(32))]
    );
    let file = cred(json!({"kind": "private_key", "sha256": "cd".repeat(32)}));
    assert_eq!(
        credential_keys(&file),
        [format!("sha256:{}", "cd".repeat(32))]
    );
    let nothing = cred(json!({"kind": "unknown"}));
    assert!(credential_keys(&nothing).is_empty());
}

#[test]
fn a_credentials_identities_are_its_tokens_and_certificates_once_each() {
    let kubeconfig = cred(json!({
        "kind": "kubeconfig", "sha256": "ef".repeat(32),
        "kubeconfig": {"users": [
            {"name": "a", "client_certificate": {"sha256": "01".repeat(32), "subject_cn": "system:node:n1"}},
            {"name": "b", "token": token(Some("j2"), None)},
            {"name": "c", "client_certificate": {"sha256": "02".repeat(32), "subject_cn": "system:node:n1"}},
        ]},
    }));
    assert_eq!(
        credential_usernames(&kubeconfig),
        ["system:node:n1", "system:serviceaccount:shop:web"]
    );
    let cert = cred(
        json!({"kind": "client_certificate", "sha256": "ef".repeat(32),
        "certificate": {"sha256": "03".repeat(32), "subject_cn": "admin"}}),
    );
    assert_eq!(credential_usernames(&cert), ["admin"]);
    assert!(credential_usernames(&cred(json!({"kind": "unknown"}))).is_empty());
}

#[test]
fn only_a_service_account_tokens_exp_ends_its_reads() {
    let sa = cred(json!({"kind": SA_TOKEN, "token": token(Some("j"), Some(600))}));
    assert_eq!(
        token_expiry(&sa),
        Some(DateTime::from_timestamp(t(600).timestamp(), 0).unwrap())
    );
    let in_kubeconfig = cred(json!({"kind": "kubeconfig", "token": token(Some("j"), Some(600))}));
    assert_eq!(token_expiry(&in_kubeconfig), None);
    let no_exp = cred(json!({"kind": SA_TOKEN, "token": token(Some("j"), None)}));
    assert_eq!(token_expiry(&no_exp), None);
}

#[test]
fn reads_are_found_by_key_and_by_user_with_their_process_and_pod() {
    let mut s = two_nodes();
    let (rows, _) = feed(
        &mut s,
        &[token_read(
            "node-a",
            "r1",
            5,
            100,
            "web",
            Some(("shop", "web-1", "u1", "k1")),
            "j1",
            ("shop", "web"),
        )],
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].key.as_str(), rows[0].username.as_deref()),
        ("JTI=j1", Some("system:serviceaccount:shop:web"))
    );
    let r = &s.reads_by_key("JTI=j1")[0];
    assert_eq!(
        (
            r.node.as_str(),
            r.tgid,
            r.pod.as_deref(),
            r.pod_uid.as_deref(),
            r.container_id.as_deref()
        ),
        ("node-a", 100, Some("shop/web-1"), Some("u1"), Some("k1"))
    );
    assert_eq!(s.reads_by_user("system:serviceaccount:shop:web").len(), 1);
    assert!(s.reads_by_key("JTI=other").is_empty());
    assert!(s.reads_by_user("alice").is_empty());
}

fn connect_of(node: &str, tgid: u32, container: Option<&str>) -> ConnectSighting {
    ConnectSighting {
        node: node.into(),
        time: t(0),
        local_ip: None,
        tgid,
        comm: None,
        exe: None,
        container_id: container.map(str::to_owned),
        pod_uid: None,
        pod: None,
        observation_id: String::new(),
    }
}

#[test]
fn a_connecting_process_read_a_credential_if_it_or_its_container_did() {
    let mut s = two_nodes();
    let k = |cred| json!({"kind": SA_TOKEN, "token": token(Some(cred), None)});
    feed(
        &mut s,
        &[
            read("node-a", "r1", 1, 100, Value::Null, k("j1")),
            read("node-a", "r2", 1, 200, pod("x", "p", "u", "ctr-1"), k("j2")),
            // The start-up scan (no process) makes no process a reader.
            read("node-b", "r3", 1, 0, Value::Null, k("j3")),
        ],
    );
    assert!(s.read_any(&connect_of("node-a", 100, None)));
    assert!(
        !s.read_any(&connect_of("node-b", 100, None)),
        "same pid, other node"
    );
    assert!(
        s.read_any(&connect_of("node-a", 300, Some("ctr-1"))),
        "same container"
    );
    assert!(!s.read_any(&connect_of("node-a", 300, Some("ctr-2"))));
    assert!(!s.read_any(&connect_of("node-b", 0, None)), "no process");
    assert!(!s.read_any(&connect_of("node-a", 0, Some("ctr-2"))));
    assert_eq!(stats(&mut s, "reader_procs").0, 2);
}

#[test]
fn a_restored_read_is_found_again_and_names_its_reader() {
    let mut s = two_nodes();
    let r = ReadSighting {
        node: "node-a".into(),
        tgid: 100,
        comm: None,
        exe: None,
        container_id: Some("ctr-9".into()),
        pod_uid: None,
        pod: None,
        path: "/p".into(),
        time: t(1),
        observation_id: "o".into(),
        expires: None,
    };
    s.restore_read("JTI=j".into(), Some("u".into()), r);
    assert_eq!(s.reads_by_key("JTI=j").len(), 1);
    assert_eq!(s.reads_by_user("u").len(), 1);
    assert!(s.read_any(&connect_of("node-a", 100, None)));
    assert!(s.read_any(&connect_of("node-a", 7, Some("ctr-9"))));
}

#[test]
fn every_map_is_reported_by_name() {
    let mut s = two_nodes();
    let mut out = Vec::new();
    s.state_stats(&mut out);
    let names: Vec<&str> = out.iter().map(|m| m.map).collect();
    assert_eq!(
        names,
        [
            "reads_by_key",
            "reads_by_user",
            "connects",
            "connect_sightings",
            "nodes",
            "node_ips",
            "pod_ips",
            "reader_procs",
            "reader_ctrs"
        ]
    );
    assert_eq!(stats(&mut s, "nodes").0, 2);
    assert_eq!(stats(&mut s, "node_ips").0, 2);
}

#[test]
fn node_reports_are_returned_for_the_inventory_under_the_observations_node() {
    let mut s = Sightings::default();
    let mut o = node_info("node-a", 3, &["10.0.0.1"], &["10.1.1.0/24", "bogus"]);
    if let credtrail_proto::model::ObservationEvent::NodeInfo(n) = &mut o.event {
        n.name = "node-x".into();
    }
    let (_, nets) = feed(&mut s, &[o]);
    assert_eq!(nets.len(), 1);
    assert_eq!(
        nets[0].node, "node-a",
        "an agent speaks for its own node only"
    );
    assert_eq!(nets[0].addresses, ["10.0.0.1"]);
    assert_eq!(nets[0].time_ms, t(3).timestamp_millis());
    assert_eq!(at(&s, "10.1.1.2").map(|l| l.0), Some("node-a".into()));
    assert!(s.has_agent("node-a", t(3), Duration::zero()));
    assert!(!s.has_agent("node-a", t(4), Duration::zero()));
}

/// One connection on node-a, then two on node-b: three in all.
fn one_and_two(s: &mut Sightings) {
    feed(
        s,
        &[
            conn("node-a", "a1", 1, 5, None, None, Value::Null),
            conn("node-b", "b1", 2, 5, None, None, Value::Null),
            conn("node-b", "b2", 3, 5, None, None, Value::Null),
        ],
    );
    assert_eq!(total(s), 3);
}

/// Removing a node takes exactly its connections out of the total (one
/// here, two left on the other node).
#[test]
fn a_removed_nodes_connections_leave_the_total_and_no_more() {
    let mut s = two_nodes();
    one_and_two(&mut s);
    s.remove_node("node-a");
    assert_eq!(total(&mut s), 2);
}

/// A node's queue dropped to make room for a new node takes exactly its
/// connections out of the total (the least recently reporting node, one
/// connection, goes; the other keeps its two).
#[test]
fn a_queue_dropped_for_a_new_node_leaves_the_total_with_its_own_count() {
    let mut s = two_queues();
    one_and_two(&mut s);
    feed(
        &mut s,
        &[conn("node-c", "c1", 4, 5, None, None, Value::Null)],
    );
    assert_eq!(total(&mut s), 3, "node-a's one went, node-c's one came");
    assert!(
        s.connects_near("node-a", ip("10.0.0.1"), t(1), Duration::seconds(10))
            .is_empty()
    );
}

/// A queue whose room is exactly four times the spare is kept as it is:
/// only more than that is given back.
#[test]
fn a_queue_with_exactly_four_times_the_spare_keeps_its_room() {
    let mut s = two_nodes();
    let q = s.connects.entry("node-a".to_owned()).or_default();
    *q = std::collections::VecDeque::with_capacity(4 * CONNECTS_SPARE);
    let room = q.capacity();
    assert_eq!(
        room,
        4 * CONNECTS_SPARE,
        "the set-up needs an exact capacity"
    );
    feed(
        &mut s,
        &[conn("node-a", "a1", 1, 5, None, None, Value::Null)],
    );
    let q = s.connects.get("node-a").unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q.capacity(), room);
}
