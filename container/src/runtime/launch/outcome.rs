//! What a run produced: [`Outcome`], with the command's [`ExitStatus`],
//! the [`Stamp`]s of its steps and the [`CgroupReport`].

use std::path::PathBuf;
use std::time::Duration;

use crate::runtime::cgroup::{CgroupMode, CgroupStats};
use crate::runtime::child::monotonic_ns;
use crate::runtime::plan::Step;

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ExitStatus {
    /// exit(code).
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + the signal.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Exited(c) => (c & 0xff) as u8,
            ExitStatus::Signaled(s) => (128 + s).clamp(0, 255) as u8,
        }
    }
}

/// When a step finished, counted from the start of [`run`](super::run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stamp {
    /// The step.
    pub step: Step,
    /// Time since launch.
    pub at: Duration,
}

impl Stamp {
    /// `step` finished now.
    pub(super) fn now(step: Step, start_ns: u64) -> Stamp {
        Stamp { step, at: since(start_ns) }
    }

    /// `step` finished at `t_ns` on CLOCK_MONOTONIC (a stamp of the child's
    /// or the workload's).
    pub(super) fn at_ns(step: Step, t_ns: u64, start_ns: u64) -> Stamp {
        Stamp { step, at: Duration::from_nanos(t_ns.saturating_sub(start_ns)) }
    }
}

/// The cgroup side of an outcome.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CgroupReport {
    /// Host layout.
    pub mode: CgroupMode,
    /// The directories the container had (all removed by now).
    pub paths: Vec<PathBuf>,
    /// What it used.
    pub stats: CgroupStats,
}

/// Everything a run produced.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// The container's id (`<launcher pid>-<n>`); its cgroup is `virtlab-<id>`.
    pub id: String,
    /// How the command ended.
    pub status: ExitStatus,
    /// Killed because the timeout expired.
    pub timed_out: bool,
    /// The cgroup's OOM killer killed a process of the container.
    pub oom_killed: bool,
    /// A signal the launcher received and forwarded.
    pub forwarded_signal: Option<i32>,
    /// Steps, in the order they finished.
    pub timeline: Vec<Stamp>,
    /// Launch to exit (and output drained).
    pub total: Duration,
    /// The cgroup, when one was made (always as root).
    pub cgroup: Option<CgroupReport>,
    /// The uid map written, if any.
    pub uid_map: Option<String>,
    /// The gid map written, if any.
    pub gid_map: Option<String>,
    /// The rootfs was given to the container as an idmapped mount (its
    /// host-root-owned files appear owned by container root).
    pub rootfs_idmapped: bool,
    /// Captured stdout (with `Stdio::Capture` or `Stdio::Tee`).
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
    /// Problems during clean-up that did not stop the run.
    pub warnings: Vec<String>,
}

impl Outcome {
    /// The launcher's exit status: the command's, or 128 + signal.
    pub fn exit_code(&self) -> u8 {
        self.status.code()
    }

    /// When `step` finished, if it ran.
    pub fn at(&self, step: Step) -> Option<Duration> {
        self.timeline.iter().find(|s| s.step == step).map(|s| s.at)
    }

    /// Captured stdout as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Captured stderr as text.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Time since `start_ns` on CLOCK_MONOTONIC, the clock the child and the
/// workload stamp with too, so that all stamps compare exactly.
pub(super) fn since(start_ns: u64) -> Duration {
    Duration::from_nanos(monotonic_ns().saturating_sub(start_ns))
}
