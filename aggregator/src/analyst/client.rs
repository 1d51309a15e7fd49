//! A small HTTP(S) client for the query API: one request per connection
//! (HTTP/1.1), bearer token, JSON bodies, bounded answers and time. TLS
//! verifies the server against `--ca-file`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Longest answer read (an alert page of 1000 is well below).
const MAX_ANSWER: usize = 64 << 20;
/// Whole-request deadline.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the API is and how to prove who we are.
pub struct Client {
    authority: String,
    host: String,
    prefix: String,
    tls: Option<tokio_rustls::TlsConnector>,
    token: String,
}

impl Client {
    /// `url` is `http://host:port` or `https://host:port` (an optional path
    /// prefix is kept); `https` needs `ca_file`.
    pub fn new(url: &str, token: String, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--url {url:?} is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => bail!("--url {url:?}: expected http:// or https://"),
        };
        let auth = uri
            .authority()
            .with_context(|| format!("--url {url:?} names no host"))?;
        let host = auth.host().trim_start_matches('[').trim_end_matches(']');
        let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let tls = if https {
            let ca = ca_file
                .context("an https:// URL needs --ca-file (the CA of the API's certificate)")?;
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots
                    .add(c.with_context(|| format!("{}: bad PEM", ca.display()))?)
                    .with_context(|| format!("{}: bad certificate", ca.display()))?;
            }
            if roots.is_empty() {
                bail!("{}: no certificate found", ca.display());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
        } else {
            None
        };
        Ok(Self {
            authority,
            host: auth.as_str().to_owned(),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            tls,
            token,
        })
    }

    /// Sends one request; the status and the JSON answer (`Value::Null` when
    /// the answer is empty).
    pub async fn call(
        &self,
        method: hyper::Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        tokio::time::timeout(TIMEOUT, self.call_inner(method, path_and_query, body))
            .await
            .with_context(|| format!("no answer from {} within {TIMEOUT:?}", self.authority))?
    }

    async fn call_inner(
        &self,
        method: hyper::Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let tcp = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("connecting to {}", self.authority))?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.prefix))
            .header("host", &self.host)
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(Bytes::from(
            body.map(Value::to_string).unwrap_or_default(),
        )))?;
        let resp = match &self.tls {
            Some(tls) => {
                let host = self
                    .host
                    .rsplit_once(':')
                    .map_or(self.host.as_str(), |(h, p)| {
                        if p.parse::<u16>().is_ok() {
                            h
                        } else {
                            self.host.as_str()
                        }
                    });
                let name = rustls::pki_types::ServerName::try_from(
                    host.trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_owned(),
                )
                .context("the URL's host is not a valid TLS server name")?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("TLS with {}", self.authority))?;
                send(TokioIo::new(stream), req).await?
            }
            None => send(TokioIo::new(tcp), req).await?,
        };
        let status = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
            .to_bytes();
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).context("the answer is not JSON")?
        };
        Ok((status, v))
    }
}

async fn send<IO>(
    io: TokioIo<IO>,
    req: hyper::Request<Full<Bytes>>,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .context("HTTP handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    tx.send_request(req).await.context("sending the request")
}
