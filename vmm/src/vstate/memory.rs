//! Guest RAM: one anonymous host mapping registered with KVM as slot 0 at
//! guest-physical 0, and what a run measures of it afterwards.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::error::VmError;
use crate::report::MemoryFigures;

/// What is wrong with a guest memory size of `size` bytes for a guest that
/// needs `min..=max`: "too small", "too large", "not a multiple of 4 KiB",
/// or None when it is fine.
pub(crate) fn size_problem(size: u64, min: u64, max: u64) -> Option<&'static str> {
    if size < min {
        Some("too small")
    } else if size > max {
        Some("too large")
    } else if size % 4096 != 0 {
        Some("not a multiple of 4 KiB")
    } else {
        None
    }
}

/// `size` bytes of anonymous host memory, registered with the VM as its RAM
/// at guest-physical 0 (`KVM_SET_USER_MEMORY_REGION`). Drop it only after
/// the VM fd ([`super::kvm::teardown`] does).
pub(crate) fn guest_memory(vm: &VmFd, size: u64) -> Result<GuestMemoryMmap, VmError> {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), size as usize)])
        .map_err(|e| VmError::Alloc(size >> 20, e))?;
    register_memory(vm, &mem, size)?;
    Ok(mem)
}

pub(crate) fn register_memory(vm: &VmFd, mem: &GuestMemoryMmap, size: u64) -> Result<(), VmError> {
    let host = mem.get_host_address(GuestAddress(0)).map_err(VmError::BootInfo)?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        guest_phys_addr: 0,
        memory_size: size,
        userspace_addr: host as u64,
        flags: 0,
    };
    // SAFETY: `host` is the start of a live mapping of `size` bytes owned by
    // `mem`, which outlives the VM (both runs drop it after the VM fd, in
    // `kvm::teardown`).
    unsafe { vm.set_user_memory_region(region) }.map_err(|e| VmError::Ioctl("KVM_SET_USER_MEMORY_REGION", e))
}

/// Resident pages of guest memory (mincore), and the process's peak RSS.
pub(crate) fn memory_figures(mem: &GuestMemoryMmap, size: u64) -> MemoryFigures {
    let touched = mem.get_host_address(GuestAddress(0)).map(|host| resident_bytes(host, size as usize)).unwrap_or(0);
    let peak = peak_rss_bytes();
    MemoryFigures {
        guest_ram_bytes: size,
        guest_touched_bytes: touched,
        process_peak_rss_bytes: peak,
        vmm_overhead_bytes: peak.saturating_sub(touched),
    }
}

fn resident_bytes(addr: *mut u8, len: usize) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let mut vec = vec![0u8; len.div_ceil(page)];
    // SAFETY: [addr, addr + len) is one live mapping (guest memory, page
    // aligned), and `vec` has one byte per page of it.
    let r = unsafe { libc::mincore(addr.cast(), len, vec.as_mut_ptr()) };
    if r != 0 {
        return 0;
    }
    vec.iter().filter(|&&b| b & 1 != 0).count() as u64 * page as u64
}

/// VmHWM from /proc/self/status, in bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_named_by_what_is_wrong() {
        assert_eq!(size_problem(1 << 20, 2 << 20, 8 << 20), Some("too small"));
        assert_eq!(size_problem(9 << 20, 2 << 20, 8 << 20), Some("too large"));
        assert_eq!(size_problem((4 << 20) + 1, 2 << 20, 8 << 20), Some("not a multiple of 4 KiB"));
        assert_eq!(size_problem(4 << 20, 2 << 20, 8 << 20), None);
    }
}
