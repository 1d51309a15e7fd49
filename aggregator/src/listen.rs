//! The accept loop every listener shares (audit webhook, agent stream, HTTP
//! API, gRPC API), and the limits that let it outlast hostile clients.
//!
//! - **Connection cap**: a semaphore per listener; at the cap the loop stops
//!   calling `accept()`, so further clients wait in the kernel's backlog (and
//!   are refused when it is full) instead of taking file descriptors.
//! - **Per-source cap** ([`per_ip`]): one client address (IPv6: one /64)
//!   holds at most [`Limits::max_per_ip`] of those slots; a connection past it
//!   is closed at once and counted (`reason="per_ip_cap"`), so one hostile
//!   host cannot queue everyone else behind its idle connections.
//! - **Accept errors** (EMFILE, ENFILE, ENOBUFS, ...): counted in
//!   `credtrail_accept_errors_total{listener}`, logged at most once per
//!   [`ACCEPT_LOG_INTERVAL`] (with the number of errors since), and backed off
//!   exponentially from 10 ms to 1 s, so a full fd table neither spins a core
//!   nor floods the log.
//! - **TLS handshake timeout**: a client that does not finish its handshake in
//!   time is dropped; handshakes run in their own tasks, never in the loop.
//! - **Header timeout**: HTTP/1 via hyper's `header_read_timeout` (it also
//!   covers a client that sends nothing, and idle keep-alive connections);
//!   gRPC (HTTP/2) via [`Guarded`], which ends a connection whose first
//!   [`H2_PREFACE_LEN`] bytes do not arrive in time, then HTTP/2 keep-alive
//!   pings end connections that stop answering.
//! - **Idle timeout** (gRPC listeners, [`grpc`], [`idle`]): a connection with
//!   no open stream for [`Limits::idle_timeout`] is closed (`GOAWAY`), even
//!   when it answers pings; a running stream is never cut. (HTTP/1 idle
//!   keep-alive connections end at the header timeout.)
//! - **Body timeout**: [`body_deadline`] makes a request body fail once its
//!   deadline passes; handlers answer 408.
//! - **Shutdown**: [`serve_http`] stops accepting, asks every connection to
//!   finish (hyper graceful shutdown), and after [`Limits::shutdown_grace`]
//!   drops whatever is left.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::metrics::{ListenerLabel, Metrics};

pub mod grpc;
pub mod idle;
pub mod per_ip;

/// Default TLS handshake timeout.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a client has to send a request's headers (HTTP/1) or the
/// connection preface (HTTP/2).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on concurrent connections, per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Default cap on the agent stream listener: one long-lived stream per node,
/// so it must exceed the cluster's node count (5,000 nodes plus reconnects).
pub const DEFAULT_AGENT_MAX_CONNECTIONS: usize = 8192;
/// Default cap on concurrent connections from one source (IPv6: one /64).
pub const DEFAULT_MAX_PER_IP: usize = 64;
/// Default time connections get to finish at shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Slowest body upload accepted by default: the body timeout is the header
/// timeout plus the size limit at this rate (32 MiB: 138 s; 1 MiB: 14 s).
pub const MIN_BODY_BYTES_PER_SECOND: u64 = 256 * 1024;
/// At most one log line per listener per interval about accept errors.
pub const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(5);
/// Length of the HTTP/2 client preface (`PRI * HTTP/2.0...`).
pub const H2_PREFACE_LEN: usize = 24;
/// HTTP/2 keep-alive ping interval and ack timeout of the gRPC listeners.
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent HTTP/2 streams per gRPC connection.
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 64;
/// Default time a gRPC connection may stay open with no stream.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The body timeout for a size limit: the header timeout plus the limit at
/// [`MIN_BODY_BYTES_PER_SECOND`].
pub fn body_timeout_for(limit: usize, header_timeout: Duration) -> Duration {
    header_timeout + Duration::from_secs((limit as u64).div_ceil(MIN_BODY_BYTES_PER_SECOND))
}

/// Limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    /// Whole request body, from when its headers were read.
    pub body_timeout: Duration,
    pub max_connections: usize,
    /// Concurrent connections from one source; `0`: no per-source cap.
    pub max_per_ip: usize,
    pub shutdown_grace: Duration,
    /// A gRPC connection with no open stream this long is closed.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The time a gRPC call has to produce its response headers.
    pub fn call_timeout(&self) -> Duration {
        self.body_timeout.max(Duration::from_secs(30))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: body_timeout_for(1 << 20, DEFAULT_HEADER_TIMEOUT),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_per_ip: DEFAULT_MAX_PER_IP,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// A connection slot: held as long as the connection lives.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    _source: per_ip::IpTicket,
    metrics: Arc<Metrics>,
    name: &'static str,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics
            .connections
            .get_or_create(&label(self.name))
            .dec();
    }
}

fn label(name: &str) -> ListenerLabel {
    ListenerLabel {
        listener: name.to_owned(),
    }
}

/// The capped, backed-off accept loop of one listener.
pub struct Acceptor {
    listener: TcpListener,
    name: &'static str,
    slots: Arc<Semaphore>,
    per_ip: Arc<per_ip::PerIp>,
    metrics: Arc<Metrics>,
    backoff: Duration,
    errors_since_log: u64,
    last_log: Option<Instant>,
}

impl Acceptor {
    /// `name` labels metrics and logs (`webhook`, `agent`, `http_api`, `grpc_api`).
    pub fn new(
        listener: TcpListener,
        name: &'static str,
        limits: &Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            listener,
            name,
            slots: Arc::new(Semaphore::new(limits.max_connections.max(1))),
            per_ip: per_ip::PerIp::new(limits.max_per_ip),
            metrics,
            backoff: Duration::ZERO,
            errors_since_log: 0,
            last_log: None,
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next connection, once a slot is free. Never fails: accept errors
    /// are counted, logged (rate-limited) and backed off.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr, Slot) {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        loop {
            match self.listener.accept().await {
                Ok((tcp, peer)) => {
                    self.backoff = Duration::ZERO;
                    let Some(source) = self.per_ip.admit(peer.ip()) else {
                        // Closed at once (the slot stays free for others).
                        self.metrics.connection_dropped(self.name, "per_ip_cap");
                        tracing::debug!(listener = self.name, %peer, "per-source connection cap reached");
                        drop(tcp);
                        continue;
                    };
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(listener = self.name, error = %e, "TCP_NODELAY not set");
                    }
                    self.metrics
                        .connections
                        .get_or_create(&label(self.name))
                        .inc();
                    let slot = Slot {
                        _permit: permit,
                        _source: source,
                        metrics: self.metrics.clone(),
                        name: self.name,
                    };
                    return (tcp, peer, slot);
                }
                Err(e) => self.accept_failed(&e).await,
            }
        }
    }

    async fn accept_failed(&mut self, e: &std::io::Error) {
        self.metrics
            .accept_errors
            .get_or_create(&label(self.name))
            .inc();
        self.errors_since_log += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_INTERVAL)
        {
            tracing::warn!(
                listener = self.name,
                error = %e,
                errors = self.errors_since_log,
                "accept failed (backing off; at most one such line per {}s)",
                ACCEPT_LOG_INTERVAL.as_secs()
            );
            self.errors_since_log = 0;
            self.last_log = Some(now);
        }
        self.backoff = (self.backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        tokio::time::sleep(self.backoff).await;
    }
}

/// TLS handshake with a deadline; `None` (counted, logged at debug) when the
/// client fails or is too slow.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    name: &'static str,
    metrics: &Metrics,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            metrics.connection_dropped(name, "handshake_failed");
            tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            metrics.connection_dropped(name, "handshake_timeout");
            tracing::debug!(listener = name, %peer, "TLS handshake timed out");
            None
        }
    }
}

/// A connection with its slot and, until its first bytes arrived, a deadline
/// for them (HTTP/2 preface). Implements tonic's `Connected` like the stream
/// it wraps.
pub struct Guarded<IO> {
    io: IO,
    need: usize,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    slot: Slot,
}

impl<IO> Guarded<IO> {
    /// `io` must deliver `need` bytes within `timeout`, else reads fail.
    pub fn new(io: IO, slot: Slot, need: usize, timeout: Duration) -> Self {
        Self {
            io,
            need,
            deadline: (need > 0).then(|| Box::pin(tokio::time::sleep(timeout))),
            slot,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                this.need = this.need.saturating_sub(n);
                if this.need == 0 {
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if !expired {
                    return Poll::Pending;
                }
                this.deadline = None;
                this.slot
                    .metrics
                    .connection_dropped(this.slot.name, "header_timeout");
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client sent no request in time",
                )))
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<IO> {
    type ConnectInfo = IO::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// What an HTTP handler may know about its connection.
#[derive(Debug, Clone)]
pub struct ConnMeta {
    pub peer: SocketAddr,
    /// Client certificate chain the TLS layer verified (leaf first); empty
    /// without TLS or without a client certificate.
    pub peer_certs: Arc<Vec<CertificateDer<'static>>>,
}

/// Serves HTTP/1.1 (optionally over TLS) with `make_router(conn)` per
/// connection until `shutdown`, then lets connections finish for
/// `limits.shutdown_grace` and drops the rest.
pub async fn serve_http(
    mut acceptor: Acceptor,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    metrics: Arc<Metrics>,
    make_router: impl Fn(ConnMeta) -> Router + Send + Sync + 'static,
    shutdown: impl Future<Output = ()>,
) {
    let name = acceptor.name;
    let make_router = Arc::new(make_router);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut conns: JoinSet<()> = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer, slot) = tokio::select! {
            () = &mut shutdown => break,
            c = acceptor.accept() => c,
            // Reap finished connection tasks so the set stays small.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (tls, make_router, metrics) = (tls.clone(), make_router.clone(), metrics.clone());
        let watcher = graceful.watcher();
        conns.spawn(async move {
            let _slot = slot;
            let conn = ConnCtx {
                peer,
                limits,
                make_router: make_router.as_ref(),
                watcher,
            };
            let result = match tls {
                Some(acceptor) => {
                    let Some(stream) = handshake(
                        &acceptor,
                        tcp,
                        peer,
                        limits.handshake_timeout,
                        name,
                        &metrics,
                    )
                    .await
                    else {
                        return;
                    };
                    let certs = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                        .unwrap_or_default();
                    conn.serve(stream, certs).await
                }
                None => conn.serve(tcp, Vec::new()).await,
            };
            if let Err(e) = result {
                if e.is_timeout() {
                    metrics.connection_dropped(name, "header_timeout");
                }
                tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(acceptor);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::info!(listener = name, open = conns.len(), "shutdown grace over: closing the remaining connections");
        }
    }
    conns.shutdown().await;
}

struct ConnCtx<'a, R> {
    peer: SocketAddr,
    limits: Limits,
    make_router: &'a R,
    watcher: hyper_util::server::graceful::Watcher,
}

impl<R: Fn(ConnMeta) -> Router> ConnCtx<'_, R> {
    async fn serve<IO>(self, io: IO, certs: Vec<CertificateDer<'static>>) -> hyper::Result<()>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let body_timeout = self.limits.body_timeout;
        let router = (self.make_router)(ConnMeta {
            peer: self.peer,
            peer_certs: Arc::new(certs),
        })
        .layer(axum::middleware::from_fn(move |req, next| {
            body_deadline(req, next, body_timeout)
        }));
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(router));
        self.watcher.watch(conn).await
    }
}

/// The request body fails with [`BodyTimeout`] once `timeout` has passed
/// since its headers were read; [`is_body_timeout`] recognises the error.
pub async fn body_deadline(req: Request, next: Next, timeout: Duration) -> Response {
    let (parts, body) = req.into_parts();
    let deadline = tokio::time::Instant::now() + timeout;
    let body = Body::new(DeadlineBody {
        inner: body,
        sleep: Box::pin(tokio::time::sleep_until(deadline)),
    });
    next.run(Request::from_parts(parts, body)).await
}

/// The error a timed-out request body yields.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within its timeout")]
pub struct BodyTimeout;

/// Whether `e` (or its cause) is a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}

struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Poll::Ready(r) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(r);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Raises the soft open-file limit to the hard one (the default soft limit,
/// often 1024, is below what four listeners' caps need) and warns when the
/// listeners' caps together exceed it.
pub fn raise_fd_limit(total_caps: usize) {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit write/read only the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return;
            }
            if lim.rlim_cur < lim.rlim_max {
                let want = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
        }
        let soft = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
        if total_caps.saturating_add(64) > soft {
            tracing::warn!(
                open_files = soft,
                connection_caps = total_caps,
                "the listeners' connection caps exceed the open-file limit: at the limit, accept() fails (counted in credtrail_accept_errors_total) until connections close; lower --max-connections or raise RLIMIT_NOFILE"
            );
        }
    }
}
