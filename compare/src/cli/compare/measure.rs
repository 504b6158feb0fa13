//! The measuring itself: the timed launches round after round, then the
//! memory runs, then many instances at once. Each step stops after the
//! launch in progress when SIGINT or SIGTERM came.

use indicatif::{ProgressBar, ProgressStyle};
use virtlab_compare::env;
use virtlab_compare::launch::{Context, Env, MemoryMethod, Sample, Workload};
use virtlab_compare::report::{Failure, Skipped};
use virtlab_compare::scale::{self, ScalePoint};
use virtlab_compare::{memory, peers};

use super::stop_asked;

/// What the timed launches are: `warmup` rounds that are not kept, then
/// `runs` measured ones, of every workload in every environment.
pub(super) struct Plan<'p> {
    pub(super) envs: &'p [Env],
    pub(super) workloads: &'p [Workload],
    pub(super) warmup: usize,
    pub(super) runs: usize,
    pub(super) ctx: &'p Context,
}

/// What the timed launches gave.
pub(super) struct Timed {
    /// The measured runs (not the warm-ups).
    pub(super) samples: Vec<Sample>,
    /// The launches that failed.
    pub(super) failures: Vec<Failure>,
}

/// Launches one run after another under a progress bar, and gives up on
/// an environment that fails the same way every time.
struct Launcher<'l> {
    ctx: &'l Context,
    bar: ProgressBar,
    skipped: &'l mut Vec<Skipped>,
    /// Environments that failed in a way that repeats every time (QEMU
    /// stopped by this host's instruction emulator): not launched again.
    given_up: Vec<Env>,
}

impl Launcher<'_> {
    /// A peer this host cannot run (QEMU stopped by the host's instruction
    /// emulator, the same way every time): skipped from now on with the
    /// reason, like a peer that is not installed, rather than a failed
    /// launch.
    fn refused(&mut self, e: Env, reason: String) {
        self.bar.suspend(|| {
            eprintln!("virtlab compare: {} cannot run on this host, not launched again: {reason}", e.name())
        });
        self.given_up.push(e);
        self.skipped.push(Skipped { env: e, reason });
    }

    /// A QEMU launch is also its memory run (a cgroup of its own). The
    /// first run of a binary charges the page cache it reads (QEMU, its
    /// libraries, the guest kernel) to its cgroup, so a memory figure must
    /// come after an earlier run of the same binary: the warm-ups are
    /// those; without warm-ups, this one throw-away launch per QEMU
    /// environment first.
    fn throw_away_qemu_runs(&mut self, envs: &[Env], workload: &Workload) {
        for &e in envs.iter().filter(|e| e.is_qemu()) {
            self.bar.set_message(format!("{} (throw-away run, so that memory is measured warm)", e.name()));
            if let Err(error) = env::launch(e, workload, 0, self.ctx) {
                if peers::is_emulation_failure(&error) {
                    self.refused(e, error);
                }
            }
        }
    }
}

/// The progress bar of `total` launches.
fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Runs the timed launches of `plan`, interleaved; an environment this
/// host turns out not to run joins `skipped`. `root`: whether the QEMU
/// launches measure memory, so need a throw-away run first when there are
/// no warm-ups.
pub(super) fn timed(plan: &Plan, root: bool, skipped: &mut Vec<Skipped>) -> Timed {
    let (envs, workloads) = (plan.envs, plan.workloads);
    let rounds = plan.warmup + plan.runs;
    let linux_runs = if envs.contains(&Env::VmLinux) { workloads.len() } else { 0 };
    let ours = envs.iter().filter(|e| **e != Env::VmLinux).count();
    let total = (rounds * workloads.len() * ours + linux_runs) as u64;
    let mut l = Launcher { ctx: plan.ctx, bar: progress_bar(total), skipped, given_up: Vec::new() };
    let mut timed = Timed { samples: Vec::new(), failures: Vec::new() };
    if plan.warmup == 0 && root {
        l.throw_away_qemu_runs(envs, &workloads[0]);
    }
    'rounds: for round in 0..rounds {
        let warm = round < plan.warmup;
        for w in workloads {
            // Interleaved: every environment once, then the next workload,
            // then the next round, so drift on a shared machine hits all alike.
            for &e in envs {
                if stop_asked() {
                    break 'rounds;
                }
                // A Linux guest boots once per workload, in the first
                // measured round: on nested hosts a boot takes minutes.
                if e == Env::VmLinux && round != plan.warmup {
                    continue;
                }
                if l.given_up.contains(&e) {
                    l.bar.inc(1);
                    continue;
                }
                l.bar.set_message(format!("{} {}{}", e.name(), w.label(), if warm { " (warm-up)" } else { "" }));
                let run_index = round.saturating_sub(plan.warmup);
                match env::launch(e, w, run_index, l.ctx) {
                    Ok(s) if !warm => timed.samples.push(s),
                    Ok(_) => {}
                    Err(error) if peers::is_emulation_failure(&error) => l.refused(e, error),
                    Err(error) => {
                        l.bar.suspend(|| eprintln!("virtlab compare: {} {} failed: {error}", e.name(), w.label()));
                        timed.failures.push(Failure { env: e, workload: w.mode.clone(), run: run_index, error });
                    }
                }
                l.bar.inc(1);
            }
        }
    }
    l.bar.finish_and_clear();
    timed
}

/// Memory of native runs and of our minikernel VMs (launched in this
/// process, so not in a cgroup of their own): one untimed run per
/// workload, after the timed ones, in a fresh cgroup; the figure goes into
/// each of `samples` of that environment and workload. Needs root.
pub(super) fn memory_runs(plan: &Plan, samples: &mut [Sample]) {
    let mut vm_warmed = false;
    let measured_here = |e: &&Env| {
        matches!(e, Env::Native | Env::VmMiniUart | Env::VmMiniPv | Env::VmMiniRestore | Env::VmLinuxRestore)
    };
    for &e in plan.envs.iter().filter(measured_here) {
        for w in plan.workloads {
            if stop_asked() {
                break;
            }
            let measured = if e == Env::Native {
                memory::native(w, plan.ctx)
            } else if matches!(e, Env::VmMiniRestore | Env::VmLinuxRestore) {
                // After the timed restores: the snapshot's pages they read
                // are in the page cache, shared, charged to them.
                memory::vm_restore(e, w, plan.ctx)
            } else {
                // The timed VM runs were in this process, not runs of
                // `virtlab vm run`: one throw-away run of it first, so
                // that its page cache is not charged to the figure.
                if !vm_warmed {
                    let _ = memory::vm_mini(e, w, plan.ctx);
                    vm_warmed = true;
                }
                memory::vm_mini(e, w, plan.ctx)
            };
            match measured {
                Ok(bytes) => {
                    for s in samples.iter_mut().filter(|s| s.env == e && s.workload == w.mode) {
                        s.memory_bytes = Some(bytes);
                        s.memory_method = Some(MemoryMethod::CgroupPeak);
                    }
                }
                Err(err) => eprintln!("virtlab compare: memory of {} {}: {err}", e.name(), w.label()),
            }
        }
    }
}

/// Many at once (`--scale`): `n` instances of each of our environments but
/// vm-linux, for each `n` of `counts`.
pub(super) fn scale_points(counts: &[usize], envs: &[Env], ctx: &Context) -> Vec<ScalePoint> {
    let mut points = Vec::new();
    for &n in counts {
        for &e in envs.iter().filter(|e| **e != Env::VmLinux && !e.is_peer()) {
            if stop_asked() {
                break;
            }
            eprintln!("virtlab compare: scale: {n} x {} at once...", e.name());
            let mut point = scale::run_point(e, n, ctx);
            // Restored VMs share their snapshot's pages: each one's own
            // cost is a cgroup peak per restore, `n` of them at once as
            // processes (untimed, after the timed point).
            if matches!(e, Env::VmMiniRestore | Env::VmLinuxRestore)
                && virtlab_compare::process::is_root()
                && !stop_asked()
            {
                let ready = Workload { mode: "ready".into(), arg: None };
                match memory::vm_restores_at_once(e, n, &ready, ctx) {
                    Ok(each) => {
                        point.memory_per_instance_bytes = Some(each);
                        point.memory_method = Some(MemoryMethod::CgroupPeak);
                    }
                    Err(err) => eprintln!("virtlab compare: scale: memory of {n} x {}: {err}", e.name()),
                }
            }
            points.push(point);
        }
    }
    points
}
