//! `credtrail-aggregator serve`: opens the store, loads the policy and runs
//! every listener until shutdown.
//!
//! Listeners (each optional; defaults in `main.rs`): the HTTPS audit webhook
//! (GC), audit log tailers (GC), the agent gRPC stream (SD), the HTTP/JSON
//! API (GA), the gRPC query API (GA). Retention runs hourly.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::ingest::logtail::LogTailer;
use crate::ingest::tls::{TlsPaths, server_config};
use crate::ingest::webhook::{self, WebhookAuth};
use crate::listen::{self, Limits};
use crate::metrics::Metrics;
use crate::policy::{LivePolicy, Policy};
use crate::state::AppState;
use crate::store::{Store, StoreOptions, Synchronous};

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub db: PathBuf,
    pub db_synchronous: Synchronous,
    pub policy: Option<PathBuf>,
    /// Delete history older than this; `None` keeps everything.
    pub retention: Option<chrono::Duration>,
    /// HTTPS audit webhook.
    pub webhook_listen: Option<SocketAddr>,
    pub webhook_tls: Option<TlsPaths>,
    pub webhook_token_file: Option<PathBuf>,
    pub webhook_body_limit: usize,
    /// Subject CNs a webhook client certificate may have; empty: the default
    /// list ([`webhook::DEFAULT_CLIENT_SUBJECTS`]).
    pub webhook_client_subjects: Vec<String>,
    /// Audit log files to tail.
    pub audit_log_paths: Vec<PathBuf>,
    /// gRPC agent stream (mTLS).
    pub agent_listen: Option<SocketAddr>,
    /// `(cert, key, client CA)` of the agent listener.
    pub agent_tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// How agents prove their node: their kubelet-style certificate (the
    /// default; needs the client CA of `agent_tls`), a projected
    /// ServiceAccount token, or either.
    pub agent_identity: crate::agents::identity::AgentAuth,
    /// HTTP/JSON API, web page, metrics, health.
    pub api_listen: Option<SocketAddr>,
    /// gRPC query API.
    pub grpc_listen: Option<SocketAddr>,
    /// Managed control planes' inputs (formats, Firehose, Pub/Sub push).
    pub cloud: CloudInputs,
    /// Who may use the two query APIs (`auth/`).
    pub api_auth: crate::auth::config::ApiAuthConfig,
    /// Timeouts, connection caps, query pool (safe defaults: `ServeLimits::default()`).
    pub limits: ServeLimits,
}

/// Inputs from managed control planes (docs/OPERATIONS.md, "Managed control
/// planes: getting audit logs in").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudInputs {
    /// How tailed audit log lines are read (`--audit-log-format`).
    pub audit_log_format: crate::audit::InputFormat,
    /// Access keys Firehose may present at `/v1/firehose/eks` (one per line).
    pub firehose_access_key_file: Option<PathBuf>,
    /// Pub/Sub push at `/v1/pubsub/gke`: the token's keys, audience and email.
    pub pubsub: Option<crate::ingest::oidc::OidcConfig>,
}

/// Limits of the listeners and the query pool (docs/SECURITY.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    /// Whole request body; `None`: proportionate to each listener's body limit
    /// ([`listen::body_timeout_for`]).
    pub body_timeout: Option<Duration>,
    /// Concurrent connections per listener (the agent listener has its own).
    pub max_connections: usize,
    /// Concurrent connections of the agent stream listener (one per node).
    pub agent_max_connections: usize,
    /// Concurrent connections from one source address (IPv6: one /64), on
    /// every listener but the agent stream; `0`: no per-source cap.
    pub max_connections_per_ip: usize,
    /// How long connections and streams get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// A gRPC connection (query API, agent stream) with no open stream this
    /// long is closed; running streams are never cut.
    pub idle_timeout: Duration,
    /// Read-only connections serving queries.
    pub query_readers: usize,
    /// A query running longer is interrupted (503).
    pub query_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            handshake_timeout: l.handshake_timeout,
            header_timeout: l.header_timeout,
            body_timeout: None,
            max_connections: l.max_connections,
            agent_max_connections: listen::DEFAULT_AGENT_MAX_CONNECTIONS,
            max_connections_per_ip: l.max_per_ip,
            shutdown_grace: l.shutdown_grace,
            idle_timeout: l.idle_timeout,
            query_readers: crate::store::DEFAULT_READERS,
            query_timeout: crate::store::DEFAULT_QUERY_TIMEOUT,
        }
    }
}

impl ServeLimits {
    /// The limits of a listener whose bodies may be `body_limit` bytes.
    pub fn listener(&self, body_limit: usize) -> Limits {
        Limits {
            handshake_timeout: self.handshake_timeout,
            header_timeout: self.header_timeout,
            body_timeout: self
                .body_timeout
                .unwrap_or_else(|| listen::body_timeout_for(body_limit, self.header_timeout)),
            max_connections: self.max_connections,
            max_per_ip: self.max_connections_per_ip,
            shutdown_grace: self.shutdown_grace,
            idle_timeout: self.idle_timeout,
        }
    }

    /// The limits of the agent stream listener: [`Self::listener`] with the
    /// agent connection cap and no per-source cap: agents are pods, and in an
    /// IPv6 cluster many nodes' pods can share one /64 (the per-source key),
    /// so a per-source cap would silently shut out whole nodes' agents.
    pub fn agent_listener(&self, body_limit: usize) -> Limits {
        Limits {
            max_connections: self.agent_max_connections,
            max_per_ip: 0,
            ..self.listener(body_limit)
        }
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener on {addr}"))
}

/// Builds the shared state from the configuration (store + policy).
pub fn open_state(cfg: &ServeConfig) -> anyhow::Result<AppState> {
    let policy = match &cfg.policy {
        Some(p) => {
            let (policy, sha256) = crate::policy::watch::load(p)?;
            LivePolicy::new(Arc::new(policy), Some(sha256))
        }
        None => LivePolicy::fixed(Policy::default()),
    };
    let store = Store::open_with(
        &cfg.db,
        cfg.db_synchronous,
        StoreOptions {
            readers: cfg.limits.query_readers,
            query_timeout: cfg.limits.query_timeout,
        },
    )?;
    Ok(AppState::with_live_policy(
        store,
        policy,
        Arc::new(Metrics::new()),
    )?)
}

/// What `serve` runs besides the listeners.
#[derive(Debug, Clone, Default)]
pub struct ServeExtras {
    /// Push delivery of new alerts (`--outputs`, `deliver/`).
    pub outputs: Vec<crate::deliver::Sink>,
}

/// Runs the aggregator until `shutdown` resolves or a listener fails. At
/// shutdown, listeners stop accepting, live streams and agent sessions end,
/// and whatever is still running after `limits.shutdown_grace` is dropped.
pub async fn serve(cfg: ServeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    serve_with(cfg, ServeExtras::default(), shutdown).await
}

/// [`serve`] with push delivery.
pub async fn serve_with(
    cfg: ServeConfig,
    extras: ServeExtras,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let query_listens: Vec<SocketAddr> = cfg
        .api_listen
        .iter()
        .chain(&cfg.grpc_listen)
        .copied()
        .collect();
    let auth = cfg.api_auth.build(&query_listens)?;
    if auth.is_insecure() {
        tracing::warn!(
            "--api-insecure-no-auth: the query API accepts anyone on loopback as admin; for local development only"
        );
    }
    let state = open_state(&cfg)?.with_auth(auth);
    let others = [cfg.webhook_listen, cfg.api_listen, cfg.grpc_listen];
    listen::raise_fd_limit(
        others.iter().flatten().count() * cfg.limits.max_connections
            + cfg
                .agent_listen
                .map_or(0, |_| cfg.limits.agent_max_connections),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let deliver_stop = stop_rx.clone();
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();

    if !extras.outputs.is_empty() {
        let names: Vec<String> = extras.outputs.iter().map(|s| s.name.clone()).collect();
        let feed = state.pipeline.subscribe_alerts();
        let deliveries = crate::deliver::Deliveries::start(
            extras.outputs,
            state.metrics.clone(),
            deliver_stop.clone(),
        )
        .map_err(|e| anyhow::anyhow!("--outputs: {e}"))?;
        tracing::info!(sinks = ?names, "pushing new alerts");
        // Ends at shutdown; never ends `serve` by itself.
        tokio::spawn(deliveries.run(feed, deliver_stop));
    }

    if let Some(addr) = cfg.webhook_listen {
        let tls = cfg
            .webhook_tls
            .as_ref()
            .context("the audit webhook needs --tls-cert and --tls-key (it serves HTTPS only); or --webhook-listen off")?;
        let mut auth = WebhookAuth::default()
            .with_client_cert(tls.client_ca.is_some())
            .with_client_subjects(&cfg.webhook_client_subjects);
        if let Some(f) = &cfg.webhook_token_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the webhook token file {}", f.display()))?;
            auth = auth.with_tokens(text.lines());
        }
        if let Some(f) = &cfg.cloud.firehose_access_key_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the Firehose access key file {}", f.display()))?;
            auth = auth.with_firehose_keys(text.lines());
            anyhow::ensure!(
                auth.firehose_configured(),
                "the Firehose access key file {} holds no key",
                f.display()
            );
            tracing::info!(
                "Firehose HTTP endpoint delivery enabled at {}",
                crate::ingest::firehose::PATH
            );
        }
        if let Some(p) = &cfg.cloud.pubsub {
            let v = crate::ingest::oidc::OidcVerifier::new(p.clone())?;
            auth = auth.with_pubsub(v);
            tracing::info!("Pub/Sub push enabled at {}", crate::ingest::pubsub::PATH);
        }
        anyhow::ensure!(
            auth.is_configured(),
            "the audit webhook needs authentication: --webhook-token-file and/or --webhook-client-ca"
        );
        let tls = server_config(tls)?;
        let listener = bind(addr, "audit webhook").await?;
        tracing::info!(%addr, "audit webhook listening (HTTPS)");
        let (st, stop, limit) = (state.clone(), stopped(), cfg.webhook_body_limit);
        let limits = cfg.limits.listener(limit);
        tasks.spawn(async move {
            webhook::serve_limited(listener, tls, auth, limit, limits, st, stop)
                .await
                .context("audit webhook")
        });
    }
    if let Some(path) = &cfg.policy
        && !crate::policy::watch::check_interval().is_zero()
    {
        // Reloaded in place when its content changes (ConfigMap edits);
        // ends at shutdown, never ends `serve` by itself.
        let sha256 = hex::decode(state.policy.sha256())
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .unwrap_or_default();
        let watch = crate::policy::watch::PolicyWatch::new(path.clone(), sha256);
        tokio::spawn(crate::policy::watch::run(
            watch,
            state.pipeline.clone(),
            state.metrics.clone(),
            stopped(),
        ));
        tracing::info!(
            path = %path.display(),
            every_seconds = crate::policy::watch::check_interval().as_secs_f64(),
            "watching the policy file for changes"
        );
    }
    for path in &cfg.audit_log_paths {
        let t =
            LogTailer::new(path.clone(), state.pipeline.clone()).format(cfg.cloud.audit_log_format);
        let stop = stopped();
        let p = path.display().to_string();
        tracing::info!(path = %p, "tailing audit log");
        tasks.spawn(async move { t.run(stop).await.with_context(|| format!("tailing {p}")) });
    }
    if let Some(addr) = cfg.agent_listen {
        let (cert, key, client_ca) = cfg
            .agent_tls
            .clone()
            .context("the agent stream needs --tls-cert, --tls-key and --agent-client-ca (or --agent-auth token); or --agent-listen off")?;
        let tls = crate::agents::TlsFiles {
            cert,
            key,
            client_ca: (!client_ca.as_os_str().is_empty()).then_some(client_ca),
            identity: cfg.agent_identity.clone(),
        };
        let listener = bind(addr, "agent stream").await?;
        let (st, stop) = (state.clone(), stopped());
        let limits = cfg.limits.agent_listener(crate::agents::MAX_MESSAGE_BYTES);
        tasks.spawn(async move {
            crate::agents::serve(listener, &tls, limits, st, stop)
                .await
                .context("agent stream")
        });
    }
    // Query APIs (GA): HTTP/JSON + web page + metrics + health; gRPC QueryService.
    if let Some(addr) = cfg.api_listen {
        let listener = bind(addr, "HTTP API").await?;
        tracing::info!(%addr, "HTTP API, web page and /metrics listening");
        let (st, stop) = (state.clone(), stopped());
        let limits = cfg.limits.listener(crate::api::http::BODY_LIMIT);
        tasks.spawn(async move {
            crate::api::http::serve_limited(listener, limits, st, stop)
                .await
                .context("HTTP API")
        });
    }
    if let Some(addr) = cfg.grpc_listen {
        let listener = bind(addr, "gRPC query API").await?;
        tracing::info!(%addr, "gRPC QueryService listening");
        let (st, stop) = (state.clone(), stopped());
        let limits = cfg.limits.listener(crate::api::http::BODY_LIMIT);
        tasks.spawn(async move {
            crate::api::grpc::serve_limited(listener, limits, st, stop)
                .await
                .context("gRPC query API")
        });
    }
    if let Some(keep) = cfg.retention {
        let st = state.clone();
        let stop = stopped();
        tasks.spawn(async move {
            tokio::pin!(stop);
            loop {
                let now = chrono::Utc::now();
                match st
                    .store
                    .write(move |tx| crate::store::prune(tx, now, keep))
                    .await
                {
                    Ok(p) => tracing::info!(?p, "retention pass"),
                    Err(e) => tracing::warn!(error = %e, "retention pass failed"),
                }
                tokio::select! {
                    () = &mut stop => return Ok(()),
                    () = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
                }
            }
        });
    }

    tokio::pin!(shutdown);
    let result = tokio::select! {
        () = &mut shutdown => Ok(()),
        Some(r) = tasks.join_next() => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::anyhow!("listener task failed: {e}")),
        },
    };
    let _ = stop_tx.send(true);
    state.stop();
    let grace = cfg.limits.shutdown_grace;
    let drained = tokio::time::timeout(grace + Duration::from_secs(1), async {
        while let Some(r) = tasks.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::warn!(error = %e, "listener ended with an error during shutdown");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "listeners still busy {}s after shutdown began: dropping them",
            grace.as_secs()
        );
        tasks.shutdown().await;
    }
    result
}
