//! The escape lab: the classic container escapes, tried for real against
//! virtlab's defences, one defence switched off at a time.
//!
//! Each lab puts the attacker (`attacker/main.rs`, a static program with no
//! libc, embedded here as [`ATTACKER`]) into a fresh root file system,
//! prepares on the host what the escape of its class went for (a file
//! outside the root, a leaked directory fd, a key in the session keyring,
//! a sacrificial process, the host's disk), runs the attacker in a real
//! virtlab container and reads its one result line:
//!
//! - with the default defences it must be **blocked**, and the lab names
//!   the defence that stopped it with the errno the attacker saw;
//! - with a defence removed ([`Defence`], `--without`) the next layer may
//!   stop it, or, once every layer the lab depends on is gone, it
//!   **reaches** its target, and stops right there: it opens what it could
//!   harm, reads what is harmless to read, writes nothing on the host.
//!
//! Everything a lab made (its directory, the fd, the key, the process) is
//! removed when it ends, whatever happened ([`Scene`]'s `Drop`).
//!
//! [`surface`] counts what a container and a VM guest can reach.

use std::fmt;
use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use virtlab_container::plan::{default_cap_mask, last_cap};
use virtlab_container::ContainerConfig;

pub mod surface;

/// The attacker ELF, byte for byte.
pub const ATTACKER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/virtlab-attacker"));

/// Where `build.rs` wrote the attacker in this build tree.
pub const ATTACKER_BUILD_PATH: &str = concat!(env!("OUT_DIR"), "/virtlab-attacker");

/// Where the attacker sits inside a lab's root file system.
pub const ATTACKER_IN_ROOTFS: &str = "/virtlab-attacker";

/// Errors of the lab itself (not of the attacks, which are results).
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A lab name that is not one.
    #[error("unknown lab {name:?}: use one of {}", lab_names())]
    UnknownLab {
        /// The name given.
        name: String,
    },
    /// A defence name that is not one.
    #[error("unknown defence {name:?}: use a comma-separated list of {}", Defence::names())]
    UnknownDefence {
        /// The name given.
        name: String,
    },
    /// The labs need root (containers with every namespace, a key, a device node).
    #[error("the escape lab needs root: run it as root (sudo virtlab lab escape)")]
    NeedsRoot,
    /// Preparing the scene on the host failed.
    #[error("cannot prepare the {lab} lab ({what})")]
    Prepare {
        /// The lab.
        lab: &'static str,
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A set of defences virtlab cannot run without.
    #[error("--without {removed} needs --without {also} too: {why}")]
    Combination {
        /// What was asked to be removed.
        removed: &'static str,
        /// What must go with it.
        also: &'static str,
        /// Why.
        why: &'static str,
    },
    /// No host disk to point mknod at.
    #[error("the mknod lab finds no disk in /sys/block (only loop, ram and zram devices)")]
    NoDisk,
    /// The container could not be run.
    #[error("the {lab} lab's container did not run")]
    Launch {
        /// The lab.
        lab: &'static str,
        /// Why.
        #[source]
        source: virtlab_container::LaunchError,
    },
    /// The attacker printed no result line.
    #[error("the attacker of the {lab} lab printed no result (exit status {status}); its stderr: {stderr:?}")]
    NoResult {
        /// The lab.
        lab: &'static str,
        /// Its exit status.
        status: u8,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// One defence a lab can run without.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Defence {
    /// The default seccomp filter.
    Seccomp,
    /// The user namespace: container root is an unprivileged host uid.
    Userns,
    /// The PID namespace: host processes are invisible.
    Pidns,
    /// Docker's capability set (without it: every capability).
    Caps,
    /// Docker's masked /proc paths.
    MaskedPaths,
    /// Docker's read-only /proc paths.
    ReadonlyPaths,
    /// A mount namespace and pivot_root (without it: a plain chroot).
    PivotRoot,
    /// Every fd above 2 closed before execve.
    CloseFds,
    /// The devices cgroup allowlist.
    Devices,
    /// The filter that refuses `ioctl(TIOCSTI)`.
    TtyFilter,
}

impl Defence {
    /// Every defence, in the order `--without` documents them.
    pub const ALL: [Defence; 10] = [
        Defence::Seccomp,
        Defence::Userns,
        Defence::Pidns,
        Defence::Caps,
        Defence::MaskedPaths,
        Defence::ReadonlyPaths,
        Defence::PivotRoot,
        Defence::CloseFds,
        Defence::Devices,
        Defence::TtyFilter,
    ];

    /// Its name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Defence::Seccomp => "seccomp",
            Defence::Userns => "userns",
            Defence::Pidns => "pidns",
            Defence::Caps => "caps",
            Defence::MaskedPaths => "masked-paths",
            Defence::ReadonlyPaths => "readonly-paths",
            Defence::PivotRoot => "pivot-root",
            Defence::CloseFds => "close-fds",
            Defence::Devices => "devices",
            Defence::TtyFilter => "tty-filter",
        }
    }

    /// What it is, in a few words.
    pub fn what(self) -> &'static str {
        match self {
            Defence::Seccomp => "the seccomp filter (Docker's denied calls fail with EPERM)",
            Defence::Userns => "the user namespace (container root is an unprivileged host uid)",
            Defence::Pidns => "the PID namespace (host processes are invisible)",
            Defence::Caps => "Docker's capability set (no CAP_SYS_ADMIN, CAP_SYS_PTRACE, ...)",
            Defence::MaskedPaths => "masked /proc paths (/proc/kcore, /proc/keys, ...)",
            Defence::ReadonlyPaths => "read-only /proc paths (/proc/sys, /proc/sysrq-trigger, ...)",
            Defence::PivotRoot => "pivot_root in a mount namespace, the old root detached",
            Defence::CloseFds => "close_range(3, ~0, CLOSE_RANGE_CLOEXEC) before execve",
            Defence::Devices => "the devices cgroup allowlist",
            Defence::TtyFilter => "a seccomp filter refusing ioctl(TIOCSTI) and ioctl(TIOCLINUX)",
        }
    }

    /// What Docker (and runc) call it.
    pub fn docker(self) -> &'static str {
        match self {
            Defence::Seccomp => "default seccomp profile (--security-opt seccomp=unconfined removes it)",
            Defence::Userns => "userns-remap (off by default in Docker: root in a container is host root)",
            Defence::Pidns => "PID namespace (--pid=host removes it)",
            Defence::Caps => "default capabilities (--cap-add / --privileged)",
            Defence::MaskedPaths => "maskedPaths (--security-opt systempaths=unconfined)",
            Defence::ReadonlyPaths => "readonlyPaths (--security-opt systempaths=unconfined)",
            Defence::PivotRoot => "pivot_root (runc falls back to chroot only with --no-pivot)",
            Defence::CloseFds => "runc closes fds above 2 (the fix of CVE-2024-21626)",
            Defence::Devices => "devices cgroup (--device, --privileged)",
            Defence::TtyFilter => {
                "none: docker run -t gives the container a pty of its own instead (Flatpak filters TIOCSTI like this)"
            }
        }
    }

    /// The names, comma-separated.
    pub fn names() -> String {
        Defence::ALL.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")
    }

    /// Parses `seccomp,userns`.
    pub fn parse_list(text: &str) -> Result<Vec<Defence>, LabError> {
        let mut out = Vec::new();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let d = Defence::ALL
                .into_iter()
                .find(|d| d.name() == word)
                .ok_or_else(|| LabError::UnknownDefence { name: word.to_string() })?;
            if !out.contains(&d) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Switches this defence off in `cfg`.
    fn remove_from(self, cfg: &mut ContainerConfig) {
        match self {
            Defence::Seccomp => cfg.seccomp = false,
            Defence::Userns => cfg.namespaces.user = false,
            Defence::Pidns => cfg.namespaces.pid = false,
            Defence::Caps => cfg.capabilities = Some(every_cap()),
            Defence::MaskedPaths => cfg.masked_paths = Some(Vec::new()),
            Defence::ReadonlyPaths => cfg.readonly_paths = Some(Vec::new()),
            Defence::PivotRoot => cfg.namespaces.mnt = false,
            Defence::CloseFds => cfg.close_fds = false,
            Defence::Devices => cfg.device_allowlist = false,
            Defence::TtyFilter => cfg.deny_tiocsti = false,
        }
    }
}

/// Every capability the launcher itself may hand on: its bounding set
/// (`CapBnd` of /proc/self/status), or all up to the kernel's last.
fn every_cap() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bnd =
        status.lines().find_map(|l| l.strip_prefix("CapBnd:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    bnd.unwrap_or_else(|| {
        let last = last_cap().min(63);
        if last == 63 {
            u64::MAX
        } else {
            (1u64 << (last + 1)) - 1
        }
    })
}

impl fmt::Display for Defence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One lab: an escape class and the defences that stand in its way.
#[derive(Debug, Clone, Copy)]
pub struct Lab {
    /// Its name on the command line.
    pub name: &'static str,
    /// The real escape of this class.
    pub class: &'static str,
    /// What the attacker tries, in a sentence.
    pub attack: &'static str,
    /// The defences that stop it, outermost first: with the defaults the
    /// first one blocks it; remove it and the next one does.
    pub layers: &'static [Defence],
}

/// Every lab, in the order they run.
pub const LABS: [Lab; 10] = [
    Lab {
        name: "chroot",
        class: "chroot escape (any chroot-only jail)",
        attack: "mkdir x; chroot x; chdir .. 64 times; chroot .; read a host file",
        layers: &[Defence::PivotRoot],
    },
    Lab {
        name: "leaked-fd",
        class: "CVE-2024-21626 (runc: a leaked host directory fd as working directory)",
        attack: "fchdir to a directory fd the launcher left open, climb with .., read a host file",
        layers: &[Defence::CloseFds],
    },
    Lab {
        name: "exe",
        class: "CVE-2019-5736 (runc: the host's runc binary overwritten through /proc/PID/exe)",
        attack: "wait for a host binary to enter the container's PID namespace (as runc exec's did), open it through /proc/PID/exe, reopen it for writing once it exits (never written)",
        layers: &[Defence::Userns, Defence::Caps],
    },
    Lab {
        name: "sysrq",
        class: "/proc/sysrq-trigger (one byte reboots or crashes the host)",
        attack: "open /proc/sysrq-trigger for writing, or /proc/sys/kernel/core_pattern on a kernel without SysRq (never written)",
        layers: &[Defence::Userns, Defence::ReadonlyPaths],
    },
    Lab {
        name: "keyctl",
        class: "kernel keyrings are not namespaced (Docker's seccomp denies keyctl)",
        attack: "keyctl(KEYCTL_SEARCH) of the session keyring for a host key, then KEYCTL_READ",
        layers: &[Defence::Seccomp],
    },
    Lab {
        name: "proc-keys",
        class: "/proc/keys lists the keys of the host's keyrings (Docker masks it)",
        attack: "read /proc/keys and look for a key of the host's session keyring",
        layers: &[Defence::MaskedPaths, Defence::Userns],
    },
    Lab {
        name: "mknod",
        class: "mknod of the host's disk (raw block access under every file system)",
        attack: "mknod a block node for the host's disk, open it, read sector 0",
        layers: &[Defence::Userns, Defence::Devices, Defence::Caps],
    },
    Lab {
        name: "ptrace",
        class: "ptrace of a host process (its memory and registers)",
        attack: "PTRACE_ATTACH to a sacrificial host process, detach at once",
        layers: &[Defence::Pidns, Defence::Userns, Defence::Caps],
    },
    Lab {
        name: "tiocsti",
        class: "CVE-2017-5226 (bubblewrap: TIOCSTI types into the terminal the sandbox was started from)",
        attack: "ioctl(TIOCSTI) on /dev/tty, a pty the lab made and handed over as the controlling terminal",
        layers: &[Defence::TtyFilter],
    },
    Lab {
        name: "release-agent",
        class: "CVE-2022-0492 (cgroup v1 release_agent runs as host root)",
        attack: "unshare a user, mount and cgroup namespace, mount an unused v1 hierarchy, open release_agent for writing (never written)",
        layers: &[Defence::Seccomp, Defence::Userns],
    },
];

/// The lab names, comma-separated.
pub fn lab_names() -> String {
    LABS.iter().map(|l| l.name).collect::<Vec<_>>().join(", ")
}

/// The lab called `name`.
pub fn find_lab(name: &str) -> Result<&'static Lab, LabError> {
    LABS.iter().find(|l| l.name == name).ok_or_else(|| LabError::UnknownLab { name: name.to_string() })
}

impl Lab {
    /// The first of its layers still in force with `removed` off, if any.
    pub fn expected_blocker(&self, removed: &[Defence]) -> Option<Defence> {
        self.layers.iter().copied().find(|d| !removed.contains(d))
    }
}

/// What the attacker reported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Attack {
    /// A system call failed: the step and its errno.
    Blocked {
        /// The attacker's step (`open`, `mknod`, ...).
        step: String,
        /// The errno.
        errno: i32,
    },
    /// It got there.
    Reached {
        /// What it reached.
        detail: String,
    },
    /// This host's kernel refuses the attack to everyone: nothing to show.
    HostRefuses {
        /// Why.
        why: String,
    },
}

impl Attack {
    /// Parses the attacker's `virtlab.lab ...` line.
    pub fn parse(line: &str) -> Option<Attack> {
        let rest = line.strip_prefix("virtlab.lab ")?;
        if let Some(i) = rest.find(" detail=") {
            return rest[..i]
                .contains("outcome=reached")
                .then(|| Attack::Reached { detail: rest[i + 8..].to_string() });
        }
        let field = |k: &str| rest.split(' ').find_map(|w| w.strip_prefix(k));
        if field("outcome=")? != "blocked" {
            return None;
        }
        Some(Attack::Blocked { step: field("step=")?.to_string(), errno: field("errno=")?.parse().ok()? })
    }
}

/// One lab's run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LabRun {
    /// The lab's name.
    pub lab: &'static str,
    /// Its escape class.
    pub class: &'static str,
    /// The defences switched off for this run.
    pub removed: Vec<Defence>,
    /// What the attacker reported.
    pub attack: Attack,
    /// The layer that blocked it (the first one of the lab's still in force).
    pub blocked_by: Option<Defence>,
    /// It did what the layers predict: blocked while one is in force,
    /// reached once all are off.
    pub as_expected: bool,
    /// The attacker's command line inside the container.
    pub argv: Vec<String>,
}

impl LabRun {
    /// One line: `BLOCKED by seccomp (keyctl_search: EPERM ...)` or `REACHED: ...`.
    pub fn summary(&self) -> String {
        match &self.attack {
            Attack::Blocked { step, errno } => {
                let by = self.blocked_by.map_or("an unexpected layer".to_string(), |d| d.name().to_string());
                format!("BLOCKED by {by} ({step}: {})", errno_text(*errno))
            }
            Attack::Reached { detail } => format!("REACHED: {detail}"),
            Attack::HostRefuses { why } => format!("not shown on this host: {why}"),
        }
    }
}

/// `EPERM (Operation not permitted)`; 0 is an empty read (a masked file).
pub fn errno_text(errno: i32) -> String {
    if errno == 0 {
        return "empty (it read 0 bytes)".to_string();
    }
    let name = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        6 => "ENXIO",
        9 => "EBADF",
        13 => "EACCES",
        16 => "EBUSY",
        17 => "EEXIST",
        19 => "ENODEV",
        22 => "EINVAL",
        30 => "EROFS",
        38 => "ENOSYS",
        95 => "EOPNOTSUPP",
        126 => "ENOKEY",
        _ => "errno",
    };
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or(&text).to_string();
    if name == "errno" {
        format!("errno {errno} ({text})")
    } else {
        format!("{name} ({text})")
    }
}

/// Runs `lab` with the defences `removed` switched off. `explain` prints
/// the set-up and the attacker's raw line on stderr.
pub fn run_lab(lab: &'static Lab, removed: &[Defence], explain: bool) -> Result<LabRun, LabError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::NeedsRoot);
    }
    if removed.contains(&Defence::Pidns) && !removed.contains(&Defence::Userns) {
        return Err(LabError::Combination {
            removed: "pidns",
            also: "userns",
            why: "a user namespace may mount /proc only for a PID namespace it owns",
        });
    }
    let scene = Scene::new(lab)?;
    let argv = scene.argv(lab)?;
    let mut cfg = ContainerConfig::new(scene.rootfs(), argv.clone());
    cfg.stdio = virtlab_container::Stdio::Capture;
    cfg.timeout = Some(Duration::from_secs(30));
    cfg.explain = false;
    for d in removed {
        d.remove_from(&mut cfg);
    }
    if explain {
        eprintln!("lab {}: {}", lab.name, lab.class);
        eprintln!("  scene: {}", scene.dir.display());
        for d in Defence::ALL {
            let on = !removed.contains(&d);
            eprintln!("  {:<15} {:<3} {}", d.name(), if on { "on" } else { "OFF" }, d.what());
        }
        eprintln!("  capabilities kept: {:#x}", cfg.capabilities.unwrap_or_else(default_cap_mask));
        eprintln!("  container command: {}", argv.join(" "));
    }
    let outcome = if lab.name == "exe" {
        run_with_a_visitor(lab, &scene, cfg)?
    } else if lab.name == "tiocsti" {
        if legacy_tiocsti() == Some(false) {
            return Ok(LabRun {
                lab: lab.name,
                class: lab.class,
                removed: removed.to_vec(),
                attack: Attack::HostRefuses {
                    why: "this kernel refuses TIOCSTI to every process without CAP_SYS_ADMIN (dev.tty.legacy_tiocsti = 0)"
                        .into(),
                },
                blocked_by: None,
                as_expected: true,
                argv,
            });
        }
        return run_in_a_terminal(lab, removed, cfg, argv, explain);
    } else {
        virtlab_container::run(&cfg).map_err(|source| LabError::Launch { lab: lab.name, source })?
    };
    let stdout = outcome.stdout_text();
    if explain {
        eprint!("  attacker said: {stdout}");
    }
    let attack = stdout.lines().find_map(Attack::parse).ok_or_else(|| LabError::NoResult {
        lab: lab.name,
        status: outcome.exit_code(),
        stderr: outcome.stderr_text(),
    })?;
    let expected = lab.expected_blocker(removed);
    let (blocked_by, as_expected) = match &attack {
        Attack::Blocked { .. } => (expected, expected.is_some()),
        Attack::Reached { .. } => (None, expected.is_none()),
        Attack::HostRefuses { .. } => (None, true),
    };
    drop(scene);
    Ok(LabRun { lab: lab.name, class: lab.class, removed: removed.to_vec(), attack, blocked_by, as_expected, argv })
}

/// The exe lab: the container runs in a thread while a copy of a host
/// binary (the scene's `sacrificial`) enters its PID namespace for a
/// second, as `runc exec`'s own process did before it executed the
/// container's command.
fn run_with_a_visitor(
    lab: &'static Lab,
    scene: &Scene,
    mut cfg: ContainerConfig,
) -> Result<virtlab_container::Outcome, LabError> {
    let pid_file = scene.dir.join("container.pid");
    cfg.pid_file = Some(pid_file.clone());
    let launch = std::thread::spawn(move || virtlab_container::run(&cfg));
    let mut pid = None;
    for _ in 0..1000 {
        if let Some(p) = fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok()) {
            pid = Some(p);
            break;
        }
        if launch.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let visit = match pid {
        Some(p) => visit_pid_namespace(p, &scene.dir.join("sacrificial")),
        None => Ok(()),
    };
    let outcome = launch
        .join()
        .map_err(|_| LabError::Prepare {
            lab: lab.name,
            what: "wait for the container".into(),
            source: std::io::Error::other("the launching thread panicked"),
        })?
        .map_err(|source| LabError::Launch { lab: lab.name, source })?;
    visit.map_err(|source| LabError::Prepare {
        lab: lab.name,
        what: "enter the container's PID namespace".into(),
        source,
    })?;
    Ok(outcome)
}

/// Runs `program sleep 1` as host root in the PID namespace of `pid`:
/// setns(2) in a child, which forks the process that executes it.
fn visit_pid_namespace(pid: i32, program: &Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let ns = fs::File::open(format!("/proc/{pid}/ns/pid"))?;
    let path = std::ffi::CString::new(program.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let args = [path.as_ptr(), c"sleep".as_ptr(), c"1".as_ptr(), std::ptr::null()];
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: fork(2) of a process with other threads: the child makes only
    // async-signal-safe system calls (setns, fork, execve, waitpid, _exit)
    // on data prepared above.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if child == 0 {
        // Child process: host namespaces, host root. setns(CLONE_NEWPID)
        // puts its next child into the container's PID namespace.
        // SAFETY: see above; every path ends in _exit or execve.
        unsafe {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWPID) != 0 {
                libc::_exit(100 + *libc::__errno_location());
            }
            let visitor = libc::fork();
            if visitor == 0 {
                libc::execve(path.as_ptr(), args.as_ptr(), env.as_ptr());
                libc::_exit(127);
            }
            let mut status = 0;
            if visitor > 0 {
                libc::waitpid(visitor, &mut status, 0);
            }
            // Killed is fine: the container's PID 1 ending takes its whole
            // PID namespace with it.
            let code = match visitor {
                v if v < 0 => 1,
                _ if libc::WIFEXITED(status) => libc::WEXITSTATUS(status),
                _ => 0,
            };
            libc::_exit(code);
        }
    }
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid status pointer.
    unsafe { libc::waitpid(child, &mut status, 0) };
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("the visiting process failed (wait status {status:#x})")))
    }
}

/// `dev.tty.legacy_tiocsti`, where the kernel has the switch (6.2 on).
fn legacy_tiocsti() -> Option<bool> {
    fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").ok().map(|t| t.trim() != "0")
}

/// The tiocsti lab: a pty made here becomes the controlling terminal of a
/// child in a new session, which runs the container; the lab reads what
/// arrived on the pty. Never the user's own terminal.
fn run_in_a_terminal(
    lab: &'static Lab,
    removed: &[Defence],
    cfg: ContainerConfig,
    argv: Vec<String>,
    explain: bool,
) -> Result<LabRun, LabError> {
    let err = |what: &str| {
        let what = what.to_string();
        move |source| LabError::Prepare { lab: lab.name, what, source }
    };
    let (master, slave) = open_pty().map_err(err("open a pty"))?;
    let (rd, wr) = pipe().map_err(err("make a pipe"))?;
    use std::os::fd::AsRawFd;
    // SAFETY: fork(2). The child (in a new session, with the lab's pty as
    // its controlling terminal) runs the container with the launcher
    // library and writes the attacker's output into the pipe; the lab does
    // nothing else in parallel (no thread of its own is running).
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(LabError::Prepare {
            lab: lab.name,
            what: "fork the terminal's session leader".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    if child == 0 {
        // Child process: host namespaces, root, a session of its own.
        drop(rd);
        drop(master);
        // SAFETY: setsid and ioctl(TIOCSCTTY) with integer arguments.
        let ok = unsafe { libc::setsid() >= 0 && libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) == 0 };
        let text = if ok {
            match virtlab_container::run(&cfg) {
                Ok(o) => o.stdout_text(),
                Err(e) => format!("virtlab.lab-error {e}\n"),
            }
        } else {
            "virtlab.lab-error cannot make the pty the controlling terminal\n".to_string()
        };
        let mut f = fs::File::from(wr);
        let _ = std::io::Write::write_all(&mut f, text.as_bytes());
        // SAFETY: _exit(2): no destructors of the parent's state run twice.
        unsafe { libc::_exit(0) };
    }
    drop(wr);
    drop(slave);
    let mut stdout = String::new();
    let _ = std::io::Read::read_to_string(&mut fs::File::from(rd), &mut stdout);
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid status pointer.
    unsafe { libc::waitpid(child, &mut status, 0) };
    let typed = read_available(&master);
    if explain {
        eprint!("  attacker said: {stdout}");
        eprintln!("  the lab's terminal received: {typed:?}");
    }
    if let Some(e) = stdout.lines().find_map(|l| l.strip_prefix("virtlab.lab-error ")) {
        return Err(LabError::Prepare {
            lab: lab.name,
            what: "run the container".into(),
            source: std::io::Error::other(e.to_string()),
        });
    }
    let mut attack = stdout.lines().find_map(Attack::parse).ok_or_else(|| LabError::NoResult {
        lab: lab.name,
        status: 0,
        stderr: String::new(),
    })?;
    if let Attack::Reached { detail } = &mut attack {
        detail.push_str(&format!(" (the lab's terminal received {:?})", typed.trim_end()));
    }
    let expected = lab.expected_blocker(removed);
    let (blocked_by, as_expected) = match &attack {
        Attack::Blocked { .. } => (expected, expected.is_some()),
        _ => (None, expected.is_none()),
    };
    Ok(LabRun { lab: lab.name, class: lab.class, removed: removed.to_vec(), attack, blocked_by, as_expected, argv })
}

/// A new pty: its master (non-blocking) and slave ends.
fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: posix_openpt/grantpt/unlockpt/ptsname_r on the fd just
    // opened; buf is writable for its length.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NONBLOCK);
        if m < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let master = OwnedFd::from_raw_fd(m);
        let mut buf = [0 as libc::c_char; 64];
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 || libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let s = libc::open(buf.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if s < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((master, OwnedFd::from_raw_fd(s)))
    }
}

/// A close-on-exec pipe: read end, write end.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just made and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// What the pty's master can read now (it is non-blocking).
fn read_available(master: &OwnedFd) -> String {
    use std::os::fd::AsRawFd;
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What one lab prepared on the host; all of it removed on drop.
#[derive(Debug)]
struct Scene {
    /// `virtlab-lab-PID-N-NAME` under the temp directory.
    dir: PathBuf,
    /// The host file outside the rootfs.
    secret: PathBuf,
    /// A directory fd left open across the launch (leaked-fd).
    leaked: Option<OwnedFd>,
    /// A key in this process's session keyring (keyctl).
    key: Option<i64>,
    /// The sacrificial host process (ptrace).
    victim: Option<std::process::Child>,
    /// The host disk's major and minor numbers (mknod).
    disk: Option<(u32, u32)>,
}

/// The secret's content.
pub const SECRET: &str = "host secret: a file outside every container";

/// The key's description and payload (keyctl).
pub const KEY_DESC: &str = "virtlab-lab-secret";
const KEY_PAYLOAD: &str = "host key: a secret of the host's session keyring";

const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
const KEYCTL_INVALIDATE: libc::c_long = 21;
const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;

impl Scene {
    fn new(lab: &'static Lab) -> Result<Scene, LabError> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("virtlab-lab-{}-{n}-{}", std::process::id(), lab.name));
        let err = |what: String| move |source| LabError::Prepare { lab: lab.name, what, source };
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).map_err(err(format!("mkdir {}", dir.display())))?;
        let mut scene =
            Scene { secret: dir.join("host-secret"), dir, leaked: None, key: None, victim: None, disk: None };
        // Readable by everyone: the user namespace maps container root to an
        // unprivileged host uid, and an escape must find the file readable.
        fs::set_permissions(&scene.dir, fs::Permissions::from_mode(0o755))
            .map_err(err(format!("chmod {}", scene.dir.display())))?;
        fs::write(&scene.secret, format!("{SECRET}\n")).map_err(err("write the host secret".into()))?;
        let rootfs = scene.rootfs();
        virtlab_container::rootfs::build(&rootfs, None).map_err(|e| LabError::Prepare {
            lab: lab.name,
            what: "build the rootfs".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let attacker = rootfs.join(ATTACKER_IN_ROOTFS.trim_start_matches('/'));
        fs::write(&attacker, ATTACKER).map_err(err("write the attacker".into()))?;
        fs::set_permissions(&attacker, fs::Permissions::from_mode(0o755)).map_err(err("chmod the attacker".into()))?;
        match lab.name {
            "leaked-fd" => scene.leaked = Some(leak_dir_fd(&scene.dir).map_err(err("open the leaked fd".into()))?),
            "keyctl" | "proc-keys" => {
                scene.key = Some(add_session_key().map_err(err("add a key to the session keyring".into()))?)
            }
            "ptrace" | "exe" => {
                // The sacrificial process runs a copy of the attacker from the
                // scene's directory, outside the container: never virtlab's
                // own binary.
                let copy = scene.dir.join("sacrificial");
                fs::write(&copy, ATTACKER).map_err(err("write the sacrificial program".into()))?;
                fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))
                    .map_err(err("chmod the sacrificial program".into()))?;
                if lab.name == "exe" {
                    return Ok(scene);
                }
                let child = std::process::Command::new(&copy)
                    .args(["sleep", "60"])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .map_err(err("start the sacrificial process".into()))?;
                scene.victim = Some(child);
            }
            "mknod" => scene.disk = Some(host_disk().ok_or(LabError::NoDisk)?),
            _ => {}
        }
        Ok(scene)
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    fn argv(&self, lab: &Lab) -> Result<Vec<String>, LabError> {
        let secret = self.secret.display().to_string();
        let mut v = vec![ATTACKER_IN_ROOTFS.to_string(), lab.name.to_string()];
        match lab.name {
            "chroot" | "leaked-fd" => v.push(secret),
            "keyctl" | "proc-keys" => v.push(KEY_DESC.into()),
            "mknod" => {
                let (maj, min) = self.disk.ok_or(LabError::NoDisk)?;
                v.extend([maj.to_string(), min.to_string()]);
            }
            "ptrace" => v.push(self.victim.as_ref().map_or(0, std::process::Child::id).to_string()),
            _ => {}
        }
        if v[1] == "leaked-fd" {
            v[1] = "fd".into();
        }
        Ok(v)
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        if let Some(mut child) = self.victim.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(key) = self.key.take() {
            // SAFETY: keyctl with integer arguments.
            unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_INVALIDATE, key) };
        }
        self.leaked = None;
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A directory fd of `dir` without `O_CLOEXEC`, as runc's bug left one.
fn leak_dir_fd(dir: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: a NUL-terminated path; no O_CLOEXEC on purpose.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new session keyring for this process, with one `user` key in it.
fn add_session_key() -> std::io::Result<i64> {
    let name = c"virtlab-lab";
    // SAFETY: keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): a NUL-terminated name.
    if unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let desc = std::ffi::CString::new(KEY_DESC).map_err(std::io::Error::other)?;
    // SAFETY: add_key(2) with NUL-terminated type and description and a
    // payload of the given length.
    let id = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            desc.as_ptr(),
            KEY_PAYLOAD.as_ptr(),
            KEY_PAYLOAD.len(),
            KEY_SPEC_SESSION_KEYRING,
        )
    };
    if id < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(id)
}

/// The host disk the mknod lab points at: the first block device of
/// /sys/block that the lab itself (root on the host) can open, real disks
/// before loop, ram and zram devices (some sandboxes refuse even their own
/// root the real disk). Major and minor.
fn host_disk() -> Option<(u32, u32)> {
    let mut names: Vec<String> =
        fs::read_dir("/sys/block").ok()?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let virtual_dev = |n: &str| ["loop", "ram", "zram", "dm-", "md", "sr", "nbd"].iter().any(|p| n.starts_with(p));
    names.sort_by_key(|n| (virtual_dev(n), n.clone()));
    names.iter().find_map(|n| {
        let dev = fs::read_to_string(Path::new("/sys/block").join(n).join("dev")).ok()?;
        let (maj, min) = dev.trim().split_once(':')?;
        let node = Path::new("/dev").join(n);
        fs::File::open(&node).ok()?;
        Some((maj.parse().ok()?, min.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_parse() {
        assert_eq!(
            Attack::parse("virtlab.lab attack=sysrq outcome=blocked step=open errno=30"),
            Some(Attack::Blocked { step: "open".into(), errno: 30 })
        );
        assert_eq!(
            Attack::parse("virtlab.lab attack=chroot outcome=reached detail=read the host file /x: a b"),
            Some(Attack::Reached { detail: "read the host file /x: a b".into() })
        );
        assert_eq!(Attack::parse("virtlab.ready pid=1"), None);
        assert_eq!(Attack::parse("virtlab.lab attack=x outcome=blocked step=open"), None);
    }

    #[test]
    fn names_parse_and_bad_ones_are_named() {
        assert_eq!(Defence::parse_list("userns, seccomp,userns").unwrap(), vec![Defence::Userns, Defence::Seccomp]);
        let e = Defence::parse_list("seccomp,apparmor").unwrap_err().to_string();
        assert!(e.contains("\"apparmor\"") && e.contains("close-fds"), "{e}");
        let e = find_lab("dirtycow").unwrap_err().to_string();
        assert!(e.contains("\"dirtycow\"") && e.contains("release-agent"), "{e}");
    }

    #[test]
    fn the_layers_predict_the_blocker() {
        let ptrace = find_lab("ptrace").unwrap();
        assert_eq!(ptrace.expected_blocker(&[]), Some(Defence::Pidns));
        assert_eq!(ptrace.expected_blocker(&[Defence::Pidns]), Some(Defence::Userns));
        assert_eq!(ptrace.expected_blocker(&[Defence::Pidns, Defence::Userns, Defence::Caps]), None);
        for lab in LABS {
            assert!(!lab.layers.is_empty(), "{} has no defence", lab.name);
        }
    }

    #[test]
    fn the_attacker_is_a_static_elf() {
        assert_eq!(&ATTACKER[..4], b"\x7fELF");
        assert!(ATTACKER.len() < 64 << 10, "{} bytes", ATTACKER.len());
    }
}
