//! Generates the gRPC code from `proto/klaxon/v1` with the protoc shipped by
//! the `protoc-bin-vendored` crate, so no protoc is needed on the machine.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let protos = [
        "klaxon/v1/incidents.proto",
        "klaxon/v1/severity.proto",
        "klaxon/v1/paging.proto",
        "klaxon/v1/feed.proto",
        "klaxon/v1/review.proto",
        "klaxon/v1/log.proto",
        "klaxon/v1/log_group.proto",
    ]
    .map(|p| root.join(p));
    let out = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let includes = [root.clone(), protoc_bin_vendored::include_path()?];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("klaxon_v1_descriptor.bin"))
        .compile_with_config(config, &protos, &includes)?;
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    Ok(())
}
