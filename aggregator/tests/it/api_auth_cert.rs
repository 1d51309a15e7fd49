//! Client certificates on the query listeners (`--api-tls-cert`,
//! `--api-client-ca`, `--api-cert-role`): over real TLS on loopback, a
//! certificate from the CA whose subject a rule names gets that role; one no
//! rule names, or none at all, gets 401 / UNAUTHENTICATED; a bearer token
//! still works on the same listener.

use crate::api_support;
use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;

use api_support::{VIEWER_TOKEN, token_file_text};
use common::tls::{Pki, client_config, pki};
use credtrail_aggregator::auth::config::ApiAuthConfig;
use credtrail_aggregator::listen::Limits;
use credtrail_aggregator::state::AppState;
use credtrail_proto::pb::query as pb;
use credtrail_proto::pb::query::query_service_client::QueryServiceClient;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// One HTTP/1.1 request over TLS; (status, body).
async fn call(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        text.split_once("\r\n\r\n")
            .map(|x| x.1.to_owned())
            .unwrap_or_default(),
    )
}

struct Served {
    http: SocketAddr,
    grpc: SocketAddr,
    pki: Pki,
    state: AppState,
    _dir: tempfile::TempDir,
}

async fn start(cert_roles: &[&str]) -> Served {
    start_limited(cert_roles, Limits::default()).await
}

async fn start_limited(cert_roles: &[&str], limits: Limits) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (pki, paths) = pki(dir.path());
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, token_file_text()).unwrap();
    let http_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (http, grpc) = (http_l.local_addr().unwrap(), grpc_l.local_addr().unwrap());
    let auth = ApiAuthConfig {
        token_file: Some(tokens),
        tls_cert: Some(paths.cert.clone()),
        tls_key: Some(paths.key.clone()),
        client_ca: paths.client_ca.clone(),
        cert_roles: cert_roles.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
    .build(&[http, grpc])
    .unwrap();
    let state = AppState::in_memory(api_support::cluster_policy(""))
        .unwrap()
        .with_auth(auth);
    let st = state.clone();
    tokio::spawn(async move {
        credtrail_aggregator::api::http::serve_limited(http_l, limits, st, std::future::pending())
            .await
            .unwrap()
    });
    let st = state.clone();
    tokio::spawn(async move {
        credtrail_aggregator::api::grpc::serve_limited(grpc_l, limits, st, std::future::pending())
            .await
            .unwrap()
    });
    Served {
        http,
        grpc,
        pki,
        state,
        _dir: dir,
    }
}

async fn grpc_client(s: &Served, with_cert: bool) -> QueryServiceClient<tonic::transport::Channel> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&s.pki.ca_pem))
        .domain_name("127.0.0.1");
    if with_cert {
        tls = tls.identity(Identity::from_pem(
            &s.pki.client_cert_pem,
            &s.pki.client_key_pem,
        ));
    }
    let ch = tonic::transport::Endpoint::from_shared(format!("https://{}", s.grpc))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    QueryServiceClient::new(ch)
}

#[tokio::test]
async fn a_mapped_client_certificate_gets_its_role_over_https_and_grpc() {
    let s = start(&["CN=kube-apiserver:responder"]).await;
    let (with, without) = (client_config(&s.pki, true), client_config(&s.pki, false));
    let (code, body) = call(s.http, without.clone(), "GET", "/api/v1/alerts", None, "").await;
    assert_eq!(code, 401, "{body}");
    let (code, body) = call(s.http, with.clone(), "GET", "/api/v1/alerts", None, "").await;
    assert_eq!(code, 200, "{body}");
    let expires = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let sup = serde_json::json!({"owner": "soc", "reason": "r", "expires": expires,
                                 "match": {"username": "eve"}})
    .to_string();
    let (code, body) = call(
        s.http,
        with.clone(),
        "POST",
        "/api/v1/suppressions",
        None,
        &sup,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert!(
        body.contains("\"created_by\":\"cert:kube-apiserver\""),
        "{body}"
    );
    // A token on the same TLS listener still works (and wins over the certificate).
    let (code, body) = call(
        s.http,
        with,
        "POST",
        "/api/v1/suppressions",
        Some(VIEWER_TOKEN),
        &sup,
    )
    .await;
    assert_eq!(code, 403, "{body}");

    let mut anon = grpc_client(&s, false).await;
    let e = anon
        .list_alerts(pb::ListAlertsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let mut c = grpc_client(&s, true).await;
    c.list_alerts(pb::ListAlertsRequest::default())
        .await
        .expect("the certificate's role reads");
}

#[tokio::test]
async fn a_certificate_no_rule_names_authenticates_nobody() {
    let s = start(&["CN=someone-else:admin", "O=soc:viewer"]).await;
    let with = client_config(&s.pki, true);
    let (code, body) = call(s.http, with, "GET", "/api/v1/alerts", None, "").await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("maps to no role"), "{body}");
    let mut c = grpc_client(&s, true).await;
    let e = c
        .list_alerts(pb::ListAlertsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
}

#[test]
fn client_certificates_need_tls_and_a_ca() {
    let e = ApiAuthConfig {
        cert_roles: vec!["CN=a:viewer".into()],
        token_file: None,
        ..Default::default()
    }
    .build(&["127.0.0.1:1".parse().unwrap()])
    .unwrap_err();
    assert!(e.to_string().contains("--api-client-ca"), "{e}");
    let e = ApiAuthConfig {
        client_ca: Some("/x".into()),
        ..Default::default()
    }
    .build(&["127.0.0.1:1".parse().unwrap()])
    .unwrap_err();
    assert!(e.to_string().contains("--api-tls-cert"), "{e}");
}

/// The TLS query listeners are served by the shared accept loop: a client
/// that opens TCP and never finishes its handshake is dropped after the
/// handshake timeout and counted, on HTTPS and gRPC alike; the listener
/// still serves others afterwards.
#[tokio::test]
async fn a_silent_tls_client_is_dropped_after_the_handshake_timeout() {
    let limits = Limits {
        handshake_timeout: std::time::Duration::from_secs(1),
        ..Limits::default()
    };
    let s = start_limited(&["CN=nobody:viewer"], limits).await;
    for addr in [s.http, s.grpc] {
        let mut silent = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 64];
        // Generous bound (the machine may be busy); the timeout is 1 s.
        let r = tokio::time::timeout(std::time::Duration::from_secs(8), silent.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{addr}: a silent client was still connected after 8 s"));
        assert!(matches!(r, Ok(0) | Err(_)), "{addr}: got {r:?}");
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(900),
            "{addr}: closed before the handshake timeout"
        );
    }
    let m = s.state.metrics.encode();
    for listener in ["http_api", "grpc_api"] {
        let line = format!(
            "credtrail_connections_dropped_total{{listener=\"{listener}\",reason=\"handshake_timeout\"}} 1"
        );
        assert!(m.contains(&line), "no {line} in:\n{m}");
    }
    let viewer = client_config(&s.pki, false);
    let (status, _) = call(
        s.http,
        viewer,
        "GET",
        "/api/v1/alerts",
        Some(VIEWER_TOKEN),
        "",
    )
    .await;
    assert_eq!(status, 200);
}
