//! [`Clock`]: times each step of a run for the report and tells the
//! observer (`--explain`, `--step`) as it goes.

use std::time::{Duration, Instant};

use virtlab_minikernel::abi;

use crate::console::Console;
use crate::observe::{Observer, Step};
use crate::report::PhaseTime;

/// Records step times for the report and tells the observer.
pub(crate) struct Clock<'o> {
    pub(crate) start: Instant,
    pub(crate) last: Instant,
    pub(crate) phases: Vec<PhaseTime>,
    pub(crate) observer: &'o mut dyn Observer,
}

impl<'o> Clock<'o> {
    /// A clock starting now.
    pub(crate) fn new(observer: &'o mut dyn Observer) -> Clock<'o> {
        let now = Instant::now();
        Clock { start: now, last: now, phases: Vec::new(), observer }
    }

    pub(crate) fn before(&mut self, step: Step) {
        self.observer.before(step);
        // Time a person spends at a --step prompt is not the step's.
        self.last = Instant::now().max(self.last);
        if self.phases.is_empty() {
            self.start = self.last;
        }
    }

    pub(crate) fn mark(&mut self, step: Step, at: Instant, detail: &str) {
        let took = at.saturating_duration_since(self.last);
        self.last = at.max(self.last);
        self.phases.push(PhaseTime {
            step,
            name: step.name(),
            at_us: us(at.saturating_duration_since(self.start)),
            took_us: us(took),
        });
        self.observer.after(step, took, detail);
    }

    /// Tells the observer about guest milestones that arrived since the last
    /// call (`*reported` of `milestones` were already told), and about the
    /// workload's ready marker once the console has seen it.
    pub(crate) fn guest_progress(
        &mut self,
        milestones: &[(u8, Instant)],
        reported: &mut usize,
        console: &Console,
        kernel_ready: &str,
    ) {
        for &(m, at) in &milestones[(*reported).min(milestones.len())..] {
            if m == abi::marker::KERNEL_READY {
                self.mark(Step::KernelReady, at, kernel_ready);
            }
        }
        *reported = milestones.len();
        if let Some(at) = console.ready_at() {
            if !self.phases.iter().any(|p| p.step == Step::WorkloadReady) {
                self.mark(Step::WorkloadReady, at, "ready marker seen on the console");
            }
        }
    }

    pub(crate) fn done(&mut self, step: Step, detail: &str) {
        self.mark(step, Instant::now(), detail);
    }
}

/// A duration in microseconds, as reports give them.
pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
