//! credtrail aggregator library: everything the `credtrail-aggregator` binary
//! runs, testable in-process.

pub mod agents;
pub mod alert;
pub mod api;
pub mod audit;
pub mod auth;
pub mod detect;
pub mod eval;
pub mod ingest;
pub mod listen;
pub mod metrics;
pub mod pipeline;
pub mod plausible;
pub mod policy;
pub mod replay;
pub mod server;
pub mod state;
pub mod store;
pub mod triage;
