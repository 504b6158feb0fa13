//! One lane of the race: one environment's launcher as a child process of
//! its own (`virtlab container run --explain`, `virtlab vm run --explain`,
//! or the workload itself for native), in a process group of its own, its
//! narrated steps read from standard error as they happen.
//!
//! Each lane's clock starts just before its process is spawned; a phase
//! starts when its narration line arrives, so what the race shows is what
//! the launcher said, when it said it.

use std::io::{BufRead as _, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use virtlab_compare::launch::{Env, Workload};

/// Something a lane did, `at` after its start.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Event {
    /// Which lane.
    pub(super) lane: usize,
    /// Since the lane's start.
    pub(super) at: Duration,
    /// What.
    pub(super) kind: Kind,
}

/// What a lane did.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    /// A launcher step began.
    Phase(String),
    /// The workload printed its ready line.
    Ready,
    /// A line of standard error that is no step (kept for a failure).
    Said(String),
    /// The process ended with this status (128 + signal when killed).
    Exit(i32),
}

/// The launcher step a narration line announces, if it announces one:
/// the container launcher's `[virtlab launcher, on the host] clone` and
/// `[virtlab child, in the container] step 3/19 propagation`, the VMM's
/// `[vm 2/10] create-vm: ...`.
pub(super) fn phase_in(line: &str) -> Option<&str> {
    if let Some(rest) = line.strip_prefix("[virtlab launcher, on the host] ") {
        return rest.split_whitespace().next().map(|w| w.trim_end_matches(':'));
    }
    if let Some(rest) = line.strip_prefix("[virtlab child, in the container] step ") {
        return rest.split_whitespace().nth(1);
    }
    let (_, rest) = line.strip_prefix("[vm ")?.split_once("] ")?;
    rest.split(':').next().filter(|name| !name.is_empty() && !name.contains(' '))
}

/// A lane's running process.
#[derive(Debug)]
pub(super) struct Running {
    /// Its PID, also its process group's.
    pub(super) pid: libc::pid_t,
}

impl Running {
    /// Asks the lane's whole process group to stop (SIGTERM): the
    /// launchers pass it on to their container or guest and clean up.
    pub(super) fn terminate(&self) {
        // SAFETY: kill(2) on the lane's own process group (the child was
        // made its leader by `process_group(0)`); a group already gone is
        // ESRCH, which is harmless.
        unsafe { libc::kill(-self.pid, libc::SIGTERM) };
    }

    /// Ends the lane's process group at once (SIGKILL), for a lane that
    /// did not stop when asked.
    pub(super) fn kill(&self) {
        // SAFETY: as in `terminate`.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
    }
}

/// How to start the lanes.
#[derive(Debug, Clone)]
pub(super) struct Setup {
    /// This `virtlab` binary, which runs the container and VM lanes.
    pub(super) virtlab: PathBuf,
    /// The workload file, run directly by the native lane.
    pub(super) workload_file: PathBuf,
    /// The Linux guest kernel, for `vm-linux`.
    pub(super) kernel: Option<PathBuf>,
}

/// The command line of `env`'s lane.
pub(super) fn command(env: Env, workload: &Workload, setup: &Setup) -> anyhow::Result<Command> {
    let mut c = match env {
        Env::Native => Command::new(&setup.workload_file),
        Env::Container => {
            let mut c = Command::new(&setup.virtlab);
            c.args(["container", "run", "--explain"]).arg("--").arg("/virtlab-workload");
            c
        }
        Env::VmMiniUart | Env::VmMiniPv => {
            let console = if env == Env::VmMiniUart { "uart" } else { "pv" };
            let mut c = Command::new(&setup.virtlab);
            c.args(["vm", "run", "--console", console, "--explain"]).arg("--");
            c
        }
        Env::VmLinux => {
            let kernel = setup.kernel.as_deref().context("vm-linux: no Linux guest kernel")?;
            let mut c = Command::new(&setup.virtlab);
            c.args(["vm", "run", "--kernel"]).arg(kernel).arg("--explain").arg("--");
            c
        }
        other => {
            anyhow::bail!("{} cannot race (native, container, vm-mini-uart, vm-mini-pv, vm-linux can)", other.name())
        }
    };
    c.args(workload.args());
    Ok(c)
}

/// Starts lane `lane` with `command`; its events go to `events`.
pub(super) fn start(lane: usize, mut command: Command, events: &Sender<Event>) -> anyhow::Result<Running> {
    let t0 = Instant::now();
    // Its own process group: the terminal's Ctrl-C reaches the race only,
    // which then stops every lane the way their launchers expect.
    command.process_group(0).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child: Child = command.spawn().with_context(|| format!("cannot start {:?}", command.get_program()))?;
    let pid = libc::pid_t::try_from(child.id()).context("a PID out of range")?;
    let send = move |tx: &Sender<Event>, kind| {
        let _ = tx.send(Event { lane, at: t0.elapsed(), kind });
    };
    // From the spawn to the launcher's first step: starting its process.
    send(events, Kind::Phase("start".into()));
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let tx = events.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with(virtlab_workload::READY_MARKER) {
                send(&tx, Kind::Ready);
            }
        }
    });
    let tx = events.clone();
    let waiter = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            match phase_in(&line) {
                Some(name) => send(&tx, Kind::Phase(name.to_string())),
                None if !line.trim().is_empty() && !line.starts_with(' ') => send(&tx, Kind::Said(line)),
                None => {}
            }
        }
        tx
    });
    std::thread::spawn(move || {
        let status = child.wait().map(|s| {
            use std::os::unix::process::ExitStatusExt as _;
            s.code().or(s.signal().map(|sig| 128 + sig)).unwrap_or(-1)
        });
        let at = t0.elapsed();
        // Every line of both pipes is in before the exit.
        let _ = reader.join();
        if let Ok(tx) = waiter.join() {
            let _ = tx.send(Event { lane, at, kind: Kind::Exit(status.unwrap_or(-1)) });
        }
    });
    Ok(Running { pid })
}

/// Whether a process of group `pid` is still there.
pub(super) fn group_alive(pid: libc::pid_t) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the group exists.
    unsafe { libc::kill(-pid, 0) == 0 }
}

/// The Linux guest kernel `virtlab vm run` would boot, when there is one.
pub(super) fn linux_kernel() -> Option<PathBuf> {
    virtlab_vmm::linux::provision::locate(None).ok().map(|k| k.path)
}

/// The workload file the native lane runs.
pub(super) fn workload_file() -> anyhow::Result<PathBuf> {
    virtlab_workload::materialize().context("cannot write out the workload")
}

/// This binary.
pub(super) fn this_virtlab() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the virtlab binary itself")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narration_lines_name_their_step() {
        assert_eq!(phase_in("[virtlab launcher, on the host] clone"), Some("clone"));
        assert_eq!(phase_in("[virtlab launcher, on the host] exit: status 0"), Some("exit"));
        assert_eq!(phase_in("[virtlab child, in the container] step 3/19 propagation"), Some("propagation"));
        assert_eq!(phase_in("[vm 2/10] create-vm: create an empty virtual machine"), Some("create-vm"));
        assert_eq!(phase_in("        took: 31.3 us -> KVM API version 12"), None);
        assert_eq!(phase_in("[virtlab] container: rootfs /x (read-only)"), None);
        assert_eq!(phase_in("virtlab.ready pid=1"), None);
    }
}
