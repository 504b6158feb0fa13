//! Watching the container until it is gone: one poll loop over the
//! channel (step stamps, a failure, end-of-file once execve succeeded), a
//! pidfd (the exit status), the stdout/stderr pipes (captured, teed, and
//! the workload's ready line), a signalfd (signals to forward) and the
//! timeout. After the exit, output keeps being drained for a short while.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::error::{sys_err, LaunchError};
use super::outcome::{ExitStatus, Stamp};
use super::spawn::ChildGuard;
use crate::runtime::cgroup::Cgroup;
use crate::runtime::channel::{ChildMsg, ParentEnd};
use crate::runtime::config::{ContainerConfig, Stdio};
use crate::runtime::log::{LogWriter, Stream};
use crate::runtime::plan::Step;

/// How long output may keep arriving after the command exited (from
/// processes it left behind when there is no PID namespace).
const DRAIN: Duration = Duration::from_secs(2);

/// The signals a launcher that forwards them (`ContainerConfig::
/// forward_signals`) passes on to the container. A caller with threads of
/// its own must block them there, or one of those threads may take a
/// signal meant for the container and the process die of it.
pub const FORWARDED_SIGNALS: [Signal; 6] =
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2];

/// Spawns a thread that never takes one of the [`FORWARDED_SIGNALS`]: it
/// starts with them blocked (a thread inherits its creator's mask, so
/// there is no moment it could take one), and the calling thread's own
/// mask is set back before this returns. For the threads a caller of
/// `run` keeps beside the launcher, which forwards those signals from a
/// signalfd of the calling thread: a process-directed signal goes to any
/// thread that does not block it, and its default action would end the
/// whole process.
pub fn spawn_shielded<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>, Errno> {
    let mut set = SigSet::empty();
    for s in FORWARDED_SIGNALS {
        set.add(s);
    }
    let old = set.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    let spawned = std::thread::Builder::new().spawn(f);
    old.thread_set_mask()?;
    spawned.map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN)))
}

/// The signals the launcher forwards ([`FORWARDED_SIGNALS`]):
/// blocked in the calling thread and read from a signalfd instead of
/// handled. The thread's old mask comes back on drop.
#[derive(Debug)]
pub(super) struct Signals {
    fd: Option<SignalFd>,
    _mask: MaskGuard,
}

/// Restores the calling thread's signal mask.
#[derive(Debug)]
struct MaskGuard(Option<SigSet>);

impl Drop for MaskGuard {
    fn drop(&mut self) {
        if let Some(old) = self.0.take() {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        }
    }
}

impl Signals {
    /// No forwarded signals.
    pub(super) fn none() -> Signals {
        Signals { fd: None, _mask: MaskGuard(None) }
    }

    /// Blocks the forwarded signals if `cfg` forwards signals; else nothing.
    pub(super) fn block(cfg: &ContainerConfig) -> Result<Signals, LaunchError> {
        let mut mask = MaskGuard(None);
        if !cfg.forward_signals {
            return Ok(Signals { fd: None, _mask: mask });
        }
        let mut set = SigSet::empty();
        for s in FORWARDED_SIGNALS {
            set.add(s);
        }
        let mut old = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old)).map_err(sys_err("pthread_sigmask", ""))?;
        mask.0 = Some(old);
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(sys_err("signalfd", ""))?;
        Ok(Signals { fd: Some(fd), _mask: mask })
    }
}

/// What the launcher watches.
#[derive(Debug)]
pub(super) struct Sources<'a> {
    /// The parent's end of the channel.
    pub(super) channel: &'a ParentEnd,
    /// The child's pidfd.
    pub(super) pidfd: &'a OwnedFd,
    /// The read end of the stdout pipe, when captured.
    pub(super) stdout: Option<&'a OwnedFd>,
    /// The read end of the stderr pipe, when captured.
    pub(super) stderr: Option<&'a OwnedFd>,
    /// The forwarded signals.
    pub(super) signals: &'a Signals,
}

/// Which source a poll entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Channel,
    Exit,
    Stdout,
    Stderr,
    Signals,
}

/// What the watch saw.
#[derive(Debug, Default)]
pub(super) struct Seen {
    /// How the command ended, if it was reaped.
    pub(super) status: Option<ExitStatus>,
    /// The step that failed in the child, and its errno.
    pub(super) failure: Option<(Step, Errno)>,
    /// A hook that failed in the child: its step, index and code.
    pub(super) hook: Option<(Step, u32, u32)>,
    /// Killed because the timeout expired.
    pub(super) timed_out: bool,
    /// The last signal forwarded.
    pub(super) forwarded: Option<i32>,
    /// The stamps so far, then the child's, `ready` and `exit`.
    pub(super) timeline: Vec<Stamp>,
    /// Captured stdout.
    pub(super) stdout: Vec<u8>,
    /// Captured stderr.
    pub(super) stderr: Vec<u8>,
}

/// The watch over one running container.
#[derive(Debug)]
pub(super) struct Watch<'a> {
    cfg: &'a ContainerConfig,
    start_ns: u64,
    deadline: Option<Instant>,
    child: &'a mut ChildGuard,
    cgroup: Option<&'a Cgroup>,
    src: Sources<'a>,
    sock_open: bool,
    out_open: bool,
    err_open: bool,
    drain_until: Option<Instant>,
    ready_seen: bool,
    buf: Vec<u8>,
    log: Option<LogWriter>,
    seen: Seen,
}

impl<'a> Watch<'a> {
    /// A watch of `child`, started at `start` (`start_ns` on
    /// CLOCK_MONOTONIC), with the stamps of the launcher's steps so far.
    pub(super) fn new(
        cfg: &'a ContainerConfig,
        (start, start_ns): (Instant, u64),
        child: &'a mut ChildGuard,
        cgroup: Option<&'a Cgroup>,
        src: Sources<'a>,
        timeline: Vec<Stamp>,
        log: Option<LogWriter>,
    ) -> Watch<'a> {
        Watch {
            cfg,
            start_ns,
            deadline: cfg.timeout.map(|t| start + t),
            child,
            cgroup,
            sock_open: true,
            out_open: src.stdout.is_some(),
            err_open: src.stderr.is_some(),
            src,
            drain_until: None,
            ready_seen: false,
            buf: vec![0u8; 64 * 1024],
            log,
            seen: Seen { timeline, ..Seen::default() },
        }
    }

    /// Watches until the command exited and its output is drained (or the
    /// drain time is up).
    pub(super) fn run(mut self) -> Result<Seen, LaunchError> {
        loop {
            if self.seen.status.is_some() && !self.sock_open && !self.out_open && !self.err_open {
                break;
            }
            let now = Instant::now();
            if self.drain_until.is_some_and(|d| now >= d) {
                break;
            }
            self.enforce_deadline(now);
            for source in self.poll(now)? {
                match source {
                    Source::Channel => self.on_message()?,
                    Source::Exit => self.on_exit(),
                    Source::Stdout | Source::Stderr => self.on_output(source)?,
                    Source::Signals => self.on_signals(),
                }
            }
        }
        if let (Some(log), Some(path)) = (&mut self.log, &self.cfg.log) {
            log.finish().map_err(|source| LaunchError::Log { path: path.clone(), source })?;
        }
        Ok(self.seen)
    }

    /// Past the deadline: SIGKILL to the child and everything in its cgroup.
    fn enforce_deadline(&mut self, now: Instant) {
        if let (Some(d), None, false) = (self.deadline, self.seen.status, self.seen.timed_out) {
            if now >= d {
                self.seen.timed_out = true;
                let _ = kill(self.child.pid, Signal::SIGKILL);
                if let Some(cg) = self.cgroup {
                    cg.kill_all();
                }
            }
        }
    }

    /// Until the deadline (while it still matters) or the end of the drain.
    fn poll_timeout(&self, now: Instant) -> PollTimeout {
        let deadline = if self.seen.status.is_none() && !self.seen.timed_out { self.deadline } else { None };
        let mut wait = None::<Duration>;
        for d in [deadline, self.drain_until].into_iter().flatten() {
            let left = d.saturating_duration_since(now);
            wait = Some(wait.map_or(left, |w| w.min(left)));
        }
        match wait {
            Some(w) => PollTimeout::try_from(w.as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        }
    }

    /// One poll(2) over the sources still open; the ones ready, in order.
    fn poll(&self, now: Instant) -> Result<Vec<Source>, LaunchError> {
        let mut sources = Vec::with_capacity(5);
        let mut pfds = Vec::with_capacity(5);
        let mut add = |source, fd| {
            sources.push(source);
            pfds.push(PollFd::new(fd, PollFlags::POLLIN));
        };
        if self.sock_open {
            add(Source::Channel, self.src.channel.fd());
        }
        if self.seen.status.is_none() {
            add(Source::Exit, self.src.pidfd.as_fd());
        }
        if let (true, Some(f)) = (self.out_open, self.src.stdout) {
            add(Source::Stdout, f.as_fd());
        }
        if let (true, Some(f)) = (self.err_open, self.src.stderr) {
            add(Source::Stderr, f.as_fd());
        }
        if let Some(s) = &self.src.signals.fd {
            add(Source::Signals, s.as_fd());
        }
        match poll(&mut pfds, self.poll_timeout(now)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(sys_err("poll", "")(e)),
        }
        Ok(pfds
            .iter()
            .zip(sources)
            .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, s)| s)
            .collect())
    }

    /// A message from the child, or the channel's end: execve succeeded
    /// (close-on-exec) or the child died.
    fn on_message(&mut self) -> Result<(), LaunchError> {
        match self.src.channel.recv()? {
            Some(ChildMsg::StepDone { step, t_ns }) => {
                self.seen.timeline.push(Stamp::at_ns(step, t_ns, self.start_ns));
            }
            Some(ChildMsg::Failed { step, errno }) => self.seen.failure = Some((step, Errno::from_raw(errno))),
            Some(ChildMsg::HookFailed { step, index, code }) => self.seen.hook = Some((step, index, code)),
            None => {
                self.sock_open = false;
                // The end of the channel with no failure and no exit yet:
                // execve succeeded, the command runs.
                if let (Some(path), None, None) = (&self.cfg.pid_file, &self.seen.failure, &self.seen.status) {
                    write_pid_file(path, self.child.pid.as_raw())
                        .map_err(|source| LaunchError::PidFile { path: path.clone(), source })?;
                }
            }
        }
        Ok(())
    }

    /// The pidfd is readable: reap the child.
    fn on_exit(&mut self) {
        let status = match waitpid(self.child.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => ExitStatus::Exited(c),
            Ok(WaitStatus::Signaled(_, s, _)) => ExitStatus::Signaled(s as i32),
            _ => return,
        };
        self.child.reaped = true;
        self.seen.status = Some(status);
        self.seen.timeline.push(Stamp::now(Step::Exit, self.start_ns));
        self.drain_until = Some(Instant::now() + DRAIN);
        // Without a PID namespace, processes it left behind keep running
        // (and keep the pipes open): end them.
        if let Some(cg) = self.cgroup {
            cg.kill_all();
        }
    }

    /// Output on stdout or stderr: captured, teed if asked, and stdout
    /// searched for the workload's ready line.
    fn on_output(&mut self, source: Source) -> Result<(), LaunchError> {
        let is_out = source == Source::Stdout;
        let pipe = if is_out { self.src.stdout } else { self.src.stderr };
        let Some(fd) = pipe.map(AsRawFd::as_raw_fd) else { return Ok(()) };
        let n = match nix::unistd::read(fd, &mut self.buf) {
            Ok(0) | Err(Errno::EBADF) => {
                *(if is_out { &mut self.out_open } else { &mut self.err_open }) = false;
                return Ok(());
            }
            Ok(n) => n,
            Err(Errno::EINTR | Errno::EAGAIN) => return Ok(()),
            Err(e) => return Err(sys_err("read of the container's output", "")(e)),
        };
        let chunk = &self.buf[..n];
        if let (Some(log), Some(path)) = (&mut self.log, &self.cfg.log) {
            let stream = if is_out { Stream::Stdout } else { Stream::Stderr };
            log.write(stream, chunk).map_err(|source| LaunchError::Log { path: path.clone(), source })?;
        }
        if matches!(self.cfg.stdio, Stdio::Tee | Stdio::Inherit) {
            if is_out {
                let mut o = io::stdout().lock();
                let _ = o.write_all(chunk).and_then(|_| o.flush());
            } else {
                let _ = io::stderr().write_all(chunk);
            }
        }
        if self.cfg.stdio == Stdio::Inherit {
            // Logged and passed on, not kept: a long-lived container's
            // output would grow without end.
            return Ok(());
        }
        if !is_out {
            self.seen.stderr.extend_from_slice(chunk);
            return Ok(());
        }
        self.seen.stdout.extend_from_slice(chunk);
        if !self.ready_seen {
            if let Some(t) = ready_time(&self.seen.stdout) {
                self.ready_seen = true;
                self.seen.timeline.push(Stamp::at_ns(Step::Ready, t, self.start_ns));
            }
        }
        Ok(())
    }

    /// Signals the launcher received: forwarded to the child.
    fn on_signals(&mut self) {
        if let Some(s) = &self.src.signals.fd {
            while let Ok(Some(info)) = s.read_signal() {
                let sig = info.ssi_signo as i32;
                self.seen.forwarded = Some(sig);
                forward(self.child.pid, sig, self.cfg.namespaces.pid);
            }
        }
    }
}

/// The `t_ns=` of the workload's ready line, once a whole one arrived.
fn ready_time(out: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(out).ok()?;
    let line = text.split_inclusive('\n').find(|l| l.starts_with("virtlab.ready") && l.ends_with('\n'))?;
    line.split_whitespace().find_map(|w| w.strip_prefix("t_ns=")).and_then(|v| v.parse().ok())
}

/// Forwards a signal. PID 1 of a namespace only receives signals it has a
/// handler for (the kernel protects a namespace's init); if the command has
/// none for one meant to stop it (SIGINT, SIGTERM, SIGHUP, SIGQUIT), it
/// would never stop, so it gets SIGKILL instead; the others go as they are.
fn forward(pid: Pid, sig: i32, pid_ns: bool) {
    let Ok(signal) = Signal::try_from(sig) else { return };
    let stop = matches!(signal, Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP | Signal::SIGQUIT);
    if pid_ns && stop && !catches(pid, sig) {
        let _ = kill(pid, Signal::SIGKILL);
    } else {
        let _ = kill(pid, signal);
    }
}

fn catches(pid: Pid, sig: i32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|m| m & (1u64 << (sig - 1)) != 0)
}

/// Writes `pid` to `path` whole or not at all (a temporary file renamed).
fn write_pid_file(path: &std::path::Path, pid: i32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{pid}\n"))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line() {
        assert_eq!(ready_time(b"virtlab.ready pid=1 t_ns=42\n"), Some(42));
        assert_eq!(ready_time(b"virtlab.ready pid=1 t_ns=42"), None, "incomplete line");
        assert_eq!(ready_time(b"noise\nvirtlab.ready pid=1 t_ns=7\nmore"), Some(7));
    }
}
