//! [`LinuxError`]: what keeps a Linux guest from running.

use super::boot::{layout, BootError};
use super::command::CommandError;
use super::config::{CmdlineError, MIN_MEM};
use super::initramfs::InitramfsError;
use super::kernel::KernelError;
use crate::arch::x86_64::paging;
use crate::devices::BusError;
use crate::input::InputError;
use crate::vstate::error::VmError;

/// Errors that keep a Linux guest from running.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// Guest memory size out of range.
    #[error("guest memory of {size} MiB is {what} for a Linux guest; use --mem between {min} MiB and {max} MiB", size = .size >> 20, min = MIN_MEM >> 20, max = layout::MAX_MEM >> 20)]
    MemSize {
        /// Bytes asked for.
        size: u64,
        /// "too small", "too large" or "not a multiple of 4 KiB".
        what: &'static str,
    },
    /// The kernel file could not be read (or is no regular file, or too
    /// large).
    #[error(transparent)]
    ReadKernel(InputError),
    /// The initrd file could not be read (or is no regular file, or
    /// larger than guest memory).
    #[error(transparent)]
    ReadInitrd(InputError),
    /// The kernel image is unusable.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// Building the initramfs failed.
    #[error(transparent)]
    Initramfs(#[from] InitramfsError),
    /// Boot data does not fit.
    #[error(transparent)]
    Boot(#[from] BootError),
    /// A bad command-line word.
    #[error(transparent)]
    Cmdline(#[from] CmdlineError),
    /// A bad program, environment or working directory.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The workload is not a static executable.
    #[error(transparent)]
    Workload(#[from] crate::loader::LoadError),
    /// KVM, memory or watchdog set-up failed.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// A KVM ioctl failed.
    #[error("ioctl {0} failed")]
    Ioctl(&'static str, #[source] kvm_ioctls::Error),
    /// Registering a device failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Writing boot data into guest memory failed.
    #[error("cannot write {0} into guest memory")]
    Memory(&'static str, #[source] vm_memory::GuestMemoryError),
    /// The page tables for the 64-bit entry.
    #[error(transparent)]
    Paging(#[from] paging::PagingError),
    /// The irqfd's eventfd.
    #[error("cannot create the UART's interrupt eventfd")]
    EventFd(#[source] std::io::Error),
}
