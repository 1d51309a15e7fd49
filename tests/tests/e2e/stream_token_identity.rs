//! Agents identified by a projected ServiceAccount token (audience
//! `credtrail`) over server-authenticated TLS, on a real loopback listener:
//! verified against the service-account issuer's JWKS (the API-server
//! simulator's key set, as `kubectl get --raw /openid/v1/jwks` gives it) or
//! with the simulator's `TokenReview`. A valid token of the agent
//! DaemonSet's ServiceAccount, bound to a pod on the agent's node, streams;
//! a forged one (another key, another audience, expired, another node,
//! another ServiceAccount, no pod binding, none at all) is refused before any
//! observation is taken.

use std::sync::Arc;
use std::time::Duration;

use credtrail_agent::stream::{self, StreamConfig};
use credtrail_aggregator::agents::identity::{AgentAuth, TokenIdentity, TokenVerifier};
use credtrail_aggregator::agents::{self, TlsFiles};
use credtrail_aggregator::auth::jwks::{Expect, JwksFile};
use credtrail_aggregator::auth::kube::{KubeAuth, KubeConfig};
use credtrail_aggregator::state::AppState;
use credtrail_tests::apisim::{self, rbac::Rbac, rbac::Rule, token};
use credtrail_tests::harness::{
    TestPki, connect_observation, free_port, hello, state_on_disk, stored_observation_ids,
};

const NS: &str = "credtrail";
const SA: &str = "credtrail-agent";

fn spec(ns: &str, sa: &str, node: Option<&str>, pod: bool, lifetime: i64) -> token::TokenSpec {
    token::TokenSpec {
        namespace: ns.into(),
        service_account: sa.into(),
        pod: pod.then(|| token::Ref {
            name: "credtrail-agent-x7k2p".into(),
            uid: "4f5e6d7c-0000-4000-8000-000000000001".into(),
        }),
        node: node.map(|n| token::Ref {
            name: n.into(),
            uid: format!("uid-{n}"),
        }),
        lifetime_secs: lifetime,
    }
}

/// The agent listener with `identity`, serving into `state`.
async fn listener(
    pki: &TestPki,
    state: &AppState,
    identity: AgentAuth,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let tls = TlsFiles {
        cert: pki.paths.server_cert.clone(),
        key: pki.paths.server_key.clone(),
        client_ca: None,
        identity,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = state.clone();
    tokio::spawn(async move {
        agents::serve(
            l,
            &tls,
            credtrail_aggregator::listen::Limits::default(),
            state,
            async move {
                let _ = stopped.await;
            },
        )
        .await
    });
    (addr, stop)
}

/// A stream client for node-a presenting `token` (no client certificate).
fn client(pki: &TestPki, addr: std::net::SocketAddr, token: &str, name: &str) -> StreamConfig {
    let file = pki.dir.path().join(format!("token-{name}"));
    std::fs::write(&file, token).unwrap();
    let mut cfg = StreamConfig::new(
        format!("https://{addr}"),
        pki.paths.server_ca.clone(),
        Default::default(),
        Default::default(),
    );
    cfg.token_file = Some(file);
    cfg.backoff_min = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(200);
    cfg
}

/// Streams `n` observations with `token`; whether they were all acknowledged
/// (and the last status).
async fn try_stream(
    pki: &TestPki,
    addr: std::net::SocketAddr,
    token: &str,
    name: &str,
    n: u64,
) -> (bool, stream::StreamStatus) {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let handle = stream::spawn(
        client(pki, addr, token, name),
        hello("node-a"),
        rx,
        Duration::from_secs(5),
    )
    .unwrap();
    for i in 0..n {
        tx.send(connect_observation("node-a", name, i))
            .await
            .unwrap();
    }
    // A refusal shows as the first connection error; success as the acks.
    let (st, _) = handle
        .wait_for(Duration::from_secs(3), |s| {
            s.acked_seq >= n || (s.connects == 0 && s.last_error.is_some())
        })
        .await;
    (st.acked_seq >= n, st)
}

/// Every forgery refused, the valid token streams; `what` names the mode.
async fn attack(
    pki: &TestPki,
    state: &AppState,
    addr: std::net::SocketAddr,
    issuer: &token::Issuer,
    what: &str,
) {
    let aud = &["credtrail"];
    let other_key = token::Issuer::new();
    let forged = [
        (
            "another key",
            other_key
                .mint_for(&spec(NS, SA, Some("node-a"), true, 600), aud)
                .0,
        ),
        (
            "another audience",
            issuer
                .mint_for(&spec(NS, SA, Some("node-a"), true, 600), &["vault"])
                .0,
        ),
        (
            "the API server's audience",
            issuer.mint(&spec(NS, SA, Some("node-a"), true, 600)).0,
        ),
        (
            "expired",
            issuer
                .mint_for(&spec(NS, SA, Some("node-a"), true, -120), aud)
                .0,
        ),
        (
            "another node",
            issuer
                .mint_for(&spec(NS, SA, Some("node-b"), true, 600), aud)
                .0,
        ),
        (
            "no node claim",
            issuer.mint_for(&spec(NS, SA, None, true, 600), aud).0,
        ),
        (
            "not bound to a pod",
            issuer
                .mint_for(&spec(NS, SA, Some("node-a"), false, 600), aud)
                .0,
        ),
        (
            "another service account",
            issuer
                .mint_for(&spec(NS, "default", Some("node-a"), true, 600), aud)
                .0,
        ),
        (
            "another namespace",
            issuer
                .mint_for(&spec("kube-system", SA, Some("node-a"), true, 600), aud)
                .0,
        ),
    ];
    for (i, (why, t)) in forged.iter().enumerate() {
        let (ok, st) = try_stream(pki, addr, t, &format!("{what}-forged-{i}"), 5).await;
        assert!(
            !ok && st.connects == 0,
            "{what}: a token with {why} was let in: {st:?}"
        );
        assert!(st.last_error.is_some(), "{what}: {why}: {st:?}");
    }
    let forged_ids = stored_observation_ids(&state.store, "node-a").await;
    assert!(
        forged_ids.is_empty(),
        "{what}: nothing from a forged token is stored"
    );

    let good = issuer
        .mint_for(&spec(NS, SA, Some("node-a"), true, 600), aud)
        .0;
    let (ok, st) = try_stream(pki, addr, &good, &format!("{what}-good"), 50).await;
    assert!(ok, "{what}: the valid token did not stream: {st:?}");
    assert_eq!(
        stored_observation_ids(&state.store, "node-a").await.len(),
        50
    );
}

fn identity(verifier: TokenVerifier) -> AgentAuth {
    AgentAuth::Token(Arc::new(TokenIdentity {
        verifier,
        namespace: NS.into(),
        service_account: SA.into(),
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_verified_against_the_issuers_jwks() {
    let pki = TestPki::new();
    let state = state_on_disk(&pki.dir.path().join("db"));
    let issuer = token::Issuer::new();
    let jwks = pki.dir.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    let mut expect = Expect::new(vec![token::ISSUER.into()], vec!["credtrail".into()]);
    expect.max_lifetime = Some(Duration::from_secs(24 * 3600));
    let verifier = TokenVerifier::Jwks {
        keys: JwksFile::open(&jwks).unwrap(),
        expect,
    };
    let (addr, stop) = listener(&pki, &state, identity(verifier)).await;
    attack(&pki, &state, addr, &issuer, "jwks").await;

    // A client certificate alone is not an identity in token mode.
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let cfg = credtrail_tests::harness::stream_config(&pki, "node-a", addr);
    let handle = stream::spawn(cfg, hello("node-a"), rx, Duration::from_secs(5)).unwrap();
    tx.send(connect_observation("node-a", "cert", 0))
        .await
        .unwrap();
    let (st, ok) = handle
        .wait_for(Duration::from_secs(2), |s| s.acked_seq >= 1)
        .await;
    assert!(
        !ok && st.connects == 0,
        "a certificate without a token was let in: {st:?}"
    );
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_verified_with_token_review() {
    let pki = TestPki::new();
    let state = state_on_disk(&pki.dir.path().join("db"));
    let issuer = token::Issuer::new();
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
    std::fs::write(
        &own,
        issuer
            .mint(&spec(NS, "credtrail-aggregator", None, false, 600))
            .0,
    )
    .unwrap();
    let kube = KubeAuth::new(KubeConfig {
        server: format!("https://{}", sim.addr),
        ca: pki.paths.server_ca.clone(),
        token_file: own,
        namespace: Some(NS.into()),
    })
    .unwrap();
    let (addr, stop) = listener(
        &pki,
        &state,
        identity(TokenVerifier::TokenReview(Arc::new(kube))),
    )
    .await;
    attack(&pki, &state, addr, &issuer, "tokenreview").await;
    let _ = stop.send(());
}
