//! credtrail node agent library.
//!
//! [`run::start`] is the entry point; the `credtrail-agent` binary is a thin
//! CLI around it.

pub mod attribution;
pub mod cli;
pub mod config;
pub mod conntrack;
pub mod dedupe;
pub mod enrich;
pub mod health;
pub mod identity;
pub mod loader;
pub mod node;
pub mod output;
pub mod patterns;
pub mod pool;
pub mod redact;
pub mod run;
pub mod scan;
pub mod seccomp;
pub mod stream;

pub use run::{AgentConfig, AgentError, ConnectHook, HookMode, RunningAgent, start};
