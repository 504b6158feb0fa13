//! The sentences under the table: one per claim of the course notes, from
//! what this run measured. A claim with nothing measured says so.

use serde::{Deserialize, Serialize};

use super::{find, fmt_mib, fmt_ratio, fmt_us, med, Row};
use crate::host::{HostInfo, VirtMode};
use crate::launch::{Env, MemoryMethod};

/// A claim of the notes and what this run measured about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    /// The claim, as the notes make it: one of [`STARTUP`], [`OVERHEAD`],
    /// [`SYSTEM_CALLS`], [`PARAVIRTUALIZATION`], [`MEMORY`], [`ISOLATION`].
    pub claim: String,
    /// What was measured, in plain words.
    pub measured: String,
}

/// The first claim: startup.
pub const STARTUP: &str = "containers start fast, VMs must boot an OS";
/// The second claim: CPU overhead.
pub const OVERHEAD: &str = "hypervisors have little overhead";
/// The third claim: system calls.
pub const SYSTEM_CALLS: &str = "an OS on an OS costs more";
/// The fourth claim: para- against full virtualization.
pub const PARAVIRTUALIZATION: &str = "para-virtualization beats full virtualization";
/// The fifth claim: memory.
pub const MEMORY: &str = "containers waste fewer resources";
/// The sixth claim: isolation.
pub const ISOLATION: &str = "containers isolate less";

/// The sentences under the table: one per claim of the notes, from what
/// this run measured. A claim with nothing measured says so.
pub fn claims(rows: &[Row], host: &HostInfo) -> Vec<Claim> {
    let nested = host.virt_mode == VirtMode::NestedEmulated;
    vec![
        startup(rows, nested),
        cpu_overhead(rows),
        system_calls(rows, nested),
        paravirtualization(rows),
        memory(rows),
        isolation(rows, host),
    ]
}

/// The first claim, startup: the time to the ready line in a container,
/// in the minikernel VM, natively and in a Linux guest.
fn startup(rows: &[Row], nested: bool) -> Claim {
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
    Claim { claim: STARTUP.into(), measured }
}

/// The second claim, CPU overhead: the same loop's own time in a VM and
/// in a container, against native.
fn cpu_overhead(rows: &[Row]) -> Claim {
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
    Claim { claim: OVERHEAD.into(), measured }
}

/// The third claim, system calls: one call's cost in the VM (and how it
/// reached the guest kernel) against native, and the VM exits behind it.
fn system_calls(rows: &[Row], nested: bool) -> Claim {
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
    Claim { claim: SYSTEM_CALLS.into(), measured }
}

/// The fourth claim, para- against full virtualization: the same console
/// output through the emulated UART and through the paravirtual port.
fn paravirtualization(rows: &[Row]) -> Claim {
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
    Claim { claim: PARAVIRTUALIZATION.into(), measured }
}

/// The fifth claim, memory: host memory per instance, a container against
/// a VM (and QEMU).
fn memory(rows: &[Row]) -> Claim {
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
    Claim { claim: MEMORY.into(), measured }
}

/// The sixth claim, isolation: the PID the workload saw, and whose kernel
/// it ran on.
fn isolation(rows: &[Row], host: &HostInfo) -> Claim {
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
    Claim { claim: ISOLATION.into(), measured }
}
