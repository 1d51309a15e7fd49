//! The managed control planes' live deliveries on a real loopback HTTPS
//! listener, attacked: `/v1/audit/{gke,eks,aks}` (webhook authentication),
//! `/v1/firehose/eks` (Firehose request/response contract, access key),
//! `/v1/pubsub/gke` (push envelope, OIDC token against a local JWKS).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use credtrail_aggregator::ingest::oidc::{OidcConfig, OidcVerifier};
use credtrail_aggregator::ingest::tls::server_config;
use credtrail_aggregator::ingest::webhook::{WebhookAuth, serve};
use credtrail_aggregator::metrics::Metrics;
use credtrail_aggregator::policy::Policy;
use credtrail_aggregator::state::AppState;
use credtrail_aggregator::store::{Store, Synchronous};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cloud_formats::{fixture, gzip};
use crate::common::tls::{Pki, client_config, pki};

const TOKEN: &str = "webhook-token-for-cloud-paths-4b1d";
const FIREHOSE_KEY: &str = "firehose-access-key-9c2e77aa";
const AUDIENCE: &str = "https://credtrail.example.com/v1/pubsub/gke";
const PUSH_SA: &str = "credtrail-push@acme-prod.iam.gserviceaccount.com";
const LIMIT: usize = 1 << 20;

struct Server {
    addr: SocketAddr,
    app: AppState,
    pki: Pki,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn start(configure: impl FnOnce(WebhookAuth, &std::path::Path) -> WebhookAuth) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let (pki, paths) = pki(dir.path());
    let store = Store::open(&dir.path().join("agg.db"), Synchronous::Normal).unwrap();
    let app = AppState::new(store, Policy::default(), Arc::new(Metrics::new())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = configure(WebhookAuth::default().with_tokens([TOKEN]), dir.path());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        server_config(&paths).unwrap(),
        auth,
        LIMIT,
        app.clone(),
        async {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        app,
        pki,
        _dir: dir,
        stop: Some(tx),
    }
}

fn full_auth(a: WebhookAuth, _dir: &std::path::Path) -> WebhookAuth {
    a.with_firehose_keys([FIREHOSE_KEY]).with_pubsub(
        OidcVerifier::new(OidcConfig {
            jwks_file: fixture("oidc-test-jwks.json"),
            audience: AUDIENCE.to_owned(),
            email: PUSH_SA.to_owned(),
        })
        .unwrap(),
    )
}

/// One HTTP/1.1 request over TLS to `path` with extra headers; (status, body).
async fn send(
    s: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(client_config(&s.pki, false))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (401, 413) before reading it all.
    let _ = tls.write_all(body).await;
    let mut resp = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut resp),
    )
    .await;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status: u16 = text
        .split(' ')
        .nth(1)
        .expect("an HTTP answer")
        .parse()
        .unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn stored(app: &AppState) -> i64 {
    app.store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))?))
        .await
        .unwrap()
}

fn metrics(app: &AppState) -> String {
    let mut s = String::new();
    prometheus_client::encoding::text::encode(&mut s, &app.metrics.registry).unwrap();
    s
}

/// 70 MiB of JSON whitespace in ~70 KiB: 70 gzip members of 1 MiB each.
fn bomb() -> Vec<u8> {
    let one = gzip(&vec![b' '; 1 << 20]);
    one.repeat(70)
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[tokio::test]
async fn format_paths_use_the_webhook_auth_and_read_entry_by_entry() {
    let s = start(|a, _| a).await;
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let gke = std::fs::read(fixture("gke-cloud-logging.jsonl")).unwrap();
    // No token, a wrong one: 401, nothing stored.
    assert_eq!(send(&s, "POST", "/v1/audit/gke", &[], &gke).await.0, 401);
    assert_eq!(
        send(
            &s,
            "POST",
            "/v1/audit/gke",
            &[("Authorization", "Bearer nope")],
            &gke
        )
        .await
        .0,
        401
    );
    assert_eq!(stored(&s.app).await, 0);
    let (code, body) = send(&s, "POST", "/v1/audit/gke", &auth, &gke).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["accepted"].as_u64(), v["refused"].as_u64()),
        (Some(5), Some(2)),
        "{v}"
    );
    assert!(v["first_refusal"].as_str().unwrap().contains("io.k8s.get"));
    assert_eq!(stored(&s.app).await, 5);

    // EKS, gzip as Kinesis/Firehose carry it.
    let eks = gzip(&std::fs::read(fixture("eks-cloudwatch.json")).unwrap());
    let (code, body) = send(&s, "POST", "/v1/audit/eks", &auth, &eks).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["accepted"].as_u64(), v["skipped"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );
    let m = metrics(&s.app);
    assert!(
        m.contains(r#"audit_skipped_total{source="eks",reason="control_message"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"rejected_total{source="gke",reason="unknown_method"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"rejected_total{source="gke",reason="not_k8s_audit"} 1"#),
        "{m}"
    );

    // AKS through a relay: the diagnostic setting's Event Hubs records.
    let aks = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/k8s-audit/sysdiglabs__aks-audit-log/samples__event.json"),
    )
    .unwrap();
    let (code, body) = send(&s, "POST", "/v1/audit/aks", &auth, &aks).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"accepted\":22"), "{body}");

    // A gzip bomb: refused, named, nothing stored.
    let before = stored(&s.app).await;
    let (code, body) = send(&s, "POST", "/v1/audit/eks", &auth, &bomb()).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("decompresses past the limit"), "{body}");
    // Over the body limit: 413. Nothing readable: 400. GET: 405.
    let big = vec![b' '; LIMIT + 1];
    assert_eq!(send(&s, "POST", "/v1/audit/gke", &auth, &big).await.0, 413);
    assert_eq!(
        send(&s, "POST", "/v1/audit/gke", &auth, b"{\"x\":1}")
            .await
            .0,
        400
    );
    assert_eq!(send(&s, "GET", "/v1/audit/gke", &auth, b"").await.0, 405);
    assert_eq!(stored(&s.app).await, before);
}

fn firehose_body(records: &[String]) -> Vec<u8> {
    let recs: Vec<_> = records
        .iter()
        .map(|d| serde_json::json!({ "data": d }))
        .collect();
    serde_json::json!({
        "requestId": "ed4acda5-034f-9f42-bba1-f29aea6d7d8f",
        "timestamp": 1793610845412u64,
        "records": recs,
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn firehose_contract_access_key_and_attacks() {
    let s = start(full_auth).await;
    let rid = "ed4acda5-034f-9f42-bba1-f29aea6d7d8f";
    let good = b64(&gzip(
        &std::fs::read(fixture("eks-cloudwatch.json")).unwrap(),
    ));
    let body = firehose_body(std::slice::from_ref(&good));
    let common = [
        ("X-Amz-Firehose-Protocol-Version", "1.0"),
        ("X-Amz-Firehose-Request-Id", rid),
        (
            "X-Amz-Firehose-Source-Arn",
            "arn:aws:firehose:eu-west-1:111122223333:deliverystream/eks-audit",
        ),
        (
            "X-Amz-Firehose-Common-Attributes",
            r#"{"commonAttributes":{"cluster":"prod-1"}}"#,
        ),
    ];
    let with = |key: Option<&'static str>| {
        let mut h = common.to_vec();
        if let Some(k) = key {
            h.push(("X-Amz-Firehose-Access-Key", k));
        }
        h
    };
    let bearer = format!("Bearer {TOKEN}");

    // No key (even with the webhook's bearer token), a forged key: refused,
    // answered in Firehose's error shape with the request id.
    let mut h = with(None);
    h.push(("Authorization", bearer.as_str()));
    let (code, b) = send(&s, "POST", "/v1/firehose/eks", &h, &body).await;
    assert_eq!(code, 401, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["requestId"], rid);
    assert!(v["timestamp"].as_i64().unwrap() > 0 && v["errorMessage"].is_string());
    let (code, b) = send(
        &s,
        "POST",
        "/v1/firehose/eks",
        &with(Some("firehose-access-key-9c2e77ab")),
        &body,
    )
    .await;
    assert_eq!(code, 403, "{b}");
    assert!(!b.contains(FIREHOSE_KEY));
    assert_eq!(stored(&s.app).await, 0);

    // The right key: 200 {"requestId","timestamp"} once stored.
    let (code, b) = send(
        &s,
        "POST",
        "/v1/firehose/eks",
        &with(Some(FIREHOSE_KEY)),
        &body,
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["requestId"], rid);
    assert!(v.get("errorMessage").is_none());
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    assert_eq!(stored(&s.app).await, 2);

    // Content-Encoding: gzip on the whole request (a resend: duplicates, still 200).
    let mut h = with(Some(FIREHOSE_KEY));
    h.push(("Content-Encoding", "gzip"));
    assert_eq!(
        send(&s, "POST", "/v1/firehose/eks", &h, &gzip(&body))
            .await
            .0,
        200
    );
    assert_eq!(stored(&s.app).await, 2);

    // Malformed base64 alone: 400 (retried, then Firehose's S3 backup).
    let key = with(Some(FIREHOSE_KEY));
    let (code, b) = send(
        &s,
        "POST",
        "/v1/firehose/eks",
        &key,
        &firehose_body(&["%%%not base64".into()]),
    )
    .await;
    assert_eq!(code, 400, "{b}");
    assert!(b.contains("not base64"), "{b}");
    // Beside a good record: the good one is stored, the bad one counted, 200.
    let (code, _) = send(
        &s,
        "POST",
        "/v1/firehose/eks",
        &key,
        &firehose_body(&["%%%".into(), good.clone()]),
    )
    .await;
    assert_eq!(code, 200);
    // A gzip bomb record, a gzip bomb body: refused without inflating.
    let (code, b) = send(
        &s,
        "POST",
        "/v1/firehose/eks",
        &key,
        &firehose_body(&[b64(&bomb())]),
    )
    .await;
    assert_eq!(code, 400, "{b}");
    assert!(b.contains("decompresses past the limit"), "{b}");
    let mut h = key.clone();
    h.push(("Content-Encoding", "gzip"));
    let (code, b) = send(&s, "POST", "/v1/firehose/eks", &h, &bomb()).await;
    assert_eq!(code, 400, "{b}");
    // Not a Firehose request; over the body limit (413, JSON).
    assert_eq!(
        send(&s, "POST", "/v1/firehose/eks", &key, b"[1,2]").await.0,
        400
    );
    let (code, b) = send(&s, "POST", "/v1/firehose/eks", &key, &vec![b' '; LIMIT + 1]).await;
    assert_eq!(code, 413, "{b}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&b).unwrap()["requestId"],
        rid
    );
    // A key past Firehose's 4096 bytes is not compared.
    let long = "k".repeat(5000);
    let mut h = common.to_vec();
    h.push(("X-Amz-Firehose-Access-Key", long.as_str()));
    assert_eq!(send(&s, "POST", "/v1/firehose/eks", &h, &body).await.0, 403);
    assert_eq!(stored(&s.app).await, 2);
    let m = metrics(&s.app);
    assert!(
        m.contains(r#"rejected_total{source="firehose",reason="forbidden_key"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"rejected_total{source="firehose",reason="unauthenticated"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn deliveries_not_configured_answer_404() {
    let s = start(|a, _| a).await;
    let (code, b) = send(
        &s,
        "POST",
        "/v1/firehose/eks",
        &[("X-Amz-Firehose-Access-Key", "x")],
        b"{}",
    )
    .await;
    assert_eq!(code, 404, "{b}");
    assert_eq!(
        send(
            &s,
            "POST",
            "/v1/pubsub/gke",
            &[("Authorization", "Bearer x")],
            b"{}"
        )
        .await
        .0,
        404
    );
}

fn der(pem_file: &str) -> Vec<u8> {
    let pem = std::fs::read_to_string(fixture(pem_file)).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn jwt(key_file: &str, kid: &str, claims: serde_json::Value) -> String {
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_der(&der(key_file)),
    )
    .unwrap()
}

fn claims() -> serde_json::Value {
    serde_json::json!({
        "aud": AUDIENCE,
        "azp": "112233445566778899000",
        "email": PUSH_SA,
        "email_verified": true,
        "exp": now() + 3600,
        "iat": now(),
        "iss": "https://accounts.google.com",
        "sub": "112233445566778899000",
    })
}

/// An Authorization value: `Bearer` and a token signed with `key_file`
/// under `kid`, its claims edited by `edit`.
fn bearer(key_file: &str, kid: &str, edit: impl FnOnce(&mut serde_json::Value)) -> Option<String> {
    let mut c = claims();
    edit(&mut c);
    Some(format!("Bearer {}", jwt(key_file, kid, c)))
}

/// [`bearer`] with the published key "test-a".
fn bearer_a(edit: impl FnOnce(&mut serde_json::Value)) -> Option<String> {
    bearer("oidc-test-a.pem", "test-a", edit)
}

fn push(data: &str) -> Vec<u8> {
    serde_json::json!({
        "message": {
            "attributes": {"logging.googleapis.com/timestamp": "2026-11-02T09:14:05.412733Z"},
            "data": data,
            "messageId": "13386929212637422",
            "message_id": "13386929212637422",
            "publishTime": "2026-11-02T09:14:06.01Z",
            "publish_time": "2026-11-02T09:14:06.01Z",
        },
        "subscription": "projects/acme-prod/subscriptions/credtrail-audit-push",
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn pubsub_push_verifies_the_oidc_token_and_reads_the_entry() {
    let s = start(full_auth).await;
    let entries = std::fs::read_to_string(fixture("gke-cloud-logging.jsonl")).unwrap();
    let first = entries.lines().next().unwrap();
    let body = push(&b64(first.as_bytes()));
    let ok = bearer_a(|_| {}).unwrap();
    let attacks: Vec<(&str, Option<String>, u16)> = vec![
        ("no token", None, 401),
        (
            "the webhook's bearer token",
            Some(format!("Bearer {TOKEN}")),
            403,
        ),
        (
            "forged: another key under the published kid",
            bearer("oidc-test-b.pem", "test-a", |_| {}),
            403,
        ),
        (
            "unknown kid",
            bearer("oidc-test-b.pem", "test-b", |_| {}),
            403,
        ),
        (
            "expired",
            bearer_a(|c| {
                c["exp"] = (now() - 600).into();
                c["iat"] = (now() - 4200).into();
            }),
            403,
        ),
        (
            "wrong audience",
            bearer_a(|c| c["aud"] = "https://elsewhere.example.com/".into()),
            403,
        ),
        (
            "wrong issuer",
            bearer_a(|c| c["iss"] = "https://evil.example.com".into()),
            403,
        ),
        (
            "another service account",
            bearer_a(|c| c["email"] = "attacker@evil-project.iam.gserviceaccount.com".into()),
            403,
        ),
        (
            "email not verified",
            bearer_a(|c| c["email_verified"] = false.into()),
            403,
        ),
        (
            "alg none",
            Some({
                let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(r#"{"alg":"none","kid":"test-a"}"#);
                let p =
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims().to_string());
                format!("Bearer {h}.{p}.")
            }),
            403,
        ),
        ("garbage", Some("Bearer a.b.c".to_owned()), 403),
    ];
    for (what, authz, want) in &attacks {
        let h: Vec<(&str, &str)> = authz
            .iter()
            .map(|a| ("Authorization", a.as_str()))
            .collect();
        let (code, b) = send(&s, "POST", "/v1/pubsub/gke", &h, &body).await;
        assert_eq!(code, *want, "{what}: {b}");
    }
    assert_eq!(stored(&s.app).await, 0);

    let h = [("Authorization", ok.as_str())];
    let (code, b) = send(&s, "POST", "/v1/pubsub/gke", &h, &body).await;
    assert_eq!(code, 200, "{b}");
    assert!(b.contains("\"accepted\":1"), "{b}");
    assert_eq!(stored(&s.app).await, 1);
    // Malformed base64 / an odd entry: acknowledged, counted, nothing stored.
    let (code, b) = send(&s, "POST", "/v1/pubsub/gke", &h, &push("%%%")).await;
    assert_eq!((code, b.contains("\"refused\":1")), (200, true), "{b}");
    let odd = entries.lines().nth(5).unwrap();
    let (code, b) = send(
        &s,
        "POST",
        "/v1/pubsub/gke",
        &h,
        &push(&b64(odd.as_bytes())),
    )
    .await;
    assert_eq!((code, b.contains("io.k8s.get")), (200, true), "{b}");
    // Not a push envelope: 400; over the limit: 413.
    assert_eq!(
        send(&s, "POST", "/v1/pubsub/gke", &h, b"{\"nope\":1}")
            .await
            .0,
        400
    );
    assert_eq!(
        send(&s, "POST", "/v1/pubsub/gke", &h, &vec![b' '; LIMIT + 1])
            .await
            .0,
        413
    );
    assert_eq!(stored(&s.app).await, 1);
    let m = metrics(&s.app);
    assert!(
        m.contains(r#"rejected_total{source="pubsub",reason="wrong_email"} 2"#),
        "{m}"
    );
    assert!(
        m.contains(r#"rejected_total{source="pubsub",reason="unauthenticated"} 1"#),
        "{m}"
    );
}

fn serve_config(
    dir: &std::path::Path,
    cloud: credtrail_aggregator::server::CloudInputs,
) -> credtrail_aggregator::server::ServeConfig {
    let (_, tls) = pki(dir);
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    credtrail_aggregator::server::ServeConfig {
        db: dir.join("agg.db"),
        db_synchronous: Synchronous::Normal,
        policy: None,
        retention: None,
        webhook_listen: Some(addr),
        webhook_tls: Some(tls),
        webhook_token_file: Some(token_file),
        webhook_body_limit: LIMIT,
        webhook_client_subjects: Vec::new(),
        audit_log_paths: vec![],
        cloud,
        agent_listen: None,
        agent_tls: None,
        api_listen: None,
        grpc_listen: None,
        api_auth: Default::default(),
        agent_identity: Default::default(),
        limits: Default::default(),
    }
}

#[tokio::test]
async fn serve_refuses_an_empty_firehose_key_file_and_an_unusable_jwks() {
    use credtrail_aggregator::server::{CloudInputs, serve};
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("firehose-keys");
    std::fs::write(&keys, "\n  \n").unwrap();
    let cfg = serve_config(
        dir.path(),
        CloudInputs {
            firehose_access_key_file: Some(keys),
            ..Default::default()
        },
    );
    let err = serve(cfg, std::future::pending()).await.unwrap_err();
    assert!(err.to_string().contains("holds no key"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, r#"{"keys":[]}"#).unwrap();
    let cfg = serve_config(
        dir.path(),
        CloudInputs {
            pubsub: Some(OidcConfig {
                jwks_file: jwks,
                audience: AUDIENCE.into(),
                email: PUSH_SA.into(),
            }),
            ..Default::default()
        },
    );
    let err = serve(cfg, std::future::pending()).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("no usable public key"),
        "{err:#}"
    );
}

#[tokio::test]
async fn hundreds_of_refused_entries_are_counted_in_one_answer() {
    let s = start(|a, _| a).await;
    let bearer = format!("Bearer {TOKEN}");
    let entries = std::fs::read_to_string(fixture("gke-cloud-logging.jsonl")).unwrap();
    let odd = entries.lines().nth(5).unwrap();
    let good = entries.lines().next().unwrap();
    // As many as the 1 MiB body limit holds.
    let n = (LIMIT - good.len() - 16) / (odd.len() + 1);
    assert!(n > 500, "{n}");
    let mut doc = String::new();
    for _ in 0..n {
        doc.push_str(odd);
        doc.push('\n');
    }
    doc.push_str(good);
    let (code, b) = send(
        &s,
        "POST",
        "/v1/audit/gke",
        &[("Authorization", bearer.as_str())],
        doc.as_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    assert!(
        b.contains(&format!("\"refused\":{n}")) && b.contains("\"accepted\":1"),
        "{b}"
    );
    let m = metrics(&s.app);
    assert!(
        m.contains(&format!(
            r#"rejected_total{{source="gke",reason="unknown_method"}} {n}"#
        )),
        "{m}"
    );
}

#[tokio::test]
async fn a_slow_body_on_the_cloud_paths_gets_408_from_the_webhook_limits() {
    use credtrail_aggregator::ingest::webhook::serve_limited;
    use credtrail_aggregator::listen::Limits;
    let dir = tempfile::tempdir().unwrap();
    let (pki, paths) = pki(dir.path());
    let store = Store::open(&dir.path().join("agg.db"), Synchronous::Normal).unwrap();
    let app = AppState::new(store, Policy::default(), Arc::new(Metrics::new())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = full_auth(WebhookAuth::default().with_tokens([TOKEN]), dir.path());
    let limits = Limits {
        body_timeout: std::time::Duration::from_millis(500),
        ..Limits::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_limited(
        listener,
        server_config(&paths).unwrap(),
        auth,
        LIMIT,
        limits,
        app,
        async {
            let _ = rx.await;
        },
    ));
    for (path, header) in [
        (
            "/v1/firehose/eks",
            format!("X-Amz-Firehose-Access-Key: {FIREHOSE_KEY}"),
        ),
        ("/v1/audit/eks", format!("Authorization: Bearer {TOKEN}")),
    ] {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(client_config(&pki, false))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{header}\r\nContent-Length: 1000\r\n\r\n{{\"records\":["
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tls.read_to_end(&mut resp),
        )
        .await;
        assert!(
            r.is_ok(),
            "{path}: the server did not end a stalled body within 5 s"
        );
        let text = String::from_utf8_lossy(&resp);
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
    }
    let _ = tx.send(());
}
