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
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
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

use crate::runtime::cgroup::{self, Cgroup, CgroupError, CgroupMode, CgroupStats};
use crate::runtime::channel::{self, ChannelError, ChildMsg, ParentMsg};
use crate::runtime::child::{child_main, monotonic_ns, ChildArgs};
use crate::runtime::config::{ConfigError, ContainerConfig, Stdio};
use crate::runtime::idmap::IdRanges;
use crate::runtime::plan::{command_candidates, environment, last_cap, Plan, PlanHost, StdioFds, Step, DEFAULT_PATH};
use crate::runtime::sentinel::Sentinel;

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
    /// The command is not a regular file (a directory, a FIFO, a device).
    #[error("{cmd} in the rootfs is {kind}, not a program file: give the path of an executable file")]
    NotAFile {
        /// The command, inside the rootfs.
        cmd: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// `--user` names an id the container's user namespace does not map.
    #[error("{what} {id} has no host id in this container's user namespace, which maps ids 0-{last}: give an id in that range")]
    IdNotMapped {
        /// `uid` or `gid`.
        what: &'static str,
        /// The id asked for.
        id: u32,
        /// The highest id mapped.
        last: u32,
    },
    /// The seccomp filter could not be built.
    #[error("seccomp filter")]
    Seccomp(#[from] crate::runtime::seccomp::SeccompError),
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
            LaunchError::NotAFile { .. } => 126,
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
    /// The rootfs was given to the container as an idmapped mount (its
    /// host-root-owned files appear owned by container root).
    pub rootfs_idmapped: bool,
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
///
/// The command is looked up as the container will see it: every path is
/// resolved with openat2(2) `RESOLVE_IN_ROOT`, so `..` and absolute
/// symlinks stop at the rootfs, never reaching the host's files. Only a
/// regular file counts (a FIFO would block the check, a device could be
/// read without end), and its ELF header is read within a bound.
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
    let root_dir = open(&rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|_| LaunchError::RootfsMissing { path: cfg.rootfs.clone() })?;
    // SAFETY: open(2) returned a new fd owned by nobody else.
    let root_dir = unsafe { OwnedFd::from_raw_fd(root_dir) };
    let env = environment(cfg);
    let path_var = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or(DEFAULT_PATH);
    let candidates = command_candidates(cmd, path_var);
    let found = candidates.iter().find_map(|c| open_in_root(&root_dir, c, OFlag::O_PATH).ok().map(|f| (c, f)));
    let Some((inside, file)) = found else {
        return Err(LaunchError::CommandNotFound {
            cmd: cmd.clone(),
            rootfs: cfg.rootfs.clone(),
            searched: candidates.join(", "),
        });
    };
    let kind = file_kind(&file);
    if kind != "a regular file" {
        return Err(LaunchError::NotAFile { cmd: inside.clone(), kind });
    }
    let interp = open_in_root(&root_dir, inside, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
        .ok()
        .and_then(|f| elf_interp_of(&fs::File::from(f)));
    if let Some(interp) = interp {
        if open_in_root(&root_dir, &interp, OFlag::O_PATH).is_err() {
            return Err(LaunchError::MissingLoader { cmd: cmd.clone(), interp });
        }
    }
    Ok(rootfs)
}

/// openat2(2) of `path` below `root` as if `root` were `/`: `..` and
/// symlinks (absolute ones included) cannot leave it.
fn open_in_root(root: &OwnedFd, path: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
    use nix::fcntl::{openat2, OpenHow, ResolveFlag};
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_IN_ROOT);
    let fd = openat2(root.as_raw_fd(), path, how)?;
    // SAFETY: openat2(2) returned a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What kind of file an fd refers to, in words.
fn file_kind(fd: &OwnedFd) -> &'static str {
    let Ok(st) = nix::sys::stat::fstat(fd.as_raw_fd()) else { return "unreadable" };
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a FIFO (named pipe)",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        _ => "not a regular file",
    }
}

/// The PT_INTERP of an ELF file (its dynamic loader), if it has one.
/// `None` for anything that is not a regular file.
pub fn elf_interp(path: &Path) -> Option<String> {
    let f = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    elf_interp_of(&f)
}

/// [`elf_interp`] of an open file; reads only the headers and the
/// interpreter's name, each bounded.
fn elf_interp_of(f: &fs::File) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let mut h = [0u8; 64];
    f.read_exact_at(&mut h, 0).ok()?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 {
        return None;
    }
    let phoff = u64::from_le_bytes(h[32..40].try_into().ok()?);
    let phentsize = u16::from_le_bytes([h[54], h[55]]) as u64;
    let phnum = u16::from_le_bytes([h[56], h[57]]) as u64;
    if phentsize < 56 {
        return None;
    }
    let mut ph = [0u8; 56];
    for i in 0..phnum {
        f.read_exact_at(&mut ph, phoff.checked_add(i * phentsize)?).ok()?;
        if u32::from_le_bytes(ph[0..4].try_into().ok()?) == 3 {
            let off = u64::from_le_bytes(ph[8..16].try_into().ok()?);
            let size = u64::from_le_bytes(ph[32..40].try_into().ok()?);
            // A loader's path is at most PATH_MAX.
            if size > 4096 {
                return None;
            }
            let mut s = vec![0u8; size as usize];
            f.read_exact_at(&mut s, off).ok()?;
            return Some(String::from_utf8_lossy(&s).trim_end_matches('\0').to_string());
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
        (Step::Dev, Errno::EROFS | Errno::EACCES) => {
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
        crate::runtime::child::pause();
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
    // Which host ids the container's ids stand for: as root, an
    // unprivileged range (container root must not be host root); without
    // root, container root is the caller.
    let id_ranges = (root && cfg.namespaces.user).then(|| cfg.id_ranges.unwrap_or_else(IdRanges::lookup));
    if let (Some(u), true) = (cfg.user, cfg.namespaces.user) {
        let (uids, gids) = id_ranges.map_or((1, 1), |r| (r.uid.count, r.gid.count));
        for (what, id, count) in [("uid", u.uid, uids), ("gid", u.gid, gids)] {
            if id >= count {
                return Err(LaunchError::IdNotMapped { what, id, last: count - 1 });
            }
        }
    }
    let id = format!("{}-{}", std::process::id(), NEXT_ID.fetch_add(1, Ordering::Relaxed));

    // The cgroup, made before the child exists so that a bad limit fails early.
    let cgroup = if root {
        let mode = cgroup::detect(&cfg.cgroup_root)?;
        cgroup::cleanup_stale(&cfg.cgroup_root, mode);
        Some(Cgroup::create(&cfg.cgroup_root, mode, &id, &cfg.limits)?)
    } else if cfg.limits != crate::runtime::config::Limits::default() {
        return Err(LaunchError::LimitsNeedRoot);
    } else {
        None
    };
    // If the launcher is killed, the sentinel kills what is left of the
    // container and removes its cgroup.
    let sentinel = match &cgroup {
        Some(cg) => Some(Sentinel::start(&cg.paths()).map_err(sys_err("fork of the clean-up sentinel", ""))?),
        None => None,
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
    let host = PlanHost {
        last_cap: last_cap(),
        devices_allowlist: cgroup.as_ref().is_some_and(Cgroup::devices_allowlist),
        seccomp: if cfg.seccomp { Some(crate::runtime::seccomp::default_program()?) } else { None },
    };
    let plan = Plan::build(cfg, &rootfs, fds, &join_raw, host)?;
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
    let launcher_pid = std::process::id() as i32;
    // SAFETY: clone(2) without CLONE_VM and with a NULL stack behaves like
    // fork(2): the child gets a copy of this address space and continues on
    // its copy of this stack. The child only runs `child_main`, which works
    // on data prepared above, does not allocate, and ends in execve or _exit.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if ret == 0 {
        // Child process: see child.rs for which namespaces and privileges.
        child_main(
            &plan,
            ChildArgs {
                channel: child_end.raw(),
                parent_end: parent_end.raw(),
                launcher: launcher_pid,
                explain: cfg.explain,
                step: cfg.step,
            },
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
    let mut warnings = Vec::new();
    let mut rootfs_tree = None;
    if cfg.namespaces.user {
        let (uid, gid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let (um, gm) = match id_ranges {
            Some(r) => (r.uid.map_line(), r.gid.map_line()),
            None => (format!("0 {uid} 1"), format!("0 {gid} 1")),
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
        if id_ranges.is_some() && cfg.namespaces.mnt {
            narrate_parent(
                cfg,
                Step::UserMaps,
                "open_tree(rootfs, OPEN_TREE_CLONE); mount_setattr(MOUNT_ATTR_IDMAP, /proc/PID/ns/user): files owned by host root appear owned by container root",
            );
            match idmapped_tree(&rootfs, pid) {
                Ok(tree) => rootfs_tree = Some(tree),
                Err(e) => warnings.push(format!(
                    "the rootfs could not be given as an idmapped mount ({e}), so its files show as owned by nobody inside and container root cannot change them: idmapped mounts need Linux 5.12 or later and a file system that supports them (ext4, xfs, btrfs; tmpfs from 6.3, overlayfs from 5.19)"
                )),
            }
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
    parent_end.send(ParentMsg::Go { rootfs_tree: rootfs_tree.as_ref().map(AsFd::as_fd) })?;
    let rootfs_idmapped = rootfs_tree.take().is_some();

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

    // The command is gone; make sure everything it started is too. The
    // launcher cleans up from here on, so the sentinel may go (it exits
    // on the other CPU while the cgroup is read and removed).
    drop(child);
    let mut sentinel = sentinel;
    if let Some(s) = sentinel.as_mut() {
        s.dismiss();
    }
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
    // Cleaned up: the sentinel has nothing left to do.
    drop(sentinel);
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
        rootfs_idmapped,
        stdout,
        stderr,
        warnings,
    })
}

/// A detached copy of the rootfs mount tree, idmapped through the user
/// namespace of `pid` (whose maps are written): through it a file owned by
/// host uid 0 appears owned by container root, and a file container root
/// creates is stored as uid 0. Also `nodev`: a device node planted in the
/// rootfs opens nothing. The child attaches it with move_mount(2).
fn idmapped_tree(rootfs: &Path, pid: Pid) -> Result<OwnedFd, Errno> {
    use std::os::unix::ffi::OsStrExt;
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    /// `struct mount_attr` (mount_setattr(2)).
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let userns = open(format!("/proc/{pid}/ns/user").as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    // SAFETY: open(2) returned a new fd owned by nobody else.
    let userns = unsafe { OwnedFd::from_raw_fd(userns) };
    let path = std::ffi::CString::new(rootfs.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE;
    // SAFETY: open_tree(2) with a NUL-terminated path and integer flags.
    let tree = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    let tree = Errno::result(tree)?;
    // SAFETY: open_tree returned a new fd owned by nobody else.
    let tree = unsafe { OwnedFd::from_raw_fd(tree as RawFd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: libc::MS_PRIVATE,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr(2) on the tree fd with an empty path, reading
    // `size_of::<MountAttr>()` bytes of the live struct above.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH as libc::c_uint) | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r)?;
    Ok(tree)
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

    #[test]
    fn the_command_is_looked_up_inside_the_rootfs_only() {
        // dir/rootfs is the rootfs; dir/outside/prog is a host file next to it.
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("bin")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        fs::copy(std::env::current_exe().unwrap(), dir.path().join("outside/prog")).unwrap();
        let mut cfg = ContainerConfig::new(&rootfs, vec!["../outside/prog".into()]);
        // `..` stops at the rootfs, as it will for the container.
        let e = check_rootfs_and_command(&cfg).unwrap_err();
        assert!(matches!(e, LaunchError::CommandNotFound { .. }), "{e}");
        cfg.argv = vec!["/../../outside/prog".into()];
        assert!(matches!(check_rootfs_and_command(&cfg), Err(LaunchError::CommandNotFound { .. })));
        // So does an absolute symlink: /bin/escape -> /outside/prog means
        // rootfs/outside/prog, which is not there.
        std::os::unix::fs::symlink(dir.path().join("outside/prog"), rootfs.join("bin/escape")).unwrap();
        cfg.argv = vec!["escape".into()];
        assert!(matches!(check_rootfs_and_command(&cfg), Err(LaunchError::CommandNotFound { .. })));
    }

    #[test]
    fn a_fifo_or_a_directory_as_command_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&dir.path().join("fifo"), Mode::from_bits_truncate(0o755)).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        for (cmd, kind) in [("/fifo", "FIFO"), ("/sub", "directory")] {
            let cfg = ContainerConfig::new(dir.path(), vec![cmd.into()]);
            let e = check_rootfs_and_command(&cfg).unwrap_err();
            assert!(matches!(e, LaunchError::NotAFile { .. }), "{e}");
            assert!(e.to_string().contains(kind), "{e}");
            assert_eq!(e.exit_code(), 126);
        }
        // elf_interp of a FIFO answers at once too.
        assert_eq!(elf_interp(&dir.path().join("fifo")), None);
    }
}
