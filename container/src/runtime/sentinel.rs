//! A container dies with its launcher, even when the launcher is killed
//! with SIGKILL and can run no clean-up of its own.
//!
//! `PR_SET_PDEATHSIG` (set by the child, as bubblewrap's
//! `--die-with-parent` does) kills the container's first process when the
//! launcher dies; with a PID namespace the kernel then kills the rest of
//! it. Without one, whatever the command started lives on, and in either
//! case the container's cgroup directories stay behind. So the launcher
//! starts a *sentinel* first: a small forked process that waits on a pipe
//! whose only writer is the launcher. When the launcher is gone, for any
//! reason, the read returns end-of-file and the sentinel kills every
//! process left in the container's cgroups and removes them. When the
//! launcher finishes normally, it has already cleaned up, and it ends the
//! sentinel itself.
//!
//! Which process: a fork of the launcher, in the host's namespaces, as
//! root, in a session of its own (a Ctrl-C meant for the launcher does not
//! reach it). Like the container's child, it runs after a fork of a
//! possibly multi-threaded process, so it does not allocate: its paths are
//! prepared as C strings before the fork.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{pipe2, Pid};

/// One cgroup directory and the files the sentinel uses in it.
#[derive(Debug)]
struct Dir {
    dir: CString,
    procs: CString,
    kill: CString,
}

/// The running sentinel; ended (SIGKILL, reaped) by [`Sentinel::stop`] or
/// on drop.
#[derive(Debug)]
pub struct Sentinel {
    pid: Pid,
    // The launcher's end of the pipe: closing it (by dying) wakes the sentinel.
    writer: Option<OwnedFd>,
    dismissed: bool,
    reaped: bool,
}

impl Sentinel {
    /// Starts a sentinel for these cgroup directories.
    pub fn start(dirs: &[PathBuf]) -> Result<Sentinel, Errno> {
        let c = |p: PathBuf| CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL);
        let dirs: Vec<Dir> = dirs
            .iter()
            .map(|d| Ok(Dir { dir: c(d.clone())?, procs: c(d.join("cgroup.procs"))?, kill: c(d.join("cgroup.kill"))? }))
            .collect::<Result<_, Errno>>()?;
        let (reader, writer) = pipe2(OFlag::O_CLOEXEC)?;
        // SAFETY: clone(2) without CLONE_VM and with a NULL stack is fork(2);
        // the child runs `watch`, which does not allocate and ends in _exit.
        let ret =
            unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0usize, 0usize, 0usize, 0usize) };
        if ret == 0 {
            watch(reader.as_raw_fd(), &dirs);
        }
        let pid = Errno::result(ret)?;
        Ok(Sentinel { pid: Pid::from_raw(pid as i32), writer: Some(writer), dismissed: false, reaped: false })
    }

    /// Tells the sentinel to go (SIGKILL) without waiting for it: the
    /// launcher is about to clean up itself, and the sentinel's exit runs
    /// on another CPU meanwhile. It is reaped on drop.
    pub fn dismiss(&mut self) {
        if !self.dismissed {
            let _ = kill(self.pid, Signal::SIGKILL);
            self.dismissed = true;
        }
    }

    /// Ends the sentinel (the launcher cleaned up itself) and reaps it.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        // Killed before the pipe closes, so that it cleans nothing up.
        if !self.reaped {
            self.dismiss();
            let _ = waitpid(self.pid, None);
        }
        self.writer.take();
    }
}

/// The sentinel's life. Never returns.
fn watch(reader: RawFd, dirs: &[Dir]) -> ! {
    // Sentinel process, host namespaces, root. Leave the launcher's
    // session and ignore terminal signals; hold no fd but the pipe's end,
    // so that no pipe the launcher reads stays open because of us.
    // SAFETY: setsid, signal, open, dup2 and close_range are
    // async-signal-safe system calls on integers and a static path.
    unsafe {
        libc::setsid();
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT, libc::SIGPIPE] {
            libc::signal(s, libc::SIG_IGN);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        let keep = reader as libc::c_uint;
        if keep > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, keep - 1, 0u32);
        }
        libc::syscall(libc::SYS_close_range, keep + 1, u32::MAX, 0u32);
    }
    let mut b = [0u8; 1];
    loop {
        // SAFETY: b is a writable one-byte buffer.
        let n = unsafe { libc::read(reader, b.as_mut_ptr().cast(), 1) };
        if n < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        break;
    }
    // The launcher is gone. What is left of the container goes too.
    for d in dirs {
        clean(d);
    }
    // SAFETY: _exit(2) ends this process without running the parent's destructors.
    unsafe { libc::_exit(0) }
}

/// Kills what is in one cgroup and removes it, retrying for about two
/// seconds while dying processes leave it.
fn clean(d: &Dir) {
    write_file(&d.kill, b"1");
    for _ in 0..400 {
        // SAFETY: rmdir(2) of a NUL-terminated path.
        if unsafe { libc::rmdir(d.dir.as_ptr()) } == 0 || Errno::last() == Errno::ENOENT {
            return;
        }
        kill_listed(&d.procs);
        let pause = libc::timespec { tv_sec: 0, tv_nsec: 5_000_000 };
        // SAFETY: nanosleep(2) reads a valid timespec; no remainder wanted.
        unsafe { libc::nanosleep(&pause, std::ptr::null_mut()) };
    }
}

fn write_file(path: &CStr, bytes: &[u8]) {
    // SAFETY: open/write/close of a NUL-terminated path and a live buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::write(fd, bytes.as_ptr().cast(), bytes.len());
            libc::close(fd);
        }
    }
}

/// SIGKILLs every pid listed in a `cgroup.procs` file, parsing it on the stack.
fn kill_listed(procs: &CStr) {
    // SAFETY: open(2) of a NUL-terminated path.
    let fd = unsafe { libc::open(procs.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return;
    }
    // SAFETY: fd was just opened and is owned here only.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut buf = [0u8; 4096];
    let mut pid: i32 = 0;
    let mut digits = false;
    loop {
        // SAFETY: buf is a writable buffer of buf.len() bytes.
        let n = unsafe { libc::read(file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        for &c in &buf[..n as usize] {
            if c.is_ascii_digit() {
                pid = pid.saturating_mul(10).saturating_add(i32::from(c - b'0'));
                digits = true;
            } else if digits {
                // SAFETY: kill(2) with integers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                (pid, digits) = (0, false);
            }
        }
    }
    if digits {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_killed_owner_wakes_the_sentinel_which_removes_the_directories() {
        // Plain directories stand in for cgroups: the sentinel removes them
        // once the pipe's writer is gone.
        let tmp = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..2).map(|i| tmp.path().join(format!("cg{i}"))).collect();
        for d in &dirs {
            std::fs::create_dir(d).unwrap();
        }
        let mut s = Sentinel::start(&dirs).unwrap();
        // Closing the writer is what the kernel does when the launcher dies.
        s.writer = None;
        let status = waitpid(s.pid, None).unwrap();
        s.reaped = true;
        assert!(matches!(status, nix::sys::wait::WaitStatus::Exited(_, 0)), "{status:?}");
        for d in &dirs {
            assert!(!d.exists(), "{} is still there", d.display());
        }
    }

    #[test]
    fn stop_ends_the_sentinel_and_leaves_the_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("cg");
        std::fs::create_dir(&d).unwrap();
        let s = Sentinel::start(std::slice::from_ref(&d)).unwrap();
        let pid = s.pid;
        s.stop();
        assert!(d.exists(), "a stopped sentinel cleans nothing");
        assert_eq!(kill(pid, None), Err(Errno::ESRCH), "reaped");
    }
}
