//! The KVM objects of a run: `/dev/kvm`, the VM fd, and their teardown in
//! the order KVM needs.

use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::GuestMemoryMmap;

use super::clock::Clock;
use super::error::VmError;
use super::memory::memory_figures;
use crate::observe::Step;
use crate::report::MemoryFigures;

/// Step "open KVM": `open("/dev/kvm")` and `KVM_GET_API_VERSION`, timed.
/// `note` is added to what the observer is told (the Linux run says
/// whether its host work-arounds are on).
pub(crate) fn open_kvm(clock: &mut Clock<'_>, note: &str) -> Result<Kvm, VmError> {
    clock.before(Step::OpenKvm);
    let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
    let api = kvm.get_api_version();
    if api != 12 {
        return Err(VmError::KvmApi(api));
    }
    clock.done(Step::OpenKvm, &format!("KVM API version {api}{note}"));
    Ok(kvm)
}

/// `KVM_CREATE_VM`: a VM with no memory, no vCPU and no devices yet.
pub(crate) fn create_vm(kvm: &Kvm) -> Result<VmFd, VmError> {
    kvm.create_vm().map_err(|e| VmError::Ioctl("KVM_CREATE_VM", e))
}

/// Step "teardown" (begun by the caller, which may read guest memory
/// first): measures guest memory, then closes the vCPU, the VM and /dev/kvm
/// and unmaps guest memory, the memory after the VM that maps it.
pub(crate) fn teardown(
    clock: &mut Clock<'_>,
    vcpu: VcpuFd,
    vm: VmFd,
    mem: GuestMemoryMmap,
    kvm: Kvm,
    mem_size: u64,
) -> MemoryFigures {
    let memory = memory_figures(&mem, mem_size);
    drop(vcpu);
    drop(vm);
    drop(mem);
    drop(kvm);
    clock.done(Step::Teardown, "vCPU, VM and /dev/kvm fds closed, guest memory unmapped");
    memory
}
