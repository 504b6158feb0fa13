//! The vCPU loop: `KVM_RUN`, hand the exit to [`handle_exit`], again,
//! until the guest stops or the timeout fires.
//!
//! One loop serves both runs. What differs is data (the devices on the
//! bus, the policy for unknown ports, what the observer is told) and one
//! type parameter, [`Fixups`], for the exit the Linux run repairs on quirky
//! hosts: no allocation and no dynamic dispatch per exit beyond the
//! device call on the bus.

use std::time::{Duration, Instant};

use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::GuestMemoryMmap;

use super::clock::{us, Clock};
use super::error::VmError;
use super::vcpu::convert;
use crate::config::ConsoleKind;
use crate::console::Console;
use crate::devices::{DeviceContext, PortBus};
use crate::exit::{handle_exit, ExitStats, Flow, UnknownIo};
use crate::observe::Step;
use crate::report::{MemoryFigures, RunReport, SyscallCounts};
use crate::sandbox::{Sandbox, SandboxReport, ThreadKind};
use crate::stop::GuestStop;
use crate::watchdog::Watchdog;

/// What a run does when KVM's instruction emulator gives up
/// (`KVM_EXIT_INTERNAL_ERROR`).
pub(crate) trait Fixups {
    /// Gets the guest past the instruction (`Flow::Continue`), or says how
    /// the run ends.
    fn internal_error(&mut self, vcpu: &mut VcpuFd, mem: &GuestMemoryMmap) -> Flow;
}

/// No fix-ups: an internal error ends the run (the minikernel's case).
#[derive(Debug)]
pub(crate) struct NoFixups;

impl Fixups for NoFixups {
    fn internal_error(&mut self, _: &mut VcpuFd, _: &GuestMemoryMmap) -> Flow {
        Flow::Stop(GuestStop::InternalError)
    }
}

/// What the observer is told when the vCPU first runs guest code and when
/// the guest reports its kernel ready (boot-timer port).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Narration {
    pub(crate) first_entry: &'static str,
    pub(crate) kernel_ready: &'static str,
}

/// The devices and what the loop records: the bus, the console, the boot
/// milestones and the exit counts.
pub(crate) struct VcpuLoop<F> {
    pub(crate) bus: PortBus,
    pub(crate) console: Console,
    pub(crate) milestones: Vec<(u8, Instant)>,
    pub(crate) stats: ExitStats,
    pub(crate) policy: UnknownIo,
    pub(crate) fixups: F,
    /// The seccomp filters of the vCPU thread and its helpers (None:
    /// `--no-seccomp`).
    pub(crate) sandbox: Option<Sandbox>,
}

/// What [`VcpuLoop::run_pausing`] calls at its pause point.
pub(crate) type PauseHook<'h> =
    &'h mut (dyn FnMut(&mut VcpuFd, &GuestMemoryMmap, &PortBus) -> Result<(), VmError> + Send);

/// When [`VcpuLoop::run_pausing`] pauses the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PausePoint {
    /// When the guest writes this mark to the boot-timer port.
    Marker(u8),
    /// This long after the vCPU first enters the guest: a kernel timer
    /// signals the vCPU thread then (as the timeout's does), which kicks
    /// it out of `KVM_RUN` wherever the guest is.
    After(Duration),
}

/// Finishes the instruction behind the last exit without running the
/// guest on: after an `out`, KVM moves RIP past it only on the next
/// `KVM_RUN`, so state read before that would replay the `out` on restore.
/// With `immediate_exit` set, `KVM_RUN` completes the I/O and returns EINTR
/// before entering the guest (Documentation/virt/kvm/api.rst, "kvm_run":
/// immediate_exit).
fn complete_pending_exit(vcpu: &mut VcpuFd) -> Result<(), VmError> {
    vcpu.set_kvm_immediate_exit(1);
    let r = vcpu.run().map(drop);
    vcpu.set_kvm_immediate_exit(0);
    match r {
        Err(e) if e.errno() == libc::EINTR => Ok(()),
        Ok(()) => Ok(()),
        Err(e) => Err(VmError::Ioctl("KVM_RUN (immediate exit)", e)),
    }
}

/// How and when the guest stopped.
#[derive(Debug)]
pub(crate) struct Stopped {
    pub(crate) stop: GuestStop,
    entered: Instant,
    stopped: Instant,
    sandbox: Option<SandboxReport>,
}

impl<F: Fixups> VcpuLoop<F> {
    /// Devices on `bus`, output to `console`, nothing counted yet.
    pub(crate) fn new(bus: PortBus, console: Console, policy: UnknownIo, fixups: F) -> VcpuLoop<F> {
        VcpuLoop { bus, console, milestones: Vec::new(), stats: ExitStats::default(), policy, fixups, sandbox: None }
    }

    /// Steps "first entry" to "workload exit": runs the vCPU until the
    /// guest stops, or until `timeout` (a timer's signal kicks the vCPU
    /// out of `KVM_RUN`), telling the observer about the guest's progress
    /// as it goes.
    pub(crate) fn run(
        &mut self,
        vcpu: &mut VcpuFd,
        mem: &GuestMemoryMmap,
        clock: &mut Clock<'_>,
        timeout: Option<Duration>,
        say: Narration,
    ) -> Result<Stopped, VmError>
    where
        F: Send,
    {
        self.run_pausing(vcpu, mem, clock, timeout, say, None)
    }

    /// [`VcpuLoop::run`], and when the guest reaches `pause.0` (a boot
    /// milestone, or a time after its first instruction) the vCPU is
    /// paused, its pending exit completed, and `pause.1` is called with the vCPU, memory and devices (to take a
    /// snapshot); then the guest runs on.
    ///
    /// The loop runs in a thread of its own, the vCPU thread, which enters
    /// its seccomp filter (when the loop has a [`Sandbox`]) before the first
    /// `KVM_RUN`, or right after the snapshot when there is a pause point:
    /// saving one opens files and builds a scratch VM, set-up work the
    /// filter does not allow. The caller's thread waits for it.
    pub(crate) fn run_pausing(
        &mut self,
        vcpu: &mut VcpuFd,
        mem: &GuestMemoryMmap,
        clock: &mut Clock<'_>,
        timeout: Option<Duration>,
        say: Narration,
        pause: Option<(PausePoint, PauseHook<'_>)>,
    ) -> Result<Stopped, VmError>
    where
        F: Send,
    {
        clock.before(Step::FirstEntry);
        std::thread::scope(|s| {
            let thread = std::thread::Builder::new()
                .name(ThreadKind::Vcpu.name().into())
                .spawn_scoped(s, || self.run_here(vcpu, mem, clock, timeout, say, pause))
                .map_err(VmError::VcpuThread)?;
            match thread.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// The loop itself, in the vCPU thread.
    fn run_here(
        &mut self,
        vcpu: &mut VcpuFd,
        mem: &GuestMemoryMmap,
        clock: &mut Clock<'_>,
        timeout: Option<Duration>,
        say: Narration,
        mut pause: Option<(PausePoint, PauseHook<'_>)>,
    ) -> Result<Stopped, VmError> {
        // The timer that signals this thread when the timeout passes.
        let watchdog = match timeout {
            Some(t) => Some(Watchdog::start(t).map_err(VmError::Watchdog)?),
            None => None,
        };
        let mut filtered = pause.is_none() && self.enter_sandbox(clock)?;
        let entered = Instant::now();
        // A pause at a time: a second timer, on the same signal as the
        // timeout's, that kicks the vCPU out of KVM_RUN when it is due (and
        // every 5 ms after, until the save has been made and drops it).
        let mut pause_timer = match &pause {
            Some((PausePoint::After(d), _)) => Some(Watchdog::start(*d).map_err(VmError::Watchdog)?),
            _ => None,
        };
        let mut awaiting_first_exit = true;
        let mut reported = 0;
        let stop = loop {
            if let (Some(w), Some(t)) = (&watchdog, timeout) {
                if w.expired() {
                    break GuestStop::Timeout { after_ms: t.as_millis() as u64 };
                }
            }
            let flow = self.next_exit(vcpu, mem)?;
            if awaiting_first_exit {
                awaiting_first_exit = false;
                clock.mark(Step::FirstEntry, entered, say.first_entry);
            }
            // Tell the observer about guest milestones as they arrive.
            clock.guest_progress(&self.milestones, &mut reported, &self.console, say.kernel_ready);
            if let Flow::Stop(s) = flow {
                break s;
            }
            if let Some((point, hook)) = &mut pause {
                let due = match point {
                    PausePoint::Marker(marker) => self.milestones.last().is_some_and(|(m, _)| m == marker),
                    PausePoint::After(_) => pause_timer.as_ref().is_some_and(Watchdog::expired),
                };
                if due {
                    complete_pending_exit(vcpu)?;
                    hook(vcpu, mem, &self.bus)?;
                    pause = None;
                    // Deleted before the filter goes on; a signal it
                    // queued may still come, so a timed pause's plan
                    // allows rt_sigreturn (`Plan::timeout`).
                    pause_timer = None;
                    filtered = self.enter_sandbox(clock)?;
                }
            }
        };
        let stopped = Instant::now();
        drop(pause_timer);
        drop(watchdog);
        self.console.flush();
        clock.mark(Step::WorkloadExit, stopped, &stop.describe());
        // What the filters allowed, if the guest ran under them.
        let sandbox = self.sandbox.as_ref().filter(|_| filtered).map(|s| s.report().clone());
        Ok(Stopped { stop, entered, stopped, sandbox })
    }

    /// Puts the vCPU thread under its filter, and tells the observer what
    /// it allows. Returns whether there was one.
    fn enter_sandbox(&self, clock: &mut Clock<'_>) -> Result<bool, VmError> {
        let Some(s) = &self.sandbox else { return Ok(false) };
        clock.observer.note(&s.report().describe());
        s.enter(ThreadKind::Vcpu)?;
        Ok(true)
    }

    /// One `KVM_RUN`, and what its exit means. A signal (the timeout's)
    /// that interrupts `KVM_RUN` is no exit: the loop goes round and looks
    /// at the deadline.
    #[inline]
    fn next_exit(&mut self, vcpu: &mut VcpuFd, mem: &GuestMemoryMmap) -> Result<Flow, VmError> {
        let flow = match vcpu.run() {
            // Handled below, once the exit no longer borrows the vCPU.
            Ok(VcpuExit::InternalError) => None,
            Ok(exit) => {
                let mut ctx = DeviceContext { mem, console: &mut self.console, milestones: &mut self.milestones };
                Some(handle_exit(&mut self.bus, &mut ctx, &mut self.stats, self.policy, convert(exit)))
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Some(Flow::Continue),
            Err(e) => return Err(VmError::Ioctl("KVM_RUN", e)),
        };
        Ok(match flow {
            Some(flow) => flow,
            None => {
                self.stats.count("internal-error");
                self.fixups.internal_error(vcpu, mem)
            }
        })
    }
}

impl Stopped {
    /// The report as far as every run fills it the same way; a run adds
    /// what its guest knows with `RunReport { field, ..stopped.report(..) }`.
    pub(crate) fn report(
        self,
        clock: Clock<'_>,
        exits: ExitStats,
        console: &Console,
        memory: MemoryFigures,
    ) -> RunReport {
        let total = clock.last.saturating_duration_since(clock.start);
        RunReport {
            exit_status: self.stop.exit_status(),
            summary: self.stop.describe(),
            stop: self.stop,
            phases: clock.phases,
            exits,
            console: ConsoleKind::Uart,
            console_bytes: console.bytes(),
            syscalls: SyscallCounts::default(),
            memory,
            guest_run_us: us(self.stopped.saturating_duration_since(self.entered)),
            total_us: us(total),
            tsc_khz: 0,
            kernel_pvh: false,
            output: None,
            snapshot: None,
            sandbox: self.sandbox,
            restore: None,
        }
    }
}
