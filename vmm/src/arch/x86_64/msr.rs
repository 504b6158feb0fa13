//! Model-specific registers a vCPU starts with.

/// IA32_SYSENTER_CS.
pub const SYSENTER_CS: u32 = 0x174;
/// IA32_SYSENTER_ESP.
pub const SYSENTER_ESP: u32 = 0x175;
/// IA32_SYSENTER_EIP.
pub const SYSENTER_EIP: u32 = 0x176;
/// STAR: SYSCALL/SYSRET segment selectors.
pub const STAR: u32 = 0xc000_0081;
/// LSTAR: the 64-bit SYSCALL entry point.
pub const LSTAR: u32 = 0xc000_0082;
/// SFMASK: RFLAGS bits SYSCALL clears.
pub const SFMASK: u32 = 0xc000_0084;
/// KERNEL_GS_BASE: what SWAPGS swaps in.
pub const KERNEL_GS_BASE: u32 = 0xc000_0102;
/// IA32_MISC_ENABLE (bit 0: fast string operations).
pub const MISC_ENABLE: u32 = 0x1a0;
/// IA32_TIME_STAMP_COUNTER.
pub const TSC: u32 = 0x10;
/// IA32_MTRR_DEF_TYPE (bit 11: MTRRs enabled; bits 0-7: the default type).
pub const MTRR_DEF_TYPE: u32 = 0x2ff;

/// MSRs as a guest expects them at reset: SYSENTER and SYSCALL state
/// cleared (the guest kernel programs its own), fast strings on.
pub const RESET: [(u32, u64); 8] = [
    (SYSENTER_CS, 0),
    (SYSENTER_ESP, 0),
    (SYSENTER_EIP, 0),
    (STAR, 0),
    (LSTAR, 0),
    (SFMASK, 0),
    (KERNEL_GS_BASE, 0),
    (MISC_ENABLE, 1),
];
