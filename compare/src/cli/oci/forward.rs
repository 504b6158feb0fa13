//! A foreground `oci exec`: the signals `virtlab oci exec` receives go to
//! the process it started, as runc forwards them, and its exit status
//! becomes the command's (128+N when signal N killed it).
//!
//! The signals are blocked before the process is made (it starts with
//! none blocked: the exec resets its mask), so none is lost between its
//! start and the wait; they are then read from a signalfd(2), polled
//! together with a pidfd of the process.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use anyhow::{bail, Context};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// What is forwarded: every signal a caller sends to ask something of a
/// process (not SIGCHLD, which is virtlab's own, nor SIGKILL and SIGSTOP,
/// which cannot be caught).
pub(super) const FORWARDED: [Signal; 9] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTERM,
    Signal::SIGALRM,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// The forwarded signals blocked in this thread; the old mask comes back
/// on drop.
pub(super) struct Blocked {
    set: SigSet,
    old: SigSet,
}

impl Drop for Blocked {
    fn drop(&mut self) {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}

/// Blocks [`FORWARDED`] until the process is waited for.
pub(super) fn block() -> anyhow::Result<Blocked> {
    let mut set = SigSet::empty();
    for s in FORWARDED {
        set.add(s);
    }
    let mut old = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old)).context("cannot block signals")?;
    Ok(Blocked { set, old })
}

impl Blocked {
    /// Waits for `pid` (a child of this process), forwarding each signal
    /// received meanwhile; its exit status, 128+N if signal N killed it.
    pub(super) fn wait(self, pid: Pid) -> anyhow::Result<u8> {
        let signals = SignalFd::with_flags(&self.set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .context("cannot make a signalfd")?;
        // SAFETY: pidfd_open(2) with integer arguments; the result is checked.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        let raw = Errno::result(raw).context("cannot open a pidfd of the process (Linux 5.3 or later)")?;
        // SAFETY: pidfd_open returned a new fd that nothing else owns.
        let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        loop {
            let mut fds =
                [PollFd::new(signals.as_fd(), PollFlags::POLLIN), PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => bail!("cannot poll for the process's end: {e}"),
            }
            while let Ok(Some(info)) = signals.read_signal() {
                if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
                    let _ = kill(pid, sig);
                }
            }
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => return Ok(code as u8),
                Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128u8.wrapping_add(sig as u8)),
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => bail!("cannot wait for the process (fd {}): {e}", pidfd.as_raw_fd()),
            }
        }
    }
}
