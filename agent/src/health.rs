//! The agent's health listener (`--health-listen`), for the kubelet's probes.
//!
//! - `GET /healthz`: 200 while the agent's main loop beats (it calls
//!   [`Health::beat`] at least every few seconds, idle or not); 503 once the
//!   last beat is older than [`STALE_AFTER`] (a wedged runtime or loop).
//!   While starting (not ready yet), 200 for up to [`STARTUP_GRACE`].
//! - `GET /readyz`: 200 once the eBPF programs are attached
//!   ([`Health::set_ready`]), 503 before.
//! - Anything else: 404; a method other than GET/HEAD: 405.
//!
//! Plain HTTP/1.1 (hyper) on the pod's own address: the answers carry no
//! data beyond "ok"/"stale"/"not ready". Bounded like every listener: at most
//! [`MAX_CONNECTIONS`] at once (more wait in the kernel's backlog), headers
//! within [`HEADER_TIMEOUT`], each connection closed after [`CONNECTION_TIMEOUT`],
//! request bodies never read, no keep-alive.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Time a client has to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest life of one connection.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// `/healthz` fails once the main loop has not beaten for this long.
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// Before the programs are attached (loading, the start-up scan), `/healthz`
/// answers 200 for this long after start without a beat.
pub const STARTUP_GRACE: Duration = Duration::from_secs(300);

/// What the probes report; cheap to clone and to update.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    /// Milliseconds since `start` of the last beat.
    last_beat_ms: AtomicU64,
    ready: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Alive (beaten now), not ready.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                start: Instant::now(),
                last_beat_ms: AtomicU64::new(0),
                ready: AtomicBool::new(false),
            }),
        }
    }

    /// The main loop is alive.
    pub fn beat(&self) {
        let ms = self.inner.start.elapsed().as_millis() as u64;
        self.inner.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// The programs are attached (or, `false`, no longer).
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    fn since_beat(&self) -> Duration {
        let last = Duration::from_millis(self.inner.last_beat_ms.load(Ordering::Relaxed));
        self.inner.start.elapsed().saturating_sub(last)
    }

    fn answer(
        &self,
        method: &Method,
        path: &str,
        stale_after: Duration,
    ) -> (StatusCode, &'static str) {
        if method != Method::GET && method != Method::HEAD {
            return (StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        match path {
            "/healthz" if self.since_beat() <= stale_after => (StatusCode::OK, "ok\n"),
            "/healthz"
                if !self.inner.ready.load(Ordering::Relaxed)
                    && self.inner.start.elapsed() < STARTUP_GRACE =>
            {
                (StatusCode::OK, "starting\n")
            }
            "/healthz" => (StatusCode::SERVICE_UNAVAILABLE, "stale\n"),
            "/readyz" if self.inner.ready.load(Ordering::Relaxed) => (StatusCode::OK, "ok\n"),
            "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            _ => (StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// Serves the probes on `listener` until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, health: Health) {
    serve_with(listener, health, STALE_AFTER).await;
}

async fn serve_with(listener: TcpListener, health: Health, stale_after: Duration) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        // Take a slot before accepting: beyond the cap, clients wait in the backlog.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("health listener: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let health = health.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (status, body) = health.answer(req.method(), req.uri().path(), stale_after);
                let body = if req.method() == Method::HEAD {
                    ""
                } else {
                    body
                };
                let resp = Response::builder()
                    .status(status)
                    .header("content-type", "text/plain; charset=utf-8")
                    .header("connection", "close")
                    .body(Full::new(Bytes::from_static(body.as_bytes())));
                async move {
                    Ok::<_, Infallible>(resp.unwrap_or_else(|_| {
                        Response::new(Full::new(Bytes::from_static(b"error\n")))
                    }))
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .max_buf_size(8192)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    async fn start(stale_after: Duration) -> (std::net::SocketAddr, Health) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let health = Health::new();
        tokio::spawn(serve_with(listener, health.clone(), stale_after));
        (addr, health)
    }

    async fn request(addr: std::net::SocketAddr, raw: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // The server may close early (a refused request): what it said is still read.
        let _ = s.write_all(raw.as_bytes()).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("the health listener answers or closes within 10 s");
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> u16 {
        let out = request(addr, &format!("GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n")).await;
        out.split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {out:?}"))
    }

    #[tokio::test]
    async fn ready_only_once_attached_and_alive_only_while_beating() {
        let (addr, health) = start(Duration::from_millis(300)).await;
        assert_eq!(get(addr, "/healthz").await, 200);
        assert_eq!(get(addr, "/readyz").await, 503);
        // Still loading, no beat for a while: alive (the start-up grace).
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(get(addr, "/healthz").await, 200);
        health.set_ready(true);
        health.beat();
        assert_eq!(get(addr, "/readyz").await, 200);
        assert_eq!(get(addr, "/metrics").await, 404);
        let out = request(
            addr,
            "POST /healthz HTTP/1.1\r\nHost: p\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 405"), "{out}");
        // No beat for longer than the bound: the liveness probe fails; a beat revives it.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(get(addr, "/healthz").await, 503);
        health.beat();
        assert_eq!(get(addr, "/healthz").await, 200);
    }

    #[tokio::test]
    async fn silent_clients_are_cut_off_and_do_not_block_the_probes() {
        let (addr, health) = start(STALE_AFTER).await;
        health.set_ready(true);
        // Fill every slot with a client that never sends its headers.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // They are closed after the header timeout (at worst the connection timeout), and the
        // probe, waiting in the backlog meanwhile, then gets through.
        assert_eq!(get(addr, "/readyz").await, 200);
        for mut s in idle {
            let mut buf = [0u8; 64];
            let _ = tokio::time::timeout(
                CONNECTION_TIMEOUT + Duration::from_secs(1),
                s.read(&mut buf),
            )
            .await
            .expect("an idle client is closed by the header timeout");
        }
        // Oversized headers are refused, not buffered without bound.
        let big = format!(
            "GET /healthz HTTP/1.1\r\nHost: p\r\nX: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        let out = request(addr, &big).await;
        assert!(!out.starts_with("HTTP/1.1 200"), "{out:.40}");
    }
}
