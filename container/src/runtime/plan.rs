//! The container's set-up as data: the parent turns a
//! [`ContainerConfig`](crate::ContainerConfig) into a list of operations
//! with every path already a C string, and the child runs that list through
//! a [`Sys`] until execve(2).
//!
//! The order, and why:
//! 1. The cgroup joined (v1: the child writes `0`, itself, to each `tasks`
//!    file the parent opened; migrating oneself skips the kernel's global
//!    threadgroup lock and its RCU grace period, ~15 ms here), then the
//!    `cgroup` namespace unshared, so its root is the container's cgroup.
//! 2. Mount propagation private: nothing we mount leaks back to the host.
//! 3. The rootfs bind-mounted onto itself: pivot_root needs a mount point.
//! 4. A minimal `/dev` (a tmpfs with six nodes): made before pivot_root,
//!    because inside a user namespace the nodes are bind mounts of the
//!    host's, which are only reachable through the old root.
//! 5. `/proc` for the new PID namespace and `/tmp` as a tmpfs, mounted into
//!    the rootfs still before pivot_root: inside a user namespace the kernel
//!    only allows a new proc mount while a fully visible one exists in the
//!    mount namespace (`mount_too_revealing`), and the host's goes away with
//!    the old root.
//! 6. pivot_root(".", ".") and the old root detached: the host's tree is no
//!    longer reachable at all (chroot only moves where `/` resolves). Then
//!    the root made read-only if asked (after the last mount into it).
//! 7. Hostname, loopback up, rlimits.
//! 8. Capabilities: bounding set and ambient set cleared down to
//!    [`DEFAULT_CAPS`], while still root; then the user switch; then
//!    no_new_privs, so nothing the command runs can gain privileges again.
//! 9. Working directory, stdio, close-on-exec for every other fd, execve.

use std::ffi::{CStr, CString};
use std::os::fd::RawFd;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use crate::runtime::config::{ConfigError, ContainerConfig, Rlimit};
use crate::runtime::sys::{ExecArgs, Sys};

/// One step of a container's life, as reported in timings, errors and
/// `--explain`. Steps up to `Exec` run in the child; `Clone`, `UserMaps`,
/// `Cgroup`, `Ready` and `Exit` are seen by the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[repr(u32)]
pub enum Step {
    /// clone(2) with the namespace flags.
    Clone = 1,
    /// uid_map/gid_map written (setgroups denied first).
    UserMaps,
    /// The child moved into its cgroup.
    Cgroup,
    /// The child took the user namespace's root ids.
    NsRoot,
    /// unshare(CLONE_NEWCGROUP).
    CgroupNs,
    /// Mount propagation made private.
    Propagation,
    /// rootfs bind-mounted onto itself.
    BindRootfs,
    /// Minimal /dev.
    Dev,
    /// pivot_root and the old root detached.
    PivotRoot,
    /// chroot (when there is no mount namespace).
    Chroot,
    /// /proc mounted.
    Proc,
    /// The host's kernel files in /proc masked or made read-only.
    ProcMasks,
    /// /tmp tmpfs mounted.
    Tmp,
    /// Root remounted read-only.
    ReadOnly,
    /// sethostname.
    Hostname,
    /// Loopback interface up.
    Loopback,
    /// setrlimit.
    Rlimits,
    /// Capabilities dropped.
    Capabilities,
    /// setgid/setuid.
    User,
    /// PR_SET_NO_NEW_PRIVS.
    NoNewPrivs,
    /// The seccomp filter installed.
    Seccomp,
    /// chdir to the working directory.
    Workdir,
    /// stdin/stdout/stderr set up.
    Stdio,
    /// execve called (stamped by the child just before the call; the
    /// parent learns that it succeeded when the channel closes).
    Exec,
    /// The workload printed its ready line.
    Ready,
    /// The command exited.
    Exit,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 26] = [
        Step::Clone,
        Step::UserMaps,
        Step::Cgroup,
        Step::CgroupNs,
        Step::Propagation,
        Step::BindRootfs,
        Step::NsRoot,
        Step::Dev,
        Step::PivotRoot,
        Step::Chroot,
        Step::Proc,
        Step::ProcMasks,
        Step::Tmp,
        Step::ReadOnly,
        Step::Hostname,
        Step::Loopback,
        Step::Rlimits,
        Step::Capabilities,
        Step::User,
        Step::NoNewPrivs,
        Step::Seccomp,
        Step::Workdir,
        Step::Stdio,
        Step::Exec,
        Step::Ready,
        Step::Exit,
    ];

    /// From the number sent over the channel.
    pub fn from_u32(n: u32) -> Option<Step> {
        Step::ALL.iter().copied().find(|s| *s as u32 == n)
    }

    /// A short name (`pivot_root`, `user_maps`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Step::Clone => "clone",
            Step::UserMaps => "user_maps",
            Step::Cgroup => "cgroup",
            Step::NsRoot => "ns_root",
            Step::CgroupNs => "cgroup_ns",
            Step::Propagation => "propagation",
            Step::BindRootfs => "bind_rootfs",
            Step::Dev => "dev",
            Step::PivotRoot => "pivot_root",
            Step::Chroot => "chroot",
            Step::Proc => "proc",
            Step::ProcMasks => "proc_masks",
            Step::Tmp => "tmp",
            Step::ReadOnly => "read_only",
            Step::Hostname => "hostname",
            Step::Loopback => "loopback",
            Step::Rlimits => "rlimits",
            Step::Capabilities => "capabilities",
            Step::User => "user",
            Step::NoNewPrivs => "no_new_privs",
            Step::Seccomp => "seccomp",
            Step::Workdir => "workdir",
            Step::Stdio => "stdio",
            Step::Exec => "exec",
            Step::Ready => "ready",
            Step::Exit => "exit",
        }
    }

    /// The system call(s) behind the step.
    pub fn syscall(self) -> &'static str {
        match self {
            Step::Clone => "clone(CLONE_NEW* | SIGCHLD)",
            Step::UserMaps => "write /proc/PID/setgroups (deny), /proc/PID/uid_map, /proc/PID/gid_map",
            Step::Cgroup => "mkdir /sys/fs/cgroup/.../virtlab-ID, write limits; join: write 0 to tasks (v1, by the child) or PID to cgroup.procs (v2)",
            Step::NsRoot => "setresgid(0, 0, 0); setresuid(0, 0, 0) inside the user namespace",
            Step::CgroupNs => "unshare(CLONE_NEWCGROUP)",
            Step::Propagation => "mount(NULL, \"/\", NULL, MS_REC|MS_PRIVATE, NULL)",
            Step::BindRootfs => "move_mount(idmapped tree of rootfs, rootfs) (or mount(rootfs, rootfs, NULL, MS_BIND|MS_REC, NULL)); chdir(rootfs)",
            Step::Dev => "mkdir proc, dev, tmp if missing; mount(\"tmpfs\", dev), mknod or bind null zero full random urandom tty",
            Step::PivotRoot => "pivot_root(\".\", \".\") in the rootfs; umount2(\".\", MNT_DETACH)",
            Step::Chroot => "chroot(rootfs); chdir(\"/\")",
            Step::Proc => "mount(\"proc\", rootfs/proc, \"proc\", MS_NOSUID|MS_NODEV|MS_NOEXEC)",
            Step::ProcMasks => "mount(/dev/null or a read-only tmpfs over /proc/kcore, keys, timer_list, ...); mount(MS_BIND|MS_REMOUNT|MS_RDONLY) on /proc/sys, irq, bus, fs, sysrq-trigger",
            Step::Tmp => "mount(\"tmpfs\", rootfs/tmp, \"tmpfs\", MS_NOSUID|MS_NODEV, \"mode=1777\")",
            Step::ReadOnly => "mount(NULL, \"/\", NULL, MS_REMOUNT|MS_BIND|MS_RDONLY, NULL)",
            Step::Hostname => "sethostname(name)",
            Step::Loopback => "socket(AF_INET); ioctl(SIOCSIFFLAGS, \"lo\", IFF_UP)",
            Step::Rlimits => "setrlimit(RLIMIT_NOFILE, RLIMIT_CORE)",
            Step::Capabilities => "prctl(PR_CAPBSET_DROP) for each capability not kept; capset(kept)",
            Step::User => "setgroups(0); setresgid(gid); setresuid(uid)",
            Step::NoNewPrivs => "prctl(PR_SET_NO_NEW_PRIVS, 1)",
            Step::Seccomp => "seccomp(SECCOMP_SET_MODE_FILTER, 0, filter): Docker's denied calls EPERM, unknown ones ENOSYS",
            Step::Workdir => "chdir(workdir)",
            Step::Stdio => "dup2(pipe, 1), dup2(pipe, 2)",
            Step::Exec => "execve(command, argv, envp)",
            Step::Ready => "(the workload writes its ready line)",
            Step::Exit => "waitid(pidfd)",
        }
    }

    /// The idea of the course notes (section 2, Containers) the step shows.
    pub fn idea(self) -> &'static str {
        match self {
            Step::Clone => "a container is an ordinary host process; namespaces give it its own view of the process tree, network, users and mounts",
            Step::UserMaps => "user IDs are a namespace too: root inside maps to an ordinary ID range outside",
            Step::Cgroup => "cgroups limit and account resources: memory, CPU, number of processes",
            Step::NsRoot => "the first process becomes root of its user namespace, which is an unprivileged host id outside",
            Step::CgroupNs => "the container sees its own cgroup as the root of the cgroup tree",
            Step::Propagation => "mount namespaces: from here on, nothing mounted inside is seen by the host",
            Step::BindRootfs => "the application's files, without an OS: the image is just a directory",
            Step::Dev => "only a handful of devices, not the host's hardware",
            Step::PivotRoot => "a directory seen as / (what chroot is in the notes), done so that the host's tree is gone, not just hidden",
            Step::Chroot => "a directory seen as / (chroot): without a mount namespace this can be escaped",
            Step::Proc => "process isolation: /proc lists only the container's own processes",
            Step::ProcMasks => "/proc also shows the host kernel itself (its memory, keyrings, sysctls): those files are hidden or read-only",
            Step::Tmp => "a private scratch area in memory",
            Step::ReadOnly => "immutable images: the container cannot change its own files",
            Step::Hostname => "behaves like a separate server: its own hostname (UTS namespace)",
            Step::Loopback => "its own network stack: only a loopback interface",
            Step::Rlimits => "per-process limits on top of the cgroup's",
            Step::Capabilities => "isolation rests on the kernel: root inside keeps only a few privileges",
            Step::User => "the command runs as the user asked for",
            Step::NoNewPrivs => "no setuid binary can give privileges back",
            Step::Seccomp => "the container shares the host kernel, so the calls that reach host-wide state are cut off",
            Step::Workdir => "the command starts where it expects to",
            Step::Stdio => "the launcher collects the output",
            Step::Exec => "the host kernel runs the application directly: no guest OS to boot",
            Step::Ready => "the workload is running: containers start fast",
            Step::Exit => "the container is gone when its first process exits",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Linux capability numbers (capabilities(7)).
pub mod cap {
    #![allow(missing_docs)]
    pub const CHOWN: u32 = 0;
    pub const DAC_OVERRIDE: u32 = 1;
    pub const FOWNER: u32 = 3;
    pub const FSETID: u32 = 4;
    pub const KILL: u32 = 5;
    pub const SETGID: u32 = 6;
    pub const SETUID: u32 = 7;
    pub const SETPCAP: u32 = 8;
    pub const NET_BIND_SERVICE: u32 = 10;
    pub const NET_RAW: u32 = 13;
    pub const SYS_CHROOT: u32 = 18;
    pub const SYS_ADMIN: u32 = 21;
    pub const SYS_BOOT: u32 = 22;
    pub const MKNOD: u32 = 27;
    pub const AUDIT_WRITE: u32 = 29;
    pub const SETFCAP: u32 = 31;
}

/// The capabilities root in the container keeps: Docker's default set.
/// Left out, among others: `CAP_SYS_ADMIN` (mount, pivot_root, sethostname,
/// unshare), `CAP_SYS_BOOT` (reboot), `CAP_NET_ADMIN`, `CAP_SYS_MODULE`,
/// `CAP_SYS_PTRACE`, `CAP_SYS_TIME`.
pub const DEFAULT_CAPS: &[(u32, &str)] = &[
    (cap::CHOWN, "CAP_CHOWN"),
    (cap::DAC_OVERRIDE, "CAP_DAC_OVERRIDE"),
    (cap::FOWNER, "CAP_FOWNER"),
    (cap::FSETID, "CAP_FSETID"),
    (cap::KILL, "CAP_KILL"),
    (cap::SETGID, "CAP_SETGID"),
    (cap::SETUID, "CAP_SETUID"),
    (cap::SETPCAP, "CAP_SETPCAP"),
    (cap::NET_BIND_SERVICE, "CAP_NET_BIND_SERVICE"),
    (cap::NET_RAW, "CAP_NET_RAW"),
    (cap::SYS_CHROOT, "CAP_SYS_CHROOT"),
    (cap::MKNOD, "CAP_MKNOD"),
    (cap::AUDIT_WRITE, "CAP_AUDIT_WRITE"),
    (cap::SETFCAP, "CAP_SETFCAP"),
];

/// [`DEFAULT_CAPS`] as a bit mask.
pub fn default_cap_mask() -> u64 {
    DEFAULT_CAPS.iter().fold(0, |m, (c, _)| m | (1u64 << c))
}

/// The highest capability number this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|t| t.trim().parse().ok()).unwrap_or(40)
}

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
    /// seccomp(2) of the filter program.
    Seccomp(&'static [crate::runtime::seccomp::sock_filter]),
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
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    /// Pointer arrays for execve.
    pub exec: ExecArgs,
}

/// Files of /proc hidden from the container (Docker's masked paths): the
/// host's physical memory, keyrings, timers and scheduler internals,
/// firmware tables, SCSI and sound devices.
pub const MASKED_PATHS: [&str; 9] = [
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
];

/// Files of /proc the container may read but not write (Docker's read-only
/// paths): the host's sysctls, interrupt routing, buses, file systems, and
/// the magic SysRq trigger.
pub const READ_ONLY_PATHS: [&str; 5] = ["proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"];

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
    pub seccomp: Option<&'static [crate::runtime::seccomp::sock_filter]>,
}

/// The `PATH` inside the container.
pub const DEFAULT_PATH: &str = "/bin:/sbin:/usr/bin:/usr/sbin:/usr/local/bin";

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
    pub tty: Option<std::path::PathBuf>,
}

fn cstr(s: impl Into<Vec<u8>>, what: &'static str) -> Result<CString, ConfigError> {
    CString::new(s).map_err(|_| ConfigError::Nul { what })
}

fn path_c(p: &std::path::Path, what: &'static str) -> Result<CString, ConfigError> {
    use std::os::unix::ffi::OsStrExt;
    cstr(p.as_os_str().as_bytes(), what)
}

/// The command's candidate paths inside the container: itself if it holds a
/// `/`, else one per `PATH` entry.
pub fn command_candidates(cmd: &str, path_var: &str) -> Vec<String> {
    if cmd.contains('/') {
        return vec![cmd.to_string()];
    }
    path_var.split(':').filter(|d| !d.is_empty()).map(|d| format!("{}/{cmd}", d.trim_end_matches('/'))).collect()
}

/// The environment of the command: `PATH`, `HOME`, `HOSTNAME`, `TERM` (from
/// the launcher, when set), then the configured variables, later ones winning.
pub fn environment(cfg: &ContainerConfig) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOME".into(), "/".into()),
        ("HOSTNAME".into(), cfg.hostname.clone()),
    ];
    if let Ok(t) = std::env::var("TERM") {
        env.push(("TERM".into(), t));
    }
    for (k, v) in &cfg.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

impl Plan {
    /// Builds the plan for `cfg`. `rootfs` is the absolute rootfs path;
    /// `host` what the launcher found out about the host.
    /// `join_fds` are cgroup v1 `tasks` files opened by the parent: the
    /// child joins its cgroup by writing `0` (itself) to each.
    pub fn build(
        cfg: &ContainerConfig,
        rootfs: &std::path::Path,
        stdio: StdioFds,
        join_fds: &[RawFd],
        host: PlanHost,
    ) -> Result<Plan, ConfigError> {
        let ns = cfg.namespaces;
        let mut ops: Vec<(Step, Op)> = Vec::new();
        let root = path_c(rootfs, "rootfs path")?;
        // Paths inside the rootfs are relative: the child works from its
        // directory once it is attached (see NsRoot below).
        let under = |rel: &str| cstr(rel, "rootfs path");
        // clone(2) kept the launcher's host ids, which the namespace may not
        // map (as root, container root is another host id): until the child
        // takes the namespace's own root ids, files it creates would have no
        // owner (EOVERFLOW). Once it has, it may no longer pass through a
        // host directory closed to others (/root, 0700), so it takes them
        // only after it stands in the rootfs.
        let ns_root = |ops: &mut Vec<(Step, Op)>| {
            if ns.user {
                ops.push((Step::NsRoot, Op::SetGid(0)));
                ops.push((Step::NsRoot, Op::SetUid(0)));
            }
        };
        for fd in join_fds {
            ops.push((Step::Cgroup, Op::WriteFd(*fd, b"0")));
        }
        if ns.cgroup {
            ops.push((Step::CgroupNs, Op::Unshare(CloneFlags::CLONE_NEWCGROUP)));
        }
        if ns.mnt {
            ops.push((
                Step::Propagation,
                Op::Mount {
                    src: None,
                    target: cstr("/", "path")?,
                    fstype: None,
                    flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    data: None,
                },
            ));
            ops.push((Step::BindRootfs, Op::AttachRootfs(root.clone())));
            ops.push((Step::BindRootfs, Op::Chdir(root.clone())));
            ns_root(&mut ops);
            for d in ["proc", "dev", "tmp"] {
                ops.push((Step::Dev, Op::Mkdir(under(d)?, 0o755)));
            }
            ops.push((
                Step::Dev,
                Op::Mount {
                    src: Some(cstr("tmpfs", "fs")?),
                    target: under("dev")?,
                    fstype: Some(cstr("tmpfs", "fs")?),
                    flags: MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
                    data: Some(cstr("mode=755,size=64k", "opts")?),
                },
            ));
            let nodes: [(&str, u64, u64); 6] =
                [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];
            for (name, major, minor) in nodes {
                let path = under(&format!("dev/{name}"))?;
                if ns.user {
                    // mknod is refused in a user namespace: bind the host's node.
                    ops.push((Step::Dev, Op::BindFile { src: cstr(format!("/dev/{name}"), "dev")?, target: path }));
                } else {
                    ops.push((Step::Dev, Op::Mknod { path, major, minor }));
                }
            }
            if let Some(tty) = stdio.tty.as_deref().and_then(|t| t.strip_prefix("/dev/pts").ok()) {
                ops.push((Step::Dev, Op::Mkdir(under("dev/pts")?, 0o755)));
                let host = std::path::Path::new("/dev/pts").join(tty);
                let inside = std::path::Path::new("dev/pts").join(tty);
                ops.push((Step::Dev, Op::BindFile { src: path_c(&host, "tty")?, target: path_c(&inside, "tty")? }));
            }
            for (link, target) in [
                ("fd", "/proc/self/fd"),
                ("stdin", "/proc/self/fd/0"),
                ("stdout", "/proc/self/fd/1"),
                ("stderr", "/proc/self/fd/2"),
            ] {
                ops.push((
                    Step::Dev,
                    Op::Symlink { target: cstr(target, "dev")?, link: under(&format!("dev/{link}"))? },
                ));
            }
            ops.push((
                Step::Proc,
                Op::Mount {
                    src: Some(cstr("proc", "fs")?),
                    target: under("proc")?,
                    fstype: Some(cstr("proc", "fs")?),
                    flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                    data: None,
                },
            ));
            let devnull = under("dev/null")?;
            for p in MASKED_PATHS {
                ops.push((Step::ProcMasks, Op::Mask { path: under(p)?, devnull: devnull.clone() }));
            }
            for p in READ_ONLY_PATHS {
                ops.push((Step::ProcMasks, Op::ReadOnlyPath(under(p)?)));
            }
            ops.push((
                Step::Tmp,
                Op::Mount {
                    src: Some(cstr("tmpfs", "fs")?),
                    target: under("tmp")?,
                    fstype: Some(cstr("tmpfs", "fs")?),
                    flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    data: Some(cstr("mode=1777", "opts")?),
                },
            ));
            // The working directory is the rootfs since BindRootfs.
            ops.push((Step::PivotRoot, Op::PivotRoot));
            ops.push((Step::PivotRoot, Op::DetachOldRoot));
            ops.push((Step::PivotRoot, Op::Chdir(cstr("/", "path")?)));
            if cfg.read_only {
                ops.push((Step::ReadOnly, Op::RemountReadOnly(cstr("/", "path")?)));
            }
        } else {
            if cfg.read_only {
                return Err(ConfigError::NeedsNamespace { what: "--read-only", ns: "mnt" });
            }
            ops.push((Step::Chroot, Op::Chroot(root.clone())));
            ops.push((Step::Chroot, Op::Chdir(cstr("/", "path")?)));
            ns_root(&mut ops);
        }
        if ns.uts {
            ops.push((Step::Hostname, Op::Hostname(cstr(cfg.hostname.as_str(), "hostname")?)));
        }
        if ns.net {
            ops.push((Step::Loopback, Op::LoopbackUp));
        }
        for r in &cfg.rlimits {
            ops.push((Step::Rlimits, Op::Rlimit(*r)));
        }
        let mut keep = default_cap_mask();
        if !host.devices_allowlist {
            keep &= !(1u64 << cap::MKNOD);
        }
        ops.push((Step::Capabilities, Op::DropBounding { keep, last: host.last_cap }));
        ops.push((Step::Capabilities, Op::ClearAmbient));
        ops.push((Step::Capabilities, Op::Capset(keep)));
        if let Some(u) = cfg.user {
            // With a user namespace, setgroups is denied (that is what lets
            // gid_map be written); the groups are then the ones mapped.
            if !ns.user {
                ops.push((Step::User, Op::ClearGroups));
            }
            ops.push((Step::User, Op::SetGid(u.gid)));
            ops.push((Step::User, Op::SetUid(u.uid)));
        }
        ops.push((Step::NoNewPrivs, Op::NoNewPrivs));
        if let Some(program) = host.seccomp {
            ops.push((Step::Seccomp, Op::Seccomp(program)));
        }
        ops.push((Step::Workdir, Op::Chdir(path_c(&cfg.workdir, "workdir")?)));
        for (fd, to) in [(stdio.stdin, 0), (stdio.stdout, 1), (stdio.stderr, 2)] {
            if let Some(fd) = fd {
                ops.push((Step::Stdio, Op::Dup2(fd, to)));
            }
        }
        ops.push((Step::Exec, Op::Exec));

        let cmd = cfg.argv.first().ok_or(ConfigError::NoCommand)?;
        let env = environment(cfg);
        let path_var = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_str()).unwrap_or(DEFAULT_PATH);
        let candidates =
            command_candidates(cmd, path_var).into_iter().map(|c| cstr(c, "command")).collect::<Result<Vec<_>, _>>()?;
        let argv = cfg.argv.iter().map(|a| cstr(a.as_str(), "argument")).collect::<Result<Vec<_>, _>>()?;
        let envp = env.iter().map(|(k, v)| cstr(format!("{k}={v}"), "environment")).collect::<Result<Vec<_>, _>>()?;
        let ptrs = |v: &[CString]| {
            let mut p: Vec<*const libc::c_char> = v.iter().map(|c| c.as_ptr()).collect();
            p.push(std::ptr::null());
            p
        };
        let exec = ExecArgs { argv: ptrs(&argv), envp: ptrs(&envp) };
        Ok(Plan { ops, candidates, _argv: argv, _envp: envp, exec })
    }

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

/// What the child does around each step: narrate, pause, report the time.
pub trait StepHooks {
    /// Before the first operation of `step`.
    fn before(&mut self, step: Step, index: usize, total: usize);
    /// After the last operation of `step`.
    fn after(&mut self, step: Step);
}

/// What the child received from the launcher with its go-ahead.
#[derive(Debug, Clone, Copy, Default)]
pub struct Received {
    /// A detached, idmapped mount of the rootfs (open_tree(2) +
    /// mount_setattr(2) in the launcher), to attach instead of a bind mount.
    pub rootfs_tree: Option<RawFd>,
}

/// Runs the plan. Returns only on failure (execve does not return on
/// success), with the step and errno that failed.
pub fn run_plan<S: Sys, H: StepHooks>(sys: &S, plan: &Plan, received: Received, hooks: &mut H) -> (Step, Errno) {
    let total = count_steps(plan);
    let mut current: Option<Step> = None;
    let mut index = 0;
    for (step, op) in &plan.ops {
        if current != Some(*step) {
            if let Some(prev) = current {
                hooks.after(prev);
            }
            index += 1;
            hooks.before(*step, index, total);
            current = Some(*step);
        }
        if let Err(e) = run_op(sys, plan, received, op) {
            return (*step, e);
        }
    }
    // Only reached if the plan had no Exec.
    (Step::Exec, Errno::ENOEXEC)
}

fn count_steps(plan: &Plan) -> usize {
    let mut n = 0;
    let mut prev: Option<Step> = None;
    for (s, _) in &plan.ops {
        if prev != Some(*s) {
            n += 1;
            prev = Some(*s);
        }
    }
    n
}

/// Bind `path` onto itself, then remount it read-only keeping the flags
/// already on it (a user namespace may not clear nosuid, nodev, ...).
fn bind_read_only<S: Sys>(sys: &S, path: &CStr) -> Result<(), Errno> {
    sys.mount(Some(path), path, None, MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    remount_read_only(sys, path)
}

fn remount_read_only<S: Sys>(sys: &S, path: &CStr) -> Result<(), Errno> {
    let kept = sys.mount_flags(path)?;
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | kept;
    sys.mount(None, path, None, flags, None)
}

/// A file the kernel does not have (no ACPI, no SCSI, ...) needs no hiding.
fn unless_missing(r: Result<(), Errno>) -> Result<(), Errno> {
    match r {
        Err(Errno::ENOENT) => Ok(()),
        r => r,
    }
}

fn run_op<S: Sys>(sys: &S, plan: &Plan, received: Received, op: &Op) -> Result<(), Errno> {
    let dot: &CStr = c".";
    match op {
        Op::AttachRootfs(root) => match received.rootfs_tree {
            // The launcher made the tree private already.
            Some(tree) => sys.move_mount(tree, root),
            None => sys.mount(Some(root), root, None, MsFlags::MS_BIND | MsFlags::MS_REC, None),
        },
        Op::ReadOnlyPath(p) => unless_missing(bind_read_only(sys, p)),
        Op::Mask { path, devnull } => {
            let ro = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            let tmpfs: &CStr = c"tmpfs";
            match sys.mount(Some(tmpfs), path, Some(tmpfs), ro, Some(c"mode=555")) {
                Err(Errno::ENOTDIR) => unless_missing(sys.mount(Some(devnull), path, None, MsFlags::MS_BIND, None)),
                r => unless_missing(r),
            }
        }
        Op::Seccomp(program) => sys.seccomp(program),
        Op::WriteFd(fd, bytes) => sys.write_fd(*fd, bytes),
        Op::Unshare(f) => sys.unshare(*f),
        Op::Mount { src, target, fstype, flags, data } => {
            sys.mount(src.as_deref(), target, fstype.as_deref(), *flags, data.as_deref())
        }
        Op::Mkdir(p, mode) => sys.mkdir(p, *mode),
        Op::Mknod { path, major, minor } => sys.mknod_char(path, 0o666, *major, *minor),
        Op::BindFile { src, target } => {
            sys.touch(target)?;
            sys.mount(Some(src), target, None, MsFlags::MS_BIND, None)
        }
        Op::Symlink { target, link } => sys.symlink(target, link),
        Op::Chdir(p) => sys.chdir(p),
        Op::PivotRoot => sys.pivot_root(dot, dot),
        Op::DetachOldRoot => sys.umount2(dot, MntFlags::MNT_DETACH),
        Op::Chroot(p) => sys.chroot(p),
        Op::RemountReadOnly(p) => remount_read_only(sys, p),
        Op::Hostname(h) => sys.sethostname(h),
        Op::LoopbackUp => sys.loopback_up(),
        Op::Rlimit(r) => sys.setrlimit(r.resource, r.soft, r.hard),
        Op::DropBounding { keep, last } => {
            for c in 0..=*last {
                if c < 64 && keep & (1u64 << c) == 0 {
                    sys.drop_bounding(c)?;
                }
            }
            Ok(())
        }
        Op::ClearAmbient => sys.clear_ambient(),
        Op::Capset(keep) => sys.capset(*keep),
        Op::ClearGroups => sys.clear_groups(),
        Op::SetGid(g) => sys.setgid(*g),
        Op::SetUid(u) => sys.setuid(*u),
        Op::NoNewPrivs => sys.no_new_privs(),
        Op::Dup2(from, to) => sys.dup2(*from, *to),
        Op::Exec => {
            sys.cloexec_from_3()?;
            // Like execvp: remember the most telling error across candidates.
            let mut err = Errno::ENOENT;
            for c in &plan.candidates {
                match sys.execve(c, &plan.exec) {
                    Errno::ENOENT | Errno::ENOTDIR => {}
                    e => err = e,
                }
            }
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::{Namespaces, User};
    use std::cell::RefCell;
    use std::path::Path;

    /// Records every call; fails the call whose text starts with `fail`.
    #[derive(Default)]
    struct Recorder {
        calls: RefCell<Vec<String>>,
        fail: Option<&'static str>,
    }

    impl Recorder {
        fn rec(&self, s: String) -> Result<(), Errno> {
            let failing = self.fail.is_some_and(|f| s.starts_with(f));
            self.calls.borrow_mut().push(s);
            if failing {
                Err(Errno::EPERM)
            } else {
                Ok(())
            }
        }
    }

    fn s(c: &CStr) -> String {
        c.to_string_lossy().into_owned()
    }

    impl Sys for Recorder {
        fn mount(
            &self,
            src: Option<&CStr>,
            t: &CStr,
            fs: Option<&CStr>,
            fl: MsFlags,
            _d: Option<&CStr>,
        ) -> Result<(), Errno> {
            let src = src.map(s).unwrap_or_else(|| "NULL".into());
            let fs = fs.map(s).unwrap_or_else(|| "NULL".into());
            let ro = if fl.contains(MsFlags::MS_RDONLY) { ",ro" } else { "" };
            self.rec(format!("mount {src} {} {fs}{ro}", s(t)))
        }
        fn umount2(&self, t: &CStr, _f: MntFlags) -> Result<(), Errno> {
            self.rec(format!("umount2 {}", s(t)))
        }
        fn pivot_root(&self, n: &CStr, o: &CStr) -> Result<(), Errno> {
            self.rec(format!("pivot_root {} {}", s(n), s(o)))
        }
        fn chroot(&self, p: &CStr) -> Result<(), Errno> {
            self.rec(format!("chroot {}", s(p)))
        }
        fn chdir(&self, p: &CStr) -> Result<(), Errno> {
            self.rec(format!("chdir {}", s(p)))
        }
        fn mkdir(&self, p: &CStr, _m: u32) -> Result<(), Errno> {
            self.rec(format!("mkdir {}", s(p)))
        }
        fn mknod_char(&self, p: &CStr, _m: u32, ma: u64, mi: u64) -> Result<(), Errno> {
            self.rec(format!("mknod {} {ma}:{mi}", s(p)))
        }
        fn touch(&self, p: &CStr) -> Result<(), Errno> {
            self.rec(format!("touch {}", s(p)))
        }
        fn symlink(&self, t: &CStr, l: &CStr) -> Result<(), Errno> {
            self.rec(format!("symlink {} {}", s(l), s(t)))
        }
        fn mount_flags(&self, _p: &CStr) -> Result<MsFlags, Errno> {
            Ok(MsFlags::MS_NOSUID)
        }
        fn unshare(&self, f: CloneFlags) -> Result<(), Errno> {
            self.rec(format!("unshare {:#x}", f.bits()))
        }
        fn write_fd(&self, fd: RawFd, b: &[u8]) -> Result<(), Errno> {
            self.rec(format!("write {fd} {}", String::from_utf8_lossy(b)))
        }
        fn sethostname(&self, n: &CStr) -> Result<(), Errno> {
            self.rec(format!("sethostname {}", s(n)))
        }
        fn loopback_up(&self) -> Result<(), Errno> {
            self.rec("loopback_up".into())
        }
        fn setrlimit(&self, r: i32, so: u64, h: u64) -> Result<(), Errno> {
            self.rec(format!("setrlimit {r} {so} {h}"))
        }
        fn drop_bounding(&self, c: u32) -> Result<(), Errno> {
            self.rec(format!("capbset_drop {c}"))
        }
        fn clear_ambient(&self) -> Result<(), Errno> {
            self.rec("clear_ambient".into())
        }
        fn capset(&self, k: u64) -> Result<(), Errno> {
            self.rec(format!("capset {k:#x}"))
        }
        fn clear_groups(&self) -> Result<(), Errno> {
            self.rec("setgroups 0".into())
        }
        fn setgid(&self, g: u32) -> Result<(), Errno> {
            self.rec(format!("setgid {g}"))
        }
        fn setuid(&self, u: u32) -> Result<(), Errno> {
            self.rec(format!("setuid {u}"))
        }
        fn no_new_privs(&self) -> Result<(), Errno> {
            self.rec("no_new_privs".into())
        }
        fn dup2(&self, f: RawFd, t: RawFd) -> Result<(), Errno> {
            self.rec(format!("dup2 {f} {t}"))
        }
        fn cloexec_from_3(&self) -> Result<(), Errno> {
            self.rec("cloexec_from_3".into())
        }
        fn move_mount(&self, fd: RawFd, t: &CStr) -> Result<(), Errno> {
            self.rec(format!("move_mount {fd} {}", s(t)))
        }
        fn seccomp(&self, p: &[crate::runtime::seccomp::sock_filter]) -> Result<(), Errno> {
            self.rec(format!("seccomp {}", p.len()))
        }
        fn execve(&self, p: &CStr, _a: &ExecArgs) -> Errno {
            let _ = self.rec(format!("execve {}", s(p)));
            Errno::ENOENT
        }
    }

    #[derive(Default)]
    struct Steps(Vec<String>);
    impl StepHooks for Steps {
        fn before(&mut self, step: Step, i: usize, n: usize) {
            self.0.push(format!("{i}/{n} {step}"));
        }
        fn after(&mut self, step: Step) {
            self.0.push(format!("done {step}"));
        }
    }

    fn host() -> PlanHost {
        PlanHost { last_cap: 40, devices_allowlist: true, seccomp: None }
    }

    fn cfg(ns: Namespaces) -> ContainerConfig {
        let mut c = ContainerConfig::new("/r", vec!["sh".into(), "-c".into(), "true".into()]);
        c.namespaces = ns;
        c
    }

    fn position(calls: &[String], prefix: &str) -> usize {
        calls.iter().position(|c| c.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} in {calls:#?}"))
    }

    #[test]
    fn full_namespace_set_runs_in_the_documented_order() {
        let mut c = cfg(Namespaces::ALL);
        c.read_only = true;
        c.user = Some(User { uid: 1000, gid: 100 });
        let program = crate::runtime::seccomp::default_program().unwrap();
        let h = PlanHost { seccomp: Some(program), ..host() };
        let plan =
            Plan::build(&c, Path::new("/r"), StdioFds { stdout: Some(7), ..Default::default() }, &[9], h).unwrap();
        let sys = Recorder::default();
        let mut hooks = Steps::default();
        let (step, errno) = run_plan(&sys, &plan, Received::default(), &mut hooks);
        // The fake's execve fails with ENOENT for every PATH entry.
        assert_eq!((step, errno), (Step::Exec, Errno::ENOENT));
        let calls = sys.calls.into_inner();
        let order = [
            "write 9 0",
            "unshare",
            "mount NULL / NULL",
            "mount /r /r NULL",
            "chdir /r",
            "setgid 0",
            "setuid 0",
            "mkdir proc",
            "mount tmpfs dev tmpfs",
            "touch dev/null",
            "mount /dev/null dev/null",
            "mount proc proc proc",
            "mount tmpfs proc/acpi tmpfs,ro",
            "mount tmpfs proc/keys tmpfs,ro",
            "mount proc/sys proc/sys NULL",
            "mount NULL proc/sys NULL,ro",
            "mount tmpfs tmp tmpfs",
            "pivot_root . .",
            "umount2 .",
            "chdir /",
            "mount NULL / NULL,ro",
            "sethostname virtlab",
            "loopback_up",
            "setrlimit",
            "capbset_drop 2",
            "clear_ambient",
            "capset",
            "setgid 100",
            "setuid 1000",
            "no_new_privs",
            &format!("seccomp {}", program.len()),
            "chdir /",
            "dup2 7 1",
            "cloexec_from_3",
            "execve /bin/sh",
        ];
        let mut last = 0;
        for want in order {
            let p = calls[last..].iter().position(|c| c.starts_with(want)).map(|p| p + last);
            let p = p.unwrap_or_else(|| panic!("{want:?} missing after {:?} in {calls:#?}", calls.get(last)));
            last = p;
        }
        // In a user namespace the device nodes are bind mounts, never mknod,
        // and setgroups is left alone (it is denied).
        assert!(!calls.iter().any(|c| c.starts_with("mknod") || c.starts_with("setgroups")));
        // The kept capabilities are not dropped from the bounding set; the rest are.
        assert!(!calls.contains(&format!("capbset_drop {}", cap::SETUID)));
        assert!(calls.contains(&format!("capbset_drop {}", cap::SYS_ADMIN)));
        assert!(calls.contains(&format!("capbset_drop {}", cap::SYS_BOOT)));
        assert_eq!(hooks.0.first().map(String::as_str), Some("1/21 cgroup"));
        // With a devices allowlist, CAP_MKNOD is kept (Docker's default set).
        assert!(!calls.contains(&format!("capbset_drop {}", cap::MKNOD)));
        assert!(hooks.0.contains(&"done pivot_root".to_string()));
    }

    #[test]
    fn an_idmapped_tree_is_attached_instead_of_a_bind_mount() {
        let plan = Plan::build(&cfg(Namespaces::ALL), Path::new("/r"), StdioFds::default(), &[], host()).unwrap();
        let sys = Recorder::default();
        run_plan(&sys, &plan, Received { rootfs_tree: Some(5) }, &mut Steps::default());
        let calls = sys.calls.into_inner();
        assert!(position(&calls, "move_mount 5 /r") < position(&calls, "pivot_root"));
        assert!(!calls.iter().any(|c| c.starts_with("mount /r /r")), "{calls:#?}");
    }

    #[test]
    fn without_a_devices_allowlist_cap_mknod_goes() {
        let h = PlanHost { devices_allowlist: false, ..host() };
        let plan =
            Plan::build(&cfg(Namespaces::parse("mnt,pid").unwrap()), Path::new("/r"), StdioFds::default(), &[], h)
                .unwrap();
        let sys = Recorder::default();
        run_plan(&sys, &plan, Received::default(), &mut Steps::default());
        let calls = sys.calls.into_inner();
        assert!(calls.contains(&format!("capbset_drop {}", cap::MKNOD)), "{calls:#?}");
        let capset = calls.iter().find(|c| c.starts_with("capset")).unwrap();
        assert_eq!(*capset, format!("capset {:#x}", default_cap_mask() & !(1 << cap::MKNOD)));
    }

    #[test]
    fn without_mount_namespace_it_is_a_chroot() {
        let plan =
            Plan::build(&cfg(Namespaces::parse("pid").unwrap()), Path::new("/r"), StdioFds::default(), &[], host())
                .unwrap();
        let sys = Recorder::default();
        run_plan(&sys, &plan, Received::default(), &mut Steps::default());
        let calls = sys.calls.into_inner();
        assert!(position(&calls, "chroot /r") < position(&calls, "execve"));
        assert!(!calls.iter().any(|c| c.starts_with("mount") || c.starts_with("pivot_root")));
        assert!(!calls.iter().any(|c| c.starts_with("sethostname") || c.starts_with("loopback")));
        let mut ro = cfg(Namespaces::parse("pid").unwrap());
        ro.read_only = true;
        assert!(Plan::build(&ro, Path::new("/r"), StdioFds::default(), &[], host()).is_err());
    }

    #[test]
    fn mount_namespace_without_user_namespace_makes_device_nodes() {
        let plan =
            Plan::build(&cfg(Namespaces::parse("mnt,pid").unwrap()), Path::new("/r"), StdioFds::default(), &[], host())
                .unwrap();
        let sys = Recorder::default();
        run_plan(&sys, &plan, Received::default(), &mut Steps::default());
        let calls = sys.calls.into_inner();
        assert!(calls.contains(&"mknod dev/null 1:3".to_string()));
        assert!(calls.contains(&"mknod dev/tty 5:0".to_string()));
        assert!(!calls.iter().any(|c| c.contains("/dev/pts")), "no terminal, no pts bind");
    }

    #[test]
    fn the_inherited_terminal_is_bound_to_the_same_path() {
        let stdio = StdioFds { tty: Some("/dev/pts/3".into()), ..Default::default() };
        let plan = Plan::build(&cfg(Namespaces::ALL), Path::new("/r"), stdio, &[], host()).unwrap();
        let sys = Recorder::default();
        run_plan(&sys, &plan, Received::default(), &mut Steps::default());
        let calls = sys.calls.into_inner();
        let bind = position(&calls, "mount /dev/pts/3 dev/pts/3");
        assert!(position(&calls, "mkdir dev/pts") < bind);
        assert!(bind < position(&calls, "pivot_root"));
    }

    #[test]
    fn a_failing_call_stops_the_plan_and_names_its_step() {
        let plan = Plan::build(&cfg(Namespaces::ALL), Path::new("/r"), StdioFds::default(), &[], host()).unwrap();
        let sys = Recorder { fail: Some("pivot_root"), ..Default::default() };
        let (step, errno) = run_plan(&sys, &plan, Received::default(), &mut Steps::default());
        assert_eq!((step, errno), (Step::PivotRoot, Errno::EPERM));
        let calls = sys.calls.into_inner();
        assert_eq!(calls.last().map(String::as_str), Some("pivot_root . ."));
    }

    #[test]
    fn command_lookup_and_environment() {
        assert_eq!(command_candidates("/x/y", "/bin"), vec!["/x/y"]);
        assert_eq!(command_candidates("sh", "/bin:/usr/bin/"), vec!["/bin/sh", "/usr/bin/sh"]);
        let mut c = cfg(Namespaces::ALL);
        c.env = vec![("PATH".into(), "/opt".into()), ("A".into(), "1".into())];
        let env = environment(&c);
        assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
        assert!(env.contains(&("PATH".into(), "/opt".into())));
        let plan = Plan::build(&c, Path::new("/r"), StdioFds::default(), &[], host()).unwrap();
        assert_eq!(plan.candidates, vec![CString::new("/opt/sh").unwrap()]);
        assert_eq!(plan.exec.argv.len(), 4, "3 arguments and the NULL");
        assert!(plan.exec.argv.last().unwrap().is_null());
        for s in Step::ALL {
            assert_eq!(Step::from_u32(s as u32), Some(s));
        }
    }
}
