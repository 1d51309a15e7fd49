//! The HTTPS audit webhook, end to end over loopback: TLS, bearer token and
//! client-certificate authentication, body limit, 400 for a bad batch
//! (nothing stored), 200 after commit, duplicates.

use crate::common;

use std::sync::Arc;

use common::tls::{client_config, pki, post};
use credtrail_aggregator::ingest::tls::server_config;
use credtrail_aggregator::ingest::webhook::{WebhookAuth, serve};
use credtrail_aggregator::metrics::Metrics;
use credtrail_aggregator::policy::Policy;
use credtrail_aggregator::state::AppState;
use credtrail_aggregator::store::{Store, Synchronous};
use tokio::net::TcpListener;

const TOKEN: &str = "s3cr3t-webhook-token-5f1e2d";

fn event(id: &str) -> String {
    format!(
        r#"{{"level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{{"username":"system:serviceaccount:a:b","groups":["system:authenticated"]}},"sourceIPs":["127.0.1.1"],"objectRef":{{"resource":"pods"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"2026-01-01T00:00:00.000001Z","stageTimestamp":"2026-01-01T00:00:00.000002Z"}}"#
    )
}

fn list(ids: &[&str]) -> Vec<u8> {
    let items: Vec<String> = ids.iter().map(|i| event(i)).collect();
    format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
        items.join(",")
    )
    .into_bytes()
}

async fn stored(app: &AppState) -> i64 {
    app.store
        .read(|c| Ok(c.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))?))
        .await
        .unwrap()
}

#[tokio::test]
async fn webhook_authenticates_limits_validates_and_stores_durably() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, paths) = pki(dir.path());
    let db = dir.path().join("agg.db");
    let store = Store::open(&db, Synchronous::Full).unwrap();
    let app = AppState::new(store, Policy::default(), Arc::new(Metrics::new())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = WebhookAuth::default()
        .with_tokens([TOKEN])
        .with_client_cert(true);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        server_config(&paths).unwrap(),
        auth,
        4096,
        app.clone(),
        async {
            let _ = stop_rx.await;
        },
    ));
    let anon = client_config(&pki, false);
    let with_cert = client_config(&pki, true);

    // No credentials, or a wrong token: 401, nothing stored.
    assert_eq!(post(addr, anon.clone(), None, &list(&["e1"])).await.0, 401);
    assert_eq!(
        post(addr, anon.clone(), Some("wrong"), &list(&["e1"]))
            .await
            .0,
        401
    );
    assert_eq!(stored(&app).await, 0);

    // The right token: 200 with the counts, after the commit.
    let (code, body) = post(addr, anon.clone(), Some(TOKEN), &list(&["e1", "e2"])).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""accepted":2"#), "{body}");
    assert_eq!(stored(&app).await, 2);

    // A bad item: 400 naming it, and the good item of that body is not stored.
    let bad = format!(
        r#"{{"kind":"EventList","items":[{},{{"kind":0}}]}}"#,
        event("e3")
    );
    let (code, body) = post(addr, anon.clone(), Some(TOKEN), bad.as_bytes()).await;
    assert_eq!(code, 400);
    assert!(
        body.contains("items[1]") && body.contains("missing field"),
        "{body}"
    );
    assert_eq!(stored(&app).await, 2);

    // Over the body limit: 413.
    let big: Vec<String> = (0..20).map(|i| format!("big{i}")).collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    assert_eq!(
        post(addr, anon.clone(), Some(TOKEN), &list(&big)).await.0,
        413
    );

    // A client certificate from the CA is enough; a resend is counted as duplicates.
    let (code, body) = post(addr, with_cert.clone(), None, &list(&["e2", "e4"])).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains(r#""accepted":1"#) && body.contains(r#""duplicates":1"#),
        "{body}"
    );
    assert_eq!(stored(&app).await, 3);

    let metrics = app.metrics.encode();
    assert!(
        metrics
            .contains(r#"credtrail_rejected_total{source="webhook",reason="unauthenticated"} 2"#),
        "{metrics}"
    );
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();

    // Durable: a fresh store on the same file sees the events; the token is nowhere in it.
    drop(app);
    let again = Store::open(&db, Synchronous::Full).unwrap();
    let n: i64 = again
        .read(|c| Ok(c.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(n, 3);
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let p = f.unwrap().path();
        if p.to_string_lossy().contains("agg.db") {
            let bytes = std::fs::read(&p).unwrap();
            assert!(
                !bytes.windows(TOKEN.len()).any(|w| w == TOKEN.as_bytes()),
                "token found in {}",
                p.display()
            );
        }
    }
}
