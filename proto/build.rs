//! Compiles `proto/*.proto` with protox (pure Rust), so no system `protoc` is needed.
fn main() {
    println!("cargo:rerun-if-changed=proto/ingest.proto");
    let fds = protox::compile(["proto/ingest.proto"], ["proto"]).expect("compile ingest.proto");
    prost_build::Config::new()
        .compile_fds(fds)
        .expect("generate prost code for ingest.proto");
}
