//! The webhook client of the soak: one kept-alive HTTPS/1.1 connection, as
//! the API server's webhook backend holds, reconnecting after an error; a
//! bearer token; each POST timed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::sync::mpsc;

use super::report::Samples;

type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

pub struct Sender {
    addr: SocketAddr,
    server_name: String,
    tls: Arc<rustls::ClientConfig>,
    token: String,
    conn: Option<Conn>,
}

impl Sender {
    pub fn new(
        addr: SocketAddr,
        server_name: String,
        tls: Arc<rustls::ClientConfig>,
        token: String,
    ) -> Self {
        Self {
            addr,
            server_name,
            tls,
            token,
            conn: None,
        }
    }

    /// Another client of the same webhook (its own connection).
    pub fn another(&self) -> Self {
        Self::new(
            self.addr,
            self.server_name.clone(),
            self.tls.clone(),
            self.token.clone(),
        )
    }

    async fn connect(&self) -> anyhow::Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(self.server_name.clone())?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(send)
    }

    /// Waits until the webhook answers (an empty list is a valid batch).
    pub async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let t = Instant::now();
        let empty =
            br#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}"#;
        loop {
            match self.post(empty.to_vec()).await {
                Ok(200..=299) => return Ok(()),
                Ok(s) => anyhow::bail!("the webhook answered {s} to an empty batch"),
                Err(e) if t.elapsed() > within => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// One POST; the HTTP status.
    pub async fn post(&mut self, body: Vec<u8>) -> anyhow::Result<u16> {
        let mut conn = match self.conn.take() {
            Some(c) if !c.is_closed() => c,
            _ => self.connect().await?,
        };
        conn.ready().await?;
        let req = hyper::Request::builder()
            .method("POST")
            .uri("/audit")
            .header("host", self.server_name.as_str())
            .header("content-type", "application/json")
            .header("user-agent", "kube-apiserver-admission")
            .header("authorization", format!("Bearer {}", self.token))
            .body(Full::new(Bytes::from(body)))?;
        let resp = conn.send_request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        self.conn = Some(conn);
        Ok(status)
    }

    /// Sends every batch from `rx` (body, events), recording latency, accepted
    /// events and errors. A failed batch is retried once, as an error.
    pub async fn drain(mut self, mut rx: mpsc::Receiver<(Vec<u8>, u64)>, samples: &Mutex<Samples>) {
        while let Some((body, n)) = rx.recv().await {
            let t = Instant::now();
            let r = self.post(body.clone()).await;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let lock = || {
                samples
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            };
            match r {
                Ok(200..=299) => lock().batch(ms, n),
                other => {
                    let what = match other {
                        Ok(s) => format!("status {s}"),
                        Err(e) => format!("{e:#}"),
                    };
                    eprintln!("soak: batch of {n} failed: {what}; retrying once");
                    lock().error();
                    self.conn = None;
                    if let Ok(200..=299) = self.post(body).await {
                        lock().batch(t.elapsed().as_secs_f64() * 1000.0, n);
                    } else {
                        lock().error();
                    }
                }
            }
        }
    }
}
