//! `virtlab lab escape` as a user runs it: every lab blocked with the
//! default defences, each one reaching its target once its layers are off,
//! layered defences taking over from each other, bad names refused, and
//! nothing left behind. Also `close_fds`: no fd above 2 reaches a
//! container's command. The labs need root; they skip loudly otherwise, and
//! fail under VIRTLAB_REQUIRE_ROOT=1.

#![allow(clippy::unwrap_used)] // a test that cannot set up fails, which is what unwrap does

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

use common::must;

fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let ok = unsafe { libc::geteuid() } == 0;
    if !ok {
        assert!(!must("VIRTLAB_REQUIRE_ROOT"), "{test}: root is required (VIRTLAB_REQUIRE_ROOT=1)");
        eprintln!("SKIPPED {test}: not root (the labs make containers with every namespace, keys, device nodes)");
    }
    ok
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `virtlab lab escape ARGS --json`; returns the output, its JSON
/// lines and the virtlab process's pid.
fn lab(args: &[&str]) -> (Output, Vec<serde_json::Value>, u32) {
    let child = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["lab", "escape", "--json"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let runs = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    (out, runs, pid)
}

/// Nothing of launcher `pid` is left: no scene directory, no cgroup.
fn assert_nothing_left(pid: u32) {
    let prefix = format!("virtlab-lab-{pid}-");
    let left: Vec<String> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "scene directories left behind: {left:?}");
    let cgroups = common::cgroups_of(pid);
    assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:?}");
}

#[test]
fn every_lab_is_blocked_with_the_default_defences() {
    if !root_or_skip("every_lab_is_blocked_with_the_default_defences") {
        return;
    }
    let (out, runs, pid) = lab(&[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let names: Vec<&str> = runs.iter().map(|r| r["lab"].as_str().unwrap()).collect();
    let all =
        ["chroot", "leaked-fd", "exe", "sysrq", "keyctl", "proc-keys", "mknod", "ptrace", "tiocsti", "release-agent"];
    assert_eq!(names, all);
    let want_by = [
        "pivot-root",
        "close-fds",
        "userns",
        "userns",
        "seccomp",
        "masked-paths",
        "userns",
        "pidns",
        "tty-filter",
        "seccomp",
    ];
    for (r, by) in runs.iter().zip(want_by) {
        if r["attack"]["outcome"] == "host-refuses" {
            eprintln!("{}: this kernel refuses the attack to everyone: {r}", r["lab"]);
            continue;
        }
        assert_eq!(r["attack"]["outcome"], "blocked", "{r}");
        assert_eq!(r["blocked_by"], by, "{r}");
        assert_eq!(r["as_expected"], true, "{r}");
        // An errno, or 0 for a read that found nothing (a masked file).
        assert!(r["attack"]["errno"].as_i64().unwrap() > 0 || r["lab"] == "proc-keys", "{r}");
    }
    // The errnos say which wall each attacker hit.
    let errno = |lab: &str| runs.iter().find(|r| r["lab"] == lab).unwrap()["attack"]["errno"].as_i64().unwrap();
    assert_eq!(errno("keyctl"), i64::from(libc::EPERM), "the filter's answer");
    assert_eq!(errno("release-agent"), i64::from(libc::EPERM), "the filter's answer to unshare(CLONE_NEWUSER)");
    assert_eq!(errno("ptrace"), i64::from(libc::ESRCH), "no such process in the PID namespace");
    assert_eq!(errno("leaked-fd"), i64::from(libc::EBADF), "no directory fd survived execve");
    assert_nothing_left(pid);
}

#[test]
fn each_lab_reaches_its_target_once_its_layers_are_off() {
    if !root_or_skip("each_lab_reaches_its_target_once_its_layers_are_off") {
        return;
    }
    let cases: [(&str, &str, &str); 10] = [
        ("proc-keys", "masked-paths,userns", "/proc/keys lists the host's key"),
        ("tiocsti", "tty-filter", "the lab's terminal received \"virtlab-lab-typed\""),
        ("chroot", "pivot-root", "host secret: a file outside every container"),
        ("leaked-fd", "close-fds", "host secret: a file outside every container"),
        ("exe", "userns,caps", "the host binary that ran in the container is open for writing"),
        ("sysrq", "userns,readonly-paths", "open for writing"),
        ("keyctl", "seccomp", "host key: a secret of the host's session keyring"),
        ("mknod", "userns,devices,caps", "opened the host disk"),
        ("ptrace", "pidns,userns,caps", "attached to pid"),
        ("release-agent", "seccomp,userns", "release_agent of a host cgroup v1 hierarchy is open for writing"),
    ];
    for (name, without, proof) in cases {
        let (out, runs, pid) = lab(&[name, "--without", without]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(runs.len(), 1, "{name}");
        let r = &runs[0];
        if r["attack"]["outcome"] == "host-refuses" {
            eprintln!("{name}: this kernel refuses the attack to everyone: {r}");
            continue;
        }
        assert_eq!(r["attack"]["outcome"], "reached", "{name}: {r}");
        let detail = r["attack"]["detail"].as_str().unwrap();
        assert!(detail.contains(proof), "{name}: {detail}");
        assert_nothing_left(pid);
    }
}

#[test]
fn the_next_layer_takes_over_when_one_is_removed() {
    if !root_or_skip("the_next_layer_takes_over_when_one_is_removed") {
        return;
    }
    let cases: [(&str, &str, &str, i32); 7] = [
        ("proc-keys", "masked-paths", "userns", 0),
        ("exe", "userns", "caps", libc::EACCES),
        ("mknod", "userns", "devices", libc::EPERM),
        ("mknod", "userns,devices", "caps", libc::EPERM),
        ("ptrace", "pidns,userns", "caps", libc::EPERM),
        ("sysrq", "userns", "readonly-paths", libc::EROFS),
        ("release-agent", "seccomp", "userns", libc::EACCES),
    ];
    for (name, without, by, errno) in cases {
        let (out, runs, _) = lab(&[name, "--without", without]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}{}", text(&out.stdout), text(&out.stderr));
        let r = &runs[0];
        assert_eq!(r["attack"]["outcome"], "blocked", "{name} --without {without}: {r}");
        assert_eq!(r["blocked_by"], by, "{name} --without {without}: {r}");
        assert_eq!(r["attack"]["errno"], errno, "{name} --without {without}: {r}");
    }
    // The text report names the defence, the errno and the next step.
    let out = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["lab", "escape", "keyctl"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let s = text(&out.stdout);
    assert!(s.contains("BLOCKED by seccomp (keyctl_search: EPERM"), "{s}");
    assert!(s.contains("next: virtlab lab escape keyctl --without seccomp"), "{s}");
}

#[test]
fn bad_names_are_refused_with_the_valid_ones() {
    // Refused before anything is made: no root needed.
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_virtlab")).args(["lab", "escape"]).args(args).output().unwrap()
    };
    let out = run(&["dirtycow"]);
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{e}");
    assert!(e.contains("unknown lab \"dirtycow\"") && e.contains("chroot, leaked-fd, exe, sysrq"), "{e}");
    let out = run(&["keyctl", "--without", "seccomp,apparmor"]);
    let e = text(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{e}");
    assert!(e.contains("unknown defence \"apparmor\"") && e.contains("close-fds"), "{e}");
    assert!(out.stdout.is_empty(), "nothing ran: {}", text(&out.stdout));
    if root_or_skip("bad_names_are_refused_with_the_valid_ones (pidns without userns)") {
        let out = run(&["ptrace", "--without", "pidns"]);
        let e = text(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{e}");
        assert!(e.contains("--without pidns needs --without userns too"), "{e}");
    }
}

#[test]
fn the_exposure_table_counts_the_filter_and_the_vmm() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_virtlab")).args(["lab", "escape", "--table", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entries = |env: &str| {
        rows.as_array().unwrap().iter().find(|r| r["environment"] == env).unwrap()["entry_points"].as_u64().unwrap()
    };
    let (host, container, vm) =
        (entries("native process"), entries("container (virtlab default)"), entries("virtlab VM (Linux guest)"));
    assert!(host > 350, "{rows}");
    assert!(container < host && container > 300, "{rows}");
    assert!(vm < 30, "a VM guest reaches a handful of exit handlers: {rows}");
    let vmm = entries("virtlab VMM process (its filter)");
    assert!(vmm > 0 && vmm < container / 4, "the VMM's own filter allows a handful of calls: {rows}");
}

#[test]
fn no_fd_above_2_reaches_a_containers_command() {
    if !root_or_skip("no_fd_above_2_reaches_a_containers_command") || !common::root_and_busybox("no_fd_above_2") {
        return;
    }
    // virtlab is started with fd 9 open (no close-on-exec): a host file.
    let leaked = tempfile::NamedTempFile::new().unwrap();
    let file = std::fs::File::open(leaked.path()).unwrap();
    use std::os::fd::AsRawFd;
    let raw = file.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_virtlab"));
    cmd.args(["container", "run", "--", "ls", "/proc/self/fd"]).stdin(Stdio::null());
    // SAFETY: dup2(2) between fork and exec; async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let fds: Vec<u32> = text(&out.stdout).split_whitespace().filter_map(|w| w.parse().ok()).collect();
    // 0-2, and the one ls opened itself to read the directory.
    assert!(fds.contains(&0) && fds.contains(&2), "{fds:?}");
    assert!(!fds.contains(&9), "the launcher's fd 9 reached the container: {fds:?}");
    assert!(fds.iter().filter(|&&fd| fd > 2).count() <= 1, "{fds:?}");
}

/// `--vm`: the same attacker, every attack, inside a Linux guest in one
/// boot (20-60 s on nested KVM, more on a loaded machine): whatever it
/// reaches is the guest's own.
#[test]
fn in_a_vm_the_same_attacks_reach_only_the_guest() {
    const TEST: &str = "in_a_vm_the_same_attacks_reach_only_the_guest";
    let kvm = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    if !kvm {
        assert!(!must("VIRTLAB_REQUIRE_KVM"), "{TEST}: /dev/kvm is required (VIRTLAB_REQUIRE_KVM=1)");
        eprintln!("SKIPPED {TEST}: no /dev/kvm");
        return;
    }
    use virtlab_vmm::linux::provision::{test_kernel_or_skip, Origin};
    if test_kernel_or_skip(TEST, &[Origin::Minimal]).is_none() {
        return;
    }
    let (out, runs, pid) = lab(&["--vm"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(runs.len(), 10, "{runs:?}");
    assert!(runs.iter().all(|r| r["environment"] == "vm"), "{runs:?}");
    let get = |lab: &str| runs.iter().find(|r| r["lab"] == lab).unwrap()["attack"].clone();
    // Root in the guest escapes its chroot and attaches to its init: the
    // guest's own file (the rootfs's hostname) and the guest's PID 1.
    assert_eq!(get("chroot")["outcome"], "reached", "{runs:?}");
    assert!(get("chroot")["detail"].as_str().unwrap().contains("/etc/hostname"), "{runs:?}");
    assert!(get("ptrace")["detail"].as_str().unwrap_or("").contains("pid 1"), "{runs:?}");
    // The host's disk and keys are not there to reach.
    assert_eq!(get("mknod")["outcome"], "blocked", "{runs:?}");
    assert_eq!(get("keyctl")["outcome"], "blocked", "{runs:?}");
    let dir = std::env::temp_dir().join(format!("virtlab-lab-{pid}-vm"));
    assert!(!dir.exists(), "the guest's rootfs directory is removed: {}", dir.display());
}

#[test]
fn virtlab_compare_reports_the_exposure_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_virtlab"))
        .args(["compare", "--env", "native", "--workload", "ready", "--no-probe", "--runs", "1", "--warmup", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}{}", text(&out.stderr));
    let at = s.find("Containers isolate less").unwrap_or_else(|| panic!("no exposure section: {s}"));
    let section = &s[at..];
    for row in ["native process", "container (virtlab default)", "virtlab VM (Linux guest)", "exit reasons"] {
        assert!(section.contains(row), "{row}: {section}");
    }
}
