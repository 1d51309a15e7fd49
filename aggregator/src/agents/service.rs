//! The `credtrail.agent.v1.AgentService` implementation: one session per
//! agent stream.
//!
//! A session: the peer certificate names the node; the first message must be
//! a Hello for that node (else `permission_denied`); the Welcome tells the
//! resume point; each batch is deduplicated by (node, epoch, sequence),
//! converted (malformed observations are refused one by one, counted and
//! named in the Ack), handed to the sink, and acknowledged only after the
//! sink returned. Heartbeats update last contact and drop counters.
//! Undecodable messages and protocol violations end the stream with
//! `invalid_argument` and the reason; they never touch other agents' streams.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use credtrail_proto::model::Observation;
use credtrail_proto::pb::agent as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::identity::node_from_cert;
use super::sink::ObservationSink;
use super::validate::{Refusal, check_observation};
use crate::metrics::{Metrics, NodeLabel, RefusalLabel};
use crate::plausible;
use crate::policy::LivePolicy;
use crate::store::{AgentHello, Store};

/// Largest batch accepted (observations); told to agents in the Welcome.
pub const MAX_BATCH: usize = 4096;

/// Reject-metric source label for the agent stream.
const SOURCE: &str = "agent";

/// Dedupe state of one node, shared by its sessions (a reconnecting agent's
/// new stream may overlap the old one for a moment).
#[derive(Debug, Default)]
struct NodeState {
    epoch: u64,
    last_seq: u64,
}

/// The gRPC service.
pub struct AgentStreamService<S> {
    sink: S,
    store: Store,
    metrics: Arc<Metrics>,
    /// Cluster ranges that bound what agents may claim (`validate.rs`):
    /// the policy in force when each batch arrives.
    policy: Arc<LivePolicy>,
    nodes: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<NodeState>>>>>,
    /// Turns true when the aggregator shuts down: sessions end with `unavailable`.
    stopping: tokio::sync::watch::Receiver<bool>,
    /// How agents prove their node.
    identity: super::identity::AgentAuth,
}

impl<S: Clone> Clone for AgentStreamService<S> {
    fn clone(&self) -> Self {
        Self {
            sink: self.sink.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            policy: self.policy.clone(),
            nodes: self.nodes.clone(),
            stopping: self.stopping.clone(),
            identity: self.identity.clone(),
        }
    }
}

impl<S: ObservationSink> AgentStreamService<S> {
    /// The service; sessions end (`unavailable`, the agent reconnects
    /// elsewhere or later) once `stopping` turns true. `policy` bounds what
    /// agents may claim about their node.
    pub fn new(
        sink: S,
        store: Store,
        metrics: Arc<Metrics>,
        policy: Arc<LivePolicy>,
        stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Self {
            sink,
            store,
            metrics,
            policy,
            nodes: Arc::default(),
            stopping,
            identity: super::identity::AgentAuth::default(),
        }
    }

    /// Agents authenticate as `identity` says (default: certificates).
    pub fn with_identity(mut self, identity: super::identity::AgentAuth) -> Self {
        self.identity = identity;
        self
    }

    /// The node the caller speaks for: its certificate's, or its token's.
    async fn authenticate<T>(&self, request: &Request<T>) -> Result<String, String> {
        let certs = request.peer_certs();
        let cert = certs.as_ref().and_then(|c| c.first());
        if self.identity.accepts_certificates()
            && let Some(der) = cert
        {
            return node_from_cert(der).map_err(|e| e.to_string());
        }
        let Some(tokens) = self.identity.tokens() else {
            return Err(super::identity::IdentityError::NoCertificate.to_string());
        };
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| super::identity::TokenIdentityError::Missing.to_string())?;
        match tokens.verify(token).await {
            Ok(p) => {
                tracing::debug!(node = %p.node, pod = %p.pod, pod_uid = %p.pod_uid, "agent token verified");
                Ok(p.node)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn node_state(&self, node: &str) -> Arc<tokio::sync::Mutex<NodeState>> {
        let mut nodes = self
            .nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        nodes.entry(node.to_string()).or_default().clone()
    }

    fn reject(&self, reason: &str) {
        self.metrics.reject(SOURCE, reason);
    }

    /// Counts refused claims of `node`'s agent (metrics, and the store for
    /// coverage). A store failure is logged: the refusal itself stands.
    async fn refused(&self, node: &str, refusals: &[Refusal]) {
        if refusals.is_empty() {
            return;
        }
        let mut by_reason: BTreeMap<&'static str, (u64, String)> = BTreeMap::new();
        for r in refusals {
            self.reject(r.reason());
            self.metrics
                .agent_refused
                .get_or_create(&RefusalLabel {
                    node: node.to_owned(),
                    reason: r.reason().to_owned(),
                })
                .inc();
            let e = by_reason.entry(r.reason()).or_default();
            e.0 += 1;
            e.1 = r.to_string();
        }
        tracing::warn!(node, refused = refusals.len(), first = %refusals[0], "agent claims refused");
        let rows = by_reason.into_iter().map(|(k, (n, m))| (k, n, m)).collect();
        if let Err(e) = self.store.agent_refused(node, rows, Utc::now()).await {
            tracing::warn!(node, "recording agent refusals: {e}");
        }
    }
}

type Outbound = mpsc::Sender<Result<pb::AggregatorMessage, Status>>;

/// What one session learned from its Hello.
struct Session {
    node: String,
    epoch: u64,
    state: Arc<tokio::sync::Mutex<NodeState>>,
}

/// `unavailable` with a generic message; the detail goes to the log only.
fn unavailable(what: &str, e: &dyn std::fmt::Display) -> Status {
    tracing::error!(error = %e, "agent stream: {what} failed");
    Status::unavailable(format!("{what} failed; retry later"))
}

fn msg(payload: pb::aggregator_message::Payload) -> Result<pb::AggregatorMessage, Status> {
    Ok(pb::AggregatorMessage {
        payload: Some(payload),
    })
}

impl<S: ObservationSink> AgentStreamService<S> {
    /// Runs one stream to its end; the returned status (if any) is sent to the agent.
    async fn run(
        &self,
        cert_node: String,
        mut inbound: Streaming<pb::AgentMessage>,
        tx: &Outbound,
    ) -> Result<(), Status> {
        let first = self.next(&mut inbound).await?;
        let Some(first) = first else {
            return Ok(());
        };
        let session = self.hello(&cert_node, first, tx).await?;
        let result = self.serve_session(&session, &mut inbound, tx).await;
        self.metrics.agents_connected.dec();
        if let Err(e) = self
            .store
            .agent_disconnected(&session.node, Utc::now())
            .await
        {
            tracing::warn!(node = %session.node, "recording disconnect: {e}");
        }
        result
    }

    async fn next(
        &self,
        inbound: &mut Streaming<pb::AgentMessage>,
    ) -> Result<Option<pb::AgentMessage>, Status> {
        match inbound.message().await {
            Ok(m) => Ok(m),
            Err(status) if matches!(status.code(), tonic::Code::Cancelled) => Ok(None),
            Err(status) => {
                self.reject("undecodable");
                Err(Status::invalid_argument(format!(
                    "undecodable message on the agent stream: {}",
                    status.message()
                )))
            }
        }
    }

    async fn hello(
        &self,
        cert_node: &str,
        first: pb::AgentMessage,
        tx: &Outbound,
    ) -> Result<Session, Status> {
        let Some(pb::agent_message::Payload::Hello(hello)) = first.payload else {
            self.reject("no_hello");
            return Err(Status::invalid_argument(
                "the first message of the stream must be a hello",
            ));
        };
        if hello.node_name != cert_node || first.node_name != cert_node {
            let claimed = if hello.node_name == cert_node {
                first.node_name.clone()
            } else {
                hello.node_name.clone()
            };
            self.refused(
                cert_node,
                &[Refusal::NodeMismatch {
                    cert: cert_node.to_owned(),
                    claimed,
                }],
            )
            .await;
            tracing::warn!(cert_node, hello_node = %hello.node_name, "agent hello for another node refused");
            return Err(Status::permission_denied(format!(
                "certificate is for node {cert_node:?}; hello claims node {:?}",
                hello.node_name
            )));
        }
        if hello.stream_epoch == 0 {
            self.reject("bad_hello");
            return Err(Status::invalid_argument("hello.stream_epoch: missing"));
        }
        let state = self.node_state(cert_node);
        let mut guard = state.lock().await;
        let resume = self
            .store
            .agent_hello(
                AgentHello {
                    node: cert_node.to_string(),
                    agent_version: hello.agent_version.clone(),
                    kernel: hello.kernel_release.clone(),
                    hooks: hello.hooks.clone(),
                    addresses: hello.addresses.clone(),
                    stream_epoch: hello.stream_epoch,
                },
                Utc::now(),
            )
            .await
            .map_err(|e| unavailable("recording the agent", &e))?;
        guard.epoch = hello.stream_epoch;
        guard.last_seq = resume;
        drop(guard);
        self.metrics.agents_connected.inc();
        tracing::info!(node = cert_node, epoch = hello.stream_epoch, resume, version = %hello.agent_version, hooks = ?hello.hooks, "agent connected");
        let welcome = pb::Welcome {
            acked_seq: resume,
            max_batch: MAX_BATCH as u32,
        };
        tx.send(msg(pb::aggregator_message::Payload::Welcome(welcome)))
            .await
            .map_err(|_| Status::cancelled("agent went away"))?;
        Ok(Session {
            node: cert_node.to_string(),
            epoch: hello.stream_epoch,
            state,
        })
    }

    async fn serve_session(
        &self,
        s: &Session,
        inbound: &mut Streaming<pb::AgentMessage>,
        tx: &Outbound,
    ) -> Result<(), Status> {
        let mut stopping = self.stopping.clone();
        loop {
            let m = tokio::select! {
                m = self.next(inbound) => m?,
                _ = stopping.wait_for(|s| *s) => {
                    return Err(Status::unavailable("the aggregator is shutting down"));
                }
            };
            let Some(m) = m else { break };
            if !m.node_name.is_empty() && m.node_name != s.node {
                self.refused(
                    &s.node,
                    &[Refusal::NodeMismatch {
                        cert: s.node.clone(),
                        claimed: m.node_name.clone(),
                    }],
                )
                .await;
                return Err(Status::permission_denied(format!(
                    "stream is for node {:?}; message claims node {:?}",
                    s.node, m.node_name
                )));
            }
            match m.payload {
                Some(pb::agent_message::Payload::Batch(batch)) => {
                    let ack = self.batch(s, batch).await?;
                    if tx
                        .send(msg(pb::aggregator_message::Payload::Ack(ack)))
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                Some(pb::agent_message::Payload::Heartbeat(hb)) => self.heartbeat(s, hb).await,
                Some(pb::agent_message::Payload::Hello(_)) => {
                    self.reject("second_hello");
                    return Err(Status::invalid_argument(
                        "hello may only be the first message",
                    ));
                }
                None => {
                    self.reject("empty_message");
                    return Err(Status::invalid_argument("message has no payload"));
                }
            }
        }
        Ok(())
    }

    async fn batch(&self, s: &Session, batch: pb::ObservationBatch) -> Result<pb::Ack, Status> {
        let n = batch.observations.len() as u64;
        if batch.first_seq == 0 {
            self.reject("bad_batch");
            return Err(Status::invalid_argument(
                "batch.first_seq: must be at least 1",
            ));
        }
        if n == 0 || n > MAX_BATCH as u64 {
            self.reject("bad_batch");
            return Err(Status::invalid_argument(format!(
                "batch.observations: {n} observations, expected 1..={MAX_BATCH}"
            )));
        }
        let last = batch.first_seq.checked_add(n - 1).ok_or_else(|| {
            self.reject("bad_batch");
            Status::invalid_argument("batch.first_seq: sequence numbers overflow")
        })?;
        let mut state = s.state.lock().await;
        if state.epoch != s.epoch {
            return Err(Status::aborted("a newer stream of this node took over"));
        }
        let label = NodeLabel {
            node: s.node.clone(),
        };
        if last <= state.last_seq {
            self.metrics
                .observations_duplicate
                .get_or_create(&label)
                .inc_by(n);
            return Ok(pb::Ack {
                seq: state.last_seq,
                rejected: Vec::new(),
            });
        }
        if batch.first_seq > state.last_seq + 1 {
            // The agent's spool dropped these; it reports them as a Loss observation.
            tracing::info!(node = %s.node, missing = batch.first_seq - state.last_seq - 1, "sequence gap (agent spool dropped observations)");
        }
        let skip = state.last_seq.saturating_sub(batch.first_seq - 1) as usize;
        if skip > 0 {
            self.metrics
                .observations_duplicate
                .get_or_create(&label)
                .inc_by(skip as u64);
        }
        let mut fresh = Vec::with_capacity(batch.observations.len() - skip);
        let mut rejected = Vec::new();
        let mut refusals = Vec::new();
        let now = Utc::now();
        let policy = self.policy.current();
        for (i, o) in batch.observations.into_iter().enumerate().skip(skip) {
            let seq = batch.first_seq + i as u64;
            match Observation::try_from(o) {
                Ok(obs) => match check_observation(&s.node, obs, &policy) {
                    Ok((obs, dropped)) => {
                        refusals.extend(dropped);
                        match plausible::check_observation(&obs, now) {
                            Ok(()) => fresh.push(obs),
                            Err(e) => {
                                // Refused and acked as rejected: resending it can never succeed.
                                self.reject(plausible::REASON);
                                rejected.push(pb::Rejected {
                                    seq,
                                    reason: e.to_string(),
                                });
                            }
                        }
                    }
                    Err(r) => {
                        rejected.push(pb::Rejected {
                            seq,
                            reason: r.to_string(),
                        });
                        refusals.push(r);
                    }
                },
                Err(e) => {
                    self.reject("malformed_observation");
                    tracing::warn!(node = %s.node, seq, "malformed observation refused: {e}");
                    rejected.push(pb::Rejected {
                        seq,
                        reason: e.to_string(),
                    });
                }
            }
        }
        self.refused(&s.node, &refusals).await;
        let accepted = fresh.len() as u64;
        if !fresh.is_empty() {
            self.sink
                .ingest(&s.node, fresh)
                .await
                .map_err(|e| unavailable("storing observations", &e))?;
        }
        state.last_seq = last;
        self.store
            .agent_stored(&s.node, s.epoch, last, Utc::now())
            .await
            .map_err(|e| unavailable("recording the resume point", &e))?;
        self.metrics
            .observations
            .get_or_create(&label)
            .inc_by(accepted);
        Ok(pb::Ack {
            seq: last,
            rejected,
        })
    }

    async fn heartbeat(&self, s: &Session, hb: pb::Heartbeat) {
        let drops: BTreeMap<String, u64> =
            hb.drops.into_iter().map(|d| (d.stage, d.total)).collect();
        let total: u64 = drops.values().sum();
        self.metrics
            .agent_reported_loss
            .get_or_create(&NodeLabel {
                node: s.node.clone(),
            })
            .set(i64::try_from(total).unwrap_or(i64::MAX));
        if let Err(e) = self.store.agent_heartbeat(&s.node, drops, Utc::now()).await {
            tracing::warn!(node = %s.node, "recording heartbeat: {e}");
        }
    }
}

#[tonic::async_trait]
impl<S: ObservationSink> pb::agent_service_server::AgentService for AgentStreamService<S> {
    type StreamStream = ReceiverStream<Result<pb::AggregatorMessage, Status>>;

    async fn stream(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::StreamStream>, Status> {
        let cert_node = self.authenticate(&request).await.map_err(|e| {
            self.reject("unauthenticated");
            tracing::info!(error = %e, "agent refused");
            Status::unauthenticated(e)
        })?;
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(status) = this.run(cert_node.clone(), inbound, &tx).await {
                tracing::info!(node = %cert_node, code = ?status.code(), "agent stream ended: {}", status.message());
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
