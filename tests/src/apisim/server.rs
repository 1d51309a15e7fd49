//! The simulator's TLS listener: one task per connection, HTTP/1.1,
//! authentication, then [`super::api::serve`] and the audit event.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::server::WebPkiClientVerifier;
use serde_json::Value;
use tokio::sync::watch;

use super::api::{self, Objects};
use super::audit::{AuditSink, Record};
use super::authn::{self, UserInfo};
use super::https::{certs_from_pem, key_from_pem};
use super::{ApiSimConfig, State};

/// Errors starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum ApiSimError {
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running simulator.
pub struct RunningApiSim {
    /// The in-cluster endpoint (in the agents' endpoint map).
    pub addr: SocketAddr,
    /// The public endpoint, if any (what clients outside the cluster use).
    pub public_addr: Option<SocketAddr>,
    /// Pods and bindings it holds (add the story's pods here).
    pub objects: Arc<Objects>,
    /// Every audit event written, and the webhook delivery counters.
    pub audit: AuditSink,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningApiSim {
    /// Every audit event written so far.
    pub fn events(&self) -> Vec<Value> {
        self.audit
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stops accepting connections.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn tls_config(cfg: &ApiSimConfig) -> Result<Arc<rustls::ServerConfig>, ApiSimError> {
    let err = |e: &dyn std::fmt::Display| ApiSimError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in certs_from_pem(&cfg.client_ca_pem).map_err(|e| err(&e))? {
        roots.add(c).map_err(|e| err(&e))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| err(&e))?;
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certs_from_pem(&cfg.cert_pem).map_err(|e| err(&e))?,
            key_from_pem(&cfg.key_pem).map_err(|e| err(&e))?,
        )
        .map_err(|e| err(&e))?;
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(sc))
}

async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), ApiSimError> {
    let err = |source| ApiSimError::Listen { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

pub(super) async fn start(cfg: ApiSimConfig) -> Result<RunningApiSim, ApiSimError> {
    let tls = tokio_rustls::TlsAcceptor::from(tls_config(&cfg)?);
    let (listener, addr) = bind(cfg.listen).await?;
    let public = match cfg.public_listen {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let public_addr = public.as_ref().map(|(_, a)| *a);
    let audit = AuditSink::start(cfg.webhook, cfg.audit_log);
    let objects = Arc::new(Objects::default());
    let state = Arc::new(State {
        issuer: cfg.issuer,
        rbac: cfg.rbac,
        objects: objects.clone(),
        audit: audit.clone(),
    });
    let (stop, stopped) = watch::channel(false);
    let mut loops = vec![tokio::spawn(accept_loop(
        listener,
        state.clone(),
        tls.clone(),
        stopped.clone(),
    ))];
    if let Some((l, _)) = public {
        loops.push(tokio::spawn(accept_loop(l, state, tls, stopped)));
    }
    let task = tokio::spawn(async move {
        for l in loops {
            let _ = l.await;
        }
    });
    tracing::info!(%addr, ?public_addr, "API-server simulator listening (HTTPS)");
    Ok(RunningApiSim {
        addr,
        public_addr,
        objects,
        audit,
        stop,
        task,
    })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    tls: tokio_rustls::TlsAcceptor,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    tokio::spawn(connection(state.clone(), tls.clone(), tcp, peer));
                }
                Err(e) => tracing::warn!("apisim accept: {e}"),
            },
        }
    }
}

async fn connection(
    state: Arc<State>,
    tls: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let stream = match tls.accept(tcp).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%peer, "apisim TLS handshake: {e}");
            return;
        }
    };
    let cert_user = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|der| authn::from_cert(der));
    let svc = hyper::service::service_fn(move |req| {
        let state = state.clone();
        let cert_user = cert_user.clone();
        async move { Ok::<_, Infallible>(handle(&state, cert_user, peer, req).await) }
    });
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await
    {
        tracing::debug!(%peer, "apisim connection: {e}");
    }
}

/// `sourceIPs` as the API server builds it: X-Forwarded-For entries, then
/// X-Real-Ip, then the connection's peer address (the only one to trust).
fn source_ips(headers: &hyper::HeaderMap, peer: SocketAddr) -> Vec<String> {
    let mut ips: Vec<String> = Vec::new();
    if let Some(xff) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        ips.extend(
            xff.split(',')
                .map(str::trim)
                .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
                .map(str::to_string),
        );
    }
    if let Some(real) = headers.get("x-real-ip").and_then(|v| v.to_str().ok())
        && real.trim().parse::<std::net::IpAddr>().is_ok()
        && !ips.iter().any(|i| i == real.trim())
    {
        ips.push(real.trim().to_string());
    }
    let peer_ip = peer.ip().to_string();
    if ips.last() != Some(&peer_ip) {
        ips.push(peer_ip);
    }
    ips
}

fn respond(code: u16, body: &Value) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}

async fn handle(
    state: &State,
    cert_user: Option<Result<UserInfo, authn::AuthnError>>,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let received = Utc::now();
    let method = req.method().as_str().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let headers = req.headers().clone();
    let ips = source_ips(&headers, peer);
    let user_agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t)
        })
        .map(|t| t.trim().to_string());
    // A bearer token wins over a client certificate, as in the API server's union authenticator.
    let user = match (bearer, cert_user) {
        (Some(t), _) => authn::from_token(&state.issuer, &t),
        (None, Some(u)) => u,
        (None, None) => Ok(authn::anonymous()),
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let user = match user {
        Ok(u) => u,
        Err(e) => {
            tracing::info!(%peer, "apisim: 401: {e}");
            let status = api::status(401, "Unauthorized", "Unauthorized");
            let record = Record {
                level: "Metadata",
                verb: method.to_ascii_lowercase(),
                request_uri: path,
                user: UserInfo::default(),
                source_ips: ips,
                user_agent,
                object_ref: None,
                code: 401,
                request_object: None,
                response_object: None,
                received,
                decision: "forbid",
                reason: String::new(),
            };
            state.audit.emit(record.to_event());
            return respond(401, &status);
        }
    };
    let req = api::Request {
        method: &method,
        path: &path,
        user,
        source_ips: ips,
        user_agent,
        body: &body,
        received,
    };
    let (code, resp, record) = match super::review::serve(&state.issuer, &state.rbac, &req) {
        Some(r) => r,
        None => api::serve(&state.objects, &state.rbac, req),
    };
    state.audit.emit(record.to_event());
    respond(code, &resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_address_is_always_last() {
        let peer: SocketAddr = "127.99.0.7:5000".parse().unwrap();
        let mut h = hyper::HeaderMap::new();
        assert_eq!(source_ips(&h, peer), vec!["127.99.0.7"]);
        h.insert(
            "x-forwarded-for",
            "10.0.0.1, bogus, 10.0.0.2".parse().unwrap(),
        );
        h.insert("x-real-ip", "10.0.0.3".parse().unwrap());
        assert_eq!(
            source_ips(&h, peer),
            vec!["10.0.0.1", "10.0.0.2", "10.0.0.3", "127.99.0.7"]
        );
    }
}
