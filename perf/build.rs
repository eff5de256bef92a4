//! Builds the `forward` scenario's BPF programs with clang `-target bpf`
//! into OUT_DIR: the in-kernel XDP peer (bpf/xdp_fwd.bpf.c), which
//! `src/forward/xdp.rs` embeds, and the cheap sink (bpf/xdp_sink.bpf.c),
//! which `src/forward/xdp_sink.rs` embeds.

use std::{env, path::PathBuf, process::Command};

fn main() {
    println!("cargo:rerun-if-env-changed=CLANG");
    for name in ["xdp_fwd", "xdp_sink"] {
        compile(name);
    }
}

/// Compiles `bpf/NAME.bpf.c` into `OUT_DIR/NAME.bpf.o`.
fn compile(name: &str) {
    let src = format!("bpf/{name}.bpf.c");
    println!("cargo:rerun-if-changed={src}");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join(format!("{name}.bpf.o"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
        .arg(format!("-I{multiarch}"))
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{clang}` to build {src} ({e}); \
                 install it with `apt-get install clang libbpf-dev linux-libc-dev`"
            )
        });
    assert!(
        status.success(),
        "`{clang} -target bpf` failed on {src}; it needs libbpf-dev (bpf/bpf_helpers.h) \
         and linux-libc-dev: `apt-get install clang libbpf-dev linux-libc-dev`"
    );
}
