//! Starting the child: its standard streams, the plan it will run, the
//! clone(2) into its namespaces, and the handles the launcher keeps on it
//! (a guard that kills and reaps it, a pidfd to poll).
//!
//! The launcher and the child then talk over the channel (`channel.rs`):
//! the child waits for `Go`, which `run` sends once the maps are written
//! and the child is in its cgroup; the child reports each step back, and
//! the launcher reads end-of-file when execve succeeded.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{pipe2, Pid};

use super::error::{sys_err, LaunchError};
use super::narrate::narrate_parent;
use crate::runtime::cgroup::Cgroup;
use crate::runtime::channel::{ChildEnd, ParentEnd};
use crate::runtime::child::{child_main, ChildArgs};
use crate::runtime::config::{ContainerConfig, Stdio};
use crate::runtime::nsjoin::{self, NsJoinError, NsKind, Opened};
use crate::runtime::plan::{last_cap, Plan, PlanHost, StdioFds, Step};
use crate::runtime::seccomp;

/// The command's standard streams as the launcher opened them: a pipe
/// (read end, write end) for each captured stream, /dev/null for stdin
/// when capturing, and the launcher's terminal, if the command shares it.
#[derive(Debug)]
pub(super) struct Pipes {
    out: Option<(OwnedFd, OwnedFd)>,
    err: Option<(OwnedFd, OwnedFd)>,
    devnull: Option<OwnedFd>,
    tty: Option<PathBuf>,
    console: Option<OwnedFd>,
}

impl Pipes {
    /// Opens what `cfg.stdio` asks for.
    pub(super) fn open(cfg: &ContainerConfig) -> Result<Pipes, LaunchError> {
        let mut pipes = Pipes { out: None, err: None, devnull: None, tty: None, console: None };
        if let Some(path) = &cfg.console_socket {
            // The command's terminal is its own: the socket, for the child to
            // send the master end to.
            let stream = std::os::unix::net::UnixStream::connect(path)
                .map_err(|source| LaunchError::ConsoleSocket { path: path.clone(), source })?;
            pipes.console = Some(OwnedFd::from(stream));
            return Ok(pipes);
        }
        if cfg.stdio != Stdio::Inherit || cfg.log.is_some() {
            pipes.out = Some(pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe2", ""))?);
            pipes.err = Some(pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe2", ""))?);
            if cfg.stdio == Stdio::Capture {
                let fd = open("/dev/null", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(sys_err("open /dev/null", ""))?;
                // SAFETY: fd was just returned by open(2) and is owned by nobody else.
                pipes.devnull = Some(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        // With the launcher's stdin on a terminal, the command shares it: bind
        // that terminal's node inside (interactive lessons: a busybox shell).
        if cfg.stdio != Stdio::Capture && io::IsTerminal::is_terminal(&io::stdin()) {
            pipes.tty = fs::read_link("/proc/self/fd/0").ok();
        }
        Ok(pipes)
    }

    /// The child's side, for the plan to dup2.
    fn child_fds(&self) -> StdioFds {
        StdioFds {
            stdin: self.devnull.as_ref().map(|f| f.as_raw_fd()),
            stdout: self.out.as_ref().map(|p| p.1.as_raw_fd()),
            stderr: self.err.as_ref().map(|p| p.1.as_raw_fd()),
            tty: self.tty.clone(),
            console: self.console.as_ref().map(|f| f.as_raw_fd()),
        }
    }

    /// After clone: the child's ends closed, the read ends of stdout and
    /// stderr kept.
    pub(super) fn into_readers(self) -> (Option<OwnedFd>, Option<OwnedFd>) {
        (self.out.map(|p| p.0), self.err.map(|p| p.0))
    }
}

/// The child's plan: what the host allows (capabilities, a devices
/// allowlist, seccomp) and the fds it will use (stdio, cgroup v1 `tasks`
/// files to join its cgroup with).
pub(super) fn plan(
    cfg: &ContainerConfig,
    rootfs: &Path,
    pipes: &Pipes,
    join_fds: &[OwnedFd],
    cgroup: Option<&Cgroup>,
    await_start: Option<RawFd>,
) -> Result<Plan, LaunchError> {
    let join_raw: Vec<RawFd> = join_fds.iter().map(|f| f.as_raw_fd()).collect();
    let host = PlanHost {
        last_cap: last_cap(),
        devices_allowlist: cgroup.is_some_and(Cgroup::devices_allowlist),
        seccomp: seccomp::for_config(cfg)?,
        await_start,
    };
    Ok(Plan::build(cfg, rootfs, pipes.child_fds(), &join_raw, host)?)
}

/// The child process until it is reaped: killed and reaped on drop.
#[derive(Debug)]
pub(super) struct ChildGuard {
    pub(super) pid: Pid,
    pub(super) reaped: bool,
}

impl ChildGuard {
    /// Lets the child go on without this launcher (an OCI `create`): it
    /// is neither killed nor reaped here. Its PID.
    pub(super) fn release(mut self) -> i32 {
        self.reaped = true;
        self.pid.as_raw()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// clone(2) of the child into its namespaces; the child runs `plan`
/// (`child.rs`) once it reads `Go` on `child_end`, and never returns here.
/// With namespaces to join (`joined`, opened and checked), a forked
/// process joins them first and clones the child (see [`clone_joined`]).
pub(super) fn clone_child(
    cfg: &ContainerConfig,
    plan: &Plan,
    parent_end: &ParentEnd,
    child_end: &ChildEnd,
    detached: bool,
    joined: &Opened,
) -> Result<ChildGuard, LaunchError> {
    let made = nsjoin::to_make(cfg.namespaces, &cfg.join_namespaces);
    for (_, _, i) in &joined.fds {
        let j = &cfg.join_namespaces[*i];
        narrate_parent(
            cfg,
            Step::Clone,
            &format!("join {} namespace {}: setns(fd, {})", j.kind.name(), j.path.display(), setns_flag_name(j.kind)),
        );
    }
    narrate_parent(cfg, Step::Clone, &format!("clone({} | SIGCHLD)", made.describe_clone_flags()));
    let flags = made.clone_flags().bits() as libc::c_long | libc::SIGCHLD as libc::c_long;
    let args = ChildArgs {
        channel: child_end.raw(),
        parent_end: parent_end.raw(),
        launcher: std::process::id() as i32,
        explain: cfg.explain,
        step: cfg.step,
        detached,
    };
    if !joined.fds.is_empty() {
        return clone_joined(cfg, plan, args, flags, joined);
    }
    // SAFETY: clone(2) without CLONE_VM and with a NULL stack behaves like
    // fork(2): the child gets a copy of this address space and continues on
    // its copy of this stack. The child only runs `child_main`, which works
    // on the plan and fds prepared before this call, does not allocate, and
    // ends in execve or _exit.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if ret == 0 {
        // Child process: see child.rs for which namespaces and privileges.
        child_main(plan, args);
    }
    // Launcher process, host namespaces.
    let ret = Errno::result(ret).map_err(clone_error())?;
    Ok(ChildGuard { pid: Pid::from_raw(ret as i32), reaped: false })
}

fn clone_error() -> impl FnOnce(Errno) -> LaunchError {
    sys_err(
        "clone",
        ": the kernel refused a namespace; without root, user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone, user.max_user_namespaces)",
    )
}

fn setns_flag_name(kind: NsKind) -> &'static str {
    match kind {
        NsKind::User => "CLONE_NEWUSER",
        NsKind::Pid => "CLONE_NEWPID",
        NsKind::Net => "CLONE_NEWNET",
        NsKind::Uts => "CLONE_NEWUTS",
        NsKind::Ipc => "CLONE_NEWIPC",
        NsKind::Cgroup => "CLONE_NEWCGROUP",
    }
}

/// The joiner's one record on its pipe: `[0, 0, pid]` once the child is
/// cloned, `[1, index, errno]` when joining namespace `index` failed,
/// `[2, 0, errno]` when the clone failed.
type Record = [i32; 3];

/// The child made through a joiner: a process forked from the launcher
/// that setns(2)es into each namespace of `joined` (user first), then
/// clones the child with `flags | CLONE_PARENT`, so that the child is the
/// launcher's own (its death signal, pidfd and wait work as without
/// joins), reports its PID and exits.
fn clone_joined(
    cfg: &ContainerConfig,
    plan: &Plan,
    args: ChildArgs,
    flags: libc::c_long,
    joined: &Opened,
) -> Result<ChildGuard, LaunchError> {
    let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe2", ""))?;
    let fds = joined.raw();
    let report_fd = report_w.as_raw_fd();
    // SAFETY: as in clone_child: a fork(2). The joiner only runs `joiner`,
    // on the fds, plan and flags prepared before this call; it does not
    // allocate and ends in _exit.
    let ret = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0usize, 0usize, 0usize, 0usize) };
    if ret == 0 {
        joiner(plan, args, flags, &fds, report_fd);
    }
    // Launcher process, host namespaces.
    let joiner_pid = Pid::from_raw(Errno::result(ret).map_err(sys_err("fork of the namespace joiner", ""))? as i32);
    drop(report_w);
    let mut b = [0u8; 12];
    let got = loop {
        match nix::unistd::read(report_r.as_raw_fd(), &mut b) {
            Err(Errno::EINTR) => continue,
            r => break r,
        }
    };
    // The joiner ends right after the clone (or a failure): reaped here.
    while let Err(Errno::EINTR) = waitpid(joiner_pid, None) {}
    if got != Ok(12) {
        return Err(LaunchError::ChildVanished);
    }
    let n = |i: usize| i32::from_ne_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
    let record: Record = [n(0), n(1), n(2)];
    match record {
        [0, _, pid] => Ok(ChildGuard { pid: Pid::from_raw(pid), reaped: false }),
        [1, index, errno] => {
            let j = usize::try_from(index).ok().and_then(|i| cfg.join_namespaces.get(i));
            let after_user =
                j.is_some_and(|j| j.kind != NsKind::User) && nsjoin::joins(&cfg.join_namespaces, NsKind::User);
            Err(NsJoinError::setns(j, Errno::from_raw(errno), after_user).into())
        }
        [_, _, errno] => Err(clone_error()(Errno::from_raw(errno))),
    }
}

/// Writes the joiner's record (no allocation).
fn write_record(fd: RawFd, r: Record) {
    let mut b = [0u8; 12];
    for (i, n) in r.into_iter().enumerate() {
        b[i * 4..i * 4 + 4].copy_from_slice(&n.to_ne_bytes());
    }
    // SAFETY: b is a readable buffer of b.len() bytes; fd is the pipe's
    // write end, open in this process.
    let _ = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
}

/// The joiner, from fork to _exit. Never returns.
fn joiner(plan: &Plan, args: ChildArgs, flags: libc::c_long, fds: &[(RawFd, libc::c_int, usize)], report: RawFd) -> ! {
    // Joiner process: forked from the launcher, in the host's namespaces,
    // host root (or the caller), alone in its address space (setns of a
    // user namespace needs a single thread). Not dumpable: once in another
    // namespace, its /proc/PID/exe, the launcher's binary, stays out of
    // reach of the processes there.
    // SAFETY: prctl(2) with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    for (fd, nstype, index) in fds {
        // SAFETY: setns(2) of an fd the launcher opened (and checked to be
        // a namespace of this type), still open in this process.
        if unsafe { libc::setns(*fd, *nstype) } != 0 {
            write_record(report, [1, *index as i32, Errno::last() as i32]);
            // SAFETY: _exit(2) skips atexit handlers and destructors of the launcher's copy.
            unsafe { libc::_exit(125) };
        }
    }
    // In every namespace joined; the new ones come with the clone, whose
    // child is the launcher's (CLONE_PARENT; refused only to a namespace's
    // init, which the joiner is not).
    // SAFETY: as in clone_child: a fork(2) whose child runs `child_main`.
    let ret = unsafe {
        libc::syscall(libc::SYS_clone, flags | libc::CLONE_PARENT as libc::c_long, 0usize, 0usize, 0usize, 0usize)
    };
    match ret {
        // Child process: see child.rs; its parent is the launcher.
        0 => child_main(plan, args),
        r if r < 0 => write_record(report, [2, 0, Errno::last() as i32]),
        // The PID in the joiner's PID namespace, the launcher's.
        pid => write_record(report, [0, 0, pid as i32]),
    }
    // SAFETY: as above.
    unsafe { libc::_exit(0) }
}

/// A pidfd of the child, readable when it exits.
pub(super) fn open_pidfd(pid: Pid) -> Result<OwnedFd, LaunchError> {
    // SAFETY: pidfd_open(2) with integer arguments; the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let pidfd = Errno::result(pidfd).map_err(sys_err("pidfd_open", ": Linux 5.3 or later is needed"))?;
    // SAFETY: pidfd_open returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) })
}
