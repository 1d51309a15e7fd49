//! The gRPC listeners' connections (agent stream, gRPC query API), served
//! here one by one instead of by `tonic::transport::Server`, so that each
//! connection can be closed on its own:
//!
//! - **HTTP/2 limits**: keep-alive pings every [`super::H2_KEEPALIVE_INTERVAL`]
//!   (a peer that stops answering is dropped), at most
//!   [`super::H2_MAX_CONCURRENT_STREAMS`] concurrent streams, 32 pending
//!   resets, a 16 KiB header list;
//! - **call deadline**: each call must produce its response headers within
//!   [`Limits::call_timeout`] (`DEADLINE_EXCEEDED`); streams then run on;
//! - **idle timeout** ([`super::idle`]): a connection with no open stream for
//!   [`Limits::idle_timeout`] is closed gracefully (`GOAWAY`, counted as
//!   `credtrail_connections_dropped_total{reason="idle_timeout"}`), so a
//!   client that finished its preface and answers pings no longer holds a
//!   slot forever; an agent's stream or a live stream is an open stream and
//!   is never cut;
//! - **shutdown**: stop accepting, `GOAWAY` on every connection, then after
//!   [`Limits::shutdown_grace`] drop what is left.
//!
//! The connection's TLS information goes into each request's extensions as
//! tonic's own server puts it there, so `Request::peer_certs()` works.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tonic::transport::server::Connected;
use tower::Service as _;

use super::idle::{Streams, Tracked};
use super::{Acceptor, Guarded, H2_PREFACE_LEN, Limits};

/// One connection's service: the listener's routes, with the connection's
/// TLS information, the call deadline and the open-stream count.
struct ConnService<C> {
    routes: tonic::service::Routes,
    info: C,
    streams: Arc<Streams>,
    call_timeout: Duration,
}

impl<C: Clone + Send + Sync + 'static> hyper::service::Service<hyper::Request<Incoming>>
    for ConnService<C>
{
    type Response = hyper::Response<Tracked>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.info.clone());
        let stream = self.streams.open();
        let mut routes = self.routes.clone();
        let timeout = self.call_timeout;
        Box::pin(async move {
            let call = async {
                std::future::poll_fn(|cx| {
                    tower::Service::<hyper::Request<Incoming>>::poll_ready(&mut routes, cx)
                })
                .await?;
                routes.call(req).await
            };
            let resp = match tokio::time::timeout(timeout, call).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    let (parts, ()) =
                        tonic::Status::deadline_exceeded("the call produced no answer in time")
                            .into_http::<()>()
                            .into_parts();
                    hyper::Response::from_parts(parts, tonic::body::Body::empty())
                }
            };
            Ok(resp.map(|inner| Tracked {
                inner,
                _stream: stream,
            }))
        })
    }
}

fn h2_builder(window: Option<u32>) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .keep_alive_interval(Some(super::H2_KEEPALIVE_INTERVAL))
        .keep_alive_timeout(super::H2_KEEPALIVE_TIMEOUT)
        .max_concurrent_streams(super::H2_MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(Some(32))
        .max_header_list_size(16 * 1024);
    if let Some(w) = window {
        b.initial_stream_window_size(w)
            .initial_connection_window_size(w);
    }
    b
}

async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Serves `routes` over HTTP/2 on every connection `acceptor` admits (after
/// `wrap`: the TLS handshake, with its deadline, or nothing) until `shutdown`
/// resolves. `window`: HTTP/2 stream and connection window (the agent
/// stream's large batches), else hyper's default.
pub async fn serve<IO>(
    mut acceptor: Acceptor,
    wrap: impl Fn(TcpStream, SocketAddr) -> Pin<Box<dyn Future<Output = Option<IO>> + Send>>
    + Send
    + Sync
    + 'static,
    routes: tonic::service::Routes,
    limits: Limits,
    window: Option<u32>,
    shutdown: impl Future<Output = ()>,
) where
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
{
    let name = acceptor.name;
    let metrics = acceptor.metrics.clone();
    let wrap = Arc::new(wrap);
    let builder = h2_builder(window);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns: JoinSet<()> = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer, slot) = tokio::select! {
            () = &mut shutdown => break,
            c = acceptor.accept() => c,
            // Reap finished connection tasks so the set stays small.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (wrap, routes, builder, metrics) = (
            wrap.clone(),
            routes.clone(),
            builder.clone(),
            metrics.clone(),
        );
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let Some(io) = wrap(tcp, peer).await else {
                return;
            };
            let streams = Streams::new();
            let svc = ConnService {
                routes,
                info: io.connect_info(),
                streams: streams.clone(),
                call_timeout: limits.call_timeout(),
            };
            let io = Guarded::new(io, slot, H2_PREFACE_LEN, limits.header_timeout);
            let conn = builder.serve_connection(TokioIo::new(io), svc);
            tokio::pin!(conn);
            // Set once the connection was asked to close: then dropped at it.
            let mut deadline: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    () = streams.idle_for(limits.idle_timeout), if deadline.is_none() => {
                        metrics.connection_dropped(name, "idle_timeout");
                        tracing::debug!(listener = name, %peer, "no open stream for the idle timeout: closing the connection");
                        conn.as_mut().graceful_shutdown();
                        deadline = Some(tokio::time::Instant::now() + limits.shutdown_grace);
                    }
                    _ = stop.wait_for(|s| *s), if deadline.is_none() => {
                        conn.as_mut().graceful_shutdown();
                        deadline = Some(tokio::time::Instant::now() + limits.shutdown_grace);
                    }
                    () = until(deadline), if deadline.is_some() => break,
                }
            }
        });
    }
    drop(acceptor);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            listener = name,
            open = conns.len(),
            "shutdown grace over: closing the remaining connections"
        );
        conns.shutdown().await;
    }
}
