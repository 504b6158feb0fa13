//! The guest's page tables, built by the VMM so the guest kernel does not
//! have to: an identity map of guest RAM with 2 MiB pages, the first one
//! kernel-only (supervisor), the rest user-accessible.
//!
//! Building them host-side costs microseconds; in a nested VM the same loop
//! in guest kernel mode would be emulated instruction by instruction.

use virtlab_minikernel::abi::{MAX_GUEST_MEM, PDPT_ADDR, PD_ADDR, PML4_ADDR, USER_BASE};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const HUGE: u64 = 1 << 7;
const TWO_MIB: u64 = 2 << 20;

/// Errors building page tables.
#[derive(Debug, thiserror::Error)]
pub enum PagingError {
    /// Guest memory is larger than the identity map covers.
    #[error("guest memory of {0} bytes is larger than the {MAX_GUEST_MEM}-byte identity map")]
    TooLarge(u64),
    /// Writing a table entry failed.
    #[error("cannot write page table entry at {0:#x}")]
    Write(u64, #[source] vm_memory::GuestMemoryError),
}

/// Every page-table entry to write, as (guest address, value): the PML4's
/// one entry, one PDPT entry per GiB, one PD entry per 2 MiB of `mem_size`.
pub fn identity_map_entries(mem_size: u64) -> Result<Vec<(u64, u64)>, PagingError> {
    if mem_size > MAX_GUEST_MEM {
        return Err(PagingError::TooLarge(mem_size));
    }
    let pages = mem_size.div_ceil(TWO_MIB);
    let gibs = pages.div_ceil(512).max(1);
    let mut e = Vec::with_capacity(1 + gibs as usize + pages as usize);
    e.push((PML4_ADDR, PDPT_ADDR | PRESENT | WRITABLE | USER));
    for g in 0..gibs {
        e.push((PDPT_ADDR + 8 * g, (PD_ADDR + 0x1000 * g) | PRESENT | WRITABLE | USER));
    }
    for p in 0..pages {
        let phys = p * TWO_MIB;
        let user = if phys >= USER_BASE { USER } else { 0 };
        e.push((PD_ADDR + 8 * p, phys | PRESENT | WRITABLE | HUGE | user));
    }
    Ok(e)
}

/// Writes the identity map into guest memory; returns the value for CR3.
pub fn write_identity_map(mem: &GuestMemoryMmap, mem_size: u64) -> Result<u64, PagingError> {
    for (addr, value) in identity_map_entries(mem_size)? {
        mem.write_obj(value, GuestAddress(addr)).map_err(|e| PagingError::Write(addr, e))?;
    }
    Ok(PML4_ADDR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_kernel_page_supervisor_only_and_the_rest_for_users() {
        let e = identity_map_entries(64 << 20).unwrap();
        assert_eq!(e[0], (PML4_ADDR, PDPT_ADDR | 7));
        assert_eq!(e[1], (PDPT_ADDR, PD_ADDR | 7));
        let pd: Vec<_> = e[2..].to_vec();
        assert_eq!(pd.len(), 32);
        assert_eq!(pd[0], (PD_ADDR, 0x83), "0-2 MiB: present, writable, huge, kernel-only");
        assert_eq!(pd[1], (PD_ADDR + 8, (2 << 20) | 0x87), "2-4 MiB: user");
        assert_eq!(pd[31].1 & !0xfff, 62 << 20);
    }

    #[test]
    fn covers_partial_pages_and_several_gib() {
        let e = identity_map_entries((1 << 30) + (3 << 20)).unwrap();
        let pdpt: Vec<_> = e.iter().filter(|(a, _)| (PDPT_ADDR..PD_ADDR).contains(a)).collect();
        assert_eq!(pdpt.len(), 2);
        let pds = e.iter().filter(|(a, _)| *a >= PD_ADDR).count();
        assert_eq!(pds, 512 + 2);
        assert!(identity_map_entries(MAX_GUEST_MEM + 1).is_err());
        assert!(identity_map_entries(MAX_GUEST_MEM).is_ok());
    }
}
