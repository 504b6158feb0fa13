//! [`VmError`]: what keeps a VM from running.

use virtlab_minikernel::abi::MAX_GUEST_MEM;

use crate::arch::x86_64::paging;
use crate::config::MIN_MEM;
use crate::devices::BusError;
use crate::input::InputError;
use crate::loader::LoadError;

/// Errors that keep a VM from running (a guest that misbehaves is not an
/// error: it ends the run with a [`GuestStop`](crate::stop::GuestStop)).
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// /dev/kvm is missing or not accessible.
    #[error("cannot open /dev/kvm: {hint}", hint = kvm_hint(.0))]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// KVM speaks another API version.
    #[error("KVM API version {0} is not the stable version 12")]
    KvmApi(i32),
    /// A KVM ioctl failed.
    #[error("ioctl {0} failed")]
    Ioctl(&'static str, #[source] kvm_ioctls::Error),
    /// Guest memory size out of range.
    #[error("guest memory of {size} bytes is {what}; use --mem between {min} MiB and {max} MiB", min = MIN_MEM >> 20, max = MAX_GUEST_MEM >> 20)]
    MemSize {
        /// What was asked.
        size: u64,
        /// "too small", "too large", "not a multiple of 4 KiB".
        what: &'static str,
    },
    /// mmap of guest memory failed.
    #[error("cannot allocate {0} MiB of guest memory")]
    Alloc(u64, #[source] vm_memory::mmap::FromRangesError),
    /// The kernel file could not be read (or is no regular file, or too
    /// large).
    #[error(transparent)]
    ReadKernel(InputError),
    /// Loading failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Page tables.
    #[error(transparent)]
    Paging(#[from] paging::PagingError),
    /// Registering a device failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// Writing the boot-info page failed.
    #[error("cannot write the boot-info page")]
    BootInfo(#[source] vm_memory::GuestMemoryError),
    /// Saving a snapshot failed (the run stops: a snapshot was asked for).
    #[error("cannot save the snapshot")]
    Snapshot(#[source] Box<crate::snapshot::SnapshotError>),
    /// The timeout's timer could not be set.
    #[error("cannot set the timeout's timer (timer_create)")]
    Watchdog(#[source] std::io::Error),
    /// The seccomp sandbox could not be set up.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// The vCPU thread could not start.
    #[error("cannot start the vCPU thread")]
    VcpuThread(#[source] std::io::Error),
}

fn kvm_hint(e: &kvm_ioctls::Error) -> &'static str {
    match e.errno() {
        libc::ENOENT => "KVM is not available: enable virtualization (VT-x/AMD-V) in the firmware and load the kvm_intel or kvm_amd module, or run in a VM with nested virtualization",
        libc::EACCES | libc::EPERM => "permission denied: add yourself to the 'kvm' group (sudo usermod -aG kvm $USER, then log in again) or run as root",
        _ => "check that /dev/kvm is a working KVM device",
    }
}
