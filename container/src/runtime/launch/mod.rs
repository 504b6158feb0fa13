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
//!
//! | file         | what it holds |
//! | ------------ | ------------- |
//! | `check.rs`   | the checks before any set-up: root, rootfs, command and its ELF loader, `--user` ids |
//! | `setup.rs`   | the launcher's set-up on the host: cgroup, sentinel, uid/gid maps, idmapped rootfs, v2 join |
//! | `spawn.rs`   | stdio pipes, the child's plan, clone, the child guard and pidfd |
//! | `wait.rs`    | the watch loop: channel, exit, output, forwarded signals, timeout |
//! | `cleanup.rs` | after the exit: sentinel dismissed, cgroup read and removed |
//! | `outcome.rs` | [`Outcome`], [`ExitStatus`], [`Stamp`], [`CgroupReport`] |
//! | `error.rs`   | [`LaunchError`] and the hints for a step that failed in the child |
//! | `narrate.rs` | the launcher's `--explain`/`--step` narration |
//!
//! Dependencies run one way: `error`, `outcome` and `narrate` use none of
//! the other files; `check`, `setup` and `spawn` use those; `wait` and
//! `cleanup` also use `spawn` (the child guard); `run` here uses them all.
//! `launch` uses `plan`; `plan` never uses `launch`.

mod check;
mod cleanup;
mod error;
mod narrate;
mod outcome;
mod setup;
mod spawn;
mod wait;

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::runtime::channel::{self, ParentMsg};
use crate::runtime::child::monotonic_ns;
use crate::runtime::config::ContainerConfig;
use crate::runtime::hooks::HookKind;
use crate::runtime::plan::Step;

pub use check::elf_interp;
pub use error::LaunchError;
pub use outcome::{CgroupReport, ExitStatus, Outcome, Stamp};
pub use wait::{spawn_shielded, FORWARDED_SIGNALS};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Runs a container to completion.
pub fn run(cfg: &ContainerConfig) -> Result<Outcome, LaunchError> {
    let start = Instant::now();
    let id = format!("{}-{}", std::process::id(), NEXT_ID.fetch_add(1, Ordering::Relaxed));
    let Launched {
        start_ns,
        cgroup,
        sentinel,
        stdout,
        stderr,
        log,
        parent_end,
        signals,
        mut child,
        pidfd,
        timeline,
        user,
    } = launch(cfg, &id, None)?;
    let (stdout, stderr) = (stdout.as_ref(), stderr.as_ref());
    let sources = wait::Sources { channel: &parent_end, pidfd: &pidfd, stdout, stderr, signals: &signals };
    let seen = wait::Watch::new(cfg, (start, start_ns), &mut child, cgroup.as_ref(), sources, timeline, log).run()?;

    let mut warnings: Vec<String> = user.warning.into_iter().collect();
    let cgroup = cleanup::clean_up(child, sentinel, cgroup, &mut warnings);
    drop(signals);
    if let Some((step, index, code)) = seen.hook {
        return Err(error::hook_failed(step, index, code, cfg));
    }
    if let Some((step, errno)) = seen.failure {
        return Err(error::child_failed(step, errno, cfg));
    }
    let mut timeline = seen.timeline;
    timeline.sort_by_key(|s| s.at);
    Ok(Outcome {
        id,
        status: seen.status.unwrap_or(ExitStatus::Signaled(libc::SIGKILL)),
        timed_out: seen.timed_out,
        oom_killed: cgroup.as_ref().is_some_and(|c| c.stats.oom_kills > 0),
        forwarded_signal: seen.forwarded,
        timeline,
        total: outcome::since(start_ns),
        cgroup,
        uid_map: user.uid_map,
        gid_map: user.gid_map,
        rootfs_idmapped: user.rootfs_idmapped,
        stdout: seen.stdout,
        stderr: seen.stderr,
        warnings,
    })
}

/// A container made but not started (an OCI `create`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Its process, as the host sees it, waiting before execve.
    pub pid: i32,
    /// Its cgroup's directories, which outlive the launcher: the caller
    /// removes them once the container is gone.
    pub cgroup: Vec<std::path::PathBuf>,
}

/// Creates a container without starting its program, as an OCI runtime's
/// `create` does: everything up to execve is done, then the process waits
/// until another process opens the FIFO `fifo` for reading (`start`). It
/// does not die with the launcher (no death signal, no sentinel): this
/// returns once it waits, and it becomes the child of the caller's
/// subreaper (an engine's monitor) or of init. Its cgroup, named
/// `virtlab-oci-NAME`, stays. Standard streams are the launcher's.
pub fn create(cfg: &ContainerConfig, name: &str, fifo: &std::path::Path) -> Result<Created, LaunchError> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let fifo_fd = open(fifo, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(error::sys_err("open of the exec FIFO", ""))?;
    // SAFETY: open(2) just returned this fd, owned by nobody else.
    let fifo_fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fifo_fd) };
    let Launched { cgroup, parent_end, child, user, .. } =
        launch(cfg, &format!("oci-{name}"), Some(std::os::fd::AsRawFd::as_raw_fd(&fifo_fd)))?;
    drop(user);
    // Until the set-up is done (the working directory is the last step
    // before the wait), a failure is reported and the child goes.
    let mut hook = None;
    let set_up = loop {
        match parent_end.recv() {
            Ok(Some(channel::ChildMsg::StepDone { step: Step::Workdir, .. })) => break Ok(()),
            Ok(Some(channel::ChildMsg::StepDone { .. })) => {}
            Ok(Some(channel::ChildMsg::HookFailed { step, index, code })) => hook = Some((step, index, code)),
            Ok(Some(channel::ChildMsg::Failed { step, errno })) => {
                break Err(match hook {
                    Some((step, index, code)) => error::hook_failed(step, index, code, cfg),
                    None => error::child_failed(step, nix::errno::Errno::from_raw(errno), cfg),
                });
            }
            Ok(None) => break Err(LaunchError::ChildVanished),
            Err(e) => break Err(e.into()),
        }
    };
    if let Err(e) = set_up {
        // Nothing is left: the process killed and reaped, then its cgroup.
        drop(child);
        drop(cgroup);
        return Err(e);
    }
    let pid = child.release();
    let cgroup = cgroup.map(|c| c.keep()).unwrap_or_default();
    if let Some(path) = &cfg.pid_file {
        std::fs::write(path, format!("{pid}\n"))
            .map_err(|source| LaunchError::PidFile { path: path.clone(), source })?;
    }
    Ok(Created { pid, cgroup })
}

/// Everything `run` and `create` share: the container set up to the point
/// where its child runs its plan.
struct Launched {
    start_ns: u64,
    cgroup: Option<crate::runtime::cgroup::Cgroup>,
    sentinel: Option<crate::runtime::sentinel::Sentinel>,
    stdout: Option<std::os::fd::OwnedFd>,
    stderr: Option<std::os::fd::OwnedFd>,
    log: Option<crate::runtime::log::LogWriter>,
    parent_end: channel::ParentEnd,
    signals: wait::Signals,
    child: spawn::ChildGuard,
    pidfd: std::os::fd::OwnedFd,
    timeline: Vec<Stamp>,
    user: UserOutcome,
}

/// What the user namespace's set-up left.
struct UserOutcome {
    uid_map: Option<String>,
    gid_map: Option<String>,
    rootfs_idmapped: bool,
    warning: Option<String>,
}

/// Checks, cgroup `virtlab-ID`, clone, maps, rootfs, Go. With
/// `await_start`, the container is detached from the launcher (no
/// sentinel, no death signal, no forwarded signals) and its process waits
/// on that FIFO before execve.
fn launch(cfg: &ContainerConfig, id: &str, await_start: Option<std::os::fd::RawFd>) -> Result<Launched, LaunchError> {
    let start_ns = monotonic_ns();
    let checked = check::check(cfg)?;
    // The namespaces to join, opened and checked before anything is made.
    let joined = crate::runtime::nsjoin::open_all(&cfg.join_namespaces)?;
    let detached = await_start.is_some();

    // Before the child exists: its cgroup (a bad limit fails early) and the
    // sentinel that cleans up if the launcher is killed.
    let cgroup = setup::make_cgroup(cfg, checked.root, id, detached)?;
    let sentinel = if detached { None } else { setup::start_sentinel(cgroup.as_ref())? };
    let pipes = spawn::Pipes::open(cfg)?;
    let log = match &cfg.log {
        Some(path) => Some(
            crate::runtime::log::LogWriter::open(path)
                .map_err(|source| LaunchError::Log { path: path.clone(), source })?,
        ),
        None => None,
    };
    let join_fds = match &cgroup {
        Some(cg) => cg.open_self_join()?,
        None => Vec::new(),
    };
    let plan = spawn::plan(cfg, &checked.rootfs, &pipes, &join_fds, cgroup.as_ref(), await_start)?;
    let (parent_end, child_end) = channel::pair()?;
    let signals = if detached { wait::Signals::none() } else { wait::Signals::block(cfg)? };

    let child = spawn::clone_child(cfg, &plan, &parent_end, &child_end, detached, &joined)?;
    drop(joined);
    let pid = child.pid;
    let mut timeline = vec![Stamp::now(Step::Clone, start_ns)];
    drop(child_end);
    drop(join_fds);
    let (stdout, stderr) = pipes.into_readers();
    let pidfd = spawn::open_pidfd(pid)?;

    // While the child waits for Go: its maps, its rootfs, its cgroup.
    let user_ns = setup::map_user_ns(cfg, pid, checked.id_ranges, &checked.rootfs)?;
    if user_ns.uid_map.is_some() {
        timeline.push(Stamp::now(Step::UserMaps, start_ns));
    }
    if setup::join_v2(cfg, cgroup.as_ref(), pid)? {
        timeline.push(Stamp::now(Step::Cgroup, start_ns));
    }
    let setup::UserNs { uid_map, gid_map, mut rootfs_tree, warning } = user_ns;
    let rootfs_idmapped = rootfs_tree.is_some();
    if let (Some(layers), None) = (&cfg.layers, &rootfs_tree) {
        // No idmapping (no user namespace, or it failed): the plain stack.
        rootfs_tree = Some(crate::runtime::overlay::mount(layers, None)?);
    }
    if let (Some(_), Some(tree)) = (&cfg.layers, &rootfs_tree) {
        // An image's command is looked up in the stack just made, the one
        // the container gets (the child, waiting for Go, is killed if it
        // is not there).
        check::find_command(cfg, tree)?;
    }
    // The container's namespaces and cgroup exist, its set-up has not
    // begun: the hooks of the runtime's namespaces (`prestart`,
    // `createRuntime`). One failing ends it all (the child guard kills
    // the child, the cgroup goes with its guard).
    if let Some(h) = &cfg.hooks {
        h.run_host(&[HookKind::Prestart, HookKind::CreateRuntime], pid.as_raw()).map_err(LaunchError::Hook)?;
    }
    parent_end.send(ParentMsg::Go { rootfs_tree: rootfs_tree.as_ref().map(AsFd::as_fd), pid: pid.as_raw() })?;
    drop(rootfs_tree);
    Ok(Launched {
        start_ns,
        cgroup,
        sentinel,
        stdout,
        stderr,
        log,
        parent_end,
        signals,
        child,
        pidfd,
        timeline,
        user: UserOutcome { uid_map, gid_map, rootfs_idmapped, warning },
    })
}
