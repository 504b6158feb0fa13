//! The steps of a VM run, what each one shows, and the hook that lets a
//! front end narrate them (`--explain`) or pause before them (`--step`).

use std::time::Duration;

use serde::Serialize;

/// One step of booting and running a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Open /dev/kvm and check the API version.
    OpenKvm,
    /// Create the VM.
    CreateVm,
    /// Allocate guest RAM and register it with KVM.
    Memory,
    /// Load the kernel and the workload, build page tables, stack, boot info.
    Load,
    /// Create the vCPU and set CPUID, MSRs and registers.
    VcpuSetup,
    /// The first KVM_RUN: the guest's first instruction.
    FirstEntry,
    /// The guest kernel reported it is ready (boot-timer port).
    KernelReady,
    /// The workload printed its ready marker.
    WorkloadReady,
    /// The workload exited (exit port), or the guest stopped otherwise.
    WorkloadExit,
    /// Close the vCPU and VM, unmap guest memory.
    Teardown,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 10] = [
        Step::OpenKvm,
        Step::CreateVm,
        Step::Memory,
        Step::Load,
        Step::VcpuSetup,
        Step::FirstEntry,
        Step::KernelReady,
        Step::WorkloadReady,
        Step::WorkloadExit,
        Step::Teardown,
    ];

    /// Short name for tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Step::OpenKvm => "open-kvm",
            Step::CreateVm => "create-vm",
            Step::Memory => "memory",
            Step::Load => "load",
            Step::VcpuSetup => "vcpu-setup",
            Step::FirstEntry => "first-entry",
            Step::KernelReady => "kernel-ready",
            Step::WorkloadReady => "workload-ready",
            Step::WorkloadExit => "workload-exit",
            Step::Teardown => "teardown",
        }
    }

    /// Whether the VMM does this step (true) or the guest reports it (false).
    pub fn is_host_step(self) -> bool {
        !matches!(self, Step::KernelReady | Step::WorkloadReady | Step::WorkloadExit)
    }

    /// What the step does, the ioctl or mechanism behind it, and which idea
    /// of the course notes it shows.
    pub fn explain(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Step::OpenKvm => (
                "open /dev/kvm, the hypervisor's door",
                "open(\"/dev/kvm\"), ioctl KVM_GET_API_VERSION",
                "KVM is the hypervisor, in the host kernel; virtlab is its user-space half (the VMM), as QEMU or Firecracker are",
            ),
            Step::CreateVm => (
                "create an empty virtual machine",
                "ioctl KVM_CREATE_VM -> a VM file descriptor",
                "one physical computer, several virtual systems: each VM is just an fd to the hypervisor",
            ),
            Step::Memory => (
                "give the guest its RAM: ordinary host memory, mapped into the guest's physical address space",
                "mmap(MAP_ANONYMOUS|MAP_NORESERVE), ioctl KVM_SET_USER_MEMORY_REGION",
                "the hypervisor hands each VM its own share of resources; pages are only really allocated when the guest touches them",
            ),
            Step::Load => (
                "load the kernel and the workload, build page tables, the user stack and the boot-info page",
                "ELF loading (linux-loader) and plain memory writes, all on the host",
                "a VM must be given a whole OS to boot; virtlab does the heavy lifting on the host so the guest kernel stays tiny",
            ),
            Step::VcpuSetup => (
                "create a virtual CPU and put it in 64-bit long mode",
                "ioctl KVM_CREATE_VCPU, KVM_SET_CPUID2, KVM_SET_MSRS, KVM_SET_SREGS, KVM_SET_REGS, KVM_SET_FPU",
                "the hardware is virtualized: the guest gets a CPU whose every register the VMM chooses",
            ),
            Step::FirstEntry => (
                "enter the guest: the CPU runs guest code until something needs the VMM (a VM exit)",
                "ioctl KVM_RUN",
                "hardware-assisted virtualization: guest code runs directly on the CPU, and only traps (exits) cost extra",
            ),
            Step::KernelReady => (
                "the guest kernel set up its GDT, TSS, IDT and SYSCALL MSRs and is about to enter ring 3",
                "out to the boot-timer port (one VM exit)",
                "a VM boots its own kernel: a container never has this step",
            ),
            Step::WorkloadReady => (
                "the workload is running in ring 3 and printed its ready marker",
                "write() system calls served by the minikernel, console output through the UART or the paravirtual port",
                "startup time: a VM is ready only after its OS has booted",
            ),
            Step::WorkloadExit => (
                "the workload called exit_group; the kernel passed its status to the VMM",
                "out to the exit port",
                "the guest is isolated: even its exit status reaches the host only through a device",
            ),
            Step::Teardown => (
                "destroy the vCPU and the VM and free guest memory",
                "close() the vCPU and VM fds, munmap",
                "VMs are heavier to create and destroy than processes",
            ),
        }
    }
}

/// Watches a run. Every method has a default that does nothing. The
/// observer is told about the guest's progress from the vCPU thread, hence
/// `Send`; from `first-entry` on that thread runs under its seccomp filter
/// ([`crate::sandbox`]), so `after` and `note` may print on stderr but not
/// open files or write elsewhere.
pub trait Observer: Send {
    /// A host step is about to start (a front end may pause here).
    fn before(&mut self, _step: Step) {}
    /// A step finished `took` after the previous one; `detail` says what it
    /// found (sizes, addresses, ioctl results).
    fn after(&mut self, _step: Step, _took: Duration, _detail: &str) {}
    /// Something happened between the steps (a snapshot was saved): one
    /// paragraph for a student.
    fn note(&mut self, _text: &str) {}
}

/// An observer that does nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Observer for Quiet {}
