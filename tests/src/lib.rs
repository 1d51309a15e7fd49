//! Shared helpers for credtrail end-to-end tests.
pub mod apisim;
pub mod certs;
pub mod demo;
pub mod fixtures;
pub mod harness;
pub mod soak;
