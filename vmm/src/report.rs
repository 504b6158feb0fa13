//! What a run measured: in one serializable shape for `--json`, the
//! harness and the benches.

use serde::Serialize;
use virtlab_minikernel::abi::SyscallStats;

use crate::config::ConsoleKind;
use crate::exit::ExitStats;
use crate::observe::Step;
use crate::stop::GuestStop;

/// One step's timing, in microseconds since the run began.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTime {
    /// Which step.
    pub step: Step,
    /// Its name.
    pub name: &'static str,
    /// When it ended, in microseconds since the start of the run.
    pub at_us: f64,
    /// How long it took since the previous step ended.
    pub took_us: f64,
}

/// The minikernel's system-call counters.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SyscallCounts {
    /// Syscalls that entered ring 0 through SYSCALL, as hardware should.
    pub via_syscall: u64,
    /// Syscalls caught as a user-mode #PF at the LSTAR address and emulated
    /// (trap-and-emulate, on hosts whose nested KVM fumbles SYSCALL).
    pub via_trap: u64,
    /// Unimplemented syscalls (answered -ENOSYS).
    pub enosys: u64,
    /// The last unimplemented syscall number.
    pub last_enosys_nr: u64,
    /// write() calls.
    pub writes: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Bytes handed out by mmap().
    pub mmap_bytes: u64,
}

impl From<SyscallStats> for SyscallCounts {
    fn from(s: SyscallStats) -> Self {
        SyscallCounts {
            via_syscall: s.via_syscall,
            via_trap: s.via_trap,
            enosys: s.enosys,
            last_enosys_nr: s.last_enosys_nr,
            writes: s.writes,
            bytes_written: s.bytes_written,
            mmap_bytes: s.mmap_bytes,
        }
    }
}

/// Memory figures.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MemoryFigures {
    /// Guest RAM size.
    pub guest_ram_bytes: u64,
    /// Guest RAM the guest actually touched (resident pages of the mapping).
    pub guest_touched_bytes: u64,
    /// The VMM process's peak resident set (VmHWM).
    pub process_peak_rss_bytes: u64,
    /// Peak RSS minus the guest RAM that was resident: what the VMM itself
    /// costs.
    pub vmm_overhead_bytes: u64,
}

/// Everything one run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Why the guest stopped.
    pub stop: GuestStop,
    /// The status the `virtlab` process should exit with.
    pub exit_status: i32,
    /// One line for a student.
    pub summary: String,
    /// Step timings.
    pub phases: Vec<PhaseTime>,
    /// VM exits by reason, device and port.
    pub exits: ExitStats,
    /// The console device used.
    pub console: ConsoleKind,
    /// Console bytes the VMM received.
    pub console_bytes: u64,
    /// System calls the minikernel served.
    pub syscalls: SyscallCounts,
    /// Memory.
    pub memory: MemoryFigures,
    /// Guest time in KVM_RUN plus exit handling, from first entry to stop (µs).
    pub guest_run_us: f64,
    /// The whole run, /dev/kvm open to teardown (µs).
    pub total_us: f64,
    /// TSC frequency the guest clock uses (kHz).
    pub tsc_khz: u32,
    /// Whether the kernel carries a PVH note (QEMU can boot it too).
    pub kernel_pvh: bool,
    /// Captured console output (when the console was captured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The snapshot this run saved (`VmConfig::snapshot`), if it reached
    /// the point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<crate::snapshot::Saved>,
    /// What the VMM's threads were allowed to call while the guest ran
    /// (None: no seccomp filter: `--no-seccomp`, or a run that stopped
    /// before the snapshot it was to save).
    pub sandbox: Option<crate::sandbox::SandboxReport>,
    /// For a restore: what the host would not take back and what the VMM
    /// worked around while the restored guest ran (None for a boot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreHost>,
}

/// A restore's dealings with this host, counted so that a report says
/// exactly what could not be set back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreHost {
    /// Saved state the host refused to take back, each skipped with the
    /// reason (e.g. an MSR a nested host does not know).
    pub refused: Vec<String>,
    /// Work-arounds the VMM made for the host while the restored guest ran,
    /// by kind (the same counters as a Linux boot's `host_quirks.fixups`).
    pub fixups: std::collections::BTreeMap<&'static str, u64>,
}

impl RunReport {
    /// A phase's time since the start, if it happened.
    pub fn at(&self, step: Step) -> Option<f64> {
        self.phases.iter().find(|p| p.step == step).map(|p| p.at_us)
    }
}
