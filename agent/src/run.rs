//! The agent's library entry point: [`start`] loads and attaches the kernel
//! programs, then runs the event loop (ring buffer -> raw events -> enricher ->
//! observations) until [`RunningAgent::shutdown`].

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use credtrail_common::Counter;
use credtrail_proto::model::Observation;
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
    let mut enricher = Enricher::new(EnrichConfig::from(&cfg));
    // Node info and the start-up scan go first, before any live event.
    let mut first = vec![enricher.node_info(hooks.clone())];
    if cfg.scan_on_start {
        first.extend(enricher.scan_existing(&cfg.patterns));
    }
    let task = tokio::spawn(event_loop(
        EventLoop {
            probes,
            ring,
            enricher,
            tx,
            first,
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
}

struct EventLoop {
    probes: loader::Probes,
    ring: AsyncFd<RingBuf<MapData>>,
    enricher: Enricher,
    tx: mpsc::Sender<Observation>,
    first: Vec<Observation>,
    losses: Losses,
}

impl EventLoop {
    /// Sends without waiting; a full channel is a counted loss. Returns
    /// false when the receiver is gone.
    fn offer(&mut self, obs: Observation) -> bool {
        match self.tx.try_send(obs) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.losses.add(STAGE_CHANNEL, 1);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn drain_ring(&mut self) -> bool {
        let clock = Clock::now();
        let mut raws = Vec::new();
        {
            let ring = self.ring.get_mut();
            while let Some(item) = ring.next() {
                match events::decode(&item, &clock) {
                    Ok(ev) => raws.push(ev),
                    Err(e) => {
                        tracing::warn!("undecodable kernel record: {e}");
                        self.losses.add(STAGE_DECODE, 1);
                    }
                }
            }
        }
        for ev in raws {
            let obs = match ev {
                KernelEvent::Open(o) => self.enricher.on_open(o),
                KernelEvent::Connect(c) => Some(self.enricher.on_connect(c)),
            };
            if let Some(obs) = obs
                && !self.offer(obs)
            {
                return false;
            }
        }
        true
    }

    /// Periodic work: folded reads now due, and loss reports.
    fn tick(&mut self) -> bool {
        for obs in self.enricher.flush_due(chrono::Utc::now()) {
            if !self.offer(obs) {
                return false;
            }
        }
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
        for (stage, count, total) in self.losses.due() {
            tracing::warn!(stage, count, total, "events lost");
            let obs = self.enricher.loss(stage, count, total);
            // A loss report must not itself be lost silently: wait for room.
            if self.tx.try_send(obs).is_err() {
                // Leave it due: re-report on the next tick.
                self.losses.unreport(stage, count);
            }
        }
        true
    }
}

impl Losses {
    fn unreport(&mut self, stage: &str, count: u64) {
        if let Some(s) = self.stages.iter_mut().find(|s| s.0 == stage) {
            s.2 -= count;
        }
    }
}

/// `Loss` stages.
pub const STAGE_RING_BUFFER: &str = "ring_buffer";
pub const STAGE_KERNEL_READ: &str = "kernel_read";
pub const STAGE_PENDING: &str = "pending_connect";
pub const STAGE_CHANNEL: &str = "channel";
pub const STAGE_DECODE: &str = "decode";

async fn event_loop(mut lp: EventLoop, mut stop: tokio::sync::oneshot::Receiver<()>) {
    for obs in std::mem::take(&mut lp.first) {
        tokio::select! {
            r = lp.tx.send(obs) => if r.is_err() { return },
            _ = &mut stop => return,
        }
    }
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
    // Events already in the ring buffer are still reported, if there is room.
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
