//! Push delivery of new alerts to a SOC: syslog (RFC 5424 over TCP or TLS,
//! RFC 6587 octet counting, CEF payload) and HTTP webhooks (generic JSON,
//! Slack, Alertmanager). Configured by `serve --outputs FILE`
//! ([`config`]); docs/INTEGRATIONS.md.
//!
//! Each sink has its own bounded queue fed from the pipeline's live alerts
//! (after they are stored) and one worker that sends alert by alert, in
//! order, retrying failures with doubling back-off up to `max_attempts`.
//! **When a queue is full the oldest alert is dropped** and counted
//! (`credtrail_delivery_dropped_total{sink}`): a dead receiver must not hold
//! the aggregator's memory, and every alert stays in the store, so the gap
//! can be re-read from the export API (`since=`). No spill to disk.
//! Per sink in /metrics: sent, failed, dropped, retries, queue depth.

pub mod config;
pub mod syslog;
pub mod tls;
pub mod webhook;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast};

use crate::alert::Alert;
use crate::metrics::{Metrics, SinkLabel};
pub use config::{Bounds, Kind, Sink};

/// A bounded FIFO: pushing onto a full queue drops the oldest entry.
pub struct Queue {
    items: Mutex<VecDeque<Arc<Alert>>>,
    cap: usize,
    ready: Notify,
}

impl Queue {
    pub fn new(cap: usize) -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
            ready: Notify::new(),
        }
    }

    /// Appends; returns whether the oldest entry was dropped to make room.
    pub fn push(&self, a: Arc<Alert>) -> bool {
        let mut q = self
            .items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dropped = if q.len() >= self.cap {
            q.pop_front();
            true
        } else {
            false
        };
        q.push_back(a);
        drop(q);
        self.ready.notify_one();
        dropped
    }

    pub fn len(&self) -> usize {
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn pop(&self) -> Option<Arc<Alert>> {
        self.items
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    }

    /// Waits for the next entry.
    pub async fn next(&self) -> Arc<Alert> {
        loop {
            let notified = self.ready.notified();
            if let Some(a) = self.pop() {
                return a;
            }
            notified.await;
        }
    }
}

/// How one attempt ended.
#[derive(Debug)]
pub enum SendError {
    /// Worth another try (connection, timeout, 5xx, 429).
    Retry(String),
    /// The receiver refused it (4xx): retrying would not help.
    Refused(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Retry(m) => write!(f, "{m} (will retry)"),
            SendError::Refused(m) => write!(f, "{m} (refused, not retried)"),
        }
    }
}

/// A sink's transport: sends one alert.
enum Transport {
    Syslog(syslog::SyslogSender),
    Webhook(webhook::WebhookSender),
}

impl Transport {
    async fn send(&mut self, a: &Alert) -> Result<(), SendError> {
        match self {
            Transport::Syslog(s) => s.send(a).await,
            Transport::Webhook(w) => w.send(a).await,
        }
    }
}

/// A running sink: its queue (fed by [`Deliveries::offer`]) and worker.
struct Running {
    name: String,
    queue: Arc<Queue>,
}

/// Every configured sink, running.
pub struct Deliveries {
    sinks: Vec<Running>,
    metrics: Arc<Metrics>,
}

fn label(name: &str) -> SinkLabel {
    SinkLabel {
        sink: name.to_owned(),
    }
}

impl Deliveries {
    /// Starts one worker per sink (on the current tokio runtime). Fails on a
    /// sink whose TLS material cannot be read.
    pub fn start(
        sinks: Vec<Sink>,
        metrics: Arc<Metrics>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Self, String> {
        let mut running = Vec::new();
        for s in sinks {
            let transport = match &s.kind {
                Kind::Syslog { .. } => Transport::Syslog(
                    syslog::SyslogSender::new(&s).map_err(|e| format!("sink {:?}: {e}", s.name))?,
                ),
                Kind::Webhook { .. } => Transport::Webhook(
                    webhook::WebhookSender::new(&s)
                        .map_err(|e| format!("sink {:?}: {e}", s.name))?,
                ),
            };
            let queue = Arc::new(Queue::new(s.bounds.queue));
            let l = label(&s.name);
            // Make every series visible from the start.
            metrics.delivery_sent.get_or_create(&l).inc_by(0);
            metrics.delivery_failed.get_or_create(&l).inc_by(0);
            metrics.delivery_dropped.get_or_create(&l).inc_by(0);
            metrics.delivery_retries.get_or_create(&l).inc_by(0);
            metrics.delivery_queue_depth.get_or_create(&l).set(0);
            tokio::spawn(worker(
                s.name.clone(),
                s.bounds,
                transport,
                queue.clone(),
                metrics.clone(),
                stop.clone(),
            ));
            running.push(Running {
                name: s.name,
                queue,
            });
        }
        Ok(Self {
            sinks: running,
            metrics,
        })
    }

    /// Queues one new alert on every sink.
    pub fn offer(&self, a: Alert) {
        let a = Arc::new(a);
        for s in &self.sinks {
            let l = label(&s.name);
            if s.queue.push(a.clone()) {
                self.metrics.delivery_dropped.get_or_create(&l).inc();
            }
            self.metrics
                .delivery_queue_depth
                .get_or_create(&l)
                .set(i64::try_from(s.queue.len()).unwrap_or(i64::MAX));
        }
    }

    /// Counts alerts the feed missed (a lagging broadcast reader) as dropped on every sink.
    pub fn missed(&self, n: u64) {
        for s in &self.sinks {
            self.metrics
                .delivery_dropped
                .get_or_create(&label(&s.name))
                .inc_by(n);
        }
    }

    /// Feeds the sinks from the pipeline's live alerts until `stop` turns true.
    pub async fn run(
        self,
        mut alerts: broadcast::Receiver<Alert>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                r = alerts.recv() => match r {
                    Ok(a) => self.offer(a),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "push delivery fell behind the alert feed");
                        self.missed(n);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

async fn worker(
    name: String,
    bounds: Bounds,
    mut transport: Transport,
    queue: Arc<Queue>,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let l = label(&name);
    loop {
        let a = tokio::select! {
            a = queue.next() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        metrics
            .delivery_queue_depth
            .get_or_create(&l)
            .set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let r = tokio::select! {
                r = tokio::time::timeout(bounds.timeout, transport.send(&a)) => r
                    .unwrap_or_else(|_| Err(SendError::Retry(format!("no answer within {:?}", bounds.timeout)))),
                _ = stop.wait_for(|s| *s) => return,
            };
            match r {
                Ok(()) => {
                    metrics.delivery_sent.get_or_create(&l).inc();
                    break;
                }
                Err(SendError::Retry(e)) if attempt < bounds.max_attempts => {
                    metrics.delivery_retries.get_or_create(&l).inc();
                    let wait = bounds.backoff(attempt);
                    tracing::warn!(sink = %name, alert = %a.id, attempt, error = %e, ?wait, "delivery failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                }
                Err(e) => {
                    metrics.delivery_failed.get_or_create(&l).inc();
                    tracing::warn!(sink = %name, alert = %a.id, attempt, error = %e, "delivery gave up");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_the_oldest() {
        let q = Queue::new(2);
        let mut a = crate::encode::cef::tests::alert();
        let mut push = |id: &str| {
            a.id = id.into();
            q.push(Arc::new(a.clone()))
        };
        assert!(!push("1"));
        assert!(!push("2"));
        assert!(push("3"));
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop().unwrap().id, "2");
        assert_eq!(q.pop().unwrap().id, "3");
        assert!(q.is_empty());
    }
}
