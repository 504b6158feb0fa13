//! One cgroup per container: detect the host's cgroup mode, create the
//! group, apply limits, move the container in, read back what it used,
//! remove it.
//!
//! Three layouts exist in the wild, detected the way crun and youki do,
//! from the file system type of `/sys/fs/cgroup`:
//! - **v2** (cgroup2 mounted there): one directory `virtlab-<id>` with
//!   `memory.max`, `cpu.max`, `pids.max`; read back `memory.peak`,
//!   `cpu.stat` and `memory.events`.
//! - **v1** (a tmpfs holding one mount per controller): one directory
//!   `virtlab-<id>` under each of `memory/`, `cpu/`, `cpuacct/`, `pids/`,
//!   `blkio/` (which only counts, for `stats`), and `devices/`, whose
//!   allowlist ([`crate::runtime::devices`]) decides which device nodes the
//!   container may open (on v2, a BPF program does).
//! - **hybrid** (v1 controllers plus an empty cgroup2 at `unified/`): the
//!   controllers live in v1, so it is handled as v1.
//!
//! Every path is relative to a root given by the caller, so the v2 code is
//! tested against a fake directory.
//!
//! What is read goes through [`CgroupDirs`], a cgroup's directories: the
//! launcher's own [`Cgroup`] has one, and [`CgroupDirs::of_process`] finds
//! a running container's from `/proc/PID/cgroup`, for `top` and `stats`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::statfs::{statfs, FsType, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};
use nix::unistd::Pid;

/// Resource limits, applied through the container's cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Limits {
    /// Memory limit in bytes (swap is limited to the same total when the
    /// kernel accounts it).
    pub memory: Option<u64>,
    /// CPU bandwidth as a number of CPUs (0.5 = half of one CPU).
    pub cpus: Option<f64>,
    /// Maximum number of processes and threads.
    pub pids: Option<u64>,
}

/// Where cgroup file systems are mounted on every mainstream distribution.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// The prefix of every cgroup this crate creates.
pub const PREFIX: &str = "virtlab-";

/// The v1 controllers a container gets a directory in.
const V1_CONTROLLERS: [&str; 6] = ["memory", "cpu", "cpuacct", "pids", "blkio", "devices"];

/// CFS period used for `--cpus`, in microseconds (the kernel default).
const CPU_PERIOD_US: u64 = 100_000;

/// Errors of cgroup handling.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// statfs on the cgroup root failed.
    #[error("cannot inspect the cgroup root {path}: is /sys/fs/cgroup mounted?")]
    Detect {
        /// The root.
        path: PathBuf,
        /// Why.
        #[source]
        source: Errno,
    },
    /// The root is neither cgroup2 nor a tmpfs of v1 controllers.
    #[error("{path} is not a cgroup file system (type {fs_type}): mount cgroup2 or the v1 controllers there")]
    NotCgroupFs {
        /// The root.
        path: PathBuf,
        /// What it is instead.
        fs_type: String,
    },
    /// A controller needed for a limit is missing.
    #[error("the {controller} cgroup controller is not available under {root}: enable it (v2: cgroup.subtree_control; v1: mount it) or drop the limit")]
    MissingController {
        /// The controller.
        controller: &'static str,
        /// Where it was looked for.
        root: PathBuf,
    },
    /// mkdir of the cgroup failed.
    #[error("cannot create the cgroup {path}: run virtlab as root (or with a delegated cgroup)")]
    Create {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing a limit was refused.
    #[error("cannot apply the limit {value} to {path}: the kernel refused this value")]
    Limit {
        /// The control file.
        path: PathBuf,
        /// The value written.
        value: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing the pid to `cgroup.procs` failed.
    #[error("cannot move process {pid} into {path}")]
    Join {
        /// The process.
        pid: i32,
        /// The `cgroup.procs` file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `/proc/PID/cgroup` could not be read.
    #[error("cannot read the cgroups of process {pid} (/proc/{pid}/cgroup): has it ended?")]
    Membership {
        /// The process.
        pid: i32,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// rmdir failed even after killing what was left inside.
    #[error("cannot remove the cgroup {path}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// How the host's cgroups are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum CgroupMode {
    /// Only cgroup v1 controllers.
    V1,
    /// v1 controllers plus a cgroup2 hierarchy at `unified/` (used as v1).
    Hybrid,
    /// The unified cgroup v2 hierarchy.
    V2,
}

impl CgroupMode {
    /// Whether the controllers are driven through the v1 files.
    pub fn is_v1(self) -> bool {
        matches!(self, CgroupMode::V1 | CgroupMode::Hybrid)
    }

    /// A short name: `v1`, `hybrid`, `v2`.
    pub fn name(self) -> &'static str {
        match self {
            CgroupMode::V1 => "v1",
            CgroupMode::Hybrid => "hybrid",
            CgroupMode::V2 => "v2",
        }
    }
}

/// The decision behind [`detect`], apart from the system call: the file
/// system type of the root, and whether `unified/` under it is cgroup2.
pub fn mode_from(root_type: FsType, unified_is_cgroup2: bool) -> Option<CgroupMode> {
    if root_type == CGROUP2_SUPER_MAGIC {
        Some(CgroupMode::V2)
    } else if root_type == TMPFS_MAGIC {
        Some(if unified_is_cgroup2 { CgroupMode::Hybrid } else { CgroupMode::V1 })
    } else {
        None
    }
}

/// Detects the cgroup mode under `root` (normally `/sys/fs/cgroup`).
pub fn detect(root: &Path) -> Result<CgroupMode, CgroupError> {
    let st = statfs(root).map_err(|source| CgroupError::Detect { path: root.into(), source })?;
    let unified = statfs(&root.join("unified")).map(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC).unwrap_or(false);
    mode_from(st.filesystem_type(), unified).ok_or_else(|| CgroupError::NotCgroupFs {
        path: root.into(),
        fs_type: format!("{:#x}", st.filesystem_type().0),
    })
}

/// A v1 controller or the v2 group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Memory,
    Cpu,
    CpuAcct,
    Pids,
    Blkio,
    Devices,
    Unified,
}

/// What the container used, read from its cgroup after it exited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CgroupStats {
    /// Peak memory charged to the cgroup, in bytes.
    pub memory_peak: Option<u64>,
    /// CPU time of all its processes.
    pub cpu_time: Option<Duration>,
    /// How many processes the OOM killer killed in it.
    pub oom_kills: u64,
    /// How many times the memory limit was hit (v1 `memory.failcnt`, v2 `memory.events max`).
    pub memory_limit_hits: u64,
}

/// What a live cgroup's processes use now, as `stats` shows it. `None`
/// where the controller or its file is missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CgroupUsage {
    /// CPU time of all its processes so far (v1 `cpuacct.usage`, v2 `cpu.stat usage_usec`).
    pub cpu_time: Option<Duration>,
    /// Memory charged to it, less the page cache it could drop at once
    /// (the inactive file pages), as Docker counts it: v1
    /// `memory.usage_in_bytes` less `total_inactive_file`, v2
    /// `memory.current` less `inactive_file` (both of `memory.stat`).
    pub memory: Option<u64>,
    /// Its memory limit (v1 `memory.limit_in_bytes`, which reads as a huge
    /// number when unlimited; v2 `memory.max`, `None` for `max`).
    pub memory_limit: Option<u64>,
    /// Bytes read from and written to block devices (v1
    /// `blkio.throttle.io_service_bytes`, v2 `io.stat`).
    pub block_io: Option<(u64, u64)>,
    /// Processes and threads in it (`pids.current`).
    pub pids: Option<u64>,
}

/// A cgroup's directories: one per v1 controller, or the one v2 directory.
/// Everything read from a cgroup is read through this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDirs {
    mode: CgroupMode,
    dirs: Vec<(Part, PathBuf)>,
}

/// A live cgroup, removed when dropped (or by [`Cgroup::remove`]).
#[derive(Debug)]
pub struct Cgroup {
    name: String,
    dirs: CgroupDirs,
    devices: bool,
    removed: bool,
}

impl Cgroup {
    /// Creates `virtlab-<id>` in every controller under `root` and applies
    /// `limits`. On error nothing is left behind.
    pub fn create(root: &Path, mode: CgroupMode, id: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        Self::create_with(root, mode, id, limits, true)
    }

    /// [`Cgroup::create`] with no devices allowlist: every device node the
    /// container can make it can open (the escape lab's mknod lesson).
    pub fn create_without_devices(
        root: &Path,
        mode: CgroupMode,
        id: &str,
        limits: &Limits,
    ) -> Result<Cgroup, CgroupError> {
        Self::create_with(root, mode, id, limits, false)
    }

    /// Creates the cgroup at `path` (relative to each hierarchy's root, as
    /// an OCI bundle's `linux.cgroupsPath` names it; missing parents are
    /// made, and on v2 given the controllers) and applies `limits`.
    pub fn create_at(root: &Path, mode: CgroupMode, path: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        let rel = path.trim_start_matches('/');
        let parents: Vec<&str> = rel.split('/').collect();
        let bases: Vec<PathBuf> =
            if mode.is_v1() { V1_CONTROLLERS.iter().map(|c| root.join(c)).collect() } else { vec![root.to_path_buf()] };
        for base in bases.iter().filter(|b| b.is_dir()) {
            let mut dir = base.clone();
            for p in &parents[..parents.len().saturating_sub(1)] {
                if mode == CgroupMode::V2 {
                    enable_v2_controllers(&dir, limits)?;
                }
                dir.push(p);
                match fs::create_dir(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(source) => return Err(CgroupError::Create { path: dir, source }),
                }
            }
        }
        Self::create_named(root, mode, rel.to_string(), limits, true)
    }

    /// A cgroup that only accounts (memory peak, CPU time) and confines no
    /// device: for measuring a host process such as a VMM, which must
    /// still open /dev/kvm.
    pub fn create_for_accounting(root: &Path, mode: CgroupMode, id: &str) -> Result<Cgroup, CgroupError> {
        Self::create_with(root, mode, id, &Limits::default(), false)
    }

    fn create_with(
        root: &Path,
        mode: CgroupMode,
        id: &str,
        limits: &Limits,
        devices: bool,
    ) -> Result<Cgroup, CgroupError> {
        Self::create_named(root, mode, format!("{PREFIX}{id}"), limits, devices)
    }

    fn create_named(
        root: &Path,
        mode: CgroupMode,
        name: String,
        limits: &Limits,
        devices: bool,
    ) -> Result<Cgroup, CgroupError> {
        let mut cg = Cgroup { name, dirs: CgroupDirs { mode, dirs: Vec::new() }, devices: false, removed: false };
        let parts: &[(Part, &'static str)] = if mode.is_v1() {
            &[
                (Part::Memory, "memory"),
                (Part::Cpu, "cpu"),
                (Part::CpuAcct, "cpuacct"),
                (Part::Pids, "pids"),
                (Part::Blkio, "blkio"),
                (Part::Devices, "devices"),
            ]
        } else {
            &[(Part::Unified, "")]
        };
        if mode == CgroupMode::V2 {
            let parent = Path::new(&cg.name).parent().map_or(root.to_path_buf(), |p| root.join(p));
            enable_v2_controllers(&parent, limits)?;
        }
        let mut seen: Vec<PathBuf> = Vec::new();
        for &(part, sub) in parts {
            if part == Part::Devices && !devices {
                continue;
            }
            let base = if sub.is_empty() { root.to_path_buf() } else { root.join(sub) };
            if !base.is_dir() {
                let needed = match part {
                    Part::Memory => limits.memory.is_some(),
                    Part::Cpu => limits.cpus.is_some(),
                    Part::Pids => limits.pids.is_some(),
                    Part::CpuAcct | Part::Blkio | Part::Devices => false,
                    Part::Unified => true,
                };
                if needed {
                    return Err(CgroupError::MissingController { controller: part.controller(), root: base });
                }
                continue;
            }
            // cpu and cpuacct are often one mount ("cpu,cpuacct") seen under two names.
            let canon = fs::canonicalize(&base).unwrap_or_else(|_| base.clone());
            let dir = base.join(&cg.name);
            if seen.contains(&canon) {
                cg.dirs.dirs.push((part, dir));
                continue;
            }
            seen.push(canon);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(CgroupError::Create { path: dir, source }),
            }
            cg.dirs.dirs.push((part, dir));
        }
        cg.apply(limits)?;
        cg.devices = match cg.dir(Part::Unified).filter(|_| devices) {
            // A kernel without cgroup BPF (or a fake cgroupfs in a test)
            // refuses; the launcher then drops CAP_MKNOD instead.
            Some(dir) => crate::runtime::devices::attach_v2(dir).is_ok(),
            None => cg.dir(Part::Devices).is_some(),
        };
        Ok(cg)
    }

    fn apply(&self, limits: &Limits) -> Result<(), CgroupError> {
        if self.dirs.mode.is_v1() {
            if let Some(bytes) = limits.memory {
                self.write(Part::Memory, "memory.limit_in_bytes", &bytes.to_string())?;
                // With swap accounting, also cap memory+swap, or the hog would
                // page out instead of being killed.
                self.write_if_present(Part::Memory, "memory.memsw.limit_in_bytes", &bytes.to_string())?;
            }
            if let Some(cpus) = limits.cpus {
                self.write(Part::Cpu, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                self.write(Part::Cpu, "cpu.cfs_quota_us", &quota_us(cpus).to_string())?;
            }
            if let Some(n) = limits.pids {
                self.write(Part::Pids, "pids.max", &n.to_string())?;
            }
            if self.dir(Part::Devices).is_some() {
                self.write(Part::Devices, "devices.deny", "a")?;
                for rule in crate::runtime::devices::ALLOWLIST {
                    self.write(Part::Devices, "devices.allow", &rule.v1_line())?;
                }
            }
        } else {
            if let Some(bytes) = limits.memory {
                self.write(Part::Unified, "memory.max", &bytes.to_string())?;
                self.write_if_present(Part::Unified, "memory.swap.max", "0")?;
            }
            if let Some(cpus) = limits.cpus {
                self.write(Part::Unified, "cpu.max", &format!("{} {CPU_PERIOD_US}", quota_us(cpus)))?;
            }
            if let Some(n) = limits.pids {
                self.write(Part::Unified, "pids.max", &n.to_string())?;
            }
        }
        Ok(())
    }

    /// The cgroup's name, `virtlab-<id>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mode it was created in.
    pub fn mode(&self) -> CgroupMode {
        self.dirs.mode
    }

    /// Whether the devices allowlist ([`crate::runtime::devices::ALLOWLIST`])
    /// confines the container: v1 with the devices controller mounted, or
    /// v2 with the BPF program attached. Without it the launcher drops
    /// `CAP_MKNOD`.
    pub fn devices_allowlist(&self) -> bool {
        self.devices
    }

    /// Its directories (one per v1 controller, or the one v2 directory).
    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.paths()
    }

    fn dir(&self, part: Part) -> Option<&Path> {
        self.dirs.dir(part)
    }

    fn write(&self, part: Part, file: &str, value: &str) -> Result<(), CgroupError> {
        let dir = self.dir(part).ok_or_else(|| CgroupError::MissingController {
            controller: part.controller(),
            root: PathBuf::from(&self.name),
        })?;
        let path = dir.join(file);
        fs::write(&path, value).map_err(|source| CgroupError::Limit { path, value: value.into(), source })
    }

    fn write_if_present(&self, part: Part, file: &str, value: &str) -> Result<(), CgroupError> {
        match self.dir(part) {
            Some(dir) if dir.join(file).exists() => self.write(part, file, value),
            _ => Ok(()),
        }
    }

    /// Moves a process into the cgroup (every v1 controller, or the v2 group).
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for path in self.paths() {
            let procs = path.join("cgroup.procs");
            fs::write(&procs, pid.to_string()).map_err(|source| CgroupError::Join { pid, path: procs, source })?;
        }
        Ok(())
    }

    /// v1 only: opens each hierarchy's `tasks` file for writing, so that the
    /// child can move itself in by writing `0` (the kernel checks the
    /// opener's credentials). Empty for v2.
    pub fn open_self_join(&self) -> Result<Vec<std::os::fd::OwnedFd>, CgroupError> {
        if !self.dirs.mode.is_v1() {
            return Ok(Vec::new());
        }
        let mut fds = Vec::new();
        for path in self.paths() {
            let tasks = path.join("tasks");
            let f = fs::OpenOptions::new().write(true).open(&tasks).map_err(|source| CgroupError::Join {
                pid: 0,
                path: tasks,
                source,
            })?;
            fds.push(std::os::fd::OwnedFd::from(f));
        }
        Ok(fds)
    }

    /// Reads what the cgroup's processes used.
    pub fn stats(&self) -> CgroupStats {
        self.dirs.stats()
    }

    /// The processes in the cgroup now.
    pub fn procs(&self) -> Vec<i32> {
        self.dirs.procs()
    }

    /// SIGKILLs every process left in the cgroup (v2: `cgroup.kill` when present).
    pub fn kill_all(&self) {
        if !self.dirs.mode.is_v1() {
            if let Some(dir) = self.dir(Part::Unified) {
                let f = dir.join("cgroup.kill");
                if f.exists() && fs::write(&f, "1").is_ok() {
                    return;
                }
            }
        }
        for p in self.procs() {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }

    /// Kills what is left inside and removes the directories.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.remove_dirs()
    }

    /// Keeps the cgroup after this value is gone (a container that
    /// outlives its launcher); its directories, for whoever removes them.
    pub fn keep(mut self) -> Vec<PathBuf> {
        self.removed = true;
        self.paths()
    }

    /// Removes the directories of a kept cgroup (see [`Cgroup::keep`]),
    /// killing what is left in them.
    pub fn remove_kept(paths: &[PathBuf]) -> Result<(), CgroupError> {
        let mut first_err = None;
        for path in paths {
            if let Err(e) = rmdir_killing(path) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn remove_dirs(&mut self) -> Result<(), CgroupError> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        let mut first_err = None;
        for path in self.paths() {
            if let Err(e) = rmdir_killing(&path) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl CgroupDirs {
    /// The cgroups process `pid` is in, from `/proc/PID/cgroup`, that are
    /// its own: not the root of a hierarchy and, if `launcher` is given,
    /// not shared with that process (a controller the container was given
    /// no cgroup of leaves it in its launcher's, whose figures are not the
    /// container's).
    pub fn of_process(root: &Path, mode: CgroupMode, pid: i32, launcher: Option<i32>) -> Result<Self, CgroupError> {
        let own = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|source| CgroupError::Membership { pid, source })?;
        let launcher = launcher.and_then(|p| fs::read_to_string(format!("/proc/{p}/cgroup")).ok());
        Ok(Self::from_membership(root, mode, &own, launcher.as_deref()))
    }

    /// [`CgroupDirs::of_process`] from the text of the two
    /// `/proc/PID/cgroup` files: lines `ID:CONTROLLERS:PATH`, where v1
    /// names its controllers and v2's one line is `0::PATH`.
    pub fn from_membership(root: &Path, mode: CgroupMode, own: &str, launcher: Option<&str>) -> Self {
        let entries = |text: &str| -> Vec<(Part, String)> {
            let mut out = Vec::new();
            for line in text.lines() {
                let mut fields = line.splitn(3, ':');
                let (Some(id), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
                    continue;
                };
                if mode.is_v1() {
                    out.extend(controllers.split(',').filter_map(Part::v1).map(|p| (p, path.to_string())));
                } else if id == "0" && controllers.is_empty() {
                    out.push((Part::Unified, path.to_string()));
                }
            }
            out
        };
        let shared = launcher.map(entries).unwrap_or_default();
        let dirs = entries(own)
            .into_iter()
            .filter(|e| e.1 != "/" && !shared.contains(e))
            .map(|(part, path)| {
                let base = if part == Part::Unified { root.to_path_buf() } else { root.join(part.controller()) };
                (part, base.join(path.trim_start_matches('/')))
            })
            .collect();
        CgroupDirs { mode, dirs }
    }

    /// The host's cgroup mode.
    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// The directories, each once (cpu and cpuacct may be one).
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = Vec::new();
        for (_, d) in &self.dirs {
            if !v.contains(d) {
                v.push(d.clone());
            }
        }
        v
    }

    fn dir(&self, part: Part) -> Option<&Path> {
        self.dirs.iter().find(|(p, _)| *p == part).map(|(_, d)| d.as_path())
    }

    fn read(&self, part: Part, file: &str) -> Option<String> {
        fs::read_to_string(self.dir(part)?.join(file)).ok()
    }

    fn number(&self, part: Part, file: &str) -> Option<u64> {
        self.read(part, file)?.trim().parse().ok()
    }

    /// CPU time of all its processes so far.
    fn cpu_time(&self) -> Option<Duration> {
        if self.mode.is_v1() {
            self.number(Part::CpuAcct, "cpuacct.usage").map(Duration::from_nanos)
        } else {
            self.read(Part::Unified, "cpu.stat").and_then(|t| keyed(&t, "usage_usec")).map(Duration::from_micros)
        }
    }

    /// What its processes used: peak memory, CPU time, OOM kills, limit hits.
    pub fn stats(&self) -> CgroupStats {
        let mut s = CgroupStats { cpu_time: self.cpu_time(), ..CgroupStats::default() };
        if self.mode.is_v1() {
            s.memory_peak = self.number(Part::Memory, "memory.max_usage_in_bytes");
            s.oom_kills =
                self.read(Part::Memory, "memory.oom_control").and_then(|t| keyed(&t, "oom_kill")).unwrap_or(0);
            s.memory_limit_hits = self.number(Part::Memory, "memory.failcnt").unwrap_or(0);
        } else {
            s.memory_peak = self.number(Part::Unified, "memory.peak");
            let events = self.read(Part::Unified, "memory.events").unwrap_or_default();
            s.oom_kills = keyed(&events, "oom_kill").unwrap_or(0);
            s.memory_limit_hits = keyed(&events, "max").unwrap_or(0);
        }
        s
    }

    /// What its processes use now.
    pub fn usage(&self) -> CgroupUsage {
        let v1 = self.mode.is_v1();
        let (memory, current, cache, limit, pids) = if v1 {
            (Part::Memory, "memory.usage_in_bytes", "total_inactive_file", "memory.limit_in_bytes", Part::Pids)
        } else {
            (Part::Unified, "memory.current", "inactive_file", "memory.max", Part::Unified)
        };
        let inactive = self.read(memory, "memory.stat").and_then(|t| keyed(&t, cache)).unwrap_or(0);
        let block_io = if v1 {
            self.read(Part::Blkio, "blkio.throttle.io_service_bytes").map(|t| v1_io_bytes(&t))
        } else {
            self.read(Part::Unified, "io.stat").map(|t| v2_io_bytes(&t))
        };
        CgroupUsage {
            cpu_time: self.cpu_time(),
            memory: self.number(memory, current).map(|used| used.saturating_sub(inactive)),
            memory_limit: self.number(memory, limit),
            block_io,
            pids: self.number(pids, "pids.current"),
        }
    }

    /// The processes in the cgroup now, in the order of their PIDs.
    pub fn procs(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        for path in self.paths() {
            if let Ok(t) = fs::read_to_string(path.join("cgroup.procs")) {
                pids.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

/// Bytes read and written, from v1 `blkio.throttle.io_service_bytes`:
/// lines `MAJ:MIN Read N`, `MAJ:MIN Write N`, ..., then `Total N`.
fn v1_io_bytes(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0u64, 0u64);
    for line in text.lines() {
        if let [_, op, n] = line.split_whitespace().collect::<Vec<_>>().as_slice() {
            let n: u64 = n.parse().unwrap_or(0);
            match *op {
                "Read" => read = read.saturating_add(n),
                "Write" => write = write.saturating_add(n),
                _ => {}
            }
        }
    }
    (read, write)
}

/// Bytes read and written, from v2 `io.stat`: a line per device,
/// `MAJ:MIN rbytes=N wbytes=N rios=N ...`.
fn v2_io_bytes(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0u64, 0u64);
    for (key, n) in text.split_whitespace().filter_map(|w| w.split_once('=')) {
        let n: u64 = n.parse().unwrap_or(0);
        match key {
            "rbytes" => read = read.saturating_add(n),
            "wbytes" => write = write.saturating_add(n),
            _ => {}
        }
    }
    (read, write)
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = self.remove_dirs();
    }
}

impl Part {
    fn controller(self) -> &'static str {
        match self {
            Part::Memory => "memory",
            Part::Cpu => "cpu",
            Part::CpuAcct => "cpuacct",
            Part::Pids => "pids",
            Part::Blkio => "blkio",
            Part::Devices => "devices",
            Part::Unified => "cgroup2",
        }
    }

    /// The part a v1 controller's name in `/proc/PID/cgroup` stands for.
    fn v1(name: &str) -> Option<Part> {
        [Part::Memory, Part::Cpu, Part::CpuAcct, Part::Pids, Part::Blkio, Part::Devices]
            .into_iter()
            .find(|p| p.controller() == name)
    }
}

/// rmdir a cgroup directory; while it is busy, kill what is inside and
/// retry for up to a second (dying processes leave a cgroup asynchronously).
fn rmdir_killing(path: &Path) -> Result<(), CgroupError> {
    let mut last = None;
    for attempt in 0..200 {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if let Ok(t) = fs::read_to_string(path.join("cgroup.procs")) {
                    for p in t.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                    }
                }
                last = Some(e);
                std::thread::sleep(Duration::from_millis(if attempt < 20 { 1 } else { 5 }));
            }
            Err(source) => return Err(CgroupError::Remove { path: path.into(), source }),
        }
    }
    Err(CgroupError::Remove {
        path: path.into(),
        source: last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EBUSY)),
    })
}

fn quota_us(cpus: f64) -> u64 {
    ((cpus * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

/// `key value` lines (memory.events, cpu.stat, memory.oom_control).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        if w.next() == Some(key) {
            w.next()?.parse().ok()
        } else {
            None
        }
    })
}

/// v2: make memory, cpu, pids (and io, which only counts) available to
/// children of `root`, in one write of `+memory +cpu +pids +io` to
/// `cgroup.subtree_control`.
fn enable_v2_controllers(root: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let available = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let enabled = fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
    let wanted: [(&'static str, bool); 4] = [
        ("memory", limits.memory.is_some()),
        ("cpu", limits.cpus.is_some()),
        ("pids", limits.pids.is_some()),
        ("io", false),
    ];
    let has = |t: &str, c: &str| t.split_whitespace().any(|w| w == c);
    let mut tokens = Vec::new();
    let mut any_needed = false;
    for (c, needed) in wanted {
        if has(&enabled, c) {
            continue;
        }
        if !has(&available, c) {
            if needed {
                return Err(CgroupError::MissingController { controller: c, root: root.into() });
            }
            continue;
        }
        any_needed |= needed;
        tokens.push(format!("+{c}"));
    }
    if tokens.is_empty() {
        return Ok(());
    }
    let path = root.join("cgroup.subtree_control");
    let value = tokens.join(" ");
    match fs::write(&path, &value) {
        Err(source) if any_needed => Err(CgroupError::Limit { path, value, source }),
        _ => Ok(()),
    }
}

/// Removes `virtlab-<pid>-<n>` cgroups whose launcher `<pid>` no longer
/// exists (a launcher killed with SIGKILL cannot clean up after itself).
/// Returns the directories removed.
pub fn cleanup_stale(root: &Path, mode: CgroupMode) -> Vec<PathBuf> {
    let bases: Vec<PathBuf> =
        if mode.is_v1() { V1_CONTROLLERS.iter().map(|c| root.join(c)).collect() } else { vec![root.to_path_buf()] };
    let mut removed = Vec::new();
    for base in bases {
        let Ok(entries) = fs::read_dir(&base) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = launcher_pid(&name) else { continue };
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            if rmdir_killing(&e.path()).is_ok() {
                removed.push(e.path());
            }
        }
    }
    removed
}

/// The launcher pid in a `virtlab-<pid>-<n>` name.
fn launcher_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_v2(controllers: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("cgroup.controllers"), controllers).unwrap();
        fs::write(d.path().join("cgroup.subtree_control"), "").unwrap();
        d
    }

    #[test]
    fn mode_decision() {
        assert_eq!(mode_from(CGROUP2_SUPER_MAGIC, false), Some(CgroupMode::V2));
        assert_eq!(mode_from(TMPFS_MAGIC, true), Some(CgroupMode::Hybrid));
        assert_eq!(mode_from(TMPFS_MAGIC, false), Some(CgroupMode::V1));
        assert_eq!(mode_from(FsType(0xEF53), false), None);
        assert!(CgroupMode::Hybrid.is_v1());
    }

    #[test]
    fn v2_limits_stats_and_removal_on_a_fake_cgroupfs() {
        let root = fake_v2("cpuset cpu io memory pids");
        let limits = Limits { memory: Some(32 << 20), cpus: Some(0.5), pids: Some(16) };
        let cg = Cgroup::create(root.path(), CgroupMode::V2, "4242-0", &limits).unwrap();
        let dir = root.path().join("virtlab-4242-0");
        assert_eq!(cg.paths(), vec![dir.clone()]);
        let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.max"), (32u64 << 20).to_string());
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("pids.max"), "16");
        // Controllers were enabled for the children.
        let sub = fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap();
        assert_eq!(sub, "+memory +cpu +pids +io");

        cg.add_process(77).unwrap();
        assert_eq!(read("cgroup.procs"), "77");

        // What the kernel would have written by the time the container exits.
        fs::write(dir.join("memory.peak"), "123456\n").unwrap();
        fs::write(dir.join("cpu.stat"), "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n").unwrap();
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        let s = cg.stats();
        assert_eq!(s.memory_peak, Some(123456));
        assert_eq!(s.cpu_time, Some(Duration::from_micros(2500)));
        assert_eq!(s.oom_kills, 1);
        assert_eq!(s.memory_limit_hits, 3);

        // A real cgroupfs removes its control files itself on rmdir; a
        // plain directory needs them gone first.
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        for e in fs::read_dir(&dir).unwrap() {
            fs::remove_file(e.unwrap().path()).unwrap();
        }
        cg.remove().unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn v2_missing_controller_is_an_error_and_leaves_nothing() {
        let root = fake_v2("cpu io");
        let limits = Limits { memory: Some(64 << 20), ..Limits::default() };
        let err = Cgroup::create(root.path(), CgroupMode::V2, "1-1", &limits).unwrap_err();
        assert!(matches!(err, CgroupError::MissingController { controller: "memory", .. }), "{err}");
        assert!(!root.path().join("virtlab-1-1").exists());
    }

    #[test]
    fn a_processes_own_cgroups_from_proc_pid_cgroup() {
        let root = Path::new("/cg");
        // Hybrid: v1 controllers (cpu and cpuacct mounted together), a
        // named hierarchy and the empty unified one, all left out but the
        // container's own; freezer is not ours, blkio is the launcher's.
        let own = "12:pids:/virtlab-7-0\n9:name=systemd:/user.slice\n7:blkio:/user.slice\n6:freezer:/\n\
                   4:memory:/virtlab-7-0\n2:cpu,cpuacct:/virtlab-7-0\n0::/user.slice\n";
        let launcher = "12:pids:/user.slice\n7:blkio:/user.slice\n4:memory:/user.slice\n2:cpu,cpuacct:/\n0::/\n";
        let d = CgroupDirs::from_membership(root, CgroupMode::Hybrid, own, Some(launcher));
        let dirs: Vec<(Part, &str)> = d.dirs.iter().map(|(p, d)| (*p, d.to_str().unwrap())).collect();
        assert_eq!(
            dirs,
            [
                (Part::Pids, "/cg/pids/virtlab-7-0"),
                (Part::Memory, "/cg/memory/virtlab-7-0"),
                (Part::Cpu, "/cg/cpu/virtlab-7-0"),
                (Part::CpuAcct, "/cg/cpuacct/virtlab-7-0"),
            ]
        );
        // v2: the one `0::` line; a hierarchy's root is never a container's.
        let d = CgroupDirs::from_membership(root, CgroupMode::V2, "0::/virtlab-7-0\n", None);
        assert_eq!(d.paths(), [PathBuf::from("/cg/virtlab-7-0")]);
        assert!(CgroupDirs::from_membership(root, CgroupMode::V2, "0::/\n", None).paths().is_empty());
        assert!(CgroupDirs::from_membership(root, CgroupMode::V2, "0::/a\n", Some("0::/a\n")).paths().is_empty());
    }

    #[test]
    fn live_usage_on_fake_v1_and_v2_cgroupfs() {
        let root = tempfile::tempdir().unwrap();
        let own = "5:memory:/c\n4:cpuacct:/c\n3:pids:/c\n2:blkio:/c\n";
        let d = CgroupDirs::from_membership(root.path(), CgroupMode::V1, own, None);
        let write = |dir: &str, file: &str, text: &str| {
            fs::create_dir_all(root.path().join(dir)).unwrap();
            fs::write(root.path().join(dir).join(file), text).unwrap();
        };
        assert_eq!(d.usage(), CgroupUsage::default(), "nothing to read yet");
        write("memory/c", "memory.usage_in_bytes", "10485760\n");
        write("memory/c", "memory.stat", "cache 4096\ninactive_file 0\ntotal_inactive_file 2097152\n");
        write("memory/c", "memory.limit_in_bytes", "67108864\n");
        write("cpuacct/c", "cpuacct.usage", "1500000000\n");
        write("pids/c", "pids.current", "3\n");
        write(
            "blkio/c",
            "blkio.throttle.io_service_bytes",
            "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 0\n8:16 Read 4096\nTotal 8704\n",
        );
        write("pids/c", "cgroup.procs", "10\n11\n");
        write("memory/c", "cgroup.procs", "12\n11\n");
        let u = d.usage();
        assert_eq!(u.memory, Some(8 << 20), "usage less the inactive file cache");
        assert_eq!(u.memory_limit, Some(64 << 20));
        assert_eq!(u.cpu_time, Some(Duration::from_millis(1500)));
        assert_eq!(u.pids, Some(3));
        assert_eq!(u.block_io, Some((8192, 512)));
        assert_eq!(d.procs(), [10, 11, 12], "every controller's, once each");

        let d = CgroupDirs::from_membership(root.path(), CgroupMode::V2, "0::/v2\n", None);
        write("v2", "memory.current", "5000000\n");
        write("v2", "memory.stat", "anon 1000\ninactive_file 1000000\n");
        write("v2", "memory.max", "max\n");
        write("v2", "cpu.stat", "usage_usec 250000\nuser_usec 200000\n");
        write("v2", "pids.current", "1\n");
        write("v2", "io.stat", "8:0 rbytes=100 wbytes=20 rios=1 wios=1 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2\n");
        let u = d.usage();
        assert_eq!(
            u,
            CgroupUsage {
                cpu_time: Some(Duration::from_millis(250)),
                memory: Some(4_000_000),
                memory_limit: None,
                block_io: Some((101, 22)),
                pids: Some(1),
            }
        );
    }

    #[test]
    fn stale_names() {
        assert_eq!(launcher_pid("virtlab-123-4"), Some(123));
        assert_eq!(launcher_pid("virtlab-abc-4"), None);
        assert_eq!(launcher_pid("other-123-4"), None);
        let root = fake_v2("memory");
        // pid 0x7fffffff cannot be a live process
        fs::create_dir(root.path().join("virtlab-2147483647-0")).unwrap();
        fs::create_dir(root.path().join(format!("virtlab-{}-0", std::process::id()))).unwrap();
        let removed = cleanup_stale(root.path(), CgroupMode::V2);
        assert_eq!(removed, vec![root.path().join("virtlab-2147483647-0")]);
        assert!(root.path().join(format!("virtlab-{}-0", std::process::id())).exists());
    }
}
