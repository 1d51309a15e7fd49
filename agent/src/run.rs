//! The agent's library entry point: [`start`] loads and attaches the kernel
//! programs, then runs the event loop (ring buffer -> raw events -> enricher ->
//! observations) until [`RunningAgent::shutdown`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aya::maps::{MapData, RingBuf};
use credtrail_common::Counter;
use credtrail_proto::model::{Loss, Observation, ObservationEvent};
use tokio::io::{Interest, unix::AsyncFd};
use tokio::sync::mpsc;

pub use crate::config::{
    AgentConfig, ConnectHook, ENV_CONNECT_HOOK, ENV_HOOK_MODE, HookMode, default_node_name,
};
use crate::enrich::{EnrichConfig, Enricher};
use crate::loader::{
    self,
    events::{self, Clock, KernelEvent},
};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Load(#[from] crate::loader::LoadError),
    #[error("agent I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A started agent.
pub struct RunningAgent {
    /// Observations, in order (node info first, then the start-up scan, then events).
    pub observations: mpsc::Receiver<Observation>,
    hooks: Vec<String>,
    refusals: Vec<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningAgent {
    /// Hooks in use (`lsm_file_open`, `fentry_security_file_open`,
    /// `tracepoint_openat`, `tracepoint_openat2`, `tp_btf_inet_sock_set_state`).
    pub fn hooks(&self) -> &[String] {
        &self.hooks
    }

    /// Why preferred open hooks were not used (e.g. `lsm: ... Operation not
    /// permitted`); empty when the first choice loaded.
    pub fn refusals(&self) -> &[String] {
        &self.refusals
    }

    /// Stops the event loop and detaches the programs.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Loads and attaches the kernel programs, sends the node info and the
/// start-up scan, then reports events until shutdown.
///
/// Two parts: the event loop (a tokio task) drains the ring buffer, decodes
/// records and hands them to the enrichment thread through a bounded queue
/// (full: a counted `enrich_queue` loss); the enrichment thread owns the
/// [`Enricher`], whose file and `/proc` I/O runs on a bounded pool with a
/// deadline ([`crate::pool`]). Nothing a process does to a file can stall the
/// event loop or keep the agent from stopping.
pub async fn start(cfg: AgentConfig) -> Result<RunningAgent, AgentError> {
    let mut probes = loader::load(&loader::LoadOptions {
        hook: cfg.hook,
        connect_hook: cfg.connect_hook,
        patterns: &cfg.patterns,
        endpoints: &cfg.api_endpoints,
        agent_tgid: std::process::id(),
    })?;
    for r in probes.refusals() {
        tracing::info!("preferred hook not used: {r}");
    }
    // SAFETY: the ring buffer owns its map fd, which is neither closed nor
    // replaced while the AsyncFd holds it.
    let ring =
        unsafe { AsyncFd::register_with_interest(probes.take_events()?, Interest::READABLE) }
            .map_err(|e| AgentError::Io(std::io::Error::from(e)))?;
    let hooks = probes.hooks().to_vec();
    let refusals = probes.refusals().to_vec();
    let (tx, rx) = mpsc::channel(cfg.channel_capacity.max(1));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let enricher = Enricher::new(EnrichConfig::from(&cfg));
    let ids = enricher.id_prefix();
    // Node info goes first, before the scan and any live event.
    let _ = tx.try_send(enricher.node_info(hooks.clone()));
    let shared = Arc::new(Shared::default());
    let (work_tx, work_rx) = std::sync::mpsc::sync_channel(ENRICH_QUEUE);
    let scan = cfg.scan_on_start.then(|| cfg.patterns.clone());
    {
        let (tx, shared) = (tx.clone(), Arc::clone(&shared));
        std::thread::Builder::new()
            .name("credtrail-enrich".into())
            .spawn(move || enrich_thread(enricher, scan, work_rx, tx, shared))?;
    }
    let task = tokio::spawn(event_loop(
        EventLoop {
            probes,
            ring,
            work: work_tx,
            tx,
            node: cfg.node_name.clone(),
            ids,
            shared,
            losses: Losses::default(),
        },
        stop_rx,
    ));
    Ok(RunningAgent {
        observations: rx,
        hooks,
        refusals,
        shutdown: Some(stop_tx),
        task: Some(task),
    })
}

/// Raw events waiting for the enrichment thread, at most.
pub const ENRICH_QUEUE: usize = 4096;

/// Counters the enrichment thread keeps for the event loop's loss reports.
#[derive(Default)]
struct Shared {
    /// Observations dropped because the output channel was full.
    channel_full: AtomicU64,
    /// Events dropped because every I/O worker was busy.
    io_saturated: AtomicU64,
}

/// Sends without waiting; a full channel is a counted loss. Returns false
/// when the receiver is gone.
fn offer(tx: &mpsc::Sender<Observation>, shared: &Shared, obs: Observation) -> bool {
    match tx.try_send(obs) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            shared.channel_full.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// The enrichment thread: the start-up scan, then raw events into
/// observations, and folded reads when their interval ends.
fn enrich_thread(
    mut enricher: Enricher,
    scan: Option<crate::patterns::WatchPatterns>,
    work: std::sync::mpsc::Receiver<KernelEvent>,
    tx: mpsc::Sender<Observation>,
    shared: Arc<Shared>,
) {
    if let Some(patterns) = scan {
        for obs in enricher.scan_existing(&patterns) {
            if tx.blocking_send(obs).is_err() {
                return;
            }
        }
    }
    let mut last_flush = Instant::now();
    loop {
        match work.recv_timeout(Duration::from_millis(250)) {
            Ok(ev) => {
                let obs = match ev {
                    KernelEvent::Open(o) => enricher.on_open(o),
                    KernelEvent::Connect(c) => Some(enricher.on_connect(c)),
                };
                shared
                    .io_saturated
                    .store(enricher.stats().io_saturated, Ordering::Relaxed);
                if let Some(obs) = obs
                    && !offer(&tx, &shared, obs)
                {
                    return;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        }
        if last_flush.elapsed() >= Duration::from_secs(1) {
            last_flush = Instant::now();
            for obs in enricher.flush_due(chrono::Utc::now()) {
                if !offer(&tx, &shared, obs) {
                    return;
                }
            }
        }
    }
}

/// Cumulative losses per stage, and what was last reported.
#[derive(Default)]
struct Losses {
    /// (stage, total now, total reported)
    stages: Vec<(&'static str, u64, u64)>,
}

impl Losses {
    fn set(&mut self, stage: &'static str, total: u64) {
        match self.stages.iter_mut().find(|s| s.0 == stage) {
            Some(s) => s.1 = total,
            None => self.stages.push((stage, total, 0)),
        }
    }

    fn add(&mut self, stage: &'static str, n: u64) {
        let cur = self.stages.iter().find(|s| s.0 == stage).map_or(0, |s| s.1);
        self.set(stage, cur + n);
    }

    /// Stages whose total grew since the last report: (stage, count, total).
    fn due(&mut self) -> Vec<(&'static str, u64, u64)> {
        let mut out = Vec::new();
        for s in &mut self.stages {
            if s.1 > s.2 {
                out.push((s.0, s.1 - s.2, s.1));
                s.2 = s.1;
            }
        }
        out
    }

    fn unreport(&mut self, stage: &str, count: u64) {
        if let Some(s) = self.stages.iter_mut().find(|s| s.0 == stage) {
            s.2 -= count;
        }
    }
}

struct EventLoop {
    probes: loader::Probes,
    ring: AsyncFd<RingBuf<MapData>>,
    /// To the enrichment thread.
    work: std::sync::mpsc::SyncSender<KernelEvent>,
    tx: mpsc::Sender<Observation>,
    node: String,
    /// `<node>/<boot id>`: loss observation ids are `<ids>/loss-<stage>-<total>`.
    ids: String,
    shared: Arc<Shared>,
    losses: Losses,
}

impl EventLoop {
    fn drain_ring(&mut self) -> bool {
        let clock = Clock::now();
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            match events::decode(&item, &clock) {
                Ok(ev) => match self.work.try_send(ev) {
                    Ok(()) => {}
                    Err(std::sync::mpsc::TrySendError::Full(_)) => {
                        self.losses.add(STAGE_ENRICH_QUEUE, 1);
                    }
                    Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return false,
                },
                Err(e) => {
                    tracing::warn!("undecodable kernel record: {e}");
                    self.losses.add(STAGE_DECODE, 1);
                }
            }
        }
        true
    }

    /// Periodic work: loss reports.
    fn tick(&mut self) -> bool {
        match self.probes.counters() {
            Ok(c) => {
                self.losses
                    .set(STAGE_RING_BUFFER, c[Counter::RingbufFull as usize]);
                self.losses
                    .set(STAGE_KERNEL_READ, c[Counter::ReadError as usize]);
                self.losses
                    .set(STAGE_PENDING, c[Counter::PendingFull as usize]);
            }
            Err(e) => tracing::warn!("reading kernel counters: {e}"),
        }
        self.losses.set(
            STAGE_CHANNEL,
            self.shared.channel_full.load(Ordering::Relaxed),
        );
        self.losses.set(
            STAGE_IO_POOL,
            self.shared.io_saturated.load(Ordering::Relaxed),
        );
        for (stage, count, total) in self.losses.due() {
            tracing::warn!(stage, count, total, "events lost");
            let obs = Observation {
                id: format!("{}/loss-{stage}-{total}", self.ids),
                time: chrono::Utc::now(),
                node: self.node.clone(),
                event: ObservationEvent::Loss(Loss {
                    stage: stage.to_owned(),
                    count,
                    total,
                }),
            };
            match self.tx.try_send(obs) {
                Ok(()) => {}
                // Leave it due: re-report on the next tick.
                Err(mpsc::error::TrySendError::Full(_)) => self.losses.unreport(stage, count),
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    }
}

/// `Loss` stages.
pub const STAGE_RING_BUFFER: &str = "ring_buffer";
pub const STAGE_KERNEL_READ: &str = "kernel_read";
pub const STAGE_PENDING: &str = "pending_connect";
pub const STAGE_CHANNEL: &str = "channel";
pub const STAGE_DECODE: &str = "decode";
/// The enrichment thread's queue was full.
pub const STAGE_ENRICH_QUEUE: &str = "enrich_queue";
/// Every I/O worker was busy (files or `/proc` that do not answer).
pub const STAGE_IO_POOL: &str = "io_pool";

async fn event_loop(mut lp: EventLoop, mut stop: tokio::sync::oneshot::Receiver<()>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            guard = lp.ring.readable_mut() => {
                let Ok(mut guard) = guard else { break };
                guard.clear_ready();
                drop(guard);
                if !lp.drain_ring() {
                    break;
                }
            }
            _ = tick.tick() => {
                if !lp.tick() {
                    break;
                }
            }
        }
    }
    // Events already in the ring buffer still go to the enrichment thread,
    // if there is room; it ends when the queue is empty and closed.
    let _ = lp.drain_ring();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_report_growth_once_and_keep_totals() {
        let mut l = Losses::default();
        l.set(STAGE_RING_BUFFER, 0);
        assert!(l.due().is_empty(), "nothing lost, nothing reported");
        l.set(STAGE_RING_BUFFER, 5);
        l.add(STAGE_CHANNEL, 1);
        l.add(STAGE_CHANNEL, 1);
        assert_eq!(
            l.due(),
            vec![(STAGE_RING_BUFFER, 5, 5), (STAGE_CHANNEL, 2, 2)]
        );
        assert!(l.due().is_empty(), "reported once");
        l.set(STAGE_RING_BUFFER, 7);
        let d = l.due();
        assert_eq!(d, vec![(STAGE_RING_BUFFER, 2, 7)]);
        // A report that could not be sent is due again.
        l.unreport(STAGE_RING_BUFFER, 2);
        assert_eq!(l.due(), vec![(STAGE_RING_BUFFER, 2, 7)]);
    }
}
