//! What a lesson can show, checked for real: these tests create namespaces,
//! cgroups and mounts, so they need root. Without root they skip loudly;
//! with `VIRTLAB_REQUIRE_ROOT=1` (set in CI) a skip is a failure. Tests that
//! need a shell use busybox-static (`apt-get install busybox-static`).
//!
//! Every test runs under one lock and checks that it left no cgroup, mount,
//! child process or fd behind.

// Test code: a failed set-up step should panic right there.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::errno::Errno;
use virtlab_container::cgroup::{self, CgroupMode};
use virtlab_container::escape::{try_escape, Confinement};
use virtlab_container::{rootfs, run, ContainerConfig, ExitStatus, LaunchError, Namespaces, Outcome, Stdio, Step};

static LOCK: Mutex<()> = Mutex::new(());

/// Says why a test is skipped, on the real stderr (not the test harness's
/// captured output), so a skip is visible in every `cargo test` run.
fn skip(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {msg}");
}

fn must_run() -> bool {
    std::env::var("VIRTLAB_REQUIRE_ROOT").is_ok_and(|v| v == "1")
}

/// Takes the lock if the test can run as root; otherwise skips loudly, or
/// fails under VIRTLAB_REQUIRE_ROOT=1.
fn root(test: &str) -> Option<MutexGuard<'static, ()>> {
    if !nix::unistd::geteuid().is_root() {
        assert!(!must_run(), "{test}: needs root, and VIRTLAB_REQUIRE_ROOT=1 forbids skipping");
        skip(&format!("{test}: needs root (namespaces, cgroups, mounts); run as root, CI sets VIRTLAB_REQUIRE_ROOT=1"));
        return None;
    }
    Some(LOCK.lock().unwrap_or_else(|e| e.into_inner()))
}

fn busybox(test: &str) -> Option<PathBuf> {
    match rootfs::host_busybox() {
        Some(p) => Some(p),
        None => {
            assert!(!must_run(), "{test}: needs /bin/busybox (apt-get install busybox-static), and VIRTLAB_REQUIRE_ROOT=1 forbids skipping");
            skip(&format!("{test}: needs /bin/busybox; install busybox-static"));
            None
        }
    }
}

/// [`root`], then a [`World`] without busybox: the lock and the world, or
/// `None` after a loud skip.
fn world(test: &str) -> Option<(MutexGuard<'static, ()>, World)> {
    let guard = root(test)?;
    Some((guard, World::new(None)))
}

/// [`root`], [`busybox`], then a [`World`] with busybox in its rootfs:
/// the lock and the world, or `None` after a loud skip.
fn busybox_world(test: &str) -> Option<(MutexGuard<'static, ()>, World)> {
    let guard = root(test)?;
    let bb = busybox(test)?;
    Some((guard, World::new(Some(&bb))))
}

/// A temporary directory holding `rootfs/` (built with or without busybox)
/// and `secret` next to it, outside the rootfs.
struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new(bb: Option<&Path>) -> World {
        let dir = tempfile::tempdir().unwrap();
        rootfs::build(&dir.path().join("rootfs"), bb).unwrap();
        fs::write(dir.path().join("secret"), "host-secret-4711\n").unwrap();
        World { dir }
    }
    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
    fn secret(&self) -> PathBuf {
        self.dir.path().join("secret")
    }
    fn config(&self, argv: &[&str]) -> ContainerConfig {
        let mut c = ContainerConfig::new(self.rootfs(), argv.iter().map(|s| s.to_string()).collect());
        c.stdio = Stdio::Capture;
        c.timeout = Some(Duration::from_secs(60));
        c
    }
}

/// What must be the same before and after a run.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    cgroups: BTreeSet<String>,
    mounts: Vec<String>,
    children: BTreeSet<String>,
    fds: usize,
}

fn snapshot() -> Snapshot {
    let mut cgroups = BTreeSet::new();
    for base in ["memory", "cpu", "cpuacct", "pids", "blkio", "devices", "unified", ""] {
        let d = Path::new(cgroup::DEFAULT_ROOT).join(base);
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(cgroup::PREFIX) {
                    cgroups.insert(e.path().display().to_string());
                }
            }
        }
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap().lines().map(String::from).collect();
    let mut children = BTreeSet::new();
    for t in fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(c) = fs::read_to_string(t.path().join("children")) {
            children.extend(c.split_whitespace().map(String::from));
        }
    }
    let fds = fs::read_dir("/proc/self/fd").unwrap().count();
    Snapshot { cgroups, mounts, children, fds }
}

/// Runs and checks that nothing was left behind, whatever the result.
fn run_clean(cfg: &ContainerConfig) -> Result<Outcome, LaunchError> {
    let before = snapshot();
    let r = run(cfg);
    let after = snapshot();
    assert_eq!(before, after, "the run left something behind");
    if let Ok(o) = &r {
        if let Some(c) = &o.cgroup {
            for p in &c.paths {
                assert!(!p.exists(), "{} still exists", p.display());
            }
        }
    }
    r
}

fn ok(cfg: &ContainerConfig) -> Outcome {
    match run_clean(cfg) {
        Ok(o) => o,
        Err(e) => panic!("run failed: {e} ({:?})", std::error::Error::source(&e)),
    }
}

#[test]
fn the_workload_is_pid_1_and_the_run_is_measured() {
    let Some((_g, w)) = world("the_workload_is_pid_1_and_the_run_is_measured") else { return };
    let o = ok(&w.config(&["/virtlab-workload", "ready"]));
    assert_eq!(o.status, ExitStatus::Exited(0), "{}", o.stderr_text());
    let r = virtlab_workload::WorkloadResult::find(&o.stdout_text()).expect("a result line");
    assert_eq!(r.get_u64("pid"), Some(1), "the command is PID 1 of its namespace");
    // Every phase was seen, in causal order (no durations are asserted).
    let order = [
        Step::Clone,
        Step::UserMaps,
        Step::Cgroup,
        Step::PivotRoot,
        Step::Capabilities,
        Step::Exec,
        Step::Ready,
        Step::Exit,
    ];
    let ats: Vec<Duration> =
        order.iter().map(|s| o.at(*s).unwrap_or_else(|| panic!("no {s} in {:?}", o.timeline))).collect();
    assert!(ats.windows(2).all(|p| p[0] <= p[1]), "{:?}", o.timeline);
    let cg = o.cgroup.as_ref().expect("root runs get a cgroup");
    assert!(cg.stats.memory_peak.is_some_and(|b| b > 0), "{cg:?}");
    assert!(cg.stats.cpu_time.is_some(), "{cg:?}");
    assert!(!o.oom_killed);
    // Container root is an unprivileged host id, never host root.
    let map = o.uid_map.as_deref().expect("a user namespace");
    assert_eq!(map, virtlab_container::idmap::IdRanges::lookup().uid.map_line());
    assert!(!map.starts_with("0 0 "), "{map}");
}

#[test]
fn own_hostname_only_with_a_uts_namespace() {
    let Some((_g, w)) = busybox_world("own_hostname_only_with_a_uts_namespace") else { return };
    let mut c = w.config(&["hostname"]);
    c.hostname = "lesson-box".into();
    assert_eq!(ok(&c).stdout_text().trim(), "lesson-box");
    let host = nix::unistd::gethostname().unwrap().to_string_lossy().into_owned();
    assert_ne!(host, "lesson-box");
    c.namespaces.uts = false;
    assert_eq!(ok(&c).stdout_text().trim(), host, "without uts the host's name shows through");
    assert_eq!(nix::unistd::gethostname().unwrap().to_string_lossy(), host.as_str(), "the host's name is untouched");
}

#[test]
fn sees_no_host_process() {
    let Some((_g, w)) = busybox_world("sees_no_host_process") else { return };
    let o = ok(&w.config(&["sh", "-c", "echo $$; ls /proc"]));
    let out = o.stdout_text();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "the shell is PID 1: {out}");
    let pids: Vec<u32> = lines.filter_map(|l| l.trim().parse().ok()).collect();
    assert!(!pids.is_empty() && pids.iter().all(|p| *p <= 3), "only the shell and ls: {pids:?}");
    // With a mount namespace but no PID namespace, a fresh /proc shows the host's processes.
    let mut c = w.config(&["sh", "-c", "ls /proc"]);
    c.namespaces = Namespaces::parse("mnt").unwrap();
    let host_view = ok(&c).stdout_text();
    let me = std::process::id().to_string();
    assert!(host_view.lines().any(|l| l.trim() == me), "the test process is visible without pid ns");
}

#[test]
fn host_files_are_unreachable_after_pivot_root() {
    let Some((_g, w)) = busybox_world("host_files_are_unreachable_after_pivot_root") else { return };
    let script = "cat /../secret /../../secret /proc/1/root/../secret; \
                  cat /proc/1/root/../../../../secret; ls /proc/1/root/.. /..; echo done";
    let o = ok(&w.config(&["sh", "-c", script]));
    let out = o.stdout_text();
    assert!(out.ends_with("done\n"), "{out}");
    assert!(!out.contains("host-secret-4711"), "a host file leaked: {out}");
    assert!(o.stderr_text().contains("No such file"), "{}", o.stderr_text());
    // `/..` and `/proc/1/root/..` list the rootfs itself.
    assert!(out.contains("virtlab-workload"), "{out}");
    assert!(!out.contains("secret"), "{out}");
}

#[test]
fn the_kernel_is_the_hosts() {
    let Some((_g, w)) = busybox_world("the_kernel_is_the_hosts") else { return };
    let host = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let o = ok(&w.config(&["sh", "-c", "uname -r; cat /proc/sys/kernel/osrelease"]));
    let out = o.stdout_text();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec![host.trim(), host.trim()], "same kernel release inside and outside");
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    let Some((_g, w)) = busybox_world("a_fork_bomb_stops_at_the_pids_limit") else { return };
    // Forks background sleepers until fork fails; prints how many it got.
    let script = "i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); echo $i; done";
    let mut c = w.config(&["sh", "-c", script]);
    c.limits.pids = Some(10);
    let o = ok(&c);
    let started: Vec<u32> = o.stdout_text().lines().filter_map(|l| l.trim().parse().ok()).collect();
    let most = started.last().copied().unwrap_or(0);
    assert!(most < 10, "at most 9 children next to the shell, got {most}");
    assert!(o.stderr_text().contains("can't fork"), "{}", o.stderr_text());
    assert_ne!(o.status, ExitStatus::Exited(0));
    // The same script without the limit gets all of them (and the PID
    // namespace takes the sleepers down with the shell).
    c.limits.pids = None;
    let o = ok(&c);
    assert!(o.stdout_text().lines().any(|l| l.trim() == "100"), "{}", o.stderr_text());
}

#[test]
fn a_memory_hog_is_oom_killed_and_reported() {
    let Some((_g, w)) = world("a_memory_hog_is_oom_killed_and_reported") else { return };
    let mut c = w.config(&["/virtlab-workload", "mem", "256"]);
    c.limits.memory = Some(32 << 20);
    let o = ok(&c);
    assert_eq!(o.status, ExitStatus::Signaled(libc::SIGKILL), "{}", o.stdout_text());
    assert_eq!(o.exit_code(), 137);
    assert!(o.oom_killed, "{:?}", o.cgroup);
    let peak = o.cgroup.as_ref().and_then(|c| c.stats.memory_peak).unwrap_or(0);
    assert!(peak <= 32 << 20, "the peak stays under the limit: {peak}");
    // Under the limit, the same workload completes.
    let mut c = w.config(&["/virtlab-workload", "mem", "8"]);
    c.limits.memory = Some(64 << 20);
    let o = ok(&c);
    assert_eq!(o.status, ExitStatus::Exited(0));
    assert!(!o.oom_killed);
}

#[test]
fn mount_and_reboot_are_refused_without_the_capability() {
    let Some((_g, w)) = busybox_world("mount_and_reboot_are_refused_without_the_capability") else { return };
    let o = ok(&w.config(&["sh", "-c", "mount -t tmpfs none /tmp && echo MOUNTED; reboot -f; echo after-reboot"]));
    let (out, err) = (o.stdout_text(), o.stderr_text());
    assert!(!out.contains("MOUNTED"), "{out}");
    assert!(err.contains("permission denied"), "{err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(out.contains("after-reboot"), "{out}");
    // Also without a user namespace (real root, capabilities dropped).
    let mut c = w.config(&["sh", "-c", "mount -t tmpfs none /tmp && echo MOUNTED; grep CapEff /proc/self/status"]);
    c.namespaces.user = false;
    let o = ok(&c);
    assert!(!o.stdout_text().contains("MOUNTED"), "{}", o.stdout_text());
    let eff = o.stdout_text().lines().find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string())).unwrap();
    let mask = u64::from_str_radix(&eff, 16).unwrap();
    assert_eq!(mask, virtlab_container::plan::default_cap_mask(), "CapEff {eff}");
}

#[test]
fn chroot_can_be_escaped_and_pivot_root_cannot() {
    let Some((_g, w)) = world("chroot_can_be_escaped_and_pivot_root_cannot") else { return };
    let before = snapshot();
    let chroot = try_escape(&w.rootfs(), &w.secret(), Confinement::Chroot).unwrap();
    assert!(chroot.escaped, "{chroot:?}");
    assert_eq!(chroot.content, "host-secret-4711\n");
    let pivot = try_escape(&w.rootfs(), &w.secret(), Confinement::PivotRoot).unwrap();
    assert!(!pivot.escaped, "{pivot:?}");
    assert_eq!(pivot.errno, Some(libc::ENOENT));
    assert_eq!(before, snapshot());
}

#[test]
fn bad_input_fails_clearly_and_leaves_nothing() {
    let Some((_g, w)) = world("bad_input_fails_clearly_and_leaves_nothing") else { return };
    let e = run_clean(&w.config(&["/no/such/command"])).unwrap_err();
    assert!(matches!(e, LaunchError::CommandNotFound { .. }), "{e}");
    assert_eq!(e.exit_code(), 127);
    let mut c = w.config(&["/virtlab-workload"]);
    c.rootfs = w.dir.path().join("missing");
    assert!(matches!(run_clean(&c), Err(LaunchError::RootfsMissing { .. })));
    // Fails inside the container, after clone: the step and errno come back.
    let mut c = w.config(&["/virtlab-workload"]);
    c.workdir = "/no/such/dir".into();
    match run_clean(&c) {
        Err(LaunchError::Child { step: Step::Workdir, errno: Errno::ENOENT, .. }) => {}
        other => panic!("{other:?}"),
    }
    // A file that is there but not executable.
    fs::write(w.rootfs().join("notexec"), "#!/bin/sh\n").unwrap();
    let e = run_clean(&w.config(&["/notexec"])).unwrap_err();
    assert!(matches!(e, LaunchError::Child { step: Step::Exec, errno: Errno::EACCES, .. }), "{e}");
    assert_eq!(e.exit_code(), 126);
    // A memory limit the kernel refuses (below what is already charged is
    // fine for an empty group, so use an absurd CPU period instead).
    let mut c = w.config(&["/virtlab-workload"]);
    c.limits.cpus = Some(1e9);
    assert!(matches!(run_clean(&c), Err(LaunchError::Cgroup(_))));
}

#[test]
fn a_timeout_kills_the_container_and_cleans_up() {
    let Some((_g, w)) = world("a_timeout_kills_the_container_and_cleans_up") else { return };
    let mut c = w.config(&["/virtlab-workload", "spin"]);
    c.timeout = Some(Duration::from_millis(300));
    let o = ok(&c);
    assert!(o.timed_out);
    assert_eq!(o.status, ExitStatus::Signaled(libc::SIGKILL));
}

#[test]
fn a_stale_cgroup_of_a_dead_launcher_is_removed() {
    let Some(_g) = root("a_stale_cgroup_of_a_dead_launcher_is_removed") else { return };
    let mode = cgroup::detect(Path::new(cgroup::DEFAULT_ROOT)).unwrap();
    // No process can have pid 2^31-1 (pid_max is at most 2^22).
    let base = if mode.is_v1() { Path::new(cgroup::DEFAULT_ROOT).join("pids") } else { cgroup::DEFAULT_ROOT.into() };
    let stale = base.join("virtlab-2147483647-0");
    fs::create_dir(&stale).unwrap();
    let w = World::new(None);
    let r = run(&w.config(&["/virtlab-workload", "ready"]));
    let left = stale.exists();
    let _ = fs::remove_dir(&stale);
    assert!(r.is_ok());
    assert!(!left, "the next run removes it");
}

#[test]
fn cgroup_v2_for_real_where_a_cgroup2_hierarchy_exists() {
    let Some(_g) = root("cgroup_v2_for_real_where_a_cgroup2_hierarchy_exists") else { return };
    let Some(v2) = v2_root() else {
        assert!(!must_run(), "no cgroup2 hierarchy found");
        skip("cgroup_v2_for_real: no cgroup2 hierarchy mounted");
        return;
    };
    let w = World::new(None);
    let mut c = w.config(&["/virtlab-workload", "ready"]);
    c.cgroup_root = v2.clone();
    let o = ok(&c);
    assert_eq!(o.status, ExitStatus::Exited(0));
    let cg = o.cgroup.expect("a cgroup");
    assert_eq!(cg.mode, CgroupMode::V2);
    assert_eq!(cg.paths, vec![v2.join(format!("virtlab-{}", o.id))]);
    assert!(!cg.paths[0].exists());
}

#[test]
fn read_only_root_and_writable_tmp() {
    let Some((_g, w)) = busybox_world("read_only_root_and_writable_tmp") else { return };
    let mut c = w.config(&["sh", "-c", "touch /new 2>&1; touch /tmp/ok && echo tmp-ok; echo $FOO; pwd; id -u"]);
    c.read_only = true;
    c.env = vec![("FOO".into(), "bar".into())];
    c.workdir = "/tmp".into();
    c.user = Some(virtlab_container::User { uid: 1000, gid: 1000 });
    let o = ok(&c);
    let out = o.stdout_text();
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("tmp-ok\nbar\n/tmp\n1000\n"), "{out}");
    assert!(!w.rootfs().join("new").exists());
}

/// The fields of a `/proc/self/uid_map` line.
fn map_fields(line: &str) -> Vec<u64> {
    line.split_whitespace().filter_map(|w| w.parse().ok()).collect()
}

#[test]
fn container_root_is_not_host_root() {
    let Some((_g, w)) = busybox_world("container_root_is_not_host_root") else { return };
    let sysctl = Path::new("/proc/sys/kernel/printk_ratelimit");
    let before = fs::read_to_string(sysctl).unwrap();
    let value = if before.trim() == "7" { "8" } else { "7" };
    // Each write would change the host if container root were host root.
    let script = format!(
        "cat /proc/self/uid_map; \
         echo {value} > /proc/sys/kernel/printk_ratelimit && echo WROTE-sysctl; \
         echo 1 > /proc/sys/vm/drop_caches && echo WROTE-drop-caches; \
         for f in /proc/irq/*/smp_affinity_list; do cat $f > $f && echo WROTE-irq; break; done; \
         echo h > /proc/sysrq-trigger && echo WROTE-sysrq; \
         touch /made-inside && echo created"
    );
    let o = ok(&w.config(&["sh", "-c", &script]));
    let after = fs::read_to_string(sysctl).unwrap();
    if after != before {
        fs::write(sysctl, &before).unwrap();
    }
    let out = o.stdout_text();
    assert_eq!(after, before, "the container changed a host sysctl: {out}");
    assert!(!out.contains("WROTE"), "{out}\n{}", o.stderr_text());
    let map = map_fields(out.lines().next().unwrap());
    assert_eq!(map.len(), 3, "{out}");
    assert!(map[0] == 0 && map[1] != 0, "container root maps to host id {}: {out}", map[1]);
    // The rootfs is idmapped: what container root creates belongs to host
    // root on disk, as the rest of the rootfs does.
    assert!(o.rootfs_idmapped, "{:?}", o.warnings);
    assert!(out.contains("created"), "{out}\n{}", o.stderr_text());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(w.rootfs().join("made-inside")).unwrap().uid(), 0);
}

#[test]
fn nested_user_namespaces_and_cgroup_mounts_are_refused() {
    let Some((_g, w)) = busybox_world("nested_user_namespaces_and_cgroup_mounts_are_refused") else { return };
    // The escape that raised a container's own limits: a nested user
    // namespace gives every capability back, over namespaces of its own,
    // enough to mount the pids hierarchy and rewrite pids.max.
    let script = "grep '^Seccomp:' /proc/self/status; \
                  unshare -U -r -m -C sh -c 'mkdir -p /tmp/cg && mount -t cgroup -o pids none /tmp/cg && echo MOUNTED'; \
                  unshare -m true && echo UNSHARED; \
                  mkdir -p /tmp/cg2 && mount -t cgroup -o pids none /tmp/cg2 && echo MOUNTED; \
                  echo done";
    for user in [true, false] {
        let mut c = w.config(&["sh", "-c", script]);
        c.limits.pids = Some(10);
        c.namespaces.user = user;
        let o = ok(&c);
        let out = o.stdout_text();
        assert!(out.starts_with("Seccomp:\t2\n"), "a seccomp filter is on (user ns {user}): {out}");
        assert!(out.ends_with("done\n"), "{out}");
        assert!(!out.contains("MOUNTED") && !out.contains("UNSHARED"), "user ns {user}: {out}");
        assert!(o.stderr_text().contains("Operation not permitted"), "{}", o.stderr_text());
    }
}

#[test]
fn device_nodes_of_the_host_cannot_be_opened_without_a_user_namespace() {
    let test = "device_nodes_of_the_host_cannot_be_opened_without_a_user_namespace";
    let Some((_g, w)) = busybox_world(test) else { return };
    // Real root with Docker's capabilities: CAP_MKNOD makes the node (here
    // /dev/kmsg, harmless to write to); only the devices allowlist stops it
    // being opened: the v1 devices controller, or on v2 a BPF program.
    let script = "mknod /kmsg c 1 11 && echo made; echo virtlab-device-test > /kmsg && echo OPENED; echo done";
    let mut roots = vec![PathBuf::from(cgroup::DEFAULT_ROOT)];
    roots.extend(v2_root());
    for cgroup_root in roots {
        let mut c = w.config(&["sh", "-c", script]);
        c.namespaces = Namespaces::parse("uts,pid,mnt,ipc,net,cgroup").unwrap();
        c.cgroup_root = cgroup_root.clone();
        let o = ok(&c);
        let _ = fs::remove_file(w.rootfs().join("kmsg"));
        let out = o.stdout_text();
        let at = cgroup_root.display();
        assert_eq!(out, "made\ndone\n", "{at}: the node is made, never opened read-write\n{}", o.stderr_text());
        assert!(o.stderr_text().contains("Operation not permitted"), "{at}: {}", o.stderr_text());
    }
}

/// A cgroup2 hierarchy (pure v2 hosts have it at /sys/fs/cgroup, hybrid
/// ones at unified/), if there is one.
fn v2_root() -> Option<PathBuf> {
    [PathBuf::from(cgroup::DEFAULT_ROOT), Path::new(cgroup::DEFAULT_ROOT).join("unified")]
        .into_iter()
        .find(|p| cgroup::detect(p).is_ok_and(|m| m == CgroupMode::V2))
}

#[test]
fn the_hosts_kernel_files_in_proc_are_masked() {
    let Some((_g, w)) = busybox_world("the_hosts_kernel_files_in_proc_are_masked") else { return };
    let script = "for f in /proc/keys /proc/timer_list /proc/kcore /proc/sched_debug; do \
                  [ -e $f ] && echo \"$f $(head -c 4096 $f | wc -c)\"; done; \
                  echo \"acpi $(ls /proc/acpi 2>/dev/null | wc -l)\"";
    for user in [true, false] {
        let mut c = w.config(&["sh", "-c", script]);
        c.namespaces.user = user;
        let out = ok(&c).stdout_text();
        assert!(out.contains("/proc/timer_list 0\n"), "user ns {user}: {out}");
        for line in out.lines() {
            assert!(line.ends_with(" 0"), "user ns {user}: {line} is not empty: {out}");
        }
    }
}

#[test]
fn a_command_that_is_not_a_regular_file_fails_at_once() {
    let Some((_g, w)) = world("a_command_that_is_not_a_regular_file_fails_at_once") else { return };
    // A FIFO would block the launcher's look at the file for ever.
    nix::unistd::mkfifo(&w.rootfs().join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o755)).unwrap();
    fs::create_dir(w.rootfs().join("dir")).unwrap();
    for (cmd, kind) in [("/fifo", "FIFO"), ("/dir", "directory")] {
        let e = run_clean(&w.config(&[cmd])).unwrap_err();
        assert!(matches!(e, LaunchError::NotAFile { .. }), "{cmd}: {e}");
        assert!(e.to_string().contains(kind), "{e}");
        assert_eq!(e.exit_code(), 126);
    }
}

#[test]
fn a_timeout_shorter_than_the_set_up_is_still_a_timeout() {
    let Some((_g, w)) = world("a_timeout_shorter_than_the_set_up_is_still_a_timeout") else { return };
    let mut c = w.config(&["/virtlab-workload", "spin"]);
    c.timeout = Some(Duration::from_millis(1));
    // The child is often killed before it read its go-ahead; that used to
    // surface as ECONNRESET (exit 125) instead of the timeout.
    for _ in 0..20 {
        let o = ok(&c);
        assert!(o.timed_out, "{o:?}");
        assert_eq!(o.status, ExitStatus::Signaled(libc::SIGKILL));
    }
}
