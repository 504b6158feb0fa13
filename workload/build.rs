//! Builds the workload program (`program/main.rs`) into a static, libc-free
//! x86_64 ELF with the host's own rustc, so no extra target or rust-src is
//! needed. The library then embeds the file (`virtlab_workload::ELF`).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let src = manifest.join("program/main.rs");
    let elf = out.join("virtlab-workload");
    println!("cargo:rerun-if-changed=program");

    let status = Command::new(rustc)
        .args(["--edition", "2021", "--crate-type", "bin", "--crate-name", "virtlab_workload"])
        .args(["-C", "opt-level=3", "-C", "panic=abort", "-C", "debuginfo=0", "-D", "warnings"])
        // A static, position-dependent executable: the same file must run under
        // Linux and be loaded at its link address by the minikernel's VMM.
        .args(["-C", "relocation-model=static", "-C", "target-feature=+crt-static"])
        .args(["-C", "link-arg=-nostdlib", "-C", "link-arg=-Wl,--build-id=none"])
        // The classic x86_64 base address; the minikernel keeps 0-2 MiB for itself.
        .args(["-C", "link-arg=-Wl,--image-base=0x400000"])
        .args(["-C", "strip=symbols"])
        .arg("-o")
        .arg(&elf)
        .arg(&src)
        .status()
        .expect("could not start rustc to build the workload program");
    assert!(status.success(), "building the workload program failed (see rustc's errors above)");
}
