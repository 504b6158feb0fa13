//! The sentences the outputs share beside the tables: why TCG can win on
//! a nested host, what the "~" in the memory column means, how memory was
//! measured, and the published figures of the real systems.

use super::{find, fmt_mib, fmt_ratio, fmt_us, med, CompareReport};
use crate::host::VirtMode;
use crate::launch::{Env, MemoryMethod};

/// Why QEMU's software emulation can beat KVM here, said once for the
/// minikernel and the Linux guest, on nested hosts where a TCG row ran.
pub fn tcg_note(report: &CompareReport) -> String {
    let ran = |e| report.rows.iter().any(|r| r.env == e);
    if !(ran(Env::QemuTcg) || ran(Env::QemuTcgLinux)) || report.host.virt_mode != VirtMode::NestedEmulated {
        return String::new();
    }
    let mut t = String::from(
        "Note: on this nested host QEMU's software emulation (TCG) translates guest kernel code into host code, while \
         nested KVM emulates it one instruction at a time, so TCG can beat every KVM-based VMM on kernel-heavy work",
    );
    let ready = |e| find(&report.rows, e, "ready").and_then(|r| med(&r.startup_us));
    match (ready(Env::VmLinux), ready(Env::QemuTcgLinux)) {
        (Some(ours), Some(tcg)) => {
            t += &format!(
                ". A Linux guest's boot is nearly all kernel code: the same kernel, initramfs and command line reached \
                 its workload in {} under TCG and in {} under virtlab's VMM on nested KVM ({} as long)",
                fmt_us(tcg),
                fmt_us(ours),
                fmt_ratio(ours / tcg)
            )
        }
        (None, Some(tcg)) => {
            t += &format!(
            ". A Linux guest's boot is nearly all kernel code: under TCG it reached its workload in {}; add vm-linux \
                 (`--env vm-linux,qemu-tcg-linux`) to see virtlab's VMM boot the same guest on nested KVM",
            fmt_us(tcg)
        )
        }
        _ => {}
    }
    if report.skipped.iter().any(|s| s.env == Env::QemuMicrovmLinux && crate::peers::is_emulation_failure(&s.reason)) {
        t += "; QEMU with KVM could not boot that guest at all here (see why it was skipped, below), since it has \
              no work-arounds for this host's instruction emulator";
    }
    t += ". On VT-x/AMD-V hardware the order flips.\n";
    t
}

/// The legend of the "~" in the memory column, for right under the table
/// (empty when no row is an estimate).
pub fn estimate_legend(report: &CompareReport) -> String {
    // Each environment once, in table order: the rows go workload by
    // workload, so the same environment comes back for every workload.
    let mut estimated: Vec<&str> = Vec::new();
    let marked =
        report.rows.iter().filter(|r| r.memory_method == Some(MemoryMethod::Estimate) && r.memory_bytes.is_some());
    for name in marked.map(|r| r.env.name()) {
        if !estimated.contains(&name) {
            estimated.push(name);
        }
    }
    if estimated.is_empty() {
        return String::new();
    }
    format!(
        "~ memory of {} is an ESTIMATE: guest pages touched + the VMM process's RSS overhead (measured once), not a \
         cgroup peak{}.\n",
        estimated.join(", "),
        if estimated.iter().all(|e| *e == "vm-linux") {
            " (one more Linux boot for it would take minutes on a nested host)"
        } else {
            ""
        }
    )
}

/// How the memory column was measured, and the VMM's own memory.
pub fn memory_note(report: &CompareReport) -> String {
    let mut t = String::new();
    if report.rows.iter().any(|r| r.memory_method == Some(MemoryMethod::CgroupPeak)) {
        t += "memory per instance: the peak of a fresh memory cgroup around the one process (the workload, the \
              container, QEMU, or virtlab's VMM as a `virtlab vm run` process), measured after an earlier run of the \
              same binary so that its page cache is not charged.\n";
    }
    if report.rows.iter().any(|r| {
        matches!(r.env, Env::VmMiniRestore | Env::VmLinuxRestore) && r.memory_method == Some(MemoryMethod::CgroupPeak)
    }) {
        t +=
            "restored VMs' memory: the cgroup peak of one more `virtlab vm restore` process after the timed restores: \
              the VMM and the guest pages it wrote (copied on write); the snapshot's pages it only read are in the \
              page cache already, shared by every restore, and not charged to it.\n";
    }
    if report.rows.iter().any(|r| r.env.is_podman() && r.memory_bytes.is_some()) {
        t += "podman's memory: the peak of the fresh cgroup its container's cgroup went under (--cgroup-parent): \
              the runtime's container init (runc's or virtlab's) and the workload, not podman or conmon.\n";
    }
    if !report.host.root {
        t += "memory per instance: not root, so no cgroup could be made: native and QEMU rows have no memory figure \
              and the VM rows show the estimate.\n";
    }
    if let Some(b) = report.vmm_overhead_bytes {
        t += &format!(
            "The VMM process's own memory: {} (peak RSS minus the guest pages it touched, one `virtlab vm run -- \
             ready`).\n",
            fmt_mib(b as f64)
        );
    }
    t
}

/// What "memory each" of the `--scale` table is: the instances run in
/// the harness's process, so VMs cannot have a cgroup each.
pub(super) const SCALE_MEMORY_NOTE: &str =
    "memory each: a container's cgroup peak; for a VM, the guest pages it touched plus the \
     VMM's own memory (peak RSS minus guest pages), an estimate that also counts the binary's and libraries' pages \
     which a cgroup peak (the table above) does not charge again; for restored VMs, the mean cgroup peak of as many \
     `virtlab vm restore` processes at once, each charged only what it adds: the pages of the snapshot it only reads \
     are shared by all";

/// Published figures of the real systems, for context beside ours.
pub const ANCHORS: &[(&str, &str)] = &[
    ("Firecracker: boot to guest init", "<= 125 ms"),
    ("Firecracker: VMM memory overhead", "<= 5 MiB"),
    ("Firecracker: microVM creation rate", "5 per core per second"),
    ("crun: create + start + delete", "47 ms (youki README, cgroup v2 host)"),
    ("youki: create + start + delete", "111 ms (youki README, cgroup v2 host)"),
    ("runc: create + start + delete", "225 ms (youki README, cgroup v2 host)"),
];
