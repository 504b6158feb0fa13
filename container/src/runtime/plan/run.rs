//! [`run_plan`]: the child runs the plan's operations through a [`Sys`],
//! one step after the other, until execve(2). Nothing here allocates (the
//! child is a copy of a possibly multi-threaded launcher).

use std::ffi::CStr;

use nix::errno::Errno;
use nix::mount::MntFlags;

use super::command;
use super::model::{Op, Plan, Received, StepHooks};
use super::mounts;
use super::security;
use super::step::Step;
use crate::runtime::sys::Sys;

/// Runs the plan. Returns only on failure (execve does not return on
/// success), with the step and errno that failed.
pub fn run_plan<S: Sys, H: StepHooks>(sys: &S, plan: &Plan, received: Received, hooks: &mut H) -> (Step, Errno) {
    let total = count_steps(plan);
    let mut current: Option<Step> = None;
    let mut index = 0;
    for (step, op) in &plan.ops {
        if current != Some(*step) {
            if let Some(prev) = current {
                hooks.after(prev);
            }
            index += 1;
            hooks.before(*step, index, total);
            current = Some(*step);
        }
        if let Op::Hook(h) = op {
            if let Err(failure) = sys.run_hook(h, received.host_pid) {
                let code = failure.encode();
                hooks.hook_failed(*step, h.index, code);
                if let Some(fd) = h.report {
                    let mut report = [0u8; 9];
                    report[0] = crate::runtime::hooks::FIFO_FAILURE;
                    report[1..5].copy_from_slice(&h.index.to_ne_bytes());
                    report[5..9].copy_from_slice(&code.to_ne_bytes());
                    let _ = sys.write_fd(fd, &report);
                }
                return (*step, Errno::ECANCELED);
            }
            continue;
        }
        if let Err(e) = run_op(sys, plan, received, op) {
            return (*step, e);
        }
    }
    // Only reached if the plan had no Exec.
    (Step::Exec, Errno::ENOEXEC)
}

fn count_steps(plan: &Plan) -> usize {
    let mut n = 0;
    let mut prev: Option<Step> = None;
    for (s, _) in &plan.ops {
        if prev != Some(*s) {
            n += 1;
            prev = Some(*s);
        }
    }
    n
}

fn run_op<S: Sys>(sys: &S, plan: &Plan, received: Received, op: &Op) -> Result<(), Errno> {
    let dot: &CStr = c".";
    match op {
        Op::AttachRootfs(root) => mounts::attach(sys, root, received.rootfs_tree),
        Op::ReadOnlyPath(p) => security::read_only_path(sys, p),
        Op::Mask { path, devnull } => security::mask(sys, path, devnull),
        Op::Seccomp(program) => sys.seccomp(program),
        Op::Sysfs(flags) => mounts::sysfs(sys, *flags),
        Op::WriteFd(fd, bytes) => sys.write_fd(*fd, bytes),
        Op::Unshare(f) => sys.unshare(*f),
        Op::Mount { src, target, fstype, flags, data } => {
            sys.mount(src.as_deref(), target, fstype.as_deref(), *flags, data.as_deref())
        }
        Op::Mkdir(p, mode) => sys.mkdir(p, *mode),
        Op::Mknod { path, major, minor } => sys.mknod_char(path, 0o666, *major, *minor),
        Op::BindFile { src, target } => mounts::bind_file(sys, src, target),
        Op::Symlink { target, link } => sys.symlink(target, link),
        Op::Chdir(p) => sys.chdir(p),
        Op::AwaitStart(fd) => sys.await_start(*fd),
        // Run by run_plan itself (its failure is reported apart).
        Op::Hook(_) => Ok(()),
        Op::Console { socket, bind_console } => sys.console(*socket, *bind_console),
        Op::WriteFile { path, value } => sys.write_file(path, value.as_bytes()),
        Op::PivotRoot => sys.pivot_root(dot, dot),
        Op::DetachOldRoot => sys.umount2(dot, MntFlags::MNT_DETACH),
        Op::Chroot(p) => sys.chroot(p),
        Op::RemountReadOnly(p) => mounts::remount_read_only(sys, p),
        Op::Hostname(h) => sys.sethostname(h),
        Op::LoopbackUp => sys.loopback_up(),
        Op::Rlimit(r) => sys.setrlimit(r.resource, r.soft, r.hard),
        Op::DropBounding { keep, last } => security::drop_bounding(sys, *keep, *last),
        Op::ClearAmbient => sys.clear_ambient(),
        Op::Capset(keep) => sys.capset(*keep),
        Op::ClearGroups => sys.clear_groups(),
        Op::SetGid(g) => sys.setgid(*g),
        Op::SetUid(u) => sys.setuid(*u),
        Op::NoNewPrivs => sys.no_new_privs(),
        Op::Dup2(from, to) => sys.dup2(*from, *to),
        Op::Exec => Err(command::exec(sys, &plan.candidates, &plan.exec, plan.close_fds, plan.preserve_fds)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::Namespaces;
    use crate::runtime::plan::fake::{plan_of, Recorder, Steps};

    #[test]
    fn a_failing_call_stops_the_plan_and_names_its_step() {
        let plan = plan_of(Namespaces::ALL);
        let sys = Recorder { fail: Some("pivot_root"), ..Default::default() };
        let (step, errno) = run_plan(&sys, &plan, Received::default(), &mut Steps::default());
        assert_eq!((step, errno), (Step::PivotRoot, Errno::EPERM));
        let calls = sys.calls.into_inner();
        assert_eq!(calls.last().map(String::as_str), Some("pivot_root . ."));
    }
}
