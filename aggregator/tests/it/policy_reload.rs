//! The policy reloads in place (issue 13, item 7), on real listeners through
//! `server::serve`: the `--policy` file lives in a directory laid out as the
//! kubelet lays out a ConfigMap volume (`policy.yaml -> ..data/policy.yaml`,
//! `..data -> ..<timestamp>`), and every edit is the kubelet's atomic swap of
//! `..data`. A grant that policy A suppresses is stored silently; after the
//! swap to policy B (no suppression) the same grant alerts; a broken file
//! leaves B in force and is counted; going back to A silences it again.

use crate::api_support::{VIEWER_TOKEN, grant_to_anonymous, token_file_text};
use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::tls::{client_config, pki, post};
use credtrail_aggregator::server::{ServeConfig, ServeLimits, serve};
use credtrail_aggregator::store::Synchronous;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WEBHOOK_TOKEN: &str = "tok-reload-123";
const ACTOR: &str = "deploy-bot";

/// Policy A: AN1579 alerts by `deploy-bot` are suppressed (a known migration).
fn policy_a() -> String {
    let expires = (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339();
    format!(
        "suppressions:\n  - id: migration\n    owner: soc\n    reason: INC-1\n    expires: \"{expires}\"\n    match:\n      analytic: AN1579\n      username: {ACTOR}\n"
    )
}

/// Policy B: no suppression (the migration is over).
const POLICY_B: &str = "detection:\n  max_suppression: 7d\n";

/// A new version of the ConfigMap, written as the kubelet does.
fn kubelet_write(dir: &Path, version: u32, text: &str) {
    let ts = dir.join(format!("..2026_11_29_18_00_{version:02}.000000001"));
    std::fs::create_dir(&ts).unwrap();
    std::fs::write(ts.join("policy.yaml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(ts.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let file = dir.join("policy.yaml");
    if std::fs::symlink_metadata(&file).is_err() {
        std::os::unix::fs::symlink("..data/policy.yaml", &file).unwrap();
    }
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn metrics(api: SocketAddr) -> String {
    let mut s = TcpStream::connect(api).await.unwrap();
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {VIEWER_TOKEN}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("/metrics answers")
        .unwrap();
    out
}

/// The value of the first metric line starting with `prefix` (0 when absent).
fn value(text: &str, prefix: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Active alerts raised so far (suppressed ones are stored, not counted).
fn alerts(text: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with("credtrail_alerts_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

async fn wait_metric(api: SocketAddr, prefix: &str, want: u64, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = metrics(api).await;
        if value(&m, prefix) == want {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {prefix} never reached {want} within 5 s:\n{}",
            m.lines()
                .filter(|l| l.contains("policy"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configmap_swap_changes_the_verdict_and_a_broken_file_keeps_the_old_policy() {
    credtrail_aggregator::policy::watch::set_check_interval(Duration::from_millis(200));
    let dir = tempfile::tempdir().unwrap();
    let (pki, tls) = pki(dir.path());
    let policy_dir = dir.path().join("policy");
    std::fs::create_dir(&policy_dir).unwrap();
    let a = policy_a();
    kubelet_write(&policy_dir, 1, &a);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{WEBHOOK_TOKEN}\n")).unwrap();
    let api_tokens = dir.path().join("api-tokens");
    std::fs::write(&api_tokens, token_file_text()).unwrap();
    let (webhook, api) = (free_port(), free_port());
    let cfg = ServeConfig {
        db: dir.path().join("agg.db"),
        db_synchronous: Synchronous::Normal,
        policy: Some(policy_dir.join("policy.yaml")),
        retention: None,
        webhook_listen: Some(webhook),
        webhook_tls: Some(tls),
        webhook_token_file: Some(token_file),
        webhook_body_limit: 1 << 20,
        webhook_client_subjects: vec![],
        audit_log_paths: vec![],
        cloud: Default::default(),
        agent_listen: None,
        agent_tls: None,
        api_listen: Some(api),
        agent_identity: Default::default(),
        grpc_listen: None,
        api_auth: credtrail_aggregator::auth::config::ApiAuthConfig {
            token_file: Some(api_tokens),
            ..Default::default()
        },
        limits: ServeLimits::default(),
    };
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(cfg, async {
        let _ = rx.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(10);
    for addr in [webhook, api] {
        while TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "listener {addr} did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let client = client_config(&pki, false);
    let mut n = 0;
    let mut grant = || {
        n += 1;
        let ev = grant_to_anonymous(
            &format!("reload-{n}"),
            &format!("open-door-{n}"),
            ACTOR,
            "127.0.10.5",
            chrono::Utc::now(),
        );
        format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{ev}]}}"#)
            .into_bytes()
    };

    // Policy A in force: the grant is stored, suppressed.
    let m = metrics(api).await;
    assert_eq!(
        value(
            &m,
            &format!("credtrail_policy_info{{sha256=\"{}\"}}", sha256_hex(&a))
        ),
        1,
        "the policy in force is named by its hash"
    );
    assert_eq!(value(&m, "credtrail_policy_generation "), 0);
    let (status, body) = post(webhook, client.clone(), Some(WEBHOOK_TOKEN), &grant()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(alerts(&metrics(api).await), 0, "policy A suppresses it");

    // The ConfigMap is edited: the kubelet swaps `..data`.
    kubelet_write(&policy_dir, 2, POLICY_B);
    let m = wait_metric(
        api,
        "credtrail_policy_reloads_total{result=\"ok\"}",
        1,
        "the swap to policy B",
    )
    .await;
    assert_eq!(value(&m, "credtrail_policy_generation "), 1);
    assert_eq!(
        value(
            &m,
            &format!(
                "credtrail_policy_info{{sha256=\"{}\"}}",
                sha256_hex(POLICY_B)
            )
        ),
        1
    );
    let (status, body) = post(webhook, client.clone(), Some(WEBHOOK_TOKEN), &grant()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        alerts(&metrics(api).await),
        1,
        "policy B raises the same grant"
    );

    // A broken edit: counted, logged, and policy B stays in force.
    kubelet_write(&policy_dir, 3, "suppressions:\n  - id: [unclosed\n");
    let m = wait_metric(
        api,
        "credtrail_policy_reloads_total{result=\"invalid\"}",
        1,
        "the broken file",
    )
    .await;
    assert_eq!(
        value(&m, "credtrail_policy_generation "),
        1,
        "no reload applied"
    );
    assert_eq!(
        value(
            &m,
            &format!(
                "credtrail_policy_info{{sha256=\"{}\"}}",
                sha256_hex(POLICY_B)
            )
        ),
        1
    );
    let (status, body) = post(webhook, client.clone(), Some(WEBHOOK_TOKEN), &grant()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(alerts(&metrics(api).await), 2, "policy B still judges");
    // Looking again at the same broken content does not count it again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        value(
            &metrics(api).await,
            "credtrail_policy_reloads_total{result=\"invalid\"}"
        ),
        1
    );

    // Back to policy A: silenced again.
    kubelet_write(&policy_dir, 4, &a);
    wait_metric(
        api,
        "credtrail_policy_reloads_total{result=\"ok\"}",
        2,
        "the swap back to policy A",
    )
    .await;
    let (status, body) = post(webhook, client, Some(WEBHOOK_TOKEN), &grant()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        alerts(&metrics(api).await),
        2,
        "policy A suppresses it again"
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("serve stops")
        .unwrap()
        .unwrap();
}
