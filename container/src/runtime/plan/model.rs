//! The plan as data: the operations the child runs ([`Op`]), each tagged
//! with its [`Step`], and what the launcher passes in to shape them.
//! `build.rs` makes a [`Plan`]; `run.rs` runs it, with the child's
//! [`StepHooks`] around each step and what it [`Received`] with its go-ahead.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use super::step::Step;
use crate::runtime::config::{ConfigError, Rlimit};
use crate::runtime::seccomp::sock_filter;
use crate::runtime::sys::ExecArgs;

/// The operations of a plan, in order, each with the step it belongs to.
pub(super) type Ops = Vec<(Step, Op)>;

/// One operation of the child.
#[derive(Debug)]
pub enum Op {
    /// write(2) of fixed bytes to an fd the parent opened.
    WriteFd(RawFd, &'static [u8]),
    /// unshare(2).
    Unshare(CloneFlags),
    /// mount(2).
    Mount {
        /// Source.
        src: Option<CString>,
        /// Target.
        target: CString,
        /// File system type.
        fstype: Option<CString>,
        /// Flags.
        flags: MsFlags,
        /// Options.
        data: Option<CString>,
    },
    /// mkdir(2), existing is fine.
    Mkdir(CString, u32),
    /// mknod(2) of a character device.
    Mknod {
        /// Path.
        path: CString,
        /// Major number.
        major: u64,
        /// Minor number.
        minor: u64,
    },
    /// The rootfs mounted onto itself: the idmapped tree the launcher sent
    /// (move_mount) when there is one, else a recursive bind mount.
    AttachRootfs(CString),
    /// Bind `path` onto itself and remount it read-only (skipped if the
    /// kernel has no such file).
    ReadOnlyPath(CString),
    /// Hide `path`: a read-only empty tmpfs over a directory, `devnull`
    /// bound over a file (skipped if the kernel has no such file).
    Mask {
        /// What to hide.
        path: CString,
        /// The container's /dev/null, bound over files.
        devnull: CString,
    },
    /// sysfs mounted on `sys` with these flags, if the rootfs has `sys`.
    Sysfs(MsFlags),
    /// seccomp(2) of the filter program.
    Seccomp(&'static [sock_filter]),
    /// An empty file, then a bind mount of `src` onto it.
    BindFile {
        /// Host device node.
        src: CString,
        /// Target inside the rootfs.
        target: CString,
    },
    /// symlink(2).
    Symlink {
        /// What it points to.
        target: CString,
        /// The link.
        link: CString,
    },
    /// chdir(2).
    Chdir(CString),
    /// A whole small file written (a sysctl under /proc/sys).
    WriteFile {
        /// The file.
        path: CString,
        /// What to write.
        value: CString,
    },
    /// The container's terminal (see [`crate::runtime::sys::Sys::console`]):
    /// its master sent over this connected unix socket, `/dev/console`
    /// bound to the slave if `bind_console`.
    Console {
        /// The console socket, connected by the launcher.
        socket: RawFd,
        /// Bind the slave on `/dev/console` (the first process, not an exec).
        bind_console: bool,
    },
    /// Wait for `start`: the exec FIFO behind this `O_PATH` fd opened for
    /// writing (see [`crate::runtime::sys::Sys::await_start`]).
    AwaitStart(RawFd),
    /// A lifecycle hook run from the container's process
    /// ([`crate::runtime::sys::Sys::run_hook`]).
    Hook(Box<crate::runtime::hooks::ChildHook>),
    /// pivot_root(".", ".").
    PivotRoot,
    /// umount2(".", MNT_DETACH): the old root, stacked under the new one.
    DetachOldRoot,
    /// chroot(2).
    Chroot(CString),
    /// Bind remount read-only, keeping the flags already there.
    RemountReadOnly(CString),
    /// sethostname(2).
    Hostname(CString),
    /// Loopback up.
    LoopbackUp,
    /// setrlimit(2).
    Rlimit(Rlimit),
    /// Drops every bounding capability up to `last` not in `keep`.
    DropBounding {
        /// Capabilities kept.
        keep: u64,
        /// Highest capability number.
        last: u32,
    },
    /// Clears the ambient set.
    ClearAmbient,
    /// capset(2).
    Capset(u64),
    /// setgroups(0).
    ClearGroups,
    /// setresgid(2).
    SetGid(u32),
    /// setresuid(2).
    SetUid(u32),
    /// PR_SET_NO_NEW_PRIVS.
    NoNewPrivs,
    /// dup2(2).
    Dup2(RawFd, RawFd),
    /// execve(2) of the first candidate that exists.
    Exec,
}

/// The child's whole set-up, ready to run without allocating.
#[derive(Debug)]
pub struct Plan {
    /// The operations, each tagged with its step.
    pub ops: Vec<(Step, Op)>,
    /// Paths to try for the command (one, or one per `PATH` entry).
    pub candidates: Vec<CString>,
    // The strings that `exec.argv` and `exec.envp` point into.
    pub(super) _argv: Vec<CString>,
    pub(super) _envp: Vec<CString>,
    /// Pointer arrays for execve.
    pub exec: ExecArgs,
    /// Mark every fd above 2 close-on-exec before execve.
    pub close_fds: bool,
    /// The fds from 3 on left open for the command (`--preserve-fds`).
    pub preserve_fds: u32,
}

impl Plan {
    /// The steps in the order they run, each once.
    pub fn steps(&self) -> Vec<Step> {
        let mut v: Vec<Step> = Vec::new();
        for (s, _) in &self.ops {
            if v.last() != Some(s) {
                v.push(*s);
            }
        }
        v
    }
}

/// What the launcher learned about the host that shapes the plan.
#[derive(Debug, Clone, Copy)]
pub struct PlanHost {
    /// The kernel's highest capability number.
    pub last_cap: u32,
    /// A devices cgroup allowlist is in effect: the container may keep
    /// `CAP_MKNOD` (mknod of a node it cannot open does no harm). Without
    /// one the capability goes.
    pub devices_allowlist: bool,
    /// The seccomp program to install before exec, if any.
    pub seccomp: Option<&'static [sock_filter]>,
    /// An `O_PATH` fd of the exec FIFO the process waits on before
    /// execve (an OCI `create`), if any.
    pub await_start: Option<RawFd>,
}

/// Where the stdio of the command comes from, as fds already open in the parent.
#[derive(Debug, Clone, Default)]
pub struct StdioFds {
    /// dup2'ed to 0.
    pub stdin: Option<RawFd>,
    /// dup2'ed to 1.
    pub stdout: Option<RawFd>,
    /// dup2'ed to 2.
    pub stderr: Option<RawFd>,
    /// The terminal the command inherits (e.g. `/dev/pts/3`), bind-mounted
    /// to the same path inside so that `tty` and job control find it.
    pub tty: Option<PathBuf>,
    /// A connected console socket: the command gets a terminal of the
    /// container's own instead (`stdin`, `stdout`, `stderr` are then unused).
    pub console: Option<RawFd>,
}

/// What the child does around each step: narrate, pause, report the time.
pub trait StepHooks {
    /// Before the first operation of `step`.
    fn before(&mut self, step: Step, index: usize, total: usize);
    /// After the last operation of `step`.
    fn after(&mut self, step: Step);
    /// A hook of `step` failed (before the step's failure is returned):
    /// the index in its kind's list and [`HookFailure::encode`](crate::runtime::hooks::HookFailure::encode).
    fn hook_failed(&mut self, _step: Step, _index: u32, _code: u32) {}
}

/// What the child received from the launcher with its go-ahead.
#[derive(Debug, Clone, Copy, Default)]
pub struct Received {
    /// A detached, idmapped mount of the rootfs (open_tree(2) +
    /// mount_setattr(2) in the launcher), to attach instead of a bind mount.
    pub rootfs_tree: Option<RawFd>,
    /// The process's PID as the host sees it (the state hooks are given).
    pub host_pid: i32,
}

impl Op {
    /// A new `fstype` file system (`tmpfs`, `proc`) mounted on `target`,
    /// with the file system's name as the source.
    pub(super) fn new_fs(fstype: &str, target: CString, flags: MsFlags, data: Option<&str>) -> Result<Op, ConfigError> {
        Ok(Op::Mount {
            src: Some(cstr(fstype, "fs")?),
            target,
            fstype: Some(cstr(fstype, "fs")?),
            flags,
            data: data.map(|d| cstr(d, "opts")).transpose()?,
        })
    }
}

/// A C string for the child; `what` names it if it holds a NUL byte.
pub(super) fn cstr(s: impl Into<Vec<u8>>, what: &'static str) -> Result<CString, ConfigError> {
    CString::new(s).map_err(|_| ConfigError::Nul { what })
}

/// [`cstr`] of a path.
pub(super) fn path_c(p: &Path, what: &'static str) -> Result<CString, ConfigError> {
    use std::os::unix::ffi::OsStrExt;
    cstr(p.as_os_str().as_bytes(), what)
}

/// A path inside the rootfs, relative: the child works from the rootfs
/// directory once it is attached (see `mounts.rs`).
pub(super) fn under(rel: &str) -> Result<CString, ConfigError> {
    cstr(rel, "rootfs path")
}
