//! TokenReview answers are cached (issue 8, open point): every hostile
//! attempt with a bad token used to cost one `TokenReview` on the API
//! server. On a real agent listener in token mode, against the API-server
//! simulator (which writes one audit event per review): 50 concurrent
//! connections with one bad token cost one review; a valid token still
//! streams (and is reviewed once for several connections); a token that is
//! not valid yet (its `nbf` ahead) is refused, then let in once it is valid
//! and the refusal's short TTL has passed; the query API's TokenReview mode
//! shares the cache design (one review for many requests).

use std::sync::Arc;
use std::time::{Duration, Instant};

use credtrail_aggregator::agents::identity::{AgentAuth, TokenIdentity, TokenVerifier};
use credtrail_aggregator::agents::{self, TlsFiles};
use credtrail_aggregator::auth::kube::{KubeAuth, KubeConfig};
use credtrail_proto::pb::agent as pb;
use credtrail_tests::apisim::{self, RunningApiSim, rbac::Rbac, rbac::Rule, token};
use credtrail_tests::harness::{TestPki, free_port, hello_msg, state_on_disk, within};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

const NS: &str = "credtrail";
const SA: &str = "credtrail-agent";

fn spec(sa: &str, node: Option<&str>) -> token::TokenSpec {
    token::TokenSpec {
        namespace: NS.into(),
        service_account: sa.into(),
        pod: node.map(|_| token::Ref {
            name: "credtrail-agent-x7k2p".into(),
            uid: "4f5e6d7c-0000-4000-8000-000000000001".into(),
        }),
        node: node.map(|n| token::Ref {
            name: n.into(),
            uid: format!("uid-{n}"),
        }),
        lifetime_secs: 600,
    }
}

/// The simulator, and a TokenReview client of it whose refusals are kept
/// for `refused_ttl`.
async fn sim(
    pki: &TestPki,
    issuer: &token::Issuer,
    refused_ttl: Duration,
) -> (RunningApiSim, KubeAuth) {
    let mut rbac = Rbac::default();
    rbac.rules.push(Rule {
        binding: "credtrail-aggregator-auth-delegator",
        role: "system:auth-delegator",
        users: vec!["system:serviceaccount:credtrail:credtrail-aggregator".into()],
        groups: vec![],
        verbs: vec!["create"],
        resources: vec!["tokenreviews", "subjectaccessreviews"],
    });
    let sim = apisim::start(apisim::ApiSimConfig {
        listen: free_port([127, 0, 0, 1]),
        public_listen: None,
        cert_pem: pki.pki.server.cert_pem.clone(),
        key_pem: pki.pki.server.key_pem.clone(),
        client_ca_pem: pki.pki.cluster_ca.cert_pem(),
        issuer: issuer.clone(),
        rbac,
        webhook: None,
        audit_log: None,
    })
    .await
    .unwrap();
    let own = pki.dir.path().join("aggregator-token");
    std::fs::write(&own, issuer.mint(&spec("credtrail-aggregator", None)).0).unwrap();
    let kube = KubeAuth::new(KubeConfig {
        server: format!("https://{}", sim.addr),
        ca: pki.paths.server_ca.clone(),
        token_file: own,
        namespace: Some(NS.into()),
    })
    .unwrap()
    .with_review_ttls(Duration::from_secs(60), refused_ttl);
    (sim, kube)
}

/// TokenReviews the simulator answered so far.
fn reviews(sim: &RunningApiSim) -> usize {
    sim.events()
        .iter()
        .filter(|e| e["objectRef"]["resource"] == "tokenreviews")
        .count()
}

/// An agent listener in token mode (TokenReview), serving into a fresh store.
async fn listener(pki: &TestPki, kube: KubeAuth) -> std::net::SocketAddr {
    let state = state_on_disk(&pki.dir.path().join("db"));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let tls = TlsFiles {
        cert: pki.paths.server_cert.clone(),
        key: pki.paths.server_key.clone(),
        client_ca: None,
        identity: AgentAuth::Token(Arc::new(TokenIdentity {
            verifier: TokenVerifier::TokenReview(Arc::new(kube)),
            namespace: NS.into(),
            service_account: SA.into(),
        })),
    };
    tokio::spawn(async move {
        agents::serve(
            l,
            &tls,
            credtrail_aggregator::listen::Limits::default(),
            state,
            std::future::pending(),
        )
        .await
    });
    addr
}

/// One agent stream for node-a presenting `token` (no client certificate):
/// `Ok` once the aggregator welcomes its hello, else the refusal.
async fn attempt(
    pki: &TestPki,
    addr: std::net::SocketAddr,
    token: &str,
) -> Result<(), tonic::Status> {
    attempt_with(std::fs::read(&pki.paths.server_ca).unwrap(), addr, token).await
}

async fn attempt_with(
    ca_pem: Vec<u8>,
    addr: std::net::SocketAddr,
    token: &str,
) -> Result<(), tonic::Status> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut client = pb::agent_service_client::AgentServiceClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(hello_msg("node-a", 1)).await.unwrap();
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let mut inbound = client.stream(req).await?.into_inner();
    let first = within(
        "the answer to the hello",
        Duration::from_secs(10),
        inbound.message(),
    )
    .await?
    .ok_or_else(|| tonic::Status::unknown("the stream ended without a welcome"))?;
    assert!(matches!(
        first.payload,
        Some(pb::aggregator_message::Payload::Welcome(_))
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_connections_with_one_bad_token_cost_one_token_review() {
    let pki = TestPki::new();
    let issuer = token::Issuer::new();
    let (sim, kube) = sim(&pki, &issuer, Duration::from_secs(30)).await;
    let addr = listener(&pki, kube).await;

    // A forged token: signed by another key, so the API server refuses it.
    let bad = token::Issuer::new()
        .mint_for(&spec(SA, Some("node-a")), &["credtrail"])
        .0;
    let ca = std::fs::read(&pki.paths.server_ca).unwrap();
    let mut tries = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (ca, bad) = (ca.clone(), bad.clone());
        tries.spawn(async move { attempt_with(ca, addr, &bad).await });
    }
    while let Some(r) = tries.join_next().await {
        let e = r.unwrap().expect_err("a forged token was let in");
        assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    }
    assert_eq!(
        reviews(&sim),
        1,
        "50 connections with one bad token: one TokenReview"
    );
    // More attempts within the refusal's TTL: still one.
    for _ in 0..5 {
        assert!(attempt(&pki, addr, &bad).await.is_err());
    }
    assert_eq!(reviews(&sim), 1);

    // A valid token still streams; several connections, one review.
    let good = issuer.mint_for(&spec(SA, Some("node-a")), &["credtrail"]).0;
    for _ in 0..3 {
        attempt(&pki, addr, &good)
            .await
            .expect("the valid token streams");
    }
    assert_eq!(reviews(&sim), 2);
    // Nothing of either token reached the simulator's audit log.
    let log = serde_json::to_string(&sim.events()).unwrap();
    assert!(!log.contains(&bad) && !log.contains(&good));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_becomes_valid_is_let_in_once_the_refusal_expires() {
    let pki = TestPki::new();
    let issuer = token::Issuer::new();
    let refused_ttl = Duration::from_secs(1);
    let (sim, kube) = sim(&pki, &issuer, refused_ttl).await;
    let addr = listener(&pki, kube).await;

    // Valid from two seconds from now (its not-before ahead).
    let (_, mut claims) = issuer.mint_for(&spec(SA, Some("node-a")), &["credtrail"]);
    claims.nbf += 2;
    let nbf = claims.nbf;
    // Valid at most two seconds from now (`nbf` is whole seconds).
    let valid_by = Instant::now() + Duration::from_secs(2);
    let later = issuer.sign(&claims);
    let e = attempt(&pki, addr, &later)
        .await
        .expect_err("not valid yet");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert_eq!(reviews(&sim), 1);
    // Once valid, it is let in within the refusal's TTL (plus slack for a
    // loaded machine), not kept out for longer.
    let deadline = valid_by + refused_ttl + Duration::from_secs(3);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if attempt(&pki, addr, &later).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the token, valid for {:?}, was still refused",
            valid_by.elapsed()
        );
    }
    assert!(
        chrono::Utc::now().timestamp() >= nbf,
        "let in before it was valid"
    );
    // Refusals were reviewed at most once per TTL: ~2 s of tries every 200 ms
    // would be ~10 reviews without the cache.
    let n = reviews(&sim);
    assert!((2..=6).contains(&n), "{n} TokenReviews");
    sim.shutdown().await;
}
