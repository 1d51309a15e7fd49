//! Inputs: the audit webhook, the audit log tailer, agents' JSON-lines files.

pub mod jsonl;
pub mod logtail;
pub mod tls;
pub mod tls_watch;
pub mod webhook;
