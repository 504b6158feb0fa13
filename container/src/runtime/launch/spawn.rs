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
pub(super) fn clone_child(
    cfg: &ContainerConfig,
    plan: &Plan,
    parent_end: &ParentEnd,
    child_end: &ChildEnd,
    detached: bool,
) -> Result<ChildGuard, LaunchError> {
    narrate_parent(cfg, Step::Clone, &format!("clone({} | SIGCHLD)", cfg.namespaces.describe_clone_flags()));
    let flags = cfg.namespaces.clone_flags().bits() as libc::c_long | libc::SIGCHLD as libc::c_long;
    let launcher_pid = std::process::id() as i32;
    // SAFETY: clone(2) without CLONE_VM and with a NULL stack behaves like
    // fork(2): the child gets a copy of this address space and continues on
    // its copy of this stack. The child only runs `child_main`, which works
    // on the plan and fds prepared before this call, does not allocate, and
    // ends in execve or _exit.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if ret == 0 {
        // Child process: see child.rs for which namespaces and privileges.
        child_main(
            plan,
            ChildArgs {
                channel: child_end.raw(),
                parent_end: parent_end.raw(),
                launcher: launcher_pid,
                explain: cfg.explain,
                step: cfg.step,
                detached,
            },
        );
    }
    // Launcher process, host namespaces.
    let ret = Errno::result(ret).map_err(sys_err(
        "clone",
        ": the kernel refused a namespace; without root, user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone, user.max_user_namespaces)",
    ))?;
    Ok(ChildGuard { pid: Pid::from_raw(ret as i32), reaped: false })
}

/// A pidfd of the child, readable when it exits.
pub(super) fn open_pidfd(pid: Pid) -> Result<OwnedFd, LaunchError> {
    // SAFETY: pidfd_open(2) with integer arguments; the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let pidfd = Errno::result(pidfd).map_err(sys_err("pidfd_open", ": Linux 5.3 or later is needed"))?;
    // SAFETY: pidfd_open returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) })
}
