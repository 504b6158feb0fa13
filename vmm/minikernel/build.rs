//! Builds the minikernel (`kernel/main.rs`) into a freestanding x86_64 ELF
//! with the host's own rustc and a linker script: no extra target, no
//! rust-src, no prebuilt blob. The library embeds the result
//! (`virtlab_minikernel::ELF`).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let elf = out.join("virtlab-minikernel");
    let script = manifest.join("kernel/link.ld");
    println!("cargo:rerun-if-changed=kernel");
    println!("cargo:rerun-if-changed=abi.rs");

    let status = Command::new(rustc)
        .args(["--edition", "2021", "--crate-type", "bin", "--crate-name", "virtlab_minikernel"])
        .args(["-C", "opt-level=2", "-C", "panic=abort", "-C", "debuginfo=0", "-D", "warnings"])
        // Kernel code: no red zone (exceptions push onto the current stack),
        // fixed addresses, no libc, our own layout.
        .args(["-C", "no-redzone=yes", "-C", "relocation-model=static", "-C", "strip=debuginfo"])
        .args(["-C", "target-feature=+crt-static"])
        .args(["-C", "link-arg=-nostdlib", "-C", "link-arg=-Wl,--build-id=none"])
        .arg("-C")
        .arg(format!("link-arg=-Wl,-T,{}", script.display()))
        .arg("-o")
        .arg(&elf)
        .arg(manifest.join("kernel/main.rs"))
        .status()
        .expect("could not start rustc to build the minikernel");
    assert!(status.success(), "building the minikernel failed (see rustc's errors above)");
}
