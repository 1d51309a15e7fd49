//! The stream client's event loop: connect (with backoff), Hello/Welcome,
//! then send batches, take acks, send heartbeats, and keep taking input into
//! the spool the whole time, connected or not.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use credtrail_proto::model::{Loss, Observation, ObservationEvent};
use credtrail_proto::pb::agent as pb;
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{ClientTlsConfig, Endpoint};

use super::backoff::Backoff;
use super::disk::DiskLog;
use super::spool::Spool;
use super::{HelloInfo, StreamConfig, StreamError, StreamStatus};

/// The stream method's path (`credtrail.agent.v1.AgentService/Stream`).
const STREAM_PATH: &str = "/credtrail.agent.v1.AgentService/Stream";

/// An observation, protobuf-encoded for the spool.
fn encode(obs: Observation) -> bytes::Bytes {
    pb::Observation::from(obs).encode_to_vec().into()
}

/// [`encode`], or, for an observation over [`super::MAX_OBSERVATION_BYTES`],
/// a `Loss` in its place (same id, time and node) counted in `oversize`.
fn encode_capped(obs: Observation, oversize: &mut u64) -> bytes::Bytes {
    let (id, time, node) = (obs.id.clone(), obs.time, obs.node.clone());
    let bytes = encode(obs);
    if bytes.len() <= super::MAX_OBSERVATION_BYTES {
        return bytes;
    }
    *oversize += 1;
    tracing::warn!(
        size = bytes.len(),
        total = *oversize,
        "observation too large to send: replaced by a loss record"
    );
    encode(Observation {
        id,
        time,
        node,
        event: ObservationEvent::Loss(Loss {
            stage: super::STAGE_OVERSIZE.into(),
            count: 1,
            total: *oversize,
        }),
    })
}

/// Largest chunk taken from the input at once.
const INPUT_CHUNK: usize = 1024;

pub(crate) struct Client {
    cfg: StreamConfig,
    endpoint: Endpoint,
    hello: HelloInfo,
    epoch: u64,
    spool: Spool,
    /// Drop totals by stage, from the agent's own Loss observations.
    stage_drops: BTreeMap<String, u64>,
    /// Observations replaced because they were too large to send.
    oversize: u64,
    /// Spool drops caused by pushing the last spool Loss, for the next one.
    spool_drops_carried: u64,
    status: StreamStatus,
    /// Hash of the TLS files the endpoint was built from (or last refused).
    tls_seen: [u8; 32],
    /// notAfter of the client certificate in use.
    not_after: i64,
}

/// The endpoint for `cfg` with `tls`.
fn build_endpoint(cfg: &StreamConfig, tls: ClientTlsConfig) -> Result<Endpoint, String> {
    Ok(Endpoint::from_shared(cfg.aggregator.clone())
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(cfg.connect_timeout)
        .tcp_nodelay(true)
        // Large windows: a batch is hundreds of KiB; HTTP/2's default
        // 64 KiB window would pace the stream by round trips.
        .initial_stream_window_size(16 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20)))
}

/// One live, welcomed connection.
struct Conn {
    tx: mpsc::Sender<pb::EncodedAgentMessage>,
    inbound: tonic::Streaming<pb::AggregatorMessage>,
    max_batch: usize,
    /// The aggregator's resume point.
    welcome_acked: u64,
}

enum End {
    /// Input closed and everything acknowledged (or flush timed out), or stopped.
    Finished,
    /// The connection broke; reconnect.
    Broken(String),
}

impl Client {
    pub(crate) fn new(cfg: StreamConfig, hello: HelloInfo) -> Result<Self, StreamError> {
        let url_err = |reason: String| StreamError::Url {
            url: cfg.aggregator.clone(),
            reason,
        };
        let tls_seen = super::tls::fingerprint(&cfg)?;
        let loaded = super::tls::load(&cfg)?;
        let endpoint = build_endpoint(&cfg, loaded.tls).map_err(url_err)?;
        let (spool, epoch) = match &cfg.spool_dir {
            Some(dir) => {
                let disk = DiskLog::open(dir, cfg.spool_max_bytes)?;
                let epoch = disk.epoch();
                (Spool::with_disk(cfg.spool_capacity, disk)?, epoch)
            }
            None => (
                Spool::new(cfg.spool_capacity, cfg.spool_max_bytes),
                super::random_epoch(),
            ),
        };
        let mut c = Self {
            cfg,
            endpoint,
            tls_seen,
            not_after: loaded.not_after,
            hello,
            epoch,
            spool,
            stage_drops: BTreeMap::new(),
            spool_drops_carried: 0,
            oversize: 0,
            status: StreamStatus::default(),
        };
        c.status.epoch = epoch;
        c.status.cert_expiry_seconds = loaded.not_after - Utc::now().timestamp();
        c.refresh_status();
        Ok(c)
    }

    /// Re-reads the TLS files; a change that checks out is used from the
    /// next connection on, a bad one keeps the previous files.
    fn refresh_tls(&mut self) {
        let result = super::tls::fingerprint(&self.cfg).and_then(|d| {
            if d == self.tls_seen {
                return Ok(None);
            }
            self.tls_seen = d;
            let l = super::tls::load(&self.cfg)?;
            let e = build_endpoint(&self.cfg, l.tls).map_err(|reason| StreamError::Url {
                url: self.cfg.aggregator.clone(),
                reason,
            })?;
            Ok(Some((e, l.not_after)))
        });
        match result {
            Ok(None) => {}
            Ok(Some((endpoint, not_after))) => {
                self.endpoint = endpoint;
                self.not_after = not_after;
                self.status.tls_reloads += 1;
                tracing::info!(
                    cert_expiry_seconds = not_after - Utc::now().timestamp(),
                    "TLS files changed: the next connection uses the new certificate and CA"
                );
            }
            Err(e) => {
                // Unreadable files are retried each attempt but counted once
                // per distinct content (a missing file counts once).
                if matches!(e, StreamError::ReadFile { .. }) {
                    if self.tls_seen == [0xff; 32] {
                        return;
                    }
                    self.tls_seen = [0xff; 32];
                }
                self.status.tls_reload_failures += 1;
                tracing::warn!(error = %e, "TLS files changed but are not usable: keeping the previous certificate and CA");
            }
        }
        if !super::tls::has_client_cert(&self.cfg) {
            return;
        }
        let left = self.not_after - Utc::now().timestamp();
        self.status.cert_expiry_seconds = left;
        if left < 7 * 86_400 {
            tracing::warn!(
                cert_expiry_seconds = left,
                "the agent's client certificate expires in under 7 days and has not been renewed"
            );
        }
    }

    pub(crate) fn status(&self) -> StreamStatus {
        self.status.clone()
    }

    fn refresh_status(&mut self) {
        let s = &mut self.status;
        s.acked_seq = self.spool.acked();
        s.last_seq = self.spool.last_seq();
        s.spool_len = self.spool.len();
        s.spool_dropped = self.spool.dropped_total();
    }

    fn hello_message(&self) -> pb::EncodedAgentMessage {
        let h = &self.hello;
        self.envelope(pb::encoded_agent_message::Payload::Hello(pb::Hello {
            node_name: h.node_name.clone(),
            agent_version: h.agent_version.clone(),
            kernel_release: h.kernel_release.clone(),
            hooks: h.hooks.clone(),
            addresses: h.addresses.iter().map(ToString::to_string).collect(),
            pod_cidrs: h.pod_cidrs.clone(),
            stream_epoch: self.epoch,
            spool_first_seq: self.spool.first_seq(),
        }))
    }

    fn envelope(&self, payload: pb::encoded_agent_message::Payload) -> pb::EncodedAgentMessage {
        let now = Utc::now();
        pb::EncodedAgentMessage {
            node_name: self.hello.node_name.clone(),
            sent_at: Some(prost_types_timestamp(now)),
            payload: Some(payload),
        }
    }

    fn heartbeat_message(&self) -> pb::EncodedAgentMessage {
        let mut drops = self.stage_drops.clone();
        drops.insert("spool".into(), self.spool.dropped_total());
        self.envelope(pb::encoded_agent_message::Payload::Heartbeat(
            pb::Heartbeat {
                drops: drops
                    .into_iter()
                    .map(|(stage, total)| pb::DropCounter { stage, total })
                    .collect(),
                spool_len: self.spool.len() as u64,
                last_seq: self.spool.last_seq(),
            },
        ))
    }

    /// Takes a chunk of input into the spool, reporting spool drops as a Loss.
    fn absorb(&mut self, chunk: &mut Vec<Observation>) {
        for obs in chunk.drain(..) {
            match &obs.event {
                ObservationEvent::NodeInfo(n) => self.hello = HelloInfo::from(n),
                ObservationEvent::Loss(l) if l.stage != "spool" => {
                    let e = self.stage_drops.entry(l.stage.clone()).or_default();
                    *e = (*e).max(l.total);
                }
                _ => {}
            }
            let bytes = encode_capped(obs, &mut self.oversize);
            self.spool.push(bytes);
        }
        let dropped =
            self.spool.take_unreported_drops() + std::mem::take(&mut self.spool_drops_carried);
        if dropped > 0 {
            let seq = self.spool.next_seq();
            let loss = |count: u64, total: u64| Observation {
                id: format!("{}/{:x}/spool-loss-{seq}", self.hello.node_name, self.epoch),
                time: Utc::now(),
                node: self.hello.node_name.clone(),
                event: ObservationEvent::Loss(Loss {
                    stage: "spool".into(),
                    count,
                    total,
                }),
            };
            // Room for the Loss first (its largest encoding), so that its total counts
            // every drop, those making room for it included.
            self.spool.make_room(encode(loss(u64::MAX, u64::MAX)).len());
            let dropped = dropped + self.spool.take_unreported_drops();
            let total = self.spool.dropped_total();
            tracing::warn!(dropped, total, "spool full: oldest observations dropped");
            self.spool.push(encode(loss(dropped, total)));
            // Nothing more should have gone; if it did, the next report says so.
            self.spool_drops_carried = self.spool.take_unreported_drops();
        }
        self.spool.flush_disk();
        self.refresh_status();
    }

    async fn connect(
        endpoint: Endpoint,
        hello: pb::EncodedAgentMessage,
        token: Option<String>,
    ) -> Result<Conn, String> {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("connecting: {}", error_chain(&e)))?;
        // The generated client would take AgentMessage; the spool holds
        // encoded observations, so send the wire-identical EncodedAgentMessage
        // on the same method with a codec for that type.
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(32 << 20)
            .max_encoding_message_size(32 << 20);
        grpc.ready()
            .await
            .map_err(|e| format!("connecting: {}", error_chain(&e)))?;
        let (tx, rx) = mpsc::channel(8);
        tx.send(hello)
            .await
            .map_err(|_| "internal: hello not queued".to_string())?;
        let codec =
            tonic_prost::ProstCodec::<pb::EncodedAgentMessage, pb::AggregatorMessage>::default();
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(t) = token {
            let v = tonic::metadata::MetadataValue::try_from(format!("Bearer {t}"))
                .map_err(|_| "the service-account token is not a valid header value".to_string())?;
            request.metadata_mut().insert("authorization", v);
        }
        let mut inbound = grpc
            .streaming(
                request,
                tonic::codegen::http::uri::PathAndQuery::from_static(STREAM_PATH),
                codec,
            )
            .await
            .map_err(|s| format!("opening the stream: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        match inbound.message().await {
            Ok(Some(pb::AggregatorMessage {
                payload: Some(pb::aggregator_message::Payload::Welcome(w)),
            })) => Ok(Conn {
                tx,
                inbound,
                max_batch: w.max_batch as usize,
                welcome_acked: w.acked_seq,
            }),
            Ok(_) => Err("the aggregator did not answer the hello with a welcome".into()),
            Err(s) => Err(format!("{:?}: {}", s.code(), s.message())),
        }
    }

    pub(crate) async fn run(
        mut self,
        mut input: mpsc::Receiver<Observation>,
        status_tx: watch::Sender<StreamStatus>,
        stop: Arc<tokio::sync::Notify>,
        flush_timeout: Duration,
    ) {
        let mut backoff = Backoff::new(self.cfg.backoff_min, self.cfg.backoff_max);
        let mut input_open = true;
        let mut flush_deadline: Option<Instant> = None;
        let mut chunk = Vec::with_capacity(INPUT_CHUNK);
        loop {
            // Connect, still taking input.
            self.refresh_tls();
            let token = match super::tls::token(&self.cfg) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "no service-account token to present");
                    None
                }
            };
            let attempt = Self::connect(self.endpoint.clone(), self.hello_message(), token);
            tokio::pin!(attempt);
            let conn = loop {
                tokio::select! {
                    biased;
                    _ = stop.notified() => return self.finish(&status_tx),
                    r = &mut attempt => break r,
                    n = input.recv_many(&mut chunk, INPUT_CHUNK), if input_open => {
                        if n == 0 {
                            input_open = false;
                            flush_deadline = Some(Instant::now() + flush_timeout);
                        }
                        self.absorb(&mut chunk);
                        status_tx.send_replace(self.status());
                    }
                    _ = sleep_until_opt(flush_deadline) => return self.finish(&status_tx),
                }
            };
            let end = match conn {
                Ok(mut conn) => {
                    backoff.reset();
                    self.spool.rewind(conn.welcome_acked);
                    self.status.connected = true;
                    self.status.connects += 1;
                    self.status.last_error = None;
                    self.refresh_status();
                    status_tx.send_replace(self.status());
                    tracing::info!(aggregator = %self.cfg.aggregator, resume = conn.welcome_acked, "stream connected");
                    let end = self
                        .session(
                            &mut conn,
                            &mut input,
                            &mut input_open,
                            &mut flush_deadline,
                            &mut chunk,
                            &status_tx,
                            &stop,
                            flush_timeout,
                        )
                        .await;
                    self.status.connected = false;
                    end
                }
                Err(e) => End::Broken(e),
            };
            match end {
                End::Finished => return self.finish(&status_tx),
                End::Broken(e) => {
                    tracing::warn!(aggregator = %self.cfg.aggregator, "stream: {e}");
                    self.status.last_error = Some(e);
                    status_tx.send_replace(self.status());
                }
            }
            // Back off, still taking input.
            let wake = Instant::now() + backoff.next_delay();
            loop {
                tokio::select! {
                    biased;
                    _ = stop.notified() => return self.finish(&status_tx),
                    _ = tokio::time::sleep_until(wake) => break,
                    n = input.recv_many(&mut chunk, INPUT_CHUNK), if input_open => {
                        if n == 0 {
                            input_open = false;
                            flush_deadline = Some(Instant::now() + flush_timeout);
                        }
                        self.absorb(&mut chunk);
                        status_tx.send_replace(self.status());
                    }
                    _ = sleep_until_opt(flush_deadline) => return self.finish(&status_tx),
                }
            }
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the loop's state, passed by reference from run()"
    )]
    async fn session(
        &mut self,
        conn: &mut Conn,
        input: &mut mpsc::Receiver<Observation>,
        input_open: &mut bool,
        flush_deadline: &mut Option<Instant>,
        chunk: &mut Vec<Observation>,
        status_tx: &watch::Sender<StreamStatus>,
        stop: &tokio::sync::Notify,
        flush_timeout: Duration,
    ) -> End {
        // Drop counters first: the aggregator learns about losses during the outage at once.
        if conn.tx.send(self.heartbeat_message()).await.is_err() {
            return End::Broken("the stream's send side closed".into());
        }
        let mut heartbeat = tokio::time::interval_at(
            Instant::now() + self.cfg.heartbeat_interval,
            self.cfg.heartbeat_interval,
        );
        let max_batch = self.cfg.max_batch.min(conn.max_batch.max(1));
        loop {
            if !*input_open && self.spool.is_empty() {
                return End::Finished;
            }
            let can_send =
                self.spool.has_unsent() && self.spool.in_flight() < self.cfg.max_in_flight;
            tokio::select! {
                biased;
                _ = stop.notified() => return End::Finished,
                m = conn.inbound.message() => match m {
                    Ok(Some(pb::AggregatorMessage { payload: Some(pb::aggregator_message::Payload::Ack(ack)) })) => {
                        for r in &ack.rejected {
                            tracing::warn!(seq = r.seq, "aggregator refused an observation: {}", r.reason);
                        }
                        self.status.rejected += ack.rejected.len() as u64;
                        self.spool.ack(ack.seq);
                        self.refresh_status();
                        status_tx.send_replace(self.status());
                    }
                    Ok(Some(other)) => tracing::debug!(?other, "unexpected message from the aggregator"),
                    Ok(None) => return End::Broken("the aggregator closed the stream".into()),
                    Err(s) => return End::Broken(format!("{:?}: {}", s.code(), s.message())),
                },
                permit = conn.tx.reserve(), if can_send => match permit {
                    Ok(permit) => {
                        if let Some(batch) = self.spool.next_batch(max_batch, self.cfg.max_batch_bytes) {
                            permit.send(self.envelope(pb::encoded_agent_message::Payload::Batch(batch)));
                        }
                    }
                    Err(_) => return End::Broken("the stream's send side closed".into()),
                },
                n = input.recv_many(chunk, INPUT_CHUNK), if *input_open => {
                    if n == 0 {
                        *input_open = false;
                        *flush_deadline = Some(Instant::now() + flush_timeout);
                    }
                    self.absorb(chunk);
                    status_tx.send_replace(self.status());
                }
                _ = heartbeat.tick() => {
                    // Best effort: a full send queue means batches are flowing anyway.
                    let _ = conn.tx.try_send(self.heartbeat_message());
                }
                _ = sleep_until_opt(*flush_deadline) => return End::Finished,
            }
        }
    }

    fn finish(mut self, status_tx: &watch::Sender<StreamStatus>) {
        if !self.spool.is_empty() {
            tracing::warn!(
                unacknowledged = self.spool.len(),
                "stream stopped with observations not acknowledged{}",
                if self.cfg.spool_dir.is_some() {
                    " (kept in the disk spool)"
                } else {
                    ""
                }
            );
        }
        self.refresh_status();
        self.status.connected = false;
        self.status.finished = true;
        status_tx.send_replace(self.status());
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn prost_types_timestamp(t: chrono::DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// An error and its sources, joined: tonic's transport errors say little on their own.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use credtrail_proto::model::{CaptureSource, CredentialRead, Process};

    use super::*;

    #[test]
    fn an_observation_too_large_becomes_a_counted_loss() {
        let read = |args: usize| Observation {
            id: "n/b/7".into(),
            time: Utc::now(),
            node: "n".into(),
            event: ObservationEvent::CredentialRead(CredentialRead {
                source: CaptureSource::Tracepoint,
                process: Some(Process {
                    cmdline: vec!["a".repeat(1024); args],
                    ..Default::default()
                }),
                workload: None,
                path: "/t/token".into(),
                flags: 0,
                inode: 1,
                reads: 1,
                credential: Default::default(),
            }),
        };
        let mut oversize = 0;
        let small = encode_capped(read(4), &mut oversize);
        assert_eq!(oversize, 0);
        assert!(small.len() > 4096);
        let big = encode_capped(read(300), &mut oversize);
        assert_eq!(oversize, 1);
        let back = pb::Observation::decode(big).unwrap();
        let back = Observation::try_from(back).unwrap();
        assert_eq!(back.id, "n/b/7");
        let ObservationEvent::Loss(l) = back.event else {
            panic!("not a loss: {back:?}")
        };
        assert_eq!(
            (l.stage.as_str(), l.count, l.total),
            (super::super::STAGE_OVERSIZE, 1, 1)
        );
    }
}
