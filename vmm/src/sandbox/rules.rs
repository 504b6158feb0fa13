//! Which system calls each VMM thread may make once the guest runs, and
//! why: plain data, compiled into seccomp filters by [`super::Sandbox`] and
//! printed by `--explain`.
//!
//! The lists were found by running every path (minikernel and Linux runs,
//! restores, timeouts, faults, `--json`, `--explain`) under `strace -f`
//! and keeping what each thread called after its filter went on. Anything
//! the guest can make the VMM do goes through these calls and no others.

use std::os::fd::RawFd;

use serde::Serialize;

/// A VMM thread that runs under its own filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThreadKind {
    /// Runs the guest: `KVM_RUN`, then every VM exit (the devices).
    Vcpu,
    /// Re-sends the UART's interrupt while it stays pending (Linux).
    UartKicker,
    /// Feeds standard input to the guest's UART (Linux, `--interactive`).
    Stdin,
}

impl ThreadKind {
    /// The thread's name (as `ps -L` and the seccomp report show it).
    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Vcpu => "virtlab-vcpu0",
            ThreadKind::UartKicker => "virtlab-uart-kick",
            ThreadKind::Stdin => "virtlab-stdin",
        }
    }
}

/// Where the guest's console goes, for the vCPU thread's `write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleFd {
    /// To this fd (standard output or error).
    Fd(RawFd),
    /// Nowhere outside the process (captured or discarded).
    Nowhere,
    /// To a writer of the caller's, whose fd the VMM does not know: `write`
    /// is not checked.
    Unknown,
}

/// What a run's filters need to know about it: the file descriptors the
/// threads may use and which of the VMM's jobs it has.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The vCPU's fd: the only fd the vCPU thread may `ioctl`.
    pub vcpu_fd: RawFd,
    /// Where the guest's console goes.
    pub console: ConsoleFd,
    /// The run has a timeout, or a snapshot at a time: a timer signals the
    /// vCPU thread (the snapshot's is deleted before the filter goes on,
    /// but a signal it queued may still arrive).
    pub timeout: bool,
    /// The Linux run's fix-ups (`KVM_EXIT_INTERNAL_ERROR` repaired with
    /// register, FPU and event ioctls); the minikernel needs `KVM_RUN` only.
    pub fixups: bool,
    /// The UART's interrupt line (an eventfd; Linux).
    pub irq_fd: Option<RawFd>,
    /// Standard input is a raw terminal (`--interactive`): the seccomp
    /// report puts its settings back (`ioctl(0, TCSETS)`) before exiting.
    pub interactive: bool,
}

/// A condition on a system call's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Any arguments.
    Any,
    /// The first argument (a file descriptor) is one of these.
    Fds(Vec<RawFd>),
    /// `ioctl` on this fd with one of these request numbers.
    Requests {
        /// The fd.
        fd: RawFd,
        /// Names and numbers.
        requests: Vec<(&'static str, u64)>,
    },
    /// `mmap` or `mprotect` without `PROT_EXEC` in the third argument: no
    /// new executable memory.
    NoExec,
}

impl Check {
    /// In words, for `--explain` and the report.
    pub fn describe(&self) -> String {
        match self {
            Check::Any => String::new(),
            Check::Fds(fds) => {
                let fds: Vec<String> = fds.iter().map(|f| f.to_string()).collect();
                format!("fd {}", fds.join(" or "))
            }
            Check::Requests { fd, requests } => {
                let names: Vec<&str> = requests.iter().map(|r| r.0).collect();
                format!("fd {fd}: {}", names.join(", "))
            }
            Check::NoExec => "without PROT_EXEC".into(),
        }
    }
}

/// One allowed system call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its name (`<asm/unistd_64.h>`).
    pub name: &'static str,
    /// What the thread needs it for.
    pub why: &'static str,
    /// The arguments it may have.
    pub check: Check,
}

fn rule(name: &'static str, why: &'static str) -> Rule {
    Rule { name, why, check: Check::Any }
}

fn rule_if(name: &'static str, why: &'static str, check: Check) -> Rule {
    Rule { name, why, check }
}

/// `ioctl` request numbers (`_IOC` in `<asm-generic/ioctl.h>`): direction,
/// size, type `KVMIO` (0xae), number.
const fn kvm_ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (0xae << 8) | nr
}
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;

/// `KVM_RUN`: enter the guest until the next VM exit.
pub const KVM_RUN: u64 = kvm_ioc(0, 0x80, 0);
const KVM_GET_REGS: u64 = kvm_ioc(IOC_READ, 0x81, size_of::<kvm_bindings::kvm_regs>());
const KVM_SET_REGS: u64 = kvm_ioc(IOC_WRITE, 0x82, size_of::<kvm_bindings::kvm_regs>());
const KVM_GET_SREGS: u64 = kvm_ioc(IOC_READ, 0x83, size_of::<kvm_bindings::kvm_sregs>());
const KVM_TRANSLATE: u64 = kvm_ioc(IOC_READ | IOC_WRITE, 0x85, size_of::<kvm_bindings::kvm_translation>());
const KVM_GET_FPU: u64 = kvm_ioc(IOC_READ, 0x8c, size_of::<kvm_bindings::kvm_fpu>());
const KVM_SET_FPU: u64 = kvm_ioc(IOC_WRITE, 0x8d, size_of::<kvm_bindings::kvm_fpu>());
const KVM_GET_VCPU_EVENTS: u64 = kvm_ioc(IOC_READ, 0x9f, size_of::<kvm_bindings::kvm_vcpu_events>());
const KVM_SET_VCPU_EVENTS: u64 = kvm_ioc(IOC_WRITE, 0xa0, size_of::<kvm_bindings::kvm_vcpu_events>());

/// What every filtered thread needs: to wait and wake, to end, and to
/// write the seccomp report if it is stopped.
fn common(rules: &mut Vec<Rule>) {
    rules.extend([
        rule("futex", "locks, condition variables, parking and joining threads"),
        rule("exit", "the thread's own end"),
        rule("rt_sigprocmask", "the thread's end blocks signals while it frees its stack (glibc)"),
        rule("munmap", "the thread's end unmaps its signal stack; the allocator gives memory back"),
        rule("madvise", "the thread's end gives its stack's pages back (MADV_DONTNEED)"),
        rule("sigaltstack", "the thread's end switches its signal stack off (Rust's runtime)"),
        rule("exit_group", "the seccomp report's _exit(2), when a call is stopped"),
    ]);
}

/// Adds `fds` to the `write` rule, making it if there is none.
fn write_to(rules: &mut Vec<Rule>, fds: &[RawFd], why: &'static str) {
    match rules.iter_mut().find(|r| r.name == "write") {
        Some(Rule { check: Check::Fds(have), .. }) => {
            have.extend(fds.iter().filter(|f| !have.contains(f)).collect::<Vec<_>>());
        }
        Some(_) => {}
        None => rules.push(rule_if("write", why, Check::Fds(fds.to_vec()))),
    }
}

/// The rules of thread `kind` in a run planned as `plan`.
pub fn rules(kind: ThreadKind, plan: &Plan) -> Vec<Rule> {
    let mut r = Vec::new();
    match kind {
        ThreadKind::Vcpu => {
            let mut requests = vec![("KVM_RUN", KVM_RUN)];
            if plan.fixups {
                requests.extend([
                    ("KVM_GET_REGS", KVM_GET_REGS),
                    ("KVM_SET_REGS", KVM_SET_REGS),
                    ("KVM_GET_SREGS", KVM_GET_SREGS),
                    ("KVM_TRANSLATE", KVM_TRANSLATE),
                    ("KVM_GET_FPU", KVM_GET_FPU),
                    ("KVM_SET_FPU", KVM_SET_FPU),
                    ("KVM_GET_VCPU_EVENTS", KVM_GET_VCPU_EVENTS),
                    ("KVM_SET_VCPU_EVENTS", KVM_SET_VCPU_EVENTS),
                ]);
            }
            let why = if plan.fixups {
                "run the guest (KVM_RUN); repair what the host's emulator gave up on (registers, FPU, an injected #BP)"
            } else {
                "run the guest until its next VM exit"
            };
            r.push(rule_if("ioctl", why, Check::Requests { fd: plan.vcpu_fd, requests }));
            let why = "the guest's console (stdout), the UART's interrupt (its eventfd), --explain (stderr)";
            match plan.console {
                ConsoleFd::Unknown => r.push(rule("write", "the guest's console (to the caller's writer, fd unknown), the UART's interrupt (its eventfd), --explain (stderr)")),
                ConsoleFd::Fd(fd) => write_to(&mut r, &[fd], why),
                ConsoleFd::Nowhere => {}
            }
            if let Some(fd) = plan.irq_fd {
                write_to(&mut r, &[fd], why);
            }
            r.extend([
                rule_if("mmap", "the allocator (console capture, exit counters), never executable", Check::NoExec),
                rule_if("mprotect", "the allocator growing a thread arena, never executable", Check::NoExec),
                rule("mremap", "the allocator growing a large buffer (captured console output)"),
                rule("brk", "the allocator"),
                rule("clock_gettime", "exit and milestone times, where the vDSO cannot read the clock"),
            ]);
            if plan.timeout {
                r.extend([
                    rule(
                        "rt_sigreturn",
                        "return from the timeout's (or a timed snapshot's) signal, which interrupts KVM_RUN",
                    ),
                    rule("timer_delete", "the timeout's timer is deleted when the loop ends"),
                ]);
            }
        }
        ThreadKind::UartKicker => {
            r.push(rule("clock_gettime", "its period, where the vDSO cannot read the clock"));
            if let Some(fd) = plan.irq_fd {
                write_to(&mut r, &[fd], "raise the UART's interrupt (its eventfd) again");
            }
        }
        ThreadKind::Stdin => {
            r.push(rule_if("read", "the keys typed on standard input", Check::Fds(vec![0])));
            if let Some(fd) = plan.irq_fd {
                write_to(&mut r, &[fd], "raise the UART's interrupt (its eventfd)");
            }
        }
    }
    // Every thread writes the seccomp report on stderr.
    write_to(&mut r, &[2], "the seccomp report on stderr (and, in the vCPU thread, --explain)");
    common(&mut r);
    if plan.interactive {
        let tcsets = ("TCSETS", libc::TCSETS);
        match r.iter_mut().find(|x| x.name == "ioctl") {
            Some(Rule { check: Check::Requests { .. }, .. }) | None => r.push(rule_if(
                "ioctl",
                "the seccomp report puts the terminal's settings back",
                Check::Requests { fd: 0, requests: vec![tcsets] },
            )),
            Some(_) => {}
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_request_numbers_match_the_kernel_headers() {
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_SET_REGS, 0x4090_ae82);
        assert_eq!(KVM_GET_SREGS, 0x8138_ae83);
        assert_eq!(KVM_TRANSLATE, 0xc018_ae85);
        assert_eq!(KVM_GET_FPU, 0x81a0_ae8c);
        assert_eq!(KVM_GET_VCPU_EVENTS, 0x8040_ae9f);
    }

    #[test]
    fn the_minikernel_vcpu_may_only_run_the_guest() {
        let plan = Plan {
            vcpu_fd: 9,
            console: ConsoleFd::Fd(1),
            timeout: true,
            fixups: false,
            irq_fd: None,
            interactive: false,
        };
        let r = rules(ThreadKind::Vcpu, &plan);
        let ioctls: Vec<&Rule> = r.iter().filter(|x| x.name == "ioctl").collect();
        assert_eq!(ioctls.len(), 1);
        assert_eq!(ioctls[0].check, Check::Requests { fd: 9, requests: vec![("KVM_RUN", KVM_RUN)] });
        let write = r.iter().find(|x| x.name == "write").expect("the vCPU writes");
        assert_eq!(write.check, Check::Fds(vec![1, 2]), "the console and --explain only");
        for forbidden in ["open", "openat", "execve", "socket", "connect", "clone", "fork", "ptrace", "kill"] {
            assert!(!r.iter().any(|x| x.name == forbidden), "{forbidden} must not be allowed");
        }
        // Every name is a real system call, said once.
        let mut names: Vec<&str> = r.iter().map(|x| x.name).collect();
        assert!(names.iter().all(|n| super::super::names::number(n).is_some()), "{names:?}");
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), r.len());
    }

    #[test]
    fn helper_threads_write_only_to_their_eventfd_and_stderr() {
        let plan = Plan {
            vcpu_fd: 9,
            console: ConsoleFd::Fd(1),
            timeout: true,
            fixups: true,
            irq_fd: Some(11),
            interactive: true,
        };
        let kicker = rules(ThreadKind::UartKicker, &plan);
        let write = kicker.iter().find(|x| x.name == "write").expect("the kicker writes");
        assert_eq!(write.check, Check::Fds(vec![11, 2]));
        let stdin = rules(ThreadKind::Stdin, &plan);
        assert!(stdin.iter().any(|x| x.name == "read" && x.check == Check::Fds(vec![0])));
        assert!(stdin.iter().any(|x| x.name == "ioctl" && x.check.describe().contains("TCSETS")));
        let vcpu = rules(ThreadKind::Vcpu, &plan);
        assert!(vcpu.iter().any(|x| x.name == "write" && x.check == Check::Fds(vec![1, 11, 2])));
        let unknown = Plan { console: ConsoleFd::Unknown, ..plan };
        assert!(rules(ThreadKind::Vcpu, &unknown).iter().any(|x| x.name == "write" && x.check == Check::Any));
    }
}
