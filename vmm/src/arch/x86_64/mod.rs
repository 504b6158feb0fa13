//! x86_64: page tables, registers, CPUID and MSRs for a guest that starts
//! in 64-bit mode.

pub mod cpuid;
pub mod msr;
pub mod paging;
pub mod regs;
