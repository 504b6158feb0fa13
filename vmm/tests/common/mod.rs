//! Shared by the VMM's integration tests.

/// Whether /dev/kvm can be used. Without it the test is skipped, loudly;
/// with VIRTLAB_REQUIRE_KVM=1 (as in CI) a missing KVM fails the test.
pub fn kvm_or_skip(test: &str) -> bool {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("VIRTLAB_REQUIRE_KVM").as_deref() == Ok("1") {
                panic!("{test}: /dev/kvm is required (VIRTLAB_REQUIRE_KVM=1) but cannot be opened: {e}");
            }
            eprintln!(
                "SKIPPED {test}: /dev/kvm cannot be opened ({e}); set VIRTLAB_REQUIRE_KVM=1 to make this a failure"
            );
            false
        }
    }
}

#[allow(dead_code)] // not every test binary uses it
/// A minimal static x86_64 ELF executable around `code`, loaded at
/// 0x400000, for tests that need a workload doing one precise thing.
pub fn tiny_elf(code: &[u8]) -> Vec<u8> {
    let base: u64 = 0x40_0000;
    let hdr = 64 + 56;
    let mut f = Vec::new();
    f.extend(b"\x7fELF");
    f.extend([2, 1, 1, 0]);
    f.extend([0u8; 8]);
    f.extend(2u16.to_le_bytes()); // ET_EXEC
    f.extend(62u16.to_le_bytes()); // x86_64
    f.extend(1u32.to_le_bytes());
    f.extend((base + hdr as u64).to_le_bytes()); // entry
    f.extend(64u64.to_le_bytes()); // phoff
    f.extend(0u64.to_le_bytes()); // shoff
    f.extend(0u32.to_le_bytes());
    f.extend(64u16.to_le_bytes());
    f.extend(56u16.to_le_bytes());
    f.extend(1u16.to_le_bytes()); // phnum
    f.extend([0u8; 6]);
    let size = (hdr + code.len()) as u64;
    f.extend(1u32.to_le_bytes()); // PT_LOAD
    f.extend(5u32.to_le_bytes()); // R X
    f.extend(0u64.to_le_bytes());
    f.extend(base.to_le_bytes());
    f.extend(base.to_le_bytes());
    f.extend(size.to_le_bytes());
    f.extend(size.to_le_bytes());
    f.extend(0x1000u64.to_le_bytes());
    f.extend(code);
    f
}
