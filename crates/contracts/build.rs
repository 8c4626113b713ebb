//! Compiles every contract under `proto/carerecord` with protox (pure Rust: no system `protoc`).

use std::path::{Path, PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    // tonic-prost-build 0.14 does not emit rerun-if-changed on the compile_fds path.
    println!("cargo:rerun-if-changed={}", proto_root.display());

    let mut files = Vec::new();
    collect_protos(&proto_root.join("carerecord"), &mut files)?;
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let fds = protox::compile(&files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Reflection needs the encoded descriptor set; the builder only writes it on the protoc path.
    std::fs::write(
        out_dir.join("carerecord_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    // Type names let the codec find each request's descriptor (`prost::Name::full_name`).
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // RPCs that a service does not implement yet answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        // The contracts' rule for text in requests, applied on decoding (src/codec.rs).
        .codec_path("crate::codec::CheckedCodec")
        .compile_fds_with_config(fds, config)?;
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
