//! The VMM's sandbox, as Firecracker builds it: once the VM is set up
//! (memory mapped, kernel loaded, vCPU created), every thread that serves
//! the guest installs its own seccomp filter, a short allowlist of the
//! system calls (and for `ioctl`, the KVM requests) it needs from then on.
//!
//! A guest reaches the host only through its VM exits, and the VMM serves
//! those in the vCPU thread: with the filter on, whatever a guest makes the
//! VMM do (even through a bug in a device) stays within 16 calls, not the
//! host's whole table. A call outside the list is stopped with SIGSYS;
//! the handler ([`sigsys`]) writes one line naming the call and the thread,
//! and the process exits with [`SECCOMP_EXIT_STATUS`].
//!
//! The threads (see [`ThreadKind`]): the vCPU thread runs the exit loop
//! (the timeout is a kernel timer that signals it: no thread); the UART
//! kicker and the stdin reader each enter their filter first thing, and
//! the thread that starts them waits until they have, so no helper runs
//! unfiltered while the guest does. The caller's thread, which set the VM
//! up and tears it down afterwards, runs no guest code and handles no exit;
//! it is not filtered (see `DESIGN.md`).
//!
//! Filters are per thread (no `SECCOMP_FILTER_FLAG_TSYNC`): each thread
//! gets only its own list. `--no-seccomp` (the configs' `seccomp: false`)
//! runs without them, for debugging.

pub mod names;
pub mod rules;
mod sigsys;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::thread::JoinHandle;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};
use serde::Serialize;

pub use rules::{Check, ConsoleFd, Plan, Rule, ThreadKind};
pub(crate) use sigsys::remember_tty;
pub use sigsys::SECCOMP_EXIT_STATUS;

/// The test hook: with this variable set in its environment, the vCPU
/// thread makes one forbidden call (`socket(2)`) right after its filter
/// goes on, so a test can see the VMM stopped with a clear report. It does
/// nothing else, and nothing at all with `--no-seccomp`.
pub const TEST_HOOK_ENV: &str = "VIRTLAB_SECCOMP_TEST_HOOK";

/// What keeps the sandbox from being set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A rule could not be turned into BPF.
    #[error("cannot compile the seccomp filter of thread {0}")]
    Compile(&'static str, #[source] seccompiler::BackendError),
    /// The kernel refused the filter (no seccomp support?).
    #[error("cannot install the seccomp filter of thread {0} (a kernel without CONFIG_SECCOMP_FILTER? run with --no-seccomp)")]
    Install(&'static str, #[source] seccompiler::Error),
    /// A helper thread could not start.
    #[error("cannot start thread {0}")]
    Spawn(&'static str, #[source] std::io::Error),
}

/// One thread's filter, as the report and `--explain` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadFilter {
    /// The thread's name.
    pub thread: &'static str,
    /// Its allowed calls: name, argument check (empty: any), why.
    pub syscalls: Vec<AllowedCall>,
}

/// One allowed system call in the report.
#[derive(Debug, Clone, Serialize)]
pub struct AllowedCall {
    /// The call.
    pub name: &'static str,
    /// The arguments allowed, in words (empty: any).
    pub only: String,
    /// What the thread needs it for.
    pub why: &'static str,
}

/// The sandbox of a run, for the report: what each thread may call.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxReport {
    /// Each filtered thread.
    pub threads: Vec<ThreadFilter>,
    /// Distinct system calls allowed to any of them.
    pub allowed_syscalls: usize,
    /// The `ioctl` requests allowed on KVM's fds.
    pub kvm_ioctls: usize,
    /// The host's system calls on this architecture, for scale.
    pub host_syscalls: usize,
}

impl SandboxReport {
    /// What the filters of `threads` allow in a run planned as `plan`.
    pub fn of(plan: &Plan, threads: &[ThreadKind]) -> SandboxReport {
        let mut filters = Vec::new();
        let mut all = BTreeSet::new();
        let mut kvm_ioctls = 0;
        for &kind in threads {
            let rules = rules::rules(kind, plan);
            all.extend(rules.iter().map(|r| r.name));
            for r in &rules {
                if let Check::Requests { fd, requests } = &r.check {
                    if *fd == plan.vcpu_fd {
                        kvm_ioctls += requests.len();
                    }
                }
            }
            filters.push(ThreadFilter {
                thread: kind.name(),
                syscalls: rules
                    .iter()
                    .map(|r| AllowedCall { name: r.name, only: r.check.describe(), why: r.why })
                    .collect(),
            });
        }
        SandboxReport {
            threads: filters,
            allowed_syscalls: all.len(),
            kvm_ioctls,
            host_syscalls: names::SYSCALLS.len(),
        }
    }

    /// What `virtlab vm run` allows by default (no `--interactive`),
    /// without running a VM: the minikernel's run, or with `linux` a Linux
    /// guest's. The fds in the lists are placeholders.
    pub fn of_default_run(linux: bool) -> SandboxReport {
        let plan = Plan {
            vcpu_fd: 3,
            console: ConsoleFd::Fd(1),
            timeout: true,
            fixups: linux,
            irq_fd: linux.then_some(4),
            interactive: false,
        };
        let mut threads = vec![ThreadKind::Vcpu];
        if linux {
            threads.push(ThreadKind::UartKicker);
        }
        SandboxReport::of(&plan, &threads)
    }

    /// The lists, as `--explain` prints them.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "sandbox: from here on each VMM thread runs under its own seccomp filter: {} distinct system calls of \
             the host's {} (ioctl only with {} KVM request(s) on the vCPU fd); any other call stops the VMM with \
             a report (SIGSYS).",
            self.allowed_syscalls, self.host_syscalls, self.kvm_ioctls
        );
        for t in &self.threads {
            s += &format!("\n     {} ({} calls):", t.thread, t.syscalls.len());
            for c in &t.syscalls {
                let only = if c.only.is_empty() { String::new() } else { format!(" [{}]", c.only) };
                s += &format!("\n       {:<15}{only} {}", c.name, c.why);
            }
        }
        s
    }
}

/// The compiled filters of a run and their description.
#[derive(Debug, Clone)]
pub struct Sandbox {
    programs: BTreeMap<ThreadKind, Arc<BpfProgram>>,
    report: SandboxReport,
    test_hook: bool,
}

impl Sandbox {
    /// Compiles the filters of `threads` for a run planned as `plan`.
    pub fn new(plan: &Plan, threads: &[ThreadKind]) -> Result<Sandbox, SandboxError> {
        let mut programs = BTreeMap::new();
        for &kind in threads {
            programs.insert(kind, Arc::new(compile(kind, &rules::rules(kind, plan))?));
        }
        let report = SandboxReport::of(plan, threads);
        Ok(Sandbox { programs, report, test_hook: std::env::var_os(TEST_HOOK_ENV).is_some() })
    }

    /// The sandbox of a run when `on` (None for `--no-seccomp`): the vCPU
    /// thread and `helpers`.
    pub(crate) fn planned(on: bool, plan: &Plan, helpers: &[ThreadKind]) -> Result<Option<Sandbox>, SandboxError> {
        if !on {
            return Ok(None);
        }
        let mut threads = vec![ThreadKind::Vcpu];
        threads.extend(helpers);
        Sandbox::new(plan, &threads).map(Some)
    }

    /// What the filters allow.
    pub fn report(&self) -> &SandboxReport {
        &self.report
    }

    /// Puts the calling thread under the filter of `kind` (for good: a
    /// seccomp filter cannot be taken off). A thread not planned for runs
    /// unfiltered.
    pub fn enter(&self, kind: ThreadKind) -> Result<(), SandboxError> {
        enter(kind, self.programs.get(&kind).map(|p| p.as_slice()))?;
        if kind == ThreadKind::Vcpu && self.test_hook {
            forbidden_call();
        }
        Ok(())
    }

    /// Starts a helper thread named after `kind` that enters its filter
    /// before it runs `f`; returns once the filter is on.
    pub(crate) fn spawn(
        sandbox: Option<&Sandbox>,
        kind: ThreadKind,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<JoinHandle<()>, SandboxError> {
        let program = sandbox.and_then(|s| s.programs.get(&kind).cloned());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name(kind.name().into())
            .spawn(move || {
                let entered = enter(kind, program.as_deref().map(|p| p.as_slice()));
                let ok = entered.is_ok();
                // The spawner waits for this: nothing runs unfiltered.
                let _ = tx.send(entered);
                if ok {
                    f();
                }
            })
            .map_err(|e| SandboxError::Spawn(kind.name(), e))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => {
                let _ = handle.join();
                Err(e)
            }
            Err(_) => {
                let _ = handle.join();
                let why = std::io::Error::other("the thread ended before its filter was on");
                Err(SandboxError::Spawn(kind.name(), why))
            }
        }
    }
}

/// Installs `program` (if any) on the calling thread, which is `kind`.
fn enter(kind: ThreadKind, program: Option<&[seccompiler::sock_filter]>) -> Result<(), SandboxError> {
    let Some(program) = program else { return Ok(()) };
    sigsys::install(kind.name());
    seccompiler::apply_filter(program).map_err(|e| SandboxError::Install(kind.name(), e))
}

/// The test hook's forbidden call: a network socket, which no VMM thread
/// needs (closed at once, should the filter let it through).
fn forbidden_call() {
    // SAFETY: socket(2) takes no pointers; the fd, if any, is closed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

/// Turns `rules` into a BPF program: allowed calls pass, every other call
/// traps (SIGSYS).
fn compile(kind: ThreadKind, rules: &[Rule]) -> Result<BpfProgram, SandboxError> {
    let err = |e| SandboxError::Compile(kind.name(), e);
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut unconditional = BTreeSet::new();
    for r in rules {
        let nr = names::number(r.name).unwrap_or_else(|| panic!("{} is not an x86_64 system call", r.name));
        let conditions: Vec<Vec<SeccompCondition>> = match &r.check {
            Check::Any => {
                unconditional.insert(nr);
                Vec::new()
            }
            Check::Fds(fds) => fds.iter().map(|&fd| vec![dword(0, SeccompCmpOp::Eq, fd as u64)]).collect(),
            Check::Requests { fd, requests } => requests
                .iter()
                .map(|&(_, req)| vec![dword(0, SeccompCmpOp::Eq, *fd as u64), dword(1, SeccompCmpOp::Eq, req)])
                .collect(),
            Check::NoExec => vec![vec![dword(2, SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64), 0)]],
        };
        let entry = map.entry(nr).or_default();
        for c in conditions {
            entry.push(SeccompRule::new(c).map_err(err)?);
        }
    }
    // An unconditional call matches whatever its other rules say.
    for nr in unconditional {
        map.insert(nr, Vec::new());
    }
    let filter = SeccompFilter::new(map, SeccompAction::Trap, SeccompAction::Allow, seccompiler::TargetArch::x86_64)
        .map_err(err)?;
    BpfProgram::try_from(filter).map_err(err)
}

fn dword(arg: u8, op: SeccompCmpOp, value: u64) -> SeccompCondition {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).expect("argument index below 6")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan { vcpu_fd: 9, console: ConsoleFd::Fd(1), timeout: true, fixups: true, irq_fd: Some(11), interactive: true }
    }

    #[test]
    fn every_thread_filter_compiles() {
        let all = [ThreadKind::Vcpu, ThreadKind::UartKicker, ThreadKind::Stdin];
        let s = Sandbox::new(&plan(), &all).unwrap();
        assert_eq!(s.programs.len(), 3);
        let r = s.report();
        assert_eq!(r.threads.len(), 3);
        assert_eq!(r.kvm_ioctls, 9);
        assert!(r.allowed_syscalls < 30, "{}", r.allowed_syscalls);
        assert!(r.host_syscalls > 300);
        let text = r.describe();
        assert!(text.contains("virtlab-vcpu0") && text.contains("KVM_RUN"), "{text}");
    }

    #[test]
    fn the_default_runs_figures_without_a_vm() {
        let mini = SandboxReport::of_default_run(false);
        assert_eq!((mini.allowed_syscalls, mini.kvm_ioctls), (16, 1));
        let linux = SandboxReport::of_default_run(true);
        assert_eq!((linux.allowed_syscalls, linux.kvm_ioctls), (16, 9));
        assert_eq!(linux.threads.len(), 2);
    }

    #[test]
    fn a_filtered_thread_keeps_its_calls_and_loses_the_rest() {
        // Run in a thread of its own: a filter cannot be taken off.
        let plan = Plan {
            vcpu_fd: 0,
            console: ConsoleFd::Nowhere,
            timeout: false,
            fixups: false,
            irq_fd: None,
            interactive: false,
        };
        let s = Sandbox::new(&plan, &[ThreadKind::UartKicker]).unwrap();
        let t = Sandbox::spawn(Some(&s), ThreadKind::UartKicker, || {
            // Waiting, waking and the thread's end are all it needs.
            std::thread::park_timeout(std::time::Duration::from_millis(1));
        })
        .unwrap();
        t.join().unwrap();
        assert_eq!(s.report().threads[0].thread, "virtlab-uart-kick");
    }
}
