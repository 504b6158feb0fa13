//! Shared by the VMM's integration tests.

/// Whether /dev/kvm can be used; without it the test is skipped, loudly,
/// and with VIRTLAB_REQUIRE_KVM=1 (as in CI) it fails.
pub use virtlab_vmm::probe::kvm_or_skip;

#[allow(dead_code)] // not every test binary uses it
/// A minimal static x86_64 ELF executable around `code`, loaded at
/// 0x400000, for tests that need a workload doing one precise thing.
pub fn tiny_elf(code: &[u8]) -> Vec<u8> {
    virtlab_vmm::elf::tiny_executable(0x40_0000, code)
}
