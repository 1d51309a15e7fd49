//! The aggregator's integration tests, one binary (one link instead of sixteen):
//! each module is what used to be its own test file.

mod api_support;
mod common;
mod deliver_syslog;
mod deliver_webhook;

mod agent_times;
mod analyst_cli;
mod api_auth;
mod api_auth_cert;
mod api_context;
mod api_data;
mod api_grpc;
mod api_http;
mod api_learned;
mod api_live;
mod api_serve;
mod api_triage;
mod audit_testdata;
mod cloud_delivery;
mod cloud_formats;
mod eval_corpus;
mod hostile_agents;
mod hostile_input;
mod hostile_listeners;
mod hostile_process;
mod idle_connections;
mod live_server;
mod logtail;
mod monitoring_rules;
mod node_writes;
mod ocsf_schema;
mod policy_file;
mod policy_reload;
mod python_client;
mod replay_cli;
mod scenario_an1547;
mod scenario_an1579;
mod scenario_corpus;
mod secrets;
mod serve;
mod state_bounds;
mod store_restart;
mod tools;
mod web_browser;
mod webhook;
