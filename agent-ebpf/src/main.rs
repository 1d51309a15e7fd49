//! credtrail's kernel programs. One probe per file under `probes/`; shared
//! maps, the load-time configuration, the event header and the path/name
//! filters live beside them.
//!
//! Filtering is done as early and as cheaply as possible (see `filter.rs`):
//! LSM/fentry test the dentry name before building any path; the tracepoints
//! test a fixed 16-byte read of the path against the prefix trie before any
//! string copy.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod config;
mod event;
mod filter;
mod maps;
mod probes;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// On the host (clippy, `cargo check --workspace`) this is an ordinary,
/// empty program; the real object is built for `bpfel-unknown-none`.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
