//! The one pipeline every input feeds: audit batches (webhook, log tail,
//! replay) and agent observations (gRPC stream, JSON-lines replay).
//!
//! A batch is deduplicated against the store, judged by the [`Detector`]
//! (in memory), and written with its alerts and inventory changes in **one
//! SQLite transaction** (shared with other batches waiting at the same
//! moment: group commit, `store/group.rs`); the call returns only after that commit, so a
//! webhook 2xx or a stream ack means "durably stored". Alerts are broadcast
//! to live subscribers after the commit.
//!
//! Detection state is updated before the commit; if the commit fails the
//! in-memory state may hold the batch's sightings (the caller gets an error
//! and the sender retries; dedupe then skips nothing that was not stored).

use std::sync::{Arc, Mutex};

use credtrail_proto::model::{Observation, ObservationEvent};
use tokio::sync::broadcast;

use crate::alert::Alert;
use crate::audit::AuditEvent;
use crate::detect::{Changes, Detector};
use crate::metrics::{AlertLabel, Metrics, NodeLabel, RejectLabel, SourceLabel};
use crate::policy::{LivePolicy, Policy};
use crate::store::{self, Store, StoreError};

/// Errors of the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What happened to one audit batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngestReport {
    /// Events in the batch.
    pub received: usize,
    /// Events stored for the first time.
    pub accepted: usize,
    /// Events already stored (same auditID and stage): skipped.
    pub duplicates: usize,
    /// Alerts raised (active ones; suppressed alerts are stored, not listed here).
    pub alerts: Vec<Alert>,
    /// Alerts stored as suppressed (maintenance window or suppression).
    pub suppressed: usize,
}

/// Where a tailed log has been read up to; written in the batch's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOffset {
    pub path: String,
    pub dev: u64,
    pub inode: u64,
    pub offset: u64,
}

/// The ingest + detection pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    metrics: Arc<Metrics>,
    /// The policy in force (the detector holds its own copy, swapped with it).
    policy: Arc<LivePolicy>,
    detector: Arc<Mutex<Detector>>,
    alerts: broadcast::Sender<Alert>,
}

const ALERT_CHANNEL: usize = 4096;

impl Pipeline {
    /// Builds the pipeline, restoring detection state from `store` and writing
    /// the policy's roles and suppressions into it.
    pub fn new(
        store: Store,
        policy: Arc<Policy>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PipelineError> {
        Self::with_live_policy(store, LivePolicy::new(policy, None), metrics)
    }

    /// [`Pipeline::new`] with the policy in force held by `live` (`serve`:
    /// its file's hash; reloads swap it, [`Pipeline::set_policy`]).
    pub fn with_live_policy(
        store: Store,
        live: Arc<LivePolicy>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, PipelineError> {
        let policy = live.current();
        let mut detector = Detector::new(policy.clone());
        let loaded = store.write_blocking(|tx| {
            store::apply_policy(tx, &policy, chrono::Utc::now())?;
            Ok((
                store::load_state_capped(tx, &policy.state)?,
                store::learned::load_learned(tx, crate::detect::lineage::MAX_MINTED as i64)?,
                store::activity::load_open(tx)?,
            ))
        })?;
        let (loaded, learned, activity) = loaded;
        detector.restore(loaded);
        detector.restore_learned(learned);
        detector.restore_activity(activity);
        metrics.state(&detector.state_stats());
        metrics.policy_in_force(&live.sha256(), live.generation());
        let (alerts, _) = broadcast::channel(ALERT_CHANNEL);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                metrics,
                policy: live,
                detector: Arc::new(Mutex::new(detector)),
                alerts,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Counts wrapper items left out on purpose (control messages, other log streams).
    pub fn record_skipped(&self, source: &str, reason: &str, n: u64) {
        self.inner.metrics.skipped(source, reason, n);
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        self.inner.policy.current()
    }

    /// The swappable policy (what listeners read per batch or request).
    pub fn live_policy(&self) -> &Arc<LivePolicy> {
        &self.inner.policy
    }

    /// Puts a reloaded policy in force (`policy/watch.rs`): in the store
    /// (its roles and suppressions, as at start) and in the detector, in one
    /// write, so every batch is judged wholly by the old or the new policy.
    /// Detection state already held is kept. Returns the new generation.
    pub async fn set_policy(
        &self,
        policy: Policy,
        sha256: Option<[u8; 32]>,
    ) -> Result<u64, PipelineError> {
        let policy = Arc::new(policy);
        let detector = self.inner.detector.clone();
        let m = self.inner.metrics.clone();
        let p = policy.clone();
        self.inner
            .store
            .write(move |tx| {
                store::apply_policy(tx, &p, chrono::Utc::now())?;
                let suppressions = store::load_suppressions(tx)?;
                let mut det = detector
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                det.set_policy(p, suppressions);
                m.state(&det.state_stats());
                Ok(())
            })
            .await?;
        let generation = self.inner.policy.set(policy, sha256);
        self.inner
            .metrics
            .policy_in_force(&self.inner.policy.sha256(), generation);
        Ok(generation)
    }

    /// Live alerts (active ones), after they are stored.
    pub fn subscribe_alerts(&self) -> broadcast::Receiver<Alert> {
        self.inner.alerts.subscribe()
    }

    /// Ingests one audit batch; returns once it is durably stored.
    pub async fn ingest_audit_batch(
        &self,
        source: &str,
        events: Vec<AuditEvent>,
    ) -> Result<IngestReport, PipelineError> {
        self.ingest_audit(source, events, None).await
    }

    /// Ingests one audit batch and, in the same transaction, records how far
    /// a tailed log has been read.
    pub async fn ingest_audit(
        &self,
        source: &str,
        events: Vec<AuditEvent>,
        offset: Option<LogOffset>,
    ) -> Result<IngestReport, PipelineError> {
        let detector = self.inner.detector.clone();
        let m = self.inner.metrics.clone();
        let src = source.to_owned();
        let now = chrono::Utc::now();
        let received = events.len();
        let lag: Vec<f64> = events
            .iter()
            .filter_map(|e| e.stage_timestamp)
            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
            .collect();
        let (accepted, all_alerts, unreadable) = self
            .inner
            .store
            .write(move |tx| {
                let mut det = detector
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut changes = Changes::default();
                let (batch_id, fresh) = store::insert_audit_events(tx, &src, now, &events)?;
                let missing = det.missing_identities(
                    events
                        .iter()
                        .zip(&fresh)
                        .filter(|(_, f)| **f)
                        .map(|(e, _)| e),
                );
                if !missing.is_empty() {
                    det.restore_identities(store::load_identities(tx, &missing)?);
                }
                let mut alerts = Vec::new();
                for (ev, is_new) in events.iter().zip(&fresh) {
                    if *is_new {
                        alerts.extend(det.judge(ev, &mut changes));
                    }
                }
                store::write_changes(tx, &changes, now)?;
                store::insert_alerts(tx, &alerts, now)?;
                store::finish_audit_batch(tx, batch_id, &src, now, &events, &fresh)?;
                if let Some(o) = &offset {
                    store::save_log_offset(tx, o, now)?;
                }
                m.state(&det.state_stats());
                Ok((
                    fresh.iter().filter(|n| **n).count(),
                    alerts,
                    (changes.unreadable_fields, changes.node_writes_refused),
                ))
            })
            .await?;
        let m = &self.inner.metrics;
        m.audit_events
            .get_or_create(&SourceLabel {
                source: metric_source(source),
            })
            .inc_by(accepted as u64);
        for l in lag {
            m.audit_lag_seconds.observe(l);
        }
        let (unreadable, node_writes_refused) = unreadable;
        m.rbac_unreadable_fields.inc_by(unreadable);
        m.node_writes_refused.inc_by(node_writes_refused);
        let mut report = IngestReport {
            received,
            accepted,
            duplicates: received - accepted,
            ..Default::default()
        };
        for a in all_alerts {
            if crate::detect::suppressed_by(&a).is_some() {
                report.suppressed += 1;
                continue;
            }
            m.alerts
                .get_or_create(&AlertLabel {
                    rule: a.rule.clone(),
                    severity: a.severity.as_str().to_owned(),
                })
                .inc();
            // No subscriber is fine: the alert is stored.
            let _ = self.inner.alerts.send(a.clone());
            report.alerts.push(a);
        }
        Ok(report)
    }

    /// Ingests a batch of one node's observations; returns once durably stored.
    pub async fn ingest_observations(
        &self,
        node: &str,
        batch: Vec<Observation>,
    ) -> Result<(), PipelineError> {
        let detector = self.inner.detector.clone();
        let m = self.inner.metrics.clone();
        let now = chrono::Utc::now();
        let n = batch.len();
        let (fresh_count, loss) = self
            .inner
            .store
            .write(move |tx| {
                let mut det = detector
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let mut changes = Changes::default();
                let fresh = store::insert_observations(tx, &batch)?;
                for (obs, is_new) in batch.iter().zip(&fresh) {
                    if *is_new {
                        det.observe(obs, &mut changes);
                    }
                }
                store::write_changes(tx, &changes, now)?;
                m.state(&det.state_stats());
                let loss: Vec<(String, u64)> = batch
                    .iter()
                    .filter_map(|o| match &o.event {
                        ObservationEvent::Loss(l) => Some((o.node.clone(), l.total)),
                        _ => None,
                    })
                    .collect();
                Ok((fresh.iter().filter(|f| **f).count(), loss))
            })
            .await?;
        let m = &self.inner.metrics;
        let label = NodeLabel {
            node: node.to_owned(),
        };
        m.observations
            .get_or_create(&label)
            .inc_by(fresh_count as u64);
        m.observations_duplicate
            .get_or_create(&label)
            .inc_by((n - fresh_count) as u64);
        for (node, total) in loss {
            m.agent_reported_loss
                .get_or_create(&NodeLabel { node })
                .set(i64::try_from(total).unwrap_or(i64::MAX));
        }
        Ok(())
    }

    /// Counts rejected input (metrics and the coverage table).
    pub async fn record_rejected(
        &self,
        source: &str,
        reason: &str,
        count: u64,
    ) -> Result<(), PipelineError> {
        self.inner
            .metrics
            .rejected
            .get_or_create(&RejectLabel {
                source: metric_source(source),
                reason: reason.to_owned(),
            })
            .inc_by(count);
        let src = source.to_owned();
        self.inner
            .store
            .write(move |tx| store::count_rejected(tx, &src, count, chrono::Utc::now()))
            .await?;
        Ok(())
    }

    /// Drops one reviewed baseline source (store and memory); returns whether it existed.
    pub async fn drop_baseline(
        &self,
        username: String,
        ip: std::net::IpAddr,
    ) -> Result<bool, PipelineError> {
        let detector = self.inner.detector.clone();
        let found = self
            .inner
            .store
            .write(move |tx| {
                let stored = store::learned::drop_baseline(tx, &username, &ip.to_string())?;
                let mem = detector
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .drop_baseline(&username, ip);
                Ok(stored || mem)
            })
            .await?;
        Ok(found)
    }

    /// Re-reads the `suppressions` table (after the API adds or deletes one).
    pub async fn reload_suppressions(&self) -> Result<(), PipelineError> {
        let sups = self.inner.store.read(store::load_suppressions).await?;
        self.inner
            .detector
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .set_suppressions(sups);
        Ok(())
    }
}

/// Metric label for a source: `log:<path>` collapses to `log`.
fn metric_source(source: &str) -> String {
    source.split(':').next().unwrap_or(source).to_owned()
}
