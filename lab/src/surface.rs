//! What each environment exposes: "containers isolate less", counted.
//!
//! A container's process talks to the host's own kernel: every x86_64
//! system call the kernel has, minus what the seccomp filter answers with
//! an error. The count here is computed by running the filter's BPF program
//! ([`virtlab_container::seccomp::default_program`]) over every call number,
//! as the kernel would. A VM guest's kernel talks to the VMM only through
//! VM exits: the count of exit reasons the VMM's dispatch handles and of the
//! port devices on its bus is handed in by the caller (the `virtlab` CLI
//! reads it from the VMM crate).

use virtlab_container::seccomp::{self, sock_filter};

/// The answers of a filter over the call numbers the kernel knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FilterCount {
    /// x86_64 call numbers the kernel knows ([`seccomp::is_known`]).
    pub known: usize,
    /// Allowed (for `clone`/`unshare`: allowed without namespace flags).
    pub allowed: usize,
    /// Answered with an errno (`EPERM` or `ENOSYS`).
    pub denied: usize,
    /// Allowed only with some arguments (`clone`, `unshare`).
    pub checked: usize,
}

/// Counts what `program` answers for every known x86_64 call number.
pub fn count(program: &[sock_filter]) -> FilterCount {
    let mut c = FilterCount { known: 0, allowed: 0, denied: 0, checked: 0 };
    for nr in 0..=seccomp::LAST_KNOWN {
        if !seccomp::is_known(nr) {
            continue;
        }
        c.known += 1;
        let plain = eval(program, nr as u32, 0);
        let with_ns = eval(program, nr as u32, libc::CLONE_NEWUSER as u64);
        match (plain == Some(libc::SECCOMP_RET_ALLOW), with_ns == Some(libc::SECCOMP_RET_ALLOW)) {
            (true, true) => c.allowed += 1,
            (true, false) => {
                c.allowed += 1;
                c.checked += 1;
            }
            _ => c.denied += 1,
        }
    }
    c
}

/// Counts the default filter's answers.
pub fn default_filter() -> Option<FilterCount> {
    seccomp::default_program().ok().map(count)
}

/// Runs a classic BPF seccomp program on one x86_64 call (arguments other
/// than the first are zero); `None` if it uses an instruction this small
/// interpreter does not know.
pub fn eval(p: &[sock_filter], nr: u32, arg0: u64) -> Option<u32> {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    let mut acc = 0u32;
    let mut pc = 0usize;
    for _ in 0..=p.len() {
        let op = *p.get(pc)?;
        pc += 1;
        let skip = |taken: bool| usize::from(if taken { op.jt } else { op.jf });
        match op.code {
            // BPF_LD | BPF_W | BPF_ABS: a word of struct seccomp_data.
            0x20 => {
                acc = match op.k {
                    0 => nr,
                    4 => AUDIT_ARCH_X86_64,
                    16 => arg0 as u32,
                    20 => (arg0 >> 32) as u32,
                    _ => 0,
                }
            }
            0x15 => pc += skip(acc == op.k),
            0x25 => pc += skip(acc > op.k),
            0x35 => pc += skip(acc >= op.k),
            0x45 => pc += skip(acc & op.k != 0),
            0x05 => pc += op.k as usize,
            0x06 => return Some(op.k),
            _ => return None,
        }
    }
    None
}

/// One row of the exposure table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exposure {
    /// The environment.
    pub environment: &'static str,
    /// What its code runs against.
    pub kernel: &'static str,
    /// The number of entry points into what it shares with the host.
    pub entry_points: usize,
    /// What those are.
    pub entry_points_are: String,
    /// Host interfaces it can reach.
    pub host_interfaces: &'static str,
}

/// What the VMM hands the guest: its exit reasons and port devices.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VmmSurface {
    /// Exit reasons the dispatch handles.
    pub exit_reasons: Vec<&'static str>,
    /// Port devices on the Linux guest's bus, with their port counts.
    pub devices: Vec<(&'static str, u16)>,
    /// System calls the VMM's own seccomp filters let its threads make
    /// while a Linux guest runs.
    pub vmm_syscalls: usize,
    /// Of the `ioctl` requests, those allowed on KVM's fds.
    pub vmm_kvm_ioctls: usize,
}

/// The table: a native process, a container (with and without the
/// filter), a virtlab VM.
pub fn table(vmm: &VmmSurface) -> Vec<Exposure> {
    let filter = default_filter();
    let known = filter.map_or(0, |f| f.known);
    let allowed = filter.map_or(0, |f| f.allowed);
    let denied = filter.map_or(0, |f| f.denied);
    let handlers = vmm.exit_reasons.len() + vmm.devices.len();
    vec![
        Exposure {
            environment: "native process",
            kernel: "the host kernel",
            entry_points: known,
            entry_points_are: format!("x86_64 system calls of the host kernel ({known})"),
            host_interfaces: "everything its uid may touch",
        },
        Exposure {
            environment: "container (seccomp=unconfined)",
            kernel: "the host kernel",
            entry_points: known,
            entry_points_are: format!("every host system call ({known}), namespaced where the kernel namespaces it"),
            host_interfaces: "host /proc and /sys (masked in part), keyrings, devices the allowlist lets through",
        },
        Exposure {
            environment: "container (virtlab default)",
            kernel: "the host kernel",
            entry_points: allowed,
            entry_points_are: format!("host system calls the filter allows ({allowed} of {known}; {denied} denied)"),
            host_interfaces: "the host kernel behind the allowed calls; /proc read-only or masked in part",
        },
        Exposure {
            environment: "virtlab VM (Linux guest)",
            kernel: "its own guest kernel",
            entry_points: handlers,
            entry_points_are: format!(
                "VMM exit handlers: {} exit reasons + {} port devices ({})",
                vmm.exit_reasons.len(),
                vmm.devices.len(),
                vmm.devices.iter().map(|d| d.0).collect::<Vec<_>>().join(", ")
            ),
            host_interfaces:
                "none directly: guest RAM and the VMM's devices; the host kernel only through KVM's ioctls",
        },
        Exposure {
            environment: "virtlab VMM process (its filter)",
            kernel: "the host kernel",
            entry_points: vmm.vmm_syscalls,
            entry_points_are: format!(
                "host system calls the VMM's threads may make while the guest runs ({} of {known}; ioctl: {} KVM requests)",
                vmm.vmm_syscalls, vmm.vmm_kvm_ioctls
            ),
            host_interfaces: "its console, /dev/kvm's fds; what a guest that broke out of KVM would find",
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_denies_what_its_list_says() {
        let c = default_filter().expect("the filter compiles");
        // Denied: the EPERM list, clone3 (ENOSYS).
        assert_eq!(c.denied, seccomp::DENIED.len() + 1, "{c:?}");
        assert_eq!(c.allowed + c.denied, c.known);
        assert_eq!(c.checked, 2, "clone and unshare: {c:?}");
        assert!(c.known > 350, "{c:?}");
    }
}
