//! The query API as `credtrail-aggregator serve` runs it (`server::serve`):
//! both listeners come up, answer from the same store the log tailer feeds,
//! and stop on shutdown.

use crate::api_support;

use std::net::SocketAddr;
use std::time::Duration;

use api_support::{ADMIN_TOKEN, WithToken, base_time, grant_to_anonymous, token_file_text};
use credtrail_aggregator::server::{ServeConfig, serve};
use credtrail_aggregator::store::Synchronous;
use credtrail_proto::pb::query as pb;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A loopback port that was free a moment ago.
fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let req = hyper::Request::get(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Empty::new())
        .unwrap();
    let resp = client.request(req).await.ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8(body.to_vec()).unwrap()))
}

#[tokio::test]
async fn serve_runs_both_query_listeners_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let line =
        grant_to_anonymous("srv-1", "srv-1", "mallory", "127.0.66.1", base_time()).to_string();
    std::fs::write(&log, format!("{line}\n")).unwrap();
    let (api, grpc) = (free_port(), free_port());
    let tokens = dir.path().join("api-tokens");
    std::fs::write(&tokens, token_file_text()).unwrap();
    let cfg = ServeConfig {
        db: dir.path().join("credtrail.db"),
        db_synchronous: Synchronous::Full,
        policy: None,
        retention: None,
        webhook_listen: None,
        webhook_tls: None,
        webhook_token_file: None,
        webhook_body_limit: 1 << 20,
        webhook_client_subjects: Vec::new(),
        audit_log_paths: vec![log],
        cloud: Default::default(),
        agent_listen: None,
        agent_tls: None,
        api_listen: Some(api),
        agent_identity: Default::default(),
        grpc_listen: Some(grpc),
        api_auth: credtrail_aggregator::auth::config::ApiAuthConfig {
            token_file: Some(tokens),
            ..Default::default()
        },
        limits: Default::default(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(cfg, async move {
        let _ = stop_rx.await;
    }));

    // Ready, then the tailed event's alert is listed over HTTP and gRPC.
    let listed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some((200, body)) = get(api, "/api/v1/alerts").await {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                if v["alerts"].as_array().is_some_and(|a| !a.is_empty()) {
                    return v;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the alert is listed within 20 s");
    assert_eq!(listed["alerts"][0]["identity"]["username"], "mallory");
    assert_eq!(get(api, "/readyz").await.unwrap(), (200, "ready\n".into()));
    let (status, page) = get(api, "/").await.unwrap();
    assert_eq!(status, 200);
    assert!(page.contains("/app.js"));

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = pb::query_service_client::QueryServiceClient::with_interceptor(
        channel,
        WithToken(Some(ADMIN_TOKEN)),
    );
    let alerts = c
        .list_alerts(pb::ListAlertsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .alerts;
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0].id,
        listed["alerts"][0]["id"].as_str().unwrap(),
        "both APIs read the same store"
    );

    stop_tx.send(()).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns after shutdown")
        .unwrap();
    out.expect("serve ends without error");
    assert!(
        get(api, "/healthz").await.is_none(),
        "the HTTP listener is closed"
    );
}
