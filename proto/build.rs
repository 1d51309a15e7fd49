//! Generates the tonic/prost code for credtrail's .proto files at build time.
//! protoc comes from the `protoc-bin-vendored` crate, so nothing is installed by hand.

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().context("locating the vendored protoc")?;
    // SAFETY: build scripts are single-threaded; the variable is read by tonic-prost-build below.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let files = [
        "proto/credtrail/agent/v1/agent.proto",
        "proto/credtrail/query/v1/query.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // The agent's spool holds encoded observations; `Bytes` lets a batch share them.
        .bytes(".credtrail.agent.v1.EncodedObservationBatch.observations")
        .compile_protos(&files, &["proto"])
        .context("compiling the credtrail .proto files")?;
    Ok(())
}
