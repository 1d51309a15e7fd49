//! `cargo xtask`: the one entry point for set-up, builds, the demo, tests and benches.
//! One module per subcommand (the aya layout).

mod bench;
mod build;
mod demo;
mod deploy_check;
mod eval;
mod fuzz;
mod image;
mod mutants;
mod scale;
mod setup;
mod soak;
mod test;
mod vm;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "credtrail developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install everything the build needs (rust-src for nightly, bpf-linker, Debian packages). Idempotent.
    Setup(setup::Options),
    /// Build the eBPF object and the binaries that embed it.
    Build(build::Options),
    /// Run every test: unit, real-eBPF integration (root), end-to-end, manifest validation.
    Test(test::Options),
    /// Run the end-to-end demo on this machine (the README's main command).
    Demo(demo::Options),
    /// Run the benchmarks and print ratios against an in-run baseline.
    Bench(bench::Options),
    /// Soak the aggregator: the real webhook fed realistic audit traffic; prints rate, RSS, p99.
    Soak(soak::Options),
    /// Boot Debian kernels in qemu and run the agent's privileged tests inside.
    VmTest(vm::Options),
    /// Replay the evaluation corpus (eval/scenarios) and print the confusion tables.
    Eval(eval::Options),
    /// Run the cargo-fuzz targets (every parser of outside input); installs cargo-fuzz.
    Fuzz(fuzz::Options),
    /// Build static (musl) FROM-scratch images with buildah, as OCI archives too; `--test` runs them with podman.
    Image(image::Options),
    /// Mutation testing (cargo-mutants, installed if missing) of detection, parsing and identity code.
    Mutants(mutants::Options),
    /// (internal) The open loop `vm-test --bench` runs inside the guest.
    #[command(hide = true)]
    OpenLoop(vm::bench::LoopOptions),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Setup(o) => setup::run(o),
        Command::Build(o) => build::run(o),
        Command::Test(o) => test::run(o),
        Command::Demo(o) => demo::run(o),
        Command::Bench(o) => bench::run(o),
        Command::Soak(o) => soak::run(o),
        Command::VmTest(o) => vm::run(o),
        Command::Eval(o) => eval::run(o),
        Command::Fuzz(o) => fuzz::run(o),
        Command::Image(o) => image::run(o),
        Command::Mutants(o) => mutants::run(o),
        Command::OpenLoop(o) => vm::bench::open_loop(o),
    }
}
