//! # virtlab-vmm: a tiny KVM virtual machine monitor you can watch
//!
//! A VMM is the user-space half of a hypervisor: KVM (in the host kernel)
//! runs guest code on the CPU, and the VMM sets the machine up and plays its
//! devices. This crate boots virtlab's own minikernel and runs the workload
//! binary in ring 3 on it, every step timed and explained.
//!
//! A run, step by step (each is an [`observe::Step`]):
//!
//! 1. **Open KVM**: `open("/dev/kvm")`, `KVM_GET_API_VERSION`.
//! 2. **Create a VM**: `KVM_CREATE_VM`.
//! 3. **Give it memory**: anonymous host memory registered with
//!    `KVM_SET_USER_MEMORY_REGION`.
//! 4. **Load**: the kernel ELF (linux-loader), the workload's segments, the
//!    identity page tables, the user stack and the boot-info page
//!    ([`loader`], [`arch::x86_64::paging`]).
//! 5. **Set up a vCPU**: `KVM_CREATE_VCPU`, CPUID, MSRs, long-mode special
//!    registers, entry registers ([`arch::x86_64::regs`]).
//! 6. **Run**: `KVM_RUN` until a VM exit; [`exit::handle_exit`] hands port
//!    I/O to the devices on the [`devices::PortBus`] (16550 UART,
//!    paravirtual console, exit, fault and boot-timer ports) until the guest
//!    writes its exit status. The vCPU loop runs in a thread of its own
//!    under a seccomp filter that allows only the calls it needs from then
//!    on ([`sandbox`]).
//!
//! ```no_run
//! use virtlab_vmm::{run, ConsoleSink, Quiet, VmConfig};
//! let config = VmConfig::builtin_workload(&["cpu", "1000000"]);
//! let report = run(&config, ConsoleSink::Stdout, &mut Quiet).expect("KVM works");
//! println!("{} (exits: {})", report.summary, report.exits.total);
//! ```
//!
//! A real Linux kernel boots too, on a PC-like machine (in-kernel
//! interrupt controllers and timer, a UART with its interrupt, the i8042
//! reset line): see [`linux`].
//!
//! See `DESIGN.md` beside this crate for the memory map and the guest ABI.

pub mod arch;
pub mod config;
pub mod console;
pub mod devices;
pub mod elf;
pub mod exit;
pub mod input;
pub mod linux;
pub mod loader;
pub mod observe;
pub mod probe;
pub mod report;
pub mod sandbox;
pub mod snapshot;
pub mod stop;
pub mod vm;
mod vstate;
pub mod watchdog;

pub use config::{ConsoleKind, KernelSource, VmConfig, BUILTIN_WORKLOAD};
pub use console::ConsoleSink;
pub use exit::UnknownIo;
pub use linux::{run_linux, LinuxConfig, LinuxReport};
pub use observe::{Observer, Quiet, Step};
pub use report::{RestoreHost, RunReport};
pub use stop::GuestStop;
pub use vm::{run, VmError};

/// A path to a file holding the built-in minikernel (for QEMU's `-kernel`,
/// or to look at with objdump): the build tree's copy, or one written to
/// virtlab's cache directory.
pub fn minikernel_path() -> Result<std::path::PathBuf, virtlab_workload::WorkloadError> {
    virtlab_workload::materialize_bytes(
        "virtlab-minikernel",
        virtlab_minikernel::ELF,
        std::path::Path::new(virtlab_minikernel::BUILD_PATH),
    )
}
