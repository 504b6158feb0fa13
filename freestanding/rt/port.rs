//! x86 port I/O from user mode: `in`/`out` on the ports of virtlab's VMM
//! devices (the exit, boot-timer and command ports). A process may use them
//! only after `ioperm(2)` granted the ports (the guest's init does, and its
//! children keep the grant across fork and execve); without the grant each
//! instruction faults (SIGSEGV) and does nothing else.

use core::arch::asm;

/// Writes a byte to `port`.
pub fn outb(port: u16, v: u8) {
    // SAFETY: an `out` changes no memory of this process: it is a VM exit
    // the VMM handles, or, without the ioperm grant, a fault.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nostack, nomem)) };
}

/// Writes 32 bits to `port` (and the three ports after it).
pub fn outl(port: u16, v: u32) {
    // SAFETY: as for outb.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nostack, nomem)) };
}

/// Reads 32 bits from `port` (and the three ports after it).
pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as for outb; `in` only writes eax.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nostack, nomem)) };
    v
}

/// Reads a byte from `port`.
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as for inl.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nostack, nomem)) };
    v
}
