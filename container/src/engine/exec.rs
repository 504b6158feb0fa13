//! `exec`: one more process in a running container, as `docker exec`
//! starts one.
//!
//! A running container is visible from the host through its first process
//! (PID 1 of its PID namespace, host PID in the container's `pid` file):
//! `/proc/PID/ns/*` are its namespaces, `/proc/PID/cgroup` its cgroups,
//! `/proc/PID/status` its capabilities and seccomp mode. A new process
//! joins all of them, then goes through the same last steps as the first
//! process ([`Plan::build_exec`]), so that it has the same capabilities,
//! no_new_privs, seccomp filter and rlimits:
//!
//! ```text
//!  caller (host, root)               joiner (forked)                   command (cloned by the joiner)
//!  -------------------               ---------------                   ------------------------------
//!  open /proc/PID/ns/*, the
//!    container's cgroup files,
//!    /dev/null; the plan
//!  fork ---------------------------> write 0 to each cgroup file
//!                                    setns ipc, uts, net, cgroup,
//!                                      pid, mnt; setgroups(0);
//!                                      setns user
//!                                    clone(CLONE_PARENT) ------------> PID n of the container's PID
//!    <-------- the command's host PID  _exit                             namespace, the caller's child:
//!  reap the joiner                                                     setresuid(0) inside, rlimits,
//!                                                                      capabilities, user, no_new_privs,
//!                                                                      seccomp, chdir, dup2, execve
//!    <------------ Failed(step, errno), or end-of-file once execve succeeded (close-on-exec)
//!  waitpid(command): its exit status, 128 + the signal if it was killed
//! ```
//!
//! The joiner exists because setns(2) of a user or mount namespace needs
//! a process with a single thread and because setns(2) of a PID namespace
//! only places the caller's *children* in it. With `CLONE_PARENT` (as
//! runc's `nsexec` does) the command is the caller's child, not the
//! joiner's, so the caller waits for it directly and the joiner does not
//! linger in the container's cgroup.
//!
//! Both forked processes are copies of a possibly multi-threaded caller:
//! they do not allocate. The plan, the fds and every string are made
//! before the fork, as for the launcher's child (`runtime/child.rs`).
//!
//! Events: `exec_create: CMD ARGS` before anything runs, `exec_start: CMD
//! ARGS` once the command runs, `exec_die` (with `exitCode`) when it ended
//! or could not start, each with `name`, `image` and `execID`.
//!
//! | file             | what it holds |
//! | ---------------- | ------------- |
//! | `exec.rs`        | [`start`], [`Exec::wait`], [`ExecSpec`], [`ExecError`] and the exit statuses, the events |
//! | `exec/target.rs` | where the container is: its namespaces, cgroups, capabilities, seccomp mode, id maps |
//! | `exec/join.rs`   | the joiner and the command, from fork to execve |

mod join;
mod target;

use std::fs::File;
use std::io::{self, IsTerminal};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::container::{Container, Status};
use super::events::{self, Event};
use super::EngineError;
use crate::image::digest::sha256_hex;
use crate::runtime::config::{ConfigError, ContainerConfig};
use crate::runtime::launch::ExitStatus;
use crate::runtime::plan::{command_paths, environment, Plan, StdioFds, Step};
use crate::runtime::seccomp::SeccompError;
use target::Target;

/// What to run in the container, and how: `exec`'s options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecSpec {
    /// The command and its arguments; a name without `/` is looked up in
    /// the container's `PATH`, inside the container.
    pub argv: Vec<String>,
    /// Variables set on top of the container's environment (`-e`).
    pub env: Vec<(String, String)>,
    /// The working directory (`-w`); the container's if `None`.
    pub workdir: Option<String>,
    /// `UID[:GID]` (`-u`); the container's user if `None`, else root.
    pub user: Option<String>,
    /// The command reads the caller's standard input (`-i`); without it,
    /// /dev/null.
    pub interactive: bool,
    /// The caller's standard input must be a terminal, which the command
    /// then shares (`-t`).
    pub tty: bool,
}

/// What can stop an `exec`, beyond the container's status.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// `-t` without a terminal (Docker's words).
    #[error("the input device is not a TTY")]
    NotATty,
    /// A namespace file of the container's process cannot be opened.
    #[error("cannot open {path}: joining a container's namespaces needs root (run virtlab as root)")]
    Namespace {
        /// `/proc/PID/ns/NAME`.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file of /proc or of a cgroup that tells where the container is.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A cgroup of the container's in a hierarchy that is not mounted here.
    #[error("the container's cgroup {line:?} (/proc/PID/cgroup) is in a hierarchy this host has not mounted")]
    CgroupNotMounted {
        /// The line of /proc/PID/cgroup.
        line: String,
    },
    /// A cgroup file could not be opened, or the joiner could not join.
    #[error("cannot join the container's cgroup {path}")]
    Cgroup {
        /// The `tasks` or `cgroup.procs` file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// setns(2) into one of the container's namespaces failed.
    #[error("setns(2) into the container's {ns} namespace failed")]
    Setns {
        /// The namespace.
        ns: &'static str,
        /// The errno.
        #[source]
        errno: Errno,
    },
    /// Another system call of the caller or the joiner failed.
    #[error("{what} failed")]
    Sys {
        /// The call, and what for.
        what: &'static str,
        /// The errno.
        #[source]
        errno: Errno,
    },
    /// The joiner ended without saying how far it got.
    #[error("the process joining the container ended without a word ({status})")]
    JoinerDied {
        /// How it ended.
        status: String,
    },
    /// `-u` names an id the container's user namespace does not map.
    #[error(
        "{what} {id} is not mapped in the container's user namespace (/proc/PID/{what}_map): give an id below {count}"
    )]
    IdNotMapped {
        /// `uid` or `gid`.
        what: &'static str,
        /// The id.
        id: u32,
        /// How many ids the namespace maps from 0.
        count: u64,
    },
    /// The container's record has defence switches that no longer read
    /// (its seccomp profile, a capability name).
    #[error("the container's defences (--security-opt, --cap-add, --cap-drop): {0}")]
    Defences(String),
    /// The container's first process has a bounding set this virtlab would
    /// not give it, so the exec could not match it.
    #[error("the container's capability bounding set {found:#x} is not one virtlab gives ({expected:#x}): was it started by another version? Restart it")]
    Capabilities {
        /// CapBnd of the container's first process.
        found: u64,
        /// The set this virtlab would give.
        expected: u64,
    },
    /// The new process asks for capabilities the container's first
    /// process does not have (an OCI `exec`'s process.capabilities).
    #[error("the process asks for capabilities {asked:#x} beyond the container's bounding set {bounding:#x}: ask for no more than the container has")]
    CapabilitiesBeyond {
        /// The mask asked for.
        asked: u64,
        /// CapBnd of the container's first process.
        bounding: u64,
    },
    /// The command is not in the container (the shell's 127).
    #[error("exec: {cmd:?}: executable file not found in $PATH (looked for {searched})")]
    NotFound {
        /// The command.
        cmd: String,
        /// The paths tried, inside the container.
        searched: String,
    },
    /// The command is there but cannot be executed (the shell's 126).
    #[error("exec: {cmd:?} cannot be executed in the container")]
    NotExecutable {
        /// The command.
        cmd: String,
        /// The errno of execve(2).
        #[source]
        errno: Errno,
    },
    /// A step before execve failed inside the container.
    #[error("step {step} failed inside the container ({syscall}){hint}")]
    Step {
        /// The step.
        step: Step,
        /// Its system call(s).
        syscall: &'static str,
        /// What to do about it.
        hint: &'static str,
        /// The errno.
        #[source]
        errno: Errno,
    },
    /// A bad option (`-u`, a NUL byte).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The seccomp filter does not compile.
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    /// The channel to the command failed.
    #[error(transparent)]
    Channel(#[from] crate::runtime::channel::ChannelError),
}

impl ExecError {
    /// The exit status a CLI should use, as Docker's: 127 command not
    /// found, 126 not executable, 1 for `-t` without a terminal, 125 for
    /// anything else (virtlab itself failed).
    pub fn exit_code(&self) -> u8 {
        match self {
            ExecError::NotFound { .. } => 127,
            ExecError::NotExecutable { .. } => 126,
            ExecError::NotATty => 1,
            _ => 125,
        }
    }
}

/// The exit status a CLI should give an `exec` that failed with `e`: 1
/// when the container is unknown or not running (as `docker exec`), else
/// [`ExecError::exit_code`], 125 for the rest.
pub fn exit_code(e: &EngineError) -> u8 {
    match e {
        EngineError::NoSuchContainer(_) | EngineError::NotRunning(_) => 1,
        EngineError::Exec(x) => x.exit_code(),
        _ => 125,
    }
}

/// A command started in a container. [`Exec::wait`] waits for it; dropped
/// without, the command runs on (and is reaped by whoever adopts it when
/// the caller exits).
#[derive(Debug)]
pub struct Exec {
    root: PathBuf,
    container: Container,
    id: String,
    pid: Pid,
}

impl Exec {
    /// The exec's ID (64 hex digits, as Docker's `execID`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The command's PID on the host (inside, it has a small one).
    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Waits for the command to end, records `exec_die`, and returns its
    /// exit status (128 + the signal if it was killed).
    pub fn wait(self) -> Result<u8, EngineError> {
        let status = loop {
            match waitpid(self.pid, None) {
                Ok(WaitStatus::Exited(_, code)) => break ExitStatus::Exited(code),
                Ok(WaitStatus::Signaled(_, sig, _)) => break ExitStatus::Signaled(sig as i32),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(errno) => return Err(ExecError::Sys { what: "waitpid(2) for the command", errno }.into()),
            }
        };
        record_die(&self.root, &self.container, &self.id, status.code())?;
        Ok(status.code())
    }
}

/// Starts `spec` in the running container `name` (a name, an ID or an ID
/// prefix) of the store at `root`, and returns once the command runs
/// (execve succeeded) or could not start.
pub fn start(root: &Path, name: &str, spec: &ExecSpec) -> Result<Exec, EngineError> {
    if spec.tty && !io::stdin().is_terminal() {
        return Err(ExecError::NotATty.into());
    }
    let c = Container::find(root, name)?;
    let Status::Up { pid, .. } = c.status() else { return Err(EngineError::NotRunning(name.to_string())) };
    let target = Target::open(pid).map_err(|e| gone_or(e, pid, name))?;
    // It may have ended while we looked: the fds would then be another's.
    if !matches!(c.status(), Status::Up { pid: now, .. } if now == pid) {
        return Err(EngineError::NotRunning(name.to_string()));
    }
    let cfg = target.config(&c, spec)?;
    let host = target.plan_host(&cfg)?;
    let stdin = if spec.interactive { None } else { Some(open_devnull()?) };
    let stdio = StdioFds { stdin: stdin.as_ref().map(AsRawFd::as_raw_fd), ..StdioFds::default() };
    let plan = Plan::build_exec(&cfg, stdio, host).map_err(ExecError::from)?;

    let id = sha256_hex(format!("{:?}{}{}", SystemTime::now(), std::process::id(), spec.argv.join(" ")).as_bytes());
    let text = spec.argv.join(" ");
    record(root, &c, &format!("exec_create: {text}"), &id, None)?;
    match join::spawn(&target, &plan) {
        Ok(pid) => {
            record(root, &c, &format!("exec_start: {text}"), &id, None)?;
            Ok(Exec { root: root.to_path_buf(), container: c, id, pid })
        }
        Err(e) => {
            let e = e.explained(&cfg);
            record_die(root, &c, &id, e.exit_code())?;
            Err(e.into())
        }
    }
}

/// Starts `cfg` as one more process of the running container whose first
/// process is `pid` on the host, as an OCI runtime's `exec` does: `cfg`
/// is the container's own configuration (its bundle's, for the seccomp
/// filter and the defences) with the new process's command, environment,
/// working directory, user, capabilities and rlimits. Its standard streams
/// are the caller's, or with `console` (a connected console socket) a
/// terminal of the container's own. Returns its host PID once execve
/// succeeded; it is the caller's child.
pub fn start_in(pid: i32, cfg: &ContainerConfig, console: Option<std::os::fd::RawFd>) -> Result<Pid, ExecError> {
    start_in_granting(pid, cfg, console, 0)
}

/// [`start_in`], with the capabilities of `granted` (a mask) allowed
/// beyond the container's bounding set: the ones its caller, host root,
/// adds on purpose (an OCI runtime's `exec --cap`, as runc allows it).
/// Any other capability the first process lacks is still refused.
pub fn start_in_granting(
    pid: i32,
    cfg: &ContainerConfig,
    console: Option<std::os::fd::RawFd>,
    granted: u64,
) -> Result<Pid, ExecError> {
    let target = Target::open(pid)?;
    let mut cfg = cfg.clone();
    cfg.namespaces = crate::runtime::config::Namespaces {
        user: target.user_ns.is_some(),
        ..crate::runtime::config::Namespaces::NONE
    };
    let host = crate::runtime::plan::PlanHost {
        await_start: None,
        last_cap: crate::runtime::plan::last_cap(),
        devices_allowlist: target.bounding & (1 << crate::runtime::plan::cap::MKNOD) != 0,
        seccomp: crate::runtime::seccomp::for_config(&cfg)?,
    };
    // No capability the container's first process lacks.
    let kept = cfg.capabilities.unwrap_or_else(crate::runtime::plan::default_cap_mask);
    if kept & !(target.bounding | granted) != 0 {
        return Err(ExecError::CapabilitiesBeyond { asked: kept, bounding: target.bounding });
    }
    let stdio = StdioFds { console, ..StdioFds::default() };
    let plan = Plan::build_exec(&cfg, stdio, host)?;
    join::spawn(&target, &plan).map_err(|e| e.explained(&cfg))
}

/// A failure to open `/proc/PID/...` because the process is gone means
/// the container stopped meanwhile.
fn gone_or(e: ExecError, pid: i32, name: &str) -> EngineError {
    if Path::new(&format!("/proc/{pid}")).exists() {
        e.into()
    } else {
        EngineError::NotRunning(name.to_string())
    }
}

fn open_devnull() -> Result<OwnedFd, ExecError> {
    File::open("/dev/null").map(OwnedFd::from).map_err(|source| ExecError::Read { path: "/dev/null".into(), source })
}

fn record(root: &Path, c: &Container, action: &str, id: &str, code: Option<u8>) -> Result<(), EngineError> {
    let code = code.map(|c| c.to_string());
    let mut attrs = vec![("name", c.config.name.as_str()), ("image", c.config.spec.image.as_str()), ("execID", id)];
    if let Some(code) = &code {
        attrs.push(("exitCode", code.as_str()));
    }
    events::record(root, &Event::now("container", action, &c.config.id, &attrs))
}

fn record_die(root: &Path, c: &Container, id: &str, code: u8) -> Result<(), EngineError> {
    record(root, c, "exec_die", id, Some(code))
}

impl ExecError {
    /// A failure of the command's exec step, told as the shell would: not
    /// found (127) or not executable (126), naming the paths looked at; a
    /// hint for the working directory.
    fn explained(self, cfg: &ContainerConfig) -> ExecError {
        let cmd = cfg.argv.first().cloned().unwrap_or_default();
        match self {
            ExecError::Step { step: Step::Exec, errno: Errno::ENOENT | Errno::ENOTDIR, .. } => {
                ExecError::NotFound { searched: command_paths(&cmd, &environment(cfg)).join(", "), cmd }
            }
            ExecError::Step { step: Step::Exec, errno, .. } => ExecError::NotExecutable { cmd, errno },
            ExecError::Step { step: Step::Workdir, syscall, errno, .. } => ExecError::Step {
                step: Step::Workdir,
                syscall,
                hint: ": the working directory does not exist in the container, or the user cannot enter it",
                errno,
            },
            e => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_dockers() {
        assert_eq!(exit_code(&EngineError::NoSuchContainer("x".into())), 1);
        assert_eq!(exit_code(&EngineError::NotRunning("x".into())), 1);
        assert_eq!(exit_code(&ExecError::NotATty.into()), 1);
        let cfg = ContainerConfig::new("/", vec!["nosuch".into()]);
        let step = |step, errno| ExecError::Step { step, syscall: "", hint: "", errno };
        let e = step(Step::Exec, Errno::ENOENT).explained(&cfg);
        assert_eq!(e.exit_code(), 127);
        assert!(e.to_string().contains("\"nosuch\"") && e.to_string().contains("/bin/nosuch"), "{e}");
        assert_eq!(step(Step::Exec, Errno::EACCES).explained(&cfg).exit_code(), 126);
        assert_eq!(step(Step::Workdir, Errno::ENOENT).explained(&cfg).exit_code(), 125);
        assert_eq!(exit_code(&ExecError::Setns { ns: "mnt", errno: Errno::EPERM }.into()), 125);
    }
}
