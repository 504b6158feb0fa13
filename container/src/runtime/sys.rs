//! The system calls the container's set-up makes, behind a trait.
//!
//! [`RealSys`] makes them; tests use a recording fake (see `plan.rs`), so
//! the order of the set-up (mounts, pivot_root, capabilities, exec) is
//! checked without root. Every method returns the raw errno, which the child
//! sends back to the parent together with the step it was in.
//!
//! These run in the child after clone(2), where the launcher may have had
//! other threads: the methods take C strings prepared by the parent and do
//! not allocate.

use std::ffi::CStr;
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{mknod, Mode, SFlag};

use crate::runtime::hooks::{ChildHook, HookFailure};

/// argv and envp for execve(2), as NULL-terminated pointer arrays.
#[derive(Debug)]
pub struct ExecArgs {
    /// Points into `Plan`'s own `CString`s; ends with a null pointer.
    pub argv: Vec<*const libc::c_char>,
    /// Same for the environment.
    pub envp: Vec<*const libc::c_char>,
}

/// The set-up's system calls.
pub trait Sys {
    /// mount(2).
    fn mount(
        &self,
        src: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno>;
    /// umount2(2).
    fn umount2(&self, target: &CStr, flags: MntFlags) -> Result<(), Errno>;
    /// pivot_root(2).
    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno>;
    /// chroot(2).
    fn chroot(&self, path: &CStr) -> Result<(), Errno>;
    /// chdir(2).
    fn chdir(&self, path: &CStr) -> Result<(), Errno>;
    /// mkdir(2); an existing directory is not an error.
    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno>;
    /// mknod(2) of a character device.
    fn mknod_char(&self, path: &CStr, mode: u32, major: u64, minor: u64) -> Result<(), Errno>;
    /// Creates an empty file to bind-mount a device node onto.
    fn touch(&self, path: &CStr) -> Result<(), Errno>;
    /// symlink(2).
    fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), Errno>;
    /// The mount flags of the file system holding `path` (statvfs(3) f_flag
    /// turned into `MS_*`), to keep locked flags on a read-only remount.
    fn mount_flags(&self, path: &CStr) -> Result<MsFlags, Errno>;
    /// unshare(2).
    fn unshare(&self, flags: CloneFlags) -> Result<(), Errno>;
    /// write(2) of a whole small buffer.
    fn write_fd(&self, fd: RawFd, bytes: &[u8]) -> Result<(), Errno>;
    /// Opens the FIFO behind the `O_PATH` fd `fd` for writing, which
    /// blocks until a reader opens it (`start`), writes one byte, closes it.
    fn await_start(&self, fd: RawFd) -> Result<(), Errno>;
    /// The process's terminal, as runc gives one with `--console-socket`:
    /// a pseudo-terminal pair from the container's own `/dev/ptmx` (its
    /// devpts instance), `/dev/console` bound to the slave if
    /// `bind_console`, the master sent over the connected unix socket
    /// `socket` (SCM_RIGHTS, the payload naming it) and then closed here;
    /// a new session whose controlling terminal is the slave, which
    /// becomes stdin, stdout and stderr.
    fn console(&self, socket: RawFd, bind_console: bool) -> Result<(), Errno>;
    /// Opens `path` for writing (no creation) and writes `bytes` whole.
    fn write_file(&self, path: &CStr, bytes: &[u8]) -> Result<(), Errno>;
    /// sethostname(2).
    fn sethostname(&self, name: &CStr) -> Result<(), Errno>;
    /// socket(2) + ioctl(SIOCSIFFLAGS, IFF_UP) on `lo`.
    fn loopback_up(&self) -> Result<(), Errno>;
    /// setrlimit(2).
    fn setrlimit(&self, resource: i32, soft: u64, hard: u64) -> Result<(), Errno>;
    /// prctl(PR_CAPBSET_DROP).
    fn drop_bounding(&self, cap: u32) -> Result<(), Errno>;
    /// prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL).
    fn clear_ambient(&self) -> Result<(), Errno>;
    /// capset(2): effective = permitted = `keep`, inheritable empty.
    fn capset(&self, keep: u64) -> Result<(), Errno>;
    /// setgroups(2) with an empty list.
    fn clear_groups(&self) -> Result<(), Errno>;
    /// setresgid(2) with one id.
    fn setgid(&self, gid: u32) -> Result<(), Errno>;
    /// setresuid(2) with one id.
    fn setuid(&self, uid: u32) -> Result<(), Errno>;
    /// prctl(PR_SET_NO_NEW_PRIVS, 1).
    fn no_new_privs(&self) -> Result<(), Errno>;
    /// dup2(2).
    fn dup2(&self, from: RawFd, to: RawFd) -> Result<(), Errno>;
    /// close_range(3+keep, ~0, CLOSE_RANGE_CLOEXEC): no launcher fd leaks
    /// into the command; the `keep` fds from 3 on (`--preserve-fds`) lose
    /// their close-on-exec flag instead.
    fn cloexec_above(&self, keep: u32) -> Result<(), Errno>;
    /// move_mount(2) of the detached tree `fd` onto `target`.
    fn move_mount(&self, fd: RawFd, target: &CStr) -> Result<(), Errno>;
    /// seccomp(2) `SECCOMP_SET_MODE_FILTER` of one BPF program.
    fn seccomp(&self, program: &[crate::runtime::seccomp::sock_filter]) -> Result<(), Errno>;
    /// execve(2); returns only on failure.
    fn execve(&self, path: &CStr, args: &ExecArgs) -> Errno;
    /// A lifecycle hook run from the container's process: fork(2); the
    /// new process takes a pipe as stdin and execve(2)s the hook; this one
    /// writes the state (its prefix, `pid`, `}`) into the pipe and waits,
    /// killing it past its timeout.
    fn run_hook(&self, hook: &ChildHook, pid: i32) -> Result<(), HookFailure>;
}

/// The real system calls.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealSys;

const SIOCGIFFLAGS: libc::c_ulong = 0x8913;
const SIOCSIFFLAGS: libc::c_ulong = 0x8914;
const IFF_UP: libc::c_short = 0x1;
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `struct ifreq` as far as SIOC[GS]IFFLAGS use it (40 bytes on Linux).
#[repr(C)]
struct IfreqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

impl Sys for RealSys {
    fn mount(
        &self,
        src: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        mount(src, target, fstype, flags, data)
    }

    fn umount2(&self, target: &CStr, flags: MntFlags) -> Result<(), Errno> {
        umount2(target, flags)
    }

    fn pivot_root(&self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
        nix::unistd::pivot_root(new_root, put_old)
    }

    fn chroot(&self, path: &CStr) -> Result<(), Errno> {
        nix::unistd::chroot(path)
    }

    fn chdir(&self, path: &CStr) -> Result<(), Errno> {
        nix::unistd::chdir(path)
    }

    fn mkdir(&self, path: &CStr, mode: u32) -> Result<(), Errno> {
        match nix::unistd::mkdir(path, Mode::from_bits_truncate(mode)) {
            Err(Errno::EEXIST) => Ok(()),
            r => r,
        }
    }

    fn mknod_char(&self, path: &CStr, mode: u32, major: u64, minor: u64) -> Result<(), Errno> {
        let dev = nix::sys::stat::makedev(major, minor);
        mknod(path, SFlag::S_IFCHR, Mode::from_bits_truncate(mode), dev)
    }

    fn await_start(&self, fd: RawFd) -> Result<(), Errno> {
        use nix::fcntl::{open, OFlag};
        // The path through /proc: the FIFO itself is outside the new root.
        let mut path = [0u8; 32];
        let text = b"/proc/self/fd/";
        path[..text.len()].copy_from_slice(text);
        let mut n = text.len();
        let mut digits = [0u8; 10];
        let (mut v, mut d) = (fd as u32, digits.len());
        loop {
            d -= 1;
            digits[d] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        path[n..n + digits.len() - d].copy_from_slice(&digits[d..]);
        n += digits.len() - d;
        let path = CStr::from_bytes_until_nul(&path[..=n]).map_err(|_| Errno::EINVAL)?;
        let w = open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        let r = self.write_fd(w, b"0");
        // The write end takes the O_PATH fd's number and stays open until
        // execve closes it (close-on-exec): `start` reads end-of-file once
        // the program runs, or a hook's failure report before that.
        // SAFETY: dup3(2) of two fds this process holds; `w` is closed after.
        let moved = Errno::result(unsafe { libc::dup3(w, fd, libc::O_CLOEXEC) });
        let _ = nix::unistd::close(w);
        r.and(moved.map(drop))
    }

    fn console(&self, socket: RawFd, bind_console: bool) -> Result<(), Errno> {
        use nix::fcntl::{open, OFlag};
        let master = open(c"/dev/ptmx", OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())?;
        let unlock: libc::c_int = 0;
        // SAFETY: TIOCSPTLCK reads one int from the pointer, which points
        // to a live local (ioctl_tty(2)); `master` is a pty master.
        Errno::result(unsafe { libc::ioctl(master, libc::TIOCSPTLCK, &unlock) })?;
        // SAFETY: TIOCGPTPEER takes open(2) flags by value and returns a
        // new fd of the slave (Linux 4.13, ioctl_tty(2)).
        let slave = Errno::result(unsafe {
            libc::ioctl(master, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC)
        })?;
        if bind_console {
            let mut n: libc::c_uint = 0;
            // SAFETY: TIOCGPTN writes one unsigned int to the pointer,
            // which points to a live local (ioctl_tty(2)).
            Errno::result(unsafe { libc::ioctl(master, libc::TIOCGPTN, &mut n) })?;
            let mut path = [0u8; 32];
            let text = b"/dev/pts/";
            path[..text.len()].copy_from_slice(text);
            let len = text.len() + decimal(n, &mut path[text.len()..]);
            let slave_path = CStr::from_bytes_until_nul(&path[..=len]).map_err(|_| Errno::EINVAL)?;
            self.touch(c"/dev/console")?;
            self.mount(Some(slave_path), c"/dev/console", None, MsFlags::MS_BIND, None)?;
        }
        send_fd(socket, master, b"/dev/ptmx")?;
        let _ = nix::unistd::close(master);
        let _ = nix::unistd::close(socket);
        nix::unistd::setsid()?;
        // SAFETY: TIOCSCTTY takes an int by value; this process has just
        // become a session leader without a controlling terminal.
        Errno::result(unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) })?;
        for to in 0..3 {
            self.dup2(slave, to)?;
        }
        let _ = nix::unistd::close(slave);
        Ok(())
    }

    fn write_file(&self, path: &CStr, bytes: &[u8]) -> Result<(), Errno> {
        use nix::fcntl::{open, OFlag};
        let fd = open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
        let r = self.write_fd(fd, bytes);
        let _ = nix::unistd::close(fd);
        r
    }

    fn touch(&self, path: &CStr) -> Result<(), Errno> {
        use nix::fcntl::{open, OFlag};
        let fd = open(path, OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::from_bits_truncate(0o644))?;
        nix::unistd::close(fd)
    }

    fn symlink(&self, target: &CStr, link: &CStr) -> Result<(), Errno> {
        nix::unistd::symlinkat(target, None, link)
    }

    fn mount_flags(&self, path: &CStr) -> Result<MsFlags, Errno> {
        use nix::sys::statvfs::{statvfs, FsFlags};
        let st = statvfs(path)?;
        let f = st.flags();
        let mut m = MsFlags::empty();
        let pairs = [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ];
        for (s, ms) in pairs {
            if f.contains(s) {
                m |= ms;
            }
        }
        Ok(m)
    }

    fn unshare(&self, flags: CloneFlags) -> Result<(), Errno> {
        nix::sched::unshare(flags)
    }

    fn write_fd(&self, fd: RawFd, bytes: &[u8]) -> Result<(), Errno> {
        // SAFETY: bytes is a readable buffer of bytes.len() bytes.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        match Errno::result(n)? {
            n if n as usize == bytes.len() => Ok(()),
            _ => Err(Errno::EIO),
        }
    }

    fn sethostname(&self, name: &CStr) -> Result<(), Errno> {
        // SAFETY: name points to name.to_bytes().len() readable bytes; see sethostname(2).
        let r = unsafe { libc::sethostname(name.as_ptr(), name.to_bytes().len()) };
        Errno::result(r).map(drop)
    }

    fn loopback_up(&self) -> Result<(), Errno> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        let fd = Errno::result(fd)?;
        let mut req = IfreqFlags { name: [0; 16], flags: 0, _pad: [0; 22] };
        req.name[..2].copy_from_slice(b"lo");
        // SAFETY: req is a writable struct ifreq-sized buffer whose name is
        // NUL-terminated; SIOCGIFFLAGS fills ifr_flags (netdevice(7)).
        let r = unsafe { libc::ioctl(fd, SIOCGIFFLAGS, &mut req as *mut IfreqFlags) };
        let r = Errno::result(r).and_then(|_| {
            req.flags |= IFF_UP;
            // SAFETY: as above; SIOCSIFFLAGS reads ifr_name and ifr_flags.
            let r = unsafe { libc::ioctl(fd, SIOCSIFFLAGS, &mut req as *mut IfreqFlags) };
            Errno::result(r).map(drop)
        });
        // SAFETY: fd is the socket opened above, not used afterwards.
        unsafe { libc::close(fd) };
        r
    }

    fn setrlimit(&self, resource: i32, soft: u64, hard: u64) -> Result<(), Errno> {
        let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
        // SAFETY: lim is a valid struct rlimit; setrlimit(2) only reads it.
        let r = unsafe { libc::setrlimit(resource as libc::__rlimit_resource_t, &lim) };
        Errno::result(r).map(drop)
    }

    fn drop_bounding(&self, cap: u32) -> Result<(), Errno> {
        // SAFETY: prctl(2) PR_CAPBSET_DROP takes an integer argument only.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        match Errno::result(r) {
            // A capability this kernel does not know is not in the set.
            Err(Errno::EINVAL) => Ok(()),
            r => r.map(drop),
        }
    }

    fn clear_ambient(&self) -> Result<(), Errno> {
        // SAFETY: prctl(2) PR_CAP_AMBIENT with integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
        Errno::result(r).map(drop)
    }

    fn capset(&self, keep: u64) -> Result<(), Errno> {
        let mut hdr = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
        let lo = keep as u32;
        let hi = (keep >> 32) as u32;
        let data = [
            CapData { effective: lo, permitted: lo, inheritable: 0 },
            CapData { effective: hi, permitted: hi, inheritable: 0 },
        ];
        // SAFETY: capset(2) with a version-3 header and the two data structs
        // that version requires; both outlive the call.
        let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
        Errno::result(r).map(drop)
    }

    fn clear_groups(&self) -> Result<(), Errno> {
        // SAFETY: setgroups(2) with size 0 does not read the list.
        let r = unsafe { libc::setgroups(0, std::ptr::null()) };
        Errno::result(r).map(drop)
    }

    fn setgid(&self, gid: u32) -> Result<(), Errno> {
        // SAFETY: integer arguments only. The raw syscall changes only this
        // thread, which is the whole process in the child.
        let r = unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) };
        Errno::result(r).map(drop)
    }

    fn setuid(&self, uid: u32) -> Result<(), Errno> {
        // SAFETY: as in setgid.
        let r = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
        Errno::result(r).map(drop)
    }

    fn no_new_privs(&self) -> Result<(), Errno> {
        // SAFETY: prctl(2) PR_SET_NO_NEW_PRIVS takes integer arguments only.
        let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        Errno::result(r).map(drop)
    }

    fn dup2(&self, from: RawFd, to: RawFd) -> Result<(), Errno> {
        nix::unistd::dup2(from, to).map(drop)
    }

    fn cloexec_above(&self, keep: u32) -> Result<(), Errno> {
        let first = 3u32.saturating_add(keep);
        for fd in 3..first {
            // SAFETY: fcntl(2) F_SETFD with an integer flag on an fd the
            // launcher checked to be open.
            Errno::result(unsafe { libc::fcntl(fd as RawFd, libc::F_SETFD, 0) })?;
        }
        // SAFETY: close_range(2) with integer arguments; CLOEXEC only marks fds.
        let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
        Errno::result(r).map(drop)
    }

    fn move_mount(&self, fd: RawFd, target: &CStr) -> Result<(), Errno> {
        // SAFETY: move_mount(2) with an fd, two NUL-terminated paths and
        // integer flags; the kernel only reads the strings.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                fd,
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        Errno::result(r).map(drop)
    }

    fn seccomp(&self, program: &[crate::runtime::seccomp::sock_filter]) -> Result<(), Errno> {
        let len = u16::try_from(program.len()).map_err(|_| Errno::E2BIG)?;
        let prog = libc::sock_fprog { len, filter: program.as_ptr().cast_mut() };
        // SAFETY: seccomp(2) copies the `len` instructions `prog` points to,
        // which live in the program slice for the duration of the call.
        let r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0, &prog) };
        Errno::result(r).map(drop)
    }

    fn execve(&self, path: &CStr, args: &ExecArgs) -> Errno {
        // SAFETY: path is NUL-terminated; argv and envp are NULL-terminated
        // arrays of pointers into CStrings the plan owns, alive for the call.
        unsafe { libc::execve(path.as_ptr(), args.argv.as_ptr(), args.envp.as_ptr()) };
        Errno::last()
    }

    fn run_hook(&self, hook: &ChildHook, pid: i32) -> Result<(), HookFailure> {
        let start_failed = |e: Errno| HookFailure::Start(e as i32);
        let mut fds: [libc::c_int; 2] = [-1; 2];
        // SAFETY: pipe2(2) writes two fds into the two-int array.
        Errno::result(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }).map_err(start_failed)?;
        let [read_end, write_end] = fds;
        let began = crate::runtime::child::monotonic_ns();
        // SAFETY: fork(2) in the container's (single-threaded) process; the
        // new process only calls dup2, execve and _exit, all
        // async-signal-safe, on data prepared before.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // The hook's process: the container's namespaces, its
            // privileges as they are at this step; stdin from the pipe; a
            // process group of its own, for a timeout to end all of it.
            // SAFETY: as above; path, argv and envp are NUL-terminated and
            // owned by the plan.
            unsafe {
                libc::setpgid(0, 0);
                libc::dup2(read_end, 0);
                libc::execve(hook.path.as_ptr(), hook.exec.argv.as_ptr(), hook.exec.envp.as_ptr());
                libc::_exit(127);
            }
        }
        // The container's process again.
        let _ = nix::unistd::close(read_end);
        if child < 0 {
            let _ = nix::unistd::close(write_end);
            return Err(start_failed(Errno::last()));
        }
        // A hook that exits without reading must not take us down with
        // SIGPIPE: ignored while writing, the default again after.
        // SAFETY: signal(2) with a constant disposition.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        let mut digits = [0u8; 12];
        let n = decimal(pid.unsigned_abs(), &mut digits);
        let _ = self.write_fd(write_end, &hook.state_prefix);
        let _ = self.write_fd(write_end, &digits[..n]);
        let _ = self.write_fd(write_end, b"}\n");
        // SAFETY: as above.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let _ = nix::unistd::close(write_end);
        let limit = hook.timeout_ms.saturating_mul(1_000_000);
        // Polled: short at first (most hooks are quick), backing off to 10 ms.
        let mut pause_ns = 50_000;
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: waitpid(2) of our own child, status into a local.
            let r = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
            if r == child {
                return if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                    Ok(())
                } else if libc::WIFEXITED(status) {
                    Err(HookFailure::Exit(libc::WEXITSTATUS(status)))
                } else {
                    Err(HookFailure::Signal(libc::WTERMSIG(status)))
                };
            }
            if r < 0 && Errno::last() != Errno::EINTR {
                return Err(start_failed(Errno::last()));
            }
            if limit > 0 && crate::runtime::child::monotonic_ns().saturating_sub(began) >= limit {
                // SAFETY: kill(2) of our own child's process group, and
                // waitpid(2) of our own child.
                unsafe {
                    libc::kill(-child, libc::SIGKILL);
                    libc::waitpid(child, &mut status, 0);
                }
                return Err(HookFailure::Timeout(hook.timeout_ms.div_ceil(1000) as u32));
            }
            let pause = libc::timespec { tv_sec: 0, tv_nsec: pause_ns };
            // SAFETY: nanosleep(2) reads the local timespec; no remainder wanted.
            unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
            pause_ns = (pause_ns * 2).min(10_000_000);
        }
    }
}

/// Writes `n` in decimal at the start of `out`; how many digits.
fn decimal(n: u32, out: &mut [u8]) -> usize {
    let mut digits = [0u8; 10];
    let (mut v, mut d) = (n, digits.len());
    loop {
        d -= 1;
        digits[d] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let len = digits.len() - d;
    out[..len].copy_from_slice(&digits[d..]);
    len
}

/// sendmsg(2) of `fd` over the unix socket `socket` (one SCM_RIGHTS
/// control message) with `name` as the data, without allocating.
fn send_fd(socket: RawFd, fd: RawFd, name: &[u8]) -> Result<(), Errno> {
    // Room for one control message carrying one int, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: CMSG_SPACE is a pure computation on its argument.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    if space > std::mem::size_of_val(&control) {
        return Err(Errno::EINVAL);
    }
    let mut iov = libc::iovec { iov_base: name.as_ptr() as *mut libc::c_void, iov_len: name.len() };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: msg_control points to `space` zeroed, aligned bytes, enough
    // for one header and an int (checked above), so CMSG_FIRSTHDR is
    // non-null and CMSG_DATA points inside the buffer (cmsg(3)).
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(Errno::EINVAL);
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
    }
    // SAFETY: msg and everything it points to live until sendmsg returns.
    let sent = Errno::result(unsafe { libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL) })?;
    if (sent as usize) < name.len() {
        return Err(Errno::EIO);
    }
    Ok(())
}
