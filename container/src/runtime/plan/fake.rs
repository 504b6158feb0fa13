//! The tests' recording [`Sys`]: every call as a line of text, and one
//! call made to fail; with the helpers the plan's tests share.

use std::cell::RefCell;
use std::ffi::CStr;
use std::os::fd::RawFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

use super::model::{Plan, PlanHost, Received, StdioFds, StepHooks};
use super::run::run_plan;
use super::step::Step;
use crate::runtime::config::{ContainerConfig, Namespaces};
use crate::runtime::seccomp::sock_filter;
use crate::runtime::sys::{ExecArgs, Sys};

/// Records every call; fails the call whose text starts with `fail`.
#[derive(Default)]
pub(super) struct Recorder {
    pub(super) calls: RefCell<Vec<String>>,
    pub(super) fail: Option<&'static str>,
}

impl Recorder {
    fn rec(&self, s: String) -> Result<(), Errno> {
        let failing = self.fail.is_some_and(|f| s.starts_with(f));
        self.calls.borrow_mut().push(s);
        if failing {
            Err(Errno::EPERM)
        } else {
            Ok(())
        }
    }
}

fn s(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}

impl Sys for Recorder {
    fn mount(
        &self,
        src: Option<&CStr>,
        t: &CStr,
        fs: Option<&CStr>,
        fl: MsFlags,
        _d: Option<&CStr>,
    ) -> Result<(), Errno> {
        let src = src.map(s).unwrap_or_else(|| "NULL".into());
        let fs = fs.map(s).unwrap_or_else(|| "NULL".into());
        let ro = if fl.contains(MsFlags::MS_RDONLY) { ",ro" } else { "" };
        self.rec(format!("mount {src} {} {fs}{ro}", s(t)))
    }
    fn umount2(&self, t: &CStr, _f: MntFlags) -> Result<(), Errno> {
        self.rec(format!("umount2 {}", s(t)))
    }
    fn pivot_root(&self, n: &CStr, o: &CStr) -> Result<(), Errno> {
        self.rec(format!("pivot_root {} {}", s(n), s(o)))
    }
    fn chroot(&self, p: &CStr) -> Result<(), Errno> {
        self.rec(format!("chroot {}", s(p)))
    }
    fn chdir(&self, p: &CStr) -> Result<(), Errno> {
        self.rec(format!("chdir {}", s(p)))
    }
    fn mkdir(&self, p: &CStr, _m: u32) -> Result<(), Errno> {
        self.rec(format!("mkdir {}", s(p)))
    }
    fn mknod_char(&self, p: &CStr, _m: u32, ma: u64, mi: u64) -> Result<(), Errno> {
        self.rec(format!("mknod {} {ma}:{mi}", s(p)))
    }
    fn write_file(&self, p: &CStr, b: &[u8]) -> Result<(), Errno> {
        self.rec(format!("write_file {} {}", s(p), String::from_utf8_lossy(b)))
    }
    fn await_start(&self, fd: RawFd) -> Result<(), Errno> {
        self.rec(format!("await_start {fd}"))
    }
    fn run_hook(
        &self,
        h: &crate::runtime::hooks::ChildHook,
        pid: i32,
    ) -> Result<(), crate::runtime::hooks::HookFailure> {
        let prefix = String::from_utf8_lossy(&h.state_prefix);
        self.rec(format!("hook {} {} {prefix}{pid}}}", h.index, s(&h.path)))
            .map_err(|_| crate::runtime::hooks::HookFailure::Exit(1))
    }
    fn console(&self, socket: RawFd, bind: bool) -> Result<(), Errno> {
        self.rec(format!("console {socket} {bind}"))
    }
    fn touch(&self, p: &CStr) -> Result<(), Errno> {
        self.rec(format!("touch {}", s(p)))
    }
    fn symlink(&self, t: &CStr, l: &CStr) -> Result<(), Errno> {
        self.rec(format!("symlink {} {}", s(l), s(t)))
    }
    fn mount_flags(&self, _p: &CStr) -> Result<MsFlags, Errno> {
        Ok(MsFlags::MS_NOSUID)
    }
    fn unshare(&self, f: CloneFlags) -> Result<(), Errno> {
        self.rec(format!("unshare {:#x}", f.bits()))
    }
    fn write_fd(&self, fd: RawFd, b: &[u8]) -> Result<(), Errno> {
        self.rec(format!("write {fd} {}", String::from_utf8_lossy(b)))
    }
    fn sethostname(&self, n: &CStr) -> Result<(), Errno> {
        self.rec(format!("sethostname {}", s(n)))
    }
    fn loopback_up(&self) -> Result<(), Errno> {
        self.rec("loopback_up".into())
    }
    fn setrlimit(&self, r: i32, so: u64, h: u64) -> Result<(), Errno> {
        self.rec(format!("setrlimit {r} {so} {h}"))
    }
    fn drop_bounding(&self, c: u32) -> Result<(), Errno> {
        self.rec(format!("capbset_drop {c}"))
    }
    fn clear_ambient(&self) -> Result<(), Errno> {
        self.rec("clear_ambient".into())
    }
    fn capset(&self, k: u64) -> Result<(), Errno> {
        self.rec(format!("capset {k:#x}"))
    }
    fn clear_groups(&self) -> Result<(), Errno> {
        self.rec("setgroups 0".into())
    }
    fn setgid(&self, g: u32) -> Result<(), Errno> {
        self.rec(format!("setgid {g}"))
    }
    fn setuid(&self, u: u32) -> Result<(), Errno> {
        self.rec(format!("setuid {u}"))
    }
    fn no_new_privs(&self) -> Result<(), Errno> {
        self.rec("no_new_privs".into())
    }
    fn dup2(&self, f: RawFd, t: RawFd) -> Result<(), Errno> {
        self.rec(format!("dup2 {f} {t}"))
    }
    fn cloexec_above(&self, keep: u32) -> Result<(), Errno> {
        self.rec(format!("cloexec_from_{}", 3 + keep))
    }
    fn move_mount(&self, fd: RawFd, t: &CStr) -> Result<(), Errno> {
        self.rec(format!("move_mount {fd} {}", s(t)))
    }
    fn seccomp(&self, p: &[sock_filter]) -> Result<(), Errno> {
        self.rec(format!("seccomp {}", p.len()))
    }
    fn execve(&self, p: &CStr, _a: &ExecArgs) -> Errno {
        let _ = self.rec(format!("execve {}", s(p)));
        Errno::ENOENT
    }
}

/// Records the hooks' calls.
#[derive(Default)]
pub(super) struct Steps(pub(super) Vec<String>);

impl StepHooks for Steps {
    fn before(&mut self, step: Step, i: usize, n: usize) {
        self.0.push(format!("{i}/{n} {step}"));
    }
    fn after(&mut self, step: Step) {
        self.0.push(format!("done {step}"));
    }
}

/// A host with a devices allowlist and no seccomp filter.
pub(super) fn host() -> PlanHost {
    PlanHost { last_cap: 40, devices_allowlist: true, seccomp: None, await_start: None }
}

/// `sh -c true` in `/r` with these namespaces.
pub(super) fn cfg(ns: Namespaces) -> ContainerConfig {
    let mut c = ContainerConfig::new("/r", vec!["sh".into(), "-c".into(), "true".into()]);
    c.namespaces = ns;
    c
}

/// The plan of [`cfg`]`(ns)` on [`host`], without stdio or cgroup fds.
pub(super) fn plan_of(ns: Namespaces) -> Plan {
    Plan::build(&cfg(ns), Path::new("/r"), StdioFds::default(), &[], host()).expect("the test configuration is valid")
}

/// Where the first call starting with `prefix` is.
pub(super) fn position(calls: &[String], prefix: &str) -> usize {
    calls.iter().position(|c| c.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix:?} in {calls:#?}"))
}

/// Runs `plan` against a fresh [`Recorder`] and returns its calls.
pub(super) fn record(plan: &Plan, received: Received) -> Vec<String> {
    let sys = Recorder::default();
    run_plan(&sys, plan, received, &mut Steps::default());
    sys.calls.into_inner()
}
