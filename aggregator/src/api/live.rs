//! The live alert stream shared by gRPC `StreamAlerts` and the HTTP
//! server-sent events at `/api/v1/alerts/stream`.
//!
//! Each client has its own receiver on the pipeline's broadcast channel. A
//! client that reads too slowly falls behind the channel's bound; it is then
//! told how many alerts it missed (`Skipped`), never silently dropped, and the
//! count goes to `credtrail_live_stream_skipped_total`.

use std::sync::Arc;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::alert::Alert;
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::store::query::AlertFilter;

/// One item of the live stream.
#[derive(Debug, Clone, PartialEq)]
pub enum LiveEvent {
    Alert(Box<Alert>),
    /// This many alerts or triage changes (before filtering) were missed.
    Skipped(u64),
    /// An alert's triage changed (`crate::triage`), after it was stored.
    Triage(Box<crate::triage::TriageEvent>),
}

/// Keeps the connected-clients gauge right, however the stream ends.
struct ClientGuard(Arc<Metrics>);

impl ClientGuard {
    fn new(m: Arc<Metrics>) -> Self {
        m.live_stream_clients.inc();
        Self(m)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.live_stream_clients.dec();
    }
}

/// New alerts matching `filter`, from now on. Ends when the pipeline stops
/// or the aggregator shuts down ([`AppState::stop`]).
pub fn subscribe(
    state: &AppState,
    filter: AlertFilter,
) -> impl Stream<Item = LiveEvent> + Send + 'static {
    let rx = state.pipeline.subscribe_alerts();
    let triage = state.triage_events.subscribe();
    let guard = ClientGuard::new(state.metrics.clone());
    let stop = state.stopping.subscribe();
    futures::stream::unfold((rx, triage, filter, guard, stop), |mut st| async move {
        loop {
            let next = tokio::select! {
                r = st.0.recv() => r.map(|a| LiveEvent::Alert(Box::new(a))),
                t = st.1.recv() => t.map(|t| LiveEvent::Triage(Box::new(t))),
                _ = st.4.wait_for(|s| *s) => return None,
            };
            match next {
                Ok(ev) if wanted(&st.2, &ev) => return Some((ev, st)),
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    st.3.0.live_stream_skipped.inc_by(n);
                    return Some((LiveEvent::Skipped(n), st));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

/// Whether `filter` lets the event through. A new alert is open and
/// unassigned; a triage change passes when the alert matches and its state
/// before or after the change matches `status`/`assignee` (a client watching
/// `status=open` sees an alert leave).
fn wanted(filter: &AlertFilter, ev: &LiveEvent) -> bool {
    match ev {
        LiveEvent::Alert(a) => {
            filter.matches(a) && filter.matches_triage(&crate::triage::Triage::default())
        }
        LiveEvent::Triage(t) => {
            filter.matches(&t.alert)
                && (filter.matches_triage(&t.before) || filter.matches_triage(&t.after))
        }
        LiveEvent::Skipped(_) => true,
    }
}
