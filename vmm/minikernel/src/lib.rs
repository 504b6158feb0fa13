//! The virtlab minikernel, built from `kernel/main.rs` by `build.rs`, and the
//! guest ABI it shares with the VMM (`abi.rs`).

#[path = "../abi.rs"]
pub mod abi;

/// The minikernel ELF image, byte for byte.
pub const ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/virtlab-minikernel"));

/// Where `build.rs` wrote the minikernel in this build tree (what
/// `qemu-system-x86_64 -kernel` can be given).
pub const BUILD_PATH: &str = concat!(env!("OUT_DIR"), "/virtlab-minikernel");
