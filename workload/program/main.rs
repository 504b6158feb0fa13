//! The virtlab workload: one static x86_64 program with no libc that talks to
//! the kernel only through raw `syscall` instructions.
//!
//! The byte-identical file runs natively, as a container's process, inside a
//! Linux guest and in ring 3 on the minikernel, which implements exactly the
//! system calls used here: read nothing, write, getpid, clock_gettime, mmap,
//! munmap and exit_group.
//!
//! Every run prints `virtlab.ready ...` first (the moment the workload is
//! running: what startup measurements wait for), then does its work, then one
//! `virtlab.result mode=... key=value ...` line, and exits 0.
//!
//! Modes:
//!   ready            print the ready marker and exit (startup cost)
//!   cpu N            N rounds of integer mixing (pure computation)
//!   syscall N        N getpid() round trips into the kernel
//!   mem MIB          map MIB MiB and touch every 4 KiB page once
//!   io KIB           write KIB KiB to standard output, 4 KiB per write()
//!   fault KIND       misbehave on purpose: pf (bad address), ud (invalid
//!                    instruction), gp (privileged instruction)
//!   spin             loop forever (for timeouts)
//!   warm             virtlab's Linux guests only: get ready, tell the VMM
//!                    (boot-timer port 0x505, marker 3), which saves a warm
//!                    snapshot there, then take the real arguments from the
//!                    command port 0x506 and run that mode in this process
//!                    (see `warm` below). The ports are the ones virtlab's
//!                    init opened with ioperm(2), inherited through fork and
//!                    execve; anywhere else its first port access faults
//!                    (SIGSEGV) before it prints anything.

#![no_std]
#![no_main]

use core::arch::asm;
use core::panic::PanicInfo;

#[path = "../../freestanding/rt/linux.rs"]
mod linux;
#[path = "../../freestanding/rt/mem.rs"]
mod mem;
#[path = "../../freestanding/rt/text.rs"]
#[allow(dead_code)]
mod text;
#[path = "../../freestanding/rt/port.rs"]
#[allow(dead_code)]
mod port;

use linux::syscall6;
use port::{inb, inl, outb};
use text::{parse_u64, Args, Line};

// Linux x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
const SYS_MMAP: u64 = 9;
const SYS_MUNMAP: u64 = 11;
const SYS_GETPID: u64 = 39;
const SYS_CLOCK_GETTIME: u64 = 228;

const CLOCK_MONOTONIC: u64 = 1;
const PROT_READ: u64 = 1;
const PROT_WRITE: u64 = 2;
const MAP_PRIVATE: u64 = 2;
const MAP_ANONYMOUS: u64 = 0x20;
const PAGE: usize = 4096;

/// # Safety
/// `sp` is the initial stack pointer of the process (argc, argv..., NULL).
unsafe extern "C" fn start(sp: *const usize) -> ! {
    // SAFETY: the ABI guarantees argc at sp[0] and argc argv pointers after it.
    let args = unsafe { Args::from_stack(sp) };
    let code = run(&args);
    linux::exit(code as u64)
}

fn run(args: &Args) -> i32 {
    let mode = args.get(1).unwrap_or(b"ready");
    if mode == b"warm" {
        return warm();
    }
    run_mode(getpid(), mode, args.get(2))
}

/// Prints the ready line, then runs `mode` with its argument.
fn run_mode(pid: u64, mode: &[u8], arg: Option<&[u8]>) -> i32 {
    let mut out = Line::new();
    out.push(b"virtlab.ready pid=").num(pid).push(b" t_ns=").num(now_ns()).push(b"\n");
    out.flush(1);

    match mode {
        b"ready" => {
            out.push(b"virtlab.result mode=ready pid=").num(pid).push(b"\n");
            out.flush(1);
            0
        }
        b"cpu" => with_count(arg, 10_000_000, cpu),
        b"syscall" => with_count(arg, 10_000, syscalls),
        b"mem" => with_count(arg, 16, mem),
        b"io" => with_count(arg, 64, io),
        b"fault" => fault(arg.unwrap_or(b"pf")),
        b"spin" => loop {
            core::hint::spin_loop();
        },
        _ => usage(),
    }
}

fn usage() -> i32 {
    let mut l = Line::new();
    l.push(b"usage: virtlab-workload [ready | cpu N | syscall N | mem MIB | io KIB | fault pf|ud|gp | spin | warm]\n");
    l.flush(2);
    2
}

fn with_count(arg: Option<&[u8]>, default: u64, f: fn(u64) -> i32) -> i32 {
    match arg {
        None => f(default),
        Some(a) => match parse_u64(a) {
            Some(n) => f(n),
            None => usage(),
        },
    }
}

fn cpu(n: u64) -> i32 {
    let t0 = now_ns();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut acc: u64 = 0;
    for i in 0..n {
        // xorshift64* mixing: cheap, branch-free, not vectorisable.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        acc = acc.wrapping_add(x.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ i);
        acc = core::hint::black_box(acc);
    }
    let ns = now_ns() - t0;
    let mut l = Line::new();
    l.push(b"virtlab.result mode=cpu n=").num(n).push(b" ns=").num(ns);
    l.push(b" checksum=").hex(acc).push(b"\n");
    l.flush(1);
    0
}

fn syscalls(n: u64) -> i32 {
    let t0 = now_ns();
    for _ in 0..n {
        core::hint::black_box(getpid());
    }
    let ns = now_ns() - t0;
    let mut l = Line::new();
    l.push(b"virtlab.result mode=syscall n=").num(n).push(b" ns=").num(ns);
    l.push(b" ns_per_call=").num(ns / n.max(1)).push(b"\n");
    l.flush(1);
    0
}

fn mem(mib: u64) -> i32 {
    let len = (mib as usize) << 20;
    let mut l = Line::new();
    if len == 0 {
        l.push(b"virtlab.result mode=mem mib=0 pages=0 ns=0 ns_per_page=0\n");
        l.flush(1);
        return 0;
    }
    let t0 = now_ns();
    // SAFETY: an anonymous private mapping has no preconditions.
    let addr =
        unsafe { syscall6(SYS_MMAP, 0, len as u64, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, u64::MAX, 0) };
    if (addr as i64) < 0 && (addr as i64) > -4096 {
        l.push(b"virtlab.error mode=mem mmap failed errno=").num(addr.wrapping_neg());
        l.push(b" mib=").num(mib).push(b"\n");
        l.flush(2);
        return 1;
    }
    let base = addr as *mut u8;
    let pages = len / PAGE;
    for p in 0..pages {
        // SAFETY: the page lies inside the mapping just created.
        unsafe { core::ptr::write_volatile(base.add(p * PAGE), 1) };
    }
    let ns = now_ns() - t0;
    // SAFETY: unmapping the mapping created above.
    unsafe { syscall6(SYS_MUNMAP, addr, len as u64, 0, 0, 0, 0) };
    l.push(b"virtlab.result mode=mem mib=").num(mib).push(b" pages=").num(pages as u64);
    l.push(b" ns=").num(ns).push(b" ns_per_page=").num(ns / pages as u64).push(b"\n");
    l.flush(1);
    0
}

fn io(kib: u64) -> i32 {
    // 4 KiB of printable filler, in 64-byte lines, written one page per call.
    let mut buf = [b'.'; PAGE];
    for (i, b) in buf.iter_mut().enumerate() {
        if i % 64 == 63 {
            *b = b'\n';
        } else if i % 64 < 11 {
            *b = b"virtlab.io "[i % 64];
        }
    }
    let total = kib as usize * 1024;
    let mut left = total;
    let mut writes = 0u64;
    let t0 = now_ns();
    while left > 0 {
        let chunk = left.min(PAGE);
        if !write_all(1, &buf[..chunk]) {
            return 1;
        }
        writes += 1;
        left -= chunk;
    }
    let ns = now_ns() - t0;
    let mut l = Line::new();
    l.push(b"virtlab.result mode=io kib=").num(kib).push(b" bytes=").num(total as u64);
    l.push(b" writes=").num(writes).push(b" ns=").num(ns).push(b"\n");
    l.flush(1);
    0
}

fn fault(kind: &[u8]) -> i32 {
    let mut l = Line::new();
    l.push(b"virtlab.fault kind=").push(kind).push(b" (on purpose)\n");
    l.flush(1);
    // SAFETY: none of these is safe; faulting is the point of this mode.
    unsafe {
        match kind {
            b"pf" => {
                core::ptr::write_volatile(0x10 as *mut u64, 0xdead);
            }
            b"ud" => asm!("ud2"),
            b"gp" => asm!("hlt"),
            _ => return usage(),
        }
    }
    1
}

/// The boot-timer port and the mark that says "the workload is warm".
const PORT_BOOT_TIMER: u16 = 0x505;
const MARKER_WARM: u8 = 3;
/// The command port: a 32-bit `in` gives the command's length, then one
/// 8-bit `in` per byte gives it, in the format of virtlab's command file
/// (`vmm/guest-init/command.rs`: magic, directory, environment, an empty
/// field, then argv, each field ended by a NUL).
const PORT_COMMAND: u16 = 0x506;
const COMMAND_MAGIC: &[u8] = b"virtlab-exec/1";
/// The longest command a warm workload takes (the VMM refuses longer ones).
const WARM_COMMAND_MAX: usize = 4096;
/// How much stack the modes may use after the restore without a page fault.
const WARM_STACK: usize = 64 << 10;

/// The command, read after the restore (a static, so its pages can be
/// touched before the snapshot).
static mut COMMAND: [u8; WARM_COMMAND_MAX] = [0; WARM_COMMAND_MAX];

/// The `warm` mode: everything that needs the guest kernel is done before
/// the VMM saves the snapshot (the process exists, its pid is known, its
/// code, data and stack pages are mapped), so that what is left after a
/// restore is plain user-mode code and the mode's own system calls (the
/// ready line's clock_gettime and write). Guest kernel code is the slow
/// part of a VM on a nested host; user-mode code and port I/O are not.
fn warm() -> i32 {
    let pid = getpid();
    touch_image();
    touch_stack();
    // SAFETY: the program is single-threaded and nothing else refers to
    // COMMAND; writing each page makes it this process's own (no
    // copy-on-write fault left for after the restore).
    let command: &'static mut [u8; WARM_COMMAND_MAX] = unsafe { &mut *(&raw mut COMMAND) };
    for p in (0..WARM_COMMAND_MAX).step_by(PAGE) {
        // SAFETY: p is inside the buffer.
        unsafe { core::ptr::write_volatile(command.as_mut_ptr().add(p), 0) };
    }
    // The VMM pauses the guest on this `out` and saves it; a restore
    // resumes at the next instruction. (Without a snapshot, the boot just
    // goes on.)
    outb(PORT_BOOT_TIMER, MARKER_WARM);
    let len = inl(PORT_COMMAND) as usize;
    if len == 0 {
        // No command (the boot that took the snapshot, or a restore with
        // no arguments): the default mode.
        return run_mode(pid, b"ready", None);
    }
    if len > WARM_COMMAND_MAX {
        return warm_error(b"the command is longer than 4096 bytes");
    }
    for b in command[..len].iter_mut() {
        *b = inb(PORT_COMMAND);
    }
    if command[len - 1] != 0 {
        return warm_error(b"the command's last field has no NUL");
    }
    // magic, directory, environment up to an empty field, then argv.
    let mut fields = command[..len - 1].split(|&b| b == 0);
    if fields.next() != Some(COMMAND_MAGIC) {
        return warm_error(b"the command does not start with virtlab-exec/1");
    }
    let _workdir = fields.next();
    for entry in fields.by_ref() {
        if entry.is_empty() {
            break;
        }
    }
    let _program = fields.next();
    run_mode(pid, fields.next().unwrap_or(b"ready"), fields.next())
}

fn warm_error(what: &[u8]) -> i32 {
    let mut l = Line::new();
    l.push(b"virtlab.error mode=warm ").push(what).push(b"\n");
    l.flush(2);
    2
}

extern "C" {
    /// The ELF header, the first byte the program's image maps (defined by
    /// the linker).
    static __ehdr_start: u8;
    /// The first byte after the image, its zeroed data included (defined
    /// by the linker).
    static _end: u8;
}

/// Reads one byte of every page of the program's image, so its code and
/// data are mapped before the snapshot. (Data pages written later still
/// take one copy-on-write fault each; the modes write only the stack and
/// COMMAND.)
fn touch_image() {
    // Only the addresses of the linker's symbols are taken (no read).
    let (start, end) = (&raw const __ehdr_start as usize, &raw const _end as usize);
    let mut p = start & !(PAGE - 1);
    while p < end {
        // SAFETY: every page from the ELF header to _end is mapped
        // readable: the linker lays the loaded segments out on consecutive
        // pages (each starts in the page after the previous one ends), the
        // last with its zeroed data.
        unsafe { core::ptr::read_volatile(p as *const u8) };
        p += PAGE;
    }
}

/// Writes WARM_STACK bytes of stack below this frame, so the modes' stack
/// pages exist before the snapshot.
#[inline(never)]
fn touch_stack() {
    let mut area = [0u8; WARM_STACK];
    for p in (0..WARM_STACK).step_by(PAGE) {
        // SAFETY: p is inside the local array.
        unsafe { core::ptr::write_volatile(area.as_mut_ptr().add(p), 1) };
    }
    core::hint::black_box(&mut area);
}

fn getpid() -> u64 {
    // SAFETY: getpid has no arguments and no effects.
    unsafe { syscall6(SYS_GETPID, 0, 0, 0, 0, 0, 0) }
}

fn now_ns() -> u64 {
    let mut ts = [0u64; 2];
    // SAFETY: ts is a valid, writable struct timespec.
    unsafe { syscall6(SYS_CLOCK_GETTIME, CLOCK_MONOTONIC, ts.as_mut_ptr() as u64, 0, 0, 0, 0) };
    ts[0].wrapping_mul(1_000_000_000).wrapping_add(ts[1])
}

fn write_all(fd: u64, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        let r = linux::write(fd, buf);
        if r <= 0 {
            return false;
        }
        buf = &buf[(r as usize).min(buf.len())..];
    }
    true
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    let mut l = Line::new();
    l.push(b"virtlab.error workload panicked\n");
    l.flush(2);
    linux::exit(101)
}
