//! A small HTTPS/1.1 client over tokio-rustls and hyper, with what the
//! simulator and the story need and general clients hide: binding the local
//! source address before connecting (so the server sees a chosen 127.x
//! address), and presenting a client certificate.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Errors of one request.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: IpAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP: {0}")]
    Http(String),
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// Name checked against the server certificate (an IP literal works).
    pub server_name: String,
    pub tls: Arc<rustls::ClientConfig>,
    /// Local source address to bind before connecting.
    pub bind: Option<IpAddr>,
}

/// Reads all certificates of a PEM text.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, HttpsError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HttpsError::Config(format!("reading certificates: {e}")))
}

/// Reads the first private key of a PEM text.
pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, HttpsError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| HttpsError::Config(format!("reading key: {e}")))?
        .ok_or_else(|| HttpsError::Config("no private key in PEM".into()))
}

/// A client configuration trusting `ca_pem`, with an optional client
/// certificate (`(cert_pem, key_pem)`).
pub fn client_config(
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> Result<Arc<rustls::ClientConfig>, HttpsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem(ca_pem)? {
        roots
            .add(c)
            .map_err(|e| HttpsError::Config(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut cfg = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(certs_from_pem(cert)?, key_from_pem(key)?)
            .map_err(|e| HttpsError::Config(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// Sends one request on a fresh connection.
pub async fn request(
    target: &Target,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
) -> Result<Response, HttpsError> {
    let socket = match target.addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(|source| HttpsError::Connect {
        addr: target.addr,
        source,
    })?;
    if let Some(ip) = target.bind {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|source| HttpsError::Bind { addr: ip, source })?;
    }
    let tcp = socket
        .connect(target.addr)
        .await
        .map_err(|source| HttpsError::Connect {
            addr: target.addr,
            source,
        })?;
    let name = ServerName::try_from(target.server_name.clone())
        .map_err(|e| HttpsError::Config(format!("server name: {e}")))?;
    let tls = tokio_rustls::TlsConnector::from(target.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|source| HttpsError::Connect {
            addr: target.addr,
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| HttpsError::Http(e.to_string()))?;
    let driver = tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", target.server_name.as_str());
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| HttpsError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| HttpsError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| HttpsError::Http(e.to_string()))?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok(Response { status, body })
}
