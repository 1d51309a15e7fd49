//! Where the agent stream delivers observations.
//!
//! In the aggregator this is the [`crate::pipeline::Pipeline`]; the stream
//! benchmark also measures the stream alone with a counting sink, to separate
//! the transport's cost from the store's.

use std::future::Future;

use credtrail_proto::model::Observation;

/// Takes a batch of one node's observations; returns once they are durably
/// stored (the stream acknowledges only then).
pub trait ObservationSink: Clone + Send + Sync + 'static {
    fn ingest(
        &self,
        node: &str,
        batch: Vec<Observation>,
    ) -> impl Future<Output = Result<(), String>> + Send;
}

impl ObservationSink for crate::pipeline::Pipeline {
    async fn ingest(&self, node: &str, batch: Vec<Observation>) -> Result<(), String> {
        self.ingest_observations(node, batch)
            .await
            .map_err(|e| e.to_string())
    }
}
