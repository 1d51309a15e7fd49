//! The per-batch fold writes what row-by-row upserts would.

use super::*;
use crate::store::Store;

fn level(resource: &str, lvl: &str, t: i64, id: &str) -> RbacLevelRow {
    RbacLevelRow {
        resource: resource.into(),
        level: lvl.into(),
        time_ms: t,
        audit_id: id.into(),
    }
}

fn baseline(user: &str, ip: &str, t: i64, learned: bool) -> BaselineRow {
    BaselineRow {
        username: user.into(),
        source_ip: ip.into(),
        time_ms: t,
        learned,
        audit_id: format!("audit-{user}-{ip}"),
    }
}

/// Applies `batches` one change at a time (a batch each) and all at once
/// (one folded batch); the tables must end up identical.
fn same_as_row_by_row(batches: &[Changes], dump: &str) {
    let one_by_one = Store::open_in_memory().unwrap();
    let folded = Store::open_in_memory().unwrap();
    for s in [&one_by_one, &folded] {
        s.write_blocking(|tx| {
            tx.execute(
                "INSERT INTO suppressions(id, owner, reason, created, expires, expires_ms, matcher, origin)
                 VALUES ('s1', 'o', 'r', '', '', 0, '{}', 'api')",
                [],
            )?;
            Ok(())
        })
        .unwrap();
    }
    for c in batches {
        for single in split(c) {
            one_by_one
                .write_blocking(|tx| write_changes(tx, &single, Utc::now()))
                .unwrap();
        }
        folded
            .write_blocking(|tx| write_changes(tx, c, Utc::now()))
            .unwrap();
    }
    let rows = |s: &Store| -> Vec<Vec<String>> {
        s.read_blocking(|c| {
            let mut st = c.prepare(dump)?;
            let n = st.column_count();
            let rows = st.query_map([], |r| {
                (0..n)
                    .map(|i| {
                        r.get::<_, rusqlite::types::Value>(i)
                            .map(|v| format!("{v:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .unwrap()
    };
    let want = rows(&one_by_one);
    assert!(!want.is_empty(), "{dump}: nothing written");
    assert_eq!(rows(&folded), want, "{dump}");
}

/// One `Changes` per recorded change, in order.
fn split(c: &Changes) -> Vec<Changes> {
    let mut out = Vec::new();
    for l in &c.rbac_levels {
        out.push(Changes {
            rbac_levels: vec![l.clone()],
            ..Default::default()
        });
    }
    for b in &c.baselines {
        out.push(Changes {
            baselines: vec![b.clone()],
            ..Default::default()
        });
    }
    for i in &c.identities {
        out.push(Changes {
            identities: vec![i.clone()],
            ..Default::default()
        });
    }
    for h in &c.suppression_hits {
        out.push(Changes {
            suppression_hits: vec![h.clone()],
            ..Default::default()
        });
    }
    for r in &c.credential_reads {
        out.push(Changes {
            credential_reads: vec![r.clone()],
            ..Default::default()
        });
    }
    for b in &c.bindings {
        out.push(Changes {
            bindings: vec![b.clone()],
            ..Default::default()
        });
    }
    for n in &c.node_network {
        out.push(Changes {
            node_network: vec![n.clone()],
            ..Default::default()
        });
    }
    out
}

fn read(tgid: u32, t: i64, obs: &str, comm: &str) -> CredentialReadRow {
    CredentialReadRow {
        key: "JTI=j".into(),
        kind: "service_account_token".into(),
        node: "n1".into(),
        tgid,
        comm: Some(comm.into()),
        path: "/token".into(),
        time_ms: t,
        reads: 2,
        observation_id: obs.into(),
        ..Default::default()
    }
}

fn binding(name: &str, role: &str, t: i64) -> BindingRow {
    BindingRow {
        kind: "ClusterRoleBinding".into(),
        namespace: String::new(),
        name: name.into(),
        role_kind: Some("ClusterRole".into()),
        role_name: Some(role.into()),
        subjects: Vec::new(),
        high_privilege: role == "cluster-admin",
        verb: "create".into(),
        actor: "bob".into(),
        source_ip: None,
        audit_id: format!("a-{t}"),
        time_ms: t,
        deleted: false,
    }
}

fn node(addr: &str, t: i64) -> NodeNetRow {
    NodeNetRow {
        node: "n1".into(),
        addresses: vec![addr.into()],
        pod_cidrs: Vec::new(),
        time_ms: t,
    }
}

#[test]
fn folded_batches_write_what_row_by_row_upserts_would() {
    let batches = [
        Changes {
            rbac_levels: vec![
                level("rolebindings", "Metadata", 50, "a1"),
                level("rolebindings", "Metadata", 20, "a2"),
                level("roles", "Request", 30, "a3"),
                level("rolebindings", "Metadata", 40, "a4"),
            ],
            baselines: vec![
                baseline("u", "127.0.0.1", 30, true),
                baseline("u", "127.0.0.1", 10, false),
                baseline("v", "127.0.0.2", 5, false),
            ],
            identities: vec![("u".into(), 30), ("u".into(), 10), ("v".into(), 7)],
            suppression_hits: vec![("s1".into(), 9), ("s1".into(), 4)],
            credential_reads: vec![
                read(7, 50, "o1", "cat"),
                read(8, 10, "o2", "sh"),
                read(7, 40, "o3", "curl"),
            ],
            bindings: vec![
                binding("b", "view", 1),
                binding("c", "edit", 2),
                binding("b", "cluster-admin", 3),
            ],
            node_network: vec![node("127.0.0.1", 1), node("127.0.0.2", 2)],
            ..Default::default()
        },
        Changes {
            rbac_levels: vec![level("rolebindings", "Metadata", 45, "b1")],
            baselines: vec![baseline("u", "127.0.0.1", 60, false)],
            identities: vec![("u".into(), 3)],
            suppression_hits: vec![("s1".into(), 2)],
            ..Default::default()
        },
    ];
    for dump in [
        "SELECT * FROM coverage_rbac_levels ORDER BY resource, level",
        "SELECT * FROM baselines ORDER BY username, source_ip",
        "SELECT * FROM identities ORDER BY username",
        "SELECT id, hits, last_hit_ms FROM suppressions ORDER BY id",
        "SELECT * FROM credential_reads ORDER BY tgid",
        "SELECT * FROM bindings ORDER BY name",
        "SELECT * FROM node_network",
    ] {
        same_as_row_by_row(&batches, dump);
    }
}
