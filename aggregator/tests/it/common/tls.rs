//! Test PKI (rcgen) and a minimal HTTPS client for the webhook.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use credtrail_aggregator::ingest::tls::TlsPaths;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Pki {
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

pub fn pki(dir: &Path) -> (Pki, TlsPaths) {
    pki_with_client(dir, &[(DnType::CommonName, "kube-apiserver")])
}

/// [`pki`] with the client certificate's subject given (e.g. a node's
/// `O=system:nodes, CN=system:node:<name>` for an agent).
pub fn pki_with_client(dir: &Path, subject: &[(DnType, &str)]) -> (Pki, TlsPaths) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
    for (t, v) in subject {
        cp.distinguished_name.push(t.clone(), *v);
    }
    let client = cp.signed_by(&client_key, &ca).unwrap();
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
    (
        Pki {
            ca_pem: ca.pem(),
            client_cert_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
        },
        paths,
    )
}

pub fn client_config(pki: &Pki, with_cert: bool) -> Arc<rustls::ClientConfig> {
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
    Arc::new(if with_cert {
        let certs: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut pki.client_cert_pem.as_bytes())
                .map(Result::unwrap)
                .collect();
        let key: PrivateKeyDer<'static> =
            rustls_pemfile::private_key(&mut pki.client_key_pem.as_bytes())
                .unwrap()
                .unwrap();
        b.with_client_auth_cert(certs, key).unwrap()
    } else {
        b.with_no_client_auth()
    })
}

/// One HTTP/1.1 POST over TLS with a bearer token; returns (status, body).
pub async fn post(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    post_raw(addr, cfg, auth.as_deref(), body).await
}

/// One HTTP/1.1 POST over TLS with an optional raw `Authorization` value
/// (any scheme, any case); returns (status, body).
pub async fn post_raw(
    addr: SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    authorization: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /audit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body).await.unwrap();
    let mut resp = Vec::new();
    let _ = tls.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    (status, body)
}
