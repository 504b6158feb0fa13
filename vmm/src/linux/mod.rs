//! Booting a real Linux kernel: the VM row of the course notes with a
//! *whole guest OS* in it.
//!
//! Where the minikernel path ([`crate::vm`]) does the guest kernel's work on
//! the host, this path sets up a PC the way Firecracker or Cloud Hypervisor
//! do and lets Linux boot on it:
//!
//! 1. **Machine**: `KVM_CREATE_IRQCHIP` (PIC, IOAPIC and local APIC in the
//!    host kernel) and `KVM_CREATE_PIT2` (the 8254 timer); guest RAM with an
//!    E820 map ([`boot`]).
//! 2. **Kernel**: an ELF vmlinux entered through its PVH note, or a bzImage
//!    through the 64-bit boot protocol with a zero page ([`kernel`],
//!    [`boot`]); the command line; the initramfs ([`initramfs`]): virtlab's
//!    tiny static init, the workload, and the command file saying what the
//!    init runs, with which environment, where ([`command`]).
//! 3. **vCPU**: CPUID as KVM supports it (filtered on quirky hosts,
//!    [`host_quirks`]), MSRs, the local APIC's LINT0/LINT1 wired as on a
//!    PC, registers for the entry point.
//! 4. **Devices**: the 16550 UART on IRQ 4 through an irqfd (so the console
//!    works both ways), the i8042 reset line, the exit and boot-timer ports.
//! 5. **Run** until the init writes the workload's status to the exit port,
//!    the kernel resets the machine (a panic with `panic=-1`), or the
//!    timeout, reporting the last console lines ([`run`]).

pub mod boot;
pub mod command;
pub mod config;
mod console;
mod error;
mod fixups;
pub mod host_quirks;
pub mod initramfs;
pub mod kernel;
pub mod provision;
pub mod report;
pub mod run;
mod vcpu;

pub use command::CommandError;
pub use config::{compose_cmdline, CmdlineError, InitrdSource, LinuxConfig, BASE_CMDLINE, DEFAULT_MEM, MIN_MEM};
pub(crate) use console::UartKicker;
pub(crate) use fixups::HostFixups;
pub use host_quirks::HostQuirks;
pub use report::LinuxReport;
pub use run::{run_linux, LinuxError};
