//! Every certificate renews mid-run, as cert-manager does it (new keys, a
//! new CA published beside the old one, then the old one retired), with no
//! restart: the live agent stream carries on, new handshakes get the new
//! serving certificate, the agent's next connection presents its new client
//! certificate, a broken file keeps the old material and is counted, and
//! not one observation is lost or duplicated.
//!
//! Real parts: the aggregator's agent listener (rustls, reloading resolver and
//! client verifier), the agent's real stream client, SQLite store; a TCP
//! relay in between lets the test cut connections to force a reconnect.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use credtrail_agent::stream;
use credtrail_aggregator::ingest::tls_watch;
use credtrail_tests::certs::{Ca, CertKey};
use credtrail_tests::harness::{
    AgentListener, TestPki, connect_observation, free_port, hello, state_on_disk,
    stored_observation_ids, stream_config,
};
use rustls::pki_types::{CertificateDer, ServerName};

/// Replaces `path` atomically (as the kubelet's atomic writer swaps a
/// Secret's files).
fn swap(path: &Path, data: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A TCP relay to `to`; `cut()` closes every relayed connection.
struct Relay {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<u64>,
}

impl Relay {
    async fn start(to: std::net::SocketAddr) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (cut, rx) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            while let Ok((mut a, _)) = l.accept().await {
                let mut rx = rx.clone();
                rx.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut b) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut a, &mut b) => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        });
        Self { addr, cut }
    }

    fn cut(&self) {
        self.cut.send_modify(|g| *g += 1);
    }
}

/// Handshakes with the listener trusting only `ca_pem`, presenting
/// `client`; the serving certificate it got, or the error.
async fn handshake(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    client: &CertKey,
) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut client.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
    let key = rustls_pemfile::private_key(&mut client.key_pem.as_bytes())
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    // TLS 1.3: a refused client certificate shows on the first read.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(3), tls.read_exact(&mut buf))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    Ok(conn.peer_certificates().unwrap()[0].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_certificate_rotates_mid_run_and_nothing_is_lost() {
    tls_watch::set_check_interval(Duration::from_millis(50));
    let pki = TestPki::new();
    let db = pki.dir.path().join("credtrail.db");
    let addr = free_port([127, 0, 0, 1]);
    let state = state_on_disk(&db);
    let listener = AgentListener::start(&pki, &state, addr).await;
    let relay = Relay::start(addr).await;

    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let cfg = stream_config(&pki, "node-a", relay.addr);
    let (agent_cert, agent_key) = (cfg.cert.clone(), cfg.key.clone());
    let handle = stream::spawn(cfg, hello("node-a"), rx, Duration::from_secs(20)).unwrap();
    const N: u64 = 3000;
    for i in 0..N / 3 {
        tx.send(connect_observation("node-a", "run", i))
            .await
            .unwrap();
    }
    let (st, ok) = handle
        .wait_for(Duration::from_secs(20), |s| s.acked_seq >= N / 3)
        .await;
    assert!(ok, "first acks never came: {st:?}");
    let old_agent = CertKey {
        cert_pem: std::fs::read_to_string(&agent_cert).unwrap(),
        key_pem: std::fs::read_to_string(&agent_key).unwrap(),
        der: vec![],
    };

    // Renewal, step 1: new CAs published beside the old ones; new serving
    // certificate and key from the new server CA; the agent's new key and
    // certificate from the new agents CA.
    let server_ca2 = Ca::new("credtrail server CA 2").unwrap();
    let agents_ca2 = Ca::new("credtrail agents CA 2").unwrap();
    let server2 = server_ca2
        .server("credtrail-server", &["localhost", "127.0.0.1"])
        .unwrap();
    let agent2 = agents_ca2.agent("node-a").unwrap();
    let both_server_cas = format!("{}{}", pki.pki.server_ca.cert_pem(), server_ca2.cert_pem());
    let both_agent_cas = format!("{}{}", pki.pki.agents_ca.cert_pem(), agents_ca2.cert_pem());
    swap(&pki.paths.server_ca, &both_server_cas);
    swap(&pki.paths.agents_ca, &both_agent_cas);
    // The key first, then the certificate: in between, the pair does not
    // match and must be refused (the old pair stays).
    swap(&pki.paths.server_key, &server2.key_pem);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(
        handshake(addr, &pki.pki.server_ca.cert_pem(), &old_agent)
            .await
            .unwrap(),
        pki.pki.server.der,
        "mid-swap, the old certificate is still served"
    );
    swap(&pki.paths.server_cert, &server2.cert_pem);
    swap(&agent_cert, &agent2.cert_pem);
    swap(&agent_key, &agent2.key_pem);
    tokio::time::sleep(Duration::from_millis(120)).await;

    // New handshakes get the new certificate; both client CAs are trusted.
    assert_eq!(
        handshake(addr, &server_ca2.cert_pem(), &agent2)
            .await
            .unwrap(),
        server2.der
    );
    assert_eq!(
        handshake(addr, &server_ca2.cert_pem(), &old_agent)
            .await
            .unwrap(),
        server2.der
    );
    assert!(
        handshake(addr, &pki.pki.server_ca.cert_pem(), &agent2)
            .await
            .is_err()
    );

    // The live stream carries on, on its old session.
    for i in N / 3..2 * N / 3 {
        tx.send(connect_observation("node-a", "run", i))
            .await
            .unwrap();
    }
    let (st, ok) = handle
        .wait_for(Duration::from_secs(20), |s| s.acked_seq >= 2 * N / 3)
        .await;
    assert!(ok, "acks stopped after the renewal: {st:?}");
    assert_eq!(
        st.connects, 1,
        "the stream was not broken by the renewal: {st:?}"
    );

    // Step 2: the old CAs retired. A broken bundle first: refused, counted.
    let failures_before = failures("agent");
    swap(
        &pki.paths.agents_ca,
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        failures("agent") > failures_before,
        "a broken CA file is counted"
    );
    assert!(
        handshake(addr, &server_ca2.cert_pem(), &old_agent)
            .await
            .is_ok(),
        "a broken CA file keeps the previous bundle"
    );
    swap(&pki.paths.agents_ca, &agents_ca2.cert_pem());
    swap(&pki.paths.server_ca, &server_ca2.cert_pem());
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        handshake(addr, &server_ca2.cert_pem(), &old_agent)
            .await
            .is_err(),
        "the retired agents CA no longer admits"
    );

    // The agent's next connection presents its new certificate and trusts
    // the new CA only.
    relay.cut();
    for i in 2 * N / 3..N {
        tx.send(connect_observation("node-a", "run", i))
            .await
            .unwrap();
    }
    drop(tx);
    let (st, ok) = handle
        .wait_for(Duration::from_secs(30), |s| s.finished)
        .await;
    assert!(ok, "stream did not finish after the renewal: {st:?}");
    assert!(st.connects >= 2, "expected a reconnect: {st:?}");
    assert!(st.tls_reloads >= 1, "the agent reloaded its files: {st:?}");
    assert!(st.cert_expiry_seconds > 86_400, "{st:?}");
    assert_eq!(st.acked_seq, N, "{st:?}");
    assert_eq!(st.spool_dropped, 0);

    let ids = stored_observation_ids(&state.store, "node-a").await;
    assert_eq!(ids.len() as u64, N, "every observation stored exactly once");

    let m = state.metrics.encode();
    let line = m
        .lines()
        .find(|l| l.starts_with("credtrail_tls_cert_expiry_seconds{listener=\"agent\"}"))
        .unwrap_or_else(|| panic!("no expiry metric in:\n{m}"));
    let secs: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(secs > 86_400, "{line}");
    assert!(m.contains("credtrail_tls_cert_expiry_seconds{listener=\"agent-client-ca\"}"));
    listener.stop().await;
}

fn failures(listener: &str) -> u64 {
    tls_watch::figures()
        .into_iter()
        .filter(|f| f.listener == listener)
        .map(|f| f.reload_failures)
        .sum()
}
