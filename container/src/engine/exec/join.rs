//! The two processes of an exec, from fork to execve: the *joiner*, which
//! moves into the container's cgroups and namespaces, and the *command*,
//! which it clones into the container's PID namespace as the caller's
//! child. Both are copies of a possibly multi-threaded caller: they make
//! system calls on what [`spawn`] prepared, and never allocate.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::target::{Target, NAMESPACES};
use super::ExecError;
use crate::runtime::channel::{self, child_send, ChildMsg};
use crate::runtime::plan::{run_plan, Plan, Received, Step, StepHooks};
use crate::runtime::sys::{RealSys, Sys};

/// How far the joiner got, in one 12-byte record on its pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Report {
    /// The command was cloned: its host PID.
    Cloned(i32),
    /// A step of the joiner failed with this errno.
    Failed(JoinStep, i32),
}

/// The joiner's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JoinStep {
    /// Writing `0` to the cgroup file of [`Target::cgroups`] at this index.
    Cgroup(usize),
    /// setns(2) into [`NAMESPACES`] at this index.
    Namespace(usize),
    /// setgroups(2) with no group.
    Groups,
    /// setns(2) into the user namespace.
    UserNamespace,
    /// clone(2) of the command.
    Clone,
}

impl Report {
    fn encode(self) -> [u8; 12] {
        let (kind, index, value) = match self {
            Report::Cloned(pid) => (0, 0, pid),
            Report::Failed(JoinStep::Cgroup(i), e) => (1, i as i32, e),
            Report::Failed(JoinStep::Namespace(i), e) => (2, i as i32, e),
            Report::Failed(JoinStep::Groups, e) => (3, 0, e),
            Report::Failed(JoinStep::UserNamespace, e) => (4, 0, e),
            Report::Failed(JoinStep::Clone, e) => (5, 0, e),
        };
        let mut b = [0u8; 12];
        for (i, n) in [kind, index, value].into_iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&n.to_ne_bytes());
        }
        b
    }

    fn decode(b: &[u8; 12]) -> Option<Report> {
        let n = |i: usize| i32::from_ne_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
        let (kind, index, value) = (n(0), usize::try_from(n(1)).ok()?, n(2));
        Some(match kind {
            0 => Report::Cloned(value),
            1 => Report::Failed(JoinStep::Cgroup(index), value),
            2 => Report::Failed(JoinStep::Namespace(index), value),
            3 => Report::Failed(JoinStep::Groups, value),
            4 => Report::Failed(JoinStep::UserNamespace, value),
            5 => Report::Failed(JoinStep::Clone, value),
            _ => return None,
        })
    }
}

/// What the joiner and the command work with, as raw fds: made before
/// the fork, read-only after it.
struct Fds<'a> {
    cgroups: &'a [RawFd],
    namespaces: &'a [(RawFd, libc::c_int)],
    user_ns: Option<RawFd>,
    /// The joiner's end of its pipe.
    report: RawFd,
    /// The command's end of the channel.
    channel: RawFd,
    /// The caller's end, which the command closes.
    parent_end: RawFd,
}

/// Forks the joiner, which clones the command into the container; returns
/// the command's host PID once execve succeeded.
pub(super) fn spawn(target: &Target, plan: &Plan) -> Result<Pid, ExecError> {
    let sys = |what| move |errno| ExecError::Sys { what, errno };
    let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe2(2)"))?;
    let (parent_end, child_end) = channel::pair()?;
    let cgroups: Vec<RawFd> = target.cgroups.iter().map(|(_, f)| f.as_raw_fd()).collect();
    let namespaces: Vec<(RawFd, libc::c_int)> =
        target.namespaces.iter().map(|(i, f)| (f.as_raw_fd(), NAMESPACES[*i].1)).collect();
    let fds = Fds {
        cgroups: &cgroups,
        namespaces: &namespaces,
        user_ns: target.user_ns.as_ref().map(AsRawFd::as_raw_fd),
        report: report_w.as_raw_fd(),
        channel: child_end.raw(),
        parent_end: parent_end.raw(),
    };
    // SAFETY: clone(2) without CLONE_VM and with a NULL stack behaves like
    // fork(2): the child continues on its own copy of this stack. It only
    // runs `joiner`, which makes system calls on the fds and plan prepared
    // above, does not allocate, and ends in _exit(2).
    let ret = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0usize, 0usize, 0usize, 0usize) };
    if ret == 0 {
        joiner(&fds, plan);
    }
    // Caller process, host namespaces.
    let joiner_pid =
        Pid::from_raw(Errno::result(ret).map_err(sys("fork of the process that joins the container"))? as i32);
    drop(report_w);
    drop(child_end);
    let report = read_report(&report_r);
    let joiner_status = loop {
        match waitpid(joiner_pid, None) {
            Err(Errno::EINTR) => continue,
            r => break r,
        }
    };
    let pid = match report {
        Some(Report::Cloned(pid)) => Pid::from_raw(pid),
        Some(Report::Failed(step, errno)) => return Err(target.join_error(step, Errno::from_raw(errno))),
        None => return Err(ExecError::JoinerDied { status: format!("{joiner_status:?}") }),
    };
    loop {
        match parent_end.recv() {
            Ok(None) => return Ok(pid),
            // An exec'd process runs no lifecycle hooks.
            Ok(Some(ChildMsg::StepDone { .. } | ChildMsg::HookFailed { .. })) => continue,
            Ok(Some(ChildMsg::Failed { step, errno })) => {
                let _ = waitpid(pid, None);
                return Err(ExecError::Step { step, syscall: step.syscall(), hint: "", errno: Errno::from_raw(errno) });
            }
            Err(e) => {
                let _ = waitpid(pid, None);
                return Err(e.into());
            }
        }
    }
}

/// Reads the joiner's one record; `None` if it ended without one.
fn read_report(fd: &OwnedFd) -> Option<Report> {
    let mut b = [0u8; 12];
    loop {
        match nix::unistd::read(fd.as_raw_fd(), &mut b) {
            Ok(12) => return Report::decode(&b),
            Err(Errno::EINTR) => continue,
            _ => return None,
        }
    }
}

impl Target {
    /// The error of a joiner step.
    fn join_error(&self, step: JoinStep, errno: Errno) -> ExecError {
        match step {
            JoinStep::Cgroup(i) => ExecError::Cgroup {
                path: self.cgroups.get(i).map(|(p, _)| p.clone()).unwrap_or_default(),
                source: errno.into(),
            },
            JoinStep::Namespace(i) => ExecError::Setns { ns: self.ns_name(i), errno },
            JoinStep::UserNamespace => ExecError::Setns { ns: "user", errno },
            JoinStep::Groups => ExecError::Sys { what: "setgroups(2) before joining the user namespace", errno },
            JoinStep::Clone => ExecError::Sys { what: "clone(2) into the container's PID namespace", errno },
        }
    }

    fn ns_name(&self, i: usize) -> &'static str {
        self.namespaces.get(i).map_or("?", |(n, _)| NAMESPACES[*n].0)
    }
}

/// Writes one record on the joiner's pipe (no allocation).
fn report(fd: RawFd, r: Report) {
    let b = r.encode();
    // SAFETY: b is a readable buffer of b.len() bytes; fd is the pipe's
    // write end, open in this process.
    let _ = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
}

/// Reports a failed step of the joiner and ends it.
fn joiner_failed(fds: &Fds<'_>, step: JoinStep, errno: Errno) -> ! {
    report(fds.report, Report::Failed(step, errno as i32));
    // SAFETY: _exit(2) skips atexit handlers and destructors of the caller's copy.
    unsafe { libc::_exit(125) }
}

/// setns(2) of `fd`, of type `nstype`.
fn setns(fd: RawFd, nstype: libc::c_int) -> Result<(), Errno> {
    // SAFETY: setns(2) takes an fd and an integer; the fd is a
    // /proc/PID/ns file the caller opened, still open in this process.
    Errno::result(unsafe { libc::setns(fd, nstype) }).map(drop)
}

/// The joiner, from fork to _exit. Never returns.
fn joiner(fds: &Fds<'_>, plan: &Plan) -> ! {
    // Joiner process: forked from the caller, so still in the host's
    // namespaces and cgroups, host root with every capability, and alone
    // (no other thread: setns of a user or mount namespace needs that).
    // The caller opened every cgroup file: the kernel checks the opener's
    // credentials, and writing 0 moves the writer itself (v1 `tasks`: this
    // thread, which is the whole process; v2 `cgroup.procs`: the process),
    // before anything of the command runs, so the container's memory and
    // pids limits hold for it from its first fork.
    // Not dumpable (nor the command it clones, until its execve): once in
    // the container's namespaces, its /proc/PID/exe, the caller's binary,
    // is out of reach of the container's processes (CVE-2019-5736 class).
    // SAFETY: prctl(2) with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    for (i, fd) in fds.cgroups.iter().enumerate() {
        if let Err(e) = RealSys.write_fd(*fd, b"0") {
            joiner_failed(fds, JoinStep::Cgroup(i), e);
        }
    }
    // In the container's cgroups; joining its namespaces, user last (see
    // NAMESPACES). setns(pid) places only the children to come.
    for (i, (fd, nstype)) in fds.namespaces.iter().enumerate() {
        if let Err(e) = setns(*fd, *nstype) {
            joiner_failed(fds, JoinStep::Namespace(i), e);
        }
    }
    if let Some(user_ns) = fds.user_ns {
        // Still host root in the host's user namespace: drop the
        // supplementary groups now, as the container's first process has
        // none, while setgroups(2) is allowed (the container's user
        // namespace denies it).
        if let Err(e) = RealSys.clear_groups() {
            joiner_failed(fds, JoinStep::Groups, e);
        }
        if let Err(e) = setns(user_ns, libc::CLONE_NEWUSER) {
            joiner_failed(fds, JoinStep::UserNamespace, e);
        }
    }
    // In every namespace of the container's, its user namespace's
    // capabilities and none on the host; host uid 0, unmapped there.
    let flags = (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_long;
    // SAFETY: clone(2) without CLONE_VM and with a NULL stack behaves like
    // fork(2). CLONE_PARENT makes the new process the caller's child (it is
    // refused only to a namespace's init, which the joiner is not). The
    // child only runs `command`, on the plan prepared before the fork.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match ret {
        0 => command(fds, plan),
        r if r < 0 => joiner_failed(fds, JoinStep::Clone, Errno::last()),
        // The PID in the joiner's own (the host's) PID namespace.
        pid => report(fds.report, Report::Cloned(pid as i32)),
    }
    // SAFETY: as in joiner_failed.
    unsafe { libc::_exit(0) }
}

/// No narration, no stamps: the caller learns only of a failure.
struct Quiet;

impl StepHooks for Quiet {
    fn before(&mut self, _: Step, _: usize, _: usize) {}
    fn after(&mut self, _: Step) {}
}

/// The command, from clone to execve. Never returns.
fn command(fds: &Fds<'_>, plan: &Plan) -> ! {
    // Command process: PID n of the container's PID namespace, the
    // caller's child; in the container's cgroups, namespaces and root,
    // with every capability of its user namespace but still host uid 0,
    // which that namespace does not map (the plan's first step).
    // SAFETY: close(2) of fds this process never uses; their OwnedFd
    // copies in this address space are never dropped (we exec or _exit).
    unsafe {
        libc::close(fds.parent_end);
        libc::close(fds.report);
    }
    // SAFETY: an empty, initialised sigset; sigprocmask and signal are
    // async-signal-safe. The command starts as a container's process does,
    // whatever the caller blocked or ignored: nothing blocked, every
    // disposition the default (SIGKILL and SIGSTOP refuse, harmlessly).
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for sig in 1..32 {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    let (step, errno) = run_plan(&RealSys, plan, Received::default(), &mut Quiet);
    child_send(fds.channel, ChildMsg::Failed { step, errno: errno as i32 });
    let code = match (step, errno) {
        (Step::Exec, Errno::ENOENT | Errno::ENOTDIR) => 127,
        (Step::Exec, _) => 126,
        _ => 125,
    };
    // SAFETY: as in joiner_failed.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_joiner_report_round_trips() {
        for r in [
            Report::Cloned(4242),
            Report::Failed(JoinStep::Cgroup(2), libc::EACCES),
            Report::Failed(JoinStep::Namespace(5), libc::EPERM),
            Report::Failed(JoinStep::Groups, libc::EPERM),
            Report::Failed(JoinStep::UserNamespace, libc::EINVAL),
            Report::Failed(JoinStep::Clone, libc::EAGAIN),
        ] {
            assert_eq!(Report::decode(&r.encode()), Some(r));
        }
    }
}
