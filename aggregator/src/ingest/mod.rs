//! Inputs: the audit webhook (and on its listener the managed control planes'
//! deliveries: cloud formats, Firehose, Pub/Sub push), the audit log tailer,
//! agents' JSON-lines files.

pub mod cloud;
pub mod firehose;
pub mod jsonl;
pub mod logtail;
pub mod oidc;
pub mod pubsub;
pub mod tls;
pub mod tls_watch;
pub mod webhook;
