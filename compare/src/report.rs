//! The comparison: samples in, rows of statistics, a table, and one plain
//! sentence per claim of the course notes out.
//!
//! The JSON form is versioned (`schema`, see `compare/schema/compare.v1.json`
//! and docs in README): fields are only ever added within a version.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::env::{Env, Sample, Workload};
use crate::host::{HostInfo, VirtMode};
use crate::memory::MemoryMethod;
use crate::stats::{ratio, Summary};

/// The schema name and version of the JSON report.
pub const SCHEMA: &str = "virtlab.compare/1";

/// How the comparison was run.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// Measured runs per environment and workload.
    pub runs: usize,
    /// Warm-up runs (not kept).
    pub warmup: usize,
    /// Environments asked for.
    pub envs: Vec<Env>,
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// The order runs were made in.
    pub order: String,
}

/// An environment left out, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// Which.
    pub env: Env,
    /// Why, and how to get it.
    pub reason: String,
}

/// A launch that failed.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Where.
    pub env: Env,
    /// Which workload.
    pub workload: String,
    /// Run index (or warm-up).
    pub run: usize,
    /// The error.
    pub error: String,
}

/// Statistics of one environment on one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Environment.
    pub env: Env,
    /// Workload mode.
    pub workload: String,
    /// Samples summarised.
    pub runs: usize,
    /// Launch to ready marker, µs.
    pub startup_us: Option<Summary>,
    /// The workload's own time, ns.
    pub inside_ns: Option<Summary>,
    /// Launch to exit, µs.
    pub total_us: Option<Summary>,
    /// inside_ns median / native's.
    pub inside_ratio: Option<f64>,
    /// total_us median / native's.
    pub total_ratio: Option<f64>,
    /// startup median / native's.
    pub startup_ratio: Option<f64>,
    /// VM exits per run.
    pub vm_exits: Option<Summary>,
    /// VM exits per second of launch-to-exit time.
    pub exits_per_second: Option<f64>,
    /// Console exits per KiB of output (io workload, VMs).
    pub console_exits_per_kib: Option<f64>,
    /// Host memory per instance, bytes.
    pub memory_bytes: Option<Summary>,
    /// How `memory_bytes` was measured.
    pub memory_method: Option<MemoryMethod>,
    /// Share of system calls trapped rather than entered through SYSCALL.
    pub syscalls_trapped_share: Option<f64>,
    /// The PID the workload saw (first run).
    pub pid: Option<u64>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct CompareReport {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// virtlab's version.
    pub virtlab_version: &'static str,
    /// When (seconds since the Unix epoch).
    pub started_unix: u64,
    /// Wall time of the whole comparison, seconds.
    pub wall_seconds: f64,
    /// The machine.
    pub host: HostInfo,
    /// How it ran.
    pub config: RunConfig,
    /// Environments left out.
    pub skipped: Vec<Skipped>,
    /// Failed launches.
    pub failures: Vec<Failure>,
    /// One row per environment and workload.
    pub rows: Vec<Row>,
    /// One sentence per claim of the course notes.
    pub claims: Vec<Claim>,
    /// Every measured run.
    pub samples: Vec<Sample>,
    /// Many instances at once (`--scale`).
    pub scale: Vec<crate::scale::ScalePoint>,
    /// Ours against the peers, as ratios from this run.
    pub peers: Vec<PeerRatio>,
    /// The VMM process's own memory (peak RSS minus the guest pages it
    /// touched), from one `virtlab vm run -- ready`; None if no VM ran.
    pub vmm_overhead_bytes: Option<u64>,
}

/// One of ours against one peer on one workload: ours / peer.
#[derive(Debug, Clone, Serialize)]
pub struct PeerRatio {
    /// Ours.
    pub ours: Env,
    /// The peer.
    pub peer: Env,
    /// Workload mode.
    pub workload: String,
    /// Launch to ready, ours / peer.
    pub startup_ratio: Option<f64>,
    /// Launch to exit, ours / peer.
    pub total_ratio: Option<f64>,
    /// The workload's own time, ours / peer.
    pub inside_ratio: Option<f64>,
    /// Host memory per instance, ours / peer, when both were measured the
    /// same way (for VMs: the VMM process with the guest pages it touched).
    pub memory_ratio: Option<f64>,
}

/// Pairs each peer with the environment of ours that does the same job.
pub fn peer_ratios(rows: &[Row]) -> Vec<PeerRatio> {
    let pairs = [
        (Env::VmMiniPv, Env::QemuMicrovm),
        (Env::VmMiniUart, Env::QemuMicrovm),
        (Env::VmMiniUart, Env::QemuTcg),
        (Env::VmMiniPv, Env::QemuTcg),
        (Env::VmLinux, Env::QemuMicrovmLinux),
        (Env::VmLinux, Env::QemuTcgLinux),
        (Env::Container, Env::Bwrap),
        (Env::Container, Env::Runc),
        (Env::Container, Env::Crun),
    ];
    let mut out = Vec::new();
    for r in rows.iter().filter(|r| r.env.is_peer()) {
        for (ours, peer) in pairs.iter().filter(|(_, p)| *p == r.env) {
            let Some(o) = find(rows, *ours, &r.workload) else { continue };
            out.push(PeerRatio {
                ours: *ours,
                peer: *peer,
                workload: r.workload.clone(),
                startup_ratio: ratio(med(&o.startup_us), med(&r.startup_us)),
                total_ratio: ratio(med(&o.total_us), med(&r.total_us)),
                inside_ratio: ratio(med(&o.inside_ns), med(&r.inside_ns)),
                memory_ratio: if o.memory_method.is_some() && o.memory_method == r.memory_method {
                    ratio(med(&o.memory_bytes), med(&r.memory_bytes))
                } else {
                    None
                },
            });
        }
    }
    out
}

/// The peers section of the text report.
pub fn peers_text(report: &CompareReport) -> String {
    if report.peers.is_empty() {
        return String::new();
    }
    let mut t = String::from(
        "\nOurs against the real thing (ours / peer, medians from this run; below 1 means ours is faster or smaller):\n",
    );
    let cell = |v: Option<f64>| v.map(fmt_ratio).unwrap_or_else(|| "-".into());
    t += &format!(
        "{:<8} {:<13} {:<19} {:>9} {:>9} {:>9} {:>9}\n",
        "workload", "ours", "peer", "startup", "to exit", "work", "memory"
    );
    for p in &report.peers {
        t += &format!(
            "{:<8} {:<13} {:<19} {:>9} {:>9} {:>9} {:>9}\n",
            p.workload,
            p.ours.name(),
            p.peer.name(),
            cell(p.startup_ratio),
            cell(p.total_ratio),
            cell(p.inside_ratio.filter(|_| p.workload != "ready")),
            cell(p.memory_ratio)
        );
    }
    if report.peers.iter().any(|p| p.memory_ratio.is_some()) {
        t += "memory: VMM memory, ours / QEMU: the peak of a fresh memory cgroup around each VMM process (its own \
              memory plus the guest pages it touched).\n";
    }
    if report.peers.iter().any(|p| p.ours == Env::VmLinux) {
        t += "vm-linux's memory is an estimate (guest pages + VMM RSS overhead), so it is not set against QEMU's.\n";
    }
    t
}

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

/// A claim of the notes and what this run measured about it.
#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    /// The claim, as the notes make it.
    pub claim: &'static str,
    /// What was measured, in plain words.
    pub measured: String,
}

fn values(samples: &[&Sample], f: impl Fn(&Sample) -> Option<f64>) -> Vec<f64> {
    samples.iter().filter_map(|s| f(s)).collect()
}

/// Summarises the samples into rows (table order: workload, then
/// environment), with ratios against native in the same run.
pub fn rows(samples: &[Sample], envs: &[Env], workloads: &[Workload]) -> Vec<Row> {
    let mut rows = Vec::new();
    for w in workloads {
        let of = |e: Env| -> Vec<&Sample> { samples.iter().filter(|s| s.env == e && s.workload == w.mode).collect() };
        let native = of(Env::Native);
        let n_startup = Summary::of(&values(&native, |s| s.startup_us)).map(|s| s.median);
        let n_inside = Summary::of(&values(&native, |s| s.inside_ns)).map(|s| s.median);
        let n_total = Summary::of(&values(&native, |s| Some(s.total_us))).map(|s| s.median);
        for &e in envs {
            let ss = of(e);
            if ss.is_empty() {
                continue;
            }
            let startup = Summary::of(&values(&ss, |s| s.startup_us));
            let inside = Summary::of(&values(&ss, |s| s.inside_ns));
            let total = Summary::of(&values(&ss, |s| Some(s.total_us)));
            let exits = Summary::of(&values(&ss, |s| s.vm_exits.map(|x| x as f64)));
            let exits_per_second = match (&exits, &total) {
                (Some(x), Some(t)) if t.median > 0.0 => Some(x.median / (t.median / 1e6)),
                _ => None,
            };
            let kib = w.arg.filter(|_| w.mode == "io").map(|k| k as f64);
            let console = Summary::of(&values(&ss, |s| s.console_exits.map(|x| x as f64)));
            let console_exits_per_kib = match (console, kib) {
                (Some(c), Some(k)) if k > 0.0 => Some(c.median / k),
                _ => None,
            };
            let (fast, trapped): (u64, u64) = ss
                .iter()
                .map(|s| (s.syscalls_fast.unwrap_or(0), s.syscalls_trapped.unwrap_or(0)))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            let trapped_share = (fast + trapped > 0).then(|| trapped as f64 / (fast + trapped) as f64);
            rows.push(Row {
                env: e,
                workload: w.mode.clone(),
                runs: ss.len(),
                startup_ratio: ratio(startup.map(|s| s.median), n_startup),
                inside_ratio: ratio(inside.map(|s| s.median), n_inside),
                total_ratio: ratio(total.map(|s| s.median), n_total),
                startup_us: startup,
                inside_ns: inside,
                total_us: total,
                vm_exits: exits,
                exits_per_second,
                console_exits_per_kib,
                memory_bytes: Summary::of(&values(&ss, |s| s.memory_bytes.map(|m| m as f64))),
                memory_method: ss.iter().find_map(|s| s.memory_method.filter(|_| s.memory_bytes.is_some())),
                syscalls_trapped_share: trapped_share,
                pid: ss.first().and_then(|s| s.pid),
            });
        }
    }
    rows
}

fn find<'r>(rows: &'r [Row], env: Env, workload: &str) -> Option<&'r Row> {
    rows.iter().find(|r| r.env == env && r.workload == workload)
}

fn med(s: &Option<Summary>) -> Option<f64> {
    s.map(|s| s.median)
}

/// Human-friendly time from microseconds.
pub fn fmt_us(us: f64) -> String {
    if us < 1.0 {
        format!("{:.0} ns", us * 1e3)
    } else if us < 1000.0 {
        format!("{us:.1} us")
    } else if us < 1e6 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}x")
    } else if r >= 10.0 {
        format!("{r:.1}x")
    } else {
        format!("{r:.2}x")
    }
}

fn fmt_mib(b: f64) -> String {
    if b < 1024.0 * 1024.0 {
        format!("{:.0} KiB", b / 1024.0)
    } else {
        format!("{:.1} MiB", b / 1048576.0)
    }
}

/// The sentences under the table: one per claim of the notes, from what
/// this run measured. A claim with nothing measured says so.
pub fn claims(rows: &[Row], host: &HostInfo) -> Vec<Claim> {
    let nested = host.virt_mode == VirtMode::NestedEmulated;
    let mut out = Vec::new();

    // 1. Startup.
    let s = |e| find(rows, e, "ready").and_then(|r| med(&r.startup_us));
    let measured = match (s(Env::Native), s(Env::Container), s(Env::VmMiniPv).or(s(Env::VmMiniUart)), s(Env::VmLinux)) {
        (n, Some(c), Some(v), l) => {
            let mut m = if v >= c {
                format!(
                    "to its first line, the workload took {} in a container and {} in the minikernel VM ({} as long: \
                     the VM must create a virtual machine and boot a kernel, the container only sets up namespaces \
                     around a process)",
                    fmt_us(c),
                    fmt_us(v),
                    fmt_ratio(v / c)
                )
            } else {
                format!(
                    "to its first line, the workload took {} in a container and only {} in the minikernel VM: a kernel \
                     that does almost nothing boots faster than this host sets up a container's namespaces and cgroup \
                     (see the timeline chart for where each spends its time); a general-purpose guest OS would not",
                    fmt_us(c),
                    fmt_us(v)
                )
            };
            if let Some(n) = n {
                m += &format!("; natively {}", fmt_us(n));
            }
            if let Some(l) = l {
                m += &format!("; a Linux guest took {} ({} the container)", fmt_us(l), fmt_ratio(l / c));
            }
            if nested {
                m += ". The VM's kernel steps are inflated here by nested emulation (see the host line)";
            }
            m
        }
        _ => "not measured: run the `ready` workload in container and a VM".into(),
    };
    out.push(Claim { claim: "containers start fast, VMs must boot an OS", measured });

    // 2. CPU overhead.
    let r = |e| find(rows, e, "cpu").and_then(|r| r.inside_ratio);
    let measured = match (r(Env::Container), r(Env::VmMiniPv).or(r(Env::VmMiniUart))) {
        (c, Some(v)) => {
            let mut m = format!("the same CPU-bound loop took {} the native time in the VM", fmt_ratio(v));
            if let Some(c) = c {
                m += &format!(" and {} in the container", fmt_ratio(c));
            }
            m +=
                ": guest user-mode code runs directly on the CPU, the hypervisor is not involved until something traps";
            m
        }
        _ => "not measured: run the `cpu` workload natively and in a VM".into(),
    };
    out.push(Claim { claim: "hypervisors have little overhead", measured });

    // 3. System calls.
    let call = |e| {
        find(rows, e, "syscall")
            .and_then(|r| r.inside_ns.as_ref().map(|s| s.median))
            .zip(find(rows, e, "syscall").map(|_| ()))
            .map(|(ns, _)| ns)
    };
    let n_calls = rows.iter().find(|r| r.workload == "syscall").map(|_| ());
    let measured = match (call(Env::Native), call(Env::VmMiniPv).or(call(Env::VmMiniUart)), n_calls) {
        (Some(n), Some(v), Some(())) => {
            let vm_row = find(rows, Env::VmMiniPv, "syscall").or_else(|| find(rows, Env::VmMiniUart, "syscall"));
            let trapped = vm_row.and_then(|r| r.syscalls_trapped_share).unwrap_or(0.0);
            let mut m = format!(
                "a system call took {} as long in the VM as natively ({})",
                fmt_ratio(v / n),
                if trapped > 0.5 {
                    "each one trapped as a page fault and emulated by the guest kernel"
                } else {
                    "each one entering the guest kernel through SYSCALL"
                }
            );
            if let Some(c) = call(Env::Container) {
                m += &format!("; in the container {} (the same host kernel)", fmt_ratio(c / n));
            }
            if let Some(x) = vm_row.and_then(|r| r.exits_per_second) {
                m += &format!("; the VM made {x:.0} VM exits per second");
            }
            if nested {
                m += ". On this nested host guest kernel code is emulated, so this ratio is far larger than on real hardware";
            }
            m
        }
        _ => "not measured: run the `syscall` workload natively and in a VM".into(),
    };
    out.push(Claim { claim: "an OS on an OS costs more", measured });

    // 4. Para- versus full virtualization.
    let io = |e| find(rows, e, "io");
    let measured = match (io(Env::VmMiniUart), io(Env::VmMiniPv)) {
        (Some(u), Some(p)) => {
            let (ue, pe) = (u.console_exits_per_kib.unwrap_or(0.0), p.console_exits_per_kib.unwrap_or(0.0));
            let (ut, pt) = (med(&u.inside_ns).unwrap_or(0.0), med(&p.inside_ns).unwrap_or(0.0));
            format!(
                "the same console output cost {ue:.0} VM exits per KiB through the emulated UART (one per byte) and \
                 {pe:.2} through the paravirtual port (one per write), and took {} instead of {} ({} faster): the guest \
                 that knows it is virtualized asks the hypervisor once instead of being trapped at every byte",
                fmt_us(ut / 1e3),
                fmt_us(pt / 1e3),
                fmt_ratio(if pt > 0.0 { ut / pt } else { 0.0 })
            )
        }
        _ => "not measured: run the `io` workload in vm-mini-uart and vm-mini-pv".into(),
    };
    out.push(Claim { claim: "para-virtualization beats full virtualization", measured });

    // 5. Memory.
    let mem = |e| find(rows, e, "ready").and_then(|r| med(&r.memory_bytes));
    let vm_method = find(rows, Env::VmMiniPv, "ready")
        .filter(|r| r.memory_bytes.is_some())
        .or_else(|| find(rows, Env::VmMiniUart, "ready"))
        .and_then(|r| r.memory_method);
    let measured = match (mem(Env::Container), mem(Env::VmMiniPv).or(mem(Env::VmMiniUart))) {
        (Some(c), Some(v)) => {
            let mut m = format!(
                "one instance cost {} of host memory as a container (its cgroup's peak) and {} as a minikernel VM ({}), \
                 {} as much",
                fmt_mib(c),
                fmt_mib(v),
                if vm_method == Some(MemoryMethod::CgroupPeak) {
                    "the peak of a cgroup around the VMM process: its own memory plus the guest pages it touched"
                } else {
                    "estimated: guest pages touched plus the VMM process's own memory"
                },
                fmt_ratio(v / c)
            );
            if let Some(q) = mem(Env::QemuMicrovm) {
                m += &format!("; QEMU microvm with the same minikernel, measured the same way, {}", fmt_mib(q));
            }
            m += "; a Linux guest needs far more, since its kernel must fit in guest RAM (`--scale` measures many at once)";
            m
        }
        _ => "not measured: run `ready` in a container and a VM".into(),
    };
    out.push(Claim { claim: "containers waste fewer resources", measured });

    // 6. Isolation.
    let pid = |e| find(rows, e, "ready").and_then(|r| r.pid);
    let measured = match (pid(Env::Native), pid(Env::Container), pid(Env::VmMiniPv).or(pid(Env::VmMiniUart))) {
        (Some(n), Some(c), Some(v)) => format!(
            "natively the workload saw itself as PID {n} among the host's processes; in the container as PID {c} of its \
             own PID namespace, yet on the host's kernel ({}); in the VM as PID {v} of its own kernel (the minikernel): \
             a container is a process the kernel shows a different world, a VM has a world of its own. \
             `virtlab container run --explain` and the container tests show each namespace's effect",
            host.kernel
        ),
        _ => "not measured: run `ready` natively, in a container and in a VM".into(),
    };
    out.push(Claim { claim: "containers isolate less", measured });
    out
}

/// The table, as text.
pub fn table(report: &CompareReport) -> String {
    let mut t = String::new();
    t += &format!(
        "{:<8} {:<13} {:>11} {:>9} {:>11} {:>9} {:>11} {:>9} {:>9} {:>10}\n",
        "workload", "environment", "startup", "x native", "work", "x native", "to exit", "spread", "exits", "memory"
    );
    for r in &report.rows {
        let cell = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map(f).unwrap_or_else(|| "-".into());
        t += &format!(
            "{:<8} {:<13} {:>11} {:>9} {:>11} {:>9} {:>11} {:>9} {:>9} {:>10}\n",
            r.workload,
            r.env.name(),
            cell(med(&r.startup_us), &fmt_us),
            cell(r.startup_ratio.filter(|_| r.env != Env::Native), &fmt_ratio),
            cell(med(&r.inside_ns).filter(|_| r.workload != "ready"), &|ns| fmt_us(ns / 1e3)),
            cell(r.inside_ratio.filter(|_| r.env != Env::Native && r.workload != "ready"), &fmt_ratio),
            cell(med(&r.total_us), &fmt_us),
            cell(r.total_us.map(|s| s.spread * 100.0), &|p| format!("{p:.0}%")),
            cell(med(&r.vm_exits), &|x| format!("{x:.0}")),
            memory_cell(r),
        );
    }
    t
}

/// A row's memory, "~" in front when it is an estimate.
fn memory_cell(r: &Row) -> String {
    match (med(&r.memory_bytes), r.memory_method) {
        (Some(b), Some(MemoryMethod::Estimate)) => format!("~{}", fmt_mib(b)),
        (Some(b), _) => fmt_mib(b),
        (None, _) => "-".into(),
    }
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

/// The whole text report: host, table, claims, what was left out.
pub fn text(report: &CompareReport) -> String {
    let mut t = String::new();
    for l in report.host.describe() {
        t += &l;
        t += "\n";
    }
    t += &format!(
        "\n{} runs after {} warm-up(s) per cell, {}; medians, spread = (max-min)/median. \"work\" is the workload's own \
         timing, \"x native\" the ratio to native in this same run.\n\n",
        report.config.runs, report.config.warmup, report.config.order
    );
    t += &table(report);
    t += &estimate_legend(report);
    let peers = peers_text(report);
    let note = tcg_note(report);
    t += &peers;
    if peers.is_empty() && !note.is_empty() {
        t += "\n";
    }
    t += &note;
    t += "\nWhat this run shows about the course notes' claims:\n";
    for c in &report.claims {
        t += &format!("- {}: {}.\n", c.claim, c.measured);
    }
    let memory = memory_note(report);
    if !memory.is_empty() {
        t += "\n";
        t += &memory;
    }
    let fixups: u64 = report.samples.iter().filter(|s| s.env == Env::VmLinux).filter_map(|s| s.host_fixups).sum();
    if fixups > 0 {
        t += &format!(
            "\nvm-linux: this host's nested KVM cannot run a Linux guest's user mode unaided; the VMM's host \
             work-arounds (hidden CPU features, emulated instructions) made {fixups} fix-up(s) over these runs, and the \
             guest kernel carries a small patch that serves a trapped SYSCALL (see guest/linux/README.md).\n"
        );
    }
    for s in &report.skipped {
        t += &format!("\nskipped {}: {}", s.env.name(), s.reason);
    }
    if !report.skipped.is_empty() {
        t += "\n";
    }
    if !report.failures.is_empty() {
        t += &format!("\n{} launch(es) failed:\n", report.failures.len());
        for f in report.failures.iter().take(10) {
            t += &format!("  {} {} run {}: {}\n", f.env.name(), f.workload, f.run, f.error);
        }
    }
    t += &format!("\n(the comparison took {:.1} s)\n", report.wall_seconds);
    t
}

/// What "memory each" of the `--scale` table is: the instances run in
/// the harness's process, so VMs cannot have a cgroup each.
const SCALE_MEMORY_NOTE: &str =
    "memory each: a container's cgroup peak; for a VM, the guest pages it touched plus the \
     VMM's own memory (peak RSS minus guest pages), an estimate that also counts the binary's and libraries' pages \
     which a cgroup peak (the table above) does not charge again";

/// The `--scale` table.
pub fn scale_table(report: &CompareReport) -> String {
    let mut t = String::from("\nMany at once (`ready`, all started together):\n");
    t += &format!(
        "{:<13} {:>9} {:>11} {:>14} {:>14} {:>7}\n",
        "environment", "instances", "wall", "instances/s", "memory each", "failed"
    );
    for p in &report.scale {
        t += &format!(
            "{:<13} {:>9} {:>11} {:>14.1} {:>14} {:>7}\n",
            p.env.name(),
            p.instances,
            fmt_us(p.wall_us),
            p.per_second,
            p.memory_per_instance_bytes.map(fmt_mib).unwrap_or_else(|| "-".into()),
            p.failed
        );
    }
    t += SCALE_MEMORY_NOTE;
    t += ".\n";
    t
}

/// Published figures of the real systems, for context beside ours.
pub const ANCHORS: &[(&str, &str)] = &[
    ("Firecracker: boot to guest init", "<= 125 ms"),
    ("Firecracker: VMM memory overhead", "<= 5 MiB"),
    ("Firecracker: microVM creation rate", "5 per core per second"),
    ("crun: create + start + delete", "47 ms (youki README, cgroup v2 host)"),
    ("youki: create + start + delete", "111 ms (youki README, cgroup v2 host)"),
    ("runc: create + start + delete", "225 ms (youki README, cgroup v2 host)"),
];

/// The report as Markdown: the table, ours against the peers, the
/// many-at-once figures and the published anchors, with the command that
/// made it (for `benches/README.md` and for students' notes).
pub fn markdown(report: &CompareReport, command: &str) -> String {
    let mut t = String::from("# virtlab: measured figures\n\n");
    t += &format!(
        "Produced by `{command}` (virtlab {}), in {:.0} s; regenerate with the same command. `cargo bench` runs the \
         criterion benchmarks (`benches/benches/`; HTML reports in `target/criterion/`).\n\n",
        report.virtlab_version, report.wall_seconds
    );
    t += "## The machine\n\n";
    for l in report.host.describe() {
        t += &format!("- {l}\n");
    }
    t += &format!(
        "\n## Medians of {} runs after {} warm-up(s), interleaved\n\n",
        report.config.runs, report.config.warmup
    );
    t += "| workload | environment | startup | x native | work | x native | to exit | spread | VM exits | memory |\n";
    t += "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
    let cell = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map(f).unwrap_or_else(|| "-".into());
    for r in &report.rows {
        t += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.workload,
            r.env.name(),
            cell(med(&r.startup_us), &fmt_us),
            cell(r.startup_ratio.filter(|_| r.env != Env::Native), &fmt_ratio),
            cell(med(&r.inside_ns).filter(|_| r.workload != "ready"), &|ns| fmt_us(ns / 1e3)),
            cell(r.inside_ratio.filter(|_| r.env != Env::Native && r.workload != "ready"), &fmt_ratio),
            cell(med(&r.total_us), &fmt_us),
            cell(r.total_us.map(|s| s.spread * 100.0), &|p| format!("{p:.0}%")),
            cell(med(&r.vm_exits), &|x| format!("{x:.0}")),
            memory_cell(r),
        );
    }
    let note = estimate_legend(report) + &memory_note(report);
    if !note.is_empty() {
        t += "\n";
        for l in note.lines() {
            t += &format!("{}\n\n", l.replacen('~', "\\~", 1));
        }
    }
    if !report.peers.is_empty() {
        t += "\n## Ours against the peers (ours / peer; below 1 is faster or smaller)\n\n";
        t += "| workload | ours | peer | startup | to exit | work | memory |\n| --- | --- | --- | ---: | ---: | ---: | ---: |\n";
        for p in &report.peers {
            t += &format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                p.workload,
                p.ours.name(),
                p.peer.name(),
                cell(p.startup_ratio, &fmt_ratio),
                cell(p.total_ratio, &fmt_ratio),
                cell(p.inside_ratio.filter(|_| p.workload != "ready"), &fmt_ratio),
                cell(p.memory_ratio, &fmt_ratio)
            );
        }
    }
    if !report.scale.is_empty() {
        t += "\n## Many at once (`ready`, started together)\n\n";
        t += "| environment | instances | wall | instances/s | memory each |\n| --- | ---: | ---: | ---: | ---: |\n";
        for p in &report.scale {
            t += &format!(
                "| {} | {} | {} | {:.1} | {} |\n",
                p.env.name(),
                p.instances,
                fmt_us(p.wall_us),
                p.per_second,
                p.memory_per_instance_bytes.map(fmt_mib).unwrap_or_else(|| "-".into())
            );
        }
        t += &format!("\n{SCALE_MEMORY_NOTE}.\n");
    }
    if !report.skipped.is_empty() {
        t += "\n## Left out\n\n";
        for s in &report.skipped {
            t += &format!("- {}: {}\n", s.env.name(), s.reason);
        }
    }
    t += "\n## Published anchors (other machines, for scale)\n\n| figure | published |\n| --- | --- |\n";
    for (what, value) in ANCHORS {
        t += &format!("| {what} | {value} |\n");
    }
    t += "\n## What the run says about the course notes\n\n";
    for c in &report.claims {
        t += &format!("- **{}**: {}.\n", c.claim, c.measured);
    }
    t
}

/// One CSV line per measured run, for students' own plots.
pub fn csv(report: &CompareReport) -> String {
    let mut t = String::from(
        "env,workload,run,startup_us,total_us,inside_ns,exit_status,vm_exits,console_exits,syscalls_fast,syscalls_trapped,memory_bytes,memory_method\n",
    );
    let opt = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
    let opt_u = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
    for s in &report.samples {
        t += &format!(
            "{},{},{},{},{:.3},{},{},{},{},{},{},{},{}\n",
            s.env.name(),
            s.workload,
            s.run,
            opt(s.startup_us),
            s.total_us,
            opt(s.inside_ns),
            s.exit_status,
            opt_u(s.vm_exits),
            opt_u(s.console_exits),
            opt_u(s.syscalls_fast),
            opt_u(s.syscalls_trapped),
            opt_u(s.memory_bytes),
            s.memory_method.map(MemoryMethod::name).unwrap_or_default(),
        );
    }
    t
}

/// Phases of the first run of each environment on `workload`, for the
/// timeline chart: (environment, [(phase, at µs)]).
pub fn timelines(samples: &[Sample], workload: &str) -> Vec<(Env, Vec<(String, f64)>)> {
    let mut seen = BTreeMap::new();
    for s in samples.iter().filter(|s| s.workload == workload) {
        seen.entry(s.env).or_insert_with(|| s.phases.iter().map(|p| (p.name.clone(), p.at_us)).collect());
    }
    seen.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(env: Env, workload: &str, startup: f64, inside: f64, total: f64) -> Sample {
        Sample {
            env,
            workload: workload.into(),
            run: 0,
            startup_us: Some(startup),
            total_us: total,
            inside_ns: Some(inside),
            pid: Some(if env == Env::Native { 4242 } else { 1 }),
            exit_status: 0,
            phases: vec![crate::env::Phase { name: "ready".into(), at_us: startup }],
            vm_exits: env.is_vm().then_some(100),
            console_exits: env.is_vm().then_some(if env == Env::VmMiniPv { 4 } else { 4200 }),
            syscalls_fast: env.is_vm().then_some(0),
            syscalls_trapped: env.is_vm().then_some(10),
            memory_bytes: Some(if env.is_vm() { 3 << 20 } else { 512 << 10 }),
            memory_method: Some(if env == Env::VmLinux { MemoryMethod::Estimate } else { MemoryMethod::CgroupPeak }),
            result: BTreeMap::new(),
            host_fixups: None,
        }
    }

    fn recorded() -> Vec<Sample> {
        let mut v = Vec::new();
        for (e, k) in [(Env::Native, 1.0), (Env::Container, 2.0), (Env::VmMiniUart, 10.0), (Env::VmMiniPv, 9.0)] {
            for run in 0..3 {
                let jitter = run as f64;
                v.push(sample(e, "ready", 500.0 * k + jitter, 0.0, 600.0 * k));
                v.push(sample(e, "cpu", 500.0 * k, 1e6 * if e.is_vm() { 1.02 } else { 1.0 }, 2000.0 * k));
                v.push(sample(e, "io", 500.0 * k, if e == Env::VmMiniUart { 4e8 } else { 1e6 }, 2000.0 * k));
                v.push(sample(e, "syscall", 500.0 * k, if e.is_vm() { 1e8 } else { 2e5 }, 2000.0 * k));
            }
        }
        v
    }

    fn host() -> HostInfo {
        HostInfo {
            kernel: "6.1.0".into(),
            cpu: "test".into(),
            cpus: 2,
            memory_mib: 1024,
            kvm: Ok(()),
            ring0: None,
            syscall_reaches_ring0: Some(false),
            virt_mode: VirtMode::HardwareAssisted,
            cgroup_mode: Some("v2".into()),
            root: true,
        }
    }

    fn workloads() -> Vec<Workload> {
        Workload::parse_list("ready,cpu,io,syscall", false).unwrap()
    }

    #[test]
    fn rows_hold_medians_and_ratios_against_native() {
        let envs = Env::parse_list("native,container,vm-mini").unwrap();
        let rows = rows(&recorded(), &envs, &workloads());
        assert_eq!(rows.len(), 16);
        let r = find(&rows, Env::Container, "ready").unwrap();
        assert_eq!(r.startup_us.unwrap().median, 1001.0);
        assert!((r.startup_ratio.unwrap() - 1001.0 / 501.0).abs() < 1e-9);
        let cpu = find(&rows, Env::VmMiniPv, "cpu").unwrap();
        assert!((cpu.inside_ratio.unwrap() - 1.02).abs() < 1e-9);
        let io = find(&rows, Env::VmMiniUart, "io").unwrap();
        assert_eq!(io.console_exits_per_kib, Some(4200.0 / 16.0));
        assert_eq!(find(&rows, Env::VmMiniPv, "ready").unwrap().syscalls_trapped_share, Some(1.0));
        assert_eq!(find(&rows, Env::Native, "ready").unwrap().pid, Some(4242));
    }

    #[test]
    fn claims_are_drawn_from_the_numbers() {
        let envs = Env::parse_list("native,container,vm-mini").unwrap();
        let rows = rows(&recorded(), &envs, &workloads());
        let c = claims(&rows, &host());
        assert_eq!(c.len(), 6);
        assert!(c[0].measured.contains("4.50x as long"), "{}", c[0].measured);
        assert!(c[1].measured.contains("1.02x"), "{}", c[1].measured);
        assert!(c[2].measured.contains("500x") && c[2].measured.contains("trapped"), "{}", c[2].measured);
        assert!(c[3].measured.contains("262 VM exits per KiB"), "{}", c[3].measured);
        assert!(c[4].measured.contains("512 KiB") && c[4].measured.contains("3.0 MiB"), "{}", c[4].measured);
        assert!(c[5].measured.contains("PID 4242") && c[5].measured.contains("6.1.0"), "{}", c[5].measured);
    }

    #[test]
    fn missing_environments_are_said_not_guessed() {
        let natives: Vec<Sample> = recorded().into_iter().filter(|s| s.env == Env::Native).collect();
        let rows = rows(&natives, &[Env::Native], &workloads());
        for c in claims(&rows, &host()) {
            assert!(c.measured.starts_with("not measured"), "{}: {}", c.claim, c.measured);
        }
    }

    #[test]
    fn peers_pair_with_ours_including_the_linux_guest() {
        let mut samples = recorded();
        for (e, startup, mem) in [
            (Env::VmLinux, 90e6, 40u64 << 20),
            (Env::QemuTcgLinux, 2.4e6, 48 << 20),
            (Env::QemuMicrovm, 120e3, 20 << 20),
        ] {
            let mut s = sample(e, "ready", startup, 0.0, startup * 1.01);
            s.memory_bytes = Some(mem);
            samples.push(s);
        }
        let envs = Env::parse_list("native,container,vm-mini,vm-linux,qemu-microvm,qemu-tcg-linux").unwrap();
        let rows = rows(&samples, &envs, &workloads());
        assert_eq!(find(&rows, Env::VmLinux, "ready").unwrap().memory_method, Some(MemoryMethod::Estimate));
        let peers = peer_ratios(&rows);
        let linux = peers.iter().find(|p| p.ours == Env::VmLinux && p.peer == Env::QemuTcgLinux).unwrap();
        assert!((linux.startup_ratio.unwrap() - 37.5).abs() < 1e-9);
        assert_eq!(linux.memory_ratio, None, "an estimate is not set against a cgroup peak");
        let mini = peers.iter().find(|p| p.ours == Env::VmMiniPv && p.peer == Env::QemuMicrovm).unwrap();
        assert!((mini.memory_ratio.unwrap() - 3.0 / 20.0).abs() < 1e-9);

        let mut h = host();
        h.virt_mode = VirtMode::NestedEmulated;
        let report = CompareReport {
            schema: SCHEMA,
            virtlab_version: "test",
            started_unix: 0,
            wall_seconds: 1.0,
            host: h,
            config: RunConfig { runs: 3, warmup: 1, envs: envs.clone(), workloads: workloads(), order: "x".into() },
            skipped: vec![Skipped {
                env: Env::QemuMicrovmLinux,
                reason: crate::peers::emulation_failure_reason(
                    "KVM internal error. Suberror: 1\nemulation failure\n",
                    std::time::Duration::from_secs(5),
                ),
            }],
            failures: vec![],
            claims: claims(&rows, &host()),
            rows,
            samples,
            scale: vec![],
            peers,
            vmm_overhead_bytes: Some(2 << 20),
        };
        let text = text(&report);
        assert_eq!(text.matches("Note: on this nested host QEMU's software emulation").count(), 1, "{text}");
        assert!(text.contains("reached its workload in 2.40 s under TCG and in 90.00 s"), "{text}");
        assert!(text.contains("QEMU with KVM could not boot that guest at all"), "{text}");
        assert!(text.contains("~40.0 MiB") && text.contains("~ memory of vm-linux is an ESTIMATE"), "{text}");
        assert!(text.contains("VMM memory, ours / QEMU") && text.contains("0.15x"), "{text}");
        assert!(text.contains("The VMM process's own memory: 2.0 MiB"), "{text}");
        // The legend sits right under the table, the rest after the claims.
        let legend = text.find("~ memory of vm-linux").unwrap();
        assert!(legend < text.find("What this run shows").unwrap());
        assert!(text.find("memory per instance: the peak").unwrap() > text.find("containers isolate less").unwrap());
        let mut without_ours = report.clone();
        without_ours.rows.retain(|r| r.env != Env::VmLinux);
        let note = tcg_note(&without_ours);
        assert!(note.contains("under TCG it reached its workload in 2.40 s; add vm-linux"), "{note}");
        without_ours.host.virt_mode = VirtMode::HardwareAssisted;
        assert_eq!(tcg_note(&without_ours), "", "only nested hosts get the note");
        let md = markdown(&report, "virtlab compare --peers");
        assert!(md.contains("| ready | vm-mini-pv | qemu-microvm |") && md.contains("| 0.15x |"), "{md}");
        assert!(md.contains("\\~ memory of vm-linux"), "{md}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["rows"][0]["memory_method"], "cgroup-peak");
        assert!(csv(&report).lines().next().unwrap().ends_with(",memory_method"));
    }

    #[test]
    fn the_estimate_legend_names_each_environment_once() {
        // Not root: the minikernel VMs keep their estimate too, so vm-linux
        // is not the only estimated row, and every workload has a row of each.
        let mut samples = Vec::new();
        for w in ["ready", "cpu", "io"] {
            for e in [Env::Native, Env::VmMiniUart, Env::VmMiniPv, Env::VmLinux] {
                let mut s = sample(e, w, 1000.0, 0.0, 2000.0);
                s.memory_method = e.is_vm().then_some(MemoryMethod::Estimate);
                s.memory_bytes = e.is_vm().then_some(3 << 20);
                samples.push(s);
            }
        }
        let envs = Env::parse_list("native,vm-mini,vm-linux").unwrap();
        let wl = Workload::parse_list("ready,cpu,io", false).unwrap();
        let mut h = host();
        h.root = false;
        let report = CompareReport {
            schema: SCHEMA,
            virtlab_version: "test",
            started_unix: 0,
            wall_seconds: 1.0,
            host: h,
            config: RunConfig { runs: 1, warmup: 0, envs: envs.clone(), workloads: wl.clone(), order: "x".into() },
            skipped: vec![],
            failures: vec![],
            rows: rows(&samples, &envs, &wl),
            claims: vec![],
            samples,
            scale: vec![],
            peers: vec![],
            vmm_overhead_bytes: Some(2 << 20),
        };
        let legend = estimate_legend(&report);
        assert!(legend.starts_with("~ memory of vm-mini-uart, vm-mini-pv, vm-linux is an ESTIMATE"), "{legend}");
        for name in ["vm-mini-uart", "vm-mini-pv", "vm-linux"] {
            assert_eq!(legend.matches(name).count(), 1, "{name} repeated: {legend}");
        }
        // The same legend under the Markdown table.
        let md = markdown(&report, "virtlab compare");
        assert_eq!(md.matches("vm-mini-uart, vm-mini-pv, vm-linux is an ESTIMATE").count(), 1, "{md}");
        assert!(!md.contains("vm-linux, vm-mini-uart"), "{md}");
    }

    #[test]
    fn csv_has_a_line_per_run() {
        let samples = recorded();
        let envs = Env::parse_list("native,container,vm-mini").unwrap();
        let report = CompareReport {
            schema: SCHEMA,
            virtlab_version: "test",
            started_unix: 0,
            wall_seconds: 1.0,
            host: host(),
            config: RunConfig { runs: 3, warmup: 1, envs: envs.clone(), workloads: workloads(), order: "x".into() },
            skipped: vec![],
            failures: vec![],
            rows: rows(&samples, &envs, &workloads()),
            claims: vec![],
            samples: samples.clone(),
            scale: vec![],
            peers: vec![],
            vmm_overhead_bytes: Some(2 << 20),
        };
        let csv = csv(&report);
        assert_eq!(csv.lines().count(), 1 + samples.len());
        let header_cols = csv.lines().next().unwrap().split(',').count();
        assert!(csv.lines().all(|l| l.split(',').count() == header_cols));
        let text = text(&report);
        assert!(text.contains("vm-mini-pv") && text.contains("claims"), "{text}");
        let md = markdown(&report, "virtlab compare --test");
        assert!(md.contains("`virtlab compare --test`") && md.contains("Firecracker"), "{md}");
        let table_rows = md.lines().filter(|l| l.starts_with("| ready |") || l.starts_with("| cpu |")).count();
        assert_eq!(table_rows, 8, "{md}");
    }
}
