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
    /// This many alerts (before filtering) were missed.
    Skipped(u64),
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
    let guard = ClientGuard::new(state.metrics.clone());
    let stop = state.stopping.subscribe();
    futures::stream::unfold(
        (rx, filter, guard, stop),
        |(mut rx, filter, guard, mut stop)| async move {
            loop {
                let next = tokio::select! {
                    r = rx.recv() => r,
                    _ = stop.wait_for(|s| *s) => return None,
                };
                match next {
                    Ok(a) if filter.matches(&a) => {
                        return Some((LiveEvent::Alert(Box::new(a)), (rx, filter, guard, stop)));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(n)) => {
                        guard.0.live_stream_skipped.inc_by(n);
                        return Some((LiveEvent::Skipped(n), (rx, filter, guard, stop)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    )
}
