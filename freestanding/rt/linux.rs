//! The Linux side of a freestanding program: the process entry point, raw
//! system calls, `write` and `exit`. Included as a module by the workload and
//! the guest /init; the program defines `start`, which `_start` calls.

use core::arch::{asm, global_asm};

// Linux x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
pub const SYS_WRITE: u64 = 1;
pub const SYS_EXIT_GROUP: u64 = 231;

// The process entry point. Linux (and the minikernel) start a process with
// RSP pointing at argc, followed by the argv pointers and a NULL; `start`
// gets that pointer, on a 16-byte aligned stack as the C ABI wants.
global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {start}",
    "ud2",
    start = sym crate::start,
);

/// A raw system call: the result, or a negated errno, as the kernel returns it.
///
/// # Safety
/// The caller upholds the contract of system call `nr` with these arguments.
#[inline(always)]
pub unsafe fn syscall6(nr: u64, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, a6: u64) -> u64 {
    let ret: u64;
    // SAFETY: the x86_64 Linux system call ABI: RCX and R11 are clobbered;
    // the caller vouches for the arguments.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") a1, in("rsi") a2, in("rdx") a3,
            in("r10") a4, in("r8") a5, in("r9") a6,
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// One write(2) of `buf` to `fd`: the bytes written, or a negated errno.
pub fn write(fd: u64, buf: &[u8]) -> i64 {
    // SAFETY: buf is valid for reads of buf.len() bytes.
    unsafe { syscall6(SYS_WRITE, fd, buf.as_ptr() as u64, buf.len() as u64, 0, 0, 0) as i64 }
}

/// Ends the process with status `code` (its low 8 bits, as Linux keeps them).
pub fn exit(code: u64) -> ! {
    loop {
        // SAFETY: exit_group has no memory arguments and does not return.
        unsafe { syscall6(SYS_EXIT_GROUP, code, 0, 0, 0, 0, 0) };
    }
}

/// The NUL-terminated string at `p`, without its NUL.
///
/// # Safety
/// `p` points at a NUL-terminated string that lives for the program's run
/// (an argument or environment string on the initial stack).
pub unsafe fn c_str(p: *const u8) -> &'static [u8] {
    let mut n = 0;
    // SAFETY: the string is NUL-terminated (the caller's promise).
    while unsafe { core::ptr::read_volatile(p.add(n)) } != 0 {
        n += 1;
    }
    // SAFETY: n bytes from p were just read.
    unsafe { core::slice::from_raw_parts(p, n) }
}
