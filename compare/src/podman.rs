//! podman as a peer: a storage of its own, the command line of one `podman
//! run`, the cgroup its container's memory is read from, and the clean-up
//! that leaves nothing behind.
//!
//! Everything podman keeps goes under one directory of the run's
//! ([`PodmanStorage`]): `--root` (images, containers, libpod's database),
//! `--runroot` and `--tmpdir`, with the `vfs` storage driver (plain
//! copies, no overlay mounts to leak). `--cgroup-manager cgroupfs` keeps
//! podman away from the host's systemd, `--events-backend none` away from
//! its journal: nothing of podman's is written outside that directory,
//! except the container's cgroup, which goes under a fresh cgroup of ours
//! ([`LaunchGuard`]) and is removed with it.
//!
//! A `podman run` is more than one process: podman starts `conmon`, a
//! monitor that daemonizes (so its parent would be init, not virtlab),
//! which starts runc and, when the container exits, runs `podman container
//! cleanup`. During a launch the harness is a child subreaper
//! (prctl(2) `PR_SET_CHILD_SUBREAPER`), so conmon and its clean-up become
//! its children; after each launch it waits, untimed, until no process
//! names the storage directory and reaps them ([`LaunchGuard`]'s drop).
//! At the end of the run every container left is removed, then the mounts
//! and the directory ([`remove_all`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::launch::PodmanStorage;
use crate::memory::ProcessCgroup;

/// How long the processes of one launch (conmon, its `podman container
/// cleanup`) may take to go after `podman run` returned, before they are
/// killed.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the cgroups of podman launches are called: `virtlab-mem-podman-<pid>-<n>`.
const CGROUP_WHAT: &str = "podman";

/// `podman` with the options that keep it in `storage`.
pub fn podman(storage: &PodmanStorage) -> Command {
    let mut c = Command::new("podman");
    c.args(global_args(storage));
    c
}

/// The options before the subcommand: the private storage, the `vfs`
/// driver, cgroupfs (not the host's systemd), no event log.
pub fn global_args(storage: &PodmanStorage) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    for (flag, path) in [("--root", storage.root()), ("--runroot", storage.runroot()), ("--tmpdir", storage.tmpdir())] {
        a.push(flag.into());
        a.push(path.into());
    }
    for w in ["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none"] {
        a.push(w.into());
    }
    a
}

/// Loads the OCI archive `archive` into `storage` (`podman load -i`).
pub fn load(storage: &PodmanStorage, archive: &Path) -> Result<(), String> {
    for dir in [storage.root(), storage.runroot(), storage.tmpdir()] {
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let out = podman(storage)
        .arg("load")
        .arg("-i")
        .arg(archive)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot start podman: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("`podman load` failed: {}", stderr.lines().last().unwrap_or("").trim()));
    }
    Ok(())
}

/// What one `podman run` is given.
#[derive(Debug, Clone)]
pub struct RunOptions<'a> {
    /// The image's name in the storage.
    pub image: &'a str,
    /// The command, `/virtlab-workload` and its arguments.
    pub argv: &'a [String],
    /// Memory limit, bytes (`--memory`).
    pub memory: u64,
    /// pids limit (`--pids-limit`).
    pub pids: u64,
    /// A cgroup of ours for the container's cgroup to go under, by name
    /// (`--cgroup-parent /NAME`); conmon stays out of it (`--cgroups
    /// no-conmon`), so that its peak is the container's alone.
    pub cgroup_parent: Option<&'a str>,
    /// The OCI runtime (`--runtime`): `runc`, or a path to `virtlab-runc`.
    pub runtime: &'a str,
}

/// The arguments of `podman run` after the global options: removed when it
/// exits, the runtime, the rlimits and limits of our container row, no
/// network, never a registry.
pub fn run_args(o: &RunOptions<'_>) -> Vec<String> {
    let mut a: Vec<String> = ["run", "--rm", "--pull", "never", "--runtime", o.runtime].map(String::from).to_vec();
    a.extend(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", "none"].map(String::from));
    a.extend(["--memory".into(), format!("{}b", o.memory), "--pids-limit".into(), o.pids.to_string()]);
    if let Some(parent) = o.cgroup_parent {
        a.extend(["--cgroups".into(), "no-conmon".into(), "--cgroup-parent".into(), format!("/{parent}")]);
    }
    a.push(o.image.to_string());
    a.extend(o.argv.iter().cloned());
    a
}

/// What one podman launch leaves to clear: the fresh cgroup its
/// container's cgroup goes under, and conmon and its clean-up, adopted by
/// the harness as a subreaper. On drop (every way out of the launch) those
/// processes are waited for and reaped, the cgroup is removed from every
/// hierarchy runc made it in, and the harness stops being a subreaper.
#[derive(Debug)]
pub struct LaunchGuard {
    cg: Option<ProcessCgroup>,
    storage: PodmanStorage,
}

impl LaunchGuard {
    /// Makes `virtlab-mem-podman-<pid>-<n>` (needs root) and makes this
    /// process a subreaper until the drop.
    pub fn create(storage: &PodmanStorage) -> Result<LaunchGuard, String> {
        let cg = ProcessCgroup::create(CGROUP_WHAT)?;
        set_subreaper(true);
        Ok(LaunchGuard { cg: Some(cg), storage: storage.clone() })
    }

    /// Its cgroup's name, for `--cgroup-parent`.
    pub fn name(&self) -> &str {
        self.cg.as_ref().map_or("", |c| c.name())
    }

    /// The memory peak of everything that ran under it: runc's container
    /// init and the workload.
    pub fn peak(&self) -> Option<u64> {
        self.cg.as_ref()?.peak()
    }
}

impl Drop for LaunchGuard {
    fn drop(&mut self) {
        settle(&self.storage.dir, SETTLE_TIMEOUT);
        if let Some(cg) = self.cg.take() {
            remove_cgroup_everywhere(cg.name());
            let _ = cg.remove();
        }
        set_subreaper(false);
        // Any adopted process that ended meanwhile.
        reap_adopted();
    }
}

/// Makes this process a child subreaper, or no longer one: orphans among
/// its descendants (podman's daemonized conmon) become its children, which
/// it can wait for and reap, instead of init's.
fn set_subreaper(on: bool) {
    // SAFETY: prctl(2) PR_SET_CHILD_SUBREAPER takes a flag and changes only
    // which process adopts this one's orphaned descendants.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, libc::c_ulong::from(on), 0, 0, 0) };
}

/// The programs of a podman launch that can end up as our children once
/// orphaned (runc's init names itself `runc:[N:...]`; virtlab's container
/// process is `virtlab-runc` until it execs).
fn is_podman_process(comm: &str) -> bool {
    comm == "conmon" || comm == "podman" || comm.starts_with("runc") || comm == "virtlab-runc"
}

/// This process's children that are podman's (adopted as a subreaper),
/// alive or zombies.
fn adopted_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1;
            let ppid: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == me && is_podman_process(comm)).then_some(pid)
        })
        .collect()
}

/// Reaps the adopted podman processes that have ended; returns how many
/// are still running.
fn reap_adopted() -> usize {
    let mut running = 0;
    for pid in adopted_children() {
        let mut status = 0;
        // SAFETY: waitpid(2) with WNOHANG on one child of ours (its parent
        // is this process) that podman started and no other code waits
        // for: the `podman run` the harness spawned is reaped before this
        // runs.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == 0 {
            running += 1;
        }
    }
    running
}

/// The processes that name `dir` on their command line (conmon, podman,
/// runc of a launch in it); zombies have none, so do not count.
fn processes_naming(dir: &Path) -> Vec<i32> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            cmdline.windows(needle.len()).any(|w| w == needle).then_some(pid)
        })
        .filter(|&pid| pid != std::process::id() as i32)
        .collect()
}

/// Waits up to `wait` for every process naming `dir` to end (reaping
/// those this process adopted as a subreaper), then kills those left and
/// waits a second more.
pub fn settle(dir: &Path, wait: Duration) {
    let t0 = Instant::now();
    let mut killed = false;
    loop {
        let adopted_running = reap_adopted();
        let left = processes_naming(dir);
        if left.is_empty() && adopted_running == 0 {
            return;
        }
        let waited = t0.elapsed();
        if waited > wait + Duration::from_secs(1) {
            return;
        }
        if waited > wait && !killed {
            for pid in left {
                // SAFETY: kill(2) takes any pid; this one was read from
                // /proc a moment ago with a command line naming this
                // run's own storage directory, so it is one of this run's
                // podman processes, still there after the grace period.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Removes the cgroup `name` (and what runc made inside it) from every
/// hierarchy under `/sys/fs/cgroup`: runc creates a container's parent in
/// each v1 controller it uses, beyond those [`ProcessCgroup`] made.
pub fn remove_cgroup_everywhere(name: &str) {
    if name.is_empty() || name.contains('/') {
        return;
    }
    let root = Path::new(virtlab_container::cgroup::DEFAULT_ROOT);
    let mut candidates = vec![root.join(name)];
    if let Ok(entries) = std::fs::read_dir(root) {
        candidates.extend(entries.flatten().map(|e| e.path().join(name)));
    }
    for path in candidates.iter().filter(|p| p.is_dir()) {
        remove_cgroup_tree(path);
    }
}

/// rmdir a cgroup directory after its children; a busy one has what is
/// in it killed and is tried again for up to a second.
fn remove_cgroup_tree(path: &Path) {
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    for attempt in 0..200 {
        match std::fs::remove_dir(path) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                let procs = std::fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill(2) on a process inside this run's own
                    // podman cgroup, which is being removed.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                std::thread::sleep(Duration::from_millis(if attempt < 20 { 1 } else { 5 }));
            }
            _ => return,
        }
    }
}

/// Removes the podman cgroups of this process that a launch may have left
/// (one that failed before its clean-up ran).
pub fn remove_stale_cgroups() {
    let prefix = format!("{}mem-{CGROUP_WHAT}-{}-", virtlab_container::cgroup::PREFIX, std::process::id());
    let root = Path::new(virtlab_container::cgroup::DEFAULT_ROOT);
    let mut names: Vec<String> = Vec::new();
    for dir in std::iter::once(root.to_path_buf())
        .chain(std::fs::read_dir(root).into_iter().flatten().flatten().map(|e| e.path()))
    {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&prefix) && !names.contains(&n) {
                names.push(n);
            }
        }
    }
    for n in names {
        remove_cgroup_everywhere(&n);
    }
}

/// The mount points at or under `dir` (podman's per-container `shm`), the
/// deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found.dedup();
    found
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Detaches every mount under `dir`.
pub fn unmount_under(dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    for m in mounts_under(dir) {
        let Ok(c) = std::ffi::CString::new(m.as_os_str().as_bytes()) else { continue };
        // SAFETY: umount2(2) with a NUL-terminated path that lives across
        // the call; MNT_DETACH only detaches the mount, under this run's
        // own podman directory.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// At the end of the run: removes every container podman still has in
/// `storage` (a launch killed at its timeout leaves one), waits for its
/// processes, detaches the mounts left under it and removes its cgroups.
/// The directory itself goes with the run's temporary directory.
pub fn remove_all(storage: &PodmanStorage) {
    if storage.root().is_dir() {
        let rm = |extra: &[&str]| {
            podman(storage)
                .args(["rm", "--all", "--force"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        // `--time 0`: kill at once (podman 4); older podmans take no --time.
        if !rm(&["--time", "0"]) {
            rm(&[]);
        }
    }
    settle(&storage.dir, SETTLE_TIMEOUT);
    unmount_under(&storage.dir);
    remove_stale_cgroups();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_has_our_limits_and_nothing_of_the_host() {
        let argv: Vec<String> = ["/virtlab-workload", "ready"].map(String::from).to_vec();
        let o = RunOptions {
            image: "localhost/x:latest",
            argv: &argv,
            memory: 256 << 20,
            pids: 64,
            cgroup_parent: None,
            runtime: "runc",
        };
        let a = run_args(&o);
        let after = |flag: &str| a[a.iter().position(|x| x == flag).unwrap() + 1].clone();
        assert_eq!(&a[..2], ["run", "--rm"]);
        assert_eq!(after("--runtime"), "runc");
        assert_eq!(after("--network"), "none");
        assert_eq!(after("--pull"), "never");
        assert_eq!(after("--memory"), "268435456b");
        assert_eq!(after("--pids-limit"), "64");
        let ulimits: Vec<&String> =
            a.iter().zip(a.iter().skip(1)).filter(|(f, _)| *f == "--ulimit").map(|p| p.1).collect();
        assert_eq!(ulimits, ["nofile=1024:1024", "nproc=1024:1024"]);
        assert!(a.ends_with(&["localhost/x:latest".into(), "/virtlab-workload".into(), "ready".into()]));
        assert!(!a.contains(&"--cgroup-parent".to_string()));
        let with = run_args(&RunOptions { cgroup_parent: Some("virtlab-mem-podman-1-0"), ..o });
        let at = with.iter().position(|x| x == "--cgroup-parent").unwrap();
        assert_eq!(with[at + 1], "/virtlab-mem-podman-1-0");
        assert_eq!(with[with.iter().position(|x| x == "--cgroups").unwrap() + 1], "no-conmon");
        let ours = run_args(&RunOptions { runtime: "/tmp/v/podman/virtlab-runc", ..o });
        assert_eq!(ours[ours.iter().position(|x| x == "--runtime").unwrap() + 1], "/tmp/v/podman/virtlab-runc");

        let storage = PodmanStorage { dir: "/tmp/v/podman".into() };
        let g: Vec<String> = global_args(&storage).iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(
            g,
            [
                "--root",
                "/tmp/v/podman/root",
                "--runroot",
                "/tmp/v/podman/runroot",
                "--tmpdir",
                "/tmp/v/podman/tmp",
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none"
            ]
        );
    }

    #[test]
    fn the_processes_of_a_launch_are_known_by_name() {
        for comm in ["conmon", "podman", "runc", "runc:[2:INIT]", "virtlab-runc"] {
            assert!(is_podman_process(comm), "{comm}");
        }
        // The workload after its execve is conmon's child, never ours.
        for comm in ["virtlab", "virtlab-workloa", "sh"] {
            assert!(!is_podman_process(comm), "{comm}");
        }
    }

    #[test]
    fn mountinfo_escapes_are_read() {
        assert_eq!(unescape_mountinfo("/tmp/a\\040b/shm"), "/tmp/a b/shm");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/odd\\x"), "/odd\\x");
    }

    #[test]
    fn nothing_is_named_after_a_directory_nobody_uses() {
        let dir = Path::new("/nonexistent/virtlab-podman-test-dir");
        assert!(processes_naming(dir).is_empty());
        assert!(mounts_under(dir).is_empty());
        let t0 = Instant::now();
        settle(dir, Duration::from_secs(5));
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
