//! The vCPU: created, given CPUID and reset MSRs, and KVM's exits put in
//! the VMM's terms. The registers each guest is entered with are its own
//! run's business ([`crate::arch::x86_64::regs`]).

use kvm_bindings::{kvm_msr_entry, CpuId, Msrs, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};

use super::error::VmError;
use crate::arch::x86_64::cpuid;
use crate::exit::Exit;

/// `KVM_CREATE_VCPU`: vCPU 0, the only one.
pub(crate) fn create_vcpu(vm: &VmFd) -> Result<VcpuFd, VmError> {
    vm.create_vcpu(0).map_err(|e| VmError::Ioctl("KVM_CREATE_VCPU", e))
}

/// `KVM_SET_CPUID2` with what KVM supports on this host, filled in for vCPU
/// 0 ([`cpuid::filter`]); `adjust` may hide more first and returns how many
/// bits it hid, which this returns.
pub(crate) fn set_cpuid(kvm: &Kvm, vcpu: &VcpuFd, adjust: impl FnOnce(&mut CpuId) -> u64) -> Result<u64, VmError> {
    let mut cpuid = host_cpuid(kvm)?;
    let hidden = adjust(&mut cpuid);
    vcpu.set_cpuid2(&cpuid).map_err(|e| VmError::Ioctl("KVM_SET_CPUID2", e))?;
    Ok(hidden)
}

/// What KVM supports on this host, filled in for vCPU 0
/// ([`cpuid::filter`]): the CPUID a minikernel vCPU gets, and what a
/// snapshot compares hosts by.
pub(crate) fn host_cpuid(kvm: &Kvm) -> Result<CpuId, VmError> {
    let mut cpuid =
        kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(|e| VmError::Ioctl("KVM_GET_SUPPORTED_CPUID", e))?;
    cpuid::filter(&mut cpuid, 0, false);
    Ok(cpuid)
}

/// `KVM_SET_MSRS` with `(index, value)` pairs, in order. Returns how many
/// KVM took: it stops at the first one it refuses.
pub(crate) fn set_msrs(vcpu: &VcpuFd, msrs: &[(u32, u64)]) -> Result<usize, VmError> {
    let entries: Vec<kvm_msr_entry> =
        msrs.iter().map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() }).collect();
    let msrs = Msrs::from_entries(&entries)
        .map_err(|_| VmError::Ioctl("KVM_SET_MSRS", kvm_ioctls::Error::new(libc::E2BIG)))?;
    vcpu.set_msrs(&msrs).map_err(|e| VmError::Ioctl("KVM_SET_MSRS", e))
}

/// The error for MSRs KVM refused.
pub(crate) fn msrs_refused() -> VmError {
    VmError::Ioctl("KVM_SET_MSRS", kvm_ioctls::Error::new(libc::EINVAL))
}

/// KVM's exit, in the VMM's terms.
pub(crate) fn convert(exit: VcpuExit<'_>) -> Exit<'_> {
    match exit {
        VcpuExit::IoIn(p, d) => Exit::IoIn(p, d),
        VcpuExit::IoOut(p, d) => Exit::IoOut(p, d),
        VcpuExit::MmioRead(a, d) => Exit::MmioRead(a, d),
        VcpuExit::MmioWrite(a, d) => Exit::MmioWrite(a, d),
        VcpuExit::Hlt => Exit::Hlt,
        VcpuExit::Shutdown => Exit::Shutdown,
        VcpuExit::FailEntry(reason, _) => Exit::FailEntry(reason),
        VcpuExit::InternalError => Exit::InternalError,
        VcpuExit::SystemEvent(t, _) => Exit::SystemEvent(t),
        other => Exit::Other(format!("{other:?}")),
    }
}
