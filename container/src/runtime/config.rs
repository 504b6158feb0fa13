//! What a container should be: a plain configuration, and the parsers the
//! CLI uses to fill it from text (`32M`, `uts,pid`, `10s`, `1000:1000`).
//!
//! Nothing here touches the system except [`online_cpus`], which reads how
//! many CPUs a `--cpus` fraction may ask for.

use std::path::PathBuf;
use std::time::Duration;

use nix::sched::CloneFlags;

pub use crate::runtime::cgroup::Limits;

/// Errors in a configuration, each naming the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A mount whose destination cannot be used.
    #[error("the mount on {destination:?} cannot be made: {why}")]
    BadMount {
        /// The destination given.
        destination: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A `--ns` entry that is not a namespace name.
    #[error("unknown namespace {name:?}: use a comma-separated list of uts, pid, mnt, ipc, net, user, cgroup (or all, none)")]
    UnknownNamespace {
        /// The word that was given.
        name: String,
    },
    /// A size that does not parse.
    #[error("cannot read {text:?} as a size: write a number with an optional unit, e.g. 64M, 512K, 1G")]
    BadSize {
        /// The text given.
        text: String,
    },
    /// A memory limit too small to start any process, or larger than the
    /// machine's memory (which would limit nothing).
    #[error("memory limit {bytes} bytes is out of range: give between 4M and {max_mib}M (this machine's memory), or leave --memory out for no limit")]
    MemoryOutOfRange {
        /// The limit asked for.
        bytes: u64,
        /// The machine's memory, in MiB.
        max_mib: u64,
    },
    /// A `--cpus` value that is not a positive fraction of the CPUs present.
    #[error("--cpus {text:?} is out of range: give a number above 0 and at most {online} (the CPUs online)")]
    BadCpus {
        /// The text given.
        text: String,
        /// CPUs online on this host.
        online: usize,
    },
    /// A `--pids` value below one.
    #[error("--pids {text:?} is not a positive whole number: give at least 1 (the command itself counts)")]
    BadPids {
        /// The text given.
        text: String,
    },
    /// A duration that does not parse.
    #[error("cannot read {text:?} as a duration: write e.g. 500ms, 10s, 2m")]
    BadDuration {
        /// The text given.
        text: String,
    },
    /// A `--user` that is not `UID[:GID]`.
    #[error("cannot read {text:?} as a user: give numeric UID or UID:GID, e.g. 1000:1000")]
    BadUser {
        /// The text given.
        text: String,
    },
    /// A `--user` id of 4294967295, which setresuid(2) and setresgid(2)
    /// read as -1, "leave unchanged": the command would stay root.
    #[error("{what} 4294967295 is not a user: setresuid(2)/setresgid(2) read it as -1 (leave unchanged), so the command would keep running as root; give an id below 4294967295")]
    ReservedId {
        /// `uid` or `gid`.
        what: &'static str,
    },
    /// A `--env` without `=`.
    #[error("--env {text:?} has no '=': write KEY=VALUE")]
    BadEnv {
        /// The text given.
        text: String,
    },
    /// No command to run.
    #[error("no command given: put it after `--`, e.g. `-- /virtlab-workload ready`")]
    NoCommand,
    /// A setting that needs a namespace that is switched off.
    #[error("{what} needs the {ns} namespace: add {ns} to --ns")]
    NeedsNamespace {
        /// The setting.
        what: &'static str,
        /// The namespace it needs.
        ns: &'static str,
    },
    /// A string holding a NUL byte, which no system call can take.
    #[error("{what} contains a NUL byte")]
    Nul {
        /// Which string.
        what: &'static str,
    },
}

/// The set of namespaces a container gets, one switch each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Namespaces {
    /// A user namespace: uid/gid maps, capabilities that count only inside.
    pub user: bool,
    /// A PID namespace: the command is PID 1 and sees only its descendants.
    pub pid: bool,
    /// A mount namespace: needed for pivot_root, /proc, /dev and /tmp.
    pub mnt: bool,
    /// A UTS namespace: its own hostname.
    pub uts: bool,
    /// An IPC namespace: its own System V IPC and POSIX message queues.
    pub ipc: bool,
    /// A network namespace: only a loopback interface.
    pub net: bool,
    /// A cgroup namespace: /proc/self/cgroup shows the container's cgroup as `/`.
    pub cgroup: bool,
}

impl Namespaces {
    /// Every namespace (the default).
    pub const ALL: Namespaces =
        Namespaces { user: true, pid: true, mnt: true, uts: true, ipc: true, net: true, cgroup: true };
    /// No namespace at all: a plain process with limits.
    pub const NONE: Namespaces =
        Namespaces { user: false, pid: false, mnt: false, uts: false, ipc: false, net: false, cgroup: false };
    /// The names, in the order `--ns` documents them.
    pub const NAMES: [&'static str; 7] = ["uts", "pid", "mnt", "ipc", "net", "user", "cgroup"];

    /// Parses `uts,pid,...`; `all` and `none` are accepted too.
    pub fn parse(text: &str) -> Result<Namespaces, ConfigError> {
        let mut ns = Namespaces::NONE;
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "all" => ns = Namespaces::ALL,
                "none" => {}
                "uts" => ns.uts = true,
                "pid" => ns.pid = true,
                "mnt" | "mount" => ns.mnt = true,
                "ipc" => ns.ipc = true,
                "net" | "network" => ns.net = true,
                "user" => ns.user = true,
                "cgroup" => ns.cgroup = true,
                other => return Err(ConfigError::UnknownNamespace { name: other.to_string() }),
            }
        }
        Ok(ns)
    }

    /// The flags for clone(2). The cgroup namespace is left out on purpose:
    /// the child unshares it after the parent moved it into its cgroup, so
    /// that the namespace's root is the container's own cgroup.
    pub fn clone_flags(&self) -> CloneFlags {
        let mut f = CloneFlags::empty();
        let pairs = [
            (self.user, CloneFlags::CLONE_NEWUSER),
            (self.pid, CloneFlags::CLONE_NEWPID),
            (self.mnt, CloneFlags::CLONE_NEWNS),
            (self.uts, CloneFlags::CLONE_NEWUTS),
            (self.ipc, CloneFlags::CLONE_NEWIPC),
            (self.net, CloneFlags::CLONE_NEWNET),
        ];
        for (on, flag) in pairs {
            if on {
                f |= flag;
            }
        }
        f
    }

    /// The flags as text, e.g. `CLONE_NEWUSER|CLONE_NEWPID`.
    pub fn describe_clone_flags(&self) -> String {
        let pairs = [
            (self.user, "CLONE_NEWUSER"),
            (self.pid, "CLONE_NEWPID"),
            (self.mnt, "CLONE_NEWNS"),
            (self.uts, "CLONE_NEWUTS"),
            (self.ipc, "CLONE_NEWIPC"),
            (self.net, "CLONE_NEWNET"),
        ];
        let names: Vec<&str> = pairs.iter().filter(|p| p.0).map(|p| p.1).collect();
        if names.is_empty() {
            "no namespace flag".to_string()
        } else {
            names.join("|")
        }
    }

    /// The names switched on, comma-separated.
    pub fn names(&self) -> String {
        let on = [self.uts, self.pid, self.mnt, self.ipc, self.net, self.user, self.cgroup];
        let v: Vec<&str> = Self::NAMES.iter().zip(on).filter(|p| p.1).map(|p| *p.0).collect();
        v.join(",")
    }
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces::ALL
    }
}

/// Who the command runs as, inside the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl User {
    /// Parses `UID` or `UID:GID` (GID defaults to UID).
    pub fn parse(text: &str) -> Result<User, ConfigError> {
        let bad = || ConfigError::BadUser { text: text.to_string() };
        let (u, g) = match text.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (text, None),
        };
        let uid: u32 = u.trim().parse().map_err(|_| bad())?;
        let gid: u32 = match g {
            Some(g) => g.trim().parse().map_err(|_| bad())?,
            None => uid,
        };
        // (uid_t)-1 means "unchanged" to the set*id calls.
        if uid == u32::MAX {
            return Err(ConfigError::ReservedId { what: "uid" });
        }
        if gid == u32::MAX {
            return Err(ConfigError::ReservedId { what: "gid" });
        }
        Ok(User { uid, gid })
    }
}

/// What happens to the command's standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Stdio {
    /// The command shares the launcher's stdin, stdout and stderr.
    #[default]
    Inherit,
    /// stdout and stderr go through pipes into [`crate::Outcome`]; stdin is /dev/null.
    Capture,
    /// Like `Capture`, and also copied to the launcher's own stdout/stderr
    /// as they arrive; stdin is shared.
    Tee,
}

/// One file system to mount in the container (an OCI bundle's `mounts`
/// entry, its options already split into flags and data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Where, inside the container (absolute).
    pub destination: PathBuf,
    /// The file system type (`proc`, `tmpfs`, ...); `None` for a bind mount.
    pub fstype: Option<String>,
    /// What: a host path for a bind mount, a name for the others.
    pub source: Option<PathBuf>,
    /// mount(2) flags (`MS_*` bits).
    pub flags: u64,
    /// File-system-specific options (`mode=755,size=64k`).
    pub data: Option<String>,
}

/// One resource limit set with setrlimit(2) before exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Rlimit {
    /// The `RLIMIT_*` constant.
    pub resource: i32,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// The rlimits every container gets unless told otherwise: 1024 open files
/// (the usual soft default, and a hard cap) and no core dumps.
pub fn default_rlimits() -> Vec<Rlimit> {
    vec![
        Rlimit { resource: libc::RLIMIT_NOFILE as i32, soft: 1024, hard: 1024 },
        Rlimit { resource: libc::RLIMIT_CORE as i32, soft: 0, hard: 0 },
    ]
}

/// Everything a container run needs; build it with [`ContainerConfig::new`]
/// and change the fields.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// Directory that becomes `/`.
    pub rootfs: PathBuf,
    /// The command and its arguments; a name without `/` is looked up in `PATH`
    /// inside the rootfs.
    pub argv: Vec<String>,
    /// Hostname inside (needs the UTS namespace).
    pub hostname: String,
    /// Namespaces to create.
    pub namespaces: Namespaces,
    /// cgroup limits.
    pub limits: Limits,
    /// Extra environment variables (after the defaults `PATH`, `HOME`, `HOSTNAME`).
    pub env: Vec<(String, String)>,
    /// Working directory inside the container.
    pub workdir: PathBuf,
    /// Run as this user instead of root.
    pub user: Option<User>,
    /// Make the root filesystem read-only (`/tmp` stays writable).
    pub read_only: bool,
    /// Kill the container after this long.
    pub timeout: Option<Duration>,
    /// Standard streams.
    pub stdio: Stdio,
    /// rlimits to set before exec.
    pub rlimits: Vec<Rlimit>,
    /// Forward SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to the launcher to the
    /// container. The launcher blocks them in the calling thread while it runs.
    pub forward_signals: bool,
    /// Narrate every step on stderr.
    pub explain: bool,
    /// Wait for Enter on stdin before each step.
    pub step: bool,
    /// The cgroup file system root (normally `/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// Install the default seccomp filter (see [`crate::runtime::seccomp`]) just
    /// before exec. On by default; off only for a lesson that shows what it
    /// stops.
    pub seccomp: bool,
    /// With [`ContainerConfig::seccomp`]: a filter compiled from a profile
    /// (`--security-opt seccomp=PROFILE.json`, an OCI bundle's
    /// `linux.seccomp`) instead of the default one.
    pub seccomp_profile: Option<std::sync::Arc<crate::runtime::seccomp_profile::Compiled>>,
    /// Mount `/sys` read-write (`--privileged`); read-only otherwise.
    pub sys_writable: bool,
    /// The host id ranges that container ids map onto when the launcher is
    /// root and the user namespace is on; `None` looks them up (the
    /// `virtlab` entries of /etc/subuid and /etc/subgid, else the built-in
    /// range, see [`crate::runtime::idmap`]).
    pub id_ranges: Option<crate::runtime::idmap::IdRanges>,
    /// An image's layers to stack with overlayfs as the root file system
    /// (needs the mount namespace). The stack is attached at `rootfs`
    /// (an empty directory) inside the container's mount namespace, so it
    /// never appears on the host.
    pub layers: Option<crate::runtime::overlay::LayeredRootfs>,
    /// Where to write the container's PID (as the host sees it) once its
    /// command is running (execve succeeded), as `runc --pid-file` does: a
    /// monitor learns from it that the container is up.
    pub pid_file: Option<PathBuf>,
    /// The file systems to mount, in order, instead of virtlab's own
    /// `/dev`, `/proc` and `/tmp` (an OCI bundle's `mounts`). A `tmpfs` on
    /// `/dev` gets the usual device nodes and links, as runc gives it.
    pub mounts: Option<Vec<MountSpec>>,
    /// Paths hidden from the container instead of Docker's list
    /// ([`crate::runtime::plan::security::MASKED_PATHS`]), absolute.
    pub masked_paths: Option<Vec<String>>,
    /// Paths made read-only instead of Docker's list, absolute.
    pub readonly_paths: Option<Vec<String>>,
    /// The capabilities kept (bounding, effective and permitted sets), as a
    /// bit mask, instead of Docker's default set.
    pub capabilities: Option<u64>,
    /// The container's cgroup at this path under each hierarchy (an OCI
    /// bundle's `linux.cgroupsPath`) instead of `virtlab-ID`.
    pub cgroup_path: Option<String>,
    /// Namespaced kernel parameters to set (`net.ipv4.ping_group_range`
    /// = `0 0`), written under the container's /proc/sys.
    pub sysctl: Vec<(String, String)>,
    /// Set no_new_privs before exec (on unless an OCI bundle says
    /// `noNewPrivileges: false`).
    pub no_new_privs: bool,
    /// Also append the command's stdout and stderr to this file as they
    /// arrive, in Docker's json-file format (see [`crate::runtime::log`]).
    /// The streams then go through pipes; with [`Stdio::Inherit`] they are
    /// still copied to the launcher's own stdout and stderr.
    pub log: Option<PathBuf>,
    /// Mark every fd above 2 close-on-exec right before execve
    /// (close_range(3, ~0, CLOSE_RANGE_CLOEXEC)), so that no fd of the
    /// launcher, such as a host directory it had open, reaches the command.
    /// On by default; off only for the escape lab's leaked-fd lesson.
    pub close_fds: bool,
    /// Apply the devices cgroup allowlist ([`crate::runtime::devices`])
    /// where the host supports it. On by default; off only for the escape
    /// lab's mknod lesson.
    pub device_allowlist: bool,
    /// Stack [`crate::runtime::tty_filter`] on the seccomp filter: `ioctl`
    /// `TIOCSTI`/`TIOCLINUX` refused, so the command cannot type into the
    /// terminal it was started from. On by default (it needs
    /// `no_new_privs`, as any filter installed without `CAP_SYS_ADMIN`);
    /// off only for the escape lab's terminal lesson.
    pub deny_tiocsti: bool,
    /// Give the command a terminal of the container's own and send its
    /// master end to the unix socket at this path (an OCI runtime's
    /// `--console-socket`, see [`crate::runtime::sys::Sys::console`]).
    pub console_socket: Option<PathBuf>,
    /// Namespaces joined by path instead of made (their switches in
    /// `namespaces` stay on), see [`crate::runtime::nsjoin`].
    pub join_namespaces: Vec<crate::runtime::nsjoin::NsJoin>,
    /// Keep the launcher's fds 3 to 3+N-1 open for the command (an OCI
    /// runtime's `--preserve-fds N`); the ones above still close.
    pub preserve_fds: u32,
    /// Lifecycle hooks (an OCI bundle's `hooks`, see
    /// [`crate::runtime::hooks`]): the launcher runs `prestart` and
    /// `createRuntime`, the container's process `createContainer` and
    /// `startContainer`.
    pub hooks: Option<std::sync::Arc<crate::runtime::hooks::LifecycleHooks>>,
}

impl ContainerConfig {
    /// A configuration with every namespace, no limits, root user, and
    /// hostname `virtlab`.
    pub fn new(rootfs: impl Into<PathBuf>, argv: Vec<String>) -> ContainerConfig {
        ContainerConfig {
            rootfs: rootfs.into(),
            argv,
            hostname: "virtlab".to_string(),
            namespaces: Namespaces::ALL,
            limits: Limits::default(),
            env: Vec::new(),
            workdir: PathBuf::from("/"),
            user: None,
            read_only: false,
            timeout: None,
            stdio: Stdio::Inherit,
            rlimits: default_rlimits(),
            forward_signals: false,
            explain: false,
            step: false,
            cgroup_root: PathBuf::from(crate::runtime::cgroup::DEFAULT_ROOT),
            seccomp: true,
            seccomp_profile: None,
            sys_writable: false,
            hooks: None,
            id_ranges: None,
            layers: None,
            pid_file: None,
            console_socket: None,
            log: None,
            mounts: None,
            masked_paths: None,
            readonly_paths: None,
            capabilities: None,
            no_new_privs: true,
            cgroup_path: None,
            sysctl: Vec::new(),
            close_fds: true,
            device_allowlist: true,
            deny_tiocsti: true,
            join_namespaces: Vec::new(),
            preserve_fds: 0,
        }
    }
}

/// Parses a size: a number with an optional unit K, M, G, T, P (powers of
/// 1024; a trailing `B` or `iB` is accepted), e.g. `32M`, `1.5G`, `4096`.
pub fn parse_size(text: &str) -> Result<u64, ConfigError> {
    let bad = || ConfigError::BadSize { text: text.to_string() };
    let t = text.trim();
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, mult): (&str, u64) = match t.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let m = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'P' => 1 << 50,
                _ => return Err(bad()),
            };
            (&t[..t.len() - 1], m)
        }
        _ => (t, 1),
    };
    let value: f64 = num.trim().parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    let bytes = value * mult as f64;
    if bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Parses and range-checks a memory limit.
pub fn parse_memory(text: &str) -> Result<u64, ConfigError> {
    let bytes = parse_size(text)?;
    let max = host_memory_bytes();
    if !(4 << 20..=max).contains(&bytes) {
        return Err(ConfigError::MemoryOutOfRange { bytes, max_mib: max >> 20 });
    }
    Ok(bytes)
}

/// The machine's physical memory (or 1 PiB if the kernel will not say).
pub fn host_memory_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    if pages > 0 && size > 0 {
        pages as u64 * size as u64
    } else {
        1 << 50
    }
}

/// How many CPUs are online.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

/// Parses and range-checks a `--cpus` fraction.
pub fn parse_cpus(text: &str) -> Result<f64, ConfigError> {
    let online = online_cpus();
    let bad = || ConfigError::BadCpus { text: text.to_string(), online };
    let v: f64 = text.trim().parse().map_err(|_| bad())?;
    // The kernel's smallest CFS quota is 1 ms per 100 ms period.
    if !v.is_finite() || v < 0.01 || v > online as f64 {
        return Err(bad());
    }
    Ok(v)
}

/// Parses a `--pids` maximum.
pub fn parse_pids(text: &str) -> Result<u64, ConfigError> {
    match text.trim().parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ConfigError::BadPids { text: text.to_string() }),
    }
}

/// Parses a duration: `500ms`, `10s`, `2m`, `1h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    let bad = || ConfigError::BadDuration { text: text.to_string() };
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || v <= 0.0 || v * scale > 1e9 {
        return Err(bad());
    }
    // A positive number below a nanosecond is no duration either.
    Some(Duration::from_secs_f64(v * scale)).filter(|d| !d.is_zero()).ok_or_else(bad)
}

/// Parses `KEY=VALUE`.
pub fn parse_env(text: &str) -> Result<(String, String), ConfigError> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(ConfigError::BadEnv { text: text.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("32M").unwrap(), 32 << 20);
        assert_eq!(parse_size("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("2k").unwrap(), 2048);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1M").is_err());
        assert!(parse_size("3X").is_err());
        assert!(matches!(parse_memory("1K"), Err(ConfigError::MemoryOutOfRange { .. })));
        assert!(matches!(parse_memory("9000P"), Err(ConfigError::MemoryOutOfRange { .. })));
        assert_eq!(parse_memory("64M").unwrap(), 64 << 20);
    }

    #[test]
    fn namespaces() {
        let ns = Namespaces::parse("uts, pid").unwrap();
        assert!(ns.uts && ns.pid && !ns.user && !ns.mnt);
        assert_eq!(ns.clone_flags(), CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWPID);
        assert_eq!(Namespaces::parse("all").unwrap(), Namespaces::ALL);
        assert_eq!(Namespaces::parse("").unwrap(), Namespaces::NONE);
        let err = Namespaces::parse("uts,pdi").unwrap_err();
        assert!(err.to_string().contains("\"pdi\""), "{err}");
        assert!(!Namespaces::ALL.clone_flags().contains(CloneFlags::CLONE_NEWCGROUP));
        assert_eq!(Namespaces::ALL.names(), "uts,pid,mnt,ipc,net,user,cgroup");
    }

    #[test]
    fn other_parsers() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("0s").is_err());
        assert_eq!(User::parse("1000").unwrap(), User { uid: 1000, gid: 1000 });
        assert_eq!(User::parse("5:7").unwrap(), User { uid: 5, gid: 7 });
        assert!(User::parse("bob").is_err());
        assert!(matches!(User::parse("4294967295:4294967295"), Err(ConfigError::ReservedId { what: "uid" })));
        assert!(matches!(User::parse("0:4294967295"), Err(ConfigError::ReservedId { what: "gid" })));
        assert!(matches!(User::parse("4294967295"), Err(ConfigError::ReservedId { .. })));
        assert_eq!(User::parse("4294967294").unwrap().uid, 4294967294);
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".to_string(), "b=c".to_string()));
        assert!(parse_env("A").is_err());
        assert!(parse_pids("0").is_err());
        assert_eq!(parse_pids("16").unwrap(), 16);
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("100000").is_err());
        assert_eq!(parse_cpus("0.5").unwrap(), 0.5);
    }
}
