//! Audit events in the real `audit.k8s.io/v1` format, and their delivery the
//! way the kube-apiserver's webhook backend does it: buffered, sent as
//! `EventList` batches (at most `batch_max` events, or whatever arrived within
//! `batch_wait`), retried with backoff when the receiver fails.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

use super::authn::UserInfo;
use super::https::{self, Target};

/// RFC 3339 with microseconds, as the API server writes timestamps.
pub fn micro_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// `objectRef` of an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectRef {
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub api_group: Option<String>,
    pub api_version: String,
}

/// Everything one request's event says.
#[derive(Debug, Clone)]
pub struct Record {
    /// `Metadata` or `RequestResponse`.
    pub level: &'static str,
    pub verb: String,
    pub request_uri: String,
    pub user: UserInfo,
    pub source_ips: Vec<String>,
    pub user_agent: Option<String>,
    pub object_ref: Option<ObjectRef>,
    pub code: u16,
    pub request_object: Option<Value>,
    pub response_object: Option<Value>,
    pub received: DateTime<Utc>,
    pub decision: &'static str,
    pub reason: String,
}

impl Record {
    /// The `audit.k8s.io/v1` `Event`, stage `ResponseComplete`, stamped now.
    pub fn to_event(&self) -> Value {
        let mut ev = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": self.level,
            "auditID": uuid::Uuid::new_v4().to_string(),
            "stage": "ResponseComplete",
            "requestURI": self.request_uri,
            "verb": self.verb,
            "user": self.user,
            "sourceIPs": self.source_ips,
            "responseStatus": {"metadata": {}, "code": self.code},
            "requestReceivedTimestamp": micro_time(self.received),
            "stageTimestamp": micro_time(Utc::now()),
            "annotations": {
                "authorization.k8s.io/decision": self.decision,
                "authorization.k8s.io/reason": self.reason,
            },
        });
        if let Some(ua) = &self.user_agent {
            ev["userAgent"] = json!(ua);
        }
        if let Some(o) = &self.object_ref {
            let mut r = json!({"resource": o.resource, "apiVersion": o.api_version});
            if let Some(ns) = &o.namespace {
                r["namespace"] = json!(ns);
            }
            if let Some(n) = &o.name {
                r["name"] = json!(n);
            }
            if let Some(g) = &o.api_group {
                r["apiGroup"] = json!(g);
            }
            ev["objectRef"] = r;
        }
        if self.code >= 400 {
            ev["responseStatus"]["status"] = json!("Failure");
            ev["responseStatus"]["reason"] = json!(match self.code {
                401 => "Unauthorized",
                403 => "Forbidden",
                404 => "NotFound",
                409 => "AlreadyExists",
                _ => "BadRequest",
            });
        }
        if self.level == "RequestResponse" {
            if let Some(o) = &self.request_object {
                ev["requestObject"] = o.clone();
            }
            if let Some(o) = &self.response_object {
                ev["responseObject"] = o.clone();
            }
        }
        ev
    }
}

/// Where the events go.
#[derive(Clone)]
pub struct WebhookConfig {
    /// e.g. `/audit` on the aggregator's webhook listener.
    pub path: String,
    pub target: Target,
    /// Events per POST at most (the API server's default is 400).
    pub batch_max: usize,
    /// Longest an event waits for its batch to fill.
    pub batch_wait: Duration,
}

/// Counters of the webhook delivery.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryStats {
    pub batches_sent: u64,
    pub events_sent: u64,
    pub failed_attempts: u64,
    pub last_error: Option<String>,
}

/// The audit backend: keeps every event (for tests), optionally appends
/// them to a log file, and batches them to the webhook.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::UnboundedSender<Value>,
    pub events: Arc<Mutex<Vec<Value>>>,
    pub stats: Arc<Mutex<DeliveryStats>>,
}

impl AuditSink {
    /// Starts the delivery task.
    pub fn start(webhook: Option<WebhookConfig>, log_path: Option<PathBuf>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Mutex::new(DeliveryStats::default()));
        tokio::spawn(deliver(rx, webhook, log_path, stats.clone()));
        Self {
            tx,
            events: Arc::default(),
            stats,
        }
    }

    /// Records one event.
    pub fn emit(&self, event: Value) {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(event.clone());
        let _ = self.tx.send(event);
    }

    pub fn stats(&self) -> DeliveryStats {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

async fn deliver(
    mut rx: mpsc::UnboundedReceiver<Value>,
    webhook: Option<WebhookConfig>,
    log_path: Option<PathBuf>,
    stats: Arc<Mutex<DeliveryStats>>,
) {
    let mut log = match &log_path {
        Some(p) => match tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .await
        {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!("audit log {}: {e}", p.display());
                None
            }
        },
        None => None,
    };
    let batch_max = webhook.as_ref().map_or(400, |w| w.batch_max.max(1));
    let batch_wait = webhook
        .as_ref()
        .map_or(Duration::from_millis(200), |w| w.batch_wait);
    loop {
        let Some(first) = rx.recv().await else { return };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + batch_wait;
        while batch.len() < batch_max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(ev)) => batch.push(ev),
                Ok(None) | Err(_) => break,
            }
        }
        if let Some(f) = &mut log {
            let mut lines = String::new();
            for ev in &batch {
                lines.push_str(&ev.to_string());
                lines.push('\n');
            }
            if let Err(e) = f.write_all(lines.as_bytes()).await {
                tracing::warn!("audit log: {e}");
            }
        }
        if let Some(w) = &webhook {
            send_with_retry(w, batch, &stats).await;
        }
    }
}

async fn send_with_retry(w: &WebhookConfig, batch: Vec<Value>, stats: &Mutex<DeliveryStats>) {
    let n = batch.len() as u64;
    let body = json!({
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "metadata": {},
        "items": batch,
    })
    .to_string()
    .into_bytes();
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=10 {
        let r = https::request(
            &w.target,
            "POST",
            &w.path,
            &[
                ("content-type", "application/json".to_string()),
                ("user-agent", "kube-apiserver-admission".to_string()),
            ],
            Some(body.clone()),
        )
        .await;
        let err = match r {
            Ok(resp) if (200..300).contains(&resp.status) => {
                let mut s = stats
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s.batches_sent += 1;
                s.events_sent += n;
                return;
            }
            Ok(resp) => format!(
                "webhook answered {}: {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ),
            Err(e) => e.to_string(),
        };
        tracing::warn!(attempt, "audit webhook: {err}");
        {
            let mut s = stats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.failed_attempts += 1;
            s.last_error = Some(err);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    tracing::error!(events = n, "audit webhook: batch dropped after 10 attempts");
}
