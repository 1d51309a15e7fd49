#![no_std]
//! Empty library target: it lets `credtrail-agent` name this crate as a
//! build-dependency, so that aya-build rebuilds the eBPF object when it
//! changes. The programs are in the `credtrail` binary (`src/main.rs`).
