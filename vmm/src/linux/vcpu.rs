//! The Linux guest's vCPU: CPUID (with what the host work-arounds hide),
//! reset MSRs, the local APIC wired as on a PC, and registers for the
//! kernel's entry point.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::{Kvm, VcpuFd};

use super::boot::layout;
use super::error::LinuxError;
use super::host_quirks::HostQuirks;
use super::kernel::Entry;
use crate::arch::x86_64::{msr, regs};
use crate::vstate::vcpu;

/// The stack pointer for the 64-bit boot protocol's entry.
const BOOT_STACK: u64 = 0x8ff0;

/// CPUID, MSRs, the local APIC's LINT pins, and registers for the entry.
/// Returns how many CPUID bits the host work-arounds hid.
pub(crate) fn setup_vcpu(
    kvm: &Kvm,
    vcpu: &VcpuFd,
    quirks: &mut HostQuirks,
    entry: Entry,
    cr3: u64,
) -> Result<u64, LinuxError> {
    let hidden = vcpu::set_cpuid(kvm, vcpu, |cpuid| quirks.filter_cpuid(cpuid))?;

    // MSRs as after a reset, the TSC at 0; MTRRs default to write-back
    // last (a host may refuse it; Linux copes).
    let msrs: Vec<(u32, u64)> =
        msr::RESET.iter().copied().chain([(msr::TSC, 0), (msr::MTRR_DEF_TYPE, (1 << 11) | 6)]).collect();
    if vcpu::set_msrs(vcpu, &msrs)? + 1 < msrs.len() {
        return Err(vcpu::msrs_refused().into());
    }

    wire_lint_pins(vcpu)?;
    let sregs = vcpu.get_sregs().map_err(|e| LinuxError::Ioctl("KVM_GET_SREGS", e))?;
    vcpu.set_sregs(&entry_sregs(sregs, entry, cr3)).map_err(|e| LinuxError::Ioctl("KVM_SET_SREGS", e))?;
    let r = match entry {
        Entry::Pvh(rip) => kvm_regs { rip, rbx: layout::PVH_INFO, rflags: 2, ..Default::default() },
        Entry::Long64(rip) => {
            kvm_regs { rip, rsi: layout::ZERO_PAGE, rsp: BOOT_STACK, rbp: BOOT_STACK, rflags: 2, ..Default::default() }
        }
    };
    vcpu.set_regs(&r).map_err(|e| LinuxError::Ioctl("KVM_SET_REGS", e))?;
    vcpu.set_fpu(&regs::initial_fpu()).map_err(|e| LinuxError::Ioctl("KVM_SET_FPU", e))?;
    Ok(hidden)
}

/// The local APIC as a PC wires it: LINT0 takes the PIC's interrupts
/// (ExtINT), LINT1 is the NMI line.
fn wire_lint_pins(vcpu: &VcpuFd) -> Result<(), LinuxError> {
    let mut lapic = vcpu.get_lapic().map_err(|e| LinuxError::Ioctl("KVM_GET_LAPIC", e))?;
    for (reg, mode) in [(0x350usize, 0b111u32), (0x360, 0b100)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[reg + i] as u8);
        let v = (u32::from_le_bytes(bytes) & !0x700 & !(1 << 16)) | (mode << 8);
        for (i, b) in v.to_le_bytes().iter().enumerate() {
            lapic.regs[reg + i] = *b as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(|e| LinuxError::Ioctl("KVM_SET_LAPIC", e))
}

/// Special registers for the entry: 32-bit protected mode with paging off
/// (PVH) or 64-bit long mode on the identity map at `cr3`, flat segments
/// from the boot GDT at [`layout::GDT`].
fn entry_sregs(mut sregs: kvm_sregs, entry: Entry, cr3: u64) -> kvm_sregs {
    let long = matches!(entry, Entry::Long64(_));
    if long {
        sregs = regs::long_mode_sregs(sregs, cr3);
    } else {
        sregs.cr0 = 0x11; // PE, ET: protected mode, paging off
        sregs.cr4 = 0;
        sregs.efer = 0;
    }
    sregs.cs = regs::flat_segment(0x10, 0xb, long);
    let data = regs::flat_segment(0x18, 0x3, false);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = kvm_segment { base: 0, limit: 0x67, selector: 0x20, type_: 0xb, present: 1, s: 0, ..Default::default() };
    sregs.gdt.base = layout::GDT;
    sregs.gdt.limit = 5 * 8 - 1;
    sregs
}
