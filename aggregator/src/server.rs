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

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::ingest::logtail::LogTailer;
use crate::ingest::tls::{TlsPaths, server_config};
use crate::ingest::webhook::{self, WebhookAuth};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::state::AppState;
use crate::store::{Store, Synchronous};

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
    /// HTTP/JSON API, web page, metrics, health.
    pub api_listen: Option<SocketAddr>,
    /// gRPC query API.
    pub grpc_listen: Option<SocketAddr>,
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener on {addr}"))
}

/// Builds the shared state from the configuration (store + policy).
pub fn open_state(cfg: &ServeConfig) -> anyhow::Result<AppState> {
    let policy = match &cfg.policy {
        Some(p) => Policy::load(p)?,
        None => Policy::default(),
    };
    let store = Store::open(&cfg.db, cfg.db_synchronous)?;
    Ok(AppState::new(store, policy, Arc::new(Metrics::new()))?)
}

/// Runs the aggregator until `shutdown` resolves or a listener fails.
pub async fn serve(cfg: ServeConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let state = open_state(&cfg)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();

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
        anyhow::ensure!(
            auth.is_configured(),
            "the audit webhook needs authentication: --webhook-token-file and/or --webhook-client-ca"
        );
        let tls = server_config(tls)?;
        let listener = bind(addr, "audit webhook").await?;
        tracing::info!(%addr, "audit webhook listening (HTTPS)");
        let (st, stop, limit) = (state.clone(), stopped(), cfg.webhook_body_limit);
        tasks.spawn(async move {
            webhook::serve(listener, tls, auth, limit, st, stop)
                .await
                .context("audit webhook")
        });
    }
    for path in &cfg.audit_log_paths {
        let t = LogTailer::new(path.clone(), state.pipeline.clone());
        let stop = stopped();
        let p = path.display().to_string();
        tracing::info!(path = %p, "tailing audit log");
        tasks.spawn(async move { t.run(stop).await.with_context(|| format!("tailing {p}")) });
    }
    if let Some(addr) = cfg.agent_listen {
        let (cert, key, client_ca) = cfg
            .agent_tls
            .clone()
            .context("the agent stream needs --tls-cert, --tls-key and --agent-client-ca (mTLS only); or --agent-listen off")?;
        let tls = crate::agents::TlsFiles {
            cert,
            key,
            client_ca,
        };
        let listener = bind(addr, "agent stream").await?;
        let (st, stop) = (state.clone(), stopped());
        tasks.spawn(async move {
            crate::agents::serve(listener, &tls, st, stop)
                .await
                .context("agent stream")
        });
    }
    // Query APIs (GA): HTTP/JSON + web page + metrics + health; gRPC QueryService.
    if let Some(addr) = cfg.api_listen {
        let listener = bind(addr, "HTTP API").await?;
        tracing::info!(%addr, "HTTP API, web page and /metrics listening");
        let (st, stop) = (state.clone(), stopped());
        tasks.spawn(async move {
            crate::api::http::serve(listener, st, stop)
                .await
                .context("HTTP API")
        });
    }
    if let Some(addr) = cfg.grpc_listen {
        let listener = bind(addr, "gRPC query API").await?;
        tracing::info!(%addr, "gRPC QueryService listening");
        let (st, stop) = (state.clone(), stopped());
        tasks.spawn(async move {
            crate::api::grpc::serve(listener, st, stop)
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
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "listener ended with an error during shutdown");
        }
    }
    result
}
