# syntax=docker/dockerfile:1.7
# credtrail-agent: the node agent, with its eBPF object embedded.
# Build from the repository root:  docker build -f deploy/docker/agent.Dockerfile -t credtrail/agent:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# `cargo xtask setup` installs what the eBPF build needs (nightly with rust-src, bpf-linker
# built against nightly's LLVM, Debian packages), then the agent's build.rs builds the eBPF
# object with aya-build and embeds it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo xtask setup \
 && cargo build --release --locked -p credtrail-agent \
 && install -D -m 0755 target/release/credtrail-agent /out/credtrail-agent

FROM debian:bookworm-slim
# glibc and CA roots only; the agent needs no shell tools.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/credtrail-agent /usr/local/bin/credtrail-agent
# Runs as root with a minimal capability set (the DaemonSet adds BPF, PERFMON, SYS_RESOURCE,
# SYS_PTRACE, DAC_READ_SEARCH and drops the rest).
USER 0:0
ENTRYPOINT ["/usr/local/bin/credtrail-agent"]
