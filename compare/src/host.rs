//! What machine the comparison ran on, measured rather than assumed, so
//! that nobody reads an artefact of nested virtualization as a property of
//! hypervisors.

use serde::{Deserialize, Serialize};
use virtlab_vmm::probe::Ring0Probe;

/// How this host runs guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VirtMode {
    /// No usable /dev/kvm.
    NoKvm,
    /// Guest kernel code runs at (near) hardware speed: VT-x/AMD-V.
    HardwareAssisted,
    /// Guest kernel code is emulated instruction by instruction: KVM nested
    /// inside another VM without full hardware support for it.
    NestedEmulated,
}

/// Facts about the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostInfo {
    /// `uname -r`.
    pub kernel: String,
    /// CPU model.
    pub cpu: String,
    /// CPUs online.
    pub cpus: usize,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// Whether /dev/kvm could be opened, and why not.
    pub kvm: Result<(), String>,
    /// The ring-0 calibration: guest kernel-mode loop against the host.
    pub ring0: Option<Ring0Probe>,
    /// Whether SYSCALL from guest ring 3 reached ring 0 (from the
    /// minikernel's counters in this run); None if no VM ran.
    pub syscall_reaches_ring0: Option<bool>,
    /// What that adds up to.
    pub virt_mode: VirtMode,
    /// cgroup layout: v1, hybrid or v2.
    pub cgroup_mode: Option<String>,
    /// Running as root (containers with cgroups need it).
    pub root: bool,
}

impl HostInfo {
    /// Looks at the machine; `probe` runs the ring-0 calibration (a few VM
    /// boots) when KVM works.
    pub fn probe(probe: bool) -> HostInfo {
        let kvm = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .map(|_| ())
            .map_err(|e| format!("/dev/kvm: {e}"));
        let ring0 = if probe && kvm.is_ok() { virtlab_vmm::probe::probe_ring0(5_000).ok() } else { None };
        let virt_mode = match (&kvm, &ring0) {
            (Err(_), _) => VirtMode::NoKvm,
            (Ok(()), Some(p)) if p.kernel_mode_emulated() => VirtMode::NestedEmulated,
            _ => VirtMode::HardwareAssisted,
        };
        let cgroup_mode = virtlab_container::cgroup::detect(std::path::Path::new("/sys/fs/cgroup"))
            .ok()
            .map(|m| format!("{m:?}").to_lowercase());
        HostInfo {
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
            cpu: cpu_model(),
            cpus: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
            memory_mib: virtlab_container::config::host_memory_bytes() >> 20,
            kvm,
            ring0,
            syscall_reaches_ring0: None,
            virt_mode,
            cgroup_mode,
            // SAFETY: geteuid has no preconditions.
            root: unsafe { libc::geteuid() } == 0,
        }
    }

    /// Plain-words lines for the top of a report.
    pub fn describe(&self) -> Vec<String> {
        let mut l = vec![format!(
            "host: Linux {} on {} ({} CPUs, {} MiB), cgroups {}, {}",
            self.kernel,
            self.cpu,
            self.cpus,
            self.memory_mib,
            self.cgroup_mode.as_deref().unwrap_or("not found"),
            if self.root { "running as root" } else { "not root (containers cannot use cgroups)" }
        )];
        match (&self.kvm, self.virt_mode, &self.ring0) {
            (Err(e), _, _) => l.push(format!("virtualization: no KVM ({e}): VM rows are left out")),
            (Ok(()), VirtMode::NestedEmulated, Some(p)) => l.push(format!(
                "virtualization: KVM, NESTED: guest kernel-mode code ran {:.0}x slower than the same loop on the host \
                 ({:.0} ns against {:.2} ns per iteration): it is emulated, instruction by instruction. Guest user-mode \
                 code still runs directly on the CPU. Every VM figure that involves the guest kernel (boot, system \
                 calls, device exits) is inflated by this; on a laptop or server with VT-x/AMD-V it is 100-1000x smaller.",
                p.slowdown, p.guest_ring0_ns, p.host_ns
            )),
            (Ok(()), _, Some(p)) => l.push(format!(
                "virtualization: KVM, hardware-assisted: guest kernel-mode code ran at {:.1}x the host's speed per instruction",
                p.slowdown
            )),
            (Ok(()), _, None) => l.push("virtualization: KVM present (not calibrated)".into()),
        }
        match self.syscall_reaches_ring0 {
            Some(false) => l.push(
                "system calls: SYSCALL from guest ring 3 does NOT reach ring 0 on this host; the minikernel catches \
                 each one as a page fault and emulates it (trap-and-emulate, as VMMs did before hardware assist)"
                    .into(),
            ),
            Some(true) => l.push("system calls: SYSCALL from guest ring 3 enters the guest kernel directly".into()),
            None => {}
        }
        l
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "an unknown CPU".into())
}
