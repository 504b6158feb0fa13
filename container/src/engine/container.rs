//! One container's directory: what it runs, and its status read from the
//! files its monitor writes.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::{io_err, EngineError};
use crate::image::{digest::sha256_hex, time};

/// What a container runs: written once, when it is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// The image as the user named it, and its ID.
    pub image: String,
    pub image_id: String,
    /// The command (entrypoint and arguments, resolved from the image).
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: String,
    /// `UID[:GID]`, if not root.
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub memory: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<u64>,
    /// Remove the container when it exits (`--rm`).
    pub auto_remove: bool,
    /// Namespaces to create (`--ns`), as `Namespaces::parse` reads them.
    #[serde(default = "all_namespaces")]
    pub namespaces: String,
    /// Mount the root file system read-only (`--read-only`).
    #[serde(default)]
    pub read_only: bool,
    /// Keep standard input open (`-i`): the command reads the terminal of a
    /// run in the foreground; otherwise /dev/null.
    #[serde(default)]
    pub interactive: bool,
    /// Give the command the terminal itself (`-t`), for a run in the
    /// foreground; its output then bypasses the log.
    #[serde(default)]
    pub tty: bool,
    /// What runs it: `container` (namespaces, cgroups, the launcher) or
    /// `vm` (a Linux guest of virtlab's VMM, the image its root file
    /// system).
    #[serde(default = "default_runtime")]
    pub runtime: String,
    /// `--security-opt`, as given.
    #[serde(default)]
    pub security_opt: Vec<String>,
    /// The text of the seccomp profile `--security-opt seccomp=PATH` named,
    /// read when the container was made (as Docker keeps it), so that
    /// `start` does not depend on the file.
    #[serde(default)]
    pub seccomp_profile: Option<String>,
    /// `--cap-add`, `--cap-drop`, as given.
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    /// `--privileged`.
    #[serde(default)]
    pub privileged: bool,
}

impl RunSpec {
    /// The container's defence switches, its profile from the record.
    pub fn defences(&self) -> Result<crate::runtime::defences::Defences, crate::runtime::defences::DefenceError> {
        crate::runtime::defences::Defences::parse(
            &self.security_opt,
            &self.cap_add,
            &self.cap_drop,
            self.privileged,
            |path| {
                self.seccomp_profile.clone().ok_or_else(|| {
                    std::io::Error::other(format!("the container's record has no copy of {}", path.display()))
                })
            },
        )
    }
}

/// The runtime of a container whose config names none.
pub fn default_runtime() -> String {
    RUNTIME_CONTAINER.into()
}

/// `--runtime container`: the launcher.
pub const RUNTIME_CONTAINER: &str = "container";
/// `--runtime vm`: a Linux guest.
pub const RUNTIME_VM: &str = "vm";

fn all_namespaces() -> String {
    "all".into()
}

/// What `config.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    pub created: String,
    pub spec: RunSpec,
}

/// How a container ended (`exit.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status, or 128 + the signal.
    pub code: i32,
    pub finished: String,
    pub oom_killed: bool,
    /// Why it did not run, if it could not start.
    pub error: Option<String>,
}

/// A container's status, as `ps` shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Made, its command not running yet.
    Created,
    /// Running since `since`, as PID `pid` on the host.
    Up { pid: i32, since: SystemTime },
    /// Ended, with its record.
    Exited(ExitRecord),
    /// Its monitor died without recording an end (killed, or the host
    /// rebooted): the container is gone, its status unknown.
    Dead,
}

impl Status {
    /// Docker's STATUS column: `Up 3 seconds`, `Exited (0) 2 minutes ago`.
    pub fn describe(&self, now: SystemTime) -> String {
        match self {
            Status::Created => "Created".into(),
            Status::Up { since, .. } => {
                format!("Up {}", time::human_duration(now.duration_since(*since).unwrap_or_default()))
            }
            Status::Exited(e) => {
                let ago =
                    time::parse_rfc3339(&e.finished).map_or_else(String::new, |t| format!(" {}", time::ago(t, now)));
                format!("Exited ({}){ago}", e.code)
            }
            Status::Dead => "Exited (unknown)".into(),
        }
    }

    /// Docker's state word (`running`, `exited`, ...).
    pub fn word(&self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Up { .. } => "running",
            Status::Exited(_) => "exited",
            Status::Dead => "dead",
        }
    }
}

/// A container of the store.
#[derive(Debug, Clone)]
pub struct Container {
    pub dir: PathBuf,
    pub config: ContainerConfig,
}

/// `ROOT/containers`.
pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

/// The lock on the list of containers (names are unique across it).
fn list_lock(root: &Path) -> Result<Flock<File>, EngineError> {
    let dir = containers_dir(root);
    fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
    lock_file(&dir.join(".lock"))
}

/// An exclusive flock(2) on `path`, created if missing.
fn lock_file(path: &Path) -> Result<Flock<File>, EngineError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err(format!("open {}", path.display())))?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| io_err(format!("lock {}", path.display()))(e.into()))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A name from the ID, as Docker gives an unnamed container one (Docker's
/// are adjective_scientist; these stay short and say what they are).
fn generated_name(id: &str) -> String {
    format!("virtlab_{}", &id[..8])
}

impl Container {
    /// Makes a container directory for `spec`, named `name` (or a generated
    /// name), refusing a name in use.
    pub fn create(root: &Path, name: Option<&str>, spec: RunSpec) -> Result<Container, EngineError> {
        let _lock = list_lock(root)?;
        let now = SystemTime::now();
        let seed = format!("{:?}{}{}", now, std::process::id(), spec.argv.join(" "));
        let id = sha256_hex(seed.as_bytes());
        let name = match name {
            Some(n) if !valid_name(n) => return Err(EngineError::BadName(n.to_string())),
            Some(n) => n.to_string(),
            None => generated_name(&id),
        };
        if Container::list(root)?.iter().any(|c| c.config.name == name) {
            return Err(EngineError::NameInUse(name));
        }
        let dir = containers_dir(root).join(&id);
        fs::create_dir(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        let config = ContainerConfig { id, name, created: time::rfc3339(now), spec };
        write_json(&dir.join("config.json"), &config)?;
        Ok(Container { dir, config })
    }

    /// Every container of the store, oldest first.
    pub fn list(root: &Path) -> Result<Vec<Container>, EngineError> {
        let dir = containers_dir(root);
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with('.') || !path.is_dir() {
                continue;
            }
            // A directory without its config is one being made or removed.
            if let Ok(config) = read_json::<ContainerConfig>(&path.join("config.json")) {
                out.push(Container { dir: path, config });
            }
        }
        out.sort_by(|a, b| a.config.created.cmp(&b.config.created));
        Ok(out)
    }

    /// The container `what` names: a name, an ID, or a unique ID prefix.
    pub fn find(root: &Path, what: &str) -> Result<Container, EngineError> {
        // A whole ID (what a monitor is given) needs no listing.
        if what.len() == 64 && what.bytes().all(|b| b.is_ascii_hexdigit()) {
            let dir = containers_dir(root).join(what);
            if let Ok(config) = read_json::<ContainerConfig>(&dir.join("config.json")) {
                return Ok(Container { dir, config });
            }
        }
        let all = Container::list(root)?;
        if let Some(c) = all.iter().find(|c| c.config.name == what || c.config.id == what) {
            return Ok(c.clone());
        }
        let by_prefix: Vec<&Container> =
            all.iter().filter(|c| !what.is_empty() && c.config.id.starts_with(what)).collect();
        match by_prefix.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(EngineError::NoSuchContainer(what.to_string())),
        }
    }

    /// Bytes in its writable layer (what it changed of its image).
    pub fn size(&self) -> u64 {
        fn bytes(dir: &Path) -> u64 {
            let Ok(entries) = fs::read_dir(dir) else { return 0 };
            entries
                .flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => bytes(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                    _ => 0,
                })
                .sum()
        }
        bytes(&self.dir.join("upper"))
    }

    /// The root of the store it is in.
    pub fn store_root(&self) -> &Path {
        self.dir.parent().and_then(Path::parent).unwrap_or(Path::new("/"))
    }

    /// The first 12 hex digits of the ID.
    pub fn short_id(&self) -> &str {
        &self.config.id[..12]
    }

    /// The monitor, as it recorded itself, if it did.
    pub fn monitor(&self) -> Option<Process> {
        Process::parse(&fs::read_to_string(self.dir.join("monitor.pid")).ok()?)
    }

    /// Records this process as the container's monitor.
    pub fn claim_monitor(&self) -> Result<(), EngineError> {
        let me = Process::of(std::process::id() as i32)
            .ok_or_else(|| io_err("read /proc/self/stat")(std::io::ErrorKind::NotFound.into()))?;
        let path = self.dir.join("monitor.pid");
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, me.to_text())
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(io_err(format!("write {}", path.display())))
    }

    /// Whether its monitor is still the process that recorded itself.
    pub fn monitor_alive(&self) -> bool {
        self.monitor().is_some_and(|m| m.alive())
    }

    /// The container's PID on the host, once its command ran.
    pub fn pid(&self) -> Option<i32> {
        fs::read_to_string(self.dir.join("pid")).ok()?.trim().parse().ok()
    }

    /// How it ended, if it did.
    pub fn exit(&self) -> Option<ExitRecord> {
        read_json(&self.dir.join("exit.json")).ok()
    }

    /// The status, read from the files.
    pub fn status(&self) -> Status {
        if let Some(e) = self.exit() {
            return Status::Exited(e);
        }
        let monitor_alive = self.monitor_alive();
        match (self.pid(), monitor_alive) {
            (Some(pid), true) => {
                let since = fs::metadata(self.dir.join("pid")).and_then(|m| m.modified()).unwrap_or(SystemTime::now());
                Status::Up { pid, since }
            }
            (None, true) => Status::Created,
            (_, false) if self.monitor().is_none() => Status::Created,
            (_, false) => Status::Dead,
        }
    }

    /// Whether it is running, or its monitor is about to run it.
    pub fn is_active(&self) -> bool {
        self.exit().is_none() && self.monitor_alive()
    }

    /// The log file (Docker's json-file format, see
    /// [`crate::runtime::log`]).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// This container's lock: held while a command changes its state
    /// (starts it, records its end, removes it), so two never race.
    pub fn lock(&self) -> Result<Flock<File>, EngineError> {
        lock_file(&self.dir.join("lock"))
    }

    /// Makes a container that is not running ready to run again: its
    /// last run's pid files and exit record go; its log and writable layer
    /// stay, as Docker keeps them across restarts. Call with the lock held.
    pub fn reset_for_start(&self) -> Result<(), EngineError> {
        for f in ["exit.json", "pid", "pid.new", "monitor.pid"] {
            match fs::remove_file(self.dir.join(f)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(format!("remove {}", self.dir.join(f).display()))(e)),
            }
        }
        Ok(())
    }

    /// Removes the container's directory (its writable layer with it).
    /// Refuses a running one.
    pub fn remove(&self) -> Result<(), EngineError> {
        let _mine = self.lock()?;
        if self.is_active() {
            return Err(EngineError::Running(self.config.name.clone()));
        }
        let _list = list_lock(self.store_root())?;
        // The config goes first: from then on no command lists it.
        let _ = fs::remove_file(self.dir.join("config.json"));
        fs::remove_dir_all(&self.dir).map_err(io_err(format!("remove {}", self.dir.display())))
    }
}

/// A process told apart from a later one with the same PID (after the
/// PID wrapped around, or the host rebooted): its PID, its start time in
/// clock ticks since boot, and the boot's ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    pub start: u64,
    pub boot: String,
}

impl Process {
    /// Process `pid` as it is now, if it exists.
    pub fn of(pid: i32) -> Option<Process> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command name (which may hold spaces and parentheses):
        // state is field 3, starttime field 22.
        let rest = stat.rsplit_once(')')?.1;
        let start = rest.split_whitespace().nth(19)?.parse().ok()?;
        Some(Process { pid, start, boot: boot_id() })
    }

    /// `PID START BOOT`, as `monitor.pid` holds it.
    pub fn to_text(&self) -> String {
        format!("{} {} {}\n", self.pid, self.start, self.boot)
    }

    /// Reads [`Process::to_text`].
    pub fn parse(text: &str) -> Option<Process> {
        let mut words = text.split_whitespace();
        let pid = words.next()?.parse().ok()?;
        let start = words.next()?.parse().ok()?;
        let boot = words.next()?.to_string();
        Some(Process { pid, start, boot })
    }

    /// Whether it still runs: the same process, not a zombie.
    pub fn alive(&self) -> bool {
        Process::of(self.pid).as_ref() == Some(self) && alive(self.pid)
    }
}

/// This boot's ID (a new one at every boot).
fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), EngineError> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| io_err("encode JSON")(e.into()))?;
    fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path)).map_err(io_err(format!("write {}", path.display())))
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, EngineError> {
    let bytes = fs::read(path).map_err(io_err(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt(path.to_path_buf(), e.to_string()))
}
