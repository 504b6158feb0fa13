//! virtlab's /init for Linux guests: a static x86_64 program with no libc,
//! built by `vmm/build.rs` with the host's rustc.
//!
//! The kernel starts it as process 1 with the words after `--` on its
//! command line as arguments: `/init PROGRAM ARGS...` (PROGRAM is an
//! absolute path; unknown kernel parameters the kernel also passes on come
//! before it and are skipped). It
//!
//! 1. mounts /proc (and devtmpfs on /dev, when it can),
//! 2. tells the VMM that user space is running (boot-timer port 0x505,
//!    marker 1, after `ioperm` opened the ports to it),
//! 3. runs PROGRAM with ARGS as a child (default: `/virtlab/workload ready`)
//!    and waits for it, reaping any orphan on the way,
//! 4. reports the child's exit status (128 + signal if it was killed)
//!    through the exit port 0x501, which ends the VM,
//! 5. and if the ports are not available, prints the status and reboots
//!    (with `reboot=k` the i8042 reset line ends the VM).

#![no_std]
#![no_main]

use core::arch::asm;
use core::panic::PanicInfo;

#[path = "../../freestanding/rt/linux.rs"]
mod linux;
#[path = "../../freestanding/rt/mem.rs"]
mod mem;

use linux::{c_str, exit, syscall6, write};

const SYS_IOPERM: u64 = 173;
const SYS_FORK: u64 = 57;
const SYS_EXECVE: u64 = 59;
const SYS_WAIT4: u64 = 61;
const SYS_MOUNT: u64 = 165;
const SYS_REBOOT: u64 = 169;
const SYS_SYNC: u64 = 162;
const SYS_IOCTL: u64 = 16;
const SYS_NANOSLEEP: u64 = 35;
/// ioctl TIOCOUTQ: bytes still queued for output on a terminal.
const TIOCOUTQ: u64 = 0x5411;

const PORT_EXIT: u16 = 0x501;
const PORT_BOOT_TIMER: u16 = 0x505;
const MARKER_USER_SPACE: u8 = 1;

const DEFAULT_PROGRAM: &[u8] = b"/virtlab/workload\0";
const DEFAULT_ARG: &[u8] = b"ready\0";

fn outb(port: u16, v: u8) {
    // SAFETY: only called after ioperm granted the port; an `out` to a
    // port of the VMM's devices has no effect on this process's memory.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nostack, nomem)) };
}

fn outl(port: u16, v: u32) {
    // SAFETY: as for outb.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nostack, nomem)) };
}

fn mount(source: &[u8], target: &[u8], fstype: &[u8]) -> i64 {
    // SAFETY: the three strings are NUL-terminated literals.
    unsafe {
        syscall6(SYS_MOUNT, source.as_ptr() as u64, target.as_ptr() as u64, fstype.as_ptr() as u64, 0, 0, 0) as i64
    }
}

/// Decimal digits of `v` into `buf`; returns the used tail.
fn decimal(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

extern "C" fn start(sp: *const usize) -> ! {
    // SAFETY: the kernel's initial stack: argc, then argc argv pointers and a
    // NULL, then the environment pointers and a NULL.
    let (argc, argv) = unsafe { (*sp, sp.add(1) as *const *const u8) };
    main(argc, argv)
}

fn main(argc: usize, argv: *const *const u8) -> ! {
    mount(b"proc\0", b"/proc\0", b"proc\0");
    mount(b"devtmpfs\0", b"/dev\0", b"devtmpfs\0");
    // SAFETY: ioperm takes plain integers.
    let ports = unsafe { syscall6(SYS_IOPERM, u64::from(PORT_EXIT), 5, 1, 0, 0, 0) as i64 } == 0;
    if ports {
        outb(PORT_BOOT_TIMER, MARKER_USER_SPACE);
    } else {
        write(2, b"virtlab-init: ioperm failed: cannot reach the exit port (CONFIG_X86_IOPL_IOPERM?)\n");
    }

    // The child's argv: ours from the first absolute path on, or the
    // default. Before it may come kernel parameters the kernel did not
    // know (it hands those to init too, e.g. "noxsave").
    let default_argv: [*const u8; 3] = [DEFAULT_PROGRAM.as_ptr(), DEFAULT_ARG.as_ptr(), core::ptr::null()];
    let mut first = 1;
    // SAFETY: argv has argc pointers to NUL-terminated strings.
    while first < argc && unsafe { core::ptr::read_volatile(*argv.add(first)) } != b'/' {
        first += 1;
    }
    // SAFETY: first <= argc, and argv[argc] is the NULL terminator.
    let child_argv: *const *const u8 = if first < argc { unsafe { argv.add(first) } } else { default_argv.as_ptr() };
    let envp: [*const u8; 4] = [
        b"PATH=/bin:/sbin:/usr/bin:/usr/sbin\0".as_ptr(),
        b"HOME=/\0".as_ptr(),
        b"TERM=linux\0".as_ptr(),
        core::ptr::null(),
    ];

    // SAFETY: fork has no arguments.
    let pid = unsafe { syscall6(SYS_FORK, 0, 0, 0, 0, 0, 0) as i64 };
    if pid == 0 {
        // The child: become the program.
        // SAFETY: child_argv[0] is a NUL-terminated path; both vectors are
        // NULL-terminated arrays of NUL-terminated strings.
        let e = unsafe {
            syscall6(SYS_EXECVE, *child_argv as u64, child_argv as u64, envp.as_ptr() as u64, 0, 0, 0) as i64
        };
        let mut buf = [0u8; 20];
        write(2, b"virtlab-init: cannot execute ");
        // SAFETY: child_argv[0] is NUL-terminated and lives on.
        write(2, unsafe { c_str(*child_argv) });
        write(2, b": error ");
        write(2, decimal(e.unsigned_abs(), &mut buf));
        write(2, b"\n");
        exit(127);
    }
    let status: u32 = if pid < 0 {
        write(2, b"virtlab-init: fork failed\n");
        125
    } else {
        // Reap until our child is done (process 1 inherits every orphan).
        loop {
            let mut wstatus: i32 = 0;
            // SAFETY: wstatus is a live i32.
            let r = unsafe { syscall6(SYS_WAIT4, u64::MAX, &mut wstatus as *mut i32 as u64, 0, 0, 0, 0) as i64 };
            if r == pid {
                let w = wstatus as u32;
                break if w & 0x7f == 0 { (w >> 8) & 0xff } else { 128 + (w & 0x7f) };
            }
            if r < 0 {
                break 125;
            }
        }
    };
    // SAFETY: sync has no arguments.
    unsafe { syscall6(SYS_SYNC, 0, 0, 0, 0, 0, 0) };
    // Let the console send what the program wrote before the VM ends: the
    // UART transmits from its interrupt handler, after write() returned.
    // Bounded (2 s), so a console that never drains cannot keep the status
    // from the VMM.
    for _ in 0..200 {
        let mut queued: i32 = 0;
        // SAFETY: TIOCOUTQ writes one int to a live i32.
        let r = unsafe { syscall6(SYS_IOCTL, 1, TIOCOUTQ, &mut queued as *mut i32 as u64, 0, 0, 0) as i64 };
        if r != 0 || queued == 0 {
            break;
        }
        let ts: [u64; 2] = [0, 10_000_000];
        // SAFETY: a live timespec (10 ms), no remainder wanted.
        unsafe { syscall6(SYS_NANOSLEEP, ts.as_ptr() as u64, 0, 0, 0, 0, 0) };
    }
    if ports {
        outl(PORT_EXIT, status);
    }
    let mut buf = [0u8; 20];
    write(2, b"virtlab-init: exit status ");
    write(2, decimal(u64::from(status), &mut buf));
    write(2, b"\n");
    // LINUX_REBOOT_MAGIC1, MAGIC2, LINUX_REBOOT_CMD_RESTART.
    // SAFETY: reboot with integer arguments only.
    unsafe { syscall6(SYS_REBOOT, 0xfee1_dead, 0x2812_1969, 0x0123_4567, 0, 0, 0) };
    exit(u64::from(status))
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    write(2, b"virtlab-init: panic\n");
    exit(125)
}
