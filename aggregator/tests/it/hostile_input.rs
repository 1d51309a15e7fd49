//! Bad input at the audit webhook, on a real HTTPS listener on loopback
//! (issue 8, point 6): implausible event times get 400 (counted) instead of a
//! 5xx the API server would retry forever; an agent `ApiConnect` at chrono's
//! minimum does not break detection; 5xx bodies carry no internal text; the
//! `Bearer` scheme is matched in any case; a client certificate from the
//! webhook's CA whose subject is not on the allowlist (a node's) gets 403.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use credtrail_aggregator::ingest::tls::{TlsPaths, server_config};
use credtrail_aggregator::ingest::webhook::{WebhookAuth, serve};
use credtrail_aggregator::metrics::Metrics;
use credtrail_aggregator::policy::Policy;
use credtrail_aggregator::state::AppState;
use credtrail_aggregator::store::{Store, Synchronous};
use credtrail_proto::model::Observation;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

const TOKEN: &str = "hostile-input-webhook-token-8c1d";

/// A client certificate (PEM cert, PEM key) signed by the webhook's CA.
struct ClientPem {
    cert: String,
    key: String,
}

struct Pki {
    ca_pem: String,
    apiserver: ClientPem,
    node: ClientPem,
}

fn pki(dir: &Path) -> (Pki, TlsPaths) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cluster CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client = |cn: &str, org: Option<&str>| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        if let Some(o) = org {
            p.distinguished_name.push(DnType::OrganizationName, o);
        }
        p.distinguished_name.push(DnType::CommonName, cn);
        ClientPem {
            cert: p.signed_by(&key, &ca).unwrap().pem(),
            key: key.serialize_pem(),
        }
    };
    let w = |name: &str, s: &str| {
        let p = dir.join(name);
        std::fs::write(&p, s).unwrap();
        p
    };
    let paths = TlsPaths {
        cert: w("server.pem", &server.pem()),
        key: w("server.key", &server_key.serialize_pem()),
        client_ca: Some(w("ca.pem", &ca.pem())),
    };
    let pki = Pki {
        ca_pem: ca.pem(),
        apiserver: client("kube-apiserver", None),
        // What a kubelet's client certificate from the same cluster CA looks like.
        node: client("system:node:node-a", Some("system:nodes")),
    };
    (pki, paths)
}

fn client_config(pki: &Pki, cert: Option<&ClientPem>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pki.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match cert {
        Some(c) => {
            let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut c.cert.as_bytes())
                .map(Result::unwrap)
                .collect();
            let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut c.key.as_bytes())
                .unwrap()
                .unwrap();
            b.with_client_auth_cert(certs, key).unwrap()
        }
        None => b.with_no_client_auth(),
    })
}

use crate::common::tls::post_raw as post;

/// A service-account token use from 10.0.0.5 received at `time`.
fn event(id: &str, time: &str) -> String {
    format!(
        r#"{{"level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets","verb":"list","user":{{"username":"system:serviceaccount:default:app","groups":["system:serviceaccounts"],"extra":{{"authentication.kubernetes.io/credential-id":["JTI=hostile-1"]}}}},"sourceIPs":["10.0.0.5"],"objectRef":{{"resource":"secrets","namespace":"default"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"{time}","stageTimestamp":"{time}"}}"#
    )
}

fn list(events: &[String]) -> Vec<u8> {
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
        events.join(",")
    )
    .into_bytes()
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

async fn stored(app: &AppState) -> i64 {
    app.store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))?))
        .await
        .unwrap()
}

struct Webhook {
    addr: SocketAddr,
    app: AppState,
    pki: Pki,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Webhook {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (pki, paths) = pki(dir.path());
        let store = Store::open(&dir.path().join("agg.db"), Synchronous::Normal).unwrap();
        let app = AppState::new(store, Policy::default(), Arc::new(Metrics::new())).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let auth = WebhookAuth::default()
            .with_tokens([TOKEN])
            .with_client_cert(true);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            server_config(&paths).unwrap(),
            auth,
            1 << 20,
            app.clone(),
            async {
                let _ = stop_rx.await;
            },
        ));
        Self {
            addr,
            app,
            pki,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn post_token(&self, body: &[u8]) -> (u16, String) {
        let cfg = client_config(&self.pki, None);
        post(self.addr, cfg, Some(&format!("Bearer {TOKEN}")), body).await
    }

    fn rejected(&self, reason: &str) -> u64 {
        self.app
            .metrics
            .rejected
            .get_or_create(&credtrail_aggregator::metrics::RejectLabel {
                source: "webhook".into(),
                reason: reason.into(),
            })
            .get()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn implausible_audit_times_get_400_and_are_counted_never_5xx() {
    let w = Webhook::start().await;
    let tomorrow_plus = (chrono::Utc::now() + chrono::TimeDelta::days(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let cases = [
        // chrono's minimum year: used to overflow in detection and answer 503 "retry".
        ("-262143-01-01T00:00:00Z", "before 2000"),
        ("1970-01-01T00:00:00Z", "before 2000"),
        ("1999-12-31T23:59:59Z", "before 2000"),
        ("+262142-12-31T23:59:59Z", "more than a day after"),
        (tomorrow_plus.as_str(), "more than a day after"),
    ];
    for (i, (time, why)) in cases.iter().enumerate() {
        // A good event first: the whole batch is refused, nothing half-stored.
        let body = list(&[
            event(&format!("ok{i}"), &now_rfc3339()),
            event(&format!("bad{i}"), time),
        ]);
        let (code, text) = w.post_token(&body).await;
        assert_eq!(code, 400, "{time}: {text}");
        assert!(
            text.contains("items[1]") && text.contains(why),
            "{time}: {text}"
        );
    }
    assert_eq!(stored(&w.app).await, 0);
    assert_eq!(w.rejected("implausible_time"), cases.len() as u64);
    let metrics = w.app.metrics.encode();
    assert!(
        metrics.contains(&format!(
            r#"credtrail_rejected_total{{source="webhook",reason="implausible_time"}} {}"#,
            cases.len()
        )),
        "{metrics}"
    );
    // The listener still takes plausible batches.
    let (code, text) = w.post_token(&list(&[event("fine", &now_rfc3339())])).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(stored(&w.app).await, 1);
    w.stop().await;
}

#[tokio::test]
async fn api_connect_at_chrono_minimum_is_handled_and_the_webhook_keeps_answering() {
    let w = Webhook::start().await;
    // An agent observation at chrono's minimum + 60 s: a host process on
    // node-a connected from 10.0.0.5 (the address the audit event comes from).
    // The agent stream refuses such a time (`plausible::check_observation`);
    // here it is handed to the pipeline directly, so the detector's own time
    // arithmetic is what is tested: it used to panic (`DateTime - TimeDelta
    // overflowed`) and every later batch answered 503.
    let min_plus_60 = chrono::DateTime::<chrono::Utc>::MIN_UTC + chrono::TimeDelta::seconds(60);
    let obs: Observation = serde_json::from_value(serde_json::json!({
        "id": "node-a/boot/1",
        "time": min_plus_60,
        "node": "node-a",
        "type": "api_connect",
        "source": "cgroup_connect",
        "process": null,
        "local": "10.0.0.5:40000",
        "remote": "10.96.0.1:443",
    }))
    .unwrap();
    assert!(
        credtrail_aggregator::plausible::check_observation(&obs, chrono::Utc::now()).is_err(),
        "the agent stream refuses this time"
    );
    w.app
        .pipeline
        .ingest_observations("node-a", vec![obs])
        .await
        .expect("an observation at chrono's minimum is stored without panicking");

    // An event at the same instant: 400 (implausible), not 503.
    let t = min_plus_60.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (code, text) = w.post_token(&list(&[event("at-min", &t)])).await;
    assert_eq!(code, 400, "{text}");
    assert!(!text.contains("overflow"), "{text}");

    // A normal event from the same address is judged against that sighting: 200.
    let (code, text) = w.post_token(&list(&[event("now", &now_rfc3339())])).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(w.rejected("store_unavailable"), 0);
    w.stop().await;
}

#[tokio::test]
async fn a_5xx_body_carries_no_internal_text() {
    let w = Webhook::start().await;
    // Break the store underneath the pipeline: the insert fails with SQLite's
    // own message (table name, SQL) — which must stay in the log.
    w.app
        .store
        .write(|tx| {
            tx.execute_batch("ALTER TABLE audit_events RENAME TO audit_events_gone")?;
            Ok(())
        })
        .await
        .unwrap();
    let (code, text) = w.post_token(&list(&[event("e1", &now_rfc3339())])).await;
    assert!((500..600).contains(&code), "{code}: {text}");
    for internal in [
        "audit_events",
        "no such table",
        "sqlite",
        "SQL",
        "Error",
        "error",
    ] {
        assert!(!text.contains(internal), "{internal:?} leaked: {text}");
    }
    assert_eq!(text.trim(), "batch not stored, retry later");
    w.stop().await;
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let w = Webhook::start().await;
    let anon = client_config(&w.pki, None);
    for (i, scheme) in ["Bearer", "bearer", "BEARER", "bEaReR"].iter().enumerate() {
        let body = list(&[event(&format!("b{i}"), &now_rfc3339())]);
        let (code, text) = post(
            w.addr,
            anon.clone(),
            Some(&format!("{scheme} {TOKEN}")),
            &body,
        )
        .await;
        assert_eq!(code, 200, "{scheme}: {text}");
    }
    // The scheme is not the token: other schemes and a bare token stay 401.
    for bad in [
        format!("Basic {TOKEN}"),
        TOKEN.to_owned(),
        format!("Bearer{TOKEN}"),
        "bearer ".to_owned(),
    ] {
        let body = list(&[event("x", &now_rfc3339())]);
        let (code, _) = post(w.addr, anon.clone(), Some(&bad), &body).await;
        assert_eq!(code, 401, "{bad:?}");
    }
    assert_eq!(stored(&w.app).await, 4);
    w.stop().await;
}

#[tokio::test]
async fn a_node_certificate_from_the_same_ca_gets_403() {
    let w = Webhook::start().await;
    let node = client_config(&w.pki, Some(&w.pki.node));
    let (code, text) = post(w.addr, node, None, &list(&[event("n1", &now_rfc3339())])).await;
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("--webhook-client-subject"), "{text}");
    assert_eq!(w.rejected("forbidden_subject"), 1);
    assert_eq!(stored(&w.app).await, 0);
    // The API server's certificate (CN kube-apiserver, on the default allowlist) works.
    let apiserver = client_config(&w.pki, Some(&w.pki.apiserver));
    let (code, text) = post(
        w.addr,
        apiserver,
        None,
        &list(&[event("a1", &now_rfc3339())]),
    )
    .await;
    assert_eq!(code, 200, "{text}");
    w.stop().await;
}

#[tokio::test]
async fn the_client_subject_allowlist_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, paths) = pki(dir.path());
    let store = Store::open(&dir.path().join("agg.db"), Synchronous::Normal).unwrap();
    let app = AppState::new(store, Policy::default(), Arc::new(Metrics::new())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Only a custom name: the default kube-apiserver is no longer enough.
    let auth = WebhookAuth::default()
        .with_client_cert(true)
        .with_client_subjects(&["audit-sender.example".to_owned()]);
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        server_config(&paths).unwrap(),
        auth,
        1 << 20,
        app,
        async {
            let _ = stop_rx.await;
        },
    ));
    let apiserver = client_config(&pki, Some(&pki.apiserver));
    let (code, text) = post(addr, apiserver, None, &list(&[event("c1", &now_rfc3339())])).await;
    assert_eq!(code, 403, "{text}");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_tailed_audit_log_skips_and_counts_implausible_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("agg.db"), Synchronous::Normal).unwrap();
    let app = AppState::new(store, Policy::default(), Arc::new(Metrics::new())).unwrap();
    let log = dir.path().join("audit.log");
    let lines = [
        event("t1", &now_rfc3339()),
        event("t2", "-262143-01-01T00:00:00Z"),
        event("t3", "1999-01-01T00:00:00Z"),
        event("t4", &now_rfc3339()),
    ];
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let tailer = credtrail_aggregator::ingest::logtail::LogTailer::new(log, app.pipeline.clone())
        .poll_interval(std::time::Duration::from_millis(10));
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(tailer.run(async {
        let _ = stop_rx.await;
    }));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while stored(&app).await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the two plausible lines were not stored within 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let metrics = app.metrics.encode();
    assert!(
        metrics.contains("reason=\"implausible_time\"} 2"),
        "{metrics}"
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    assert_eq!(stored(&app).await, 2);
}

#[test]
fn the_default_allowlist_admits_the_certificate_credtrails_deploy_issues() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = std::fs::read_to_string(root.join("deploy/tls/make-certs.sh")).unwrap();
    let cn = script
        .lines()
        .find_map(|l| l.strip_prefix("leaf webhook-client "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("make-certs.sh issues a webhook-client leaf");
    let chart =
        std::fs::read_to_string(root.join("deploy/helm/credtrail/templates/tls-cert-manager.yaml"))
            .unwrap();
    assert!(
        chart.contains(&format!("commonName: {cn}")),
        "the chart and make-certs.sh agree"
    );
    assert!(
        credtrail_aggregator::ingest::webhook::DEFAULT_CLIENT_SUBJECTS.contains(&cn),
        "{cn} is not on the default allowlist"
    );
}
