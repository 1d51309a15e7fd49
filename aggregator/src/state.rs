//! Shared state of a running aggregator, handed to every listener.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::auth::ApiAuth;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineError};
use crate::policy::{LivePolicy, Policy};
use crate::store::Store;

/// What every listener (webhook, agent stream, query API) shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub pipeline: Pipeline,
    pub metrics: Arc<Metrics>,
    /// The policy in force (reloaded in place, `policy/watch.rs`).
    pub policy: Arc<LivePolicy>,
    /// When this process started.
    pub started: DateTime<Utc>,
    /// Who may use the query API (default: nobody; `serve` sets it).
    pub auth: Arc<ApiAuth>,
    /// Turns true when the aggregator shuts down: live streams end.
    pub stopping: Arc<tokio::sync::watch::Sender<bool>>,
    /// Triage changes, after they are stored (`api/triage.rs`), for live streams.
    pub triage_events: tokio::sync::broadcast::Sender<crate::triage::TriageEvent>,
}

impl AppState {
    /// Builds the state: loads detection state from `store` and applies `policy`
    /// (configured roles and suppressions are written to the store).
    pub fn new(store: Store, policy: Policy, metrics: Arc<Metrics>) -> Result<Self, PipelineError> {
        Self::with_live_policy(store, LivePolicy::fixed(policy), metrics)
    }

    /// [`AppState::new`] with the policy in force held by `policy` (`serve`).
    pub fn with_live_policy(
        store: Store,
        policy: Arc<LivePolicy>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PipelineError> {
        store.count_query_timeouts(metrics.query_timeouts.clone());
        store.instrument_writer(metrics.store_writer.clone());
        let pipeline = Pipeline::with_live_policy(store.clone(), policy.clone(), metrics.clone())?;
        Ok(Self {
            store,
            pipeline,
            metrics,
            policy,
            started: Utc::now(),
            auth: Arc::new(ApiAuth::deny_all()),
            stopping: Arc::new(tokio::sync::watch::Sender::new(false)),
            triage_events: tokio::sync::broadcast::channel(crate::triage::EVENT_CHANNEL).0,
        })
    }

    /// The same state with this query-API authentication.
    pub fn with_auth(mut self, auth: ApiAuth) -> Self {
        self.auth = Arc::new(auth);
        self
    }

    /// Tells live streams the aggregator is stopping (they end).
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    /// An in-memory aggregator with the given policy (tests, replay).
    pub fn in_memory(policy: Policy) -> Result<Self, PipelineError> {
        let store = Store::open_in_memory()?;
        Self::new(store, policy, Arc::new(Metrics::new()))
    }
}
