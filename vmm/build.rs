//! Builds virtlab's /init for Linux guests (`guest-init/init.rs`) into a
//! static, libc-free x86_64 ELF with the host's own rustc (no extra target,
//! no rust-src). `linux::initramfs::INIT_ELF` embeds the file.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let src = manifest.join("guest-init/init.rs");
    let elf = out.join("virtlab-init");
    println!("cargo:rerun-if-changed=guest-init");

    let status = Command::new(rustc)
        .args(["--edition", "2021", "--crate-type", "bin", "--crate-name", "virtlab_init"])
        .args(["-C", "opt-level=3", "-C", "panic=abort", "-C", "debuginfo=0", "-D", "warnings"])
        .args(["-C", "relocation-model=static", "-C", "target-feature=+crt-static"])
        .args(["-C", "link-arg=-nostdlib", "-C", "link-arg=-Wl,--build-id=none"])
        .args(["-C", "link-arg=-Wl,--image-base=0x400000"])
        .args(["-C", "strip=symbols"])
        .arg("-o")
        .arg(&elf)
        .arg(&src)
        .status()
        .expect("could not start rustc to build the guest init program");
    assert!(status.success(), "building the guest init program failed (see rustc's errors above)");
}
