//! `server::serve` composes the listeners: the HTTPS webhook and a tailed
//! audit log feed one store; shutdown is clean.

use crate::common;

use std::time::Duration;

use common::tls::{client_config, pki, post};
use credtrail_aggregator::server::{ServeConfig, serve};
use credtrail_aggregator::store::{Store, Synchronous};

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn line(id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{{"username":"u"}},"sourceIPs":["127.0.1.1"],"requestReceivedTimestamp":"2026-01-01T00:00:00Z"}}"#
    )
}

#[tokio::test]
async fn serve_runs_webhook_and_log_tail_into_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, tls) = pki(dir.path());
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "tok-123\n").unwrap();
    let log = dir.path().join("audit.log");
    std::fs::write(&log, line("log-1") + "\n" + &line("log-2") + "\n").unwrap();
    let db = dir.path().join("agg.db");
    let addr = free_port();
    let cfg = ServeConfig {
        db: db.clone(),
        db_synchronous: Synchronous::Full,
        policy: None,
        retention: Some(chrono::Duration::days(3650)),
        webhook_listen: Some(addr),
        webhook_tls: Some(tls),
        webhook_token_file: Some(token_file),
        webhook_body_limit: 1 << 20,
        webhook_client_subjects: Vec::new(),
        audit_log_paths: vec![log.clone()],
        cloud: Default::default(),
        agent_listen: None,
        agent_tls: None,
        api_listen: None,
        agent_identity: Default::default(),
        grpc_listen: None,
        api_auth: Default::default(),
        limits: Default::default(),
    };
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(cfg, async {
        let _ = rx.await;
    }));
    let body = format!(r#"{{"kind":"EventList","items":[{}]}}"#, line("hook-1"));
    let mut status = 0;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            status = post(
                addr,
                client_config(&pki, false),
                Some("tok-123"),
                body.as_bytes(),
            )
            .await
            .0;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);
    let reader = Store::open(&db, Synchronous::Full).unwrap();
    let mut n = 0i64;
    for _ in 0..200 {
        n = reader
            .read(|c| Ok(c.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))?))
            .await
            .unwrap();
        if n == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(n, 3, "two log lines and one webhook event");
    let sources: Vec<String> = reader
        .read(|c| {
            let mut st = c.prepare("SELECT source FROM coverage_audit_sources ORDER BY source")?;
            let v = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(v)
        })
        .await
        .unwrap();
    assert_eq!(
        sources,
        vec![format!("log:{}", log.display()), "webhook".to_string()]
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn serve_refuses_an_unauthenticated_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let (_, mut tls) = pki(dir.path());
    tls.client_ca = None;
    let cfg = ServeConfig {
        db: dir.path().join("agg.db"),
        db_synchronous: Synchronous::Full,
        policy: None,
        retention: None,
        webhook_listen: Some(free_port()),
        webhook_tls: Some(tls),
        webhook_token_file: None,
        webhook_body_limit: 1 << 20,
        webhook_client_subjects: Vec::new(),
        audit_log_paths: vec![],
        cloud: Default::default(),
        agent_listen: None,
        agent_tls: None,
        api_listen: None,
        agent_identity: Default::default(),
        grpc_listen: None,
        api_auth: Default::default(),
        limits: Default::default(),
    };
    let err = serve(cfg, std::future::pending()).await.unwrap_err();
    assert!(err.to_string().contains("needs authentication"), "{err}");
}
