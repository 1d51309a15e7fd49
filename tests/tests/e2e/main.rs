//! End-to-end, stream and deployment tests, one binary (the agent's privileged
//! tests stay in their own binaries: `cargo xtask vm-test` runs those in VMs).
//! Each module is what used to be its own test file.

#[path = "../../../xtask/src/deploy_check.rs"]
mod deploy_check;

mod deploy_agreement;
mod deploy_chart;
mod deploy_manifests;
mod e2e_api_kube_auth;
mod e2e_apisim;
mod e2e_story;
mod stream_claims;
mod stream_dedupe;
mod stream_refusals;
mod stream_resume;
mod stream_tls_rotation;
mod stream_token_identity;
mod token_review_cache;
