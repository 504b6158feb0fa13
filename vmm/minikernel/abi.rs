// The contract between the minikernel and the VMM that boots it: guest
// physical addresses, I/O ports and the boot-info page. This file is compiled
// twice, into the kernel (no_std) and into the host-side crate, so both sides
// agree by construction.

/// Where the kernel image is linked and loaded (1 MiB, the PVH convention).
pub const KERNEL_BASE: u64 = 0x10_0000;
/// The boot-info page: filled by the VMM, read and updated by the kernel.
pub const BOOT_INFO_ADDR: u64 = 0x8000;
/// The VMM's identity page tables: PML4, PDPT, then one PD per GiB.
pub const PML4_ADDR: u64 = 0x9000;
/// PDPT right after the PML4.
pub const PDPT_ADDR: u64 = 0xa000;
/// First page directory; one more per GiB of guest memory.
pub const PD_ADDR: u64 = 0xb000;
/// Top of the kernel stack (the TSS's RSP0): 64 KiB below it are reserved.
pub const KERNEL_STACK_TOP: u64 = 0x8_0000;
/// Everything below this is kernel-only (a supervisor 2 MiB page); user
/// programs live above it.
pub const USER_BASE: u64 = 0x20_0000;
/// Largest guest memory the identity map covers (the PDs sit below 0x10000).
pub const MAX_GUEST_MEM: u64 = 4 << 30;

/// I/O ports the minikernel uses. They avoid QEMU's fw_cfg (0x510-0x51b),
/// and the exit port sits where QEMU's `isa-debug-exit` device does by
/// default, so the same kernel ends a QEMU VM too.
pub mod port {
    /// 16550 UART, COM1: data register; LSR at +5.
    pub const UART_COM1: u16 = 0x3f8;
    /// Exit port: the 32-bit value written is the workload's exit status
    /// (QEMU's isa-debug-exit at its default base: QEMU then exits with
    /// status * 2 + 1).
    pub const EXIT: u16 = 0x501;
    /// Fault port: the byte written is an exception vector; details are in
    /// the boot-info page's fault report.
    pub const FAULT: u16 = 0x503;
    /// Paravirtual console: one `out` hands the VMM a whole buffer
    /// (address and length in the boot-info page).
    pub const PV_CONSOLE: u16 = 0x504;
    /// Boot timer: the byte written names a boot milestone (see `marker`).
    pub const BOOT_TIMER: u16 = 0x505;
}

/// Values written to the boot-timer port.
pub mod marker {
    /// The kernel has set up GDT/TSS/IDT/MSRs and is about to enter ring 3.
    pub const KERNEL_READY: u8 = 1;
}

/// `BootInfo::magic`.
pub const BOOT_INFO_MAGIC: u64 = 0x7669_7274_6c61_6231; // "virtlab1"

/// `BootInfo::flags`.
pub mod flags {
    /// Booted through the PVH entry (by QEMU, say): no virtlab VMM reads the
    /// boot-info page, so the kernel reports faults on the console itself.
    pub const PVH: u64 = 1;
    /// The TSC frequency could not be measured; clock_gettime is a guess.
    pub const CLOCK_GUESSED: u64 = 2;
}

/// Console the kernel writes to.
pub mod console {
    /// Emulated 16550 UART: one VM exit per byte.
    pub const UART: u64 = 0;
    /// Paravirtual port: one VM exit per write().
    pub const PV: u64 = 1;
}

/// Syscall counters, kept by the kernel and read by the VMM after the run.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SyscallStats {
    /// Syscalls that entered ring 0 through SYSCALL/LSTAR, as the CPU should.
    pub via_syscall: u64,
    /// Syscalls that arrived as a user-mode #PF at the LSTAR address (hosts
    /// whose nested KVM does not raise the privilege level on SYSCALL).
    pub via_trap: u64,
    /// Syscalls the kernel does not implement (answered with -ENOSYS).
    pub enosys: u64,
    /// The number of the last unimplemented syscall.
    pub last_enosys_nr: u64,
    /// write() calls and bytes written to the console.
    pub writes: u64,
    /// Bytes written to the console.
    pub bytes_written: u64,
    /// Bytes handed out by mmap().
    pub mmap_bytes: u64,
    /// Exits to the VMM caused by console output (UART bytes, LSR polls, PV kicks).
    pub console_outs: u64,
}

/// What the kernel saw when the workload faulted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FaultReport {
    /// Exception vector (14 = #PF, 13 = #GP, 6 = #UD, ...).
    pub vector: u64,
    /// Error code pushed by the CPU (0 for vectors without one).
    pub error_code: u64,
    /// Faulting instruction.
    pub rip: u64,
    /// Code segment of the faulting context (its low 2 bits are the ring).
    pub cs: u64,
    /// CR2: the faulting address, for #PF.
    pub cr2: u64,
    /// Stack pointer at the fault.
    pub rsp: u64,
}

/// The boot-info page at [`BOOT_INFO_ADDR`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BootInfo {
    /// [`BOOT_INFO_MAGIC`].
    pub magic: u64,
    /// [`flags`] bits.
    pub flags: u64,
    /// Entry point of the user program.
    pub user_entry: u64,
    /// Initial user stack pointer (argc, argv, NULL, envp NULL, auxv AT_NULL).
    pub user_rsp: u64,
    /// First free byte for mmap() (page aligned).
    pub heap_next: u64,
    /// End of the mmap() area (page aligned).
    pub heap_end: u64,
    /// End of user memory (the end of guest RAM).
    pub user_end: u64,
    /// [`console::UART`] or [`console::PV`].
    pub console: u64,
    /// clock_gettime: ns = ns_base + ((rdtsc - tsc_base) * tsc_mult) >> 32.
    pub tsc_base: u64,
    /// See `tsc_base`.
    pub tsc_mult: u64,
    /// See `tsc_base`.
    pub ns_base: u64,
    /// PV console descriptor: guest address of the buffer.
    pub pv_addr: u64,
    /// PV console descriptor: its length.
    pub pv_len: u64,
    /// Counters.
    pub stats: SyscallStats,
    /// Filled in before a write to [`port::FAULT`].
    pub fault: FaultReport,
}
