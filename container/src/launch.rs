//! The launcher: validates a configuration, creates the cgroup, clones the
//! child into its namespaces, writes its maps, lets it run its set-up,
//! watches it (output, signals, timeout) and cleans up.
//!
//! ```text
//!  launcher (host namespaces, root)                    child (new namespaces)
//!  ---------------------------------                   -----------------------
//!  check rootfs and command, create cgroup
//!  clone(CLONE_NEW*) ------------------------------->  wait for Go
//!  write setgroups/uid_map/gid_map
//!  v2: write PID to cgroup.procs
//!  Go ---------------------------------------------->  v1: write 0 to tasks,
//!                      <---- StepDone(step, t) ----   unshare(CGROUP), mounts,
//!                      <---- StepDone(step, t) ----   /dev, /proc, pivot_root,
//!                      <---- StepDone(step, t) ----   hostname, lo, caps, ...
//!                      <---- Failed(step, errno) --   (on error, then exit)
//!                      <---- StepDone(exec, t) ----   execve(command)
//!  channel EOF = execve succeeded  <- - - - - - - -   (close-on-exec)
//!  poll: pidfd, stdout/stderr pipes, signalfd,        the command runs as PID 1
//!        timeout
//!  read cgroup peak/CPU/OOM, remove cgroup
//! ```

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, Pid};

use crate::cgroup::{self, Cgroup, CgroupError, CgroupMode, CgroupStats};
use crate::channel::{self, ChannelError, ChildMsg, ParentMsg};
use crate::child::{child_main, monotonic_ns, ChildArgs};
use crate::config::{ConfigError, ContainerConfig, Stdio};
use crate::plan::{command_candidates, environment, last_cap, Plan, StdioFds, Step, DEFAULT_PATH};

/// How long output may keep arriving after the command exited (from
/// processes it left behind when there is no PID namespace).
const DRAIN: Duration = Duration::from_secs(2);

/// Errors of a container run, each naming the problem and the fix.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The configuration is not valid.
    #[error("invalid container configuration")]
    Config(#[from] ConfigError),
    /// The rootfs does not exist.
    #[error("the rootfs {path} does not exist: build one with `virtlab container rootfs {path}` or leave out --rootfs to use the built-in one")]
    RootfsMissing {
        /// The path given.
        path: PathBuf,
    },
    /// The rootfs is not a directory.
    #[error("the rootfs {path} is not a directory: give a directory that holds the container's files")]
    RootfsNotDir {
        /// The path given.
        path: PathBuf,
    },
    /// The command is not in the rootfs.
    #[error("command {cmd:?} is not in the rootfs {rootfs} (looked for {searched}): copy it into the rootfs, or build one with busybox-static installed (`virtlab container rootfs DIR`)")]
    CommandNotFound {
        /// The command.
        cmd: String,
        /// The rootfs.
        rootfs: PathBuf,
        /// Where it was looked for, inside the rootfs.
        searched: String,
    },
    /// The command needs a dynamic loader that the rootfs lacks.
    #[error("{cmd} is dynamically linked and its loader {interp} is not in the rootfs, so execve would fail with ENOENT although the file exists: use a static binary, or copy the loader and the libraries it needs (ldd) into the rootfs")]
    MissingLoader {
        /// The command, inside the rootfs.
        cmd: String,
        /// The ELF interpreter it names.
        interp: String,
    },
    /// Not root and no user namespace.
    #[error("creating namespaces needs root: run virtlab as root, or add `user` to --ns so that the other namespaces belong to a user namespace of your own")]
    NeedRoot,
    /// Limits asked for without root.
    #[error("memory, CPU and pids limits need a cgroup, and creating one needs root: run virtlab as root, or drop --memory/--cpus/--pids")]
    LimitsNeedRoot,
    /// The cgroup could not be set up.
    #[error("cgroup set-up failed")]
    Cgroup(#[from] CgroupError),
    /// A launcher-side system call failed.
    #[error("{what} failed{hint}")]
    Sys {
        /// Which call.
        what: &'static str,
        /// What to do about it.
        hint: &'static str,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// Writing the uid/gid maps failed.
    #[error("cannot write {path}: the kernel refused the user namespace mapping")]
    Maps {
        /// The /proc file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The channel to the child failed.
    #[error("talking to the container's first process failed")]
    Channel(#[from] ChannelError),
    /// A set-up step failed inside the container.
    #[error("step {step} failed inside the container ({syscall}){hint}")]
    Child {
        /// The step.
        step: Step,
        /// Its system call(s).
        syscall: &'static str,
        /// What to do about it.
        hint: String,
        /// The errno the child reported.
        #[source]
        errno: Errno,
    },
}

impl LaunchError {
    /// The exit status a CLI should use: 127 for a command that cannot be
    /// found, 126 for one that cannot be executed, 125 for anything else
    /// (docker's and podman's convention).
    pub fn exit_code(&self) -> u8 {
        match self {
            LaunchError::CommandNotFound { .. } | LaunchError::MissingLoader { .. } => 127,
            LaunchError::Child { step: Step::Exec, errno: Errno::ENOENT, .. } => 127,
            LaunchError::Child { step: Step::Exec, .. } => 126,
            _ => 125,
        }
    }
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ExitStatus {
    /// exit(code).
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + the signal.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Exited(c) => (c & 0xff) as u8,
            ExitStatus::Signaled(s) => (128 + s).clamp(0, 255) as u8,
        }
    }
}

/// When a step finished, counted from the start of [`run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stamp {
    /// The step.
    pub step: Step,
    /// Time since launch.
    pub at: Duration,
}

/// The cgroup side of an outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CgroupReport {
    /// Host layout.
    pub mode: CgroupMode,
    /// The directories the container had (all removed by now).
    pub paths: Vec<PathBuf>,
    /// What it used.
    pub stats: CgroupStats,
}

/// Everything a run produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// The container's id (`<launcher pid>-<n>`); its cgroup is `virtlab-<id>`.
    pub id: String,
    /// How the command ended.
    pub status: ExitStatus,
    /// Killed because the timeout expired.
    pub timed_out: bool,
    /// The cgroup's OOM killer killed a process of the container.
    pub oom_killed: bool,
    /// A signal the launcher received and forwarded.
    pub forwarded_signal: Option<i32>,
    /// Steps, in the order they finished.
    pub timeline: Vec<Stamp>,
    /// Launch to exit (and output drained).
    pub total: Duration,
    /// The cgroup, when one was made (always as root).
    pub cgroup: Option<CgroupReport>,
    /// The uid map written, if any.
    pub uid_map: Option<String>,
    /// The gid map written, if any.
    pub gid_map: Option<String>,
    /// Captured stdout (with `Stdio::Capture` or `Stdio::Tee`).
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
    /// Problems during clean-up that did not stop the run.
    pub warnings: Vec<String>,
}

impl Outcome {
    /// The launcher's exit status: the command's, or 128 + signal.
    pub fn exit_code(&self) -> u8 {
        self.status.code()
    }

    /// When `step` finished, if it ran.
    pub fn at(&self, step: Step) -> Option<Duration> {
        self.timeline.iter().find(|s| s.step == step).map(|s| s.at)
    }

    /// Captured stdout as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Captured stderr as text.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// The child process until it is reaped: killed and reaped on drop.
struct ChildGuard {
    pid: Pid,
    reaped: bool,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// Restores the calling thread's signal mask.
struct MaskGuard(Option<SigSet>);

impl Drop for MaskGuard {
    fn drop(&mut self) {
        if let Some(old) = self.0.take() {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
        }
    }
}

fn sys_err(what: &'static str, hint: &'static str) -> impl Fn(Errno) -> LaunchError {
    move |source| LaunchError::Sys { what, hint, source }
}

/// Checks the rootfs and finds the command in it; returns the absolute rootfs.
fn check_rootfs_and_command(cfg: &ContainerConfig) -> Result<PathBuf, LaunchError> {
    let cmd = cfg.argv.first().ok_or(ConfigError::NoCommand)?;
    let meta = match fs::metadata(&cfg.rootfs) {
        Ok(m) => m,
        Err(_) => return Err(LaunchError::RootfsMissing { path: cfg.rootfs.clone() }),
    };
    if !meta.is_dir() {
        return Err(LaunchError::RootfsNotDir { path: cfg.rootfs.clone() });
    }
    let rootfs = fs::canonicalize(&cfg.rootfs).map_err(|_| LaunchError::RootfsMissing { path: cfg.rootfs.clone() })?;
    let env = environment(cfg);
    let path_var = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or(DEFAULT_PATH);
    let candidates = command_candidates(cmd, path_var);
    let found =
        candidates.iter().map(|c| rootfs.join(c.trim_start_matches('/'))).find(|p| p.symlink_metadata().is_ok());
    let Some(host_path) = found else {
        return Err(LaunchError::CommandNotFound {
            cmd: cmd.clone(),
            rootfs: cfg.rootfs.clone(),
            searched: candidates.join(", "),
        });
    };
    if let Some(interp) = resolve_in_rootfs(&rootfs, &host_path).as_deref().and_then(elf_interp) {
        if resolve_in_rootfs(&rootfs, &rootfs.join(interp.trim_start_matches('/'))).is_none() {
            return Err(LaunchError::MissingLoader { cmd: cmd.clone(), interp });
        }
    }
    Ok(rootfs)
}

/// Follows symlinks as the container would see them (absolute targets are
/// relative to the rootfs); `None` if the chain ends nowhere.
fn resolve_in_rootfs(rootfs: &Path, path: &Path) -> Option<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..16 {
        let meta = p.symlink_metadata().ok()?;
        if !meta.file_type().is_symlink() {
            return Some(p);
        }
        let target = fs::read_link(&p).ok()?;
        p = if target.is_absolute() { rootfs.join(target.strip_prefix("/").ok()?) } else { p.parent()?.join(target) };
    }
    None
}

/// The PT_INTERP of an ELF file (its dynamic loader), if it has one.
pub fn elf_interp(path: &Path) -> Option<String> {
    let mut f = fs::File::open(path).ok()?;
    let mut h = [0u8; 64];
    f.read_exact(&mut h).ok()?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return None;
    }
    let phoff = u64::from_le_bytes(h[32..40].try_into().ok()?);
    let phentsize = u16::from_le_bytes([h[54], h[55]]) as u64;
    let phnum = u16::from_le_bytes([h[56], h[57]]) as u64;
    let data = fs::read(path).ok()?;
    for i in 0..phnum {
        let o = (phoff + i * phentsize) as usize;
        let ph = data.get(o..o + 56)?;
        if u32::from_le_bytes(ph[0..4].try_into().ok()?) == 3 {
            let off = u64::from_le_bytes(ph[8..16].try_into().ok()?) as usize;
            let size = u64::from_le_bytes(ph[32..40].try_into().ok()?) as usize;
            let s = data.get(off..off + size)?;
            return Some(String::from_utf8_lossy(s).trim_end_matches('\0').to_string());
        }
    }
    None
}

fn hint_for(step: Step, errno: Errno, cfg: &ContainerConfig) -> String {
    let ns = cfg.namespaces;
    let h = match (step, errno) {
        (Step::Exec, Errno::ENOENT) => "the command, or the dynamic loader it names, is not in the rootfs",
        (Step::Exec, Errno::EACCES) => "the file is not executable: chmod +x it in the rootfs",
        (Step::Exec, Errno::ENOEXEC) => {
            "the file is not a program this kernel can run (wrong architecture, or a script without #!)"
        }
        (Step::Proc, Errno::EPERM) if ns.user && !ns.pid => {
            "a user namespace may only mount /proc for a PID namespace it owns: add pid to --ns"
        }
        (Step::BindRootfs, Errno::EROFS | Errno::EACCES) => {
            "the rootfs lacks proc/, dev/ or tmp/ and cannot be written: create those directories in it"
        }
        (Step::PivotRoot, Errno::EINVAL) => {
            "pivot_root needs the rootfs on its own mount in a private tree (the host's / cannot be the rootfs)"
        }
        (Step::User, Errno::EINVAL) => {
            "that uid/gid is not mapped in the user namespace (without root only uid 0 is mapped)"
        }
        (Step::Workdir, Errno::ENOENT | Errno::ENOTDIR) => "the working directory does not exist in the rootfs",
        (Step::Hostname, Errno::EINVAL) => "the hostname is too long (64 bytes at most)",
        (_, Errno::EPERM) if !ns.user => "the launcher lacks a privilege: run as root",
        _ => "",
    };
    if h.is_empty() {
        String::new()
    } else {
        format!(": {h}")
    }
}

fn narrate_parent(cfg: &ContainerConfig, step: Step, detail: &str) {
    if !cfg.explain && !cfg.step {
        return;
    }
    eprintln!(
        "[virtlab launcher, on the host] {}\n    syscall: {}\n    idea:    {}",
        step.name(),
        if detail.is_empty() { step.syscall() } else { detail },
        step.idea()
    );
    if cfg.step {
        crate::child::pause();
    }
}

/// Runs a container to completion.
pub fn run(cfg: &ContainerConfig) -> Result<Outcome, LaunchError> {
    let start = Instant::now();
    let start_ns = monotonic_ns();
    if cfg.argv.is_empty() {
        return Err(ConfigError::NoCommand.into());
    }
    let root = nix::unistd::geteuid().is_root();
    if !root && !cfg.namespaces.user {
        return Err(LaunchError::NeedRoot);
    }
    let rootfs = check_rootfs_and_command(cfg)?;
    let id = format!("{}-{}", std::process::id(), NEXT_ID.fetch_add(1, Ordering::Relaxed));

    // The cgroup, made before the child exists so that a bad limit fails early.
    let cgroup = if root {
        let mode = cgroup::detect(&cfg.cgroup_root)?;
        cgroup::cleanup_stale(&cfg.cgroup_root, mode);
        Some(Cgroup::create(&cfg.cgroup_root, mode, &id, &cfg.limits)?)
    } else if cfg.limits != crate::config::Limits::default() {
        return Err(LaunchError::LimitsNeedRoot);
    } else {
        None
    };

    // Standard streams.
    let capture = cfg.stdio != Stdio::Inherit;
    let mut out_pipe: Option<(OwnedFd, OwnedFd)> = None;
    let mut err_pipe: Option<(OwnedFd, OwnedFd)> = None;
    let mut devnull: Option<OwnedFd> = None;
    if capture {
        out_pipe = Some(pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe2", ""))?);
        err_pipe = Some(pipe2(OFlag::O_CLOEXEC).map_err(sys_err("pipe2", ""))?);
        if cfg.stdio == Stdio::Capture {
            let fd = open("/dev/null", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(sys_err("open /dev/null", ""))?;
            // SAFETY: fd was just returned by open(2) and is owned by nobody else.
            devnull = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    // With the launcher's stdin on a terminal, the command shares it: bind
    // that terminal's node inside (interactive lessons: a busybox shell).
    let tty = if cfg.stdio != Stdio::Capture && io::IsTerminal::is_terminal(&io::stdin()) {
        fs::read_link("/proc/self/fd/0").ok()
    } else {
        None
    };
    let fds = StdioFds {
        stdin: devnull.as_ref().map(|f| f.as_raw_fd()),
        stdout: out_pipe.as_ref().map(|p| p.1.as_raw_fd()),
        stderr: err_pipe.as_ref().map(|p| p.1.as_raw_fd()),
        tty,
    };
    let join_fds = match &cgroup {
        Some(cg) => cg.open_self_join()?,
        None => Vec::new(),
    };
    let join_raw: Vec<RawFd> = join_fds.iter().map(|f| f.as_raw_fd()).collect();
    let plan = Plan::build(cfg, &rootfs, fds, &join_raw, last_cap())?;
    let (parent_end, child_end) = channel::pair()?;

    // Signals to forward arrive through a signalfd instead of handlers.
    let mut mask_guard = MaskGuard(None);
    let sigfd = if cfg.forward_signals {
        let mut set = SigSet::empty();
        for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT] {
            set.add(s);
        }
        let mut old = SigSet::empty();
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), Some(&mut old)).map_err(sys_err("pthread_sigmask", ""))?;
        mask_guard.0 = Some(old);
        Some(
            SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
                .map_err(sys_err("signalfd", ""))?,
        )
    } else {
        None
    };

    narrate_parent(cfg, Step::Clone, &format!("clone({} | SIGCHLD)", cfg.namespaces.describe_clone_flags()));
    let flags = cfg.namespaces.clone_flags().bits() as libc::c_long | libc::SIGCHLD as libc::c_long;
    // SAFETY: clone(2) without CLONE_VM and with a NULL stack behaves like
    // fork(2): the child gets a copy of this address space and continues on
    // its copy of this stack. The child only runs `child_main`, which works
    // on data prepared above, does not allocate, and ends in execve or _exit.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if ret == 0 {
        // Child process: see child.rs for which namespaces and privileges.
        child_main(
            &plan,
            ChildArgs { channel: child_end.raw(), parent_end: parent_end.raw(), explain: cfg.explain, step: cfg.step },
        );
    }
    // Launcher process, host namespaces.
    let ret = Errno::result(ret).map_err(sys_err(
        "clone",
        ": the kernel refused a namespace; without root, user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone, user.max_user_namespaces)",
    ))?;
    let pid = Pid::from_raw(ret as i32);
    let mut child = ChildGuard { pid, reaped: false };
    let mut timeline = vec![Stamp { step: Step::Clone, at: since(start_ns) }];
    drop(child_end);
    drop(join_fds);
    let (out_r, err_r) = (out_pipe.map(|p| p.0), err_pipe.map(|p| p.0));
    drop(devnull);

    // SAFETY: pidfd_open(2) with integer arguments; the result is checked.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    let pidfd = Errno::result(pidfd).map_err(sys_err("pidfd_open", ": Linux 5.3 or later is needed"))?;
    // SAFETY: pidfd_open returned a new fd that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };

    let mut uid_map = None;
    let mut gid_map = None;
    if cfg.namespaces.user {
        let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        // As root, map the first 65536 ids onto themselves: root inside is
        // uid 0 outside too, but with capabilities only over its namespaces.
        let (um, gm) = if root {
            ("0 0 65536".to_string(), "0 0 65536".to_string())
        } else {
            (format!("0 {uid} 1"), format!("0 {gid} 1"))
        };
        narrate_parent(
            cfg,
            Step::UserMaps,
            &format!("write \"deny\" to /proc/{pid}/setgroups, \"{um}\" to uid_map, \"{gm}\" to gid_map"),
        );
        let proc = PathBuf::from(format!("/proc/{pid}"));
        for (file, text) in [("setgroups", "deny"), ("uid_map", um.as_str()), ("gid_map", gm.as_str())] {
            let path = proc.join(file);
            fs::write(&path, text).map_err(|source| LaunchError::Maps { path, source })?;
        }
        timeline.push(Stamp { step: Step::UserMaps, at: since(start_ns) });
        uid_map = Some(um);
        gid_map = Some(gm);
    }
    if let Some(cg) = cgroup.as_ref().filter(|c| !c.mode().is_v1()) {
        let paths: Vec<String> = cg.paths().iter().map(|p| p.display().to_string()).collect();
        narrate_parent(
            cfg,
            Step::Cgroup,
            &format!("write {pid} to cgroup.procs in {} ({:?})", paths.join(", "), cfg.limits),
        );
        cg.add_process(pid.as_raw())?;
        timeline.push(Stamp { step: Step::Cgroup, at: since(start_ns) });
    }
    parent_end.send(ParentMsg::Go)?;

    // Watch the container.
    let deadline = cfg.timeout.map(|t| start + t);
    let mut sock_open = true;
    let mut out_open = out_r.is_some();
    let mut err_open = err_r.is_some();
    let mut status: Option<ExitStatus> = None;
    let mut failure: Option<(Step, Errno)> = None;
    let mut timed_out = false;
    let mut forwarded = None;
    let mut drain_until: Option<Instant> = None;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut ready_seen = false;
    let mut buf = vec![0u8; 64 * 1024];

    loop {
        if status.is_some() && !sock_open && !out_open && !err_open {
            break;
        }
        let now = Instant::now();
        if let Some(d) = drain_until {
            if now >= d {
                break;
            }
        }
        if let (Some(d), None, false) = (deadline, status, timed_out) {
            if now >= d {
                timed_out = true;
                let _ = kill(pid, Signal::SIGKILL);
                if let Some(cg) = &cgroup {
                    cg.kill_all();
                }
            }
        }
        let mut wait = None::<Duration>;
        for d in [if status.is_none() && !timed_out { deadline } else { None }, drain_until].into_iter().flatten() {
            let left = d.saturating_duration_since(now);
            wait = Some(wait.map_or(left, |w| w.min(left)));
        }
        let timeout = match wait {
            Some(w) => PollTimeout::try_from(w.as_millis().min(60_000) as i32 + 1).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
        };

        // Build the poll set: tags say which fd each entry is.
        let mut tags = Vec::with_capacity(5);
        let mut pfds = Vec::with_capacity(5);
        if sock_open {
            tags.push(0);
            pfds.push(PollFd::new(parent_end.fd(), PollFlags::POLLIN));
        }
        if status.is_none() {
            tags.push(1);
            pfds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
        }
        if let (true, Some(f)) = (out_open, &out_r) {
            tags.push(2);
            pfds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        if let (true, Some(f)) = (err_open, &err_r) {
            tags.push(3);
            pfds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        if let Some(s) = &sigfd {
            tags.push(4);
            pfds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut pfds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(sys_err("poll", "")(e)),
        }
        let ready: Vec<usize> = pfds
            .iter()
            .zip(&tags)
            .filter(|(p, _)| p.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, t)| *t)
            .collect();
        drop(pfds);
        for tag in ready {
            match tag {
                0 => match parent_end.recv()? {
                    Some(ChildMsg::StepDone { step, t_ns }) => {
                        timeline.push(Stamp { step, at: Duration::from_nanos(t_ns.saturating_sub(start_ns)) });
                    }
                    Some(ChildMsg::Failed { step, errno }) => failure = Some((step, Errno::from_raw(errno))),
                    // End-of-file: execve succeeded (close-on-exec) or the child died.
                    None => sock_open = false,
                },
                1 => {
                    if let Ok(ws) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                        let st = match ws {
                            WaitStatus::Exited(_, c) => Some(ExitStatus::Exited(c)),
                            WaitStatus::Signaled(_, s, _) => Some(ExitStatus::Signaled(s as i32)),
                            _ => None,
                        };
                        if let Some(st) = st {
                            child.reaped = true;
                            status = Some(st);
                            timeline.push(Stamp { step: Step::Exit, at: since(start_ns) });
                            drain_until = Some(Instant::now() + DRAIN);
                            // Without a PID namespace, processes it left behind
                            // keep running (and keep the pipes open): end them.
                            if let Some(cg) = &cgroup {
                                cg.kill_all();
                            }
                        }
                    }
                }
                2 | 3 => {
                    let f = if tag == 2 { &out_r } else { &err_r };
                    let Some(f) = f else { continue };
                    match nix::unistd::read(f.as_raw_fd(), &mut buf) {
                        Ok(0) | Err(Errno::EBADF) => {
                            if tag == 2 {
                                out_open = false;
                            } else {
                                err_open = false;
                            }
                        }
                        Ok(n) => {
                            let chunk = &buf[..n];
                            if cfg.stdio == Stdio::Tee {
                                if tag == 2 {
                                    let mut o = io::stdout().lock();
                                    let _ = o.write_all(chunk).and_then(|_| o.flush());
                                } else {
                                    let _ = io::stderr().write_all(chunk);
                                }
                            }
                            if tag == 2 {
                                stdout.extend_from_slice(chunk);
                                if !ready_seen {
                                    if let Some(t) = ready_time(&stdout) {
                                        ready_seen = true;
                                        timeline.push(Stamp {
                                            step: Step::Ready,
                                            at: Duration::from_nanos(t.saturating_sub(start_ns)),
                                        });
                                    }
                                }
                            } else {
                                stderr.extend_from_slice(chunk);
                            }
                        }
                        Err(Errno::EINTR | Errno::EAGAIN) => {}
                        Err(e) => return Err(sys_err("read of the container's output", "")(e)),
                    }
                }
                4 => {
                    if let Some(s) = &sigfd {
                        while let Ok(Some(info)) = s.read_signal() {
                            let sig = info.ssi_signo as i32;
                            forwarded = Some(sig);
                            forward(pid, sig, cfg.namespaces.pid);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    // The command is gone; make sure everything it started is too.
    drop(child);
    let mut warnings = Vec::new();
    let cgroup_report = match cgroup {
        Some(cg) => {
            let stats = cg.stats();
            let report = CgroupReport { mode: cg.mode(), paths: cg.paths(), stats };
            if let Err(e) = cg.remove() {
                warnings.push(format!("{e}"));
            }
            Some(report)
        }
        None => None,
    };
    drop(mask_guard);
    if let Some((step, errno)) = failure {
        return Err(LaunchError::Child { step, syscall: step.syscall(), hint: hint_for(step, errno, cfg), errno });
    }
    let status = status.unwrap_or(ExitStatus::Signaled(libc::SIGKILL));
    timeline.sort_by_key(|s| s.at);
    let oom_killed = cgroup_report.as_ref().is_some_and(|c| c.stats.oom_kills > 0);
    Ok(Outcome {
        id,
        status,
        timed_out,
        oom_killed,
        forwarded_signal: forwarded,
        timeline,
        total: since(start_ns),
        cgroup: cgroup_report,
        uid_map,
        gid_map,
        stdout,
        stderr,
        warnings,
    })
}

/// Time since `start_ns` on CLOCK_MONOTONIC, the clock the child and the
/// workload stamp with too, so that all stamps compare exactly.
fn since(start_ns: u64) -> Duration {
    Duration::from_nanos(monotonic_ns().saturating_sub(start_ns))
}

/// The `t_ns=` of the workload's ready line, once a whole one arrived.
fn ready_time(out: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(out).ok()?;
    let line = text.split_inclusive('\n').find(|l| l.starts_with("virtlab.ready") && l.ends_with('\n'))?;
    line.split_whitespace().find_map(|w| w.strip_prefix("t_ns=")).and_then(|v| v.parse().ok())
}

/// Forwards a signal. PID 1 of a namespace only receives signals it has a
/// handler for (the kernel protects a namespace's init); if the command has
/// none for this one, it would never stop, so it gets SIGKILL instead.
fn forward(pid: Pid, sig: i32, pid_ns: bool) {
    let Ok(signal) = Signal::try_from(sig) else { return };
    if pid_ns && !catches(pid, sig) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(ExitStatus::Exited(3).code(), 3);
        assert_eq!(ExitStatus::Signaled(9).code(), 137);
        let e = LaunchError::Child { step: Step::Exec, syscall: "", hint: String::new(), errno: Errno::ENOENT };
        assert_eq!(e.exit_code(), 127);
        let e = LaunchError::Child { step: Step::Exec, syscall: "", hint: String::new(), errno: Errno::EACCES };
        assert_eq!(e.exit_code(), 126);
        assert_eq!(LaunchError::NeedRoot.exit_code(), 125);
    }

    #[test]
    fn ready_line() {
        assert_eq!(ready_time(b"virtlab.ready pid=1 t_ns=42\n"), Some(42));
        assert_eq!(ready_time(b"virtlab.ready pid=1 t_ns=42"), None, "incomplete line");
        assert_eq!(ready_time(b"noise\nvirtlab.ready pid=1 t_ns=7\nmore"), Some(7));
    }

    #[test]
    fn the_workload_has_no_loader_and_a_dynamic_binary_has_one() {
        let w = virtlab_workload::materialize().unwrap();
        assert_eq!(elf_interp(&w), None);
        let me = std::env::current_exe().unwrap();
        let interp = elf_interp(&me).expect("test binaries are dynamically linked");
        assert!(interp.contains("ld-linux"), "{interp}");
    }

    #[test]
    fn bad_rootfs_and_command_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ContainerConfig::new(dir.path().join("nope"), vec!["/x".into()]);
        assert!(matches!(check_rootfs_and_command(&cfg), Err(LaunchError::RootfsMissing { .. })));
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        cfg.rootfs = file;
        assert!(matches!(check_rootfs_and_command(&cfg), Err(LaunchError::RootfsNotDir { .. })));
        cfg.rootfs = dir.path().to_path_buf();
        let e = check_rootfs_and_command(&cfg).unwrap_err();
        assert!(matches!(e, LaunchError::CommandNotFound { .. }), "{e}");
        assert_eq!(e.exit_code(), 127);
        // A dynamically linked binary without its loader.
        fs::create_dir(dir.path().join("bin")).unwrap();
        fs::copy(std::env::current_exe().unwrap(), dir.path().join("bin/dyn")).unwrap();
        cfg.argv = vec!["dyn".into()];
        let e = check_rootfs_and_command(&cfg).unwrap_err();
        assert!(matches!(e, LaunchError::MissingLoader { .. }), "{e}");
        assert!(e.to_string().contains("ENOENT"));
    }
}
