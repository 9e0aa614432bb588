//! Generates the tonic services and prost messages for every `.proto` file under
//! `proto/`, with the vendored `protoc` so that no system protoc is needed.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY-free: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let mut files = Vec::new();
    collect(Path::new("proto"), &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed=proto");
    // `bytes` fields decode as `bytes::Bytes`: slices of the received buffer, where a
    // `Vec<u8>` per field cost an allocation and a copy for every id, key, signature and
    // Merkle path step on every hop (about 5 % of a busy cluster's CPU).
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&files, &[PathBuf::from("proto")])?;
    Ok(())
}
