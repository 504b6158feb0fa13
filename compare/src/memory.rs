//! One memory measure for every row: the peak of a fresh memory cgroup
//! around one process.
//!
//! The process joins the cgroup between fork and exec, so everything it
//! maps from its first instruction on is charged there: for a native run
//! the workload, for a QEMU peer the QEMU process with the guest RAM it
//! touched, for our own VMM a `virtlab vm run` process with its guest. The
//! cgroup's peak (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`) is read
//! after the process exited and the cgroup is removed. Needs root.
//!
//! One caveat shapes how the harness uses it: the first time a binary runs,
//! the page cache it reads in (its own file, its libraries, a guest kernel)
//! is charged to whichever cgroup faulted it in; QEMU's first run showed
//! 46 MiB where later runs show 19.5 MiB. So a memory run always comes after
//! an earlier run of the same binary (a warm-up, or a throw-away run).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use virtlab_container::cgroup::{self, Cgroup};

use crate::launch::{Context, Env, Workload};
// Its home before the launch vocabulary had one; the path keeps working.
pub use crate::launch::MemoryMethod;
use crate::process::wait_child;

/// A fresh cgroup (no limits) for one process, removed when dropped, on
/// every path.
#[derive(Debug)]
pub struct ProcessCgroup {
    cg: Cgroup,
}

impl ProcessCgroup {
    /// Creates `virtlab-mem-<what>-<pid>-<n>` in every controller.
    pub fn create(what: &str) -> Result<ProcessCgroup, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let root = Path::new(cgroup::DEFAULT_ROOT);
        let mode = cgroup::detect(root).map_err(|e| e.to_string())?;
        let id = format!("mem-{what}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let cg = Cgroup::create_for_accounting(root, mode, &id).map_err(|e| e.to_string())?;
        Ok(ProcessCgroup { cg })
    }

    /// Makes `cmd`'s process join the cgroup after fork, before exec. The
    /// `cgroup.procs` files are opened here (the parent has the rights) and
    /// owned by the command, so they stay open as long as it can spawn.
    pub fn join_on_exec(&self, cmd: &mut Command) -> Result<(), String> {
        use std::os::unix::process::CommandExt;

        let files: Vec<std::fs::File> = self
            .cg
            .paths()
            .iter()
            .map(|p| std::fs::OpenOptions::new().write(true).open(p.join("cgroup.procs")))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cannot open the cgroup {}: {e}", self.cg.name()))?;
        // SAFETY: the closure runs in the forked child before exec and only
        // calls write(2), which is async-signal-safe, on descriptors the
        // closure owns (opened above, still open in the child).
        unsafe {
            cmd.pre_exec(move || {
                for f in &files {
                    // "0" moves the writing process into the cgroup.
                    if libc::write(std::os::fd::AsRawFd::as_raw_fd(f), b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// The cgroup's directory name (`virtlab-mem-<what>-<pid>-<n>`), the
    /// same in every hierarchy.
    pub fn name(&self) -> &str {
        self.cg.name()
    }

    /// The cgroup's memory peak so far, bytes.
    pub fn peak(&self) -> Option<u64> {
        self.cg.stats().memory_peak
    }

    /// Kills anything left inside and removes it (dropping does the same,
    /// ignoring errors).
    pub fn remove(self) -> Result<(), String> {
        self.cg.remove().map_err(|e| e.to_string())
    }
}

/// Runs `cmd` to its end inside a fresh cgroup and returns its memory peak.
/// An exit status other than 0 is an error: the figure would not be of the
/// run that was asked for.
pub fn peak_of(mut cmd: Command, what: &str, timeout: Duration) -> Result<u64, String> {
    let cg = ProcessCgroup::create(what)?;
    cg.join_on_exec(&mut cmd)?;
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let t0 = Instant::now();
    let child = cmd.spawn().map_err(|e| format!("cannot start {what}: {e}"))?;
    // Dropping `cmd` closes the parent's copies of the cgroup files.
    drop(cmd);
    let status = wait_child(child.id() as libc::pid_t, t0, timeout)?;
    let peak = cg.peak();
    let removed = cg.remove();
    if status != 0 {
        return Err(format!("{what} exited with status {status}"));
    }
    removed?;
    peak.ok_or_else(|| "the cgroup reported no memory peak".to_string())
}

/// The native workload's memory: one extra, untimed run after the timed
/// ones (which read the workload file into the page cache).
pub fn native(workload: &Workload, ctx: &Context) -> Result<u64, String> {
    let mut cmd = Command::new(&ctx.workload_path);
    cmd.args(workload.args());
    peak_of(cmd, "native", ctx.timeout)
}

/// The command line of our VMM as a process: `virtlab vm run --console
/// uart|pv -- <workload args>`.
pub fn vm_mini_command(virtlab: &Path, env: Env, workload: &Workload, timeout: Duration) -> Result<Command, String> {
    let console = match env {
        Env::VmMiniUart => "uart",
        Env::VmMiniPv => "pv",
        other => return Err(format!("{} is not run as `virtlab vm run`", other.name())),
    };
    let mut cmd = Command::new(virtlab);
    cmd.args(["vm", "run", "--console", console, "--timeout"]);
    cmd.arg(format!("{}ms", timeout.as_millis().max(1)));
    cmd.arg("--").args(workload.args());
    Ok(cmd)
}

/// The memory of one of our minikernel VMs, which the harness launches in
/// its own process and so cannot put in a cgroup of their own: one extra,
/// untimed `virtlab vm run` process (this very executable) in a fresh
/// cgroup. The caller runs it after an earlier run of the binary.
pub fn vm_mini(env: Env, workload: &Workload, ctx: &Context) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the virtlab binary: {e}"))?;
    let cmd = vm_mini_command(&exe, env, workload, ctx.timeout)?;
    peak_of(cmd, env.name(), ctx.timeout)
}

/// The command line of a restore as a process: `virtlab vm restore DIR
/// --timeout T -- ARGS`.
pub fn vm_restore_command(virtlab: &Path, dir: &Path, args: &[String], timeout: Duration) -> Command {
    let mut cmd = Command::new(virtlab);
    cmd.args(["vm", "restore"]).arg(dir).arg("--timeout");
    cmd.arg(format!("{}ms", timeout.as_millis().max(1)));
    cmd.arg("--").args(args);
    cmd
}

/// The snapshot a `*-restore` row restores (taken by its timed runs) and
/// the restore's time limit.
fn restore_of(env: Env, ctx: &Context) -> Result<(std::path::PathBuf, Duration), String> {
    let linux = match env {
        Env::VmMiniRestore => false,
        Env::VmLinuxRestore => true,
        other => return Err(format!("{} does not restore a snapshot", other.name())),
    };
    let dir = ctx.snapshots.taken(linux).ok_or_else(|| format!("{}: no snapshot was taken", env.name()))?;
    Ok((dir, if linux { ctx.linux_timeout } else { ctx.timeout }))
}

/// The memory of one more VM restored from a `*-restore` row's snapshot:
/// one untimed `virtlab vm restore` process in a fresh cgroup, after the
/// timed restores. The pages of the snapshot's memory file that the guest
/// only reads are already in the page cache (charged to whoever read them
/// first) and shared by every restore; what this cgroup is charged is what
/// a restore adds: the VMM and the guest pages it wrote (copied on write).
pub fn vm_restore(env: Env, workload: &Workload, ctx: &Context) -> Result<u64, String> {
    let (dir, timeout) = restore_of(env, ctx)?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the virtlab binary: {e}"))?;
    let args = crate::env::restore_args(workload, env == Env::VmLinuxRestore);
    peak_of(vm_restore_command(&exe, &dir, &args, timeout), env.name(), timeout)
}

/// `n` restores of a `*-restore` row's snapshot at once, each a `virtlab
/// vm restore` process in a cgroup of its own: the mean of their peaks
/// (see [`vm_restore`] for what a restore is charged).
pub fn vm_restores_at_once(env: Env, n: usize, workload: &Workload, ctx: &Context) -> Result<f64, String> {
    let (dir, timeout) = restore_of(env, ctx)?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the virtlab binary: {e}"))?;
    let args = crate::env::restore_args(workload, env == Env::VmLinuxRestore);
    let peaks: Vec<Result<u64, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n.max(1))
            .map(|_| scope.spawn(|| peak_of(vm_restore_command(&exe, &dir, &args, timeout), env.name(), timeout)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a memory thread panicked".into()))).collect()
    });
    let peaks: Vec<u64> = peaks.into_iter().collect::<Result<_, _>>()?;
    Ok(peaks.iter().sum::<u64>() as f64 / peaks.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_vmm_as_a_process() {
        let w = Workload { mode: "cpu".into(), arg: Some(1000) };
        let c = vm_mini_command(Path::new("/bin/virtlab"), Env::VmMiniPv, &w, Duration::from_secs(60)).unwrap();
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["vm", "run", "--console", "pv", "--timeout", "60000ms", "--", "cpu", "1000"]);
        assert!(vm_mini_command(Path::new("/bin/virtlab"), Env::VmLinux, &w, Duration::from_secs(1)).is_err());
        let r = vm_restore_command(Path::new("/bin/virtlab"), Path::new("/s"), &w.args(), Duration::from_secs(2));
        let args: Vec<String> = r.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["vm", "restore", "/s", "--timeout", "2000ms", "--", "cpu", "1000"]);
    }

    /// A process that touches 32 MiB shows at least that much in its own
    /// cgroup, and the cgroup is gone afterwards.
    #[test]
    fn a_process_peak_is_its_own() {
        if !crate::process::is_root() {
            if std::env::var("VIRTLAB_REQUIRE_ROOT").as_deref() == Ok("1") {
                panic!("root is required (VIRTLAB_REQUIRE_ROOT=1)");
            }
            eprintln!("SKIPPED a_process_peak_is_its_own: cgroups need root");
            return;
        }
        let workload = virtlab_workload::materialize().unwrap();
        let mut cmd = Command::new(&workload);
        cmd.args(["mem", "32"]);
        let peak = peak_of(cmd, "unit-test", Duration::from_secs(60)).unwrap();
        assert!(peak >= 32 << 20, "peak {peak}");
        assert!(peak < 256 << 20, "peak {peak}: the harness's own memory is not charged");
        let mut failing = Command::new(&workload);
        failing.args(["fault", "pf"]);
        assert!(peak_of(failing, "unit-test", Duration::from_secs(60)).unwrap_err().contains("status"));
        let mine = format!("virtlab-mem-unit-test-{}-", std::process::id());
        for dir in ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"] {
            if let Ok(entries) = std::fs::read_dir(dir) {
                let left: Vec<_> = entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&mine))
                    .collect();
                assert!(left.is_empty(), "{left:?}");
            }
        }
    }
}
