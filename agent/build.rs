//! Compiles the eBPF TLS probes (C) with clang into OUT_DIR; the module `include_bytes!`s the
//! object. Needs only clang (no libbpf headers, no bpf-linker, no nightly).
use std::{env, path::PathBuf, process::Command};

/// Relative to the crate root.
const SRC: &str = "src/capture/ebpf/tls.bpf.c";

fn main() {
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("tls.bpf.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    let status = Command::new(&clang)
        .args([
            "-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c", SRC, "-o",
        ])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("running {clang} to build {SRC} failed (install clang): {e}"));
    assert!(status.success(), "{clang} failed to compile {SRC}");
}
