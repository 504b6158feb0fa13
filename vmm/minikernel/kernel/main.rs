//! The virtlab minikernel: just enough of an x86_64 kernel to run one static
//! user program in ring 3 and serve its system calls.
//!
//! Kernel-mode guest code is the expensive part of a VM on a nested host (it
//! is emulated there, about a microsecond per instruction), so this kernel
//! does as little as it can: the VMM has already loaded the user program,
//! built the page tables and the user stack (see `abi.rs`). The kernel
//!
//! 1. loads its own GDT (with a TSS), IDT and the SYSCALL MSRs,
//! 2. tells the VMM it is ready (boot-timer port) and drops to ring 3,
//! 3. serves write, getpid, clock_gettime, mmap, munmap and exit_group;
//!    anything else gets -ENOSYS and is counted,
//! 4. turns a user fault into a report for the VMM (fault port).
//!
//! System calls arrive two ways. Through SYSCALL/LSTAR, as on any x86_64 CPU.
//! Or, on hosts whose nested KVM does not raise the privilege level on
//! SYSCALL, as a user-mode page fault at the LSTAR address (the CPU jumped
//! there still in ring 3, and that page is kernel-only): the #PF handler
//! recognises exactly that fault and serves it as the same system call. That
//! is trap-and-emulate, the way full virtualization worked before hardware
//! assistance. Both paths are counted.

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};
use core::panic::PanicInfo;

#[allow(dead_code)]
#[path = "../abi.rs"]
mod abi;
#[path = "../../../freestanding/rt/mem.rs"]
mod mem;

use abi::{port, BootInfo, BOOT_INFO_ADDR, USER_BASE};

const ENOSYS: u64 = 38;
const EFAULT: u64 = 14;
const EBADF: u64 = 9;
const EINVAL: u64 = 22;
const ENOMEM: u64 = 12;

const SYS_WRITE: u64 = 1;
const SYS_MMAP: u64 = 9;
const SYS_MUNMAP: u64 = 11;
const SYS_GETPID: u64 = 39;
const SYS_EXIT: u64 = 60;
const SYS_CLOCK_GETTIME: u64 = 228;
const SYS_EXIT_GROUP: u64 = 231;

const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED: u64 = 0x10;
const PAGE: u64 = 4096;

// How a system call arrived (the `path` argument of `syscall_dispatch`).
const VIA_SYSCALL: u64 = 0;
const VIA_TRAP: u64 = 1;

// Everything the CPU reads by address (GDT, TSS, IDT) lives in one section
// with the code, so the assembler can compute every handler's address as a
// constant and the IDT needs no run-time construction: each instruction the
// kernel does not execute is an emulated microsecond saved on a nested host.
// The linker script puts this section first, at KERNEL_BASE.
global_asm!(
    r#"
    .section .text.minikernel, "awx"
    .code64
kbase:

// ---- 64-bit entry from the virtlab VMM: long mode and paging are on, the
// page tables, user program and user stack are in place.
    .globl _start64
_start64:
    lgdt [rip + gdt_ptr]
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    xor eax, eax
    mov fs, ax
    mov gs, ax
    mov rsp, {kstack_top}
    // Reload CS with our own code selector.
    push 0x08
    lea rax, [rip + 2f]
    push rax
    retfq
2:
    mov ax, 0x28
    ltr ax
    lidt [rip + idt_ptr]
    // EFER.SCE enables SYSCALL/SYSRET.
    mov ecx, 0xc0000080
    rdmsr
    or eax, 1
    wrmsr
    // STAR: kernel CS 0x08 (SS 0x10); SYSRET returns to CS 0x23, SS 0x1b.
    mov ecx, 0xc0000081
    xor eax, eax
    mov edx, 0x00100008
    wrmsr
    // LSTAR: the 64-bit SYSCALL entry.
    mov ecx, 0xc0000082
    lea rax, [rip + syscall_entry]
    mov rdx, rax
    shr rdx, 32
    wrmsr
    // SFMASK: clear TF, IF, DF, NT and AC on entry.
    mov ecx, 0xc0000084
    mov eax, 0x47700
    xor edx, edx
    wrmsr
    mov dx, {boot_timer}
    mov al, {kernel_ready}
    out dx, al
    // Drop to ring 3 at the user entry with the user stack the VMM built.
    mov rsi, {boot_info}
    push 0x1b
    push qword ptr [rsi + {rsp_off}]
    push 0x202
    push 0x23
    push qword ptr [rsi + {entry_off}]
    xor eax, eax
    xor ebx, ebx
    xor ecx, ecx
    xor edx, edx
    xor esi, esi
    xor edi, edi
    xor ebp, ebp
    xor r8d, r8d
    xor r9d, r9d
    xor r10d, r10d
    xor r11d, r11d
    xor r12d, r12d
    xor r13d, r13d
    xor r14d, r14d
    xor r15d, r15d
    iretq

// ---- SYSCALL entry (ring 0, when the CPU does it right). RCX = user RIP,
// R11 = user RFLAGS, RSP is still the user's.
    .balign 16
    .globl syscall_entry
syscall_entry:
    mov [rip + user_rsp_scratch], rsp
    mov rsp, {kstack_top}
    push qword ptr [rip + user_rsp_scratch]
    push rcx
    push r11
    push r9
    push r8
    push r10
    push rdx
    push rsi
    push rdi
    push rax
    mov rdi, rsp
    mov esi, {via_syscall}
    call {dispatch}
    pop rax
    pop rdi
    pop rsi
    pop rdx
    pop r10
    pop r8
    pop r9
    pop r11
    pop rcx
    pop rsp
    sysretq

// ---- #PF. Either the trapped form of SYSCALL (a user-mode fetch fault at
// the LSTAR address: the CPU jumped there without leaving ring 3) or a real
// fault.
    .balign 16
pf_entry:
    test qword ptr [rsp], 4
    jz 3f
    push rax
    push rcx
    mov rax, cr2
    lea rcx, [rip + syscall_entry]
    cmp rax, rcx
    pop rcx
    pop rax
    jne 3f
    // A system call. Return to RCX with R11's flags, as SYSRET would (only
    // the arithmetic, trap and direction flags are the user's; IF stays on).
    add rsp, 8
    mov [rsp], rcx
    push r11
    and qword ptr [rsp], 0xdd5
    or qword ptr [rsp], 0x202
    pop qword ptr [rsp + 16]
    push r9
    push r8
    push r10
    push rdx
    push rsi
    push rdi
    push rax
    mov rdi, rsp
    mov esi, {via_trap}
    call {dispatch}
    pop rax
    pop rdi
    pop rsi
    pop rdx
    pop r10
    pop r8
    pop r9
    iretq
3:
    push 14
    jmp fault_common

// ---- Every other exception: push a dummy error code where the CPU does
// not, then the vector, and report.
    .macro fault_noerr vec
    .balign 16
fault_\vec:
    push 0
    push \vec
    jmp fault_common
    .endm
    .macro fault_err vec
    .balign 16
fault_\vec:
    push \vec
    jmp fault_common
    .endm
    fault_noerr 0
    fault_noerr 1
    fault_noerr 2
    fault_noerr 3
    fault_noerr 4
    fault_noerr 5
    fault_noerr 6
    fault_noerr 7
    fault_err 8
    fault_noerr 9
    fault_err 10
    fault_err 11
    fault_err 12
    fault_err 13
    fault_noerr 15
    fault_noerr 16
    fault_err 17
    fault_noerr 18
    fault_noerr 19
    fault_noerr 20
    fault_err 21
    .balign 16
fault_other:
    push 0
    push 255
    jmp fault_common

// Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS.
fault_common:
    mov rsi, {boot_info}
    pop rax
    mov [rsi + {fault_off} + 0], rax
    pop rcx
    mov [rsi + {fault_off} + 8], rcx
    pop rcx
    mov [rsi + {fault_off} + 16], rcx
    pop rcx
    mov [rsi + {fault_off} + 24], rcx
    mov rcx, cr2
    mov [rsi + {fault_off} + 32], rcx
    mov rcx, [rsp + 8]
    mov [rsi + {fault_off} + 40], rcx
    mov rsp, {kstack_top}
    mov edi, eax
    call {fault}
4:
    hlt
    jmp 4b

// ---- PVH entry (QEMU -kernel, Firecracker, Cloud Hypervisor): 32-bit
// protected mode, paging off, EBX = the hvm_start_info. Switch to long mode
// with the static page tables below, then let Rust load the workload the
// loader passed as module 0, exactly as the virtlab VMM would have.
    .code32
    .balign 16
pvh_start32:
    cli
    cld
    mov esi, ebx
    lgdt [gdt_ptr]
    mov eax, cr4
    or eax, 0x620               // PAE, OSFXSR, OSXMMEXCPT
    mov cr4, eax
    mov eax, offset pvh_pml4
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, 0x100               // EFER.LME
    wrmsr
    mov eax, cr0
    and eax, 0xfffffffb         // no x87 emulation
    or eax, 0x80010023          // PG, WP, NE, MP, PE
    mov cr0, eax
    .byte 0xea                  // ljmp 0x08:pvh_start64
    .long pvh_start64
    .word 0x08
    .code64
pvh_start64:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, {kstack_top}
    mov edi, esi
    call {pvh_prepare}
    jmp _start64

// ---- Descriptor tables.
    .balign 16
gdt:
    .quad 0                     // 0x00 null
    .quad 0x00af9b000000ffff    // 0x08 kernel code, 64-bit
    .quad 0x00cf93000000ffff    // 0x10 kernel data
    .quad 0x00cff3000000ffff    // 0x18 user data (DPL 3)
    .quad 0x00affb000000ffff    // 0x20 user code, 64-bit (DPL 3)
    // 0x28: the 64-bit TSS descriptor (16 bytes), type 0x89 (available).
    .word 0x67
    .word (tss - kbase + {kernel_base}) & 0xffff
    .byte ((tss - kbase + {kernel_base}) >> 16) & 0xff
    .byte 0x89
    .byte 0
    .byte ((tss - kbase + {kernel_base}) >> 24) & 0xff
    .long 0
    .long 0
gdt_end:
    .balign 8
    .word 0
    .word 0
    .word 0
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt - kbase + {kernel_base}

    .balign 16
tss:
    .long 0
    .quad {kstack_top}          // RSP0: the stack for faults from ring 3
    .fill 0x66 - 12, 1, 0
    // The I/O permission map base, past the TSS limit (0x67): there is no
    // I/O bitmap, so with IOPL 0 every in/out from ring 3 is a #GP (a
    // SIGSEGV natively). A base of 0 would make the TSS's own bytes the
    // bitmap, mostly zero bits, opening ports 0x000-0x33f to user code.
    .word 0x68

    .macro gate handler
    .word (\handler - kbase + {kernel_base}) & 0xffff
    .word 0x08
    .byte 0
    .byte 0x8e                  // present, DPL 0, 64-bit interrupt gate
    .word ((\handler - kbase + {kernel_base}) >> 16) & 0xffff
    .long 0
    .long 0
    .endm
    .balign 16
idt:
    gate fault_0
    gate fault_1
    gate fault_2
    gate fault_3
    gate fault_4
    gate fault_5
    gate fault_6
    gate fault_7
    gate fault_8
    gate fault_9
    gate fault_10
    gate fault_11
    gate fault_12
    gate fault_13
    gate pf_entry
    gate fault_15
    gate fault_16
    gate fault_17
    gate fault_18
    gate fault_19
    gate fault_20
    gate fault_21
    .rept 256 - 22
    gate fault_other
    .endr
idt_end:
    .balign 8
    .word 0
    .word 0
    .word 0
idt_ptr:
    .word idt_end - idt - 1
    .quad idt - kbase + {kernel_base}

    .balign 8
user_rsp_scratch:
    .quad 0

// ---- Page tables for the PVH entry: identity map of the first 4 GiB in
// 2 MiB pages, the first one kernel-only. (The virtlab VMM builds its own,
// sized to guest RAM, and never uses these.)
    .balign 4096
pvh_pml4:
    .quad pvh_pdpt + 7
    .fill 511, 8, 0
pvh_pdpt:
    .quad pvh_pd + 7
    .quad pvh_pd + 0x1000 + 7
    .quad pvh_pd + 0x2000 + 7
    .quad pvh_pd + 0x3000 + 7
    .fill 508, 8, 0
    .globl pvh_pd
pvh_pd:
    .quad 0x83
    .set pvh_i, 1
    .rept 2047
    .quad (pvh_i << 21) | 0x87
    .set pvh_i, pvh_i + 1
    .endr

// ---- The PVH ELF note: XEN_ELFNOTE_PHYS32_ENTRY (18) names the 32-bit entry.
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .balign 4
    .long pvh_start32
    .popsection
"#,
    boot_timer = const port::BOOT_TIMER,
    kernel_ready = const abi::marker::KERNEL_READY,
    boot_info = const BOOT_INFO_ADDR,
    kstack_top = const abi::KERNEL_STACK_TOP,
    kernel_base = const abi::KERNEL_BASE,
    fault_off = const core::mem::offset_of!(BootInfo, fault),
    rsp_off = const core::mem::offset_of!(BootInfo, user_rsp),
    entry_off = const core::mem::offset_of!(BootInfo, user_entry),
    via_syscall = const VIA_SYSCALL,
    via_trap = const VIA_TRAP,
    dispatch = sym syscall_dispatch,
    fault = sym report_fault,
    pvh_prepare = sym pvh::prepare,
);

mod pvh;

/// The user registers a system call uses, as the entry code pushed them.
#[repr(C)]
struct SyscallFrame {
    rax: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    r10: u64,
    r8: u64,
    r9: u64,
}

fn boot_info() -> &'static mut BootInfo {
    // SAFETY: the VMM places the boot-info page at BOOT_INFO_ADDR before the
    // kernel starts; this kernel is single-CPU and runs with interrupts off,
    // so no two references are live at once.
    unsafe { &mut *(BOOT_INFO_ADDR as *mut BootInfo) }
}

/// Serves one system call: the number in `rax`, arguments in rdi, rsi, rdx,
/// r10, r8, r9; the result (or -errno) goes back in `rax`.
extern "C" fn syscall_dispatch(f: &mut SyscallFrame, path: u64) {
    let bi = boot_info();
    if path == VIA_TRAP {
        bi.stats.via_trap += 1;
    } else {
        bi.stats.via_syscall += 1;
    }
    f.rax = match f.rax {
        SYS_WRITE => sys_write(bi, f.rdi, f.rsi, f.rdx),
        SYS_GETPID => 1,
        SYS_CLOCK_GETTIME => sys_clock_gettime(bi, f.rsi),
        SYS_MMAP => sys_mmap(bi, f.rdi, f.rsi, f.r10),
        SYS_MUNMAP => 0,
        SYS_EXIT | SYS_EXIT_GROUP => exit(f.rdi),
        nr => {
            bi.stats.enosys += 1;
            bi.stats.last_enosys_nr = nr;
            ENOSYS.wrapping_neg()
        }
    };
}

/// Is `[addr, addr + len)` user memory?
fn user_range(bi: &BootInfo, addr: u64, len: u64) -> bool {
    match addr.checked_add(len) {
        Some(end) => addr >= USER_BASE && end <= bi.user_end,
        None => false,
    }
}

fn sys_write(bi: &mut BootInfo, fd: u64, buf: u64, len: u64) -> u64 {
    if fd != 1 && fd != 2 {
        return EBADF.wrapping_neg();
    }
    if !user_range(bi, buf, len) {
        return EFAULT.wrapping_neg();
    }
    bi.stats.writes += 1;
    bi.stats.bytes_written += len;
    if bi.console == abi::console::PV {
        // Paravirtual: describe the buffer, then one exit hands it all over.
        bi.pv_addr = buf;
        bi.pv_len = len;
        bi.stats.console_outs += 1;
        outb(port::PV_CONSOLE, 0);
    } else {
        // SAFETY: [buf, buf + len) was checked to be user memory, which is
        // identity-mapped and readable from ring 0.
        let bytes = unsafe { core::slice::from_raw_parts(buf as *const u8, len as usize) };
        bi.stats.console_outs += uart_write(bytes);
    }
    len
}

/// Sends bytes through the emulated 16550: wait for the transmitter to be
/// empty (LSR bit 5), then fill its 16-byte FIFO, one port write (one VM
/// exit) per byte. Returns the number of port accesses.
fn uart_write(bytes: &[u8]) -> u64 {
    let mut outs = 0;
    for chunk in bytes.chunks(16) {
        while inb(port::UART_COM1 + 5) & 0x20 == 0 {}
        for &b in chunk {
            outb(port::UART_COM1, b);
        }
        outs += chunk.len() as u64 + 1;
    }
    outs
}

/// A line of kernel text on the UART, for when no VMM reads the boot-info
/// page (PVH boot): `parts` are strings and numbers.
fn kernel_line(parts: &[Part<'_>]) {
    for p in parts {
        match *p {
            Part::Str(s) => {
                uart_write(s);
            }
            Part::Dec(n) => {
                // Digits from the most significant, without a buffer.
                let mut div = 1u64;
                while n / div >= 10 {
                    div *= 10;
                }
                while div > 0 {
                    outb(port::UART_COM1, b'0' + ((n / div) % 10) as u8);
                    div /= 10;
                }
            }
            Part::Hex(n) => {
                uart_write(b"0x");
                for i in 0..16 {
                    outb(port::UART_COM1, b"0123456789abcdef"[((n >> (60 - 4 * i)) & 15) as usize]);
                }
            }
        }
    }
    uart_write(b"\n");
}

/// A piece of a [`kernel_line`].
enum Part<'a> {
    Str(&'a [u8]),
    Dec(u64),
    Hex(u64),
}

/// Called by the exception stubs after they filled the fault report. Under
/// the virtlab VMM one port write hands the report over; booted by another
/// loader (PVH), the kernel prints it and exits as Linux would kill the
/// process: 128 + the signal.
extern "C" fn report_fault(vector: u64) -> ! {
    let bi = boot_info();
    if bi.flags & abi::flags::PVH == 0 {
        outb(port::FAULT, vector as u8);
        loop {
            // SAFETY: halting is always allowed in ring 0.
            unsafe { asm!("hlt", options(nostack)) };
        }
    }
    let f = bi.fault;
    kernel_line(&[
        Part::Str(b"virtlab.kernel fault vector="),
        Part::Dec(f.vector),
        Part::Str(b" error="),
        Part::Hex(f.error_code),
        Part::Str(b" rip="),
        Part::Hex(f.rip),
        Part::Str(b" address="),
        Part::Hex(f.cr2),
        Part::Str(if f.cs & 3 == 3 { b" ring=3" } else { b" ring=0" }),
    ]);
    let signal = match f.vector {
        0 | 16 | 19 => 8,
        1 | 3 => 5,
        6 => 4,
        17 => 7,
        _ => 11,
    };
    exit(128 + signal)
}

fn sys_clock_gettime(bi: &BootInfo, ts: u64) -> u64 {
    if !user_range(bi, ts, 16) {
        return EFAULT.wrapping_neg();
    }
    let tsc = rdtsc();
    let delta = tsc.wrapping_sub(bi.tsc_base);
    let ns = bi.ns_base + ((u128::from(delta) * u128::from(bi.tsc_mult)) >> 32) as u64;
    let p = ts as *mut u64;
    // SAFETY: [ts, ts + 16) was checked to be user memory.
    unsafe {
        core::ptr::write_volatile(p, ns / 1_000_000_000);
        core::ptr::write_volatile(p.add(1), ns % 1_000_000_000);
    }
    0
}

/// Anonymous mappings come from a bump allocator over memory the VMM has
/// already mapped for the user: no page faults to take in (emulated) kernel
/// mode. Fresh guest memory is zero; nothing is ever reused, so munmap is a
/// no-op.
fn sys_mmap(bi: &mut BootInfo, addr: u64, len: u64, flags: u64) -> u64 {
    if flags & MAP_ANONYMOUS == 0 || flags & MAP_FIXED != 0 || addr != 0 || len == 0 {
        return EINVAL.wrapping_neg();
    }
    let len = (len + PAGE - 1) & !(PAGE - 1);
    let start = bi.heap_next;
    match start.checked_add(len) {
        Some(end) if end <= bi.heap_end => {
            bi.heap_next = end;
            bi.stats.mmap_bytes += len;
            start
        }
        _ => ENOMEM.wrapping_neg(),
    }
}

fn exit(status: u64) -> ! {
    // SAFETY: writing the exit port ends the VM; the VMM never resumes us.
    unsafe {
        asm!("out dx, eax", in("dx") port::EXIT, in("eax") status as u32, options(nostack));
    }
    loop {
        // SAFETY: halting is always allowed in ring 0.
        unsafe { asm!("hlt", options(nostack)) };
    }
}

fn outb(port: u16, v: u8) {
    // SAFETY: port I/O in ring 0 to a virtlab device port.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nostack, preserves_flags)) };
}

fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port I/O in ring 0 to a virtlab device port.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v, options(nostack, preserves_flags)) };
    v
}

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC has no side effects.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nostack, nomem, preserves_flags)) };
    (u64::from(hi) << 32) | u64::from(lo)
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    exit(0xdead)
}
