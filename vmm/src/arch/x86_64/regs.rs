//! Registers for a vCPU that starts in 64-bit long mode with paging on.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};

const CR0_PE: u64 = 1;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// A flat ring-0 segment: base 0, limit 4 GiB; `long` makes a 64-bit code
/// segment, otherwise a 32-bit one.
pub fn flat_segment(selector: u16, type_: u8, long: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Special registers for 64-bit mode: paging with `cr3`, PAE, long mode,
/// SSE enabled (the workload is ordinary x86_64 code and uses it), and the
/// flat ring-0 segments the minikernel's own GDT also describes (code 0x08,
/// data 0x10). The guest loads its GDT, IDT and TSS itself.
pub fn long_mode_sregs(mut sregs: kvm_sregs, cr3: u64) -> kvm_sregs {
    let code = flat_segment(0x08, 0xb, true);
    let data = flat_segment(0x10, 0x3, false);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
    sregs.cr3 = cr3;
    sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.efer = EFER_LME | EFER_LMA;
    sregs
}

/// General registers: start at `entry` with interrupts off; `rsi` carries
/// the boot-info address (as the Linux 64-bit boot protocol passes
/// boot_params).
pub fn entry_regs(entry: u64, boot_info: u64) -> kvm_regs {
    kvm_regs { rip: entry, rsi: boot_info, rflags: 0x2, ..Default::default() }
}

/// The FPU as after FNINIT, with SSE exceptions masked.
pub fn initial_fpu() -> kvm_fpu {
    kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_mode_bits() {
        let s = long_mode_sregs(kvm_sregs::default(), 0x9000);
        assert_eq!(s.cr3, 0x9000);
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE | CR0_PG);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!((s.cs.l, s.cs.db, s.cs.selector), (1, 0, 0x08));
        assert_eq!((s.ss.l, s.ss.db, s.ss.selector), (0, 1, 0x10));
        let r = entry_regs(0x10_0000, 0x8000);
        assert_eq!((r.rip, r.rsi, r.rflags), (0x10_0000, 0x8000, 2));
    }
}
