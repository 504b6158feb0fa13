//! [`Plan::build`]: a configuration turned into the child's operations, in
//! the order the module documentation of `plan` gives. The mount, identity
//! and security steps come from their own modules; the small steps in
//! between (cgroup, hostname, loopback, rlimits, workdir, stdio) are here.
//! [`Plan::build_exec`] is the plan of one more process in a running
//! container (`exec`): the last steps of the first one's, `process_steps`.

use std::os::fd::RawFd;
use std::path::Path;

use nix::sched::CloneFlags;

use super::command;
use super::identity;
use super::model::{cstr, path_c, under, Op, Ops, Plan, PlanHost, StdioFds};
use super::mounts;
use super::security;
use super::step::Step;
use crate::runtime::config::{ConfigError, ContainerConfig};
use crate::runtime::hooks::{ChildHook, HookKind};
use crate::runtime::nsjoin::NsKind;

impl Plan {
    /// Builds the plan for `cfg`. `rootfs` is the absolute rootfs path;
    /// `host` what the launcher found out about the host.
    /// `join_fds` are cgroup v1 `tasks` files opened by the parent: the
    /// child joins its cgroup by writing `0` (itself) to each.
    pub fn build(
        cfg: &ContainerConfig,
        rootfs: &Path,
        stdio: StdioFds,
        join_fds: &[RawFd],
        host: PlanHost,
    ) -> Result<Plan, ConfigError> {
        let ns = cfg.namespaces;
        // A namespace joined by path is there already, made and set up by
        // its owner: no unshare, no loopback, a hostname only if asked for.
        let joined = |kind| crate::runtime::nsjoin::joins(&cfg.join_namespaces, kind);
        let mut ops: Ops = Vec::new();
        let root = path_c(rootfs, "rootfs path")?;
        for fd in join_fds {
            ops.push((Step::Cgroup, Op::WriteFd(*fd, b"0")));
        }
        if ns.cgroup && !joined(NsKind::Cgroup) {
            ops.push((Step::CgroupNs, Op::Unshare(CloneFlags::CLONE_NEWCGROUP)));
        }
        if ns.mnt {
            mounts::attach_rootfs(&mut ops, &root)?;
            identity::ns_root(&mut ops, ns.user);
            match &cfg.mounts {
                Some(list) => mounts::listed(&mut ops, list, ns.user, stdio.tty.as_deref())?,
                None => {
                    mounts::dev(&mut ops, ns.user, stdio.tty.as_deref())?;
                    mounts::proc(&mut ops)?;
                    if ns.net || !ns.user {
                        mounts::sys(&mut ops, cfg.sys_writable);
                    }
                }
            }
            for (key, value) in &cfg.sysctl {
                let path = under(&format!("proc/sys/{}", key.replace('.', "/")))?;
                ops.push((Step::Sysctl, Op::WriteFile { path, value: cstr(value.as_str(), "sysctl value")? }));
            }
            security::proc_masks(&mut ops, cfg)?;
            if cfg.mounts.is_none() {
                mounts::tmp(&mut ops)?;
            }
            create_container_hooks(&mut ops, cfg, &root)?;
            mounts::pivot_root(&mut ops, cfg.read_only)?;
        } else {
            if cfg.read_only {
                return Err(ConfigError::NeedsNamespace { what: "--read-only", ns: "mnt" });
            }
            create_container_hooks(&mut ops, cfg, &root)?;
            mounts::chroot(&mut ops, &root)?;
            identity::ns_root(&mut ops, ns.user);
        }
        if ns.uts && !(joined(NsKind::Uts) && cfg.hostname.is_empty()) {
            ops.push((Step::Hostname, Op::Hostname(cstr(cfg.hostname.as_str(), "hostname")?)));
        }
        if ns.net && !joined(NsKind::Net) {
            ops.push((Step::Loopback, Op::LoopbackUp));
        }
        process_steps(&mut ops, cfg, &stdio, host, true)?;
        Plan::with_command(ops, cfg)
    }

    /// The plan of one more process in the running container `cfg`
    /// describes (`exec`). The caller has already put it into the
    /// container's cgroup, namespaces and root (setns(2)), so what is left
    /// is what a process carries itself: the user namespace's root ids
    /// (setns gave it every capability there, but kept its host ids, which
    /// the namespace does not map), then the same `process_steps` as the
    /// container's first process, so that both end with the same
    /// capabilities, no_new_privs, seccomp filter and rlimits.
    pub fn build_exec(cfg: &ContainerConfig, stdio: StdioFds, host: PlanHost) -> Result<Plan, ConfigError> {
        let mut ops: Ops = Vec::new();
        identity::ns_root(&mut ops, cfg.namespaces.user);
        process_steps(&mut ops, cfg, &stdio, host, false)?;
        Plan::with_command(ops, cfg)
    }

    /// `ops` with the command of `cfg` ready for execve.
    fn with_command(ops: Ops, cfg: &ContainerConfig) -> Result<Plan, ConfigError> {
        let command::Command { candidates, argv, envp, exec } = command::prepare(cfg)?;
        Ok(Plan {
            ops,
            candidates,
            _argv: argv,
            _envp: envp,
            exec,
            close_fds: cfg.close_fds,
            preserve_fds: cfg.preserve_fds,
        })
    }
}

/// What every process of a container goes through last, once it stands in
/// the container's world: the container's first process after its set-up,
/// and each one `exec` adds. rlimits, capabilities (while still root),
/// the user switch, no_new_privs and seccomp, the working directory, stdio,
/// execve.
fn process_steps(
    ops: &mut Ops,
    cfg: &ContainerConfig,
    stdio: &StdioFds,
    host: PlanHost,
    first: bool,
) -> Result<(), ConfigError> {
    // While the process may still mount (/dev/console) and before the
    // filter: its terminal.
    if let Some(socket) = stdio.console {
        ops.push((Step::Console, Op::Console { socket, bind_console: first && cfg.namespaces.mnt }));
    }
    for r in &cfg.rlimits {
        ops.push((Step::Rlimits, Op::Rlimit(*r)));
    }
    // Without no_new_privs the kernel takes a filter only from a process
    // with CAP_SYS_ADMIN: installed while all capabilities are still
    // there, as runc does. The calls after it (capset, setresuid, chdir,
    // dup2, execve) then go through it.
    let filter_first = !cfg.no_new_privs;
    if filter_first {
        security::lock_down(ops, cfg, host);
        tty_filter(ops, cfg);
    }
    security::capabilities(ops, cfg, host);
    identity::user(ops, cfg.user, cfg.namespaces.user);
    if !filter_first {
        security::lock_down(ops, cfg, host);
        tty_filter(ops, cfg);
    }
    ops.push((Step::Workdir, Op::Chdir(path_c(&cfg.workdir, "workdir")?)));
    for (fd, to) in [(stdio.stdin, 0), (stdio.stdout, 1), (stdio.stderr, 2)] {
        if let (Some(fd), None) = (fd, stdio.console) {
            ops.push((Step::Stdio, Op::Dup2(fd, to)));
        }
    }
    if let Some(fd) = host.await_start {
        ops.push((Step::AwaitStart, Op::AwaitStart(fd)));
    }
    if let (true, Some(h)) = (first, &cfg.hooks) {
        // A failure also goes to `start`, through the exec FIFO.
        for hook in h.of(HookKind::StartContainer) {
            let prepared = ChildHook::prepare(hook, &h.state, host.await_start)?;
            ops.push((Step::StartContainerHooks, Op::Hook(Box::new(prepared))));
        }
    }
    ops.push((Step::Exec, Op::Exec));
    Ok(())
}

/// The `createContainer` hooks, from the rootfs (as runc runs them): the
/// container's namespaces and mounts, the host's root still reachable.
fn create_container_hooks(ops: &mut Ops, cfg: &ContainerConfig, root: &std::ffi::CString) -> Result<(), ConfigError> {
    let Some(h) = &cfg.hooks else { return Ok(()) };
    let mut hooks = h.of(HookKind::CreateContainer).peekable();
    if hooks.peek().is_some() {
        ops.push((Step::CreateContainerHooks, Op::Chdir(root.clone())));
    }
    for hook in hooks {
        ops.push((Step::CreateContainerHooks, Op::Hook(Box::new(ChildHook::prepare(hook, &h.state, None)?))));
    }
    Ok(())
}

/// The second, small filter: no faked terminal input (`TIOCSTI`), stacked
/// right after the main one (see [`crate::runtime::tty_filter`]).
fn tty_filter(ops: &mut Ops, cfg: &ContainerConfig) {
    if cfg.deny_tiocsti {
        ops.push((Step::Seccomp, Op::Seccomp(crate::runtime::tty_filter::program())));
    }
}

#[cfg(test)]
mod tests {
    use crate::runtime::config::{Namespaces, User};
    use crate::runtime::plan::fake::{cfg, host, Recorder, Steps};
    use crate::runtime::plan::model::{Plan, PlanHost, Received, StdioFds};
    use crate::runtime::plan::run::run_plan;
    use crate::runtime::plan::security::cap;
    use crate::runtime::plan::step::Step;
    use nix::errno::Errno;
    use std::path::Path;

    #[test]
    fn full_namespace_set_runs_in_the_documented_order() {
        let mut c = cfg(Namespaces::ALL);
        c.read_only = true;
        c.user = Some(User { uid: 1000, gid: 100 });
        let program = crate::runtime::seccomp::default_program().unwrap();
        let h = PlanHost { seccomp: Some(program), ..host() };
        let plan =
            Plan::build(&c, Path::new("/r"), StdioFds { stdout: Some(7), ..Default::default() }, &[9], h).unwrap();
        let sys = Recorder::default();
        let mut hooks = Steps::default();
        let (step, errno) = run_plan(&sys, &plan, Received::default(), &mut hooks);
        // The fake's execve fails with ENOENT for every PATH entry.
        assert_eq!((step, errno), (Step::Exec, Errno::ENOENT));
        let calls = sys.calls.into_inner();
        let order = [
            "write 9 0",
            "unshare",
            "mount NULL / NULL",
            "mount /r /r NULL",
            "chdir /r",
            "setgid 0",
            "setuid 0",
            "mkdir proc",
            "mount tmpfs dev tmpfs",
            "touch dev/null",
            "mount /dev/null dev/null",
            "mount proc proc proc",
            "mount sysfs sys sysfs,ro",
            "mount tmpfs proc/acpi tmpfs,ro",
            "mount tmpfs proc/keys tmpfs,ro",
            "mount proc/sys proc/sys NULL",
            "mount NULL proc/sys NULL,ro",
            "mount tmpfs tmp tmpfs",
            "pivot_root . .",
            "umount2 .",
            "chdir /",
            "mount NULL / NULL,ro",
            "sethostname virtlab",
            "loopback_up",
            "setrlimit",
            "capbset_drop 2",
            "clear_ambient",
            "capset",
            "setgid 100",
            "setuid 1000",
            "no_new_privs",
            &format!("seccomp {}", program.len()),
            "chdir /",
            "dup2 7 1",
            "cloexec_from_3",
            "execve /bin/sh",
        ];
        let mut last = 0;
        for want in order {
            let p = calls[last..].iter().position(|c| c.starts_with(want)).map(|p| p + last);
            let p = p.unwrap_or_else(|| panic!("{want:?} missing after {:?} in {calls:#?}", calls.get(last)));
            last = p;
        }
        // In a user namespace the device nodes are bind mounts, never mknod,
        // and setgroups is left alone (it is denied).
        assert!(!calls.iter().any(|c| c.starts_with("mknod") || c.starts_with("setgroups")));
        // The kept capabilities are not dropped from the bounding set; the rest are.
        assert!(!calls.contains(&format!("capbset_drop {}", cap::SETUID)));
        assert!(calls.contains(&format!("capbset_drop {}", cap::SYS_ADMIN)));
        assert!(calls.contains(&format!("capbset_drop {}", cap::SYS_BOOT)));
        assert_eq!(hooks.0.first().map(String::as_str), Some("1/22 cgroup"));
        // With a devices allowlist, CAP_MKNOD is kept (Docker's default set).
        assert!(!calls.contains(&format!("capbset_drop {}", cap::MKNOD)));
        assert!(hooks.0.contains(&"done pivot_root".to_string()));
    }

    #[test]
    fn the_defence_switches_change_the_plan() {
        let program = crate::runtime::seccomp::default_program().unwrap();
        let h = PlanHost { seccomp: Some(program), ..host() };
        let calls = |c: &crate::runtime::config::ContainerConfig| {
            let plan = Plan::build(c, Path::new("/r"), StdioFds::default(), &[], h).unwrap();
            crate::runtime::plan::fake::record(&plan, Received::default())
        };
        let pos = |calls: &[String], what: &str| calls.iter().position(|c| c.starts_with(what));
        // Without no_new_privs the filter goes in while every capability is there.
        let mut c = cfg(Namespaces::ALL);
        c.no_new_privs = false;
        let v = calls(&c);
        assert!(pos(&v, "seccomp") < pos(&v, "capset") && pos(&v, "no_new_privs").is_none(), "{v:#?}");
        let v = calls(&cfg(Namespaces::ALL));
        assert!(pos(&v, "seccomp") > pos(&v, "capset"), "{v:#?}");
        // /sys: read-only, read-write when privileged, none in a user
        // namespace without a network namespace of its own.
        assert!(v.contains(&"mount sysfs sys sysfs,ro".to_string()), "{v:#?}");
        let mut c = cfg(Namespaces::ALL);
        c.sys_writable = true;
        assert!(calls(&c).contains(&"mount sysfs sys sysfs".to_string()));
        let v = calls(&cfg(Namespaces::parse("user,mnt,pid").unwrap()));
        assert!(pos(&v, "mount sysfs").is_none(), "{v:#?}");
    }

    #[test]
    fn joined_namespaces_are_not_set_up_again() {
        use crate::runtime::nsjoin::{NsJoin, NsKind};
        let mut c = cfg(Namespaces::ALL);
        c.hostname = String::new();
        c.join_namespaces = [NsKind::Net, NsKind::Uts, NsKind::Cgroup]
            .into_iter()
            .map(|kind| NsJoin { kind, path: "/proc/1/ns/x".into(), field: "f".into() })
            .collect();
        let plan = Plan::build(&c, Path::new("/r"), StdioFds::default(), &[], host()).unwrap();
        let v = crate::runtime::plan::fake::record(&plan, Received::default());
        for absent in ["loopback_up", "sethostname", "unshare"] {
            assert!(!v.iter().any(|x| x.starts_with(absent)), "{absent}: {v:#?}");
        }
        // A hostname given is set in the joined namespace, as runc does.
        c.hostname = "pod".into();
        let plan = Plan::build(&c, Path::new("/r"), StdioFds::default(), &[], host()).unwrap();
        let v = crate::runtime::plan::fake::record(&plan, Received::default());
        assert!(v.contains(&"sethostname pod".to_string()), "{v:#?}");
    }

    #[test]
    fn preserved_fds_stay_open_and_the_rest_close() {
        let mut c = cfg(Namespaces::ALL);
        c.preserve_fds = 2;
        let plan = Plan::build(&c, Path::new("/r"), StdioFds::default(), &[], host()).unwrap();
        let v = crate::runtime::plan::fake::record(&plan, Received::default());
        assert!(v.contains(&"cloexec_from_5".to_string()), "{v:#?}");
    }

    #[test]
    fn close_fds_off_leaves_the_fds_open_across_execve() {
        let record = |close_fds: bool| {
            let mut c = cfg(Namespaces::ALL);
            c.close_fds = close_fds;
            let plan = Plan::build(&c, Path::new("/r"), StdioFds::default(), &[], host()).unwrap();
            let sys = Recorder::default();
            run_plan(&sys, &plan, Received::default(), &mut Steps::default());
            sys.calls.into_inner()
        };
        let on = record(true);
        let at = on.iter().position(|c| c == "cloexec_from_3").expect("close_range before exec");
        assert!(on[at + 1].starts_with("execve"), "{on:#?}");
        let off = record(false);
        assert!(!off.iter().any(|c| c == "cloexec_from_3"), "{off:#?}");
        assert!(off.last().is_some_and(|c| c.starts_with("execve")), "{off:#?}");
    }

    #[test]
    fn an_exec_plan_is_the_tail_of_the_first_process_plan() {
        let mut c = cfg(Namespaces::ALL);
        c.user = Some(User { uid: 1000, gid: 100 });
        let program = crate::runtime::seccomp::default_program().unwrap();
        let h = PlanHost { seccomp: Some(program), ..host() };
        let first = Plan::build(&c, Path::new("/r"), StdioFds::default(), &[9], h).unwrap();
        let exec = Plan::build_exec(&c, StdioFds { stdin: Some(5), ..Default::default() }, h).unwrap();
        let record = |plan: &Plan| {
            let sys = Recorder::default();
            run_plan(&sys, plan, Received::default(), &mut Steps::default());
            sys.calls.into_inner()
        };
        let (first, exec) = (record(&first), record(&exec));
        // The user namespace's root ids first: setns(2) kept the host's.
        assert_eq!(exec[..2], ["setgid 0", "setuid 0"]);
        // Then exactly what the first process does from its rlimits on.
        let tail = &first[first.iter().position(|c| c.starts_with("setrlimit")).unwrap()..];
        let exec_tail: Vec<&String> = exec[2..].iter().filter(|c| !c.starts_with("dup2")).collect();
        assert_eq!(exec_tail, tail.iter().collect::<Vec<_>>());
        assert!(exec.contains(&"dup2 5 0".to_string()), "{exec:#?}");
        // Nothing of the container's world is built again.
        assert!(!exec.iter().any(|c| c.starts_with("mount") || c.starts_with("pivot_root") || c.starts_with("write")));
        assert!(!exec.iter().any(|c| c.starts_with("sethostname") || c.starts_with("unshare")));
    }

    #[test]
    fn hooks_run_before_pivot_root_and_after_start_and_a_failure_goes_to_the_fifo() {
        use crate::runtime::hooks::{Hook, HookKind, HookState, LifecycleHooks};
        let hook =
            |kind, path: &str| Hook { kind, index: 0, path: path.into(), args: vec![], env: vec![], timeout: None };
        let mut c = cfg(Namespaces::ALL);
        c.hooks = Some(std::sync::Arc::new(LifecycleHooks {
            hooks: vec![hook(HookKind::CreateContainer, "/cc"), hook(HookKind::StartContainer, "/sc")],
            state: HookState { id: "x".into(), ..Default::default() },
            observer: None,
        }));
        let h = PlanHost { await_start: Some(11), ..host() };
        let plan = Plan::build(&c, Path::new("/r"), StdioFds::default(), &[], h).unwrap();
        let sys = Recorder::default();
        let received = Received { host_pid: 42, ..Default::default() };
        run_plan(&sys, &plan, received, &mut Steps::default());
        let calls = sys.calls.into_inner();
        let at = |prefix: &str| calls.iter().position(|x| x.starts_with(prefix)).unwrap();
        assert!(at("chdir /r") < at("hook 0 /cc") && at("hook 0 /cc") < at("pivot_root"), "{calls:#?}");
        assert!(at("await_start") < at("hook 0 /sc") && at("hook 0 /sc") < at("execve"), "{calls:#?}");
        assert!(calls[at("hook 0 /cc")].contains("\"status\":\"creating\""), "{calls:#?}");
        assert!(
            calls[at("hook 0 /sc")].ends_with("\"status\":\"created\",\"bundle\":\"\",\"annotations\":{},\"pid\":42}"),
            "{calls:#?}"
        );
        // An exec'd process runs none.
        let exec = Plan::build_exec(&c, StdioFds::default(), h).unwrap();
        assert!(!exec.steps().contains(&Step::StartContainerHooks));
        // startContainer failing: reported on the FIFO's fd, the program not run.
        let sys = Recorder { fail: Some("hook 0 /sc"), ..Default::default() };
        let (step, _) = run_plan(&sys, &plan, received, &mut Steps::default());
        assert_eq!(step, Step::StartContainerHooks);
        let calls = sys.calls.into_inner();
        assert!(calls.iter().any(|x| x.starts_with("write 11 H")), "{calls:#?}");
        assert!(!calls.iter().any(|x| x.starts_with("execve")), "{calls:#?}");
    }

    #[test]
    fn a_console_comes_before_the_lockdown_and_replaces_the_dup2s() {
        let c = cfg(Namespaces::ALL);
        let program = crate::runtime::seccomp::default_program().unwrap();
        let h = PlanHost { seccomp: Some(program), await_start: Some(11), ..host() };
        let stdio = StdioFds { stdout: Some(7), console: Some(8), ..Default::default() };
        let record = |plan: &Plan| {
            let sys = Recorder::default();
            run_plan(&sys, plan, Received::default(), &mut Steps::default());
            sys.calls.into_inner()
        };
        let first = record(&Plan::build(&c, Path::new("/r"), stdio.clone(), &[9], h).unwrap());
        let at = |calls: &[String], prefix: &str| calls.iter().position(|x| x.starts_with(prefix));
        let console = at(&first, "console 8 true").expect("the console, bound on /dev/console");
        assert!(console > at(&first, "pivot_root").unwrap(), "inside the container's root: {first:#?}");
        assert!(console < at(&first, "capset").unwrap() && console < at(&first, "seccomp").unwrap(), "{first:#?}");
        assert!(console < at(&first, "await_start").unwrap(), "the engine has the master at create: {first:#?}");
        assert!(!first.iter().any(|x| x.starts_with("dup2")), "the terminal is stdin, stdout, stderr: {first:#?}");
        // An exec's terminal: /dev/console stays the first process's.
        let exec = record(&Plan::build_exec(&c, stdio, h).unwrap());
        assert!(exec.iter().any(|x| x == "console 8 false"), "{exec:#?}");
    }
}
