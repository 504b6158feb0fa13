//! Waiting on child processes without hanging the harness: a workload or
//! a peer that never ends is killed at its timeout, never waited for
//! forever.

use std::time::{Duration, Instant};

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Waits up to `timeout` for `fd` to be readable (or closed).
pub(crate) fn poll_in(fd: i32, timeout: Duration) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return r > 0;
        }
    }
}

/// waitpid through a pidfd, so the wait blocks (no polling delay) yet
/// still ends at `timeout`, when the child is killed.
pub(crate) fn wait_child(pid: libc::pid_t, t0: Instant, timeout: Duration) -> Result<i32, String> {
    // SAFETY: pidfd_open on our own unreaped child; the fd is closed below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    let result = loop {
        let mut status = 0;
        // SAFETY: waiting for our own child; the pointer is valid.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break Ok(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) });
        }
        if r < 0 {
            break Err(format!("waiting for the workload: {}", std::io::Error::last_os_error()));
        }
        let left = timeout.saturating_sub(t0.elapsed());
        if left.is_zero() {
            // SAFETY: signalling our own child, which has not been reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if pidfd >= 0 {
            poll_in(pidfd, left.max(Duration::from_millis(1)));
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    };
    if pidfd >= 0 {
        // SAFETY: closing the pidfd opened above, once.
        unsafe { libc::close(pidfd) };
    }
    result
}
