//! Generates the gRPC code of `schemas/quarry/v1/quarry.proto` (GRPC.md §1) with
//! `protox` (a protobuf compiler in Rust: no `protoc` needed) and `tonic-prost-build`,
//! and writes the encoded descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "quarry/v1/quarry.proto";
    println!("cargo:rerun-if-changed=schemas/{proto}");
    let mut compiler = protox::Compiler::new(["schemas"])?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_file(proto)?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("quarry_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
