//! Prometheus metrics of the aggregator, exposed at `/metrics`.
//!
//! Every ingest path counts what it accepted and what it rejected (by reason);
//! the detection counts alerts by rule and severity.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label: which input an event came through (`webhook`, `log`, `replay`, `agent`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    pub source: String,
}

/// Labels for rejected input.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabel {
    pub source: String,
    pub reason: String,
}

/// Labels for alerts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabel {
    pub rule: String,
    pub severity: String,
}

/// Labels for per-node agent figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabel {
    pub node: String,
}

/// Label: one detection-state map (`jti_places`, `identities`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MapLabel {
    pub map: String,
}

/// Labels for detection state removed by a bound (`reason`: `cap` or `age`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DroppedLabel {
    pub map: String,
    pub reason: String,
}

/// Labels for query-API requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    /// `http` or `grpc`.
    pub api: String,
    /// Route (`/api/v1/alerts`) or gRPC method (`ListAlerts`).
    pub endpoint: String,
    /// HTTP status or gRPC code name.
    pub code: String,
}

/// Labels for claims refused from a node's agent.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabel {
    /// The client certificate's node.
    pub node: String,
    pub reason: String,
}

/// Labels for per-listener figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    /// `webhook`, `agent`, `http_api`, `grpc_api`.
    pub listener: String,
}

/// Labels for connections a listener ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerDropLabel {
    pub listener: String,
    /// `handshake_timeout`, `handshake_failed`, `header_timeout`, `idle_timeout`.
    pub reason: String,
}

/// Label: one push-delivery sink (`deliver/`), by its configured name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    pub sink: String,
}

/// All aggregator metrics. Cheap to share behind an `Arc`.
pub struct Metrics {
    pub registry: Registry,
    /// Audit events accepted, by source.
    pub audit_events: Family<SourceLabel, Counter>,
    /// Input rejected, by source and reason.
    pub rejected: Family<RejectLabel, Counter>,
    /// Wrapper items deliberately left out (CloudWatch control messages,
    /// non-audit log streams), by source and reason.
    pub audit_skipped: Family<RejectLabel, Counter>,
    /// Agent observations accepted, by node.
    pub observations: Family<NodeLabel, Counter>,
    /// Duplicate observations dropped (resent after a reconnect), by node.
    pub observations_duplicate: Family<NodeLabel, Counter>,
    /// Events the agents reported lost (kernel ring buffer, spool), by node.
    pub agent_reported_loss: Family<NodeLabel, Gauge<i64, AtomicI64Compat>>,
    /// Alerts raised, by rule and severity.
    pub alerts: Family<AlertLabel, Counter>,
    /// Seconds between an audit event's `stageTimestamp` and its processing.
    pub audit_lag_seconds: Histogram,
    /// Agents with a live stream.
    pub agents_connected: Gauge,
    /// Query-API requests, by API, endpoint and outcome.
    pub api_requests: Family<ApiLabel, Counter>,
    /// Clients on the live alert stream (gRPC and SSE).
    pub live_stream_clients: Gauge,
    /// Alerts live-stream clients missed because they read too slowly.
    pub live_stream_skipped: Counter,
    /// Query-API requests refused before any handler ran, by API and reason
    /// (unauthenticated, forbidden, unavailable, host, content_type).
    pub api_auth_refused: Family<AuthRefusedLabel, Counter>,
    /// Alerts each active suppression has silenced (refreshed at each scrape).
    pub suppression_hits: Family<SuppressionLabel, Gauge>,
    /// RBAC object fields that could not be read (each named in its alert's details).
    pub rbac_unreadable_fields: Counter,
    /// Node writes whose addresses/pod ranges were ignored: the writer is not
    /// the node (nor the cloud node controller) (`detect/node_writes.rs`).
    pub node_writes_refused: Counter,
    /// Claims refused from agents, by (certificate) node and reason.
    pub agent_refused: Family<RefusalLabel, Counter>,
    /// Failed `accept()` calls (e.g. EMFILE), by listener.
    pub accept_errors: Family<ListenerLabel, Counter>,
    /// Open connections, by listener.
    pub connections: Family<ListenerLabel, Gauge>,
    /// Connections a listener closed on a client (timeouts, failed handshakes).
    pub connections_dropped: Family<ListenerDropLabel, Counter>,
    /// Queries interrupted because they ran past the query timeout.
    pub query_timeouts: Counter,
    /// The store's writer thread: wait, group time and size.
    pub store_writer: crate::store::WriterMetrics,
    /// Entries in each detection-state map.
    pub state_entries: Family<MapLabel, Gauge>,
    /// Detection-state entries removed by a map's count (`cap`) or age (`age`) limit.
    pub state_dropped: Family<DroppedLabel, Counter>,
    /// Push delivery (`deliver/`), per sink: alerts delivered.
    pub delivery_sent: Family<SinkLabel, Counter>,
    /// Alerts given up on after the last retry or a refusal (4xx).
    pub delivery_failed: Family<SinkLabel, Counter>,
    /// Alerts dropped from a full queue (oldest first) or missed by a lagging reader.
    pub delivery_dropped: Family<SinkLabel, Counter>,
    /// Attempts that failed and were retried.
    pub delivery_retries: Family<SinkLabel, Counter>,
    /// Alerts waiting in the sink's queue.
    pub delivery_queue_depth: Family<SinkLabel, Gauge>,
    /// Policy file reloads, by result (`ok`, `invalid`, `error`).
    pub policy_reloads: Family<ResultLabel, Counter>,
    /// Reloads applied since start (0: the policy loaded at start).
    pub policy_generation: Gauge,
    /// 1 for the SHA-256 of the policy file in force (`default`: no file).
    pub policy_info: Family<PolicyInfoLabel, Gauge>,
}

/// Label: how something ended (`ok`, `invalid`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// Label: the SHA-256 (hex) of the policy file in force.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyInfoLabel {
    pub sha256: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthRefusedLabel {
    pub api: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SuppressionLabel {
    pub id: String,
    pub origin: String,
}

/// The atomic behind the loss gauge (plain i64 gauge).
pub type AtomicI64Compat = std::sync::atomic::AtomicI64;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("credtrail");
        let audit_events = Family::<SourceLabel, Counter>::default();
        registry.register(
            "audit_events",
            "Audit events accepted",
            audit_events.clone(),
        );
        let rejected = Family::<RejectLabel, Counter>::default();
        registry.register(
            "rejected",
            "Input rejected, by source and reason",
            rejected.clone(),
        );
        let audit_skipped = Family::<RejectLabel, Counter>::default();
        registry.register(
            "audit_skipped",
            "Cloud wrapper items left out on purpose (control messages, non-audit log streams), by source and reason",
            audit_skipped.clone(),
        );
        let observations = Family::<NodeLabel, Counter>::default();
        registry.register(
            "observations",
            "Agent observations accepted",
            observations.clone(),
        );
        let observations_duplicate = Family::<NodeLabel, Counter>::default();
        registry.register(
            "observations_duplicate",
            "Duplicate agent observations dropped",
            observations_duplicate.clone(),
        );
        let agent_reported_loss = Family::<NodeLabel, Gauge<i64, AtomicI64Compat>>::default();
        registry.register(
            "agent_reported_loss",
            "Events an agent reported lost since it started",
            agent_reported_loss.clone(),
        );
        let alerts = Family::<AlertLabel, Counter>::default();
        registry.register("alerts", "Alerts raised", alerts.clone());
        let audit_lag_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "audit_lag_seconds",
            "Delay from an audit event's stage timestamp to its processing",
            audit_lag_seconds.clone(),
        );
        let agents_connected = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "agents_connected",
            "Agents with a live stream",
            agents_connected.clone(),
        );
        let api_requests = Family::<ApiLabel, Counter>::default();
        registry.register(
            "api_requests",
            "Query-API requests, by API, endpoint and outcome",
            api_requests.clone(),
        );
        let live_stream_clients = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "live_stream_clients",
            "Clients on the live alert stream",
            live_stream_clients.clone(),
        );
        let live_stream_skipped = Counter::default();
        registry.register(
            "live_stream_skipped",
            "Alerts live-stream clients missed because they read too slowly",
            live_stream_skipped.clone(),
        );
        let api_auth_refused = Family::<AuthRefusedLabel, Counter>::default();
        registry.register(
            "api_auth_refused",
            "Query-API requests refused by authentication, authorization, Host or Content-Type checks",
            api_auth_refused.clone(),
        );
        let suppression_hits = Family::<SuppressionLabel, Gauge>::default();
        registry.register(
            "suppression_hits",
            "Alerts silenced by each active suppression",
            suppression_hits.clone(),
        );
        let rbac_unreadable_fields = Counter::default();
        registry.register(
            "rbac_unreadable_fields",
            "RBAC object fields in audit events that could not be read (the events were still judged)",
            rbac_unreadable_fields.clone(),
        );
        let node_writes_refused = Counter::default();
        registry.register(
            "node_writes_refused",
            "Node object writes whose addresses or pod ranges were not learned: the writer is not that node nor the cloud node controller",
            node_writes_refused.clone(),
        );
        let agent_refused = Family::<RefusalLabel, Counter>::default();
        registry.register(
            "agent_refused",
            "Claims refused from a node's agent (another node, outside the policy's ranges), by node and reason",
            agent_refused.clone(),
        );
        let accept_errors = Family::<ListenerLabel, Counter>::default();
        registry.register(
            "accept_errors",
            "Failed accept() calls (e.g. out of file descriptors), by listener",
            accept_errors.clone(),
        );
        let connections = Family::<ListenerLabel, Gauge>::default();
        registry.register(
            "connections",
            "Open connections, by listener",
            connections.clone(),
        );
        let connections_dropped = Family::<ListenerDropLabel, Counter>::default();
        registry.register(
            "connections_dropped",
            "Connections closed on a client (timeouts, failed TLS handshakes), by listener and reason",
            connections_dropped.clone(),
        );
        let query_timeouts = Counter::default();
        registry.register(
            "query_timeouts",
            "Queries interrupted because they ran past the query timeout",
            query_timeouts.clone(),
        );
        let store_writer = crate::store::WriterMetrics {
            wait: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            group: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            jobs: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
        };
        registry.register(
            "store_write_wait_seconds",
            "Time a write (webhook batch, agent batch) waited for the store's writer thread",
            store_writer.wait.clone(),
        );
        registry.register(
            "store_write_group_seconds",
            "Time of one group commit on the writer thread: its writes, then the commit and its sync",
            store_writer.group.clone(),
        );
        registry.register(
            "store_write_group_jobs",
            "Writes committed together in one group",
            store_writer.jobs.clone(),
        );
        let state_entries = Family::<MapLabel, Gauge>::default();
        registry.register(
            "detector_state_entries",
            "Entries in each in-memory detection-state map",
            state_entries.clone(),
        );
        let state_dropped = Family::<DroppedLabel, Counter>::default();
        registry.register(
            "detector_state_dropped",
            "Detection-state entries removed by a map's count (cap) or age (age) limit, or because they can no longer matter (expired: reads of tokens past their exp)",
            state_dropped.clone(),
        );
        let delivery_sent = Family::<SinkLabel, Counter>::default();
        registry.register(
            "delivery_sent",
            "Alerts pushed to a sink (syslog, webhook) and accepted by it",
            delivery_sent.clone(),
        );
        let delivery_failed = Family::<SinkLabel, Counter>::default();
        registry.register(
            "delivery_failed",
            "Alerts a sink never accepted (retries exhausted, or refused with 4xx)",
            delivery_failed.clone(),
        );
        let delivery_dropped = Family::<SinkLabel, Counter>::default();
        registry.register(
            "delivery_dropped",
            "Alerts dropped before delivery: the sink's queue was full (oldest dropped first)",
            delivery_dropped.clone(),
        );
        let delivery_retries = Family::<SinkLabel, Counter>::default();
        registry.register(
            "delivery_retries",
            "Delivery attempts that failed and were retried",
            delivery_retries.clone(),
        );
        let delivery_queue_depth = Family::<SinkLabel, Gauge>::default();
        registry.register(
            "delivery_queue_depth",
            "Alerts waiting in a sink's queue",
            delivery_queue_depth.clone(),
        );
        let policy_reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy file changes looked at, by result: ok (in force), invalid (the previous policy stayed), error (not stored; retried)",
            policy_reloads.clone(),
        );
        let policy_generation = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "policy_generation",
            "Policy reloads applied since start (0: the policy loaded at start)",
            policy_generation.clone(),
        );
        let policy_info = Family::<PolicyInfoLabel, Gauge>::default();
        registry.register(
            "policy_info",
            "1 for the SHA-256 of the policy file in force (default: no policy file)",
            policy_info.clone(),
        );
        registry.register_collector(Box::new(TlsCollector));
        registry.register_collector(Box::new(crate::auth::review_cache::ReviewCacheCollector));
        Self {
            policy_reloads,
            policy_generation,
            policy_info,
            delivery_sent,
            delivery_failed,
            delivery_dropped,
            delivery_retries,
            delivery_queue_depth,
            agent_refused,
            accept_errors,
            connections,
            connections_dropped,
            query_timeouts,
            store_writer,
            registry,
            api_auth_refused,
            suppression_hits,
            rbac_unreadable_fields,
            node_writes_refused,
            state_entries,
            state_dropped,
            api_requests,
            live_stream_clients,
            live_stream_skipped,
            audit_events,
            rejected,
            audit_skipped,
            observations,
            observations_duplicate,
            agent_reported_loss,
            alerts,
            audit_lag_seconds,
            agents_connected,
        }
    }

    /// Counts one rejected input.
    pub fn reject(&self, source: &str, reason: &str) {
        self.rejected
            .get_or_create(&RejectLabel {
                source: source.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts wrapper items left out on purpose.
    pub fn skipped(&self, source: &str, reason: &str, n: u64) {
        self.audit_skipped
            .get_or_create(&RejectLabel {
                source: source.split(':').next().unwrap_or(source).to_owned(),
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }

    /// Counts a connection a listener closed on its client.
    pub fn connection_dropped(&self, listener: &str, reason: &str) {
        self.connections_dropped
            .get_or_create(&ListenerDropLabel {
                listener: listener.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Publishes the detection-state figures of one batch.
    pub fn state(&self, stats: &[crate::detect::limits::MapStat]) {
        for st in stats {
            let map = st.map.to_owned();
            self.state_entries
                .get_or_create(&MapLabel { map: map.clone() })
                .set(i64::try_from(st.entries).unwrap_or(i64::MAX));
            for (reason, n) in [
                ("cap", st.dropped.cap),
                ("age", st.dropped.age),
                ("expired", st.dropped.expired),
            ] {
                if n > 0 {
                    self.state_dropped
                        .get_or_create(&DroppedLabel {
                            map: map.clone(),
                            reason: reason.to_owned(),
                        })
                        .inc_by(n);
                }
            }
        }
    }

    /// Counts one look at a changed policy file (`ok`, `invalid`, `error`).
    pub fn policy_reload(&self, result: &str) {
        self.policy_reloads
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Publishes the policy in force.
    pub fn policy_in_force(&self, sha256: &str, generation: u64) {
        self.policy_info.clear();
        self.policy_info
            .get_or_create(&PolicyInfoLabel {
                sha256: sha256.to_owned(),
            })
            .set(1);
        self.policy_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Counts one query-API request.
    pub fn api_request(&self, api: &str, endpoint: &str, code: &str) {
        self.api_requests
            .get_or_create(&ApiLabel {
                api: api.to_owned(),
                endpoint: endpoint.to_owned(),
                code: code.to_owned(),
            })
            .inc();
    }

    /// Counts one refused query-API request.
    pub fn api_auth_refused(&self, api: &str, reason: &str) {
        self.api_auth_refused
            .get_or_create(&AuthRefusedLabel {
                api: api.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// The text exposition format, for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The reloading TLS files' figures, read at scrape time
/// ([`crate::ingest::tls_watch::figures`]).
#[derive(Debug)]
struct TlsCollector;

impl prometheus_client::collector::Collector for TlsCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        // Described even before a listener loaded its files, so that the
        // families (and alert rules on them) always exist.
        let figures = crate::ingest::tls_watch::figures();
        let expiry = Family::<ListenerLabel, Gauge>::default();
        let failures = Family::<ListenerLabel, Counter>::default();
        let reloads = Family::<ListenerLabel, Counter>::default();
        for f in &figures {
            let l = ListenerLabel {
                listener: f.listener.clone(),
            };
            expiry.get_or_create(&l).set(f.expiry_seconds);
            if !f.listener.ends_with("-client-ca") {
                failures.get_or_create(&l).inc_by(f.reload_failures);
                reloads.get_or_create(&l).inc_by(f.reloads);
            }
        }
        expiry.encode(encoder.encode_descriptor(
            "tls_cert_expiry_seconds",
            "Seconds until the notAfter of each listener's serving certificate (and of the earliest certificate in its client CA bundle)",
            None,
            expiry.metric_type(),
        )?)?;
        failures.encode(encoder.encode_descriptor(
            "tls_reload_failures",
            "Changed TLS files refused (unreadable, mismatched key, expired): the previous certificate stayed",
            None,
            failures.metric_type(),
        )?)?;
        reloads.encode(encoder.encode_descriptor(
            "tls_reloads",
            "Changed TLS files loaded without a restart",
            None,
            reloads.metric_type(),
        )?)?;
        Ok(())
    }
}
