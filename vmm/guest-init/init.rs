//! virtlab's /init for Linux guests: a static x86_64 program with no libc,
//! built by `vmm/build.rs` with the host's rustc.
//!
//! What to run comes from one of two places:
//!
//! - the command file `/virtlab/exec` (see `command.rs`: the program, its
//!   arguments, environment and working directory, any bytes but NUL), which
//!   virtlab writes into every initramfs it builds;
//! - without that file (a user's own `--initrd`), the kernel command line:
//!   the kernel starts init with the words after `--` as arguments, `/init
//!   PROGRAM ARGS...` (PROGRAM is an absolute path; unknown kernel
//!   parameters the kernel also passes on come before it and are skipped),
//!   with the default environment, in `/`.
//!
//! It
//!
//! 1. mounts /proc (and devtmpfs on /dev, when it can),
//! 2. tells the VMM that user space is running (boot-timer port 0x505,
//!    marker 1, after `ioperm` opened the ports to it),
//! 3. reads the command file, makes and enters its working directory (as
//!    Docker does, a missing directory is created), and looks a program
//!    name without a `/` up in the environment's PATH,
//! 4. runs the program (default: `/virtlab/workload ready`) as a child and
//!    waits for it, reaping any orphan on the way,
//! 5. reports the child's exit status (128 + signal if it was killed; 125
//!    for a bad command file or working directory, 126 for a program that
//!    cannot be executed, 127 for one not found, as a shell does) through
//!    the exit port 0x501, which ends the VM,
//! 6. and if the ports are not available, prints the status and reboots
//!    (with `reboot=k` the i8042 reset line ends the VM).

#![no_std]
#![no_main]

use core::panic::PanicInfo;

#[path = "../../freestanding/rt/linux.rs"]
mod linux;
#[path = "../../freestanding/rt/mem.rs"]
mod mem;
#[path = "../../freestanding/rt/port.rs"]
mod port;

// Shared with the VMM, which writes the file: not every item is used here.
#[allow(dead_code)]
mod command;

use command::{status, Command};
use linux::{c_str, exit, syscall6, write};
use port::{inb, inl, outb, outl};

const SYS_READ: u64 = 0;
const SYS_OPEN: u64 = 2;
const SYS_CLOSE: u64 = 3;
const SYS_STAT: u64 = 4;
const SYS_CHDIR: u64 = 80;
const SYS_MKDIR: u64 = 83;
const SYS_IOPERM: u64 = 173;
const SYS_FORK: u64 = 57;
const SYS_EXECVE: u64 = 59;
const SYS_WAIT4: u64 = 61;
const SYS_MOUNT: u64 = 165;
const SYS_REBOOT: u64 = 169;
const SYS_SYNC: u64 = 162;
const SYS_IOCTL: u64 = 16;
const SYS_NANOSLEEP: u64 = 35;
const O_RDONLY_CLOEXEC: u64 = 0o2000000;
const ENOENT: i64 = 2;
const EACCES: i64 = 13;
/// The longest path the init builds (Linux's PATH_MAX, with the NUL).
const PATH_MAX: usize = 4096;
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;
/// ioctl TIOCOUTQ: bytes still queued for output on a terminal.
const TIOCOUTQ: u64 = 0x5411;

const PORT_EXIT: u16 = 0x501;
const PORT_BOOT_TIMER: u16 = 0x505;
/// The command port (`vmm/src/devices/command_port.rs`): a command handed
/// over by the VMM after a snapshot restore.
const PORT_COMMAND: u16 = 0x506;
const MARKER_USER_SPACE: u8 = 1;

const DEFAULT_PROGRAM: &[u8] = b"/virtlab/workload\0";
const DEFAULT_ARG: &[u8] = b"ready\0";

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
    // 0x501-0x509: the exit port (a 32-bit `out`), the boot timer, and the
    // command port (a 32-bit `in` at 0x506 needs 0x506-0x509 allowed).
    // The child inherits the grant and keeps it across execve: the
    // workload's `warm` mode reads the command port itself.
    let ports = unsafe { syscall6(SYS_IOPERM, u64::from(PORT_EXIT), 9, 1, 0, 0, 0) as i64 } == 0;
    if ports {
        outb(PORT_BOOT_TIMER, MARKER_USER_SPACE);
    } else {
        write(2, b"virtlab-init: ioperm failed: cannot reach the exit port (CONFIG_X86_IOPL_IOPERM?)\n");
    }
    // A VM restored from a snapshot taken at the mark above resumes here,
    // and the VMM may hand it a command on the command port.
    let given = if ports { command_from_vmm() } else { None };
    let file = match given {
        Some(c) => Ok(Some(c)),
        None => read_command_file(),
    };
    let status = match file {
        Ok(Some(file)) => match command::parse(file) {
            Ok(cmd) => run_command(&cmd),
            Err(e) => fail(&[e.message().as_bytes()], status::SETUP),
        },
        Ok(None) => run_cmdline(argc, argv),
        Err(status) => status,
    };
    finish(status, ports)
}

/// Prints "virtlab-init: " and the parts of a message on standard error;
/// returns `status`.
fn fail(message: &[&[u8]], status: u32) -> u32 {
    write(2, b"virtlab-init: ");
    for part in message {
        write(2, part);
    }
    write(2, b"\n");
    status
}

/// Prints "virtlab-init: WHAT: error N" (N the errno of the negated
/// result `e`) on standard error; returns `status`.
fn fail_errno(what: &[&[u8]], e: i64, status: u32) -> u32 {
    write(2, b"virtlab-init: ");
    for part in what {
        write(2, part);
    }
    let mut buf = [0u8; 20];
    write(2, b": error ");
    write(2, decimal(e.unsigned_abs(), &mut buf));
    write(2, b"\n");
    status
}

/// A command the VMM handed over on the command port.
static mut FROM_VMM: [u8; command::MAX_BYTES] = [0; command::MAX_BYTES];

/// The command on the command port, in the command file's format, or None
/// (length 0: a boot; all ones: no such port, an older VMM).
fn command_from_vmm() -> Option<&'static [u8]> {
    let len = inl(PORT_COMMAND) as usize;
    if len == 0 || len > command::MAX_BYTES {
        return None;
    }
    // SAFETY: the init is single-threaded and main calls this function
    // once, so this is the only reference to FROM_VMM ever made.
    let buf: &'static mut [u8; command::MAX_BYTES] = unsafe { &mut *(&raw mut FROM_VMM) };
    for b in buf[..len].iter_mut() {
        *b = inb(PORT_COMMAND);
    }
    Some(&buf[..len])
}

/// The command file, read once, into a buffer one byte larger than the
/// format allows (so a longer file is noticed, not cut).
static mut FILE: [u8; command::MAX_BYTES + 1] = [0; command::MAX_BYTES + 1];

/// The command file's bytes, or None when there is none (then the kernel
/// command line says what to run). An error is the status to report.
fn read_command_file() -> Result<Option<&'static [u8]>, u32> {
    // SAFETY: PATH_C is a NUL-terminated path; the other arguments are
    // integers.
    let fd = unsafe { syscall6(SYS_OPEN, command::PATH_C.as_ptr() as u64, O_RDONLY_CLOEXEC, 0, 0, 0, 0) as i64 };
    if fd == -ENOENT {
        return Ok(None);
    }
    if fd < 0 {
        return Err(fail_errno(&[b"cannot open ", command::PATH.as_bytes()], fd, status::SETUP));
    }
    // SAFETY: the init is single-threaded and main calls this function
    // once, so this is the only reference to FILE ever made; FILE lives
    // for the rest of the program.
    let buf: &'static mut [u8; command::MAX_BYTES + 1] = unsafe { &mut *(&raw mut FILE) };
    let mut len = 0;
    let mut result = Ok(());
    while len < buf.len() {
        let room = &mut buf[len..];
        // SAFETY: `room` is valid for writes of room.len() bytes.
        let n = unsafe { syscall6(SYS_READ, fd as u64, room.as_mut_ptr() as u64, room.len() as u64, 0, 0, 0) as i64 };
        if n <= 0 {
            result = if n < 0 { Err(n) } else { Ok(()) };
            break;
        }
        len += n as usize;
    }
    // SAFETY: close takes an integer; fd is ours.
    unsafe { syscall6(SYS_CLOSE, fd as u64, 0, 0, 0, 0, 0) };
    match result {
        Ok(()) => Ok(Some(&buf[..len])),
        Err(e) => Err(fail_errno(&[b"cannot read ", command::PATH.as_bytes()], e, status::SETUP)),
    }
}

/// Runs what the command file says: the working directory, the
/// environment, the program looked up in its PATH, then the child.
fn run_command(cmd: &Command<'static>) -> u32 {
    // The environment: the file's (with the default PATH when it has
    // none), or the default one. At most MAX_ENTRIES entries, one PATH and
    // the NULL.
    let mut envp = [core::ptr::null::<u8>(); command::MAX_ENTRIES + 2];
    let search = command::lookup(cmd.env, b"PATH");
    let default_path = &command::DEFAULT_PATH[b"PATH=".len()..command::DEFAULT_PATH.len() - 1];
    if cmd.env_len == 0 {
        for (slot, e) in envp.iter_mut().zip(command::DEFAULT_ENV) {
            *slot = e.as_ptr();
        }
    } else {
        for (slot, e) in envp.iter_mut().zip(cmd.env) {
            *slot = e.as_ptr();
        }
        if search.is_none() {
            envp[cmd.env_len] = command::DEFAULT_PATH.as_ptr();
        }
    }
    if !cmd.workdir.is_empty() {
        if let Err(status) = enter(cmd.workdir) {
            return status;
        }
    }
    let mut argv = [core::ptr::null::<u8>(); command::MAX_ENTRIES + 1];
    for (slot, a) in argv.iter_mut().zip(cmd.argv) {
        *slot = a.as_ptr();
    }
    let mut words = cmd.argv;
    let name = words.next().unwrap_or(b"");
    let mut found = [0u8; PATH_MAX];
    let program = if name.contains(&b'/') {
        name.as_ptr()
    } else {
        match find_in_path(name, search.unwrap_or(default_path), &mut found) {
            Ok(()) => found.as_ptr(),
            Err(status) => return status,
        }
    };
    spawn(program, argv.as_ptr(), envp.as_ptr())
}

/// Makes the absolute directory `dir` (followed by its NUL in the command
/// file) and its parents, as Docker makes a missing working directory, and
/// enters it.
fn enter(dir: &'static [u8]) -> Result<(), u32> {
    let mut path = [0u8; PATH_MAX];
    if dir.len() < PATH_MAX {
        path[..dir.len()].copy_from_slice(dir);
        for end in 1..=dir.len() {
            if end == dir.len() || dir[end] == b'/' {
                path[end] = 0;
                // SAFETY: path[..=end] is a NUL-terminated string in a live
                // buffer; an existing directory is no error worth a word
                // (chdir below tells what matters).
                unsafe { syscall6(SYS_MKDIR, path.as_ptr() as u64, 0o755, 0, 0, 0, 0) };
                path[end] = if end == dir.len() { 0 } else { b'/' };
            }
        }
    }
    // SAFETY: dir is followed by its NUL in the command file's buffer.
    let r = unsafe { syscall6(SYS_CHDIR, dir.as_ptr() as u64, 0, 0, 0, 0, 0) as i64 };
    if r < 0 {
        return Err(fail_errno(&[b"cannot enter the working directory ", dir], r, status::SETUP));
    }
    Ok(())
}

/// Looks `name` up in the directories of `search` (a PATH value; an empty
/// entry is the current directory) as execvp does: the first regular file
/// with an execute bit wins, and its path is left in `out` with a NUL.
fn find_in_path(name: &[u8], search: &[u8], out: &mut [u8; PATH_MAX]) -> Result<(), u32> {
    let mut denied = false;
    for dir in search.split(|&b| b == b':') {
        let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
        let len = dir.len() + 1 + name.len();
        if len >= PATH_MAX {
            continue;
        }
        out[..dir.len()].copy_from_slice(dir);
        out[dir.len()] = b'/';
        out[dir.len() + 1..len].copy_from_slice(name);
        out[len] = 0;
        match file_mode(out) {
            Some(mode) if mode & S_IFMT == S_IFREG && mode & 0o111 != 0 => return Ok(()),
            Some(mode) if mode & S_IFMT == S_IFREG => denied = true,
            _ => {}
        }
    }
    Err(if denied {
        fail(&[name, b": permission denied (in PATH, but not executable)"], status::NOT_EXECUTABLE)
    } else {
        fail(&[name, b": not found"], status::NOT_FOUND)
    })
}

/// stat(2)'s st_mode of the NUL-terminated path at the start of `path`,
/// if it exists.
fn file_mode(path: &[u8]) -> Option<u32> {
    // x86_64's struct stat is 144 bytes; st_mode is the u32 at offset 24
    // (after st_dev, st_ino and st_nlink, 8 bytes each).
    let mut st = [0u64; 18];
    // SAFETY: path holds a NUL-terminated string; st is 144 writable
    // bytes, the size of the struct stat the kernel fills.
    let r = unsafe { syscall6(SYS_STAT, path.as_ptr() as u64, st.as_mut_ptr() as u64, 0, 0, 0, 0) as i64 };
    (r == 0).then_some(st[3] as u32)
}

/// What the kernel command line says (no command file): the words from
/// the first absolute path on, or the default workload; the default
/// environment; the directory `/`.
fn run_cmdline(argc: usize, argv: *const *const u8) -> u32 {
    // Before the program may come kernel parameters the kernel did not
    // know (it hands those to init too, e.g. "noxsave").
    let default_argv: [*const u8; 3] = [DEFAULT_PROGRAM.as_ptr(), DEFAULT_ARG.as_ptr(), core::ptr::null()];
    let mut first = 1;
    // SAFETY: argv has argc pointers to NUL-terminated strings.
    while first < argc && unsafe { core::ptr::read_volatile(*argv.add(first)) } != b'/' {
        first += 1;
    }
    // SAFETY: first <= argc, and argv[argc] is the NULL terminator.
    let child_argv: *const *const u8 = if first < argc { unsafe { argv.add(first) } } else { default_argv.as_ptr() };
    let [path, home, term] = command::DEFAULT_ENV;
    let envp: [*const u8; 4] = [path.as_ptr(), home.as_ptr(), term.as_ptr(), core::ptr::null()];
    // SAFETY: child_argv is a NULL-terminated array with at least one
    // string before the NULL.
    spawn(unsafe { *child_argv }, child_argv, envp.as_ptr())
}

/// Runs `program` with `argv` and `envp` (NULL-terminated arrays of
/// NUL-terminated strings, alive until this returns) as a child and waits
/// for it: its exit status, or 128 + signal if it was killed.
fn spawn(program: *const u8, argv: *const *const u8, envp: *const *const u8) -> u32 {
    // SAFETY: fork has no arguments.
    let pid = unsafe { syscall6(SYS_FORK, 0, 0, 0, 0, 0, 0) as i64 };
    if pid == 0 {
        // The child: become the program.
        // SAFETY: program is a NUL-terminated path; both vectors are
        // NULL-terminated arrays of NUL-terminated strings (the caller's
        // promise).
        let e = unsafe { syscall6(SYS_EXECVE, program as u64, argv as u64, envp as u64, 0, 0, 0) as i64 };
        // SAFETY: program is NUL-terminated and lives on.
        let name = unsafe { c_str(program) };
        let status = match e {
            _ if e == -ENOENT => fail(&[name, b": not found"], status::NOT_FOUND),
            _ if e == -EACCES => fail(&[b"cannot execute ", name, b": permission denied"], status::NOT_EXECUTABLE),
            _ => fail_errno(&[b"cannot execute ", name], e, status::NOT_EXECUTABLE),
        };
        exit(u64::from(status));
    }
    if pid < 0 {
        return fail_errno(&[b"fork failed"], pid, status::SETUP);
    }
    // Reap until our child is done (process 1 inherits every orphan).
    loop {
        let mut wstatus: i32 = 0;
        // SAFETY: wstatus is a live i32.
        let r = unsafe { syscall6(SYS_WAIT4, u64::MAX, &mut wstatus as *mut i32 as u64, 0, 0, 0, 0) as i64 };
        if r == pid {
            let w = wstatus as u32;
            return if w & 0x7f == 0 { (w >> 8) & 0xff } else { 128 + (w & 0x7f) };
        }
        if r < 0 {
            return status::SETUP;
        }
    }
}

/// Hands `status` to the VMM and ends the VM.
fn finish(status: u32, ports: bool) -> ! {
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
