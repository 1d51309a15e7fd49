//! credtrail's wire contract.
//!
//! - [`model`]: the domain observation model, also the agent's JSON-lines format;
//! - [`pb`]: the generated protobuf/gRPC code (never used as domain types: convert
//!   at the edge with the `TryFrom` impls in [`convert`]).

pub mod convert;
pub mod model;

/// Generated code, one module per protobuf package.
#[expect(
    clippy::allow_attributes_without_reason,
    reason = "prost/tonic generated code carries bare #[allow]s"
)]
pub mod pb {
    /// `credtrail.agent.v1`: the agent-to-aggregator stream.
    pub mod agent {
        tonic::include_proto!("credtrail.agent.v1");
    }
    /// `credtrail.query.v1`: the aggregator's query API.
    pub mod query {
        tonic::include_proto!("credtrail.query.v1");
    }
}
