//! The container's first process, from clone(2) to execve(2).
//!
//! Which process: the child of the launcher, PID 1 of the new PID namespace
//! when there is one. Which namespaces: all the new ones from clone (the
//! cgroup namespace comes a little later, see `plan.rs`). Which privilege:
//! in a user namespace, every capability but only over the namespaces it
//! owns, and no uid at all until the parent has written the maps; without
//! one, real root until the capability step.
//!
//! Everything here runs after clone in a copy of a possibly multi-threaded
//! launcher, so nothing allocates: strings were prepared by the parent,
//! numbers are formatted on the stack.

use std::os::fd::RawFd;

use nix::time::{clock_gettime, ClockId};

use crate::runtime::channel::{child_send, child_wait_go, ChildMsg};
use crate::runtime::plan::{run_plan, Plan, Step, StepHooks};
use crate::runtime::sys::RealSys;

/// CLOCK_MONOTONIC now, in ns (the same clock in parent, child and workload).
pub fn monotonic_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC).map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64).unwrap_or(0)
}

/// What the child needs besides the plan.
#[derive(Debug, Clone, Copy)]
pub struct ChildArgs {
    /// The child's end of the channel.
    pub channel: RawFd,
    /// The parent's end, to close in the child.
    pub parent_end: RawFd,
    /// The launcher's pid: if the child's parent is already someone else,
    /// the launcher died before PR_SET_PDEATHSIG was armed.
    pub launcher: i32,
    /// Narrate each step on stderr.
    pub explain: bool,
    /// Wait for Enter before each step.
    pub step: bool,
    /// Outlive the launcher (an OCI `create`): no death signal.
    pub detached: bool,
}

struct Hooks {
    args: ChildArgs,
}

impl StepHooks for Hooks {
    fn before(&mut self, step: Step, index: usize, total: usize) {
        if self.args.explain || self.args.step {
            narrate(step, index, total);
        }
        if self.args.step {
            pause();
        }
        if step == Step::Exec && !self.args.detached {
            // The last stamp: execve is called right after this.
            child_send(self.args.channel, ChildMsg::StepDone { step, t_ns: monotonic_ns() });
        }
    }

    fn after(&mut self, step: Step) {
        // A detached child's launcher (an OCI `create`) keeps no timeline:
        // it waits for the end of the set-up only, and each stamp would
        // wake it for nothing (a switch between the two processes per step).
        if self.args.detached && step != Step::Workdir {
            return;
        }
        child_send(self.args.channel, ChildMsg::StepDone { step, t_ns: monotonic_ns() });
    }

    fn hook_failed(&mut self, step: Step, index: u32, code: u32) {
        child_send(self.args.channel, ChildMsg::HookFailed { step, index, code });
    }
}

fn write_all(fd: RawFd, mut b: &[u8]) {
    while !b.is_empty() {
        // SAFETY: b is a readable buffer of b.len() bytes.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            return;
        }
        b = &b[n as usize..];
    }
}

fn write_num(fd: RawFd, mut n: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    write_all(fd, &buf[i..]);
}

/// Writes the `--explain` text of a child step to stderr.
fn narrate(step: Step, index: usize, total: usize) {
    let e = 2;
    write_all(e, b"[virtlab child, in the container] step ");
    write_num(e, index);
    write_all(e, b"/");
    write_num(e, total);
    write_all(e, b" ");
    write_all(e, step.name().as_bytes());
    write_all(e, b"\n    syscall: ");
    write_all(e, step.syscall().as_bytes());
    write_all(e, b"\n    idea:    ");
    write_all(e, step.idea().as_bytes());
    write_all(e, b"\n");
}

/// `--step`: waits for a line on stdin (or end-of-file). Reads one byte at
/// a time, unbuffered, so that the launcher and the child, which share
/// stdin, never take each other's lines.
pub fn pause() {
    write_all(2, b"    [press Enter to run this step] ");
    let mut c = [0u8; 1];
    loop {
        // SAFETY: c is a writable one-byte buffer.
        let n = unsafe { libc::read(0, c.as_mut_ptr().cast(), 1) };
        if n <= 0 || c[0] == b'\n' {
            return;
        }
    }
}

/// The child's whole life. Never returns: it execs or exits.
pub fn child_main(plan: &Plan, args: ChildArgs) -> ! {
    // Child process, new namespaces, not yet mapped nor in its cgroup.
    // SAFETY: close(2) of the parent's end, which this process never uses;
    // the OwnedFd copy in this address space is never dropped (we exec or _exit).
    unsafe { libc::close(args.parent_end) };
    // SAFETY: an empty, initialised sigset; sigprocmask and signal are
    // async-signal-safe. The launcher blocked signals it forwards; the
    // command must start with none blocked and SIGPIPE at its default
    // (Rust ignores SIGPIPE in the launcher).
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // If the launcher dies, so does the container (and, as PID 1, all
        // of it), unless it is to outlive the launcher.
        if !args.detached {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
        }
        // Without a PID namespace getppid() shows the launcher; with one it
        // shows 0 (the parent is outside), and the death signal covers it.
        let ppid = libc::getppid();
        if ppid != args.launcher && ppid != 0 {
            libc::_exit(125);
        }
    }
    let Some(received) = child_wait_go(args.channel) else {
        // The launcher went away before the set-up could start.
        // SAFETY: _exit(2) skips atexit handlers and destructors of the parent's copy.
        unsafe { libc::_exit(125) };
    };
    // Child process, maps written, inside its cgroup. Until execve it is
    // a copy of the launcher, whose binary /proc/PID/exe names to anyone
    // allowed to ptrace-read it (the CVE-2019-5736 class). Not dumpable,
    // only a holder of CAP_SYS_PTRACE over the launcher's user namespace
    // may. The kernel already clears the flag when the set-up changes its
    // uid (`ns_root`), unless fs.suid_dumpable is 1; this does not depend
    // on that setting. execve makes the command dumpable again. (Set after
    // the maps: the launcher writes them to /proc/PID, which a
    // non-dumpable process gives to host root only.)
    // SAFETY: prctl(2) with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // Run the set-up.
    let (step, errno) = run_plan(&RealSys, plan, received, &mut Hooks { args });
    child_send(args.channel, ChildMsg::Failed { step, errno: errno as i32 });
    // SAFETY: as above.
    unsafe { libc::_exit(if step == Step::Exec { 127 } else { 125 }) }
}
